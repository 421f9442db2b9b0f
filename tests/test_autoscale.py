"""Issue 28, the signal: a type's wanted concurrency, Σ over its backlogged queues of
min(rate x duration, cap), held to what it holds and to its type-wide limits, 0
while paused; kept by the scripts as sums, so a read never visits the queues.

The figures scale with the job duration: 100 queues at 5/s with 2 s jobs want
1,000 workers; with 0.2 s jobs (the real-worker test, kept seconds-fast) 100."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest

from sharq_client import Client, Worker
from sharq_core import Config, NotFound, SharQ, StaleReceipt
from sharq_core.autoscale import DEMAND_SAMPLE
from tests.support import Clock, ServerProcess, wait_for

TYPE = "as"


@pytest.fixture
def sq(config: Config, redis_client, clock: Clock) -> Iterator[SharQ]:
    """An engine that assumes 2 s jobs until it measures them."""
    engine = SharQ(dataclasses.replace(config, default_job_duration_ms=2000), clock=clock)
    yield engine
    engine.close()


def backlog(sq: SharQ, queues: int, depth: int, interval: int, queue_type: str = TYPE) -> None:
    jobs = [
        {"queue_id": f"q{n % queues}", "job_id": f"j{n}", "payload": n, "interval": interval}
        for n in range(queues * depth)
    ]
    for start in range(0, len(jobs), 100):
        sq.enqueue_many(queue_type, jobs[start : start + 100])


def wanted(sq: SharQ, queue_type: str = TYPE) -> int:
    return sq.autoscale(queue_type)["wanted_concurrency"]


def test_rate_limited_queues_want_rate_times_duration(sq: SharQ) -> None:
    """100 queues at 5/s, 2 s jobs (the default until measured), a deep backlog: 1,000."""
    backlog(sq, 100, 20, 200)
    answer = sq.autoscale(TYPE)
    assert answer["wanted_concurrency"] == 1000
    duration = (answer["job_duration_seconds"], answer["job_duration_source"])
    assert (*duration, answer["bound"]) == (2.0, "default", "queues")
    assert answer["inputs"] | {"demand": 1000.0} == {
        "queues": 100, "unlimited_queues": 0, "rate": 500.0, "demand": 1000.0, "queued": 2000, "active": 0,
        "type_rate": None, "type_max_active": None,
    }  # fmt: skip


def test_a_queue_slower_than_one_job_in_1e9_ms_changes_interval(sq: SharQ) -> None:
    """Its rate share rounds to 0 ("r=0"): taking it back must not send HINCRBY a "-0"."""
    sq.enqueue(1, 10**12, "a", "slow", TYPE)
    assert sq.set_interval(1, "slow", TYPE)["status"] == "success"
    assert sq.autoscale(TYPE)["inputs"]["rate"] == 1000.0


def test_caps_and_type_limits_bound_it(sq: SharQ) -> None:
    """A queue's cap bounds its share (min(5/s x 2 s, 3) = 3); the type's max_active
    and rate bound the whole; a shallow backlog bounds it to the jobs held."""
    backlog(sq, 100, 20, 200)
    for n in range(10):
        sq.set_limits(TYPE, f"q{n}", max_active=3)
    assert wanted(sq) == 90 * 10 + 10 * 3
    sq.set_limits(TYPE, "q0", interval=0)  # no rate: the cap alone
    assert wanted(sq) == 930
    sq.set_type_limits(TYPE, max_active=400)
    assert (wanted(sq), sq.autoscale(TYPE)["bound"]) == (400, "type_max_active")
    sq.set_type_limits(TYPE, max_active=None, interval=10)  # 100 jobs/s x 2 s
    assert (wanted(sq), sq.autoscale(TYPE)["bound"]) == (200, "type_rate")
    sq.clear_type_limits(TYPE)
    backlog(sq, 30, 1, 200, "shallow")  # 30 jobs: 30 at most, whatever the rates say
    assert (wanted(sq, "shallow"), sq.autoscale("shallow")["bound"]) == (30, "jobs")


def test_a_cap_bounds_a_queue_at_its_cap_too(sq: SharQ) -> None:
    """A queue that reached its cap leaves the ready set, not the demand: its
    running jobs still want their workers."""
    backlog(sq, 1, 10, 0)
    sq.set_limits(TYPE, "q0", max_active=4)
    jobs, _ = sq.take(TYPE, 10)
    assert len(jobs) == 4
    assert wanted(sq) == 4


def test_unlimited_queues_want_their_backlog(sq: SharQ) -> None:
    """A queue with neither rate limit nor cap could run every job it holds."""
    backlog(sq, 3, 7, 0)
    assert wanted(sq) == 21
    sq.take(TYPE, 5)
    assert wanted(sq) == 21  # 16 queued, 5 running


def test_unlimited_queues_beyond_the_sample_are_estimated(sq: SharQ) -> None:
    """Above DEMAND_SAMPLE unlimited queues their lengths are sampled: equal
    lengths read exactly, and the read's cost stays that of the sample."""
    backlog(sq, DEMAND_SAMPLE * 3, 2, 0)
    assert wanted(sq) == DEMAND_SAMPLE * 3 * 2


def test_the_duration_is_measured_from_hand_out_to_finish(sq: SharQ, clock: Clock) -> None:
    backlog(sq, 100, 20, 200)
    [job] = sq.take(TYPE, 1)[0]
    clock.advance(300)
    sq.finish_job(job.job_id, job.queue_id, TYPE, job.receipt)
    answer = sq.autoscale(TYPE)
    assert (answer["job_duration_seconds"], answer["job_duration_source"]) == (0.3, "measured")
    assert answer["wanted_concurrency"] == 150  # 500 jobs/s x 0.3 s
    [job] = sq.take(TYPE, 1)[0]
    clock.advance(500)
    sq.finish_job(job.job_id, job.queue_id, TYPE, job.receipt)
    assert sq.autoscale(TYPE)["job_duration_seconds"] == 0.32  # a moving average: 0.3 + 0.1 x (0.5 - 0.3)


def test_paused_reads_zero(sq: SharQ, clock: Clock) -> None:
    """A paused type wants nothing; a paused queue's share goes, and a timed
    pause's comes back with the requeue pass after it ends."""
    backlog(sq, 100, 20, 200)
    sq.pause(TYPE)
    assert (wanted(sq), sq.autoscale(TYPE)["bound"]) == (0, "paused")
    sq.resume(TYPE)
    sq.pause(TYPE, "q0")
    sq.pause(TYPE, "q1", for_ms=500)
    assert wanted(sq) == 980
    clock.advance(600)
    sq.requeue()
    assert wanted(sq) == 990
    sq.resume(TYPE, "q0")
    assert wanted(sq) == 1000


def expected_sums(sq: SharQ, queue_type: str) -> Counter[str]:
    """The demand sums recomputed from every queue's state (what the scripts keep
    incrementally): a test-side scan, which the engine never does."""
    sums: Counter[str] = Counter()
    for info in sq.queues(queue_type, limit=1000)["queues"]:
        limits = info["limits"]
        interval, cap = limits["interval"]["value"], limits["max_active"]["value"]
        if info["queue_length"] == 0 or info["paused"]:
            continue
        if interval == 0:
            sums["c" if cap else "f"] += cap or 1
        elif cap is None:
            sums["r"] += 10**9 // interval
        else:
            bucket = math.floor(4 * math.log(cap * interval) / math.log(2))
            sums[f"r{bucket}"] += 10**9 // interval
            sums[f"c{bucket}"] += cap
    return sums


def kept_sums(sq: SharQ, queue_type: str) -> Counter[str]:
    shard = sq._layout(queue_type).name(0)
    stored = sq.redis.hgetall(sq.keys.settings(shard))
    return Counter({name.decode()[7:]: int(value) for name, value in stored.items() if name.startswith(b"demand:")})


def test_the_kept_sums_match_the_queues_after_any_history(sq: SharQ, clock: Clock) -> None:
    """Random enqueues, takes, finishes, failures, throttles, expiries, limit
    changes, pauses and deletions: the sums the scripts keep always equal those
    recomputed from the queues, and nothing is left once the type drains."""
    rng = random.Random(28)
    held: list = []
    for step in range(400):
        queue_id = f"q{rng.randrange(12)}"
        action = rng.random()
        if action < 0.35:
            sq.enqueue(step, rng.choice((0, 50, 200)), f"j{step}", queue_id, TYPE, requeue_limit=rng.choice((0, 2)))
        elif action < 0.55:
            held += sq.take(TYPE, rng.randrange(1, 5))[0]
        elif action < 0.65 and held:
            job = held.pop(rng.randrange(len(held)))
            with contextlib.suppress(NotFound, StaleReceipt):
                sq.finish_job(job.job_id, job.queue_id, TYPE, job.receipt)
        elif action < 0.72 and held:
            job = held.pop(rng.randrange(len(held)))
            throttle = rng.random() < 0.3
            retry_after = 100 if throttle else rng.choice((0, 100))
            with contextlib.suppress(NotFound, StaleReceipt):  # it may have expired meanwhile
                sq.fail(TYPE, job.queue_id, job.job_id, job.receipt, retry_after_ms=retry_after, throttle=throttle)
        elif action < 0.8:
            interval, cap = rng.choice((None, 0, 100)), rng.choice((None, 1, 2))
            sq.set_limits(TYPE, queue_id, interval=interval, max_active=cap)
        elif action < 0.87:
            sq.pause(TYPE, queue_id, for_ms=rng.choice((None, 100)))
        elif action < 0.92:
            sq.resume(TYPE, queue_id)
        elif action < 0.95:
            sq.clear_queue(TYPE, queue_id, purge_all=rng.random() < 0.5)
        else:
            clock.advance(rng.choice((50, 1500)))
            sq.requeue()
        assert kept_sums(sq, TYPE) == expected_sums(sq, TYPE), step
    for queue_id in (f"q{n}" for n in range(12)):
        sq.resume(TYPE, queue_id)
        sq.clear_limits(TYPE, queue_id)
        sq.clear_queue(TYPE, queue_id, purge_all=True)
    assert kept_sums(sq, TYPE) == Counter()
    assert sq.redis.exists(sq.keys.demand(TYPE)) == 0


def test_a_queue_whose_last_jobs_expire_in_a_take_wants_no_worker(sq: SharQ, clock: Clock) -> None:
    """Found by review: a take that found a queue's last queued job past its
    deadline took the queue out of the ready set but left its demand, so the
    signal asked for a worker for a queue with nothing queued until it was
    enqueued to again."""
    sq.enqueue(1, 0, "late", "q0", TYPE, ttl_ms=100)
    assert kept_sums(sq, TYPE) == Counter({"f": 1})
    clock.advance(200)
    assert sq.take(TYPE, 1)[0] == []
    assert kept_sums(sq, TYPE) == expected_sums(sq, TYPE) == Counter()
    assert sq.redis.hlen(sq.keys.demand(TYPE)) == 0


def test_a_sharded_type_sums_its_shards(sq: SharQ) -> None:
    sq.set_type_settings(TYPE, 4)
    backlog(sq, 100, 20, 200)
    sq.set_type_limits(TYPE, max_active=600)  # 150 a shard
    answer = sq.autoscale(TYPE)
    assert (answer["wanted_concurrency"], answer["shards"], answer["inputs"]["queues"]) == (600, 4, 100)


def test_a_bad_type_name_is_refused(sq: SharQ) -> None:
    with pytest.raises(Exception, match="queue_type"):
        sq.autoscale("no spaces")


# -- over HTTP, with a real worker ------------------------------------------------------

TOKENS = "adm=admin,view=viewer,prod=producer"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    env = {"SHARQ_AUTH_TOKENS": TOKENS, "SHARQ_JOB_REQUEUE_INTERVAL": "200"}
    server = ServerProcess(str(tmp_path_factory.mktemp("autoscale") / "data"), env=env).start()
    yield server
    assert server.stop() == 0, server.log()


@pytest.mark.e2e
def test_a_real_worker_measures_and_the_endpoint_follows(server: ServerProcess) -> None:
    """Jobs of 0.2 s run by a real Worker give the measured duration; then 100
    queues at 5/s with a deep backlog want about 500/s x 0.2 s = 100 (1,000 with 2 s
    jobs); a limit raised shows within a second, a pause reads 0 within one
    requeue pass, the figure is the Prometheus gauge, and a bad name is a 400."""
    admin, viewer = Client(server.url, token="adm", timeout=5), Client(server.url, token="view", timeout=5)
    quick = [{"queue_id": f"m{n}", "job_id": f"m{n}", "payload": n, "interval": 0} for n in range(60)]
    admin.enqueue_many("real", quick)
    worker = Worker(admin, "real", lambda job: time.sleep(0.2), concurrency=60, wait=1).start()
    wait_for(lambda: worker.processed == 60, what="the worker to run every job")
    worker.join()
    wait_for(lambda: viewer.type_stats("real")["counters"]["finished"] == 60, what="every ack")
    for start in range(0, 2000, 100):
        admin.enqueue_many("real", [{"queue_id": f"q{n % 100}", "job_id": f"j{n}", "payload": n, "interval": 200}
                                    for n in range(start, start + 100)])  # fmt: skip
    answer = viewer.autoscale("real")
    duration = answer["job_duration_seconds"]
    assert answer["job_duration_source"] == "measured" and 0.2 <= duration <= 1.0, answer  # 0.2 s jobs, acks batched
    assert abs(answer["wanted_concurrency"] - 500 * duration) <= 1.5, answer
    print(f"measured {duration} s: wanted {answer['wanted_concurrency']} (expected 500 x {duration})")

    admin.set_limits("real", "q0", interval=20)  # 5/s -> 50/s: its share x 10
    raised = wait_for(lambda: viewer.autoscale("real")["wanted_concurrency"] > answer["wanted_concurrency"] + 5,
                      timeout=1.0, what="the raised limit to show")  # fmt: skip
    assert raised and abs(viewer.autoscale("real")["wanted_concurrency"] - 545 * duration) <= 1.5
    admin.set_type_limits("real", max_active=40)
    assert wait_for(lambda: viewer.autoscale("real")["wanted_concurrency"] == 40, timeout=1.0)
    admin.set_type_limits("real", max_active=70)  # a type-wide limit raised live
    assert wait_for(lambda: viewer.autoscale("real")["wanted_concurrency"] == 70, timeout=1.0)

    admin.pause("real")
    wait_for(lambda: viewer.autoscale("real")["wanted_concurrency"] == 0, timeout=0.2 + 0.5, what="0 once paused")
    scrape = _scrape(server)
    assert 'sharq_type_wanted_concurrency{queue_type="real"} 0.0' in scrape
    assert f'sharq_type_job_duration_seconds{{queue_type="real"}} {duration}' in scrape
    admin.resume("real")
    assert viewer.autoscale("real")["wanted_concurrency"] == 70

    assert server.call("GET", "/autoscale/no%20space/", headers={"Authorization": "Bearer view"})[0] == 400
    assert server.call("GET", "/autoscale/real/", headers={"Authorization": "Bearer prod"})[0] == 403


def _scrape(server: ServerProcess) -> str:
    """The Prometheus exposition, as a viewer's scrape reads it."""
    url = server.url + "/metrics/?format=prometheus"
    request = urllib.request.Request(url, headers={"Authorization": "Bearer view"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()
