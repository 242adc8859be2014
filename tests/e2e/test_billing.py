"""SPEC §4 rule 4 over HTTP: the ledger equals the VM timestamps, whatever the timer does."""
import datetime as dt
import time

import pytest

from devhost.azurite import start_azurite
from shared import layout
from tests.e2e.conftest import APP_ENV, make_tenant
from tests.e2e.harness import ROOT, Api, Blobs, HostProcess, wait_for
from tests.e2e.test_jobs import census_csv
from tests.e2e.test_pools import create, parse

BILLING_ENV = dict(APP_ENV, BILLING_SCHEDULE="*/2 * * * * *")


class BillingStack:
    def __init__(self, logs_dir):
        self.logs_dir = logs_dir
        self.azurite = start_azurite(ROOT, None, log_file=logs_dir / "azurite-billing.log")
        self.blobs = Blobs(self.azurite.connection_string)
        self.starts = 0
        self.start()

    def start(self):
        self.starts += 1
        self.host = HostProcess(ROOT, self.azurite.connection_string, instances=2, extra_env=BILLING_ENV,
                                log_path=self.logs_dir / f"billing-host-{self.starts}.log")
        self.api = Api(self.host.url, self.host.operator_key)
        self.master = {"x-functions-key": self.host.master_key}  # the runtime's admin API

    def stop(self):
        self.host.stop()


@pytest.fixture(scope="module")
def stack(logs_dir):
    billing_stack = BillingStack(logs_dir)
    yield billing_stack
    billing_stack.stop()
    billing_stack.azurite.stop()


@pytest.fixture(scope="module")
def idle_pool(stack):
    """A pool that scales itself down after a minute without work (checked last)."""
    tenant = make_tenant(stack.api)
    created = stack.api.call("POST", tenant.pools, {"PoolId": "sleepy", "VmCount": 2, "AutoScaleDownAfterMinutes": 1,
                                                    "ServiceSwaggerUrl": tenant.swagger_url}, key=tenant.primary)
    assert created.status_code == 201 and created.json()["AutoScaleDownAfterMinutes"] == 1
    return tenant, time.monotonic()


def report(stack, tenant, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = stack.api.call("GET", f"/api/accounts/{tenant.account_id}/usage?{query}", key=tenant.primary)
    assert response.status_code == 200, response.text
    return response.json()


def pool_line(body, pool_id):
    return next(p for p in body["Pools"] if p["PoolId"] == pool_id)


def seconds_until(vms, until: dt.datetime) -> int:
    total = 0
    for vm in vms:
        if vm["ProvisionedAt"] is None:
            continue
        end = min(parse(vm["DeletedAt"]) if vm["DeletedAt"] else until, until)
        total += max(0, int((end - parse(vm["ProvisionedAt"])).total_seconds()))
    return total


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class VmWatch:
    """What the client saw of each VM: when it asked for it, first saw it Idle, asked for it
    to go and saw that answered. Its bill must lie between (seen Idle -> asked to go) and
    (asked for + provisioning -> answered), to the second."""

    def __init__(self):
        self.asked, self.idle, self.going, self.gone = {}, {}, {}, {}

    def ask(self, call, vm_ids):
        sent = now()
        response = call()
        for vm_id in vm_ids:
            self.asked[vm_id] = sent
        return response

    def see_idle(self, api, path, key, count):
        pool = wait_for(lambda: (p := api.call("GET", path, key=key).json())["VmCounts"]["Idle"] == count and p,
                        timeout=30, interval=0.1)
        seen = now()
        for vm in pool["Vms"]:
            if vm["State"] == "Idle":
                self.idle.setdefault(vm["VmId"], seen)

    def remove(self, call, vm_ids):
        sent = now()
        response = call()
        answered = now()
        for vm_id in vm_ids:
            self.going[vm_id], self.gone[vm_id] = sent, answered
        return response

    def brackets(self) -> tuple[int, int]:
        provisioning = dt.timedelta(seconds=int(APP_ENV["VM_PROVISIONING_SECONDS"]))
        low = sum(int((self.going[v] - self.idle[v]).total_seconds()) - 1 for v in self.gone)
        high = sum(int((self.gone[v] - (self.asked[v] + provisioning)).total_seconds()) + 1 for v in self.gone)
        return low, high


def test_ledger_equals_the_vm_timestamps_after_resizes_and_delete(stack, idle_pool):
    api = stack.api
    tenant = make_tenant(api)
    path, key = f"{tenant.pools}/busy-day", tenant.primary
    watch = VmWatch()
    assert watch.ask(lambda: create(api, tenant, 2, "busy-day"), ["vm-000000", "vm-000001"]).status_code == 201
    watch.see_idle(api, path, key, 2)
    time.sleep(1.1)  # lets the VMs bill (a duration, not a wait for anything)
    watch.ask(lambda: api.call("POST", f"{path}/resize", {"VmCount": 3}, key=key), ["vm-000002"])
    watch.see_idle(api, path, key, 3)
    time.sleep(1.1)
    shrunk = watch.remove(lambda: api.call("POST", f"{path}/resize", {"VmCount": 1}, key=key),
                          ["vm-000002", "vm-000001"])
    assert shrunk.json()["VmCounts"]["Idle"] == 1
    time.sleep(1.1)
    before = api.call("GET", path, key=key).json()
    deleted = watch.remove(lambda: api.call("DELETE", path, key=key), ["vm-000000"]).json()
    deleted_at = parse(deleted["DeletedAt"]).replace(microsecond=0)
    expected = seconds_until(before["Vms"], deleted_at)
    assert deleted["ComputeSeconds"] == expected > 0
    low, high = watch.brackets()
    assert low <= expected <= high, (low, expected, high)
    line = wait_for(lambda: (p := pool_line(report(stack, tenant), "busy-day"))["VmSeconds"] == expected and p,
                    timeout=20)
    assert line["ComputeHours"] == round(expected / 3600, 6) and line["State"] == "Deleted"
    # Ticks after the pool is gone add nothing: wait until two more have passed it by.
    done_through = parse(line["BilledThrough"])
    wait_for(lambda: parse(pool_line(report(stack, tenant), "busy-day")["BilledThrough"]) > done_through, timeout=20)
    body = report(stack, tenant)
    assert pool_line(body, "busy-day")["VmSeconds"] == expected == body["Total"]["VmSeconds"]
    assert sum(h["VmSeconds"] for h in body["Hourly"]) == expected
    plan = next(p for p in body["BillingPlans"] if p["BillingPlanId"] == "plan-a")
    assert plan["PoolVmSeconds"] == expected


def admin_runs(stack) -> int:
    """Timer runs made through the admin API, as the hosts logged them."""
    return sum(log.read_text(errors="replace").count("function run by the admin API function=BillingTimer")
               for log in stack.logs_dir.glob("billing-host-*.log"))


def test_ticks_run_side_by_side_bill_each_second_once(stack, idle_pool):
    """BillingTimer run many times at once, on both instances and beside its schedule, while
    the pool runs and after it stops: the ledger still holds each VM-second once."""
    api = stack.api
    tenant = make_tenant(api)
    path, key = f"{tenant.pools}/doubled", tenant.primary
    watch = VmWatch()
    watch.ask(lambda: create(api, tenant, 2, "doubled"), ["vm-000000", "vm-000001"])
    watch.see_idle(api, path, key, 2)
    runs = admin_runs(stack)
    for _ in range(3):
        for response in [api.call("POST", "/admin/functions/BillingTimer", {"input": ""}, headers=stack.master)
                         for _ in range(4)]:
            assert response.status_code == 202
        runs += 4
        wait_for(lambda: admin_runs(stack) >= runs, timeout=30)
    watch.remove(lambda: api.call("POST", f"{path}/resize", {"VmCount": 0}, key=key), ["vm-000000", "vm-000001"])
    for _ in range(4):
        assert api.call("POST", "/admin/functions/BillingTimer", {"input": ""}, headers=stack.master).status_code == 202
    runs += 4
    wait_for(lambda: admin_runs(stack) >= runs, timeout=30)
    pool = api.call("GET", path, key=key).json()
    expected = seconds_until(pool["Vms"], now())
    low, high = watch.brackets()
    assert low <= expected <= high and pool["ComputeSeconds"] == expected, (low, expected, high)
    line = wait_for(lambda: (p := pool_line(report(stack, tenant), "doubled"))["VmSeconds"] == expected and p,
                    timeout=20)
    assert sum(h["VmSeconds"] for h in report(stack, tenant)["Hourly"]) == expected == line["VmSeconds"]
    assert api.call("POST", "/admin/functions/NoSuchFunction", {"input": ""}, headers=stack.master).status_code == 404
    assert api.call("POST", "/admin/functions/BillingTimer", {"input": ""}).status_code == 401
    # The runtime's admin API takes the host's master key, and no operator credential.
    assert api.call("POST", "/admin/functions/BillingTimer", {"input": ""}, admin=True).status_code == 401


def test_a_stopped_timer_catches_up_exactly_when_restarted(stack, idle_pool):
    tenant = make_tenant(stack.api)
    assert create(stack.api, tenant, 2, "steady").status_code == 201
    wait_for(lambda: pool_line(report(stack, tenant), "steady")["VmSeconds"] > 0, timeout=20)
    stack.stop()
    time.sleep(6)  # no instance runs the timer: the pool keeps running, unaccrued
    stack.start()
    first = pool_line(report(stack, tenant), "steady")["BilledThrough"]
    line = wait_for(lambda: (p := pool_line(report(stack, tenant), "steady"))["BilledThrough"] != first and p,
                    timeout=20)
    vms = stack.api.call("GET", f"{tenant.pools}/steady", key=tenant.primary).json()["Vms"]
    billed_through = parse(line["BilledThrough"])
    assert line["VmSeconds"] == seconds_until(vms, billed_through)
    assert line["VmSeconds"] >= 2 * 6


def test_classic_jobs_are_billed_by_their_run_time(stack, idle_pool):
    tenant = make_tenant(stack.api)
    stack.blobs.put("inputs", "small.csv", census_csv(300))
    job_id = stack.api.job(tenant.jobs, tenant.api_key, "POST", body=stack.blobs.job_body(
        "inputs/small.csv", "outputs/small.csv", SecondsPerChunk=0.8)).json()
    # The client's own view of the run: it ran no earlier than the start call and no later
    # than the first answer saying it ended; it was running from the first to the last
    # answer saying so.
    asked = now()
    stack.api.job(tenant.jobs, tenant.api_key, "POST", f"/{job_id}/start")
    seen_running = []
    while (status := stack.api.job(tenant.jobs, tenant.api_key, suffix=f"/{job_id}").json())["StatusCode"] in (
            "NotStarted", "Running"):
        if status["StatusCode"] == "Running":
            seen_running.append(now())
        time.sleep(0.1)
    ended_seen = now()
    assert status["StatusCode"] == "Finished" and len(seen_running) >= 2
    low = int((seen_running[-1] - seen_running[0]).total_seconds()) - 1
    high = int((ended_seen - asked).total_seconds()) + 1
    # The run's time reaches the ledger as the run is finalized, just after it ends.
    body = wait_for(lambda: (b := report(stack, tenant))["ClassicJobs"]["Jobs"] == 1 and b, timeout=20)
    seconds = body["ClassicJobs"]["VmSeconds"]
    assert body["ClassicJobs"]["ComputeHours"] == round(seconds / 3600, 6)
    assert max(low, 1) <= seconds <= high, (low, seconds, high)
    plans = stack.api.call("GET", "/api/billingplans/plan-a/usage", admin=True)
    assert plans.status_code == 200 and plans.json()["ClassicJobs"]["Jobs"] >= 1


def test_bad_usage_queries(stack, idle_pool):
    tenant = make_tenant(stack.api)
    other = make_tenant(stack.api)
    create(stack.api, other, 1, "theirs")
    path = f"/api/accounts/{tenant.account_id}/usage"
    for query, code in [("from=yesterday", "InvalidDate"), ("to=2026-13-40", "InvalidDate"),
                        ("from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "InvalidRange"),
                        ("from=2019-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "InvalidRange")]:
        response = stack.api.call("GET", f"{path}?{query}", key=tenant.primary)
        assert response.status_code == 400 and response.json()["error"]["details"][0]["code"] == code, query
    foreign = stack.api.call("GET", f"{path}?poolId=theirs", key=tenant.primary)
    assert foreign.status_code == 404 and foreign.json()["error"]["details"][0]["code"] == "PoolNotFound"
    assert stack.api.call("GET", path, key=other.primary).status_code == 401
    assert stack.api.call("GET", path).status_code == 401
    assert stack.api.call("GET", "/api/billingplans/plan-a/usage").status_code == 401
    bad_plan_range = stack.api.call("GET", "/api/billingplans/plan-a/usage?from=nope", admin=True)
    assert bad_plan_range.status_code == 400


def test_an_idle_pool_scales_itself_down_and_reports_the_saving(stack, idle_pool):
    tenant, created_at = idle_pool
    remaining = 62 + 2 + 2 - (time.monotonic() - created_at)  # provisioning, a minute idle, a tick
    if remaining > 0:
        time.sleep(remaining)
    pool = wait_for(lambda: (p := stack.api.call("GET", f"{tenant.pools}/sleepy", key=tenant.primary).json())
                    ["VmCount"] == 0 and p, timeout=20)
    assert pool["VmCounts"]["Idle"] == 0 and all(vm["State"] == "Deleted" for vm in pool["Vms"])
    time.sleep(2)
    body = report(stack, tenant)
    saved = body["AutoScaleDown"]["SavedVmSeconds"]
    assert saved >= 2 and body["AutoScaleDown"]["SavedComputeHours"] == round(saved / 3600, 6)
    assert pool_line(body, "sleepy")["AutoScaleDownSavedVmSeconds"] == saved


def shift_pool_into_the_past(stack, tenant, pool_id: str, by: dt.timedelta) -> list[dict]:
    """Move every timestamp of a pool's rows back by `by`, as if that much time had passed
    since its history happened, and drop its ledger so it is recomputed from the VM rows.
    Done while no instance runs. Returns the VM rows as written."""
    from azure.data.tables import TableServiceClient, UpdateMode
    table = TableServiceClient.from_connection_string(stack.azurite.connection_string).get_table_client("e2ePools")
    partition = layout.pool_partition(tenant.subscription_id, pool_id)
    rows = list(table.query_entities("PartitionKey eq @p", parameters={"p": partition}))
    vms = []
    for row in rows:
        key = row["RowKey"]
        if key.startswith(layout.LEDGER_PREFIX):
            table.delete_entity(row)
            continue
        if key != layout.POOL_ROW and not key.startswith(layout.VM_PREFIX):
            continue
        for field in ("CreatedAt", "ProvisionedAt", "DeletedAt", "IdleSince"):
            if row.get(field):
                row[field] = row[field] - by
        if key == layout.POOL_ROW:
            row["BilledThrough"] = row["CreatedAt"]
        else:
            vms.append(row)
        table.update_entity(row, mode=UpdateMode.REPLACE)
    return vms


def test_a_long_history_is_folded_into_the_pool_and_billed_the_same(stack, idle_pool):
    """Resizes leave deleted VM rows; once their hour is billed the timer folds them into the
    pool row. The bill and the pool's compute seconds stay exact to the second."""
    api = stack.api
    tenant = make_tenant(api)
    path = f"{tenant.pools}/history"
    assert create(api, tenant, 1, "history").status_code == 201
    for _ in range(6):
        assert api.call("POST", f"{path}/resize", {"VmCount": 3}, key=tenant.primary).status_code == 202
        wait_for(lambda: api.call("GET", path, key=tenant.primary).json()["VmCounts"]["Idle"] == 3, timeout=20)
        time.sleep(1.2)  # the two new VMs bill a second or two each
        assert api.call("POST", f"{path}/resize", {"VmCount": 1}, key=tenant.primary).status_code == 202
    assert len(api.call("GET", path, key=tenant.primary).json()["Vms"]) == 13
    stack.stop()
    written = shift_pool_into_the_past(stack, tenant, "history", dt.timedelta(hours=3))
    stack.start()
    restarted = dt.datetime.now(dt.timezone.utc)
    line = wait_for(lambda: (p := pool_line(report(stack, tenant), "history"))
                    and parse(p["BilledThrough"]) > restarted and p, timeout=30)
    pool = stack.api.call("GET", path, key=tenant.primary).json()
    assert pool["FoldedVms"] == 12 and [vm["State"] for vm in pool["Vms"]] == ["Idle"]

    def oracle(until: dt.datetime) -> int:
        total = 0
        for vm in written:
            end = min(vm.get("DeletedAt") or until, until)
            total += max(0, int((end - vm["ProvisionedAt"]).total_seconds()))
        return total

    folded = [vm for vm in written if vm.get("DeletedAt")]
    assert sum(int((vm["DeletedAt"] - vm["ProvisionedAt"]).total_seconds()) for vm in folded) >= 12  # they billed
    assert line["VmSeconds"] == oracle(parse(line["BilledThrough"]))
    assert pool["ComputeSeconds"] == oracle(parse(pool["AsOf"]).replace(microsecond=0))
