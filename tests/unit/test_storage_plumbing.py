"""Storage plumbing without storage: overlapping calls, output uploads, result read tokens,
and how storage failures are classified."""
import datetime as dt
import threading
from urllib.parse import parse_qs

import pytest

from shared import layout, scoring
from shared.settings import get_settings
from shared.storage import concurrently, read_token
from shared.storage.connections import DEVELOPMENT_KEY, parse_connection_string

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
    output = scoring.Output(blob, "job1", 0, 0)
    output.write(b"a,b\n1,2\n", may_hold=True)
    output.commit()
    assert blob.calls == [("upload", b"a,b\n1,2\n")]


def test_an_output_of_several_chunks_is_staged_then_committed_in_order():
    blob = _FakeBlob()
    output = scoring.Output(blob, "job1", 0, 0)
    for index, chunk in enumerate((b"1\n", b"2\n", b"3\n")):
        output.write(chunk, may_hold=index == 0)
    output.commit()
    staged = [call for call in blob.calls if call[0] == "stage"]
    assert [call[2] for call in staged] == [b"1\n", b"2\n", b"3\n"]
    assert blob.calls[-1] == ("commit", tuple(call[1] for call in staged))
    assert len(set(call[1] for call in staged)) == 3


def test_a_resumed_output_stages_after_the_checkpoint_with_the_same_ids():
    first, resumed = _FakeBlob(), _FakeBlob()
    output = scoring.Output(first, "job1", 1, 0)
    output.write(b"1\n", may_hold=True)
    output.flush()
    output.write(b"2\n", may_hold=False)
    later = scoring.Output(resumed, "job1", 1, 1)
    later.write(b"2\n", may_hold=False)
    later.commit()
    assert resumed.calls[0] == first.calls[1]
    assert resumed.calls[-1] == ("commit", (scoring.block_id("job1", 1, 0), scoring.block_id("job1", 1, 1)))


def test_block_ids_are_equal_length_and_differ_by_output():
    ids = {scoring.block_id("00000000000000abcdef0123456789ab", o, n) for o in (0, 1) for n in (0, 99999)}
    assert len(ids) == 4 and len({len(i) for i in ids}) == 1


def test_block_ids_fit_azure_whatever_the_pool_is_called():
    job_id = layout.new_job_id(NOON, "p" * 64)
    ids = {scoring.block_id(job_id, 7, n) for n in (0, 99999999)}
    assert len(ids) == 2 and all(len(i) <= 64 for i in ids)
    assert scoring.block_id(layout.new_job_id(NOON, "q"), 7, 0) != scoring.block_id(job_id, 7, 0)


def test_an_empty_output_is_still_written():
    blob = _FakeBlob()
    scoring.Output(blob, "job1", 0, 0).commit()
    assert blob.calls == [("upload", b"")]


def test_ticks_of_one_pool_coalesce_and_every_caller_is_covered(monkeypatch):
    from shared import dispatch
    passes, running, overlapped = [], [], []
    first_pass_entered, release_first_pass = threading.Event(), threading.Event()

    def one_pass(partition):
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
    first = threading.Thread(target=lambda: results.setdefault("first", dispatch.tick("part|pool-c")))
    first.start()
    first_pass_entered.wait(5)
    later = [threading.Thread(target=lambda i=i: results.setdefault(i, dispatch.tick("part|pool-c")))
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
    account = parse_connection_string("UseDevelopmentStorage=true")
    token = read_token(account, "out", "a/b.csv", NOON, 24)
    fields = {k: v[0] for k, v in parse_qs(token.lstrip("?")).items()}
    assert token.startswith("?") and fields["sp"] == "r" and fields["sr"] == "b"
    assert fields["st"] == "2026-11-26T11:55:00Z" and fields["se"] == "2026-11-27T12:00:00Z"
    assert DEVELOPMENT_KEY not in token
    assert read_token(account, "out", "other.csv", NOON, 24) != token


def test_no_result_token_without_an_account_key_outside_the_apps_own_account(monkeypatch):
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    get_settings.cache_clear()
    try:
        account = parse_connection_string("BlobEndpoint=https://acct.blob.core.windows.net;SharedAccessSignature=sv=1&sig=x")
        assert read_token(account, "out", "b.csv", NOON, 24) == ""
    finally:
        get_settings.cache_clear()
