"""Signed push events: every state change of a job POSTed to its NotificationUrl, in order,
signed with the web service's webhook secret, retried with back-off and dead-lettered at last;
the delivery log tells how each went."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared import signing
from tests.e2e.harness import unique, wait_for
from tests.e2e.test_bad_input import error_of
from tests.e2e.test_jobs import census_csv, ready_pool


class Receiver:
    """An HTTP receiver on a free loopback port that answers 500 to its first `failing`
    requests (and to every one while `down`), keeping each request it got."""

    def __init__(self, failing: int = 0, down: bool = False):
        self.failing, self.down = failing, down
        self.got: list[tuple[dict, bytes, int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    status = 500 if receiver.down or len(receiver.got) < receiver.failing else 200
                    receiver.got.append((dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/batchpool"

    def accepted(self, job_id: str) -> list[tuple[dict, bytes]]:
        with self.lock:
            return [(h, b) for h, b, status in self.got if status == 200 and json.loads(b)["JobId"] == job_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for one in made:
        one.close()


def _service(api, tenant, **extra) -> tuple[str, str, str]:
    """A new web service of the tenant's subscription: its jobs path, API key, webhook secret."""
    created = api.put_service(tenant.subscription_id, unique("hooks"), **extra)
    assert created.status_code == 201, created.text
    body = created.json()
    jobs = f"/api/subscriptions/{tenant.subscription_id}/services/{body['ServiceId']}/jobs"
    return jobs, body["ApiKey"], body["WebhookSecret"]


def _log(api, jobs, key, job_id) -> dict:
    answer = api.job(jobs, key, suffix=f"/{job_id}/events")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_receiver_that_fails_at_first_gets_every_event_in_order_and_signed(api, tenant, blobs, receiver):
    hook = receiver(failing=3)
    jobs, key, secret = _service(api, tenant)
    blobs.put("events", "in.csv", census_csv(1000))
    pool = ready_pool(api, tenant, 1, unique("ev"))
    body = lambda **extra: {**blobs.job_body("events/in.csv", f"events/{unique('o')}.csv", pool, **extra),
                            "NotificationUrl": hook.url}
    first, _ = api.run_job(jobs, key, body(SecondsPerChunk=1.5))
    second, queued = api.run_job(jobs, key, body())
    assert queued["QueuePosition"] == 1
    for job_id in (first, second):
        assert api.wait_job(jobs, key, job_id, timeout=90)["StatusCode"] == "Finished"
        wait_for(lambda j=job_id: all(e["State"] == "Delivered" for e in _log(api, jobs, key, j)["Events"]),
                 timeout=60)

    kinds = {}
    for job_id in (first, second):
        accepted = hook.accepted(job_id)
        sequences = [json.loads(b)["Sequence"] for _, b in accepted]
        assert sequences == list(range(1, len(sequences) + 1)), "each event once accepted, in order"
        for headers, raw in accepted:
            assert signing.verify(secret, headers[signing.HEADER], raw, time.time())
            assert headers["X-BatchPool-Event"] == json.loads(raw)["Type"]
        kinds[job_id] = [json.loads(b)["Type"] for _, b in accepted]
    assert kinds[first][0] == "Submitted" and kinds[first][1] == "Started" and kinds[first][-1] == "Finished"
    assert "Progress" in kinds[first], "a job of several seconds tells its progress"
    assert kinds[second][:3] == ["Submitted", "Queued", "Started"] and kinds[second][-1] == "Finished"
    queued_event = json.loads(hook.accepted(second)[1][1])
    assert queued_event["QueuePosition"] == 1 and queued_event["EventId"] == f"{second}-2"

    # The three 500s were retried after a back-off; the log counts every attempt.
    events = [e for job_id in (first, second) for e in _log(api, jobs, key, job_id)["Events"]]
    assert sum(e["Attempts"] - 1 for e in events) == 3 == sum(1 for *_, status in hook.got if status == 500)
    assert all(e["LastOutcome"] == "HTTP 200" and e["DeliveredAt"] for e in events)
    assert _log(api, jobs, key, first)["NotificationUrl"] == hook.url
    assert all(secret not in json.dumps(e) for e in events)


def test_a_forged_or_replayed_delivery_is_detected(api, tenant, blobs, receiver):
    hook = receiver()
    jobs, key, secret = _service(api, tenant, NotificationUrl=hook.url)  # the service's default receiver
    job_id = api.job(jobs, key, "POST", body={"Input": blobs.location("events/none.csv")}).json()
    api.job(jobs, key, "DELETE", f"/{job_id}")
    wait_for(lambda: len(hook.accepted(job_id)) == 2, timeout=30)
    (headers, raw), (_, cancelled) = hook.accepted(job_id)
    assert json.loads(cancelled)["Type"] == "Cancelled"
    header = headers[signing.HEADER]
    assert signing.verify(secret, header, raw, time.time())
    assert not signing.verify("another-secret", header, raw, time.time())
    assert not signing.verify(secret, header, raw.replace(b"Submitted", b"Finished"), time.time())
    assert not signing.verify(secret, header, raw, time.time() + 3600), "an old delivery replayed"
    assert not signing.verify(secret, "t=abc,v1=00", raw, time.time())

    # A new secret signs the events sent after it; the old one no longer checks.
    rotated = api.call("POST", f"/api/subscriptions/{tenant.subscription_id}/services/"
                               f"{jobs.split('/')[-2]}/webhooksecret/regenerate", admin=True)
    assert rotated.status_code == 200
    new_secret = rotated.json()["WebhookSecret"]
    later = api.job(jobs, key, "POST", body={"Input": blobs.location("events/none.csv")}).json()
    wait_for(lambda: len(hook.accepted(later)) == 1, timeout=30)
    (headers, raw), = hook.accepted(later)
    assert signing.verify(new_secret, headers[signing.HEADER], raw, time.time())
    assert not signing.verify(secret, headers[signing.HEADER], raw, time.time())
    api.job(jobs, key, "DELETE", f"/{later}")


def test_a_receiver_that_stays_down_gets_its_events_dead_lettered_in_order(api, tenant, blobs, receiver):
    hook = receiver(down=True)
    jobs, key, _ = _service(api, tenant)
    job_id = api.job(jobs, key, "POST", body={"Input": blobs.location("events/none.csv"),
                                              "NotificationUrl": hook.url}).json()
    api.job(jobs, key, "DELETE", f"/{job_id}")
    events = wait_for(lambda: (e := _log(api, jobs, key, job_id)["Events"]) and
                      all(x["State"] == "DeadLettered" for x in e) and len(e) == 2 and e, timeout=60)
    assert [e["Attempts"] for e in events] == [4, 4]  # WEBHOOK_MAX_ATTEMPTS in the suite
    assert [e["Event"]["Type"] for e in events] == ["Submitted", "Cancelled"]
    tries = [json.loads(b)["Sequence"] for _, b, _ in hook.got]
    assert tries == [1, 1, 1, 1, 2, 2, 2, 2], "the second event waits until the first is done with"


def test_notification_urls_outside_the_allow_list_are_refused(api, tenant, blobs):
    jobs, key, _ = _service(api, tenant)
    base = {"Input": blobs.location("events/none.csv")}
    for url, code in (("https://hooks.example.com/x", "NotificationHostNotAllowed"),
                      ("http://10.0.0.5/x", "InvalidValue"), ("ftp://127.0.0.1/x", "InvalidValue"),
                      ("http://user:pw@127.0.0.1/x", "InvalidValue"), ("", "InvalidValue"), (7, "InvalidValue")):
        refused = api.job(jobs, key, "POST", body={**base, "NotificationUrl": url})
        assert refused.status_code == 400 and error_of(refused) == code, (url, refused.text)
        service = api.put_service(tenant.subscription_id, unique("hooks"), NotificationUrl=url)
        assert service.status_code == 400, url
    missing = api.job(jobs, key, suffix="/00000000000000aaaaaaaaaaaaaaaa/events")
    assert missing.status_code == 404
