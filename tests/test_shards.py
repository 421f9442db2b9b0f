"""Issue 17.3: one hot queue type spread over shards, on real Redis (6.2, 7, cluster)."""

from __future__ import annotations

import contextlib
import threading
from functools import partial

import pytest
from redis.cluster import key_slot

from sharq_core import Config, Conflict, DuplicateJob, SharQ
from sharq_core.shards import Layout
from tests.support import Clock, primaries


def put(sq: SharQ, job_id: str, queue_id: str, interval: int = 0, **extra) -> dict:
    return sq.enqueue({"job": job_id}, interval, job_id, queue_id, "hot", **extra)


def test_queues_spread_over_the_shards_and_every_job_comes_out_once(sq: SharQ, redis_client) -> None:
    assert sq.set_type_settings("hot", 6) == {"status": "success", "queue_type": "hot", "shards": 6}
    for n in range(60):
        put(sq, f"j{n}", f"tenant{n}")
    holding = [n for n in range(6) if redis_client.exists(sq.keys.queues(f"hot#{n}"))]
    assert len(holding) == 6
    assert not redis_client.exists(sq.keys.queues("hot"))  # the unsharded keys hold settings only
    assert sq.metrics() ["queue_types"] == ["hot"]  # fmt: skip
    assert sq.metrics("hot")["total"] == 60
    stats = sq.type_stats("hot")
    assert (stats["jobs"]["queued"], stats["counters"]["enqueued"], stats["shards"]) == (60, 60, 6)
    page = sq.queues("hot", limit=7, offset=10)
    assert [queue["queue_id"] for queue in page["queues"]] == sorted(f"tenant{n}" for n in range(60))[10:17]
    assert page["total"] == 60
    served = [job["job_id"] for _ in range(7) for job in sq.dequeue_many("hot", 10)["jobs"]]
    assert sorted(served) == sorted(f"j{n}" for n in range(60))
    assert sq.dequeue("hot") == {"status": "failure", "retry_after_ms": None}
    assert sq.type_stats("hot")["jobs"]["active"] == 60


def _reads_during(redis_client, call):
    """`call()`'s result and the read events Redis handled while it ran (INFO stats;
    on a cluster, over every primary), less the INFO calls' own."""
    nodes = primaries(redis_client)
    before = sum(node.info("stats")["total_reads_processed"] for node in nodes)
    result = call()
    after = sum(node.info("stats")["total_reads_processed"] for node in nodes)
    return result, after - before - len(nodes)


def test_a_batch_sends_its_calls_on_each_shard_together(sq: SharQ, redis_client) -> None:
    """A batch over 6 shards is one script call per shard; they go out in one
    round trip per Redis node, not in 6 one after another."""
    sq.set_type_settings("hot", 6)
    layout, tenants = Layout("hot", 6), {}
    for n in range(200):  # two queues on each shard
        tenants.setdefault(layout.of(f"t{n}"), []).append(f"t{n}")
    queue_ids = [queue_id for ids in tenants.values() for queue_id in ids[:2]]
    # a delayed job on each queue keeps every shard listed in the registry
    sq.enqueue_many("hot", [{"queue_id": q, "job_id": "kept", "payload": 1, "interval": 0, "delay_ms": 60_000}
                            for q in queue_ids])  # fmt: skip
    nodes = len(primaries(redis_client))
    for job_id in ("warm", "measured"):  # the first round opens every connection
        jobs = [{"queue_id": queue_id, "job_id": job_id, "payload": 1, "interval": 0} for queue_id in queue_ids]
        results, enqueue_reads = _reads_during(redis_client, partial(sq.enqueue_many, "hot", jobs))
        assert {result["status"] for result in results} == {"queued"}
        taken = sq.dequeue_many("hot", 12)["jobs"]
        acks = [{"queue_id": job["queue_id"], "job_id": job["job_id"], "receipt": job["receipt"]} for job in taken]
        (results, _, _), finish_reads = _reads_during(redis_client, partial(sq.finish_many, "hot", acks))
        assert {result["status"] for result in results} == {"success"}
    assert (enqueue_reads, finish_reads) == (nodes, nodes)
    assert sq.type_stats("hot")["counters"]["finished"] == 24


def test_a_batch_over_shards_survives_a_flushed_script_cache(sq: SharQ, redis_client) -> None:
    sq.set_type_settings("hot", 6)
    sq.enqueue_many("hot", [{"queue_id": f"t{n}", "job_id": "a", "payload": n, "interval": 0} for n in range(30)])
    for primary in primaries(redis_client):
        primary.script_flush()
    jobs = [{"queue_id": f"t{n}", "job_id": "b", "payload": n, "interval": 0} for n in range(30)]
    assert {result["status"] for result in sq.enqueue_many("hot", jobs)} == {"queued"}
    assert sq.type_stats("hot")["jobs"]["queued"] == 60


def test_no_shard_is_starved(sq: SharQ) -> None:
    sq.set_type_settings("hot", 4)
    layout = Layout("hot", 4)
    tenants = {}
    for n in range(200):  # one tenant per shard, many jobs each
        tenants.setdefault(layout.of(f"t{n}"), f"t{n}")
    for queue_id in tenants.values():
        for j in range(5):
            put(sq, f"{queue_id}-{j}", queue_id)
    first_round = {sq.dequeue("hot")["queue_id"] for _ in range(4)}
    assert first_round == set(tenants.values())  # each call starts at the next shard


def test_a_queue_keeps_its_exact_rate_on_its_shard(sq: SharQ, clock: Clock) -> None:
    sq.set_type_settings("hot", 3)
    put(sq, "a", "slow", interval=1000)
    put(sq, "b", "slow", interval=1000)
    assert sq.dequeue("hot")["job_id"] == "a"
    clock.advance(999)
    assert sq.dequeue("hot") == {"status": "failure", "retry_after_ms": 1}
    clock.advance(1)
    assert sq.dequeue("hot")["job_id"] == "b"


def test_every_call_on_a_queue_reaches_its_shard(sq: SharQ, clock: Clock) -> None:
    sq.set_type_settings("hot", 5)
    put(sq, "a", "q1", requeue_limit=0)
    put(sq, "b", "q2")
    sq.set_limits("hot", "q3", interval=50, max_active=1)
    sq.pause("hot", "q2")
    assert sq.queue_info("hot", "q2")["paused"] is True
    job = sq.dequeue("hot")
    assert job["job_id"] == "a"
    assert sq.touch("a", "q1", "hot", receipt=job["receipt"])["expires_at"] > 0
    assert sq.job_status("hot", "q1", "a")["state"] == "active"
    assert sq.fail("hot", "q1", "a", receipt=job["receipt"], error="boom")["state"] == "dead"
    letters = sq.dead_letters("hot")
    assert (letters["total"], letters["jobs"][0]["job_id"]) == (1, "a")
    assert sq.retry_dead_letter("hot", "q1", "a") == {"status": "queued"}
    assert sq.limits("hot", "q3")["limits"]["max_active"] == {"value": 1, "source": "override"}
    sq.resume("hot", "q2")
    results, taken, _ = sq.finish_many("hot", [], next_count=5)
    assert sorted(job.job_id for job in taken) == ["a", "b"]
    acks = [{"queue_id": job.queue_id, "job_id": job.job_id, "receipt": job.receipt} for job in taken]
    results, _, _ = sq.finish_many("hot", acks)
    assert [result["status"] for result in results] == ["success", "success"]
    sq.pause("hot")  # the whole type: every shard
    put(sq, "c", "q4")
    assert sq.dequeue("hot")["status"] == "failure"
    assert sq.type_paused_until("hot") == -1
    sq.resume("hot")
    assert sq.dequeue("hot")["job_id"] == "c"


def test_resharding_is_refused_while_anything_lives(sq: SharQ) -> None:
    put(sq, "a", "q1")
    with pytest.raises(Conflict):
        sq.set_type_settings("hot", 4)
    assert sq.type_settings("hot")["shards"] == 1
    sq.take("hot", 1)
    sq.finish("a", "q1", "hot")
    sq.set_limits("hot", "q1", interval=10)  # a queue's override lives on: still refused
    with pytest.raises(Conflict):
        sq.set_type_settings("hot", 4)
    sq.clear_limits("hot", "q1")
    assert sq.set_type_settings("hot", 4)["shards"] == 4
    assert sq.set_type_settings("hot", 1)["shards"] == 1


def test_a_server_with_a_stale_shard_count_routes_again(config: Config, redis_client, clock: Clock) -> None:
    """Another server read the count before it changed: its enqueue, limits and
    pause are refused by the scripts and routed on the count read afresh."""
    stale = SharQ(config, clock=clock)
    fresh = SharQ(config, clock=clock)
    assert stale.type_settings("hot")["shards"] == 1  # cached for a second
    fresh.set_type_settings("hot", 4)
    assert stale._layout("hot").count == 1
    for n in range(8):
        stale.enqueue(n, 0, f"j{n}", f"q{n}", "hot")
    stale.set_limits("hot", "q0", max_active=3)
    stale.pause("hot", "q1", for_ms=100)
    layout = Layout("hot", 4)
    for n in range(8):
        assert redis_client.hexists(fresh.keys.jobs(layout.of(f"q{n}"), f"q{n}"), f"j{n}")
    assert not redis_client.exists(fresh.keys.queues("hot"))
    assert fresh.limits("hot", "q0")["limits"]["max_active"]["value"] == 3
    assert fresh.queue_info("hot", "q1")["paused"] is True


def test_shards_land_in_different_cluster_slots(sq: SharQ) -> None:
    names = Layout("hot", 6).names()
    assert len({key_slot(sq.keys.base(name).encode()) for name in names}) == 6


def test_the_requeue_pass_and_discovery_cover_every_shard(sq: SharQ, clock: Clock, redis_client) -> None:
    sq.set_type_settings("hot", 3)
    for n in range(9):
        put(sq, f"j{n}", f"q{n}")
    assert len(sq.dequeue_many("hot", 9)["jobs"]) == 9
    redis_client.delete(sq.keys.queue_types())  # a lost registry
    clock.advance(1001)
    assert sq.requeue(discover=True) == {"requeued": 9, "dead": 0}
    assert sq.queue_types() == ["hot"]


def test_type_wide_limits_split_evenly_over_shards(sq: SharQ, clock: Clock) -> None:
    """Type interval 100 ms, burst 6 over 3 shards: each shard allows one job per
    300 ms and 2 back to back, so over any window of T ms the type hands out at
    most 6 + T // 100."""
    sq.set_type_settings("hot", 3)
    sq.set_type_limits("hot", interval=100, burst=6)
    for n in range(300):
        put(sq, f"j{n}", f"q{n % 30}")
    times: list[int] = []
    for step in [0, 7, 33, 50, 99, 100, 1, 250, 13, 400, 0, 61] * 4:
        clock.advance(step)
        times += [job["dequeued_at"] for job in sq.dequeue_many("hot", 50)["jobs"]]
    assert times[:6] == [times[0]] * 6
    for i, start in enumerate(times):
        for end in times[i:]:
            assert sum(1 for t in times if start <= t <= end) <= 6 + (end - start) // 100


def test_a_stale_server_cannot_strand_a_job_while_shards_shrink(config: Config, redis_client, clock: Clock) -> None:
    """Found by review: a server still routing by 4 shards while the type goes to 1
    used to leave its job on a shard nobody read. The change seals every shard
    first, so the stale enqueue is refused and routed again."""
    admin = SharQ(config, clock=clock)
    admin.set_type_settings("race", 4)
    stale = SharQ(config, clock=clock)
    assert stale.type_settings("race")["shards"] == 4
    admin.set_type_settings("race", 1)
    assert stale._layout("race").count == 4  # still cached
    stale.enqueue(1, 0, "j1", "q5", "race")
    assert admin.job_status("race", "q5", "j1")["state"] == "queued"
    assert admin.dequeue("race")["job_id"] == "j1"


def test_a_refused_change_leaves_every_shard_as_it_was(sq: SharQ) -> None:
    sq.set_type_settings("hot", 4)
    put(sq, "a", "q1")  # lives on one of the 4
    with pytest.raises(Conflict):
        sq.set_type_settings("hot", 2)
    put(sq, "b", "q2")  # every shard open again, still 4
    assert sq.type_settings("hot")["shards"] == 4
    assert sq.metrics("hot")["total"] == 2


def test_a_change_left_half_done_is_completed_by_the_next_caller(sq: SharQ, redis_client) -> None:
    """Redis failed under a PUT /types/ after sealing: the next enqueue that meets
    the sealed shards completes the change once it is plainly abandoned."""
    for shard in ("race", *Layout("race", 3).names()):
        assert sq._layout_script(shard, "seal")
    redis_client.hset(sq.keys.settings("race"), "changing", "3:3")  # its lease ran out: nobody renews it
    put_race = sq.enqueue({"job": "a"}, 0, "a", "q1", "race")
    assert put_race == {"status": "queued"}
    assert sq.type_settings("race")["shards"] == 3
    assert not redis_client.hexists(sq.keys.settings("race"), "changing")


def test_resharding_keeps_what_drained_queues_remember(sq: SharQ, clock: Clock) -> None:
    """Found by review: the dedupe window, a queue's rate and the counters since the
    type began survive a change of the shard count."""
    put(sq, "done-1", "q1")
    put(sq, "r1", "slow", interval=60_000)
    for _ in range(2):
        job = sq.dequeue("hot")
        sq.finish(job["job_id"], job["queue_id"], "hot")
    before = sq.type_stats("hot")["counters"]
    sq.set_type_settings("hot", 3)
    with pytest.raises(DuplicateJob):
        put(sq, "done-1", "q1")  # still within the dedupe window
    put(sq, "r2", "slow", interval=60_000)
    clock.advance(1_000)
    assert sq.dequeue("hot") == {"status": "failure", "retry_after_ms": 59_000}  # the rate held
    assert sq.type_stats("hot")["counters"]["finished"] == before["finished"] == 2
    clock.advance(59_000)
    job = sq.dequeue("hot")
    sq.finish(job["job_id"], job["queue_id"], "hot")
    sq.set_type_settings("hot", 1)  # and back
    assert sq.type_stats("hot")["counters"]["enqueued"] == before["enqueued"] + 1 == 3


def test_racing_a_stale_enqueue_against_a_change_never_strands_it(config: Config, redis_client) -> None:
    """Found by review: a stale server enqueueing while the count changes could land
    a job on a shard the new count never reads (hit within a dozen tries). Now
    either the change is refused (409, nothing changed) or the job is routed by
    the new count: every job stays reachable, whatever the interleaving."""
    admin, stale = SharQ(config), SharQ(config)
    for attempt in range(40):
        queue_type = f"race{attempt}"
        admin.set_type_settings(queue_type, 4)
        stale.type_settings(queue_type)  # caches 4
        answers: list[object] = []

        def produce(queue_type: str = queue_type, queue_id: str = f"q{attempt}", answers: list = answers) -> None:
            answers.append(stale.enqueue(1, 0, "j", queue_id, queue_type))

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        with contextlib.suppress(Conflict):  # the job came first: nothing changed
            admin.set_type_settings(queue_type, 1)
        producer.join(10)
        assert answers == [{"status": "queued"}], attempt
        assert admin.job_status(queue_type, f"q{attempt}", "j")["state"] == "queued", attempt


def test_a_page_past_the_end_still_says_the_type_is_paused(sq: SharQ) -> None:
    """Found by review: a sharded type's page past its last queue lost type_paused_until."""
    sq.set_type_settings("hot", 4)
    put(sq, "a", "q1")
    sq.pause("hot")
    assert sq.queues("hot", limit=5, offset=9) == {
        "status": "success",
        "total": 1,
        "type_paused_until": None,
        "queues": [],
    }
