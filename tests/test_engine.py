"""One test per rule of SPEC's Semantics, on a real Redis with a stepped clock."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sharq_core import BadArgumentException, Config, DuplicateJob, NotFound, QueueFull, SharQ
from tests.support import Clock, commands_of, primaries, wait_for


def put(sq: SharQ, job_id: str, queue_id: str = "q1", interval: int = 0, **extra) -> dict:
    return sq.enqueue(
        payload={"job": job_id},
        interval=interval,
        job_id=job_id,
        queue_id=queue_id,
        queue_type="sms",
        **extra,
    )


def take(sq: SharQ) -> dict:
    return sq.dequeue(queue_type="sms")


def test_enqueue_dequeue_round_trip_keeps_payload(sq: SharQ) -> None:
    payload = {"text": "héllo / wörld", "n": [1, 2.5, None, True], "big": 2**70, "nested": {"a": {}}}
    assert sq.enqueue(payload, 1000, "j1", "user001", "sms") == {"status": "queued"}
    job = take(sq)
    assert len(job.pop("receipt")) == 18
    assert job == {
        "status": "success",
        "queue_id": "user001",
        "job_id": "j1",
        "payload": payload,
        "requeues_remaining": -1,
        "current_queue_length": 0,
        "dequeued_at": sq._clock(),
        "expires_at": sq._clock() + 1000,
    }


def test_default_queue_type(sq: SharQ) -> None:
    sq.enqueue("x", 0, "j1", "q")
    assert sq.dequeue()["job_id"] == "j1"


def test_fifo_within_a_queue(sq: SharQ) -> None:
    for n in range(5):
        put(sq, f"j{n}")
    assert [take(sq)["job_id"] for _ in range(5)] == [f"j{n}" for n in range(5)]
    assert take(sq)["status"] == "failure"


def test_nothing_ready_says_when(sq: SharQ, clock: Clock) -> None:
    assert take(sq) == {"status": "failure", "retry_after_ms": None}
    put(sq, "a", interval=1000)
    put(sq, "b", interval=1000)
    take(sq)
    clock.advance(300)
    assert take(sq) == {"status": "failure", "retry_after_ms": 700}


def test_rate_limit_spaces_dequeues_by_interval(sq: SharQ, clock: Clock) -> None:
    for n in range(3):
        put(sq, f"j{n}", interval=1000)
    assert take(sq)["job_id"] == "j0"
    clock.advance(999)
    assert take(sq)["status"] == "failure"
    clock.advance(1)
    assert take(sq)["job_id"] == "j1"


def test_interval_zero_means_no_limit(sq: SharQ) -> None:
    for n in range(50):
        put(sq, f"j{n}", interval=0)
    assert all(take(sq)["status"] == "success" for _ in range(50))


def test_rate_limit_survives_an_empty_refilled_queue(sq: SharQ, clock: Clock) -> None:
    # interval far above job_expire_interval (1000): the original forgot the dequeue
    put(sq, "a", interval=5000)
    take(sq)
    sq.finish("a", "q1", "sms")
    clock.advance(2000)
    put(sq, "b", interval=5000)
    assert take(sq)["status"] == "failure"
    clock.advance(2999)
    assert take(sq)["status"] == "failure"
    clock.advance(1)
    assert take(sq)["job_id"] == "b"


def test_interval_update_applies_from_last_dequeue(sq: SharQ, clock: Clock) -> None:
    for n in range(3):
        put(sq, f"j{n}", interval=1000)
    take(sq)
    assert sq.interval(5000, "q1", "sms") == {"status": "success"}
    clock.advance(1000)
    assert take(sq)["status"] == "failure"
    sq.interval(100, "q1", "sms")
    assert take(sq)["job_id"] == "j1"


def test_interval_of_unknown_queue_answers_failure(sq: SharQ) -> None:
    """Exactly the seed's answer; the raising form carries the message HTTP gives."""
    assert sq.interval(100, "nobody", "sms") == {"status": "failure"}
    with pytest.raises(NotFound, match="queue holds no queued or active job"):
        sq.set_interval(100, "nobody", "sms")


def test_fairness_serves_earliest_ready_queue(sq: SharQ, clock: Clock) -> None:
    for n in range(3):
        put(sq, f"a{n}", "noisy", interval=0)
    clock.advance(1)
    put(sq, "b0", "quiet", interval=1000)
    clock.advance(1)
    assert take(sq)["job_id"] == "a0"
    # "noisy" is next ready at its last dequeue, later than "quiet" became ready
    assert take(sq)["job_id"] == "b0"
    assert take(sq)["job_id"] == "a1"


def test_fairness_round_robins_equal_rates(sq: SharQ, clock: Clock) -> None:
    for n in range(3):
        for queue in ("x", "y", "z"):
            put(sq, f"{queue}{n}", queue, interval=10)
        clock.advance(1)
    served = []
    for _ in range(9):
        clock.advance(10)
        served.append(take(sq)["queue_id"])
    assert served == ["x", "y", "z"] * 3


def test_finish_and_not_active(sq: SharQ) -> None:
    put(sq, "a")
    assert sq.finish("a", "q1", "sms")["status"] == "failure"  # queued, not active
    take(sq)
    assert sq.finish("a", "q1", "sms") == {"status": "success"}
    assert sq.finish("a", "q1", "sms") == {"status": "failure"}  # exactly the seed's answer
    with pytest.raises(NotFound, match="job is not active"):
        sq.finish_job("a", "q1", "sms")
    assert sq.metrics("sms") == {"status": "success", "queue_ids": [], "total": 0}


def test_expired_job_requeued_to_front(sq: SharQ, clock: Clock) -> None:
    for job in ("a", "b"):
        put(sq, job, requeue_limit=-1)
    assert take(sq)["job_id"] == "a"
    clock.advance(1001)
    assert sq.requeue() == {"requeued": 1, "dead": 0}
    assert sq.finish("a", "q1", "sms")["status"] == "failure"  # expired and requeued: no longer active
    assert take(sq)["job_id"] == "a"
    assert take(sq)["job_id"] == "b"


def test_requeue_respects_rate_limit(sq: SharQ, clock: Clock) -> None:
    put(sq, "a", interval=5000)
    take(sq)
    clock.advance(1001)
    sq.requeue()
    assert take(sq) == {"status": "failure", "retry_after_ms": 3999}


def test_requeue_limit_counts_down_then_dead_letter(sq: SharQ, clock: Clock) -> None:
    put(sq, "a", requeue_limit=2)
    seen = []
    for _ in range(3):
        seen.append(take(sq)["requeues_remaining"])
        clock.advance(1001)
        sq.requeue()
    assert seen == [2, 1, 0]
    assert take(sq)["status"] == "failure"
    dead = sq.dead_letters("sms")
    assert dead["total"] == 1
    assert dead["jobs"][0] | {"died_at": 0} == {
        "queue_id": "q1",
        "job_id": "a",
        "payload": {"job": "a"},
        "requeue_limit": 2,
        "reason": "expired with no requeue left",
        "last_error": None,
        "died_at": 0,
    }
    assert sq.job_status("sms", "q1", "a")["state"] == "dead"


def test_requeue_limit_zero_never_requeues(sq: SharQ, clock: Clock) -> None:
    put(sq, "a", requeue_limit=0)
    assert take(sq)["requeues_remaining"] == 0
    clock.advance(1001)
    assert sq.requeue() == {"requeued": 0, "dead": 1}
    assert take(sq)["status"] == "failure"


def test_requeue_limit_forever(sq: SharQ, clock: Clock) -> None:
    put(sq, "a", requeue_limit=-1)
    for _ in range(5):
        assert take(sq)["requeues_remaining"] == -1
        clock.advance(1001)
        sq.requeue()
    assert sq.dead_letters("sms")["total"] == 0


def test_default_requeue_limit_from_config(sq: SharQ) -> None:
    put(sq, "a")
    assert take(sq)["requeues_remaining"] == sq.config.default_job_requeue_limit


def test_requeue_works_in_batches(sq: SharQ, clock: Clock) -> None:
    for n in range(1200):
        put(sq, f"j{n}", f"q{n % 7}")
    assert sq.dequeue_many("sms", 100)["status"] == "success"
    for _ in range(11):
        sq.dequeue_many("sms", 100)
    clock.advance(1001)
    assert sq.requeue() == {"requeued": 1200, "dead": 0}
    assert sum(sq.get_queue_length("sms", f"q{n}") for n in range(7)) == 1200


def test_dead_letter_retry_and_delete(sq: SharQ, clock: Clock) -> None:
    for job in ("a", "b"):
        put(sq, job, requeue_limit=0)
        take(sq)
    clock.advance(1001)
    sq.requeue()
    assert sq.retry_dead_letter("sms", "q1", "a") == {"status": "queued"}
    job = take(sq)
    assert (job["job_id"], job["requeues_remaining"], job["payload"]) == ("a", 0, {"job": "a"})
    assert sq.delete_dead_letter("sms", "q1", "b") == {"status": "success"}
    assert sq.dead_letters("sms")["jobs"] == []
    for call in (sq.retry_dead_letter, sq.delete_dead_letter):
        with pytest.raises(NotFound):
            call("sms", "q1", "b")


def test_dead_letter_is_never_overwritten(sq: SharQ, clock: Clock) -> None:
    """Issue 8.6: a job_id that is dead-lettered cannot be enqueued (and die) again."""
    put(sq, "a", requeue_limit=0)
    take(sq)
    clock.advance(1001)
    sq.requeue()
    first = sq.dead_letters("sms")["jobs"]
    with pytest.raises(DuplicateJob) as refused:
        sq.enqueue({"other": 1}, 0, "a", "q1", "sms")
    assert refused.value.details == {"state": "dead"}
    assert sq.dead_letters("sms")["jobs"] == first
    sq.delete_dead_letter("sms", "q1", "a")
    assert put(sq, "a") == {"status": "queued"}


def test_touch_extends_an_active_job(sq: SharQ, clock: Clock) -> None:
    put(sq, "a")
    take(sq)
    clock.advance(800)
    assert sq.touch("a", "q1", "sms") == {"status": "success", "expires_at": clock.now + 1000}
    clock.advance(800)
    assert sq.requeue() == {"requeued": 0, "dead": 0}
    assert sq.job_status("sms", "q1", "a") == {
        "status": "success",
        "state": "active",
        "expires_at": clock.now + 200,
    }
    with pytest.raises(NotFound):
        sq.touch("zzz", "q1", "sms")


def test_job_status_states(sq: SharQ) -> None:
    assert sq.job_status("sms", "q1", "a") == {"status": "success", "state": "unknown"}
    put(sq, "a", requeue_limit=3)
    assert sq.job_status("sms", "q1", "a") == {
        "status": "success", "state": "queued", "requeues_remaining": 3, "requeue_limit": 3,
        "enqueued_at": 1_700_000_000_000,
    }  # fmt: skip


def test_duplicate_job_changes_nothing(sq: SharQ) -> None:
    put(sq, "a", interval=10)
    with pytest.raises(DuplicateJob):
        put(sq, "a", interval=99)
    take(sq)
    with pytest.raises(DuplicateJob):
        put(sq, "a")  # active counts too
    assert sq.get_queue_length("sms", "q1") == 0
    sq.finish("a", "q1", "sms")
    with pytest.raises(DuplicateJob) as finished:
        put(sq, "a")  # within the dedupe window
    assert finished.value.details == {"state": "finished"}


def test_same_job_id_in_other_queue_is_fine(sq: SharQ) -> None:
    put(sq, "a", "q1")
    assert put(sq, "a", "q2") == {"status": "queued"}


def test_max_queued_length(sq: SharQ) -> None:
    put(sq, "a", max_queued_length=2)
    put(sq, "b", max_queued_length=2)
    with pytest.raises(QueueFull):
        put(sq, "c", max_queued_length=2)
    assert sq.get_queue_length("sms", "q1") == 2
    take(sq)
    assert put(sq, "c", max_queued_length=2) == {"status": "queued"}


def test_clear_queue_keeps_active_jobs(sq: SharQ) -> None:
    for job in ("a", "b", "c"):
        put(sq, job)
    take(sq)
    assert sq.delete_queue("sms", "q1")["deleted"] == 2
    assert sq.get_queue_length("sms", "q1") == 0
    assert sq.finish("a", "q1", "sms") == {"status": "success"}
    assert sq.clear_queue("sms", "q1") == {"status": "Failure", "message": "No queued calls found"}  # the seed's
    with pytest.raises(NotFound, match="queue holds nothing to delete"):
        sq.delete_queue("sms", "q1")


def test_clear_queue_purge_all(sq: SharQ) -> None:
    for job in ("a", "b"):
        put(sq, job)
    take(sq)
    assert sq.delete_queue("sms", "q1", purge_all=True)["deleted"] == 2
    assert sq.finish("a", "q1", "sms")["status"] == "failure"
    assert sq.metrics("sms")["queue_ids"] == []
    assert take(sq)["status"] == "failure"


def test_metrics_buckets_and_counts(sq: SharQ, clock: Clock) -> None:
    clock.now = 1_700_000_040_000  # 40 s into a minute
    put(sq, "a", "q1")
    put(sq, "b", "q2")
    take(sq)
    clock.advance(60_000)
    put(sq, "c", "q1")
    overall = sq.metrics()
    assert overall["queue_types"] == ["sms"]
    minute = clock.now - clock.now % 60_000
    keys = [str(minute - 60_000 * n) for n in range(9, -1, -1)]
    assert list(overall["enqueue_counts"]) == keys
    assert overall["enqueue_counts"][keys[-1]] == 1
    assert overall["enqueue_counts"][keys[-2]] == 2
    assert overall["dequeue_counts"][keys[-2]] == 1
    assert sum(overall["dequeue_counts"].values()) == 1
    per_queue = sq.metrics("sms", "q1")
    assert per_queue["queue_length"] == 1
    assert per_queue["enqueue_counts"][keys[-1]] == 1
    assert per_queue["dequeue_counts"][keys[-2]] == 1
    assert sq.metrics("sms") == {"status": "success", "queue_ids": ["q1", "q2"], "total": 2}
    assert sq.metrics("sms", limit=1, offset=1) == {"status": "success", "queue_ids": ["q2"], "total": 2}
    clock.advance(10 * 60_000)
    assert sum(sq.metrics()["enqueue_counts"].values()) == 0


def test_metrics_counters_expire(sq: SharQ, redis_client) -> None:
    put(sq, "a")
    (key,) = redis_client.keys("*:stats:*")
    assert 0 < redis_client.pttl(key) <= 660_000


def _client_ids(redis_client) -> set[tuple[str, int]]:
    """The clients connected to the test Redis (on a cluster, to every primary)."""
    nodes = primaries(redis_client)
    return {(index, client["id"]) for index, node in enumerate(nodes) for client in node.client_list()}


def test_close_leaves_no_connection_open(config: Config, redis_client) -> None:
    # counted by client id: other tests' engines may leave (garbage collected) meanwhile
    before = _client_ids(redis_client)
    engine = SharQ(config)
    engine.enqueue_many("sms", [{"queue_id": f"q{n}", "job_id": "a", "payload": n, "interval": 0} for n in range(9)])
    assert engine.dequeue_many("sms", 9)["status"] == "success"
    opened = _client_ids(redis_client) - before
    assert opened
    engine.close()
    wait_for(lambda: not opened & _client_ids(redis_client), timeout=5, what="Redis to see the engine's connections go")
    assert engine.type_stats("sms")["jobs"]["active"] == 9  # a call after it connects again
    engine.close()


def test_a_minute_bucket_is_a_hash_table_from_its_first_count(sq: SharQ, redis_client) -> None:
    """A busy type's bucket holds two fields per queue: in Redis' flat encoding of
    small hashes each per-queue count would scan them all."""
    sq.enqueue_many("sms", [{"queue_id": f"q{n}", "job_id": "a", "payload": n, "interval": 0} for n in range(3)])
    sq.take("sms", 3)
    (key,) = redis_client.keys("*:stats:*")
    assert redis_client.object("encoding", key) == b"hashtable"
    assert sq.metrics("sms", "q1")["enqueue_counts"][key.decode().rsplit(":", 1)[1]] == 1
    assert sum(sq.metrics()["dequeue_counts"].values()) == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("job_id", ""),
        ("job_id", "a" * 101),
        ("job_id", "a/b"),
        ("job_id", "a\x00"),
        ("job_id", 5),
        ("queue_id", "../etc"),
        ("queue_id", None),
        ("queue_type", "sms:x"),
        ("interval", -1),
        ("interval", 1.5),
        ("interval", True),
        ("interval", "100"),
        ("interval", 10**13),
        ("requeue_limit", -2),
        ("requeue_limit", 2.0),
        ("max_queued_length", 0),
        ("max_queued_length", "3"),
        ("payload", float("nan")),
        ("payload", {"x": float("inf")}),
        ("payload", object()),
    ],
)
def test_invalid_enqueue_arguments(sq: SharQ, redis_client, field: str, value) -> None:
    args = {"payload": 1, "interval": 0, "job_id": "j", "queue_id": "q", "queue_type": "sms"}
    args[field] = value
    with pytest.raises(BadArgumentException):
        sq.enqueue(**args)
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda sq: sq.dequeue("bad type"),
        lambda sq: sq.dequeue_many("sms", 0),
        lambda sq: sq.dequeue_many("sms", 101),
        lambda sq: sq.finish("j", "q", "a" * 101),
        lambda sq: sq.touch("j!", "q", "sms"),
        lambda sq: sq.interval(-5, "q", "sms"),
        lambda sq: sq.clear_queue("sms", "q", purge_all="yes"),
        lambda sq: sq.metrics(queue_id="q"),
        lambda sq: sq.metrics("sms", "q q"),
        lambda sq: sq.job_status("sms", "", "j"),
        lambda sq: sq.dead_letters("sms", limit=0),
        lambda sq: sq.enqueue_many("sms", []),
        lambda sq: sq.enqueue_many("sms", [{"queue_id": "q", "job_id": "j", "interval": 0}]),
        lambda sq: sq.enqueue_many("sms", ["nope"]),
    ],
)
def test_invalid_arguments_everywhere(sq: SharQ, redis_client, call) -> None:
    with pytest.raises(BadArgumentException):
        call(sq)
    assert redis_client.dbsize() == 0


def test_enqueue_many_reports_each_job(sq: SharQ) -> None:
    put(sq, "dup")
    jobs = [{"queue_id": "q1", "job_id": job, "payload": job, "interval": 0} for job in ("x", "dup", "y", "x")]
    results = sq.enqueue_many("sms", jobs)
    assert [r["status"] for r in results] == ["queued", "failure", "queued", "failure"]
    assert results[1]["code"] == 409
    assert sq.get_queue_length("sms", "q1") == 3


def test_dequeue_many_honours_rate_and_order(sq: SharQ, clock: Clock) -> None:
    for n in range(3):
        put(sq, f"a{n}", "a", interval=1000)
        put(sq, f"b{n}", "b", interval=0)
    got = sq.dequeue_many("sms", 10)["jobs"]
    assert [(j["queue_id"], j["job_id"]) for j in got] == [("a", "a0"), ("b", "b0"), ("b", "b1"), ("b", "b2")]
    assert sq.dequeue_many("sms", 10) == {"status": "failure", "retry_after_ms": 1000, "jobs": []}


def test_seed_config_file_is_valid(redis_url: str, single_redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed README's sample file, unchanged; the environment overrides its port."""
    monkeypatch.setenv("SHARQ_REDIS_PORT", redis_url.rsplit(":", 1)[1].split("/")[0])
    sq = SharQ(str(Path(__file__).parent / "data" / "seed-sharq.conf"))
    assert sq.config.redis.key_prefix == "sharq_server"
    assert sq.config.redis.embedded is False
    assert sq.deep_status() == {"status": "success"}


def test_a_refused_enqueue_leaves_no_record(sq: SharQ, clock: Clock, redis_client) -> None:
    """enqueue.lua writes the record first and takes it back when the job is refused."""
    put(sq, "dead", requeue_limit=0)
    take(sq)
    clock.advance(1001)
    sq.requeue()
    put(sq, "done")
    sq.finish("done", "q1", "sms", take(sq)["receipt"])
    put(sq, "held", "q2", max_queued_length=1)
    for job_id, queue_id, state in (("dead", "q1", "dead"), ("done", "q1", "finished"), ("full", "q2", None)):
        with pytest.raises((DuplicateJob, QueueFull)) as refused:
            put(sq, job_id, queue_id, max_queued_length=1)
        assert refused.value.details == ({"state": state} if state else {})
    assert redis_client.exists(sq.keys.jobs("sms", "q1")) == 0
    assert redis_client.hkeys(sq.keys.jobs("sms", "q2")) == [b"held"]
    assert sq.job_status("sms", "q2", "full")["state"] == "unknown"
    assert sq.job_status("sms", "q1", "dead")["state"] == "dead"


def test_batches_count_each_queue_in_the_minute(sq: SharQ, clock: Clock) -> None:
    """A call adds to a queue's minute counters once, by as many jobs as it moved."""
    jobs = [{"queue_id": queue_id, "job_id": f"j{n}", "payload": n, "interval": 0} for n, queue_id in enumerate("aaab")]
    sq.enqueue_many("sms", [*jobs, jobs[0]])  # the duplicate is not counted
    sq.dequeue_many("sms", 3)
    minute = str(clock.now - clock.now % 60_000)
    counts = {q: sq.metrics("sms", q) for q in "ab"}
    assert {q: m["enqueue_counts"][minute] for q, m in counts.items()} == {"a": 3, "b": 1}
    assert sum(m["dequeue_counts"][minute] for m in counts.values()) == 3
    assert (sq.metrics()["enqueue_counts"][minute], sq.metrics()["dequeue_counts"][minute]) == (4, 3)
    counters = sq.type_stats("sms")["counters"]
    assert (counters["enqueued"], counters["dequeued"]) == (4, 3)


def test_rates_count_each_minute_of_the_last_hour(sq: SharQ, clock: Clock, redis_client) -> None:
    """Issue 24: the dashboard's charts read an hour of enqueued, handed out,
    finished and failed counts per minute, and when a worker last took a job."""
    clock.now = 1_700_000_040_000
    put(sq, "a", "q1")
    put(sq, "b", "q2")
    first = take(sq)
    sq.finish(first["job_id"], first["queue_id"], "sms", receipt=first["receipt"])
    clock.advance(30 * 60_000)
    second = take(sq)
    sq.fail("sms", second["queue_id"], second["job_id"], receipt=second["receipt"])
    rates = sq.rates("sms")
    minute = clock.now - clock.now % 60_000
    assert rates["minutes"] == [minute - 60_000 * n for n in range(59, -1, -1)]
    assert (rates["enqueued"][-31], rates["dequeued"][-31], rates["finished"][-31]) == (2, 1, 1)
    assert (rates["dequeued"][-1], rates["failed"][-1], rates["finished"][-1]) == (1, 1, 0)
    assert sum(rates["enqueued"]) == 2 and sum(rates["failed"]) == 1
    # the failed job went back to its queue: the backlog counts it again
    assert (rates["queued"][0], rates["queued"][-31], rates["queued"][-2], rates["queued"][-1]) == (None, 1, 1, 1)
    assert sq.type_stats("sms")["jobs"]["queued"] == 1
    assert sq.type_stats("sms")["last_taken_at"] == clock.now
    assert all(0 < redis_client.pttl(key) <= 3_660_000 for key in redis_client.keys("*:rates:*"))
    clock.advance(31 * 60_000)
    assert sum(sq.rates("sms")["enqueued"]) == 0


def test_the_backlog_chart_follows_every_change_of_the_queued_count(sq: SharQ, clock: Clock, redis_client) -> None:
    """Found by review: the rates' backlog (`queued`) was noted only by enqueue and
    dequeue, so after a queue was deleted, or expired jobs went back to their
    queues, or a dead letter was retried, the chart showed the old backlog for the
    rest of the hour while /stats/ showed another. Checked on a type over 2 shards,
    whose charts sum the shards."""
    sq.set_type_settings("sms", 2)
    clock.now = 1_700_000_040_000
    for n in range(6):
        put(sq, f"j{n}", queue_id=f"q{n % 3}", requeue_limit=0 if n == 5 else 1)

    def backlog() -> tuple[int | None, int]:
        return sq.rates("sms")["queued"][-1], sq.type_stats("sms")["jobs"]["queued"]

    assert backlog() == (6, 6)
    sq.delete_queue("sms", "q0")  # j0, j3
    assert backlog() == (4, 4)
    taken = [take(sq) for _ in range(4)]
    assert backlog() == (0, 0)
    assert sq.type_stats("sms")["last_taken_at"] == clock.now
    clock.advance(60_000 + sq.config.job_expire_interval)
    sq.requeue()  # three back in their queues, j5 (requeue_limit 0) dead
    assert backlog() == (3, 3)
    assert {job["job_id"] for job in taken} >= {"j5"}
    sq.retry_dead_letter("sms", "q2", "j5")
    assert backlog() == (4, 4)
    assert all(0 < redis_client.pttl(key) <= 3_660_000 for key in redis_client.keys("*:rates:*"))


def test_last_taken_at_stays_a_time_across_a_reshard(sq: SharQ, clock: Clock) -> None:
    """Found by review: `taken_at` (the last dequeue's time) is kept in the totals
    hash, whose fields a reshard adds up from the shards it removes: 2 shards down to
    1 made last_taken_at the sum of two times, decades ahead (the dashboard's "no
    worker took a job for N s" negative). The latest time carries, not the sum."""
    sq.set_type_settings("sms", 2)
    for n in range(10):
        put(sq, f"j{n}", queue_id=f"q{n}")
    taken = sq.dequeue_many("sms", 10)["jobs"]
    shards = {sq._shard("sms", job["queue_id"]) for job in taken}
    assert len(taken) == 10 and len(shards) == 2  # both shards handed out jobs
    taken_at = clock.now
    clock.advance(1000)
    for job in taken:
        sq.finish(job["job_id"], job["queue_id"], "sms", receipt=job["receipt"])
    assert sq.type_stats("sms")["last_taken_at"] == taken_at
    sq.set_type_settings("sms", 1)
    stats = sq.type_stats("sms")
    assert stats["last_taken_at"] == taken_at
    assert (stats["counters"]["dequeued"], stats["counters"]["finished"]) == (10, 10)  # counts do add up


def _names(calls: list[str]) -> list[str]:
    """The command names MONITOR saw, upper case."""
    return [call.split()[0].strip('"').upper() for call in calls]


def test_a_first_job_lists_its_queue_once(sq: SharQ, redis_client, single_redis) -> None:
    """A job enqueued into a queue that held none lists the queue once, after the
    push. The queue used to be scheduled empty first too (an LLEN, a ZREM from
    the ready set and a look at its demand, all for nothing): fan-out to many
    queues of a job each paid 21 commands a job, 18 now (issue 29)."""
    names = _names(commands_of(redis_client, lambda: sq.enqueue(1, 0, "a", "q", "t")))
    assert names.count("LLEN") == 1 and "ZREM" not in names, names
    assert sq.dequeue("t")["job_id"] == "a"


def test_finishing_a_job_leaves_a_count_of_0_and_reads_no_limits_the_type_lacks(
    sq: SharQ, redis_client, single_redis
) -> None:
    """The last active job of a queue that still holds jobs leaves its active count
    at 0 rather than deleting it (the next take writes it again); a queue whose last
    job goes looks up limits of its own only when the type has some (issue 29)."""
    for job in ("a", "b"):
        sq.enqueue(1, 0, job, "q", "t")
    first = sq.dequeue("t")
    calls = commands_of(redis_client, lambda: sq.finish("a", "q", "t", receipt=first["receipt"]))
    named = zip(_names(calls), calls, strict=True)
    on_count = [name for name, call in named if name != "EVALSHA" and ":nactive" in call]
    assert on_count == ["HINCRBY"], calls
    assert redis_client.hget(sq.keys.nactive("t"), "q") == b"0"
    second = sq.dequeue("t")
    names = _names(commands_of(redis_client, lambda: sq.finish("b", "q", "t", receipt=second["receipt"])))
    assert "HEXISTS" not in names, names
    assert redis_client.exists(sq.keys.nactive("t"), sq.keys.known("t")) == 0  # the queue is forgotten
    sq.set_limits("t", "other", interval=1000)
    sq.enqueue(1, 0, "c", "q", "t")
    third = sq.dequeue("t")
    names = _names(commands_of(redis_client, lambda: sq.finish("c", "q", "t", receipt=third["receipt"])))
    assert "HEXISTS" in names, names


def test_a_job_with_a_new_interval_that_overtakes_lists_its_queue_as_the_change_would(sq: SharQ, clock: Clock) -> None:
    """An enqueue giving a queue that holds jobs a new interval lists it again by
    its head at once, as POST /interval would (the new interval counts from the
    last dequeue), then for the job if it overtook that head. Scheduled only once,
    after the push, a queue with a burst whose costly head the new interval holds
    back kept the place it had under the old one, jumping a queue listed since
    (issue 29's review)."""
    sq.set_limits("sms", "a", burst=3)
    put(sq, "a1", "a", interval=10)
    assert take(sq)["job_id"] == "a1"
    put(sq, "a2", "a", interval=10, cost=3)  # due in 10 ms: its cost spends the whole burst
    clock.advance(30)
    put(sq, "b1", "b")
    clock.advance(20)
    put(sq, "a3", "a", interval=1000, priority=5)  # a2 now waits 1 s; a3, one unit, may go
    assert [take(sq)["job_id"], take(sq)["job_id"]] == ["b1", "a3"]


def test_an_expiry_past_2_63_ms_never_comes(config: Config, clock: Clock, redis_client) -> None:
    """job_expire_interval has no upper bound: the largest int64, an expiry meant
    as never, must not turn into one long past (formatted with %d, now + it wrapped
    to -2^63 and the next requeue pass handed the job out again; issue 29's review)."""
    engine = SharQ(dataclasses.replace(config, job_expire_interval=2**63 - 1), clock=clock)
    try:
        put(engine, "a")
        assert take(engine)["job_id"] == "a"
        clock.advance(60_000)
        engine.requeue(discover=False)
        assert engine.job_status("sms", "q1", "a")["state"] == "active"
        assert take(engine)["status"] == "failure"
    finally:
        engine.close()
