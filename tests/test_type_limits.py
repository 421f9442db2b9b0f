"""Issue 19.1: type-wide limits on top of each queue's, in the same take script."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from sharq_core import BadArgumentException, SharQ
from tests.support import Clock, ServerProcess


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


# -- through two real server instances -------------------------------------------------


def test_two_instances_keep_the_type_window_and_cap(tmp_path) -> None:
    """Eight pollers on two instances (three gunicorn workers) share one type with
    interval 50 ms, burst 2 and max_active 3. On the Redis clock, no window of T
    ms hands out more than 2 + T // 50 jobs, and never more than 3 are held."""
    first = ServerProcess(str(tmp_path / "a"), workers=2).start()
    second = ServerProcess(str(tmp_path / "b"), workers=1, env={"SHARQ_REDIS_URL": _redis_url(first)}).start()
    store = redis.Redis.from_url(_redis_url(first))
    try:
        limits = {"interval": 50, "burst": 2, "max_active": 3}
        status, body = first.call("PUT", "/limits/sms/", limits)
        assert (status, body["limits"]) == (200, limits)
        jobs = [{"queue_id": f"q{n % 10}", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(40)]
        assert first.call("POST", "/enqueue/sms/", {"jobs": jobs})[0] == 200
        taken: list[int] = []
        held: list[tuple[int, int]] = []

        def poll(server: ServerProcess) -> None:
            while True:
                status, job = server.call("GET", "/dequeue/sms/?wait=2")
                if status != 200:
                    return
                seconds, micros = store.time()  # taken before the finish: the held span only shrinks
                held.append((job["dequeued_at"], seconds * 1000 + micros // 1000))
                taken.append(job["dequeued_at"])
                ack = {"receipt": job["receipt"]}
                assert server.call("POST", f"/finish/sms/{job['queue_id']}/{job['job_id']}/", ack)[0] == 200

        with ThreadPoolExecutor(8) as pool:
            for n in range(8):
                pool.submit(poll, first if n % 2 else second)
        assert len(taken) == 40
        times = sorted(taken)
        for i, start in enumerate(times):
            for end in times[i:]:
                assert sum(1 for t in times if start <= t <= end) <= 2 + (end - start) // 50
        for at, _ in held:
            assert sum(1 for start, end in held if start <= at < end) <= 3
        stats = second.call("GET", "/stats/sms/")[1]
        assert stats["type_limits"] == {**limits, "active": 0}
    finally:
        second.stop()
        first.stop()
        store.close()


def test_type_routes_over_http(tmp_path) -> None:
    server = ServerProcess(str(tmp_path / "data"), workers=1).start()
    try:
        assert server.call("PUT", "/types/hot/", {"shards": 4})[1] == {
            "status": "success",
            "queue_type": "hot",
            "shards": 4,
        }
        assert server.call("GET", "/types/hot/")[1]["shards"] == 4
        assert server.call("PUT", "/types/hot/", {"shards": 65})[0] == 400
        assert server.call("PUT", "/types/hot/", {"shard": 2})[1]["message"].startswith("unknown field 'shard'")
        assert server.call("POST", "/enqueue/hot/q1/", {"job_id": "a", "payload": 1, "interval": 0})[0] == 201
        status, body = server.call("PUT", "/types/hot/", {"shards": 2})
        assert (status, server.call("GET", "/types/hot/")[1]["shards"]) == (409, 4)
        assert "drain it first" in body["message"]
        assert server.call("PUT", "/limits/hot/", {"interval": 0})[0] == 400
        assert server.call("PUT", "/limits/hot/", {"max_active": 8})[1]["limits"]["max_active"] == 8
        assert server.call("GET", "/queues/hot/")[1]["total"] == 1
        assert server.call("GET", "/dequeue/hot/")[1]["job_id"] == "a"
        assert server.call("DELETE", "/limits/hot/")[1]["limits"] == {
            "interval": None,
            "burst": None,
            "max_active": None,
        }
    finally:
        server.stop()


def _redis_url(server: ServerProcess) -> str:
    return f"unix://{server.data_dir}/redis.sock?db=0"
