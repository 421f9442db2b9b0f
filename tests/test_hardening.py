"""Issue 8's engine defects, each pinned by a test that fails without its fix."""

from __future__ import annotations

import dataclasses

import pytest

from sharq_core import Config, DuplicateJob, SharQ
from sharq_core.engine import REQUEUE_BATCH
from tests.support import Clock


def put(sq: SharQ, job_id: str, queue_id: str = "q1", interval: int = 0, queue_type: str = "sms", **extra) -> dict:
    return sq.enqueue({"job": job_id}, interval, job_id, queue_id, queue_type, **extra)


def take(sq: SharQ, queue_type: str = "sms") -> dict:
    return sq.dequeue(queue_type)


# -- 8.1 a type missing from the registry --------------------------------------


def test_requeue_finds_a_type_whose_registration_was_lost(sq: SharQ, clock: Clock, redis_client) -> None:
    put(sq, "a")
    take(sq)
    redis_client.delete(sq.keys.queue_types())  # a failed SADD, or a lost key on another shard
    clock.advance(1001)
    assert sq.requeue(discover=True) == {"requeued": 1, "dead": 0}
    assert sq.metrics()["queue_types"] == ["sms"]
    assert take(sq)["job_id"] == "a"


def test_first_requeue_pass_discovers_by_itself(config: Config, redis_client, clock: Clock) -> None:
    sq = SharQ(config, clock=clock)
    put(sq, "a", requeue_limit=0)
    take(sq)
    redis_client.delete(sq.keys.queue_types())
    clock.advance(1001)
    assert sq.requeue() == {"requeued": 0, "dead": 1}
    assert sq.requeue() == {"requeued": 0, "dead": 0}  # the next scan is DISCOVERY_INTERVAL_S away


def test_drained_types_leave_the_registry(sq: SharQ, clock: Clock) -> None:
    for n in range(20):
        put(sq, "a", queue_type=f"t{n}")
        take(sq, f"t{n}")
        sq.finish("a", "q1", f"t{n}")
    put(sq, "b", queue_type="t0")  # still live
    assert len(sq.queue_types()) == 20
    sq.requeue()
    assert sq.queue_types() == ["t0"]
    assert len(sq.metrics()["queue_types"]) == 20  # the views keep drained types listed a while (issue 23)
    clock.advance(sq.config.idle_type_retention_ms)
    assert sq.metrics()["queue_types"] == ["t0"]


def test_forgetting_a_type_never_hides_a_live_one(sq: SharQ, clock: Clock) -> None:
    """The registry is dropped first and emptiness checked after, so a racing
    enqueue is either seen by the check or lists the type itself."""
    put(sq, "a")
    sq._forget_type("sms")  # an enqueue landed before the check
    assert sq.queue_types() == ["sms"]
    sq.clear_queue("sms", "q1")
    sq._forget_type("sms")
    assert sq.queue_types() == []
    put(sq, "b")  # an enqueue after the check: the type was empty, so it lists itself
    assert sq.queue_types() == ["sms"]


def test_dead_letters_keep_their_type_listed(sq: SharQ, clock: Clock) -> None:
    put(sq, "a", requeue_limit=0)
    take(sq)
    clock.advance(1001)
    sq.requeue()
    sq.requeue()
    assert sq.queue_types() == ["sms"]


# -- 8.5 bounded calls ---------------------------------------------------------------


def test_clear_queue_works_in_bounded_batches(sq: SharQ, redis_client, single_redis) -> None:
    jobs = [{"queue_id": "big", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(100)]
    for start in range(0, 3 * REQUEUE_BATCH, 100):
        sq.enqueue_many("sms", [{**job, "job_id": f"{job['job_id']}-{start}"} for job in jobs])
    sq.dequeue_many("sms", 100)
    redis_client.config_resetstat()
    assert sq.delete_queue("sms", "big", purge_all=True)["deleted"] == 3 * REQUEUE_BATCH
    calls = int(redis_client.info("commandstats")["cmdstat_evalsha"]["calls"])
    assert calls >= 4  # three batches of queued jobs, then the active ones
    assert sq.metrics("sms")["queue_ids"] == []
    assert redis_client.exists(sq.keys.jobs("sms", "big"), sq.keys.queue("sms", "big")) == 0


def test_clear_without_purge_keeps_active_jobs_past_a_batch(sq: SharQ) -> None:
    for n in range(REQUEUE_BATCH + 10):
        put(sq, f"j{n}", "big")
    take(sq)
    assert sq.delete_queue("sms", "big")["deleted"] == REQUEUE_BATCH + 9
    assert sq.job_status("sms", "big", "j0")["state"] == "active"
    assert sq.finish("j0", "big", "sms") == {"status": "success"}


# -- 8.7 the rate memory -----------------------------------------------------------


def test_purge_all_keeps_the_rate_limit(sq: SharQ, clock: Clock) -> None:
    put(sq, "a", interval=5000)
    take(sq)
    sq.clear_queue("sms", "q1", purge_all=True)
    clock.advance(1000)
    put(sq, "b", interval=5000)
    assert take(sq) == {"status": "failure", "retry_after_ms": 4000}


def test_lowering_then_raising_the_interval_keeps_the_rate(sq: SharQ, clock: Clock, redis_client) -> None:
    hour = 3_600_000
    for job in ("a", "b"):
        put(sq, job, interval=hour)
    started = take(sq)["dequeued_at"]
    clock.advance(11 * 60_000)  # past the 10-minute minimum memory
    sq.interval(1000, "q1", "sms")
    assert redis_client.pttl(sq.keys.last("sms", "q1")) == -1  # kept while the queue is live
    sq.interval(hour, "q1", "sms")
    assert take(sq) == {"status": "failure", "retry_after_ms": started + hour - clock.now}


def test_drained_queue_keeps_its_rate_memory_for_the_interval(sq: SharQ, clock: Clock, redis_client) -> None:
    put(sq, "a", interval=3_600_000)
    take(sq)
    sq.finish("a", "q1", "sms")
    assert redis_client.pttl(sq.keys.last("sms", "q1")) > 3_590_000


def test_a_refilled_queue_keeps_its_rate_state_for_good(sq: SharQ, clock: Clock, redis_client) -> None:
    """enqueue.lua lifts the expiry when the queue comes back, and only then."""
    put(sq, "a", interval=1000)
    take(sq)
    sq.finish("a", "q1", "sms")
    put(sq, "b", interval=1000)
    put(sq, "c", interval=1000)
    assert redis_client.pttl(sq.keys.last("sms", "q1")) == -1
    clock.advance(11 * 60_000)  # past the rate memory: the state must still be there
    assert take(sq)["job_id"] == "b"
    assert take(sq) == {"status": "failure", "retry_after_ms": 1000}


# -- 8.6 and the 503 retry: job ids known after they end ------------------------------


def test_finished_job_id_is_refused_within_the_dedupe_window(sq: SharQ, clock: Clock) -> None:
    put(sq, "a")
    take(sq)
    sq.finish("a", "q1", "sms")
    assert sq.job_status("sms", "q1", "a") == {"status": "success", "state": "finished", "finished_at": clock.now}
    with pytest.raises(DuplicateJob) as refused:
        put(sq, "a")
    assert (refused.value.message, refused.value.details) == (
        "job_id was finished within the dedupe window (dedupe_window_ms)",
        {"state": "finished"},
    )
    assert sq.enqueue_many("sms", [{"queue_id": "q1", "job_id": "a", "payload": 1, "interval": 0}])[0]["state"] == (
        "finished"
    )
    clock.advance(sq.config.dedupe_window_ms)
    sq.requeue()  # trims what the window no longer covers
    assert sq.job_status("sms", "q1", "a")["state"] == "unknown"
    assert put(sq, "a") == {"status": "queued"}


def test_dedupe_window_zero_forgets_finished_jobs(config: Config, redis_client, clock: Clock) -> None:
    sq = SharQ(dataclasses.replace(config, dedupe_window_ms=0), clock=clock)
    put(sq, "a")
    take(sq)
    sq.finish("a", "q1", "sms")
    assert put(sq, "a") == {"status": "queued"}


def test_duplicate_says_the_state(sq: SharQ) -> None:
    put(sq, "a")
    with pytest.raises(DuplicateJob) as queued:
        put(sq, "a")
    take(sq)
    with pytest.raises(DuplicateJob) as active:
        put(sq, "a")
    assert (queued.value.details, active.value.details) == ({"state": "queued"}, {"state": "active"})


# -- the seed library's own answers ---------------------------------------------------


def test_seed_answers_failure_dicts_and_housekeeping(sq: SharQ, config: Config) -> None:
    """Exactly the seed library's dicts: code comparing them keeps working."""
    assert sq.finish("nope", "q1", "sms") == {"status": "failure"}
    assert sq.interval(10, "q1", "sms") == {"status": "failure"}
    assert sq.clear_queue("sms", "q1") == {"status": "Failure", "message": "No queued calls found"}
    put(sq, "a")
    assert sq.clear_queue("sms", "q1") == {"status": "Success", "message": "Successfully removed all queued calls"}
    put(sq, "a")
    assert sq.clear_queue("sms", "q1", purge_all=True) == {
        "status": "Success", "message": "Successfully removed all queued calls and purged related resources",
    }  # fmt: skip
    assert sq.redis_client() is sq.redis
    put(sq, "a")
    sq.reload_lua_scripts()
    sq.reload_config(dataclasses.replace(config, job_expire_interval=5000))
    assert sq.config.job_expire_interval == 5000
    assert take(sq)["job_id"] == "a"


def test_purging_a_queue_with_nothing_queued(sq: SharQ) -> None:
    """Found by Schemathesis: a purge whose first batch deleted nothing sent Redis "-0"."""
    put(sq, "a")
    take(sq)
    assert sq.delete_queue("sms", "q1", purge_all=True)["deleted"] == 1
