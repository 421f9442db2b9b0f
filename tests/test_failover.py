"""Failovers of a real 3 primaries + 3 replicas Redis Cluster under a real sharq-server
with producers and workers: a graceful CLUSTER FAILOVER, and a lossy one (a frozen
replica promoted after its primary is killed) with wait_replicas = 1. Nothing
answered 2xx is missing after either; serving resumes by itself."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from sharq_core import Config, SharQ
from sharq_core.shards import Layout
from sharq_server.embedded import redis_executable
from tests.support import LocalCluster, ServerProcess, frozen, sample, wait_for

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
    """A started sharq-server on the cluster (`with` it: it is stopped however the test ends)."""
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

    def __init__(self, server: ServerProcess, queue_type: str, campaign: str | None = None) -> None:
        self.server, self.queue_type, self.campaign = server, queue_type, campaign
        self.acked: dict[str, tuple[float, float]] = {}  # job_id -> (sent, answered) of a 201
        self.refused: list[tuple[float, float, str | None]] = []  # (sent, answered, reason) of enqueues not 201
        self.finished: set[tuple[str, str]] = set()
        self.failures: list[float] = []  # when a request answered 5xx
        self._stop_producing, self._stop = threading.Event(), threading.Event()
        self._producers = [threading.Thread(target=self._produce, args=(n,)) for n in range(2)]
        self._threads = [*self._producers, *(threading.Thread(target=self._work) for _ in range(2))]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop_producing(self) -> None:
        self._stop_producing.set()
        for thread in self._producers:
            thread.join(15)

    def stop(self) -> None:
        self._stop_producing.set()
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
        while not self._stop_producing.is_set():
            job_id, n = f"p{producer}-{n}", n + 1
            sent = time.monotonic()
            body = {
                "job_id": job_id,
                "payload": n,
                "interval": 0,
                **({"campaign": self.campaign} if self.campaign else {}),
            }
            status, reply = self._call("POST", f"/enqueue/{self.queue_type}/q{n % 4}/", body)
            if status == 201:
                self.acked[job_id] = (sent, time.monotonic())
            else:
                self.refused.append((sent, time.monotonic(), (reply or {}).get("reason")))

    def _work(self) -> None:
        while not self._stop.is_set():
            status, reply = self._call("GET", f"/dequeue/{self.queue_type}/?count=10&wait=1")
            for job in reply.get("jobs", []) if status == 200 else []:
                path = f"/finish/{self.queue_type}/{job['queue_id']}/{job['job_id']}/"
                if self._call("POST", path, {"receipt": job["receipt"]})[0] == 200:
                    self.finished.add((job["queue_id"], job["job_id"]))

    def acked_after(self, moment: float) -> int:
        return sum(1 for _, when in list(self.acked.values()) if when > moment)

    def drain_and_check(self) -> None:
        """Stop producing, let the workers take and finish everything, then check
        that every job answered 201 was finished: nothing acknowledged was lost. A
        finish or a take a failover undid only delivers its job again (at-least-once)."""
        self.stop_producing()
        try:
            wait_for(self._drained, timeout=30, interval=0.2, what="the workers to finish every job")
        except AssertionError as error:  # say what was left
            raise AssertionError(f"{error}: {self.server.call('GET', f'/stats/{self.queue_type}/')}") from None
        for job_id in self.acked:
            queue_id = f"q{(int(job_id.split('-')[1]) + 1) % 4}"
            status, reply = self.server.call("GET", f"/job/{self.queue_type}/{queue_id}/{job_id}/")
            assert (status, reply.get("state")) == (200, "finished"), (job_id, reply)

    def _drained(self) -> bool:
        status, stats = self.server.call("GET", f"/stats/{self.queue_type}/", timeout=5)
        jobs = stats.get("jobs", {}) if status == 200 else {}
        return status == 200 and not (jobs["queued"] or jobs["active"] or jobs["scheduled"])


def role(port: int) -> str:
    with redis.Redis(port=port) as client:
        return client.info("replication")["role"]


def test_graceful_failover_under_load_loses_nothing(cluster: LocalCluster, tmp_path) -> None:
    with sharq_on(cluster, tmp_path, SHARQ_REDIS_WAIT_REPLICAS="1", SHARQ_REDIS_WAIT_TIMEOUT_MS=str(WAIT_MS)) as server:
        load = Load(server, type_on(cluster, SHARD)).start()
        try:
            wait_for(lambda: len(load.finished) >= 20, timeout=15, what="the load to run")
            replica = cluster.nodes[3 + SHARD]
            started = time.monotonic()
            with redis.Redis(port=replica.port) as client:
                client.execute_command("CLUSTER FAILOVER")
            wait_for(lambda: role(replica.port) == "master", timeout=10, what="the replica to take over")
            promoted = time.monotonic()
            wait_for(lambda: load.acked_after(promoted + 0.5) >= 20, timeout=15, what="enqueues on the new primary")
            done = len(load.finished)
            wait_for(lambda: len(load.finished) >= done + 20, timeout=15, what="finishes on the new primary")
            load.drain_and_check()
        finally:
            load.stop()
        late = [when - started for when in load.failures if when - started >= 3]
        assert not late, f"5xx answers {late} s after the failover began"
        print(f"\ngraceful failover: promoted after {promoted - started:.2f} s, {len(load.failures)} 5xx answers")
        assert server.stop() == 0


def test_a_campaign_stays_exact_through_a_graceful_failover(cluster: LocalCluster, tmp_path) -> None:
    """A campaign whose jobs are enqueued and finished while its shard fails over:
    its counts sum to its total at every read, every job answered 201 is counted,
    it ends done with all of them finished, and its on_done job (into a type on
    another shard) is enqueued exactly once."""
    with sharq_on(cluster, tmp_path, SHARQ_REDIS_WAIT_REPLICAS="1", SHARQ_REDIS_WAIT_TIMEOUT_MS=str(WAIT_MS)) as server:
        queue_type, reports = type_on(cluster, SHARD), type_on(cluster, 0)
        on_done = {"on_done": {"queue_type": reports, "queue_id": "ops", "payload": None}}
        assert server.call("PUT", f"/campaigns/{queue_type}/spring/", on_done)[0] == 200
        load, reads, reading = Load(server, queue_type, campaign="spring").start(), [], threading.Event()

        def read() -> None:
            while not reading.is_set():
                status, found = server.call("GET", f"/campaigns/{queue_type}/spring/", timeout=5)
                if status == 200:
                    reads.append(found)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            wait_for(lambda: len(load.finished) >= 20, timeout=15, what="the load to run")
            replica = cluster.nodes[3 + SHARD]
            with redis.Redis(port=replica.port) as client:
                client.execute_command("CLUSTER FAILOVER")
            wait_for(lambda: role(replica.port) == "master", timeout=10, what="the replica to take over")
            promoted = time.monotonic()
            wait_for(lambda: load.acked_after(promoted + 0.5) >= 20, timeout=15, what="enqueues on the new primary")
            load.drain_and_check()
        finally:
            load.stop()
            reading.set()
            reader.join(15)
        states = ("queued", "scheduled", "active", "finished", "dead", "expired", "cancelled")
        assert reads and all(sum(found[state] for state in states) == found["total"] for found in reads)
        wait_for(
            lambda: server.call("GET", f"/campaigns/{queue_type}/spring/")[1].get("on_done_enqueued_at"),
            timeout=15, what="the on_done job to be enqueued",
        )  # fmt: skip
        final = server.call("GET", f"/campaigns/{queue_type}/spring/")[1]
        assert final["done"] and final["finished"] == final["total"] >= len(load.acked), final
        status, taken = server.call("GET", f"/dequeue/{reports}/?count=10&wait=1")
        assert status == 200 and [job["job_id"] for job in taken["jobs"]] == ["campaign-done.spring"]
        # finished at once, so the job's own expiry (1 s here) cannot hand it out again
        report = taken["jobs"][0]
        path = f"/finish/{reports}/ops/{report['job_id']}/"
        assert server.call("POST", path, {"receipt": report["receipt"]})[0] == 200
        assert server.call("GET", f"/dequeue/{reports}/?count=10&wait=1")[0] == 404  # and only once
        assert server.stop() == 0


def lose_writes_in_a_failover(cluster: LocalCluster, load: Load) -> tuple[float, float]:
    """With the load running: freeze the type's replica while its primary writes
    on, kill the primary and promote the stale replica (CLUSTER FAILOVER
    TAKEOVER), which has no replica of its own. Returns when the replica froze
    and when it was promoted."""
    primary, replica = cluster.nodes[SHARD], cluster.nodes[3 + SHARD]
    wait_for(lambda: len(load.finished) >= 20, timeout=15, what="the load to run")
    with frozen(replica.process.pid):
        frozen_at = time.monotonic()
        with redis.Redis(port=primary.port) as direct:
            # fill the replication link, so what follows stays in the primary's own buffer
            for n in range(24):
                direct.set(f"{PREFIX}:{{{load.queue_type}}}:filler{n}", b"x" * 1024 * 1024)
            direct.set(f"{PREFIX}:{{{load.queue_type}}}:marker", 1)
        refusals = len(load.refused)
        wait_for(lambda: len(load.refused) >= refusals + 5, timeout=15, what="writes refused during the freeze")
        primary.process.send_signal(signal.SIGKILL)
        primary.process.wait()
    with redis.Redis(port=replica.port) as client:
        wait_for(lambda: _take_over(client), timeout=15, what="the stale replica to take over")
        wait_for(lambda: role(replica.port) == "master", timeout=15, what="the promotion")
        promoted = time.monotonic()
        assert client.get(f"{PREFIX}:{{{load.queue_type}}}:marker") is None  # the failover did lose writes
    return frozen_at, promoted


def test_lossy_failover_with_wait_replicas_loses_nothing_acknowledged(cluster: LocalCluster, tmp_path) -> None:
    queue_type = type_on(cluster, SHARD)
    with sharq_on(cluster, tmp_path, SHARQ_REDIS_WAIT_REPLICAS="1", SHARQ_REDIS_WAIT_TIMEOUT_MS=str(WAIT_MS)) as server:
        load = Load(server, queue_type).start()
        try:
            frozen_at, promoted = lose_writes_in_a_failover(cluster, load)
            # enqueues need wait_replicas = 1 replica again: the dead node is replaced by one
            cluster.replace_as_replica(SHARD, cluster.nodes[3 + SHARD])
            rejoined = time.monotonic()
            _wait_or_explain(load, cluster, server, rejoined)
            resumed = time.monotonic() - rejoined
            wait_for(lambda: load.acked_after(rejoined) >= 20, timeout=15, what="enqueues on the new primary")
            poll = _long_poll_is_woken(server, queue_type)
            load.drain_and_check()
        finally:
            load.stop()
        # nothing sent once the replica froze was answered 2xx before the new primary took over
        assert not [job for job, (sent, answered) in load.acked.items() if frozen_at < sent and answered < promoted]
        print(f"\nlossy failover: a new replica in sync {rejoined - promoted:.2f} s after the promotion,")
        print(f"enqueues served {resumed:.2f} s after, a long poll woken {poll:.2f} s after its enqueue")
        assert server.stop() == 0


def test_after_a_lossy_failover_jobs_are_taken_and_finished_with_no_replica(cluster: LocalCluster, tmp_path) -> None:
    """Issue 23.6: the promoted replica has no replica of its own, and none is
    added. Enqueues are refused (503 "replicas": one lost would lose a job), but
    the workers still take and finish every job answered 201 before the freeze,
    and the server counts and logs the takes and acks answered short of replicas."""
    queue_type = type_on(cluster, SHARD)
    with sharq_on(cluster, tmp_path, SHARQ_REDIS_WAIT_REPLICAS="1", SHARQ_REDIS_WAIT_TIMEOUT_MS=str(WAIT_MS)) as server:
        load = Load(server, queue_type).start()
        try:
            frozen_at, promoted = lose_writes_in_a_failover(cluster, load)
            wait_for(lambda: _refused_after(load, promoted) >= 5, timeout=15, what="enqueues refused after it")
            load.drain_and_check()
        finally:
            load.stop()
        assert not [job for job, (sent, _) in load.acked.items() if sent > frozen_at]
        # refused for want of a replica (a connection cut by the failover itself may add "connection")
        reasons = {reason for sent, _, reason in load.refused if sent > promoted}
        assert "replicas" in reasons and reasons <= {"replicas", "connection"}, reasons
        exposition = server.scrape()
        shortfalls = {
            call: sample(exposition, "sharq_replica_shortfall_total", call=call) for call in ("dequeue", "finish")
        }
        assert all(shortfalls.values()), shortfalls
        assert server.stop() == 0
    lines = server.log().count("take(s) or acknowledgement(s) answered with fewer than the 1 replica(s)")
    assert 1 <= lines <= 2, server.log()  # once a minute at most, in each of the 2 gunicorn workers
    print(f"\nwith no replica after the promotion: {shortfalls} takes and acks answered short")


def _wait_or_explain(load: Load, cluster: LocalCluster, server: ServerProcess, rejoined: float) -> None:
    """Wait for an enqueue answered 201 after the new replica joined; failing, say
    why the others were refused and what the nodes and the server saw."""
    try:
        wait_for(lambda: load.acked_after(rejoined) >= 1, timeout=15, what="enqueues to resume")
    except AssertionError as error:
        reasons = Counter(reason for sent, _, reason in list(load.refused) if sent > rejoined)
        views = {}
        for node in cluster.nodes:
            if node.process is not None and node.process.poll() is None:
                with redis.Redis(port=node.port, socket_timeout=2) as client:
                    views[node.port] = (client.info("replication"), client.execute_command("CLUSTER NODES"))
        raise AssertionError(f"{error}: refusals since {reasons}; nodes {views}; log {server.log()[-4000:]}") from None


def _refused_after(load: Load, moment: float) -> int:
    return sum(1 for sent, _, _ in list(load.refused) if sent > moment)


def _take_over(client: redis.Redis) -> bool:
    """CLUSTER FAILOVER TAKEOVER, again until the just resumed replica accepts it."""
    try:
        client.execute_command("CLUSTER FAILOVER", "TAKEOVER")
        return True
    except redis.ResponseError:
        return False


def _long_poll_is_woken(server: ServerProcess, queue_type: str) -> float:
    """A long poll on a fresh queue answers after an enqueue: the listener has
    followed the channel's node to its new primary. The poll may wait 25 s: on a
    loaded machine the listener may still be backing off (up to 5 s) from the
    failover when the enqueue is announced, and takes once it has subscribed again."""
    answer: list[tuple[int, dict]] = []
    fresh = f"{queue_type}x"
    poller = threading.Thread(
        target=lambda: answer.append(server.call("GET", f"/dequeue/{fresh}/?wait=25", timeout=30))
    )
    poller.start()
    job = {"job_id": "wake", "payload": 1, "interval": 0}
    wait_for(lambda: server.call("POST", f"/enqueue/{fresh}/q1/", job)[0] in (201, 409), timeout=15, what="an enqueue")
    sent = time.monotonic()
    poller.join(30)
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
