"""The CLI's pure parts: what it draws, how it masks, where it finds settings."""
from __future__ import annotations

import os
import stat

import pytest

from batchpool import render
from batchpool.cli import _parser, _shown
from batchpool.client import ApiError, jobs_endpoint, mask, result_url
from batchpool.config import ConfigError, Settings


def test_bars_are_drawn_in_eighths_of_a_cell():
    assert render.bar(10, 10, 4) == "████"
    assert render.bar(5, 10, 4) == "██"
    assert render.bar(1, 80, 10) == "▏"  # one eighth of a cell
    assert render.bar(3, 8, 1) == "▍"  # three eighths
    assert render.bar(0, 10, 4) == "" and render.bar(5, 0, 4) == ""
    assert render.bar(0.01, 1000, 4) == "▏", "a non-zero hour is never drawn empty"


def test_the_hourly_chart_has_a_line_per_hour_scaled_to_the_largest():
    hourly = [{"Hour": "2026-11-26T16:00:00Z", "VmSeconds": 3600, "ComputeHours": 1.0},
              {"Hour": "2026-11-26T17:00:00Z", "VmSeconds": 7200, "ComputeHours": 2.0}]
    lines = render.hourly_chart("Pool p", hourly, width=10).splitlines()
    assert lines[0] == "Pool p"
    assert lines[1].startswith("  2026-11-26 16:00  █████     ") and lines[1].endswith("1.000 h (3,600 VM-s)")
    assert lines[2].startswith("  2026-11-26 17:00  ██████████") and lines[2].endswith("2.000 h (7,200 VM-s)")
    assert "no compute hours" in render.hourly_chart("Pool q", [])


def test_the_usage_report_charts_each_pool_and_plan_and_the_savings():
    hour = [{"Hour": "2026-11-26T17:00:00Z", "VmSeconds": 1800, "ComputeHours": 0.5}]
    report = {"From": "a", "To": "b", "Total": {"VmSeconds": 1800, "ComputeHours": 0.5},
              "Pools": [{"PoolId": "p1", "BillingPlanId": "gold", "ComputeHours": 0.5, "VmSeconds": 1800,
                         "Hourly": hour}],
              "BillingPlans": [{"BillingPlanId": "gold", "PoolComputeHours": 0.5, "PoolVmSeconds": 1800,
                                "ClassicJobSeconds": 0, "ClassicJobHours": 0, "Hourly": hour}],
              "AutoScaleDown": {"SavedVmSeconds": 7200, "SavedComputeHours": 2.0}}
    text = render.usage_report(report, width=8)
    assert "Pool p1 (plan gold): 0.500 compute hours" in text and "Billing plan gold: 0.500 pool compute hours" in text
    assert text.count("████████") == 2
    assert text.endswith("Auto scale-down saved 2.000 compute hours (7,200 VM-seconds)")


def test_the_progress_line_says_why_a_job_waits_and_how_far_it_has_got():
    waiting = {"JobId": "j", "StatusCode": "NotStarted", "QueuePosition": 2, "AzureBatchPoolId": "p",
               "PendingReason": "WaitingForIdleVm"}
    assert render.progress_line(waiting, 3.2) == "j waiting: queue position 2 in pool p (WaitingForIdleVm), 3 s"
    assert render.progress_line(waiting, None) == "j waiting: queue position 2 in pool p (WaitingForIdleVm)"
    running = {"JobId": "j", "StatusCode": "Running", "VmId": "vm-000001",
               "Progress": {"RowsScored": 1500, "InputBytesRead": 500_000, "InputBytes": 2_000_000}}
    assert render.progress_line(running, 10, width=8) == (
        "j running on vm-000001: [##......]  25% 1,500 rows scored, 0.5 MB of 2.0 MB, 10 s")
    unknown_size = {**running, "Progress": {"RowsScored": 0, "InputBytesRead": 0, "InputBytes": None}}
    assert "[........]   0% 0 rows scored, 0.0 MB of ?" in render.progress_line(unknown_size, 0, width=8)
    finished = {"JobId": "j", "StatusCode": "Finished", "Progress": {"RowsScored": 20000}}
    assert render.progress_line(finished, 61) == "j Finished: 20,000 rows scored in 61 s"
    failed = {"JobId": "j", "StatusCode": "Failed", "Details": "the scorer raised ValueError"}
    assert render.progress_line(failed, 5) == "j Failed: the scorer raised ValueError"


def test_a_waiting_job_says_when_it_should_start_or_why_it_cannot_say():
    waiting = {"JobId": "j", "StatusCode": "NotStarted", "QueuePosition": 1, "AzureBatchPoolId": "p",
               "PendingReason": "WaitingForIdleVm", "EstimatedStartTime": "2026-11-26T12:03:04.500Z",
               "Estimate": {"Basis": "RecentJobs"}}
    assert render.progress_line(waiting, None).endswith("(WaitingForIdleVm), expected to start at 12:03:04Z")
    blind = {**waiting, "EstimatedStartTime": None, "Estimate": {"Basis": "NoHistory"}}
    assert render.progress_line(blind, None).endswith("no start estimate yet (no recent jobs on the pool)")
    pool = {"PoolId": "p", "State": "Steady", "VmCount": 1, "BillingPlanId": "b", "QueuedJobs": 2,
            "RunningJobs": 1, "ComputeHours": 0.5, "VmCounts": {"Busy": 1}, "QueueDrainsAt": "2026-11-26T12:10:00Z"}
    assert "Queue drains at 12:10:00Z" in render.pool_screen(pool, "now")


def test_a_jobs_cost_and_attempts_are_shown():
    job = {"Progress": {"RowsScored": 20000, "InputBytesRead": 2158751, "InputBytes": 2158751},
           "Cost": {"ComputeSeconds": 30, "AllocatedIdleSeconds": 6, "ComputeHours": 0.01, "Final": False},
           "AttemptOutcomes": [{"Attempt": 1, "Outcome": "Interrupted", "Reason": "storage was unavailable"},
                               {"Attempt": 2, "Outcome": "Finished", "Reason": ""}]}
    assert render.job_details(job) == [
        ("Progress", "20,000 rows scored, 2,158,751 of 2,158,751 input bytes"),
        ("Cost", "30 VM-s own + 6 VM-s idle share = 0.0100 compute hours (not final yet)"),
        ("Attempt 1", "Interrupted: storage was unavailable"), ("Attempt 2", "Finished")]


def test_tables_align_columns_under_their_headings():
    text = render.table([{"a": "x", "b": 10}, {"a": "longer", "b": None}], [("A", "a"), ("B", "b")])
    assert text.splitlines() == ["A       B", "------  --", "x       10", "longer"]


def test_secrets_are_masked_in_urls_and_shown_jobs():
    url = "https://a.blob.core.windows.net/c/b.csv?sv=2026&sr=b&sig=abc%2Bdef&se=x"
    assert mask(url) == "https://a.blob.core.windows.net/c/b.csv?sv=2026&sr=b&sig=***&se=x"
    assert mask("https://h/api/x?code=secret") == "https://h/api/x?code=***"
    job = {"JobId": "j", "Results": {"output1": {"BaseLocation": "https://a/", "RelativeLocation": "c/o.csv",
                                                 "SasBlobToken": "?sp=r&sig=SECRET"}}}
    shown = _shown(job)
    assert shown["Results"]["output1"]["SasBlobToken"] == "?sp=r&sig=***"
    assert job["Results"]["output1"]["SasBlobToken"] == "?sp=r&sig=SECRET", "the job itself is left alone"
    assert result_url(job["Results"]["output1"]) == "https://a/c/o.csv?sp=r&sig=SECRET"


def test_api_errors_carry_the_envelope():
    error = ApiError(409, {"error": {"code": "QuotaExceeded", "message": "too many VMs",
                                     "details": [{"code": "PoolVmQuota", "target": "VmCount", "message": "m"}]}})
    assert (error.status, error.category, error.code, error.target) == (409, "QuotaExceeded", "PoolVmQuota", "VmCount")
    bare = ApiError(401, None, "Unauthorized")
    assert (bare.category, bare.code, bare.message) == ("HTTP401", "HTTP401", "Unauthorized")


def test_the_jobs_endpoint_drops_the_api_version_query():
    assert jobs_endpoint("https://h/api/subscriptions/s/services/x/jobs?api-version=2.0") == (
        "https://h/api/subscriptions/s/services/x/jobs")


def test_settings_come_from_a_flag_then_the_environment_then_the_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHPOOL_CONFIG", str(tmp_path / "nested" / "config.ini"))
    monkeypatch.delenv("BATCHPOOL_ACCOUNT", raising=False)
    monkeypatch.delenv("BATCHPOOL_BASE_URL", raising=False)
    settings = Settings("work", {"account": None})
    assert settings.get("base_url") == "http://127.0.0.1:7071" and settings.get("account") is None
    path = settings.save({"account": "from-file", "account_key": "k1"})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert settings.get("account") == "from-file"
    monkeypatch.setenv("BATCHPOOL_ACCOUNT", "from-env")
    assert settings.get("account") == "from-env"
    assert Settings("work", {"account": "from-flag"}).get("account") == "from-flag"
    assert Settings("other", {}).get("account_key") is None, "profiles are separate"
    assert settings.shown()["account_key"] == "set" and "k1" not in repr(settings.shown())
    with pytest.raises(ConfigError, match="batchpool configure --set api_key"):
        Settings("work", {}).need("api_key", "the web service's API key")


def test_options_may_come_before_or_after_the_command():
    parser = _parser()
    assert parser.parse_args(["-o", "json", "pools", "list"]).output == "json"
    assert parser.parse_args(["pools", "list", "-o", "json"]).output == "json"
    assert parser.parse_args(["pools", "list"]).output == "table"
    args = parser.parse_args(["--profile", "p", "jobs", "show", "j", "--verbose"])
    assert (args.profile, args.verbose, args.job_id) == ("p", True, "j")


def _failing_command(monkeypatch, error, tmp_path):
    from batchpool import cli
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    parsed = _parser().parse_args(["accounts", "list"])

    def broken(ctx):
        raise error
    parsed.handler = broken

    class Parser:
        def parse_args(self, argv):
            parsed.verbose = "--verbose" in (argv or [])
            return parsed
    monkeypatch.setattr(cli, "_parser", lambda: Parser())
    return cli


def test_an_unexpected_failure_is_one_line_without_a_traceback(monkeypatch, capsys, tmp_path):
    cli = _failing_command(monkeypatch, ValueError("boom\nsecond line"), tmp_path)
    assert cli.main([]) == cli.UNAVAILABLE
    err = capsys.readouterr().err
    assert err.strip() == ("batchpool: the command failed (ValueError: boom); run it again with --verbose to see "
                           "why in full")
    assert cli.main(["--verbose"]) == cli.UNAVAILABLE
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_a_local_file_that_cannot_be_read_is_named(monkeypatch, capsys, tmp_path):
    missing = tmp_path / "adult.csv"
    cli = _failing_command(monkeypatch, FileNotFoundError(2, "No such file or directory", str(missing)), tmp_path)
    assert cli.main([]) == cli.USAGE
    assert capsys.readouterr().err.strip() == f"batchpool: cannot use {missing}: No such file or directory"


def test_following_a_job_rides_out_a_503_and_no_answer_but_not_a_refusal(monkeypatch):
    from batchpool import client as client_module
    from batchpool.client import JobsClient, Unreachable
    monkeypatch.setattr(client_module.time, "sleep", lambda seconds: slept.append(seconds))
    slept: list[float] = []
    answers = [ApiError(503, None, retry_after=3), Unreachable("down"), {"StatusCode": "Running"},
               {"StatusCode": "Finished"}]
    jobs = JobsClient("http://127.0.0.1:1/api/subscriptions/s/services/v/jobs", "key")

    def get(job_id):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(jobs, "get", get)
    assert [s["StatusCode"] for s in jobs.follow("j1", interval=0.5)] == ["Running", "Finished"]
    assert slept == [3, 2.0, 0.5]  # Retry-After, then at least 2 s, then the poll interval
    answers[:] = [ApiError(404, None)]
    with pytest.raises(ApiError):
        list(jobs.follow("j1"))
    answers[:] = [ApiError(503, None)] * 3
    with pytest.raises(ApiError):  # an outage longer than the follower waits
        list(jobs.follow("j1", interval=1, outage=0))


def test_container_names_are_checked_as_azure_does():
    from batchpool.cli import CONTAINER_NAME
    for good in ("census", "cli-in", "abc", "a" * 63, "census-1"):
        assert CONTAINER_NAME.match(good), good
    for bad in ("Census_1", "ab", "a" * 64, "-census", "census-", "cen--sus", "cen sus"):
        assert not CONTAINER_NAME.match(bad), bad


def test_storage_that_is_down_is_said_in_seconds_and_a_failed_upload_cancels_its_job(tmp_path, monkeypatch, capsys):
    from batchpool import cli
    from batchpool.client import Unreachable
    down = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1")
    data = tmp_path / "in.csv"
    data.write_text("a,b\n1,2\n")
    attempts, slept = [], []

    def refused(self, address):
        attempts.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr("socket.socket.connect", refused)
    monkeypatch.setattr("time.sleep", slept.append)
    with pytest.raises(Unreachable, match="cannot reach the storage account"):
        cli._upload(down, "inputs", "in.csv", data)
    # Two quick retries, not the SDK's default of minutes of them.
    assert len(attempts) == 1 + cli.UPLOAD_RETRIES and len(slept) == 2 and all(0 <= s <= 2 for s in slept)
    monkeypatch.setattr(cli, "UPLOAD_RETRIES", 0)

    class Jobs:
        cancelled: list[str] = []

        def submit(self, request):
            return "job-1"

        def cancel(self, job_id):
            self.cancelled.append(job_id)

        def start(self, job_id):
            raise AssertionError("a job whose input did not upload is not started")

    jobs = Jobs()
    monkeypatch.setattr(cli.Context, "jobs", lambda self: jobs)
    monkeypatch.setenv("BATCHPOOL_CONFIG", str(tmp_path / "config.ini"))
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", down)
    code = cli.main(["jobs", "submit", str(data), "--container", "inputs", "--subscription", "s", "--service", "v"])
    assert code == cli.UNAVAILABLE and jobs.cancelled == ["job-1"]
    printed = capsys.readouterr().err.strip().splitlines()
    assert len(printed) == 1 and "cannot reach the storage account" in printed[0]
