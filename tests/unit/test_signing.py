"""The push events' signature, as a receiver checks it."""
import hashlib
import hmac

from shared import signing


def test_the_signature_is_hmac_sha256_of_the_timestamp_and_the_body():
    body = b'{"JobId": "j", "Sequence": 1}'
    header = signing.signature("s3cret", 1_800_000_000, body)
    expected = hmac.new(b"s3cret", b"1800000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1800000000,v1={expected}"
    assert signing.verify("s3cret", header, body, 1_800_000_100)


def test_forgeries_tampering_and_replays_fail():
    body = b'{"Type": "Finished"}'
    header = signing.signature("s3cret", 1_800_000_000, body)
    assert not signing.verify("other", header, body, 1_800_000_000)
    assert not signing.verify("s3cret", header, body + b" ", 1_800_000_000)
    assert not signing.verify("s3cret", header, body, 1_800_000_000 + 301)
    assert not signing.verify("s3cret", header.replace("t=1800000000", "t=1800000300"), body, 1_800_000_300)
    for broken in ("", "v1=abc", "t=x,v1=abc", "t=1800000000", "garbage"):
        assert not signing.verify("s3cret", broken, body, 1_800_000_000)
