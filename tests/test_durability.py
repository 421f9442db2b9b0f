"""wait_replicas on a real primary with a real replica: a change is answered only once
the replica holds it; with the replica frozen, writes answer 503 (reason "replicas")
and reads still answer; the gevent server's auto-pipeline shares one WAIT per batch."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from sharq_core import Config, ConfigError, DuplicateJob, NotReplicated, SharQ, load_config
from sharq_core.keys import Keys
from sharq_core.replication import REDELIVERABLE, Shortfalls
from sharq_server.embedded import EmbeddedRedis
from tests.conftest import _setups, _version
from tests.support import ServerProcess, free_port, frozen, in_sync, sample, wait_for

pytestmark = pytest.mark.e2e

WAIT_MS = 500  # ample for a healthy replica on a busy machine
BINARIES = [binary for binary, clustered in _setups() if not clustered]


@pytest.fixture(params=BINARIES, ids=lambda binary: f"redis-{_version(binary)}")
def pair(request: pytest.FixtureRequest, tmp_path):
    """A primary and its replica, in sync (both stopped however the test or the
    set-up ends; a test may have frozen the replica)."""
    primary = EmbeddedRedis(str(tmp_path / "primary"), port=free_port(), executable=request.param, persistent=False)
    replica = EmbeddedRedis(
        str(tmp_path / "replica"),
        port=free_port(),
        executable=request.param,
        persistent=False,
        extra_args=("--replicaof", "127.0.0.1", str(primary.port)),
    )
    with contextlib.ExitStack() as stack:
        for server in (primary, replica):
            stack.callback(server.stop)
            server.start()
        clients = [stack.enter_context(redis.Redis(port=server.port)) for server in (primary, replica)]
        wait_for(lambda: in_sync(clients[0], clients[1:]), what="the replica to sync")
        # a replica just in sync has once taken longer than WAIT_MS to confirm its first
        # write (Redis 7.0, 1 run in 40): the tests start once it confirms one in time
        wait_for(lambda: _confirms_a_write(clients[0]), what="the replica to confirm a write")
        yield primary, replica


def _confirms_a_write(primary: redis.Redis) -> bool:
    primary.set("replica-check", 1)
    confirmed = primary.wait(1, WAIT_MS) >= 1
    primary.delete("replica-check")
    return confirmed


def durable_config(primary: EmbeddedRedis, replicas: int = 1) -> Config:
    base = Config()
    settings = dataclasses.replace(
        base.redis, url=primary.url, embedded=False, wait_replicas=replicas, wait_timeout_ms=WAIT_MS
    )
    return dataclasses.replace(base, redis=settings)


def test_a_change_is_on_the_replica_when_answered(pair) -> None:
    primary, replica = pair
    sq = SharQ(durable_config(primary))
    on_replica = redis.Redis(port=replica.port)
    for n in range(20):
        assert sq.enqueue({"n": n}, 0, f"j{n}", "q1", "sms") == {"status": "queued"}
        # read straight from the replica, right after the answer: no wait_for
        assert on_replica.hexists(sq.keys.jobs("sms", "q1"), f"j{n}")
    job = sq.dequeue("sms")
    assert sq.finish_job(job["job_id"], job["queue_id"], "sms", job["receipt"]) == {"status": "success"}
    assert on_replica.zscore(sq.keys.done("sms"), f"q1:{job['job_id']}") is not None


def test_a_frozen_replica_makes_writes_unconfirmed_and_reads_still_answer(pair) -> None:
    primary, replica = pair
    sq = SharQ(durable_config(primary))
    sq.enqueue({}, 0, "before", "q1", "sms")
    with frozen(replica.process.pid):
        started = time.monotonic()
        with pytest.raises(NotReplicated) as raised:
            sq.enqueue({}, 0, "during", "q1", "sms")
        assert WAIT_MS / 1000 <= time.monotonic() - started < WAIT_MS / 1000 + 1
        assert raised.value.status == 503
        assert raised.value.details == {"reason": "replicas", "replicas": 0, "wait_replicas": 1}
        assert "may or may not survive" in raised.value.message
        with pytest.raises(NotReplicated):
            sq.set_limits("sms", "q1", interval=10)
        # view, stats and status change nothing: no WAIT, no error
        assert sq.job_status("sms", "q1", "before")["state"] == "queued"
        assert sq.type_stats("sms")["jobs"]["queued"] == 2
    # the unconfirmed enqueue did happen on the primary: once the replica has caught
    # up, a retry says so
    links = [redis.Redis(port=primary.port), redis.Redis(port=replica.port)]
    wait_for(lambda: in_sync(links[0], links[1:]), what="the replica to catch up")
    with pytest.raises(DuplicateJob):
        sq.enqueue({}, 0, "during", "q1", "sms")


def test_more_replicas_than_exist_is_a_503_every_time(pair) -> None:
    primary, _ = pair
    sq = SharQ(durable_config(primary, replicas=2))
    with pytest.raises(NotReplicated) as raised:
        sq.enqueue({}, 0, "j1", "q1", "sms")
    assert raised.value.details["replicas"] == 1


def test_server_answers_503_with_reason_and_shares_one_wait_per_batch(pair, tmp_path) -> None:
    primary, replica = pair
    env = {
        "SHARQ_REDIS_URL": primary.url,
        "SHARQ_REDIS_WAIT_REPLICAS": "1",
        "SHARQ_REDIS_WAIT_TIMEOUT_MS": str(WAIT_MS),
    }
    server = ServerProcess(str(tmp_path / "sharq"), workers=1, env=env).start()
    try:
        assert server.call("POST", "/enqueue/sms/q1/", {"job_id": "j0", "payload": 1, "interval": 0})[0] == 201
        assert redis.Redis(port=replica.port).hexists(Keys("sharq").jobs("sms", "q1"), "j0")
        with frozen(replica.process.pid):

            def enqueue(n: int) -> tuple[int, dict]:
                return server.call("POST", "/enqueue/sms/q1/", {"job_id": f"j{n}", "payload": 1, "interval": 0})

            started = time.monotonic()
            with ThreadPoolExecutor(20) as pool:
                answers = list(pool.map(enqueue, range(1, 41)))
            elapsed = time.monotonic() - started
            assert {status for status, _ in answers} == {503}
            assert {body["reason"] for _, body in answers} == {"replicas"}
            assert "may or may not survive" in answers[0][1]["message"]
            # 40 writes, 20 at a time: a WAIT each in turn would take 40 x WAIT_MS;
            # the writes that arrive while one WAIT blocks share the next
            assert elapsed < 8 * WAIT_MS / 1000, elapsed
            assert server.call("GET", "/stats/sms/")[0] == 200  # a read needs no replica
        assert server.call("POST", "/enqueue/sms/q1/", {"job_id": "j99", "payload": 1, "interval": 0})[0] == 201
    finally:
        assert server.stop() == 0


def test_server_serves_takes_short_of_replicas_and_counts_them(pair, tmp_path) -> None:
    """Issue 23.6 through the real server (the auto-pipeline's shared WAIT): with
    the replica frozen, dequeue, touch, finish, fail and an ack-and-take answer
    200 and are counted in sharq_replica_shortfall_total; enqueues answer 503."""
    primary, replica = pair
    env = {
        "SHARQ_REDIS_URL": primary.url,
        "SHARQ_REDIS_WAIT_REPLICAS": "1",
        "SHARQ_REDIS_WAIT_TIMEOUT_MS": "100",  # every WAIT of the test times out: keep it short
        "SHARQ_JOB_REQUEUE_INTERVAL": "600000",  # no requeue pass to count: each series is there from 0
    }
    server = ServerProcess(str(tmp_path / "sharq"), workers=1, env=env).start()
    try:
        for n in range(3):  # stored once 201, or 409 on a retry after a 503 (a replica slower than 100 ms)
            job = {"job_id": f"j{n}", "payload": n, "interval": 0}
            wait_for(lambda job=job: server.call("POST", "/enqueue/sms/q1/", job)[0] in (201, 409), what="an enqueue")
        with frozen(replica.process.pid):
            status, job = server.call("GET", "/dequeue/sms/")
            assert status == 200, job
            path = f"/sms/q1/{job['job_id']}/"
            assert server.call("POST", "/touch" + path, {"receipt": job["receipt"]})[0] == 200
            assert server.call("POST", "/finish" + path, {"receipt": job["receipt"]})[0] == 200
            status, job = server.call("GET", "/dequeue/sms/")
            assert server.call("POST", f"/fail/sms/q1/{job['job_id']}/", {"receipt": job["receipt"]})[0] == 200
            status, job = server.call("GET", "/dequeue/sms/")
            acks = {"jobs": [{"queue_id": "q1", "job_id": job["job_id"], "receipt": job["receipt"]}]}
            status, reply = server.call("POST", "/finish/sms/?next=1", acks)
            assert status == 200 and len(reply["jobs"]) == 1, reply
            status, reply = server.call("POST", "/enqueue/sms/q1/", {"job_id": "new", "payload": 1, "interval": 0})
            assert (status, reply["reason"]) == (503, "replicas")
            assert server.call("PUT", "/limits/sms/q1/", {"burst": 2})[0] == 503
        exposition = server.scrape()
        counted = {call: sample(exposition, "sharq_replica_shortfall_total", call=call) for call in REDELIVERABLE}
        assert counted == {"dequeue": 3, "touch": 1, "finish": 2, "fail": 1, "requeue": 0}, counted
    finally:
        assert server.stop() == 0
    assert server.log().count("take(s) or acknowledgement(s) answered with fewer than the 1 replica(s)") == 1


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SHARQ_REDIS_WAIT_REPLICAS": "1"}, "embedded"),
        ({"SHARQ_REDIS_WAIT_REPLICAS": "-1", "SHARQ_REDIS_PORT": "6380"}, "wait_replicas"),
        ({"SHARQ_REDIS_WAIT_TIMEOUT_MS": "0", "SHARQ_REDIS_PORT": "6380"}, "WAIT 0"),
        ({"SHARQ_REDIS_WAIT_TIMEOUT_MS": "1000", "SHARQ_REDIS_PORT": "6380"}, "under half of socket_timeout"),
    ],
)
def test_config_refuses_waits_it_cannot_honour(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, environ=environ)


def test_config_reads_wait_settings_from_the_environment() -> None:
    environ = {"SHARQ_REDIS_URL": "redis://r:6379/0", "SHARQ_REDIS_WAIT_REPLICAS": "2"}
    settings = load_config(None, environ={**environ, "SHARQ_REDIS_WAIT_TIMEOUT_MS": "250"}).redis
    assert (settings.wait_replicas, settings.wait_timeout_ms) == (2, 250)
    assert (load_config(None, environ={}).redis.wait_replicas, Config().redis.wait_timeout_ms) == (0, 100)


def test_a_requeue_pass_short_of_replicas_still_visits_every_type(pair) -> None:
    """Found by review: the first unconfirmed type stopped the pass. Now a requeue
    short of replicas is answered like any take (issue 23.6): every type gets its
    pass, and the shortfall is counted, not raised."""
    primary, _ = pair
    config = dataclasses.replace(durable_config(primary), job_expire_interval=1)
    plain = SharQ(dataclasses.replace(config, redis=dataclasses.replace(config.redis, wait_replicas=0)))
    for queue_type in ("a", "b", "c"):
        plain.enqueue({}, 0, "j1", "q1", queue_type)
        plain.dequeue(queue_type)
    wait_for(lambda: plain.job_status("c", "q1", "j1").get("expires_at", 0) < plain._redis_time(), what="expiry")
    short = SharQ(dataclasses.replace(config, redis=dataclasses.replace(config.redis, wait_replicas=2)))
    assert short.requeue() == {"requeued": 3, "dead": 0}
    assert [plain.job_status(queue_type, "q1", "j1")["state"] for queue_type in "abc"] == ["queued"] * 3
    assert short.shortfalls.counts["requeue"] >= 3


def short_of_replicas(primary: EmbeddedRedis) -> SharQ:
    """An engine asking for 2 replicas of a primary that has 1: every WAIT falls short."""
    return SharQ(durable_config(primary, replicas=2))


def test_takes_and_acks_are_answered_short_of_replicas_and_counted(pair, caplog) -> None:
    """Issue 23.6: after a lossy failover the new primary has no replica yet. A
    take or an acknowledgement lost in a failover costs at most a redelivery, so
    they keep being answered (counted, and logged once a minute at most); what
    would lose a job or a setting is still refused."""
    primary, _ = pair
    plain = SharQ(durable_config(primary, replicas=0))
    for n in range(4):
        plain.enqueue({"n": n}, 0, f"j{n}", "q1", "sms")
    short = short_of_replicas(primary)
    told: list[str] = []
    short.shortfalls.listener = told.append
    with caplog.at_level(logging.WARNING, logger="sharq_core.replication"):
        job = short.dequeue("sms")
        assert job["status"] == "success"
        assert short.touch(job["job_id"], "q1", "sms", job["receipt"])["status"] == "success"
        assert short.finish_job(job["job_id"], "q1", "sms", job["receipt"]) == {"status": "success"}
        job = short.dequeue("sms")
        assert short.fail("sms", "q1", job["job_id"], job["receipt"], retry_after_ms=60_000)["state"] == "retrying"
        job = short.dequeue("sms")
        acks = [{"queue_id": "q1", "job_id": job["job_id"], "receipt": job["receipt"]}]
        results, taken, _ = short.finish_many("sms", acks, next_count=1)  # an ack-and-take
        assert results[0]["status"] == "success" and len(taken) == 1
        assert plain.job_status("sms", "q1", taken[0].job_id)["state"] == "active"
        # once one fell short, the next skip their WAIT (one a second still waits)
        started = time.monotonic()
        for _ in range(20):
            short.touch(taken[0].job_id, "q1", "sms", taken[0].receipt)
        assert time.monotonic() - started < 20 * WAIT_MS / 1000 / 2
    assert short.shortfalls.counts == {"dequeue": 3, "touch": 21, "finish": 2, "fail": 1}
    assert sorted(told) == sorted(name for name, count in short.shortfalls.counts.items() for _ in range(count))
    lines = [record.getMessage() for record in caplog.records if record.name == "sharq_core.replication"]
    assert len(lines) == 1 and "answered with fewer than the 2 replica(s) required" in lines[0], lines
    batch = [{"queue_id": "q2", "job_id": "b", "payload": 1, "interval": 0}]
    refused = {
        "enqueue": lambda: short.enqueue({}, 0, "new", "q1", "sms"),
        "enqueue_many": lambda: short.enqueue_many("sms", batch),
        "interval": lambda: short.set_interval(10, "q1", "sms"),
        "limits": lambda: short.set_limits("sms", "q1", burst=2),
        "pause": lambda: short.pause("sms", "q1", for_ms=1000),
        "type_limits": lambda: short.set_type_limits("sms", max_active=5),
        "clear": lambda: short.delete_queue("sms", "q1"),
    }
    for name, call in refused.items():
        with pytest.raises(NotReplicated):
            call()
        assert name not in short.shortfalls.counts
    short.close()
    plain.close()


def test_an_enqueue_short_of_replicas_still_lists_its_type(pair) -> None:
    """An enqueue answered 503 "replicas" is on the primary all the same: its type
    must be in the registry, or, kept by a failover, its jobs would be unseen by
    the requeue loop (a lost finish never redelivered) until the discovery scan."""
    primary, _ = pair
    short = short_of_replicas(primary)
    with pytest.raises(NotReplicated):
        short.enqueue({}, 0, "j1", "q1", "fresh")
    assert short.redis.smembers(short.keys.queue_types()) == {b"fresh"}
    short.close()


def test_takes_wait_again_once_a_replica_confirmed() -> None:
    """Shortfalls: after a WAIT fell short, takes and acks skip theirs for PROBE_S;
    one that waits again and is confirmed ends that."""
    shortfalls = Shortfalls()
    assert not shortfalls.skip_wait()
    shortfalls.record("dequeue", 1)
    assert shortfalls.skip_wait()
    shortfalls.record("finish", 1, waited=False)  # a skipped WAIT does not extend the skipping
    shortfalls.confirmed()
    assert not shortfalls.skip_wait()
    assert shortfalls.counts == {"dequeue": 1, "finish": 1}


def test_a_refused_write_raises_its_own_error_not_a_replica_shortfall(pair) -> None:
    """A script Redis refused wrote nothing, so the WAIT after it says nothing: the
    caller sees why it was refused, alone or in a batch over shards, whatever
    the replicas hold."""
    primary, _ = pair
    short = SharQ(durable_config(primary, replicas=2))  # one replica: every WAIT falls short
    short.redis.set(short.keys.queues("t"), "not a hash")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        short.enqueue({}, 0, "j", "q", "t")
    setup = SharQ(durable_config(primary, replicas=0))
    setup.set_type_settings("hot", 3)
    setup.close()
    for shard in ("hot#0", "hot#1", "hot#2"):
        short.redis.set(short.keys.queues(shard), "not a hash")
    jobs = [{"queue_id": f"q{n}", "job_id": "j", "payload": n, "interval": 0} for n in range(12)]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        short.enqueue_many("hot", jobs)
    short.close()
