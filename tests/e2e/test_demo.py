"""The README's demo plays the seed's story end to end against the test host."""
from scripts.demo import Demo


def test_demo_two_run_three_wait_then_run_in_order(app_host, azurite):
    lines = []
    result = Demo(app_host.url, app_host.operator_key, azurite.connection_string, out=lines.append).run(
        jobs=5, rows=500, vm_count=2, seconds_per_chunk=1.0)
    assert [j["StatusCode"] for j in result["jobs"]] == ["Finished"] * 5
    assert result["start_order"] == [0, 1, 2, 3, 4]
    assert any("queue position 3" in line for line in lines)
    assert sum("(on vm-" in line for line in lines) == 2
    assert result["compute_seconds"] > 0
