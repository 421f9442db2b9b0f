"""Failovers of a real 3 primaries + 3 replicas Redis Cluster under a real sharq-server
with producers and workers: a graceful CLUSTER FAILOVER, and a lossy one (a frozen
replica promoted after its primary is killed) with wait_replicas = 1. Nothing
answered 2xx is missing after either; serving resumes by itself."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from sharq_core import Config, SharQ
from sharq_core.shards import Layout
from sharq_server.embedded import redis_executable
from tests.support import LocalCluster, ServerProcess, frozen, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

PREFIX = "sq"  # its ready channel lives on shard 1, the shard that fails over
SHARD = 1
WAIT_MS = 300


@pytest.fixture
def cluster(tmp_path) -> Iterator[LocalCluster]:
    nodes = LocalCluster(
        str(tmp_path / "cluster"), redis_executable(), replicas=True, extra_args=("--cluster-node-timeout", "2000")
    )
    nodes.start()
    assert nodes.shard_of(f"{PREFIX}:ready") == SHARD
    yield nodes
    nodes.stop()


def type_on(cluster: LocalCluster, shard: int) -> str:
    """A queue type whose keys live on `shard`."""
    return next(f"t{n}" for n in range(100) if cluster.shard_of(f"{PREFIX}:{{t{n}}}") == shard)


def sharq_on(cluster: LocalCluster, tmp_path, **env: str) -> ServerProcess:
    settings = {
        "SHARQ_REDIS_URL": cluster.url,
        "SHARQ_REDIS_CLUSTERED": "true",
        "SHARQ_REDIS_KEY_PREFIX": PREFIX,
        "SHARQ_REDIS_SOCKET_TIMEOUT": "1",
        "SHARQ_JOB_EXPIRE_INTERVAL": "1000",
        "SHARQ_JOB_REQUEUE_INTERVAL": "100",
        "SHARQ_ACCESSLOG": "off",
        **env,
    }
    return ServerProcess(str(tmp_path / "sharq"), workers=2, env=settings).start()


class Load:
    """Producers enqueueing and workers long-polling and finishing, through HTTP,
    recording what was answered 2xx and when anything answered 5xx."""

    def __init__(self, server: ServerProcess, queue_type: str) -> None:
        self.server, self.queue_type = server, queue_type
        self.acked: dict[str, tuple[float, float]] = {}  # job_id -> (sent, answered) of a 201
        self.refused: list[tuple[float, float]] = []  # (sent, answered) of enqueues not 201
        self.finished: set[tuple[str, str]] = set()
        self.failures: list[float] = []  # when a request answered 5xx
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._produce, args=(n,)) for n in range(2)]
        self._threads += [threading.Thread(target=self._work) for _ in range(2)]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _call(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        status, reply = self.server.call(method, path, body, timeout=5)
        if status >= 500:
            self.failures.append(time.monotonic())
        return status, reply

    def _produce(self, producer: int) -> None:
        n = 0
        while not self._stop.is_set():
            job_id, n = f"p{producer}-{n}", n + 1
            sent = time.monotonic()
            status, _ = self._call(
                "POST", f"/enqueue/{self.queue_type}/q{n % 4}/", {"job_id": job_id, "payload": n, "interval": 0}
            )
            if status == 201:
                self.acked[job_id] = (sent, time.monotonic())
            else:
                self.refused.append((sent, time.monotonic()))

    def _work(self) -> None:
        while not self._stop.is_set():
            status, reply = self._call("GET", f"/dequeue/{self.queue_type}/?count=10&wait=1")
            for job in reply.get("jobs", []) if status == 200 else []:
                path = f"/finish/{self.queue_type}/{job['queue_id']}/{job['job_id']}/"
                if self._call("POST", path, {"receipt": job["receipt"]})[0] == 200:
                    self.finished.add((job["queue_id"], job["job_id"]))

    def acked_after(self, moment: float) -> int:
        return sum(1 for _, when in list(self.acked.values()) if when > moment)

    def assert_nothing_acknowledged_lost(self) -> None:
        """Every job answered 201 is still known, and every finish answered 200 holds."""
        queue_of = {job_id: queue_id for queue_id, job_id in self.finished}
        for job_id in self.acked:
            queue_id = queue_of.get(job_id) or f"q{(int(job_id.split('-')[1]) + 1) % 4}"
            status, reply = self.server.call("GET", f"/job/{self.queue_type}/{queue_id}/{job_id}/")
            assert status == 200, (job_id, reply)
            expected = {"finished"} if job_id in queue_of else {"queued", "active", "retrying", "finished"}
            assert reply["state"] in expected, (job_id, reply)


def role(port: int) -> str:
    with redis.Redis(port=port) as client:
        return client.info("replication")["role"]


def test_graceful_failover_under_load_loses_nothing(cluster: LocalCluster, tmp_path) -> None:
    server = sharq_on(cluster, tmp_path, SHARQ_REDIS_WAIT_REPLICAS="1", SHARQ_REDIS_WAIT_TIMEOUT_MS=str(WAIT_MS))
    load = Load(server, type_on(cluster, SHARD)).start()
    try:
        wait_for(lambda: len(load.finished) >= 20, timeout=15, what="the load to run")
        replica = cluster.nodes[3 + SHARD]
        started = time.monotonic()
        with redis.Redis(port=replica.port) as client:
            client.execute_command("CLUSTER FAILOVER")
        wait_for(lambda: role(replica.port) == "master", timeout=10, what="the replica to take over")
        promoted = time.monotonic()
        wait_for(lambda: load.acked_after(promoted + 0.5) >= 20, timeout=10, what="enqueues on the new primary")
        done = len(load.finished)
        wait_for(lambda: len(load.finished) >= done + 20, timeout=10, what="finishes on the new primary")
    finally:
        load.stop()
    late = [when - started for when in load.failures if when - started >= 3]
    assert not late, f"5xx answers {late} s after the failover began"
    print(f"\ngraceful failover: promoted after {promoted - started:.2f} s, {len(load.failures)} 5xx answers")
    load.assert_nothing_acknowledged_lost()
    assert server.stop() == 0


def test_lossy_failover_with_wait_replicas_loses_nothing_acknowledged(cluster: LocalCluster, tmp_path) -> None:
    server = sharq_on(cluster, tmp_path, SHARQ_REDIS_WAIT_REPLICAS="1", SHARQ_REDIS_WAIT_TIMEOUT_MS=str(WAIT_MS))
    queue_type = type_on(cluster, SHARD)
    primary, replica = cluster.nodes[SHARD], cluster.nodes[3 + SHARD]
    load = Load(server, queue_type).start()
    try:
        wait_for(lambda: len(load.finished) >= 20, timeout=15, what="the load to run")
        os.kill(replica.process.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        with redis.Redis(port=primary.port) as direct:
            # fill the replication link, so what follows stays in the primary's own buffer
            for n in range(24):
                direct.set(f"{PREFIX}:{{{queue_type}}}:filler{n}", b"x" * 1024 * 1024)
            direct.set(f"{PREFIX}:{{{queue_type}}}:marker", 1)
        refusals = len(load.refused)
        wait_for(lambda: len(load.refused) >= refusals + 5, timeout=10, what="writes refused during the freeze")
        primary.process.send_signal(signal.SIGKILL)
        primary.process.wait()
        os.kill(replica.process.pid, signal.SIGCONT)
        with redis.Redis(port=replica.port) as client:
            wait_for(lambda: _take_over(client), timeout=10, what="the stale replica to take over")
            wait_for(lambda: role(replica.port) == "master", timeout=10, what="the promotion")
            promoted = time.monotonic()
            assert client.get(f"{PREFIX}:{{{queue_type}}}:marker") is None  # the failover did lose writes
            # wait_replicas = 1 needs a replica again: the dead node is replaced by one
            cluster.replace_as_replica(SHARD, replica)
            rejoined = time.monotonic() - promoted
        wait_for(lambda: load.acked_after(promoted) >= 1, timeout=5, what="serving to resume within 5 s")
        resumed = time.monotonic() - promoted
        wait_for(lambda: load.acked_after(promoted) >= 20, timeout=10, what="enqueues on the new primary")
        poll = _long_poll_is_woken(server, queue_type)
    finally:
        load.stop()
    # nothing sent once the replica froze was answered 2xx before the new primary took over
    assert not [job for job, (sent, answered) in load.acked.items() if frozen_at < sent and answered < promoted]
    print(f"\nlossy failover, after the promotion: a new replica in sync {rejoined:.2f} s, serving {resumed:.2f} s")
    print(f"long poll woken in {poll:.2f} s")
    load.assert_nothing_acknowledged_lost()
    assert server.stop() == 0


def _take_over(client: redis.Redis) -> bool:
    """CLUSTER FAILOVER TAKEOVER, again until the just resumed replica accepts it."""
    try:
        client.execute_command("CLUSTER FAILOVER", "TAKEOVER")
        return True
    except redis.ResponseError:
        return False


def _long_poll_is_woken(server: ServerProcess, queue_type: str) -> float:
    """A long poll on a fresh queue answers soon after an enqueue: the listener has
    followed the channel's node to its new primary."""
    answer: list[tuple[int, dict]] = []
    fresh = f"{queue_type}x"
    poller = threading.Thread(
        target=lambda: answer.append(server.call("GET", f"/dequeue/{fresh}/?wait=10", timeout=15))
    )
    poller.start()
    wait_for(
        lambda: server.call("POST", f"/enqueue/{fresh}/q1/", {"job_id": "wake", "payload": 1, "interval": 0})[0] == 201,
        timeout=5,
    )
    sent = time.monotonic()
    poller.join(15)
    assert answer and answer[0][0] == 200, answer
    return time.monotonic() - sent


def test_a_node_failing_an_ack_and_take_leaves_the_jobs_to_take_queued(tmp_path) -> None:
    """Found by review: a batch's acks go to each shard's node, one pipeline a node,
    and the take rides on the last shard's call. Had that node gone first and a
    later node then failed, the caller got an error for jobs taken in its name
    (with requeue_limit 0 they went to the dead letters). Now the node with the
    take goes last: a node that fails first fails the batch before anything is taken."""
    cluster = LocalCluster(str(tmp_path / "plain"), redis_executable()).start()
    try:
        base = Config(job_expire_interval=1000)
        settings = dataclasses.replace(base.redis, url=cluster.url, clustered=True, embedded=False, socket_timeout=1.0)
        sq = SharQ(dataclasses.replace(base, redis=settings))
        sq.set_type_settings("hot", 6)
        layout, by_node = Layout("hot", 6), {}
        for shard in layout.names():
            by_node.setdefault(cluster.shard_of(f"{{{shard}}}"), []).append(shard)
        node_a = next(node for node, shards in by_node.items() if len(shards) >= 2)
        node_b = next(node for node in by_node if node != node_a)
        (first, last), middle = by_node[node_a][:2], by_node[node_b][0]
        queue_of = {}
        for n in range(1000):
            queue_of.setdefault(layout.of(f"t{n}"), f"t{n}")
        order = [queue_of[shard] for shard in (first, middle, last)]
        sq.enqueue_many("hot", [{"queue_id": q, "job_id": "a", "payload": 1, "interval": 0} for q in order])
        receipts = {job["queue_id"]: job["receipt"] for job in sq.dequeue_many("hot", 3)["jobs"]}
        sq.enqueue_many("hot", [{"queue_id": queue_of[last], "job_id": f"b{n}", "payload": 1, "interval": 0,
                                 "requeue_limit": 0} for n in range(3)])  # fmt: skip
        acks = [{"queue_id": queue_id, "job_id": "a", "receipt": receipts[queue_id]} for queue_id in order]
        with frozen(cluster.nodes[node_b].process.pid), pytest.raises(redis.TimeoutError):
            sq.finish_many("hot", acks, next_count=3)
        jobs_now = sq.type_stats("hot")["jobs"]
        assert (jobs_now["active"], jobs_now["queued"]) == (3, 3)  # nothing acked, nothing taken
        sq.close()
    finally:
        cluster.stop()
