"""Push events: each state change of a job that has a NotificationUrl, POSTed to it signed.

A job's events live in its own partition of the Events table: a `stream` row (the URL, the
next sequence number, which one-time events were written, the delivery lease) and one
`e|<sequence>` row per event with its delivery state. Writing an event and moving the
sequence on is one conditional transaction, so numbers are never reused or skipped.

Delivery goes through the `job-events` queue: a deliverer takes the job's lease and sends
the pending events one at a time in sequence order; a failed attempt is retried after a
back-off (WEBHOOK_BACKOFF_SECONDS, doubling, at most an hour) before any later event of the
job is sent, so a receiver sees each job's events in order. After WEBHOOK_MAX_ATTEMPTS an
event is dead-lettered (its row says so, and a copy goes to `job-events-deadletter`) and the
next one is sent. Every delivery is at least once: a receiver may see an event again, and
tells by its `EventId`.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
import uuid
from urllib.parse import urlsplit

import urllib3
from azure.core.exceptions import AzureError

from shared import admission, attempts, clock, egress, lifecycle, logfields, signing
from shared.bes import host_allowed
from shared.errors import InvalidRequest
from shared.settings import get_settings
from shared.storage import SERVICES, WriteConflict, get_queues, get_store
from shared.storage.calls import describe_storage_error, is_transient
from shared.validation import is_loopback, url_text_problem

log = logging.getLogger(__name__)

EVENTS = "Events"
EVENTS_QUEUE = "job-events"
DEAD_LETTER_QUEUE = "job-events-deadletter"
STREAM = "stream"
PENDING, DELIVERED, DEAD_LETTERED = "Pending", "Delivered", "DeadLettered"
LEASE_SECONDS = 90
BUSY_RETRY_SECONDS = 2
MOST_BACKOFF_SECONDS = 3600
MAX_URL_LENGTH = 2048

SUBMITTED = lifecycle.SUBMITTED


def event_key(sequence: int) -> str:
    return f"e|{sequence:06d}"


def check_url(url, field: str) -> str | None:
    """A notification URL this deployment may call: https (http only on loopback), no user
    name, and a host on NOTIFICATION_HOST_ALLOWLIST. None stays None."""
    if url is None:
        return None
    if not isinstance(url, str) or not url.strip() or len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"{field} must be an https URL of at most {MAX_URL_LENGTH} characters", "InvalidValue",
                             field)
    problem = url_text_problem(url.strip())
    if problem:
        raise InvalidRequest(f"{field} {problem}", "InvalidValue", field)
    parts = urlsplit(url.strip())
    loopback = is_loopback(parts.hostname)
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not loopback) or not parts.hostname \
            or parts.username or parts.password or parts.fragment:
        raise InvalidRequest(f"{field} must be an https URL (http only on a loopback address), without a user "
                             "name or fragment", "InvalidValue", field)
    if not host_allowed(url.strip(), list(get_settings().notification_host_allowlist)):
        raise InvalidRequest(f"{field} names a host this deployment does not call: allowed are "
                             "NOTIFICATION_HOST_ALLOWLIST", "NotificationHostNotAllowed", field)
    return url.strip()


def _body(stream: dict, sequence: int, kind: str, fields: dict, now: dt.datetime) -> str:
    return json.dumps({"EventId": f"{stream['PartitionKey']}-{sequence}", "JobId": stream["PartitionKey"],
                       "ServiceId": stream["ServiceId"], "Sequence": sequence, "Type": kind,
                       "Time": clock.iso(now), **fields})


def _event_row(stream: dict, sequence: int, kind: str, fields: dict, now: dt.datetime) -> dict:
    return {"PartitionKey": stream["PartitionKey"], "RowKey": event_key(sequence), "Sequence": sequence,
            "Type": kind, "Body": _body(stream, sequence, kind, fields, now), "State": PENDING, "Attempts": 0,
            "CreatedAt": now}


def open_stream(job_id: str, subscription_id: str, service_id: str, url: str) -> None:
    """Start a job's events with `Submitted` (its first, sequence 1)."""
    now = clock.utcnow()
    stream = {"PartitionKey": job_id, "RowKey": STREAM, "Url": url, "SubscriptionId": subscription_id,
              "ServiceId": service_id, "Next": 2, "Once": json.dumps([SUBMITTED])}
    get_store().transact(EVENTS, [("create", stream),
                                  ("create", _event_row(stream, 1, SUBMITTED, {"StatusCode": "NotStarted"}, now))])
    _wake(job_id)


def emit(job_id: str, kind: str, fields: dict, once: str | None = None, unless: tuple[str, ...] = ()) -> None:
    """Write the job's next event, if the job has a NotificationUrl. `once`: written at most
    once per job under this name; `unless`: not after any of these. Never raises: an event
    that cannot be written is logged, and the change it reports stands."""
    try:
        for _ in range(10):
            stream = get_store().get(EVENTS, job_id, STREAM)
            if stream is None:
                return
            written = json.loads(stream.get("Once") or "[]")
            if (once and once in written) or any(name in written for name in unless):
                return
            sequence = stream["Next"]
            stream.update({"Next": sequence + 1, "Once": json.dumps(written + [once] if once else written)})
            try:
                get_store().transact(EVENTS, [("replace", stream),
                                              ("create", _event_row(stream, sequence, kind, fields,
                                                                    clock.utcnow()))])
            except WriteConflict:
                continue
            _wake(job_id)
            return
        log.warning("event not written job=%s type=%s (the stream kept changing)", job_id, kind)
    except Exception:
        log.exception("event not written job=%s type=%s", job_id, kind)


def forget(job_id: str) -> None:
    """Remove a job's events (its retention is over)."""
    store = get_store()
    rows = store.rows(EVENTS, job_id, "", select=["PartitionKey", "RowKey"])
    for first in range(0, len(rows), 100):
        store.transact(EVENTS, [("delete", row) for row in rows[first:first + 100]])


def _wake(job_id: str, delay_seconds: int = 0) -> None:
    get_queues().send(EVENTS_QUEUE, {"JobId": job_id}, delay_seconds=delay_seconds)


def _take_lease(job_id: str, holder: str) -> dict | None:
    """The job's stream, leased to `holder`; None if another deliverer holds it (then the job
    is looked at again shortly) or the job has no events."""
    store = get_store()
    stream = store.get(EVENTS, job_id, STREAM)
    if stream is None:
        return None
    now = clock.utcnow()
    if stream.get("LeaseUntil") and stream["LeaseUntil"] > now:
        _wake(job_id, BUSY_RETRY_SECONDS)
        return None
    stream.update({"LeaseUntil": now + dt.timedelta(seconds=LEASE_SECONDS), "LeaseHolder": holder})
    try:
        store.replace(EVENTS, stream)
    except WriteConflict:
        _wake(job_id, BUSY_RETRY_SECONDS)
        return None
    return stream


def _hold(job_id: str, holder: str, seconds: int) -> None:
    """Renew (or with 0 seconds, end) this holder's lease. Events written meanwhile change the
    stream row, so the lease fields are merged into it, once the holder is checked."""
    stream = get_store().get(EVENTS, job_id, STREAM)
    if stream is not None and stream.get("LeaseHolder") == holder:
        get_store().merge(EVENTS, {"PartitionKey": job_id, "RowKey": STREAM,
                                   "LeaseUntil": clock.utcnow() + dt.timedelta(seconds=seconds),
                                   "LeaseHolder": holder if seconds else ""})


def _secret(stream: dict) -> str | None:
    service = get_store().get(SERVICES, stream["SubscriptionId"], stream["ServiceId"])
    return service.get("WebhookSecret") or None if service else None


def _post(url: str, secret: str, body: str, kind: str, attempt: int) -> tuple[bool, str]:
    """POST one event to the receiver, at the address its name was checked to have
    (`shared.egress`). A refused address and a failed connection tell the same outcome."""
    data = body.encode()
    headers = {"Content-Type": "application/json", signing.HEADER: signing.signature(secret, int(time.time()), data),
               "X-BatchPool-Event": kind, "X-BatchPool-Attempt": str(attempt), "User-Agent": "batchpool-events"}
    settings = get_settings()
    try:
        answer = egress.post(url, data, headers, settings.webhook_timeout_seconds,
                             settings.notification_host_allowlist)
    except (egress.Refused, OSError, urllib3.exceptions.HTTPError, ValueError):
        return False, egress.UNREACHABLE
    return 200 <= answer.status < 300, f"HTTP {answer.status}"


async def deliver_off_the_worker(body: bytes, context=None) -> None:
    """Deliver a job's events on a thread of the app's own (`shared.admission`), not the
    worker's shared pool, which HTTP calls need while a slow receiver is waited for. The
    invocation's time counts from here; with too little of it left once it has a thread, the
    job is looked at again by a new message."""
    arrived = time.monotonic()
    job_id = json.loads(body)["JobId"]
    await asyncio.get_running_loop().run_in_executor(admission.threads("events"), admission.attributed, context,
                                                     _deliver_in_time, job_id, arrived)


def _deliver_in_time(job_id: str, arrived: float) -> None:
    plan = admission.current()
    waited = time.monotonic() - arrived
    if not plan.may_start(waited):
        _wake(job_id, BUSY_RETRY_SECONDS)
        log.warning("events handed back job=%s waited_seconds=%.1f", job_id, waited)
        return
    working = plan.working_seconds()
    try:
        counts = deliver(job_id, None if working is None else arrived + working)
    except AzureError as error:
        if not is_transient(error):
            raise
        # Not the receiver's fault, and the invocation does not fail (which would count
        # towards the poison queue): the job is looked at again shortly.
        _wake(job_id, BUSY_RETRY_SECONDS)
        log.warning("events delivery sent on after a storage outage job=%s %s", job_id, describe_storage_error(error))
        return
    log.info("events delivered job=%s %s", job_id, " ".join(f"{k}={v}" for k, v in counts.items()))


def deliver(job_id: str, deadline: float | None = None) -> dict:
    """Send the job's pending events in order, until one fails (it is retried after a
    back-off), none is left, or a POST could not be waited for before `deadline` (monotonic
    clock; the job is then looked at again by a new message). Returns counts, for the log."""
    with logfields.about(job=job_id):
        return _deliver(job_id, deadline)


def _deliver(job_id: str, deadline: float | None) -> dict:
    settings = get_settings()
    store = get_store()
    counts = {"delivered": 0, "failed": 0, "dead_lettered": 0}
    holder = uuid.uuid4().hex
    stream = _take_lease(job_id, holder)
    if stream is None:
        return counts
    try:
        while True:
            _hold(job_id, holder, LEASE_SECONDS)
            pending = store.rows(EVENTS, job_id, "e|", condition="State eq @pending",
                                 parameters={"pending": PENDING}, limit=1)
            if not pending:
                break
            event, now = pending[0], clock.utcnow()
            if event.get("NextAttemptAt") and event["NextAttemptAt"] > now:
                _wake(job_id, max(1, int((event["NextAttemptAt"] - now).total_seconds()) + 1))
                break
            if deadline is not None and time.monotonic() + settings.webhook_timeout_seconds > deadline:
                _wake(job_id)
                break
            event["Attempts"] = (event.get("Attempts") or 0) + 1
            refused = _refusal(stream)
            secret = None if refused else _secret(stream)
            if secret is None:
                ok, outcome = False, refused or ("the web service has no webhook secret: regenerate it to sign "
                                                 "its events")
            else:
                ok, outcome = _post(stream["Url"], secret, event["Body"], event["Type"], event["Attempts"])
            event.update({"LastOutcome": outcome, "LastAttemptAt": now})
            if ok:
                event.update({"State": DELIVERED, "DeliveredAt": clock.utcnow()})
                counts["delivered"] += 1
            elif refused or event["Attempts"] >= settings.webhook_max_attempts:
                event["State"] = DEAD_LETTERED
                get_queues().send(DEAD_LETTER_QUEUE, {"JobId": job_id, "Sequence": event["Sequence"],
                                                      "Outcome": outcome})
                counts["dead_lettered"] += 1
                log.warning("event dead-lettered job=%s sequence=%s attempts=%s outcome=%s", job_id,
                            event["Sequence"], event["Attempts"], outcome)
            else:
                delay = attempts.backoff_seconds(event["Attempts"], settings.webhook_backoff_seconds,
                                                 MOST_BACKOFF_SECONDS)
                event["NextAttemptAt"] = now + dt.timedelta(seconds=delay)
                store.replace(EVENTS, event)
                counts["failed"] += 1
                _wake(job_id, delay)
                break
            store.replace(EVENTS, event)
    finally:
        _hold(job_id, holder, 0)
    return counts


def _refusal(stream: dict) -> str | None:
    """Why this deployment no longer calls the stream's URL (the allow-list changed), if so."""
    try:
        check_url(stream["Url"], "NotificationUrl")
    except InvalidRequest as error:
        return error.message
    return None


def delivery_log(job_id: str) -> dict:
    """A job's events with how their delivery went (what was sent, never the secret)."""
    store = get_store()
    stream = store.get(EVENTS, job_id, STREAM)
    if stream is None:
        return {"JobId": job_id, "NotificationUrl": None, "Events": []}
    rows = store.rows(EVENTS, job_id, "e|")
    return {"JobId": job_id, "NotificationUrl": stream["Url"],
            "Events": [{"Sequence": row["Sequence"], "Type": row["Type"], "State": row["State"],
                        "Attempts": row.get("Attempts") or 0, "LastOutcome": row.get("LastOutcome"),
                        "CreatedAt": clock.iso(row["CreatedAt"]), "LastAttemptAt": clock.iso(row.get("LastAttemptAt")),
                        "DeliveredAt": clock.iso(row.get("DeliveredAt")),
                        "NextAttemptAt": clock.iso(row.get("NextAttemptAt")) if row["State"] == PENDING else None,
                        "Event": json.loads(row["Body"])} for row in rows]}
