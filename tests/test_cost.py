"""Issue 25.1: jobs that cost several units against every rate limit, and the real
cost a receipt holder reports when it finishes or fails a job."""

from __future__ import annotations

import asyncio

import pytest

from sharq_core import BadArgumentException, SharQ
from tests.support import Clock, ServerProcess


def taken(sq: SharQ, queue_type: str = "t", count: int = 10) -> list[str]:
    return [job["job_id"] for job in sq.dequeue_many(queue_type, count)["jobs"]]


def test_a_job_of_cost_c_uses_c_intervals_of_its_queue(sq: SharQ, clock: Clock) -> None:
    sq.enqueue("two segments", 1000, "a", "q", "t", cost=3)
    sq.enqueue("one", 1000, "b", "q", "t")
    job = sq.dequeue("t")
    assert (job["job_id"], job["cost"]) == ("a", 3)
    clock.advance(1000)  # one interval: a cost-1 job would let the next go now
    assert sq.dequeue("t") == {"status": "failure", "retry_after_ms": 2000}
    clock.advance(2000)
    assert "cost" not in sq.dequeue("t")  # 1: shown only when not, as the record holds it


def test_a_burst_hands_out_units_back_to_back(sq: SharQ, clock: Clock) -> None:
    sq.set_limits("t", "q", interval=100, burst=5)
    for n, cost in enumerate([2, 2, 2, 1]):
        sq.enqueue(n, 100, f"j{n}", "q", "t", cost=cost)
    assert taken(sq) == ["j0", "j1"]  # 4 of the 5 units; the third job needs 2
    clock.advance(100)
    assert taken(sq) == ["j2"]  # one unit more: 2 free
    clock.advance(99)
    assert taken(sq) == []
    clock.advance(1)
    assert taken(sq) == ["j3"]


def test_a_job_costing_more_than_the_burst_goes_once_fully_idle(sq: SharQ, clock: Clock) -> None:
    sq.set_limits("t", "q", interval=100, burst=3)
    sq.enqueue(0, 100, "small", "q", "t")
    sq.enqueue(1, 100, "big", "q", "t", cost=10)
    sq.enqueue(2, 100, "after", "q", "t")
    assert taken(sq) == ["small"]
    assert sq.dequeue("t")["retry_after_ms"] == 100  # idle again one interval after the small one
    clock.advance(100)
    assert taken(sq) == ["big"]
    # 10 units from now: the next unit conforms once 10 - 3 + 1 intervals have passed
    clock.advance(799)
    assert taken(sq) == []
    clock.advance(1)
    assert taken(sq) == ["after"]


def test_an_interval_change_under_a_cap_only_override_counts_units_at_the_enqueues(sq: SharQ, clock: Clock) -> None:
    """POST /interval on a queue whose own limits hold only max_active changes the
    interval enqueues give (the override is left alone), so the next enqueue's
    replaces it; a job is charged c x the interval in force when it goes out. (The
    model test once had the change land in the override; the engine was right.)"""
    sq.set_limits("t", "q", max_active=1)
    sq.enqueue(0, 0, "a", "q", "t", cost=2)
    assert sq.interval(0, "q", "t")["status"] == "success"
    assert sq.limits("t", "q")["limits"]["interval"] == {"value": 0, "source": "last enqueue"}
    sq.enqueue(1, 30, "b", "q", "t", cost=5)  # the queue's interval is 30 now
    assert taken(sq) == ["a"]  # 2 units of 30 ms
    clock.advance(1)
    assert sq.finish_job("a", "q", "t")["status"] == "success"
    assert sq.dequeue("t") == {"status": "failure", "retry_after_ms": 59}
    clock.advance(58)  # above the burst of 1: once fully idle, 2 x 30 ms after a
    assert taken(sq) == []
    clock.advance(1)
    assert taken(sq) == ["b"]


def test_type_wide_limits_count_units(sq: SharQ, clock: Clock) -> None:
    sq.set_type_limits("t", interval=100)
    sq.enqueue(0, 0, "a", "q1", "t", cost=4)
    sq.enqueue(1, 0, "b", "q2", "t")
    clock.advance(1)
    assert taken(sq) == ["a"]
    clock.advance(100)
    assert sq.dequeue("t") == {"status": "failure", "retry_after_ms": 300}
    clock.advance(300)
    assert taken(sq) == ["b"]


def test_a_higher_real_cost_charges_the_difference(sq: SharQ, clock: Clock) -> None:
    sq.set_type_limits("t", interval=10)
    for n in range(3):
        sq.enqueue(n, 100, f"j{n}", "q", "t", cost=2)
    job = sq.dequeue("t")
    assert sq.finish_job("j0", "q", "t", job["receipt"], cost=5)["status"] == "success"
    clock.advance(200)  # its own 2 units are over; the 3 more it reported are not
    assert sq.dequeue("t") == {"status": "failure", "retry_after_ms": 300}
    clock.advance(300)
    job = sq.dequeue("t")
    assert job["job_id"] == "j1"
    sq.fail("t", "q", "j1", job["receipt"], cost=1)  # lower: nothing refunded, the job back in front
    clock.advance(199)
    assert taken(sq) == []
    clock.advance(1)
    job = sq.dequeue("t")
    assert job["job_id"] == "j1"
    # an ack of an ack-and-take charges its real cost before the take
    results, jobs, wait = sq.finish_many("t", [{**ack(job), "cost": 4}], 1)
    assert results[0]["status"] == "success" and jobs == [] and wait == 200 + 200


def ack(job: dict) -> dict:
    return {"queue_id": job["queue_id"], "job_id": job["job_id"], "receipt": job["receipt"]}


def test_cost_survives_a_requeue_and_a_dead_letter_retry(sq: SharQ, clock: Clock) -> None:
    sq.enqueue("x", 0, "a", "q", "t", cost=7, requeue_limit=0)
    assert sq.job_status("t", "q", "a")["cost"] == 7
    job = sq.dequeue("t")
    assert sq.job_status("t", "q", "a")["cost"] == 7
    sq.enqueue("y", 0, "b", "q2", "t")
    assert "cost" not in sq.job_status("t", "q2", "b")
    sq.fail("t", "q", "a", job["receipt"])  # no requeue left: dead
    assert sq.dead_letters("t")["jobs"][0]["requeue_limit"] == 0
    sq.retry_dead_letter("t", "q", "a")
    assert sq.job_status("t", "q", "a") == {
        "status": "success", "state": "queued", "cost": 7, "requeues_remaining": 0, "requeue_limit": 0,
        "enqueued_at": clock.now,
    }  # fmt: skip


@pytest.mark.parametrize("cost", [0, 10_001, 2.5, "3", True])
def test_a_bad_cost_is_refused_and_changes_nothing(sq: SharQ, cost: object) -> None:
    with pytest.raises(BadArgumentException, match="cost must be an integer from 1 to 10000"):
        sq.enqueue("x", 0, "a", "q", "t", cost=cost)
    with pytest.raises(BadArgumentException, match=r"jobs\[1\]: cost"):
        sq.enqueue_many("t", [{"queue_id": "q", "job_id": "b", "payload": 1, "interval": 0},
                              {"queue_id": "q", "job_id": "c", "payload": 1, "interval": 0, "cost": cost}])  # fmt: skip
    assert sq.get_queue_length("t", "q") == 0


def test_a_real_cost_needs_the_receipt(sq: SharQ) -> None:
    sq.enqueue("x", 0, "a", "q", "t")
    sq.dequeue("t")
    with pytest.raises(BadArgumentException, match="cost needs the receipt"):
        sq.finish_job("a", "q", "t", cost=3)
    with pytest.raises(BadArgumentException, match="cost needs the receipt"):
        sq.fail("t", "q", "a", cost=3)
    with pytest.raises(BadArgumentException, match=r"jobs\[0\]: cost needs the receipt"):
        sq.finish_many("t", [{"queue_id": "q", "job_id": "a", "cost": 3}])
    assert sq.job_status("t", "q", "a")["state"] == "active"


def test_cost_over_http(tmp_path) -> None:
    """Each field a cost rides in, and each refusal, over real HTTP."""
    server = ServerProcess(str(tmp_path / "data"), workers=1).start()
    try:
        job = {"job_id": "a", "payload": 1, "interval": 1000}
        for bad in (0, 10_001, 2.5, "3"):
            status, body = server.call("POST", "/enqueue/sms/q/", {**job, "cost": bad})
            assert (status, body["message"]) == (400, "cost must be an integer from 1 to 10000"), bad
            status, body = server.call("POST", "/enqueue/sms/", {"jobs": [{**job, "queue_id": "q", "cost": bad}]})
            assert (status, body["message"]) == (400, "jobs[0]: cost must be an integer from 1 to 10000"), bad
        assert server.call("GET", "/job/sms/q/a/")[0] == 404  # nothing changed
        assert server.call("POST", "/enqueue/sms/q/", {**job, "cost": 3})[0] == 201
        batch = [{**job, "queue_id": "q", "job_id": "b", "cost": 2}, {**job, "queue_id": "q", "job_id": "c"}]
        assert server.call("POST", "/enqueue/sms/", {"jobs": batch})[0] == 200
        assert server.call("GET", "/job/sms/q/a/")[1]["cost"] == 3
        taken = server.call("GET", "/dequeue/sms/")[1]
        assert (taken["job_id"], taken["cost"]) == ("a", 3)
        status, body = server.call("POST", "/finish/sms/q/a/", {"cost": 5})
        assert (status, body["message"]) == (400, "cost needs the receipt of the delivery it reports on")
        assert server.call("POST", "/finish/sms/q/a/", {"receipt": taken["receipt"], "cost": 0})[0] == 400
        assert server.call("GET", "/job/sms/q/a/")[1]["state"] == "active"
        assert server.call("POST", "/finish/sms/q/a/", {"receipt": taken["receipt"], "cost": 4})[0] == 200
        # 3 units + 1 more reported: the next goes 4 intervals after the first
        wait = server.call("GET", "/dequeue/sms/")[1]["retry_after_ms"]
        assert 3000 < wait <= 4000, wait
        status, body = server.call(
            "POST", "/finish/sms/?next=1", {"jobs": [{"queue_id": "q", "job_id": "a", "cost": 2}]}
        )
        assert (status, body["message"]) == (400, "jobs[0]: cost needs the receipt of the delivery it reports on")
        status, body = server.call("POST", "/fail/sms/q/a/", {"cost": 2})
        assert (status, body["message"]) == (400, "cost needs the receipt of the delivery it reports on")
    finally:
        server.stop()


def test_both_clients_carry_cost(tmp_path) -> None:
    from sharq_client import AsyncClient, Client

    server = ServerProcess(str(tmp_path / "data"), workers=1).start()
    try:
        client = Client(server.url, timeout=5)
        assert client.enqueue("sms", "q", "a", "hi", 1000, cost=3) == "queued"
        job = client.dequeue("sms")[0]
        assert job.cost == 3
        client.finish("sms", "q", "a", job.receipt, cost=4)
        client.enqueue("sms", "q", "b", "hi", 1000)
        assert client.job("sms", "q", "b").get("cost") is None
        client.close()

        async def run() -> int:
            async with AsyncClient(server.url, timeout=5) as client:
                await client.enqueue("llm", "q", "a", "hi", 0, cost=2)
                job = (await client.dequeue("llm"))[0]
                await client.fail("llm", "q", "a", job.receipt, cost=9)
                return job.cost

        assert asyncio.run(run()) == 2
    finally:
        server.stop()


def test_a_job_with_a_cost_and_a_deadline_keeps_both(sq: SharQ, clock: Clock) -> None:
    """Both options ride in the one limit field: the deadline still expires it and
    the cost still counts, in a single enqueue and a batch, and through a retry."""
    sq.enqueue("long", 1000, "a", "q", "t", cost=3, ttl_ms=500)
    sq.enqueue_many("t", [{"queue_id": "q", "job_id": "b", "payload": 1, "interval": 1000, "cost": 2, "ttl_ms": 9000}])
    expire_at = clock.now + 500
    status = sq.job_status("t", "q", "a")
    assert (status["cost"], status["expire_at"]) == (3, expire_at)
    clock.advance(500)  # a's deadline: dropped, never handed out; b goes with its cost
    job = sq.dequeue("t")
    assert (job["job_id"], job["cost"]) == ("b", 2)
    assert sq.job_status("t", "q", "a")["state"] == "expired"
    sq.retry_dead_letter("t", "q", "a", ttl_ms=60_000)
    assert sq.job_status("t", "q", "a")["cost"] == 3
    clock.advance(2000)  # b's 2 units
    job = sq.dequeue("t")
    assert (job["job_id"], job["cost"]) == ("a", 3)
