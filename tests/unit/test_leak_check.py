"""The session's leak check finds what it is there to find."""
import pytest

from tests.e2e import harness


@pytest.fixture
def clean_session(monkeypatch):
    monkeypatch.setattr(harness, "RESPONSES", ["issued: key-one", "nothing here"])
    monkeypatch.setattr(harness, "ISSUED", {"key-one": 0})
    monkeypatch.setattr(harness, "HOST_KEYS", {"master-key-xyz"})


@pytest.mark.parametrize("line", ["GET /c/b?sv=2025-01-05&sig=AbCdEf0123%2BxyZ&sp=r", "token key-one used",
                                  "master-key-xyz", "DefaultEndpointsProtocol=http;AccountKey=abc",
                                  "BlobEndpoint=x;SharedAccessSignature=sv=1"])
def test_a_secret_in_any_log_is_found(tmp_path, clean_session, line):
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "host.log").write_text(f"fine\n{line}\n")
    with pytest.raises(AssertionError):
        harness.check_no_secret_leaked(tmp_path)


def test_a_secret_shown_again_is_found(tmp_path, clean_session):
    harness.check_no_secret_leaked(tmp_path)  # as issued: fine
    harness.RESPONSES.append('{"Key": "key-one"}')
    with pytest.raises(AssertionError):
        harness.check_no_secret_leaked(tmp_path)
