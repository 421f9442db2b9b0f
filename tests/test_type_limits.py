"""Issue 19.1: type-wide limits on top of each queue's, in the same take script."""

from __future__ import annotations

import pytest

from sharq_core import BadArgumentException, SharQ
from tests.support import Clock


def fill(sq: SharQ, queues: int = 3, jobs: int = 4) -> None:
    for n in range(jobs):
        for q in range(queues):
            sq.enqueue(n, 0, f"j{n}", f"q{q}", "sms")


def test_a_type_interval_spaces_every_queues_jobs(sq: SharQ, clock: Clock) -> None:
    fill(sq)
    clock.advance(1)  # the queues were listed before the first service
    assert sq.set_type_limits("sms", interval=100)["limits"] == {"interval": 100, "burst": None, "max_active": None}
    first = sq.dequeue_many("sms", 10)["jobs"]
    assert len(first) == 1  # each queue would allow every job; the type allows one per 100 ms
    assert sq.dequeue("sms") == {"status": "failure", "retry_after_ms": 100}
    clock.advance(60)
    assert sq.dequeue("sms") == {"status": "failure", "retry_after_ms": 40}
    clock.advance(40)
    second = sq.dequeue("sms")
    assert second["queue_id"] != first[0]["queue_id"]  # fairness across tenants stays


def test_the_stricter_of_queue_and_type_wins(sq: SharQ, clock: Clock) -> None:
    sq.enqueue(1, 500, "a", "slow", "sms")
    sq.enqueue(2, 500, "b", "slow", "sms")
    sq.set_type_limits("sms", interval=100)
    assert sq.dequeue("sms")["job_id"] == "a"
    clock.advance(100)  # the type would let one go; the queue says 400 ms more
    assert sq.dequeue("sms") == {"status": "failure", "retry_after_ms": 400}


def test_a_type_cap_counts_slots_across_queues(sq: SharQ) -> None:
    fill(sq)
    held = sq.dequeue("sms")  # active before the cap is set: counted
    sq.set_type_limits("sms", max_active=2)
    assert sq.type_limits("sms")["active"] == 1
    second = sq.dequeue_many("sms", 10)["jobs"]
    assert len(second) == 1
    assert sq.dequeue("sms") == {"status": "failure", "retry_after_ms": None}
    sq.finish(held["job_id"], held["queue_id"], "sms")
    assert sq.dequeue("sms")["status"] == "success"
    assert sq.type_stats("sms")["type_limits"] == {"interval": None, "burst": None, "max_active": 2, "active": 2}


def test_burst_and_the_window_bound_of_the_type(sq: SharQ, clock: Clock) -> None:
    fill(sq, queues=10, jobs=20)
    sq.set_type_limits("sms", interval=100, burst=4)
    times: list[int] = []
    for step in [0, 7, 33, 50, 99, 100, 1, 250, 13, 400, 0, 61] * 3:
        clock.advance(step)
        times += [job["dequeued_at"] for job in sq.dequeue_many("sms", 50)["jobs"]]
    assert times[:4] == [times[0]] * 4
    for i, start in enumerate(times):
        for end in times[i:]:
            assert sum(1 for t in times if start <= t <= end) <= 4 + (end - start) // 100


def test_clearing_and_keeping_type_limits(sq: SharQ) -> None:
    sq.set_type_limits("sms", interval=100, max_active=5)
    assert sq.set_type_limits("sms", burst=3)["limits"] == {"interval": 100, "burst": 3, "max_active": 5}
    assert sq.set_type_limits("sms", max_active=None)["limits"]["max_active"] is None
    assert sq.clear_type_limits("sms")["limits"] == {"interval": None, "burst": None, "max_active": None}
    fill(sq)
    assert len(sq.dequeue_many("sms", 12)["jobs"]) == 12
    for bad in ({"interval": 0}, {"burst": 0}, {"max_active": "x"}):
        with pytest.raises(BadArgumentException):
            sq.set_type_limits("sms", **bad)
