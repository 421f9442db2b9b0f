"""Issue 9 in the engine: receipts, fail and retry-later, ack-and-take batches."""

from __future__ import annotations

import pytest

from sharq_core import BadArgumentException, NotFound, SharQ, StaleReceipt
from tests.support import Clock


def put(sq: SharQ, job_id: str, queue_id: str = "q1", interval: int = 0, **extra) -> None:
    sq.enqueue({"job": job_id}, interval, job_id, queue_id, "sms", **extra)


def take(sq: SharQ) -> dict:
    return sq.dequeue("sms")


def test_every_delivery_has_a_fresh_receipt(sq: SharQ, clock: Clock) -> None:
    put(sq, "a")
    first = take(sq)
    clock.advance(1001)
    sq.requeue()
    second = take(sq)
    assert first["receipt"] != second["receipt"]
    assert second["expires_at"] == clock.now + 1000


def test_a_stale_receipt_changes_nothing(sq: SharQ, clock: Clock) -> None:
    put(sq, "a")
    stale = take(sq)["receipt"]
    clock.advance(1001)
    sq.requeue()
    for call in (
        lambda: sq.finish("a", "q1", "sms", receipt=stale),  # queued again: not this delivery's
        lambda: sq.touch("a", "q1", "sms", receipt=stale),  # 409 as finish and fail, not 404
        lambda: sq.fail("sms", "q1", "a", receipt=stale),
    ):
        with pytest.raises(StaleReceipt):
            call()
    current = take(sq)["receipt"]
    for call in (
        lambda: sq.finish("a", "q1", "sms", receipt=stale),
        lambda: sq.touch("a", "q1", "sms", receipt=stale),
        lambda: sq.fail("sms", "q1", "a", receipt=stale),
    ):
        with pytest.raises(StaleReceipt):
            call()
    assert sq.job_status("sms", "q1", "a")["state"] == "active"
    assert sq.touch("a", "q1", "sms", receipt=current)["expires_at"] == clock.now + 1000
    assert sq.finish("a", "q1", "sms", receipt=current) == {"status": "success"}


def test_without_a_receipt_the_seed_behaviour_stays(sq: SharQ) -> None:
    put(sq, "a")
    take(sq)
    assert sq.finish("a", "q1", "sms") == {"status": "success"}


def test_fail_puts_the_job_back_in_front_and_counts(sq: SharQ) -> None:
    put(sq, "a", requeue_limit=1)
    put(sq, "b")
    job = take(sq)
    assert sq.fail("sms", "q1", "a", receipt=job["receipt"], error="smtp 451") == {
        "status": "success",
        "state": "queued",
    }
    status = sq.job_status("sms", "q1", "a")
    assert (status["state"], status["requeues_remaining"], status["last_error"]) == ("queued", 0, "smtp 451")
    again = take(sq)
    assert (again["job_id"], again["requeues_remaining"]) == ("a", 0)
    assert sq.fail("sms", "q1", "a", error="smtp 550") == {"status": "success", "state": "dead"}
    dead = sq.dead_letters("sms")["jobs"][0]
    assert (dead["job_id"], dead["reason"], dead["last_error"]) == ("a", "smtp 550", "smtp 550")
    assert take(sq)["job_id"] == "b"


def test_fail_dead_goes_straight_to_the_dead_letters(sq: SharQ) -> None:
    put(sq, "a", requeue_limit=-1)
    take(sq)
    assert sq.fail("sms", "q1", "a", error="bad address", dead=True)["state"] == "dead"
    assert sq.job_status("sms", "q1", "a")["reason"] == "bad address"


def test_fail_with_retry_after_waits_then_returns_to_the_front(sq: SharQ, clock: Clock) -> None:
    put(sq, "a", requeue_limit=3)
    put(sq, "b")
    job = take(sq)
    assert sq.fail("sms", "q1", "a", receipt=job["receipt"], retry_after_ms=5000)["state"] == "retrying"
    assert sq.job_status("sms", "q1", "a") == {"status": "success", "state": "retrying", "due_at": clock.now + 5000}
    with pytest.raises(StaleReceipt):
        sq.finish("a", "q1", "sms", receipt=job["receipt"])
    assert sq.finish("a", "q1", "sms")["status"] == "failure"  # waiting to be retried: no delivery to finish
    put(sq, "c", "q2", requeue_limit=3)
    other = take(sq)  # q1's "b" (fairness), then retry of q2's c
    assert other["job_id"] == "b"
    sq.finish("b", "q1", "sms")
    job = take(sq)
    sq.fail("sms", "q2", "c", receipt=job["receipt"], retry_after_ms=5000)
    with pytest.raises(NotFound):
        sq.touch("c", "q2", "sms")  # waiting to be retried: not a delivery a heartbeat extends
    clock.advance(4999)
    sq.requeue()
    early = take(sq)
    assert early["status"] == "failure", early
    clock.advance(1)
    assert sq.requeue() == {"requeued": 2, "dead": 0}  # a and c, both due now
    back = [take(sq) for _ in range(2)]
    assert [(job["job_id"], job["requeues_remaining"]) for job in back] == [("a", 2), ("c", 2)]  # counted once


def test_fail_of_a_job_that_is_not_active_is_not_found(sq: SharQ) -> None:
    put(sq, "a")
    with pytest.raises(NotFound):
        sq.fail("sms", "q1", "a")
    with pytest.raises(BadArgumentException):
        sq.fail("sms", "q1", "a", retry_after_ms=-1)
    with pytest.raises(BadArgumentException):
        sq.fail("sms", "q1", "a", error="x" * 5000)


def test_release_returns_jobs_without_counting(sq: SharQ) -> None:
    put(sq, "a", requeue_limit=0)
    jobs, _ = sq.take("sms", 1)
    sq.release("sms", jobs)
    again = take(sq)
    assert (again["job_id"], again["requeues_remaining"]) == ("a", 0)
    assert sq.type_stats("sms")["counters"]["failed"] == 0  # a hand-back is no worker's failure


def test_finish_many_acknowledges_and_takes_in_one_call(sq: SharQ) -> None:
    for n in range(6):
        put(sq, f"j{n}")
    first = sq.dequeue_many("sms", 3)["jobs"]
    acks = [{"queue_id": job["queue_id"], "job_id": job["job_id"], "receipt": job["receipt"]} for job in first]
    acks.append({"queue_id": "q1", "job_id": "nope"})
    acks.append({"queue_id": "q1", "job_id": "j0", "receipt": first[1]["receipt"]})
    results, taken, wait = sq.finish_many("sms", acks, next_count=2)
    assert [r["status"] for r in results] == ["success", "success", "success", "failure", "failure"]
    assert [r.get("code") for r in results[3:]] == [404, 404]  # j0 was finished just before in the same call
    assert [job.job_id for job in taken] == ["j3", "j4"] and wait == 0
    results, taken, wait = sq.finish_many("sms", [], next_count=5)
    assert ([job.job_id for job in taken], results) == (["j5"], [])
    assert sq.finish_many("sms", [], next_count=1)[1:] == ([], None)


def test_finishing_a_retried_job_forgets_its_error(sq: SharQ, redis_client) -> None:
    put(sq, "a", "q1")
    put(sq, "b", "q2")
    for job in sq.dequeue_many("sms", 2)["jobs"]:
        sq.fail("sms", job["queue_id"], job["job_id"], receipt=job["receipt"], error="smtp 451")
    jobs = sq.dequeue_many("sms", 2)["jobs"]
    acks = [{"queue_id": job["queue_id"], "job_id": job["job_id"], "receipt": job["receipt"]} for job in jobs]
    assert [r["status"] for r in sq.finish_many("sms", acks)[0]] == ["success", "success"]
    assert redis_client.keys("*:errors") == []


def test_finish_many_checks_every_entry_first(sq: SharQ, redis_client) -> None:
    put(sq, "a")
    take(sq)
    for bad in ([{"queue_id": "q1"}], [{"queue_id": "q1", "job_id": "a", "recipt": "x"}], "nope", [None]):
        with pytest.raises(BadArgumentException):
            sq.finish_many("sms", bad)
    with pytest.raises(BadArgumentException):
        sq.finish_many("sms", [])
    assert sq.job_status("sms", "q1", "a")["state"] == "active"
