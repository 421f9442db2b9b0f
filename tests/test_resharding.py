"""Issue 23 (1-5 and the checks under them): changing a type's shard count, on real Redis."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from bench.reshard import fill
from sharq_core import Config, Conflict, ShardsChanged, SharQ
from sharq_core.layouts import LEASE_MS
from sharq_core.shards import Layout
from tests.support import Clock, ServerProcess, primaries


def put(sq: SharQ, job_id: str, queue_id: str, queue_type: str = "sms", interval: int = 0) -> dict:
    return sq.enqueue({"job": job_id}, interval, job_id, queue_id, queue_type)


def on_shard(count: int, index: int, taken: int = 0) -> str:
    """A queue id the layout of `count` shards puts on shard `index` (the `taken`-th such)."""
    layout, found = Layout("sms", count), []
    for n in range(1000):
        if layout.of(f"q{n}") == layout.name(index):
            found.append(f"q{n}")
    return found[taken]


def stale(sq: SharQ) -> None:
    """`sq` routes sms by 1 shard again, as a server that read the count just before a change."""
    sq._layouts["sms"] = (time.monotonic(), Layout("sms", 1))


def sealed(sq: SharQ, queue_type: str, reach: int) -> list[bool]:
    shards = [*Layout(queue_type, reach).names(), queue_type]
    return [bool(sq.redis.hexists(sq.keys.settings(shard), "sealed")) for shard in shards]


def a_change_left_by(sq: SharQ, queue_type: str, count: int, reach: int, shards: list[str]) -> None:
    """What a process changing the count to `count` leaves when it stops after
    sealing `shards`: its record and the seals (its lease is the caller's to take)."""
    sq.redis.hset(sq.keys.settings(queue_type), "changing", f"{count}:{reach}")
    for shard in shards:
        assert sq._layout_script(shard, "seal")


def test_a_reshard_carries_the_type_wide_rate_state(sq: SharQ, clock: Clock) -> None:
    """Issue 23.1: interval 60 s, burst 2: two jobs go at once, then one a minute.
    Spread over 2 shards right after, the type still owes those two: nothing more
    goes at once, and over the next two minutes at most 2 + 2 in all."""
    sq.set_type_limits("sms", interval=60_000, burst=2)
    for n in range(2):
        put(sq, f"a{n}", f"q{n}")
    taken = sq.dequeue_many("sms", 10)["jobs"]
    assert len(taken) == 2
    for job in taken:
        sq.finish(job["job_id"], job["queue_id"], "sms")
    sq.set_type_settings("sms", 2)
    for n in range(8):
        put(sq, f"b{n}", f"q{n}")
    assert sq.dequeue_many("sms", 10)["jobs"] == []  # was 2: a fresh burst on each shard
    clock.advance(120_000)
    assert len(sq.dequeue_many("sms", 10)["jobs"]) == 2  # one per shard: 4 in 2 minutes, the bound


def test_a_server_on_an_old_shard_count_finds_the_active_job(config: Config, redis_client, clock: Clock) -> None:
    """Issue 23.2: server B read the count (1) just before A spread the type over
    4; every call B makes on A's active job reaches it, none answers 404."""
    a, b = SharQ(config, clock=clock), SharQ(config, clock=clock)
    assert b.type_settings("sms")["shards"] == 1  # cached for a second
    a.set_type_settings("sms", 4)
    for n in range(4):
        put(a, f"j{n}", f"q{n}", interval=10)
    jobs = a.dequeue_many("sms", 4)["jobs"]
    receipt = {job["job_id"]: job["receipt"] for job in jobs}
    assert b._layout("sms").count == 1
    assert b.job_status("sms", "q0", "j0")["state"] == "active"
    assert b.touch("j0", "q0", "sms", receipt=receipt["j0"])["expires_at"] > 0
    assert b.queue_info("sms", "q0")["active"] == 1
    assert b.interval(50, "q0", "sms") == {"status": "success"}
    assert b.finish("j0", "q0", "sms", receipt=receipt["j0"]) == {"status": "success"}
    stale(b)
    acks = [{"queue_id": f"q{n}", "job_id": f"j{n}", "receipt": receipt[f"j{n}"]} for n in (1, 2)]
    assert [result["status"] for result in b.finish_many("sms", acks)[0]] == ["success", "success"]
    stale(b)
    assert b.fail("sms", "q3", "j3", receipt=receipt["j3"], dead=True)["state"] == "dead"
    stale(b)
    assert b.delete_dead_letter("sms", "q3", "j3") == {"status": "success"}
    put(a, "k", "q5")
    stale(b)
    assert b.get_queue_length("sms", "q5") == 1
    stale(b)
    assert b.delete_queue("sms", "q5")["deleted"] == 1
    assert a.type_stats("sms")["counters"]["finished"] == 3


def test_a_change_that_cannot_be_completed_never_refuses_the_callers_own_call(sq: SharQ) -> None:
    """Issue 23.3: a change from 4 shards to 1 stopped after sealing two of them;
    a job lives on a third. A producer meeting the sealed shards cannot complete
    the change: it rolls it back and its own job is stored, never a 409."""
    sq.set_type_settings("sms", 4)
    put(sq, "live", on_shard(4, 2))
    a_change_left_by(sq, "sms", 1, 4, ["sms#0", "sms#1"])
    assert put(sq, "mine", on_shard(4, 0)) == {"status": "queued"}
    assert sq.job_status("sms", on_shard(4, 0), "mine")["state"] == "queued"
    assert sq.type_settings("sms")["shards"] == 4
    assert sealed(sq, "sms", 4) == [False] * 5
    assert not sq.redis.hexists(sq.keys.settings("sms"), "changing")


def test_the_carry_takes_a_bounded_number_of_round_trips(config: Config, redis_client) -> None:
    """Issue 23.4: 20,000 finished ids over 500 drained queues move in pipelined
    batches: a few dozen round trips, not several per id (60,000 before)."""
    sq = SharQ(dataclasses.replace(config, dedupe_window_ms=3_600_000))
    fill(sq, "sms", 20_000, 500)
    nodes = primaries(redis_client)
    before = sum(node.info("stats")["total_reads_processed"] for node in nodes)
    sq.set_type_settings("sms", 4)
    # reads, not commands: a loaded Redis may take one pipeline in several reads, so
    # the bound leaves room for that; per id it would be tens of thousands
    reads = sum(node.info("stats")["total_reads_processed"] for node in nodes) - before - len(nodes)
    assert reads < 400, reads
    assert sum(redis_client.zcard(sq.keys.done(shard)) for shard in Layout("sms", 4).names()) == 20_000
    assert not redis_client.exists(sq.keys.done("sms"))
    assert all(redis_client.exists(sq.keys.last(Layout("sms", 4).of(f"q{n}"), f"q{n}")) for n in range(500))


def test_a_live_change_is_never_run_again_by_a_caller(sq: SharQ, config: Config) -> None:
    """Issue 23.4: a change whose process still renews its lease is waited for
    however long it has run; a caller completes it only once the lease ran out."""
    other = SharQ(config)
    assert other._take_lease("sms") is not None  # a live change, however old
    a_change_left_by(other, "sms", 3, 3, [*Layout("sms", 3).names(), "sms"])
    with pytest.raises(ShardsChanged):
        put(sq, "a", "q1")  # waited socket_timeout: answered 503, ran nothing
    assert sealed(sq, "sms", 3) == [True] * 4
    sq.redis.delete(sq.keys.change_lease("sms"))  # its process died: nobody renews it
    assert put(sq, "a", "q1") == {"status": "queued"}
    assert sq.type_settings("sms")["shards"] == 3
    assert LEASE_MS <= 5_000


def test_repeating_the_current_count_answers_200_and_touches_nothing(sq: SharQ, redis_client) -> None:
    """Issue 23.5: PUT with the count the type has: its settings, even while it
    holds jobs, and no shard sealed on the way."""
    sq.set_type_settings("sms", 3)
    put(sq, "a", "q1")
    assert sq.set_type_settings("sms", 3) == {"status": "success", "queue_type": "sms", "shards": 3}
    assert sealed(sq, "sms", 3) == [False] * 4
    with pytest.raises(Conflict):
        sq.set_type_settings("sms", 2)


def test_concurrent_changes_take_turns(config: Config, redis_client) -> None:
    """Two PUTs with different counts at once: one waits for the other, and every
    shard agrees with the count the last one set."""
    first, second = SharQ(config), SharQ(config)
    for attempt in range(10):
        queue_type = f"turns{attempt}"
        answers: list[int] = []

        def change(sq: SharQ, count: int, queue_type: str = queue_type, answers: list = answers) -> None:
            answers.append(sq.set_type_settings(queue_type, count)["shards"])

        threads = [threading.Thread(target=change, args=pair) for pair in ((first, 3), (second, 5))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        count = first.type_settings(queue_type)["shards"]
        assert sorted(answers) in ([3, 5], [5, 5], [3, 3]) and count in (3, 5)
        for shard in Layout(queue_type, 5).names():
            stored = redis_client.hmget(first.keys.settings(shard), "shards", "sealed")
            if shard in Layout(queue_type, count).names():
                assert stored == [str(count).encode(), None], (attempt, shard, stored)
            else:
                assert stored[1] is None
        assert not redis_client.exists(first.keys.change_lease(queue_type))


def test_a_change_waits_while_another_holds_the_type(sq: SharQ, config: Config) -> None:
    """The second of two PUTs never seals anything while the first holds the lease."""
    assert SharQ(config)._take_lease("sms") is not None
    with pytest.raises(ShardsChanged):
        sq.set_type_settings("sms", 4)
    assert sealed(sq, "sms", 4) == [False] * 5
    assert not sq.redis.hexists(sq.keys.settings("sms"), "changing")


def test_a_carried_rate_state_never_replaces_a_newer_one(sq: SharQ, clock: Clock, redis_client) -> None:
    """The carry keeps the newer of two rate states of a queue: the target shard
    may hold one already (a change repeated after its process died)."""
    sq.set_type_settings("sms", 2)
    queue_id = on_shard(2, 1)
    put(sq, "a", queue_id, interval=60_000)
    job = sq.dequeue("sms")
    sq.finish(job["job_id"], queue_id, "sms")
    carried = int(redis_client.get(sq.keys.last("sms#1", queue_id)))
    redis_client.set(sq.keys.last("sms", queue_id), carried + 30_000, px=600_000)  # newer, where it goes
    sq.set_type_settings("sms", 1)
    assert int(redis_client.get(sq.keys.last("sms", queue_id))) == carried + 30_000
    assert not redis_client.exists(sq.keys.last("sms#1", queue_id))
    put(sq, "b", queue_id, interval=60_000)
    clock.advance(30_000)
    assert sq.dequeue("sms") == {"status": "failure", "retry_after_ms": 60_000}


def test_type_limits_wait_for_a_change_under_way(sq: SharQ, config: Config) -> None:
    """PUT /limits/<type>/ during a change would be overwritten by the limits the
    change read before it: it waits for the change, and is not written meanwhile."""
    sq.set_type_limits("sms", max_active=5)
    other = SharQ(config)
    assert other._take_lease("sms") is not None
    a_change_left_by(other, "sms", 2, 2, [*Layout("sms", 2).names(), "sms"])
    with pytest.raises(ShardsChanged):
        sq.set_type_limits("sms", max_active=9)
    assert sq.redis.hget(sq.keys.settings("sms"), "max_active") == b"5"
    sq.redis.delete(sq.keys.change_lease("sms"))  # abandoned: the next call completes it
    assert sq.set_type_limits("sms", max_active=9)["limits"]["max_active"] == 9
    for shard in ("sms", *Layout("sms", 2).names()):
        assert sq.redis.hget(sq.keys.settings(shard), "max_active") == b"9"


def test_the_refusal_says_what_holds_the_type(sq: SharQ) -> None:
    """A new user's 409: which queues hold what, so they know what to drain."""
    sq.set_type_settings("sms", 2)
    put(sq, "a", "acme")
    put(sq, "b", "globex")
    sq.dequeue_many("sms", 1)
    sq.set_limits("sms", "initech", interval=10)
    with pytest.raises(Conflict) as refused:
        sq.set_type_settings("sms", 1)
    message = refused.value.message
    assert "2 queue(s) hold queued, delayed or active jobs (acme, globex)" in message
    assert "1 queue(s) have limits of their own (initech)" in message
    assert "1 job(s) are active" in message
    assert refused.value.details["blocked_by"] == {
        "queues_with_jobs": {"total": 2, "first": ["acme", "globex"]},
        "queues_with_limits": {"total": 1, "first": ["initech"]},
        "active_jobs": 1,
    }


def test_the_refusal_over_http_names_what_blocks_it(tmp_path) -> None:
    server = ServerProcess(str(tmp_path / "data"), workers=1).start()
    try:
        assert server.call("POST", "/enqueue/sms/acme/", {"job_id": "a", "payload": 1, "interval": 0})[0] == 201
        status, body = server.call("PUT", "/types/sms/", {"shards": 2})
        assert status == 409
        assert "1 queue(s) hold queued, delayed or active jobs (acme)" in body["message"]
        assert body["blocked_by"] == {"queues_with_jobs": {"total": 1, "first": ["acme"]}}
        assert server.call("PUT", "/types/sms/", {"shards": 1}) == (
            200,
            {"status": "success", "queue_type": "sms", "shards": 1},
        )
    finally:
        server.stop()


def test_a_finish_that_finds_its_job_costs_one_round_trip(sq: SharQ, redis_client) -> None:
    """The stale-count check reads the count only on a miss: the common finish,
    touch and fail stay one round trip each."""
    for n in range(3):
        put(sq, f"j{n}", "q1")
    jobs = sq.dequeue_many("sms", 3)["jobs"]
    node = primaries(redis_client)[0] if len(primaries(redis_client)) == 1 else None
    if node is None:
        pytest.skip("counts one node's reads")
    calls = (
        lambda: sq.touch("j0", "q1", "sms", receipt=jobs[0]["receipt"]),
        lambda: sq.finish("j0", "q1", "sms", receipt=jobs[0]["receipt"]),
        lambda: sq.finish_many("sms", [{"queue_id": "q1", "job_id": "j1"}]),
        lambda: sq.fail("sms", "q1", "j2"),
    )
    for call in calls:
        before = node.info("stats")["total_reads_processed"]
        call()
        assert node.info("stats")["total_reads_processed"] - before - 1 == 1


def test_a_change_renews_its_lease_and_stops_once_it_lost_it(sq: SharQ, redis_client) -> None:
    """Issue 23.4: the lease is what tells a live change from a dead one, so a
    long change keeps it alive; one paused past it (taken over) must stop."""
    lease = sq._take_lease("sms")
    assert lease is not None and sq._take_lease("sms") is None  # one change at a time
    key = sq.keys.change_lease("sms")
    redis_client.pexpire(key, 100)
    lease.renewed -= LEASE_MS / 1000  # a second or more since it last renewed
    sq._renew(lease)
    assert redis_client.pttl(key) > LEASE_MS - 1000
    redis_client.set(key, "another change")
    lease.renewed -= LEASE_MS / 1000
    with pytest.raises(ShardsChanged):
        sq._renew(lease)
