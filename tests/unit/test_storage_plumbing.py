"""Storage plumbing without storage: overlapping calls, output uploads, result read tokens,
and how failures the REST client reports are classified."""
import datetime as dt
import threading
from urllib.parse import parse_qs

import pytest

from shared import execution
from shared.rest import DEVELOPMENT_KEY, StorageRequestFailed
from shared.storage import blob_read_token, concurrently

NOON = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)


def test_concurrently_keeps_order_and_overlaps():
    both_running = threading.Barrier(2, timeout=5)

    def first():
        both_running.wait()
        return "a"

    def second():
        both_running.wait()
        return "b"

    assert concurrently(first, second, lambda: 3) == ["a", "b", 3]


def test_concurrently_raises_the_first_error_after_all_have_ended():
    finished = []

    def slow():
        threading.Event().wait(0.05)
        finished.append("slow")

    def failing():
        raise KeyError("boom")

    with pytest.raises(KeyError):
        concurrently(failing, slow)
    assert finished == ["slow"]


class _FakeBlob:
    def __init__(self):
        self.calls = []

    def upload(self, data, content_type):
        self.calls.append(("upload", data))

    def stage_block(self, block_id, data):
        self.calls.append(("stage", block_id, data))

    def commit_blocks(self, block_ids, content_type):
        self.calls.append(("commit", tuple(block_ids)))


def test_an_output_of_one_chunk_is_one_request():
    blob = _FakeBlob()
    upload = execution._BlockUpload(blob, "attempt")
    upload.write(b"a,b\n1,2\n")
    upload.commit()
    assert blob.calls == [("upload", b"a,b\n1,2\n")]


def test_an_output_of_several_chunks_is_staged_then_committed_in_order():
    blob = _FakeBlob()
    upload = execution._BlockUpload(blob, "attempt")
    for chunk in (b"1\n", b"2\n", b"3\n"):
        upload.write(chunk)
    upload.commit()
    staged = [call for call in blob.calls if call[0] == "stage"]
    assert [call[2] for call in staged] == [b"1\n", b"2\n", b"3\n"]
    assert blob.calls[-1] == ("commit", tuple(call[1] for call in staged))
    assert len(set(call[1] for call in staged)) == 3


def test_an_empty_output_is_still_written():
    blob = _FakeBlob()
    execution._BlockUpload(blob, "attempt").commit()
    assert blob.calls == [("upload", b"")]


@pytest.mark.parametrize("status,code,transient", [(503, "ServerBusy", True), (500, "", True),
                                                   (400, "InvalidBlockList", True), (403, "AuthorizationFailure", False),
                                                   (404, "BlobNotFound", False)])
def test_rest_client_failures_are_classified_like_sdk_ones(status, code, transient):
    error = StorageRequestFailed(status, code)
    assert execution.is_transient(error) is transient
    assert execution.describe_storage_error(error) == f"status={status} code={code or 'none'}"


def test_ticks_of_one_pool_coalesce_and_every_caller_is_covered(monkeypatch):
    from shared import dispatch
    passes, running, overlapped = [], [], []
    first_pass_entered, release_first_pass = threading.Event(), threading.Event()

    def one_pass(partition, pool_id):
        overlapped.append(bool(running))
        running.append(1)
        passes.append(len(passes))
        if len(passes) == 1:
            first_pass_entered.set()
            release_first_pass.wait(5)
        running.pop()
        return {f"job-{len(passes)}": ("vm", None)}

    monkeypatch.setattr(dispatch, "_pair_waiting_jobs", one_pass)
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", dispatch.tick("part", "pool-c")))
    first.start()
    first_pass_entered.wait(5)
    later = [threading.Thread(target=lambda i=i: results.setdefault(i, dispatch.tick("part", "pool-c")))
             for i in range(5)]
    for thread in later:
        thread.start()
    threading.Event().wait(0.1)
    release_first_pass.set()
    for thread in [first, *later]:
        thread.join(5)
    # The five calls made during the first pass are covered by one more pass, never run beside it.
    assert len(passes) == 2 and not any(overlapped)
    assert results["first"] == {"job-1": ("vm", None), "job-2": ("vm", None)}
    assert all(results[i] == {"job-2": ("vm", None)} for i in range(5))


def test_a_result_token_reads_one_blob_for_the_hours_asked():
    token = blob_read_token("UseDevelopmentStorage=true", "out", "a/b.csv", NOON, 24)
    fields = {k: v[0] for k, v in parse_qs(token.lstrip("?")).items()}
    assert token.startswith("?") and fields["sp"] == "r" and fields["sr"] == "b"
    assert fields["st"] == "2026-11-26T11:55:00Z" and fields["se"] == "2026-11-27T12:00:00Z"
    assert DEVELOPMENT_KEY not in token
    assert blob_read_token("UseDevelopmentStorage=true", "out", "other.csv", NOON, 24) != token


def test_no_result_token_without_an_account_key():
    assert blob_read_token("AccountName=acct;SharedAccessSignature=sv=1&sig=x", "out", "b.csv", NOON, 24) == ""
