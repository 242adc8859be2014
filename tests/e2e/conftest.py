import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from devhost.azurite import start_azurite
from tests.e2e.harness import ROOT, Api, Blobs, HostProcess, check_no_secret_leaked, record_every_response, unique

VM_PROVISIONING_SECONDS = 2
CHUNK_ROWS = 200
# Written by tests/import_probe.py if anything imports it.
IMPORT_PROBE_LOG = Path(tempfile.gettempdir()) / f"batchpool-import-probe-{os.getpid()}.log"
APP_ENV = {"SCORER_PACKAGES": "samples,tests.fixtures", "IMPORT_PROBE_LOG": str(IMPORT_PROBE_LOG),
           "VM_PROVISIONING_SECONDS": str(VM_PROVISIONING_SECONDS), "BATCHPOOL_TABLE_PREFIX": "e2e",
           "CLASSIC_MAX_CONCURRENT_JOBS": "2", "RUN_STALE_SECONDS": "4", "SCORING_CHUNK_ROWS": str(CHUNK_ROWS),
           "DEVHOST_QUEUE_LEASE_SECONDS": "10", "BILLING_SCHEDULE": "*/2 * * * * *", "OUTPUT_RETENTION_MINUTES": "1",
           "NOTIFICATION_HOST_ALLOWLIST": "127.0.0.1", "WEBHOOK_BACKOFF_SECONDS": "1", "WEBHOOK_MAX_ATTEMPTS": "4"}


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session", autouse=True)
def no_secret_leaks(logs_dir):
    """Records every response of the session, and once every test and host has finished
    (this fixture is set up first, so it is torn down last) checks that no secret leaked."""
    record_every_response()
    yield
    check_no_secret_leaked(logs_dir)


@pytest.fixture(scope="session")
def azurite(logs_dir):
    emulator = start_azurite(ROOT, None, log_file=logs_dir / "azurite.log")
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def app_host(azurite, logs_dir):
    host = HostProcess(ROOT, azurite.connection_string, log_path=logs_dir / "app-host.log", extra_env=APP_ENV)
    yield host
    host.stop()


@pytest.fixture(scope="session")
def slow_stack(logs_dir):
    """A second stack whose VMs provision for ten minutes: a VM there stays Provisioning for
    as long as any test needs, whatever the machine's speed."""
    emulator = start_azurite(ROOT, None, log_file=logs_dir / "azurite-slow.log")
    host = HostProcess(ROOT, emulator.connection_string, log_path=logs_dir / "slow-host.log",
                       extra_env={**APP_ENV, "VM_PROVISIONING_SECONDS": "600"})
    yield Api(host.url, host.operator_key), Blobs(emulator.connection_string)
    host.stop()
    emulator.stop()


@pytest.fixture(scope="session")
def api(app_host) -> Api:
    return Api(app_host.url, app_host.operator_key)


@pytest.fixture(scope="session")
def blobs(azurite) -> Blobs:
    return Blobs(azurite.connection_string)


@dataclass
class Tenant:
    account_id: str
    subscription_id: str
    primary: str
    secondary: str
    pool_url: str
    service_id: str
    swagger_url: str
    api_key: str

    @property
    def pools(self) -> str:
        return f"/api/accounts/{self.account_id}/pools"

    @property
    def jobs(self) -> str:
        return f"/api/subscriptions/{self.subscription_id}/services/{self.service_id}/jobs"


def make_tenant(api: Api, max_pools: int = 5, max_vms: int = 8) -> Tenant:
    subscription = unique("sub")
    account = unique("acct")
    created = api.put_account(account, subscription, max_pools, max_vms)
    assert created.status_code == 201, created.text
    service = api.put_service(subscription, unique("svc"))
    assert service.status_code == 201, service.text
    a, s = created.json(), service.json()
    return Tenant(account, subscription, a["PrimaryKey"], a["SecondaryKey"], a["PoolServiceUrl"],
                  s["ServiceId"], s["SwaggerUrl"], s["ApiKey"])


@pytest.fixture
def tenant(api) -> Tenant:
    return make_tenant(api)


@pytest.fixture
def tenant_factory(api):
    return lambda **kw: make_tenant(api, **kw)
