import pytest

from shared import secrets
from shared.errors import InvalidRequest
from shared.validation import int_field, is_valid_id, only_fields, str_field


@pytest.mark.parametrize("value,ok", [
    ("p1", True), ("8dfc151b0d3e446497b845f3b29ef53b", True), ("a_b-c", True), ("x" * 64, True),
    ("", False), ("-lead", False), ("has space", False), ("x" * 65, False), ("a/b", False), (5, False),
    ("é", False), (None, False),
])
def test_ids(value, ok):
    assert is_valid_id(value) is ok


def test_int_field_refuses_bools_floats_strings_and_out_of_range():
    assert int_field({"N": 3}, "N", 0, 5) == 3
    assert int_field({}, "N", 0, 5, required=False, default=1) == 1
    for bad in ({"N": True}, {"N": 1.0}, {"N": "3"}, {"N": -1}, {"N": 6}, {}):
        with pytest.raises(InvalidRequest):
            int_field(bad, "N", 0, 5)


def test_str_field_and_unknown_fields():
    assert str_field({"K": "New"}, "K", choices=("New", "Classic")) == "New"
    for bad in ({"K": ""}, {"K": "  "}, {"K": 1}, {"K": "Old"}):
        with pytest.raises(InvalidRequest):
            str_field(bad, "K", choices=("New", "Classic"))
    with pytest.raises(InvalidRequest, match="vmcount"):
        only_fields({"vmcount": 1}, ("VmCount",))


def test_keys_are_stored_as_hashes_and_compared_whole():
    key = secrets.new_key()
    stored = secrets.hash_key(key)
    assert key not in stored and len(key) >= 43
    assert secrets.matches_any(key, ["0" * 64, stored])
    assert not secrets.matches_any(key[:-1], [stored])
    assert not secrets.matches_any("", [secrets.hash_key("")])
    assert not secrets.matches_any(None, [stored])
    assert secrets.new_key() != secrets.new_key()


@pytest.mark.parametrize("name, problem", [
    ("probein/../probeout/trav.csv", "'.' or '..'"), ("./x.csv", "'.' or '..'"), ("a/./b", "'.' or '..'"),
    ("a//b.csv", "empty segment"), ("a\\b.csv", "backslash"), ("a\nb.csv", "control character"),
    ("a\x7fb", "control character"), ("x" * 1025, "1,024"), ("/".join(["a"] * 255), "254 segments"), ("", "no blob")])
def test_blob_names_that_azure_or_a_reader_would_take_otherwise_are_refused(name, problem):
    from shared.validation import blob_name_problem
    assert problem in blob_name_problem(name)


@pytest.mark.parametrize("name", ["a.csv", "dir/sub/a b.csv", "résumé/ünï.csv", "x" * 1024, "a..b/c.", "/".join(["a"] * 254)])
def test_ordinary_blob_names_pass(name):
    from shared.validation import blob_name_problem
    assert blob_name_problem(name) is None


def test_a_relative_location_with_dot_segments_is_refused_naming_the_field():
    from shared import bes
    from shared.errors import InvalidRequest
    location = {"ConnectionString": "UseDevelopmentStorage=true", "RelativeLocation": "probein/../probeout/t.csv"}
    with pytest.raises(InvalidRequest) as refused:
        bes.parse_location(location, "Input")
    assert refused.value.target == "Input.RelativeLocation" and "'..'" in refused.value.message


@pytest.mark.parametrize("url", ["https://h.example/x\r\nX-Injected: 1", "https://h.example/a b", "https://h.example\\@evil/",
                                 "https://h.example/\x00", "https://h.example/é"])
def test_urls_with_control_characters_spaces_or_backslashes_are_not_plain_urls(url):
    from shared.validation import url_text_problem
    assert url_text_problem(url)


def test_a_plain_url_passes():
    from shared.validation import url_text_problem
    assert url_text_problem("https://receiver.example:8443/hooks/batch?x=%20y") is None


def test_a_notification_url_with_cr_lf_is_refused_naming_the_field():
    from shared import events
    with pytest.raises(InvalidRequest) as refused:
        events.check_url("https://127.0.0.1/hook\r\nX-Injected: 1", "NotificationUrl")
    assert refused.value.target == "NotificationUrl" and "control character" in refused.value.message


def test_subscription_ids_are_keyed_without_regard_to_case():
    from shared.validation import subscription_key
    guid = "9F8E7D6C-1A2B-3C4D-5E6F-0123456789AB"
    assert subscription_key(guid) == subscription_key(guid.lower()) == guid.lower()
