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
