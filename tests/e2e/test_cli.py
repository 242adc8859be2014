"""The `batchpool` command line, as installed by `make setup`, against the local stack:
operator, pool owner and service consumer, with a real CSV scored, downloaded and billed.
The live displays (a job's progress line, `pools watch`) are read through a pseudo-terminal."""
from __future__ import annotations

import configparser
import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from samples import census
from tests.e2e.harness import HOST_KEYS, unique, wait_for

BATCHPOOL = Path(sys.executable).with_name("batchpool")
ROWS = 600  # three chunks of the suite's 200 rows


class Cli:
    """Runs `batchpool` with its own profile file and the suite's host and storage, and keeps
    every line it printed (checked for keys at the end of the module)."""

    def __init__(self, base_url: str, storage: str, folder: Path, log: Path):
        self.folder = folder
        self.config = folder / "config.ini"
        self.env = {name: value for name, value in os.environ.items()
                    if not name.startswith("BATCHPOOL_") and name != "AZURE_STORAGE_CONNECTION_STRING"}
        self.env.update(BATCHPOOL_CONFIG=str(self.config), BATCHPOOL_BASE_URL=base_url,
                        AZURE_STORAGE_CONNECTION_STRING=storage, PYTHONUNBUFFERED="1")
        self.log = log

    def _keep(self, args, text: str) -> None:
        with self.log.open("a", encoding="utf-8") as file:
            file.write(f"$ batchpool {' '.join(args)}\n{text}\n")

    def run(self, *args: str, stdin: str | None = None, ok: bool = True, env: dict | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run([str(BATCHPOOL), *args], input=stdin, capture_output=True, text=True, cwd=self.folder,
                              env={**self.env, **(env or {})}, timeout=timeout)
        self._keep(args, done.stdout + done.stderr)
        if ok:
            assert done.returncode == 0, f"exit {done.returncode}: {done.stdout}{done.stderr}"
        return done

    def json(self, *args: str):
        return json.loads(self.run(*args, "-o", "json").stdout)

    def in_terminal(self, *args: str, timeout: float = 120) -> tuple[int, str]:
        """Run under a pseudo-terminal, as a person would; returns the exit code and the raw
        bytes the terminal received (carriage returns and escape sequences included)."""
        controller, terminal = pty.openpty()
        process = subprocess.Popen([str(BATCHPOOL), *args], stdin=terminal, stdout=terminal, stderr=terminal,
                                   cwd=self.folder, env={**self.env, "TERM": "xterm"}, close_fds=True)
        os.close(terminal)
        received = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed: the program has ended
                    break
                if not chunk:
                    break
                received.extend(chunk)
            elif process.poll() is not None:
                break
        os.close(controller)
        code = process.wait(timeout=10)
        text = received.decode("utf-8", errors="replace")
        self._keep(args, text)
        return code, text

    def profile(self, name: str = "default") -> dict:
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(self.config)
        return dict(parser[name])


@pytest.fixture(scope="module")
def cli(app_host, azurite, tmp_path_factory, logs_dir):
    folder = tmp_path_factory.mktemp("cli")
    runner = Cli(app_host.url, azurite.connection_string, folder, logs_dir / "cli-output.log")
    yield runner
    # The keys the CLI saved never appeared in anything it printed; the session's leak check
    # also looks for them in every log, this module's output included.
    printed = runner.log.read_text()
    for name, profile in ((n, runner.profile(n)) for n in ("default", "broken")):
        for setting in ("operator_key", "account_key", "account_secondary_key", "api_key", "webhook_secret"):
            if profile.get(setting):
                HOST_KEYS.add(profile[setting])
                assert profile[setting] not in printed, f"{name}.{setting} was printed"


@pytest.fixture(scope="module")
def owner(cli, app_host):
    """An account, a New service and a pool of one VM, made through the CLI."""
    configured = cli.run("configure", "--set", "operator_key", stdin=app_host.operator_key + "\n")
    assert "operator_key               set" in configured.stdout
    account, subscription = unique("cli"), unique("clisub")
    created = cli.json("accounts", "create", account, "--subscription", subscription, "--max-pools", "3",
                       "--max-vms-per-pool", "4")
    assert created["AccountId"] == account and created["PrimaryKey"].startswith("saved to profile 'default'")
    service = cli.json("services", "create", "census", "--subscription", subscription, "--billing-plan", "plan-cli",
                       "--scorer", "samples.census:score")
    assert service["ApiKey"].startswith("saved to") and service["BillingPlanId"] == "plan-cli"
    assert service["WebhookSecret"].startswith("saved to") and cli.profile()["webhook_secret"]
    pool = cli.json("pools", "create", "night", "--vms", "1", "--auto-scale-down", "120")
    assert pool["VmCount"] == 1 and pool["AutoScaleDownAfterMinutes"] == 120
    wait_for(lambda: cli.json("pools", "show", "night")["VmCounts"]["Idle"] == 1, timeout=30)
    saved = cli.profile()
    assert saved["account"] == account and saved["subscription"] == subscription and saved["service"] == "census"
    assert oct(cli.config.stat().st_mode & 0o777) == "0o600"
    return {"account": account, "subscription": subscription}


def _job_id(printed: str) -> str:
    return re.search(r"job (\S+) submitted and started", printed).group(1)


def _csv(path: Path, rows: int, seed: int = 0) -> bytes:
    data = "".join(census.generate_csv(rows, seed=seed)).encode()
    path.write_bytes(data)
    return data


def test_a_job_from_a_local_csv_is_scored_downloaded_and_billed(cli, owner, blobs):
    data = _csv(cli.folder / "adult.csv", ROWS)
    done = cli.run("jobs", "submit", "adult.csv", "--container", "cli-in", "--pool", "night",
                   "--download-dir", "scored", "--interval", "0.3")
    # Into a pipe the progress is one line per change, ending with the rows scored.
    lines = done.stdout.splitlines()
    assert lines[0].startswith("uploaded adult.csv") and "cli-in/adult.csv" in lines[0]
    submitted = _job_id(done.stdout)
    assert re.search(rf"Finished: {ROWS} rows scored in \d+ s", done.stdout), done.stdout
    assert len(lines) == len(set(re.sub(r", \d+ s$", "", line) for line in lines)), "a line per poll"
    assert blobs.get("cli-in", "adult.csv") == data
    saved = cli.folder / "scored" / f"{submitted}.output1.csv"  # named by job: a second job overwrites nothing
    scored = pd.read_csv(saved)
    assert len(scored) == ROWS and {"Scored Labels", "Scored Probabilities"} <= set(scored.columns)
    assert list(scored["age"]) == list(pd.read_csv(io.BytesIO(data))["age"])

    listed = cli.json("jobs", "list", "--top", "5")
    job = listed["Jobs"][0]
    assert job["StatusCode"] == "Finished" and job["AzureBatchPoolId"] == "night" and job["JobId"] == submitted
    shown = cli.run("jobs", "show", job["JobId"]).stdout
    assert "StatusCode" in shown and "Finished" in shown and f"{ROWS} rows scored" in shown
    assert re.search(r"^Cost +\d+ VM-s own \+ \d+ VM-s idle share", shown, re.M)
    assert re.search(r"^Attempt 1 +Finished$", shown, re.M)
    assert "(no NotificationUrl)" in cli.run("jobs", "events", job["JobId"]).stdout
    assert "jobs download" in shown
    assert job["Results"]["output1"]["SasBlobToken"].endswith("sig=***"), "tokens are masked in JSON too"
    fetched = cli.json("jobs", "download", job["JobId"], "--download-dir", "again")
    assert fetched[0]["Bytes"] == saved.stat().st_size
    assert (cli.folder / "again" / f"{job['JobId']}.output1.csv").read_bytes() == saved.read_bytes()
    kept = cli.run("jobs", "download", job["JobId"], "--download-dir", "again", ok=False)
    assert kept.returncode == 2 and "--force" in kept.stderr  # never overwritten unasked
    assert cli.json("jobs", "download", job["JobId"], "--download-dir", "again", "--force")[0]["Bytes"] == \
        saved.stat().st_size
    table = cli.run("jobs", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["JOB", "STATUS", "POOL"] and job["JobId"] in table[2]

    # The ledger catches up within a few billing ticks; the chart shows the pool's hour.
    report = wait_for(lambda: (r := cli.json("usage"))["Total"]["VmSeconds"] > 0 and r, timeout=30)
    assert [p["PoolId"] for p in report["Pools"]] == ["night"]
    assert sum(h["VmSeconds"] for h in report["Pools"][0]["Hourly"]) == report["Pools"][0]["VmSeconds"]
    assert report["BillingPlans"][0]["BillingPlanId"] == "plan-cli"
    chart = cli.run("usage", "--width", "20").stdout
    assert "Pool night (plan plan-cli)" in chart and "Billing plan plan-cli" in chart
    assert "Cost by web service" in chart and re.search(r"^census\s+1\s", chart, re.M), chart
    assert "Auto scale-down saved" in chart
    bars = [line for line in chart.splitlines() if "█" in line or "▏" in line]
    assert len(bars) >= 2, chart  # one hour at least, per pool and per plan
    hour = report["Pools"][0]["Hourly"][-1]["Hour"][:16].replace("T", " ")
    assert any(line.strip().startswith(hour) for line in bars)


def test_a_waiting_job_shows_its_queue_place_then_its_rows_on_one_redrawn_line(cli, owner):
    _csv(cli.folder / "slow.csv", ROWS, seed=1)
    _csv(cli.folder / "next.csv", ROWS, seed=2)
    first = cli.run("jobs", "submit", "slow.csv", "--container", "cli-in", "--pool", "night",
                    "--param", "SecondsPerChunk=1.5", "--no-wait")
    first_id = first.stdout.strip().splitlines()[-1]
    code, screen = cli.in_terminal("jobs", "submit", "next.csv", "--container", "cli-in", "--pool", "night",
                                   "--param", "SecondsPerChunk=0.6", "--interval", "0.3", "--download-dir", "scored")
    assert code == 0, screen
    assert "\r" in screen and "\x1b[K" in screen, "the progress line is redrawn in place"
    assert "queue position 1 in pool night (WaitingForIdleVm)" in screen
    assert re.search(r"running on vm-\d+: \[[#.]{20}\]", screen)
    assert f"Finished: {ROWS:,} rows scored" in screen
    assert cli.json("jobs", "show", first_id)["StatusCode"] == "Finished"
    assert (cli.folder / "scored" / f"{_job_id(screen)}.output1.csv").exists()


def test_pools_watch_redraws_the_pool_in_a_terminal(cli, owner):
    code, screen = cli.in_terminal("pools", "watch", "night", "--interval", "0.2", "--count", "3")
    assert code == 0
    assert screen.count("\x1b[H\x1b[2J") == 3, "each redraw clears the screen"
    assert screen.count("Pool night") == 3 and "Idle 1" in screen and "vm-000000" in screen
    piped = cli.run("pools", "watch", "night", "--interval", "0.1", "--count", "2").stdout
    assert "\x1b[" not in piped and piped.count("Pool night") == 2


def test_a_failed_job_exits_non_zero_with_its_reason(cli, owner, app_host):
    cli.run("--profile", "broken", "configure", "--set", "operator_key", stdin=app_host.operator_key + "\n")
    cli.run("--profile", "broken", "configure", "--account", owner["account"], "--subscription", owner["subscription"])
    cli.run("--profile", "broken", "services", "create", "broken", "--billing-plan", "plan-cli",
            "--scorer", "tests.fixtures.scorers:wrong_shape")
    _csv(cli.folder / "bad.csv", 50, seed=3)
    done = cli.run("--profile", "broken", "jobs", "submit", "bad.csv", "--container", "cli-in", "--interval", "0.3",
                   ok=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Failed:" in done.stdout and "scorer" in done.stdout.lower()
    as_json = cli.run("--profile", "broken", "jobs", "list", "--top", "1", "-o", "json").stdout
    assert json.loads(as_json)["Jobs"][0]["StatusCode"] == "Failed"


def test_errors_have_exit_codes_scripts_can_rely_on(cli, owner):
    missing = cli.run("pools", "show", "no-such-pool", ok=False)
    assert missing.returncode == 3
    assert "404 NotFound/PoolNotFound" in missing.stderr and missing.stdout == ""
    refused = cli.run("pools", "create", "too-big", "--vms", "5", ok=False)
    assert refused.returncode == 3 and "QuotaExceeded" in refused.stderr
    unreachable = cli.run("pools", "list", ok=False, env={"BATCHPOOL_BASE_URL": "http://127.0.0.1:9",
                                                           "BATCHPOOL_POOL_SERVICE_URL": "http://127.0.0.1:9/api/accounts/x"})
    assert unreachable.returncode == 4 and "cannot reach" in unreachable.stderr
    unset = cli.run("--profile", "empty", "pools", "list", ok=False)
    assert unset.returncode == 2 and "BATCHPOOL_ACCOUNT" in unset.stderr
    wrong_key = cli.run("pools", "list", ok=False, env={"BATCHPOOL_ACCOUNT_KEY": "not-the-key"})
    assert wrong_key.returncode == 3 and "401 Unauthorized" in wrong_key.stderr
    usage = cli.run("pools", "resize", "night", ok=False)
    assert usage.returncode == 2 and "--vms" in usage.stderr


def test_verbose_traces_mask_every_key(cli, owner):
    traced = cli.run("--verbose", "jobs", "list", "--top", "1")
    assert "> GET http" in traced.stderr and "Authorization: Bearer ***" in traced.stderr
    assert "< 200 in" in traced.stderr
    operator = cli.run("accounts", "show", "--verbose")
    assert "Authorization: Bearer ***" in operator.stderr
    profile = cli.profile()
    for key in (profile["api_key"], profile["operator_key"], profile["account_key"]):
        assert key not in traced.stderr + operator.stderr


def test_keys_are_taken_from_no_flag(cli):
    """A key on a command line lands in shell history: no command accepts one."""
    for command in (["configure"], ["accounts", "create"], ["pools", "list"], ["jobs", "submit"]):
        text = cli.run(*command, "--help").stdout
        assert not re.search(r"--(master|operator|account|api)[-_]key\b", text), command


def test_pool_resize_and_delete(cli, owner):
    cli.json("pools", "create", "spare", "--vms", "1")
    resized = cli.json("pools", "resize", "spare", "--vms", "0", "--auto-scale-down", "off")
    assert resized["VmCount"] == 0 and resized["AutoScaleDownAfterMinutes"] is None
    listed = cli.run("pools", "list").stdout
    assert re.search(r"^spare\s+\S+\s+0\s", listed, re.M), listed
    deleted = cli.json("pools", "delete", "spare")
    assert deleted["State"] == "Deleted"
    assert "spare" not in [p["PoolId"] for p in cli.json("pools", "list")]


def test_a_submit_checks_everything_before_it_uploads(cli, owner, blobs):
    """A mistake on the command line or in the job costs no upload and leaves no blob."""
    _csv(cli.folder / "checked.csv", 20, seed=4)
    for args, code, says in (
            (["--container", "Census_1"], 2, "not a blob container name"),
            (["--container", "cli-checked", "--pool", "nighlty"], 3, "PoolNotFound"),
            (["--container", "cli-checked", "--param", "Foo"], 2, "NAME=VALUE")):
        done = cli.run("jobs", "submit", "checked.csv", *args, ok=False)
        assert done.returncode == code and says in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert blobs.get("cli-checked", "checked.csv") is None


def test_storage_the_service_would_not_reach_costs_no_upload_and_leaves_no_job(cli, owner):
    """The service checks the input's storage at submit, before the CLI uploads anything."""
    _csv(cli.folder / "checked.csv", 20, seed=4)
    before = {job["JobId"] for job in cli.json("jobs", "list", "--top", "50")["Jobs"]}
    elsewhere = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + \
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;" + \
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1"
    done = cli.run("jobs", "submit", "checked.csv", "--container", "cli-elsewhere", ok=False,
                   env={"AZURE_STORAGE_CONNECTION_STRING": elsewhere})
    assert done.returncode == 3 and "BlobHostNotAllowed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "uploaded" not in done.stdout
    assert {job["JobId"] for job in cli.json("jobs", "list", "--top", "50")["Jobs"]} == before


def test_a_closed_pipe_a_flag_and_an_unfinished_download_each_say_what_happened(cli, owner):
    _csv(cli.folder / "checked.csv", 20, seed=4)
    reader, writer = os.pipe()
    os.close(reader)  # as `| head` does once it has read enough
    closed = subprocess.run([str(BATCHPOOL), "jobs", "list"], stdout=writer, stderr=subprocess.PIPE, text=True,
                            cwd=cli.folder, env=cli.env, timeout=60)
    os.close(writer)
    assert closed.returncode == 141 and "standard output was closed" in closed.stderr, closed.stderr
    assert "Traceback" not in closed.stderr and "Exception ignored" not in closed.stderr
    # --base-url beats the pool service URL the profile saved.
    assert cli.profile().get("pool_service_url")
    flagged = cli.run("pools", "list", "--base-url", "http://127.0.0.1:9", ok=False)
    assert flagged.returncode == 4 and "http://127.0.0.1:9/api/accounts/" in flagged.stderr, flagged.stderr
    waiting = cli.run("jobs", "submit", "checked.csv", "--container", "cli-in", "--pool", "night",
                      "--param", "SecondsPerChunk=2", "--no-wait").stdout.strip().splitlines()[-1]
    early = cli.run("jobs", "download", waiting, ok=False)
    assert early.returncode == 1 and "--wait" in early.stderr, early.stderr
    assert cli.json("jobs", "show", waiting, "--wait", "--interval", "0.3")["StatusCode"] == "Finished"
