"""Per-job cost: whole seconds that add up exactly to each hour's bill."""
import datetime as dt
import random

from shared import costs

H0 = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.timezone.utc)


def at(minutes: float) -> dt.datetime:
    return H0 + dt.timedelta(minutes=minutes)


def test_a_job_is_split_by_hour_in_whole_seconds():
    assert costs.job_hours(at(50) + dt.timedelta(milliseconds=700), at(70) + dt.timedelta(milliseconds=200)) == {
        H0: 600, H0 + dt.timedelta(hours=1): 600}
    assert costs.job_hours(at(5), at(5) + dt.timedelta(milliseconds=900)) == {}
    assert sum(costs.job_hours(at(30), at(30 + 60 * 25)).values()) == 25 * 3600


def test_shares_are_whole_proportional_and_exact():
    assert costs.share(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert costs.share(100, {"a": 3, "b": 1}) == {"a": 75, "b": 25}
    assert costs.share(0, {"a": 3}) == {"a": 0} and costs.share(5, {"a": 0}) == {"a": 0}
    rng = random.Random(7)
    for _ in range(2000):
        weights = {f"j{i}": rng.randint(0, 3600) for i in range(rng.randint(1, 12))}
        total = rng.randint(0, 50_000)
        parts = costs.share(total, weights)
        if sum(weights.values()):
            assert sum(parts.values()) == total
            for key, w in weights.items():  # each part within one second of its exact share
                assert abs(parts[key] - total * w / sum(weights.values())) < 1
            for a in weights:  # a larger weight never gets a smaller part
                for b in weights:
                    if weights[a] > weights[b]:
                        assert parts[a] >= parts[b]


def test_every_hour_with_jobs_adds_up_to_its_bill():
    rng = random.Random(11)
    for _ in range(300):
        vms = rng.randint(1, 6)
        runs, billed = {}, {}
        for hour_index in range(3):
            hour = H0 + dt.timedelta(hours=hour_index)
            billed[hour] = rng.randint(0, vms * 3600)
            jobs = {f"job{hour_index}-{k}": rng.randint(0, 3600) for k in range(rng.randint(0, 8))}
            while sum(jobs.values()) > billed[hour]:  # jobs run on billed VMs only
                jobs = {k: v // 2 for k, v in jobs.items()}
            runs[hour] = jobs
        for hour, cost in costs.allocate(billed, runs).items():
            used = sum(cost.compute.values())
            assert sum(cost.compute.values()) + sum(cost.idle.values()) + cost.unallocated == billed[hour]
            if used:
                assert cost.unallocated == 0
            else:
                assert cost.unallocated == billed[hour] and not any(cost.idle.values())


def test_job_totals_sum_the_hours():
    hour2 = H0 + dt.timedelta(hours=1)
    hours = costs.allocate({H0: 7200, hour2: 3600}, {H0: {"a": 1800, "b": 1800}, hour2: {"a": 600}})
    assert costs.job_totals(hours) == {"a": (2400, 1800 + 3000), "b": (1800, 1800)}
