import pytest

from devhost.routes import RouteTemplate, RouteTemplateError


def test_literal_and_parameters():
    route = RouteTemplate("accounts/{accountId}/pools/{poolId}")
    assert route.match("accounts/a1/pools/p-2") == {"accountId": "a1", "poolId": "p-2"}
    assert route.match("ACCOUNTS/a1/Pools/p") == {"accountId": "a1", "poolId": "p"}
    assert route.match("accounts/a1/pools") is None
    assert route.match("accounts/a1/pools/p/extra") is None


def test_segments_are_decoded_one_by_one():
    route = RouteTemplate("items/{name}")
    assert route.match("items/a%20b") == {"name": "a b"}
    assert route.match("items/a%2Fb") == {"name": "a/b"}


@pytest.mark.parametrize("template,good,bad", [
    ("n/{id:int}", "n/42", "n/4x"),
    ("n/{id:int}", "n/-3", "n/3.0"),
    ("g/{id:guid}", "g/8dfc151b-0d3e-4464-97b8-45f3b29ef53b", "g/not-a-guid"),
    ("a/{w:alpha}", "a/abc", "a/ab1"),
    ("b/{f:bool}", "b/TRUE", "b/yes"),
    ("r/{n:range(1,5)}", "r/5", "r/6"),
    ("m/{n:min(10)}", "m/10", "m/9"),
    ("x/{n:max(3)}", "x/3", "x/4"),
    ("l/{s:length(2,3)}", "l/abc", "l/abcd"),
    ("l/{s:minlength(2)}", "l/ab", "l/a"),
    ("l/{s:maxlength(2)}", "l/ab", "l/abc"),
    ("e/{s:regex(^[a-c]+$)}", "e/abca", "e/abd"),
    ("c/{n:int:range(1,3)}", "c/2", "c/4"),
])
def test_constraints(template, good, bad):
    route = RouteTemplate(template)
    assert route.match(good) is not None
    assert route.match(bad) is None


def test_optional_and_catch_all():
    optional = RouteTemplate("files/{name?}")
    assert optional.match("files") == {}
    assert optional.match("files/x") == {"name": "x"}
    catch_all = RouteTemplate("blobs/{*path}")
    assert catch_all.match("blobs/a/b/c") == {"path": "a/b/c"}
    assert catch_all.match("blobs") is None


def test_specificity_prefers_literals():
    literal = RouteTemplate("pools/summary")
    constrained = RouteTemplate("pools/{id:int}")
    plain = RouteTemplate("pools/{id}")
    assert sorted([plain, constrained, literal], key=RouteTemplate.specificity) == [literal, constrained, plain]


@pytest.mark.parametrize("template", [
    "a/{id:nosuch}", "a/{id}/{id}", "a/{x?}/b", "a/{*rest}/b", "a/x{id}", "a//b", "a/{1bad}",
    "a/{n:range(1)}", "a/{n:int(3)}",
])
def test_templates_the_host_refuses(template):
    with pytest.raises(RouteTemplateError):
        RouteTemplate(template)
