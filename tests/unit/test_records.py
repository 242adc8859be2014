"""Cutting CSV bytes into chunks of whole records, and resuming at any chunk's end."""
import pytest

from shared.records import chunks, record_ends, split_header

QUOTED = b'id,text\n1,"a\nb"\n2,"say ""hi""\n"\n3,plain\n4,"x,y"\n5,last'


def _blocks(data: bytes, size: int):
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_a_newline_inside_quotes_does_not_end_a_record():
    header, rest = split_header(_blocks(QUOTED, 5))
    assert header == b"id,text\n"
    assert [c.data for c in chunks(rest, len(header), 2)] == [b'1,"a\nb"\n2,"say ""hi""\n"\n',
                                                             b'3,plain\n4,"x,y"\n', b"5,last"]


@pytest.mark.parametrize("block_size", [1, 3, 7, 64, 4096])
@pytest.mark.parametrize("rows", [1, 2, 3, 10])
def test_resuming_at_any_chunk_end_gives_the_same_records(block_size, rows):
    header, rest = split_header(_blocks(QUOTED, block_size))
    whole = list(chunks(rest, len(header), rows))
    assert b"".join(c.data for c in whole) == QUOTED[len(header):]
    assert whole[-1].end == len(QUOTED) and whole[-1].last
    for cut in whole[:-1]:
        resumed = list(chunks(_blocks(QUOTED[cut.end:], block_size), cut.end, rows))
        assert b"".join(c.data for c in resumed) == QUOTED[cut.end:]
        assert resumed[-1].end == len(QUOTED)


def test_record_ends_with_and_without_quotes():
    assert list(record_ends(b"a\nb\nc")) == [2, 4]
    assert list(record_ends(b'"a\n"\nb\n')) == [5, 7]
    assert list(record_ends(b"")) == []


def test_a_header_without_a_newline_and_an_overlong_header():
    header, rest = split_header([b"only,a,header"])
    assert header == b"only,a,header" and list(rest) == []
    with pytest.raises(ValueError):
        split_header([b"x" * 100], limit=50)


def test_trailing_blank_lines_end_the_last_chunk():
    header, rest = split_header([b"a\n1\n2\n\n\n"])
    found = list(chunks(rest, len(header), 5))
    assert [c.data for c in found] == [b"1\n2\n\n\n"] and found[-1].last
