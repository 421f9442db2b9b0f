"""Deadlines (issue 26.1): a job enqueued with expire_at or ttl_ms is never handed
out after it, whatever path it takes back to its queue; it becomes a dead letter
with reason "expired", counted, and no call's cost grows with how many expired."""

from __future__ import annotations

import urllib.request

import pytest

from sharq_client import Client
from sharq_core import BadArgumentException, SharQ
from tests.support import Clock, ServerProcess, wait_for

START = 1_700_000_000_000


def test_a_job_past_its_deadline_is_never_dequeued(sq: SharQ, clock: Clock) -> None:
    sq.enqueue({"otp": 1}, 0, "otp", "u1", "sms", ttl_ms=60_000)
    sq.enqueue({"otp": 2}, 0, "later", "u1", "sms", expire_at=clock.now + 120_000)
    assert sq.job_status("sms", "u1", "otp")["expire_at"] == clock.now + 60_000
    clock.advance(60_000)
    job = sq.dequeue("sms")
    assert job["job_id"] == "later"  # "otp" expired the moment its deadline came
    status = sq.job_status("sms", "u1", "otp")
    assert (status["state"], status["expired_at"], status["reason"]) == ("expired", START + 60_000, "expired")
    dead = sq.dead_letters("sms")["jobs"]
    assert [(j["job_id"], j["reason"], j["expire_at"]) for j in dead] == [("otp", "expired", START + 60_000)]
    stats = sq.type_stats("sms")
    assert (stats["counters"]["expired"], stats["counters"]["dead"], stats["jobs"]["queued"]) == (1, 1, 0)


def test_a_job_before_its_deadline_goes_out_as_usual(sq: SharQ, clock: Clock) -> None:
    sq.enqueue(1, 0, "j", "u1", "sms", ttl_ms=10)
    clock.advance(9)
    assert sq.dequeue("sms")["job_id"] == "j"
    assert sq.finish("j", "u1", "sms")["status"] == "success"
    clock.advance(100)
    assert sq.requeue() == {"requeued": 0, "dead": 0}  # its index entry goes; nothing is touched
    assert sq.type_stats("sms")["counters"]["expired"] == 0


def test_paused_queue_expires_by_the_requeue_pass(sq: SharQ, clock: Clock) -> None:
    """An OTP behind a paused tenant: the pass expires it, though no take reaches it."""
    sq.enqueue("newsletter", 0, "n1", "tenant", "sms")
    sq.enqueue("otp", 0, "otp", "tenant", "sms", ttl_ms=60_000)
    sq.enqueue("newsletter", 0, "n2", "tenant", "sms")
    sq.pause("sms", "tenant")
    clock.advance(60_000)
    assert sq.requeue() == {"requeued": 0, "dead": 1}
    assert sq.job_status("sms", "tenant", "otp")["state"] == "expired"
    assert sq.get_queue_length("sms", "tenant") == 2
    sq.resume("sms", "tenant")
    assert [sq.dequeue("sms")["job_id"] for _ in range(2)] == ["n1", "n2"]


def test_delayed_job_expires_before_it_is_due(sq: SharQ, clock: Clock) -> None:
    """ttl_ms counts from the enqueue even for a delayed job."""
    sq.enqueue(1, 0, "j", "u1", "sms", delay_ms=1000, ttl_ms=500)
    clock.advance(500)
    assert sq.requeue() == {"requeued": 0, "dead": 1}
    assert sq.job_status("sms", "u1", "j")["state"] == "expired"
    assert sq.queue_info("sms", "u1")["scheduled"] == 0
    clock.advance(500)
    assert sq.dequeue("sms")["status"] == "failure"


def test_an_expired_delivery_is_not_requeued_past_the_deadline(sq: SharQ, clock: Clock) -> None:
    """Neither the pass nor the sweep touches the active job; when its delivery
    expires after its deadline it goes to the dead letters, not back to its queue."""
    sq.enqueue(1, 0, "j", "u1", "sms", ttl_ms=500)
    assert sq.dequeue("sms")["job_id"] == "j"
    clock.advance(500)
    assert sq.requeue() == {"requeued": 0, "dead": 0}
    assert sq.job_status("sms", "u1", "j")["state"] == "active"
    clock.advance(500)  # the delivery's expiry (1 s)
    assert sq.requeue() == {"requeued": 0, "dead": 1}
    assert sq.job_status("sms", "u1", "j")["state"] == "expired"
    assert sq.dequeue("sms")["status"] == "failure"


def test_a_failed_job_past_its_deadline_expires(sq: SharQ, clock: Clock) -> None:
    sq.enqueue(1, 0, "j", "u1", "sms", ttl_ms=500)
    sq.dequeue("sms")
    clock.advance(600)
    assert sq.fail("sms", "u1", "j")["state"] == "expired"
    assert sq.job_status("sms", "u1", "j")["state"] == "expired"


def test_retry_keeps_the_deadline_unless_it_gives_one(sq: SharQ, clock: Clock) -> None:
    sq.enqueue(1, 0, "j", "u1", "sms", ttl_ms=500, requeue_limit=0)
    sq.dequeue("sms")
    sq.fail("sms", "u1", "j", error="boom")  # dead letter, deadline not passed yet
    assert sq.retry_dead_letter("sms", "u1", "j") == {"status": "queued"}
    assert sq.job_status("sms", "u1", "j")["expire_at"] == START + 500
    sq.dequeue("sms")
    sq.fail("sms", "u1", "j", error="boom")
    clock.advance(500)
    with pytest.raises(BadArgumentException, match="expire_at"):
        sq.retry_dead_letter("sms", "u1", "j")  # too late: it would never go out
    assert sq.job_status("sms", "u1", "j")["state"] == "dead"
    assert sq.retry_dead_letter("sms", "u1", "j", ttl_ms=1000) == {"status": "queued"}
    assert sq.job_status("sms", "u1", "j")["expire_at"] == clock.now + 1000
    clock.advance(1000)
    assert sq.dequeue("sms")["status"] == "failure"
    assert sq.job_status("sms", "u1", "j")["state"] == "expired"
    # an expired dead letter is retried like any other, with a new deadline
    assert sq.retry_dead_letter("sms", "u1", "j", expire_at=clock.now + 5) == {"status": "queued"}
    assert sq.dequeue("sms")["job_id"] == "j"


def test_a_take_drops_at_most_ten_expired_heads(sq: SharQ, clock: Clock) -> None:
    """No call's cost grows with the number of expired jobs: a take drops ten,
    answers "try again now" (retry_after_ms 0), and the pass sweeps the rest."""
    for n in range(25):
        sq.enqueue(n, 0, f"x{n}", "u1", "sms", ttl_ms=10)
    sq.enqueue("ok", 0, "ok", "u1", "sms")
    clock.advance(10)
    assert sq.dequeue("sms") == {"status": "failure", "retry_after_ms": 0}
    assert sq.type_stats("sms")["counters"]["expired"] == 10
    assert sq.get_queue_length("sms", "u1") == 16
    assert sq.requeue() == {"requeued": 0, "dead": 15}
    assert sq.dequeue("sms")["job_id"] == "ok"
    assert sq.type_stats("sms")["counters"]["expired"] == 25


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"ttl_ms": 0}, "ttl_ms"),
        ({"ttl_ms": -5}, "ttl_ms"),
        ({"ttl_ms": 1.5}, "ttl_ms"),
        ({"expire_at": START - 1}, "expire_at"),
        ({"expire_at": START}, "expire_at"),
        ({"expire_at": START + 10, "ttl_ms": 10}, "expire_at or ttl_ms"),
    ],
)
def test_bad_deadlines_are_refused_and_change_nothing(sq: SharQ, fields: dict, named: str) -> None:
    with pytest.raises(BadArgumentException, match=named):
        sq.enqueue_fields("sms", "u1", {"job_id": "j", "payload": 1, "interval": 0, **fields})
    assert sq.job_status("sms", "u1", "j")["state"] == "unknown"
    results = (
        sq.enqueue_many("sms", [{"queue_id": "u1", "job_id": "k", "payload": 1, "interval": 0, **fields}])
        if named == "expire_at"
        else None
    )
    if results:  # checked in Lua on the Redis clock: that job alone fails in a batch
        assert results[0]["code"] == 400 and "expire_at" in results[0]["message"]
        assert sq.job_status("sms", "u1", "k")["state"] == "unknown"


# -- over real HTTP: a sharq-server process on each Redis setup (6.2, 7, cluster) -------


@pytest.fixture
def server(server_on_setup: ServerProcess) -> ServerProcess:
    return server_on_setup


@pytest.mark.parametrize("shards", [1, 2])
def test_otp_behind_a_paused_tenant_expires_over_http(server: ServerProcess, shards: int) -> None:
    if shards > 1:
        assert server.call("PUT", "/types/sms/", {"shards": shards})[0] == 200
    job = {"payload": {"to": "+4155550100"}, "interval": 0}
    assert server.call("POST", "/pause/sms/tenant/")[0] == 200
    assert server.call("POST", "/enqueue/sms/tenant/", {**job, "job_id": "otp", "ttl_ms": 300})[0] == 201
    assert server.call("POST", "/enqueue/sms/tenant/", {**job, "job_id": "news"})[0] == 201
    queued = server.call("GET", "/job/sms/tenant/otp/")[1]
    assert queued["state"] == "queued" and queued["expire_at"] == queued["enqueued_at"] + 300

    wait_for(lambda: server.call("GET", "/job/sms/tenant/otp/")[1]["state"] == "expired", what="the OTP to expire")
    status = server.call("GET", "/job/sms/tenant/otp/")[1]
    assert (status["expired_at"], status["reason"]) == (queued["expire_at"], "expired")
    dead = server.call("GET", "/deadletter/sms/")[1]["jobs"]
    assert [(j["job_id"], j["reason"], j["expire_at"]) for j in dead] == [("otp", "expired", queued["expire_at"])]
    assert server.call("GET", "/stats/sms/")[1]["counters"]["expired"] == 1
    request = urllib.request.Request(server.url + "/metrics/", headers={"Accept": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    assert 'sharq_jobs_expired_total{queue_type="sms"} 1.0' in text

    server.call("POST", "/resume/sms/tenant/")
    assert server.call("GET", "/dequeue/sms/")[1]["job_id"] == "news"
    assert server.call("GET", "/dequeue/sms/")[0] == 404
    status, body = server.call("POST", "/deadletter/sms/tenant/otp/retry/")
    assert status == 400 and "expire_at" in body["message"]
    assert server.call("POST", "/deadletter/sms/tenant/otp/retry/", {"ttl_ms": 60_000}) == (200, {"status": "queued"})
    assert server.call("GET", "/dequeue/sms/")[1]["job_id"] == "otp"


BAD_OVER_HTTP = [
    ({"ttl_ms": 0}, "ttl_ms"),
    ({"ttl_ms": -1}, "ttl_ms"),
    ({"ttl_ms": 1.5}, "ttl_ms"),
    ({"expire_at": 1_000}, "expire_at"),
    ({"expire_at": 4_000_000_000_000, "ttl_ms": 10}, "expire_at or ttl_ms"),
]


def test_bad_deadlines_get_a_400_over_http(server: ServerProcess) -> None:
    for fields, named in BAD_OVER_HTTP:
        status, body = server.call("POST", "/enqueue/sms/u1/", {"job_id": "j", "payload": 1, "interval": 0, **fields})
        assert status == 400 and named in body["message"], (fields, body)
        assert server.call("GET", "/job/sms/u1/j/")[0] == 404  # unknown: nothing was stored


def test_the_python_client_gives_deadlines(server: ServerProcess) -> None:
    client = Client(server.url)
    try:
        assert client.enqueue("sms", "u1", "otp", {"code": 1}, 0, ttl_ms=200, requeue_limit=0) == "queued"
        assert client.job_status("sms", "u1", "otp")["expire_at"] > 0
        wait_for(lambda: client.job_status("sms", "u1", "otp")["state"] == "expired", what="the OTP to expire")
        client.retry_dead_letter("sms", "u1", "otp", ttl_ms=60_000)
        assert [job.job_id for job in client.dequeue("sms")] == ["otp"]
    finally:
        client.close()
