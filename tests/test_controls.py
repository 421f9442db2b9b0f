"""Issue 10: per-queue tenant controls in the engine, on real Redis (6.2, 7, cluster)."""

from __future__ import annotations

import pytest

from sharq_core import BadArgumentException, DuplicateJob, QueueFull, SharQ
from tests.support import Clock


def put(sq: SharQ, job_id: str, queue_id: str = "q1", interval: int = 0, **extra) -> dict:
    return sq.enqueue({"job": job_id}, interval, job_id, queue_id, "t", **extra)


def take(sq: SharQ) -> dict:
    return sq.dequeue("t")


def taken(sq: SharQ, count: int = 100) -> list[str]:
    return [job["job_id"] for job in sq.dequeue_many("t", count)["jobs"]]


# -- persistent limits -------------------------------------------------------------


def test_an_override_wins_over_what_enqueues_carry(sq: SharQ, clock: Clock) -> None:
    put(sq, "a", interval=500)
    sq.set_limits("t", "q1", interval=60_000)
    put(sq, "b", interval=500)  # the new user's trap: this used to undo the change
    take(sq)
    clock.advance(600)
    assert take(sq) == {"status": "failure", "retry_after_ms": 59_400}
    limits = sq.limits("t", "q1")["limits"]
    assert limits["interval"] == {"value": 60_000, "source": "override"}
    assert limits["burst"] == {"value": 1, "source": "default"}


def test_limits_survive_an_empty_queue_and_can_come_first(sq: SharQ, clock: Clock) -> None:
    sq.set_limits("t", "new", interval=1000, max_active=1)  # the customer's plan, before any job
    assert sq.queues("t")["queues"][0]["queue_id"] == "new"
    put(sq, "a", "new", interval=0)
    take(sq)
    sq.finish("a", "new", "t")
    assert sq.limits("t", "new")["limits"]["max_active"] == {"value": 1, "source": "override"}
    sq.clear_limits("t", "new")
    assert sq.limits("t", "new")["limits"]["interval"] == {"value": None, "source": "default"}
    put(sq, "b", "new", interval=7)
    assert sq.limits("t", "new")["limits"]["interval"] == {"value": 7, "source": "last enqueue"}


def test_post_interval_keeps_the_seed_contract_and_updates_an_override(sq: SharQ, clock: Clock) -> None:
    assert sq.interval(100, "q1", "t")["status"] == "failure"  # holds nothing
    put(sq, "a", interval=0)
    sq.set_limits("t", "q1", interval=5000, burst=2)
    assert sq.interval(100, "q1", "t") == {"status": "success"}
    limits = sq.limits("t", "q1")["limits"]
    assert (limits["interval"]["value"], limits["burst"]["value"]) == (100, 2)


def test_null_clears_one_limit_and_bad_values_are_refused(sq: SharQ, redis_client) -> None:
    sq.set_limits("t", "q1", interval=10, burst=3)
    sq.set_limits("t", "q1", burst=None)
    limits = sq.limits("t", "q1")["limits"]
    assert (limits["interval"]["value"], limits["burst"]) == (10, {"value": 1, "source": "default"})
    for bad in ({"burst": 0}, {"max_active": -1}, {"interval": 1.5}, {"burst": True}):
        with pytest.raises(BadArgumentException):
            sq.set_limits("t", "q1", **bad)


# -- burst ----------------------------------------------------------------------------


def test_a_burst_then_one_per_interval(sq: SharQ, clock: Clock) -> None:
    sq.set_limits("t", "q1", interval=1000, burst=3)
    for n in range(8):
        put(sq, f"j{n}", interval=0)
    assert taken(sq) == ["j0", "j1", "j2"]
    clock.advance(999)
    assert taken(sq) == []
    clock.advance(1)
    assert taken(sq) == ["j3"]
    clock.advance(5000)  # idle long enough: the burst is back, no more than that
    assert taken(sq) == ["j4", "j5", "j6"]


# -- concurrency cap -------------------------------------------------------------------


def test_a_full_queue_leaves_the_ready_set_until_a_slot_frees(sq: SharQ, clock: Clock, redis_client) -> None:
    sq.set_limits("t", "q1", max_active=2)
    for n in range(5):
        put(sq, f"a{n}")
    put(sq, "b0", "q2")
    assert taken(sq) == ["a0", "a1", "b0"]  # q1 at its cap; q2 still flows
    sq.finish("b0", "q2", "t")
    assert redis_client.zscore(sq.keys.ready("t"), "q1") is None  # never scanned for
    sq.finish("a0", "q1", "t")
    assert taken(sq) == ["a2"]
    sq.fail("t", "q1", "a1", error="boom")  # a failure frees its slot too (a1 back in front)
    assert taken(sq) == ["a1"]
    clock.advance(1001)
    sq.requeue()  # so does an expiry
    assert sq.queue_info("t", "q1")["active"] == 0
    assert sorted(taken(sq)) == ["a1", "a2"]


# -- pause ------------------------------------------------------------------------------


def test_pause_holds_one_queue_back_until_resumed(sq: SharQ) -> None:
    put(sq, "a")
    put(sq, "x", "q2")
    first = take(sq)
    assert sq.pause("t", "q1") == {"status": "success", "paused_until": None}
    put(sq, "b")  # enqueues still accepted
    assert taken(sq) == ["x"]  # other queues keep flowing
    assert sq.finish(first["job_id"], "q1", "t")["status"] == "success"  # active jobs can finish
    assert taken(sq) == []
    assert sq.queue_info("t", "q1")["paused"] is True
    sq.resume("t", "q1")
    assert taken(sq) == ["b"]


def test_a_timed_pause_ends_by_itself(sq: SharQ, clock: Clock) -> None:
    put(sq, "a")
    assert sq.pause("t", "q1", for_ms=2000)["paused_until"] == clock.now + 2000
    assert take(sq) == {"status": "failure", "retry_after_ms": 2000}
    clock.advance(2000)
    assert taken(sq) == ["a"]


def test_pausing_a_whole_type(sq: SharQ, clock: Clock) -> None:
    put(sq, "a")
    sq.pause("t")
    assert take(sq) == {"status": "failure", "retry_after_ms": None}
    assert sq.queues("t")["type_paused_until"] is None
    sq.resume("t")
    assert taken(sq) == ["a"]
    put(sq, "b")
    sq.pause("t", for_ms=500)
    assert take(sq)["retry_after_ms"] == 500


def test_a_type_pause_whose_end_has_passed_holds_nothing(sq: SharQ, clock: Clock) -> None:
    """Its key expires on Redis's clock, the script's `now` may run ahead (a ms or
    so of Redis TIME read after the script's start, or a clock given): a pause
    over with its key still there held the job and answered no due time at all."""
    put(sq, "a")
    sq.pause("t", for_ms=60_000)
    clock.advance(59_999)
    assert take(sq)["retry_after_ms"] == 1
    clock.advance(1)  # over, though its key lives on for about a minute of Redis's time
    assert taken(sq) == ["a"]


# -- upstream throttling ------------------------------------------------------------------


def test_throttle_puts_the_job_in_front_and_pauses_its_queue(sq: SharQ, clock: Clock) -> None:
    put(sq, "a", requeue_limit=0)
    put(sq, "b")
    put(sq, "x", "q2")
    job = take(sq)
    failed = sq.fail("t", "q1", "a", receipt=job["receipt"], retry_after_ms=3000, throttle=True)
    assert failed == {"status": "success", "state": "queued"}
    assert taken(sq) == ["x"]  # q1 waits; q2 does not
    clock.advance(3000)
    again = take(sq)
    assert (again["job_id"], again["requeues_remaining"]) == ("a", 0)  # it did not count
    with pytest.raises(BadArgumentException):
        sq.fail("t", "q1", "a", throttle=True)  # how long is the point of it


# -- delayed jobs ----------------------------------------------------------------------------


def test_delayed_jobs_join_the_back_of_their_queue_when_due(sq: SharQ, clock: Clock) -> None:
    assert put(sq, "late", delay_ms=2000) == {"status": "scheduled"}
    put(sq, "early", not_before=clock.now + 1000)
    put(sq, "now")
    status = sq.job_status("t", "q1", "late")
    assert status == {"status": "success", "state": "scheduled", "due_at": clock.now + 2000}
    with pytest.raises(DuplicateJob) as duplicate:
        put(sq, "late")
    assert duplicate.value.details == {"state": "scheduled"}
    assert taken(sq) == ["now"]
    assert take(sq) == {"status": "failure", "retry_after_ms": 1000}  # a long poll wakes then
    clock.advance(2000)
    assert taken(sq) == ["early", "late"]  # in due-time order


def test_delayed_jobs_count_for_max_queued_length_and_are_cleared(sq: SharQ, clock: Clock) -> None:
    put(sq, "a", delay_ms=1000, max_queued_length=2)
    put(sq, "b", max_queued_length=2)
    with pytest.raises(QueueFull):
        put(sq, "c", max_queued_length=2)
    assert sq.queue_info("t", "q1")["scheduled"] == 1
    assert sq.delete_queue("t", "q1")["deleted"] == 2
    clock.advance(1000)
    assert take(sq)["status"] == "failure"


def test_the_requeue_pass_promotes_due_jobs_in_batches(sq: SharQ, clock: Clock) -> None:
    jobs = [
        {"queue_id": f"q{n % 3}", "job_id": f"j{n}", "payload": n, "interval": 0, "delay_ms": 10} for n in range(90)
    ]
    sq.enqueue_many("t", jobs)
    clock.advance(10)
    sq.requeue()
    assert sum(sq.queue_info("t", f"q{n}")["queue_length"] for n in range(3)) == 90


# -- seeing a tenant ---------------------------------------------------------------------------


def test_queue_view_and_pages(sq: SharQ, clock: Clock) -> None:
    for n, queue in enumerate(("c", "a", "b")):
        put(sq, f"j{n}", queue, interval=100)
    clock.advance(250)
    info = sq.queue_info("t", "a")
    assert info["queue_length"] == 1 and info["active"] == 0 and info["scheduled"] == 0
    assert info["oldest_queued_age_ms"] == 250 and info["next_ready_at"] == clock.now - 250
    assert info["limits"]["interval"] == {"value": 100, "source": "last enqueue"}
    page = sq.queues("t", limit=2)
    assert page["total"] == 3 and [queue["queue_id"] for queue in page["queues"]] == ["a", "b"]
    assert [queue["queue_id"] for queue in sq.queues("t", limit=2, offset=2)["queues"]] == ["c"]


def test_type_stats_follow_every_move(sq: SharQ, clock: Clock) -> None:
    """Issue 11's figures equal what the store holds after a scripted sequence."""
    put(sq, "a", "q1")
    clock.advance(100)
    put(sq, "b", "q1")
    put(sq, "c", "q2", delay_ms=50)
    put(sq, "d", "q3")
    clock.advance(400)
    stats = sq.type_stats("t")
    assert stats["jobs"] == {"queued": 3, "active": 0, "scheduled": 1, "dead": 0}
    assert stats["oldest_queued_age_ms"] == 500
    first = take(sq)  # a leaves; q1's head is now b, enqueued 400 ms ago
    assert sq.type_stats("t")["oldest_queued_age_ms"] == 400
    sq.fail("t", "q1", "a", receipt=first["receipt"])  # back in front: 500 ms old again
    assert sq.type_stats("t")["oldest_queued_age_ms"] == 500
    sq.clear_queue("t", "q1")
    taken(sq)  # c is due: it moves and is taken with d
    stats = sq.type_stats("t")
    assert stats["jobs"]["queued"] == 0 and stats["oldest_queued_age_ms"] is None
    assert stats["counters"] == {
        "enqueued": 4,
        "dequeued": 3,
        "finished": 0,
        "failed": 1,
        "requeued": 0,
        "dead": 0,
        "expired": 0,
    }


# -- found by review (issue 14) -------------------------------------------------------


def test_a_bursting_queue_never_jumps_queues_that_were_waiting(sq: SharQ, clock: Clock) -> None:
    """Burst lets a queue out back to back, but a queue ready earlier goes first:
    its listing is never put in the past."""
    sq.set_limits("t", "big", interval=1000, burst=50)
    for n in range(30):
        put(sq, f"b{n}", "big")
    clock.advance(20_000)  # big's rate state would list it 20 s in the past
    put(sq, "s0", "small")
    clock.advance(1)
    served = [taken(sq, 1)[0] for _ in range(4)]
    assert "s0" in served[:2], served
    assert sq.queue_info("t", "big")["next_ready_at"] >= clock.now


def test_raising_a_limit_on_an_idle_queue_lengthens_its_rate_memory(sq: SharQ, clock: Clock, redis_client) -> None:
    put(sq, "a", "idle", interval=10)
    take(sq)
    sq.finish("a", "idle", "t")  # drained: the rate state now expires
    last = sq.keys.last("t", "idle")
    assert 0 < redis_client.pttl(last) <= 600_000
    sq.set_limits("t", "idle", interval=3_600_000)
    assert redis_client.pttl(last) > 3_500_000  # lives as long as the new interval needs
    put(sq, "b", "idle", interval=10)
    clock.advance(602_000)
    assert take(sq)["status"] == "failure"  # still an hour from the last job


def test_interval_leaves_an_override_without_an_interval_alone(sq: SharQ, clock: Clock) -> None:
    sq.set_limits("t", "q1", max_active=2)
    put(sq, "a", interval=100)
    assert sq.interval(500, "q1", "t") == {"status": "success"}
    assert sq.limits("t", "q1")["limits"]["interval"] == {"value": 500, "source": "last enqueue"}
    put(sq, "b", interval=50)  # later enqueues still count: no override was pinned
    assert sq.limits("t", "q1")["limits"]["interval"] == {"value": 50, "source": "last enqueue"}
    assert sq.limits("t", "q1")["limits"]["max_active"] == {"value": 2, "source": "override"}


def test_ended_timed_pauses_stop_counting_and_let_the_type_go(sq: SharQ, clock: Clock) -> None:
    put(sq, "a")
    sq.pause("t", "q1", for_ms=500)
    sq.pause("t", "other", for_ms=500)
    assert sq.type_stats("t")["queues"]["paused"] == 2
    sq.delete_queue("t", "q1")
    clock.advance(501)
    assert sq.type_stats("t")["queues"]["paused"] == 0  # over, though nothing came to serve them
    sq.requeue()
    assert "t" not in sq.queue_types()  # drained, no pause left: it leaves the registry
