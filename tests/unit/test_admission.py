"""How many queue invocations an instance runs at once and how long each may work, from host.json."""
import json

import pytest

from shared import admission


def settings(queues=None, timeout="00:10:00") -> dict:
    data = {"version": "2.0", "extensions": {"queues": queues or {}}}
    if timeout is not None:
        data["functionTimeout"] = timeout
    return data


def test_the_app_s_own_host_json_gives_its_threads():
    plan = admission.from_host_json(json.loads(admission.HOST_JSON.read_text()), cores=2)
    assert plan.concurrency == 4 and plan.function_timeout == 600
    assert admission.current().concurrency == 4  # set explicitly, so the same on any instance


def test_the_concurrency_is_batch_size_plus_the_new_batch_threshold():
    assert admission.from_host_json(settings({"batchSize": 3, "newBatchThreshold": 1}), cores=8).concurrency == 4
    assert admission.from_host_json(settings({"batchSize": 5, "newBatchThreshold": 0}), cores=8).concurrency == 5


def test_the_extension_s_defaults_grow_with_the_cores():
    assert admission.from_host_json(settings(), cores=1).concurrency == 16 + 8
    assert admission.from_host_json(settings(), cores=4).concurrency == 16 + 32
    assert admission.from_host_json(settings({"batchSize": 5}), cores=2).concurrency == 5 + 4


@pytest.mark.parametrize("queues", [{"batchSize": 0}, {"batchSize": 33}, {"batchSize": "4"}, {"batchSize": True},
                                    {"newBatchThreshold": -1}, {"newBatchThreshold": 1.5}])
def test_queue_settings_the_host_would_refuse_are_refused(queues):
    with pytest.raises(admission.HostSettingsError):
        admission.from_host_json(settings(queues), cores=2)


@pytest.mark.parametrize("text, seconds", [("00:10:00", 600), ("00:00:20", 20), ("1.02:00:00", 93600),
                                           ("00:00:01.5", 1.5), (" 00:05:00 ", 300)])
def test_function_timeouts_are_read_as_timespans(text, seconds):
    assert admission.from_host_json(settings(timeout=text), cores=1).function_timeout == seconds


@pytest.mark.parametrize("text", ["10", "00:10", "ten minutes", "00:61:00x", 600])
def test_a_function_timeout_that_is_no_timespan_is_refused(text):
    with pytest.raises(admission.HostSettingsError):
        admission.from_host_json(settings(timeout=text), cores=1)


def test_without_a_function_timeout_the_plan_default_holds_and_minus_one_is_unlimited():
    assert admission.from_host_json(settings(timeout=None), cores=1).function_timeout == 300
    unlimited = admission.from_host_json(settings(timeout="-1"), cores=1)
    assert unlimited.function_timeout is None
    assert unlimited.slice_seconds(120) == 120 and unlimited.working_seconds() is None
    assert unlimited.may_start(10_000, 120)


def test_a_slice_gets_at_most_half_the_function_timeout():
    plan = admission.Admission(4, 20.0)
    assert plan.slice_seconds(3) == 3 and plan.slice_seconds(120) == 10
    assert plan.working_seconds() == 10 and plan.working_seconds(4) == 4


def test_an_invocation_starts_only_with_a_quarter_of_its_time_left():
    plan = admission.Admission(4, 20.0)  # 10 s of work at most
    assert plan.may_start(0, 120) and plan.may_start(7.5, 120)
    assert not plan.may_start(7.6, 120)
    assert plan.may_start(2.25, 3) and not plan.may_start(2.3, 3)  # a 3 s slice: 0.75 s must be left


def test_the_sweeper_judges_heartbeats_only_once_storage_has_answered_long_enough():
    from shared import sweeper
    assert not sweeper.judges_heartbeats(None, 100.0, 30)  # no sweep found storage answering yet
    assert not sweeper.judges_heartbeats(80.0, 100.0, 30)  # back for 20 s: runners may not have written
    assert sweeper.judges_heartbeats(70.0, 100.0, 30)
