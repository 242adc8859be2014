"""A typed client for the Batch Pool HTTP API: one class per caller.

* `OperatorClient` (an operator key or Entra ID access token): accounts, keys, web services, plan usage.
* `PoolClient` (an account key, at the account's pool service URL): pools and usage.
* `JobsClient` (a web service's API key, at its BatchRequestsUrl): BES 2.0 jobs.

Every error answer of the service is raised as `ApiError`, carrying its error envelope;
a service that cannot be reached raises `Unreachable`.
"""
from __future__ import annotations

import re
import time
from typing import Any, Callable, Iterator, Optional
from urllib.parse import quote, urlsplit, urlunsplit

import requests

JSON = dict[str, Any]
Trace = Optional[Callable[[str], None]]

TERMINAL = ("Finished", "Failed", "Cancelled")
API_VERSION = {"api-version": "2.0"}
_UNSET: Any = object()


class BatchPoolError(Exception):
    """Anything the client could not do."""


class Unreachable(BatchPoolError):
    """No answer from the service (connection refused, name unknown, timeout)."""


class ApiError(BatchPoolError):
    """An error answer, with Azure ML's envelope: `category` (BadArgument, NotFound, ...),
    `code` (the specific one, e.g. PoolNotFound), `target` and `message`."""

    def __init__(self, status: int, envelope: JSON | None, fallback: str = "", retry_after: float | None = None):
        error = (envelope or {}).get("error") or {}
        self.retry_after = retry_after  # seconds, from a 503's Retry-After
        detail = (error.get("details") or [{}])[0]
        self.status = status
        self.envelope = envelope
        self.category = error.get("code") or f"HTTP{status}"
        self.code = detail.get("code") or self.category
        self.target = detail.get("target")
        self.message = error.get("message") or fallback or f"the service answered {status}"
        super().__init__(f"{status} {self.code}: {self.message}")


_SECRET_QUERY = re.compile(r"((?:^|[?&])(?:sig|code|key)=)[^&#\s]+", re.I)


def mask(text: str) -> str:
    """A URL or header value with its secrets replaced: SAS signatures and `code=` keys."""
    return _SECRET_QUERY.sub(r"\1***", text)


def _masked_headers(headers: dict[str, str]) -> str:
    shown = []
    for name, value in headers.items():
        if name.lower() in ("authorization", "x-functions-key"):
            scheme = value.split(" ", 1)[0] + " " if name.lower() == "authorization" else ""
            value = scheme + "***"
        shown.append(f"{name}: {value}")
    return ", ".join(shown)


class _Http:
    """One authenticated caller: a session, its key header, and an optional trace."""

    def __init__(self, headers: dict[str, str], trace: Trace = None, timeout: float = 60.0,
                 session: requests.Session | None = None):
        self._headers = headers
        self._trace = trace
        self._timeout = timeout
        self._session = session or requests.Session()

    def call(self, method: str, url: str, body: Any = None, params: dict | None = None) -> Any:
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        prepared = requests.Request(method, url, headers=headers, json=body, params=params).prepare()
        began = time.monotonic()
        if self._trace:
            self._trace(f"> {method} {mask(prepared.url or url)} ({_masked_headers(headers)})")
        try:
            response = self._session.send(prepared, timeout=self._timeout)
        except requests.RequestException as error:
            raise Unreachable(f"cannot reach {mask(url)}: {type(error).__name__}") from None
        if self._trace:
            self._trace(f"< {response.status_code} in {time.monotonic() - began:.3f} s, "
                        f"{len(response.content)} bytes")
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = None
        if response.status_code >= 400:
            raise ApiError(response.status_code, data if isinstance(data, dict) else None,
                           "" if data is not None else response.reason or "",
                           _seconds(response.headers.get("Retry-After")))
        return data


def _seconds(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None


# How long following a job rides out a service that answers 503 or not at all.
FOLLOW_OUTAGE_SECONDS = 300.0


def transient(error: BatchPoolError) -> bool:
    """An answer worth waiting out: no answer, or 502-504."""
    return isinstance(error, Unreachable) or (isinstance(error, ApiError) and error.status in (502, 503, 504))


def _segment(value: str) -> str:
    return quote(value, safe="")


def _range(start: str | None, end: str | None) -> dict:
    return {name: value for name, value in (("from", start), ("to", end)) if value}


class OperatorClient:
    """The operator's calls, with an operator credential: one of the deployment's operator
    keys, or a Microsoft Entra ID access token carrying the operator app role."""

    def __init__(self, base_url: str, operator_key: str, trace: Trace = None, timeout: float = 60.0):
        self.api = base_url.rstrip("/") + "/api"
        self._http = _Http({"Authorization": f"Bearer {operator_key}"}, trace, timeout)

    def create_account(self, account_id: str, subscription_id: str, max_pools: int, max_vms_per_pool: int) -> JSON:
        """Create (201, with PrimaryKey and SecondaryKey) or change an account's quotas."""
        return self._http.call("PUT", f"{self.api}/accounts/{_segment(account_id)}",
                               {"SubscriptionId": subscription_id, "MaxPools": max_pools,
                                "MaxVmsPerPool": max_vms_per_pool})

    def get_account(self, account_id: str) -> JSON:
        return self._http.call("GET", f"{self.api}/accounts/{_segment(account_id)}")

    def list_accounts(self) -> list[JSON]:
        return self._http.call("GET", f"{self.api}/accounts")["Accounts"]

    def regenerate_key(self, account_id: str, key_name: str) -> JSON:
        return self._http.call("POST",
                               f"{self.api}/accounts/{_segment(account_id)}/keys/{_segment(key_name)}/regenerate")

    def _service_url(self, subscription_id: str, service_id: str) -> str:
        return f"{self.api}/subscriptions/{_segment(subscription_id)}/services/{_segment(service_id)}"

    def create_service(self, subscription_id: str, service_id: str, name: str, scorer: str, kind: str = "New",
                       billing_plan_id: str | None = None, timeout_seconds: int | None = None,
                       output_names: list[str] | None = None, notification_url: str | None = None,
                       max_retries: int | None = None, max_queued_seconds: int | None = None) -> JSON:
        """Register a web service (201, with its ApiKey and WebhookSecret, shown this once)."""
        body: JSON = {"Name": name, "Kind": kind, "Scorer": scorer}
        for field, value in (("BillingPlanId", billing_plan_id), ("TimeoutSeconds", timeout_seconds),
                             ("OutputNames", output_names), ("NotificationUrl", notification_url),
                             ("MaxRetries", max_retries), ("MaxQueuedSeconds", max_queued_seconds)):
            if value is not None:
                body[field] = value
        return self._http.call("PUT", self._service_url(subscription_id, service_id), body)

    def get_service(self, subscription_id: str, service_id: str) -> JSON:
        return self._http.call("GET", self._service_url(subscription_id, service_id))

    def regenerate_webhook_secret(self, subscription_id: str, service_id: str) -> JSON:
        return self._http.call("POST", f"{self._service_url(subscription_id, service_id)}/webhooksecret/regenerate")

    def plans_usage(self, start: str | None = None, end: str | None = None) -> JSON:
        return self._http.call("GET", f"{self.api}/billingplans", params=_range(start, end))

    def plan_usage(self, billing_plan_id: str, start: str | None = None, end: str | None = None) -> JSON:
        return self._http.call("GET", f"{self.api}/billingplans/{_segment(billing_plan_id)}/usage",
                               params=_range(start, end))


class PoolClient:
    """A pool owner's calls, at the account's pool service URL with one of its keys."""

    def __init__(self, pool_service_url: str, account_key: str, trace: Trace = None, timeout: float = 60.0):
        self.url = pool_service_url.rstrip("/")
        self._http = _Http({"Authorization": f"Bearer {account_key}"}, trace, timeout)

    def create_pool(self, pool_id: str, vm_count: int, service_swagger_url: str,
                    auto_scale_down_minutes: int | None = None) -> JSON:
        body: JSON = {"PoolId": pool_id, "VmCount": vm_count, "ServiceSwaggerUrl": service_swagger_url}
        if auto_scale_down_minutes is not None:
            body["AutoScaleDownAfterMinutes"] = auto_scale_down_minutes
        return self._http.call("POST", f"{self.url}/pools", body)

    def list_pools(self) -> list[JSON]:
        return self._http.call("GET", f"{self.url}/pools")["Pools"]

    def get_pool(self, pool_id: str) -> JSON:
        return self._http.call("GET", f"{self.url}/pools/{_segment(pool_id)}")

    def resize_pool(self, pool_id: str, vm_count: int, auto_scale_down_minutes: int | None = _UNSET) -> JSON:
        """Resize; `auto_scale_down_minutes` None turns auto scale-down off, left out keeps it."""
        body: JSON = {"VmCount": vm_count}
        if auto_scale_down_minutes is not _UNSET:
            body["AutoScaleDownAfterMinutes"] = auto_scale_down_minutes
        return self._http.call("POST", f"{self.url}/pools/{_segment(pool_id)}/resize", body)

    def delete_pool(self, pool_id: str) -> JSON:
        return self._http.call("DELETE", f"{self.url}/pools/{_segment(pool_id)}")

    def usage(self, pool_id: str | None = None, start: str | None = None, end: str | None = None) -> JSON:
        params = _range(start, end)
        if pool_id:
            params["poolId"] = pool_id
        return self._http.call("GET", f"{self.url}/usage", params=params)


def jobs_endpoint(batch_requests_url: str) -> str:
    """The jobs URL of a BatchRequestsUrl, without its query (`?api-version=2.0`)."""
    parts = urlsplit(batch_requests_url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class JobsClient:
    """A service consumer's BES 2.0 calls, at the service's BatchRequestsUrl with its API key."""

    def __init__(self, batch_requests_url: str, api_key: str, trace: Trace = None, timeout: float = 60.0):
        self.url = jobs_endpoint(batch_requests_url)
        self._http = _Http({"Authorization": f"Bearer {api_key}"}, trace, timeout)

    def submit(self, request: JSON) -> str:
        """Submit a job (it does not run until started); returns its id."""
        return str(self._http.call("POST", self.url, request, params=API_VERSION)).strip('"')

    def start(self, job_id: str) -> JSON:
        return self._http.call("POST", f"{self.url}/{_segment(job_id)}/start", params=API_VERSION)

    def get(self, job_id: str) -> JSON:
        return self._http.call("GET", f"{self.url}/{_segment(job_id)}", params=API_VERSION)

    def list(self, top: int | None = None, continuation_token: str | None = None) -> JSON:
        params = dict(API_VERSION)
        if top is not None:
            params["$top"] = str(top)
        if continuation_token:
            params["continuationToken"] = continuation_token
        return self._http.call("GET", self.url, params=params)

    def cancel(self, job_id: str) -> JSON:
        return self._http.call("DELETE", f"{self.url}/{_segment(job_id)}", params=API_VERSION)

    def events(self, job_id: str) -> JSON:
        """The job's push events and how their delivery went."""
        return self._http.call("GET", f"{self.url}/{_segment(job_id)}/events", params=API_VERSION)

    def follow(self, job_id: str, interval: float = 1.0, outage: float = FOLLOW_OUTAGE_SECONDS) -> Iterator[JSON]:
        """Each status of the job, polled every `interval` seconds, until it has ended; a
        service that answers 503 (or not at all) is waited out for up to `outage` seconds."""
        failing_since = None
        while True:
            try:
                status = self.get(job_id)
            except BatchPoolError as error:
                now = time.monotonic()
                failing_since = failing_since or now
                if not transient(error) or now - failing_since > outage:
                    raise
                retry_after = error.retry_after if isinstance(error, ApiError) else None
                time.sleep(min(30.0, retry_after if retry_after is not None else max(interval, 2.0)))
                continue
            failing_since = None
            yield status
            if status["StatusCode"] in TERMINAL:
                return
            time.sleep(interval)


def result_url(result: JSON) -> str:
    """Where an output of a job's Results is read: BaseLocation + RelativeLocation + SasBlobToken."""
    return f"{result['BaseLocation']}{result['RelativeLocation']}{result['SasBlobToken'] or ''}"


def download(result: JSON, path: str, timeout: float = 300.0) -> int:
    """Save one output of a job's Results to `path` through its token; returns the bytes written."""
    url = result_url(result)
    written = 0
    try:
        with requests.get(url, stream=True, timeout=timeout) as response:
            if response.status_code >= 400:
                raise ApiError(response.status_code, None, f"the output answered {response.status_code} "
                                                           f"{response.reason} at {mask(url)}")
            with open(path, "wb") as file:
                for chunk in response.iter_content(1 << 20):
                    file.write(chunk)
                    written += len(chunk)
    except requests.RequestException as error:
        raise Unreachable(f"cannot read {mask(url)}: {type(error).__name__}") from None
    return written
