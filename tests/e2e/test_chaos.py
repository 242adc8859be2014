"""The short chaos run: jobs on 5 pools and classic while host instances are SIGKILLed."""
import sys

from tests.e2e.harness import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import chaos  # noqa: E402


def test_short_chaos_run_loses_nothing(logs_dir):
    figures = chaos.run(jobs=120, instances=3, kills=6, log_dir=logs_dir, out=lambda _: None, throttles=2)
    assert figures["kills"] == 6 and figures["throttled_storage_requests"] > 0
    assert figures["lost"] == 0 and figures["ended"] == figures["jobs"] == 120
    assert figures["finished"] == 120, figures["failed_details"]
    assert figures["changed_after_ending"] == 0
    assert figures["finished_without_output"] == 0
    assert figures["busy_over_provisioned_samples"] == 0 and figures["max_busy_in_a_sample"] >= 1
    assert figures["fifo_breaks"] == 0
    assert figures["pools_billing_mismatch"] == []
    # Every answer was a success: no 4xx, no 5xx (storage throttling is retried, not passed on).
    assert figures["error_answers"] == {} and figures["server_errors"] == 0
    # A job no client knows of can only come from a submit whose answer died with its instance.
    assert figures["untracked_jobs"] <= figures["submits_unanswered"]
    # A run begins again only when a kill or a throttling window cut it short: each can cut the
    # runs of the instances it hit (4 each: host.json's batchSize + newBatchThreshold).
    assert figures["runs_begun_again"] <= 4 * (figures["kills"] + 3 * figures["throttles"])
