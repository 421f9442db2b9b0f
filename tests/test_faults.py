"""Real faults on real processes: Redis stopped, hung and killed; servers killed -9;
two instances under concurrent pollers; SIGTERM with a request in flight."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import defaultdict

import pytest
import redis

from sharq_server.embedded import EmbeddedRedis
from tests.support import ServerProcess, free_port, frozen, processes_mentioning, refuses_connections, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

SOCKET_TIMEOUT = 1.0


@pytest.fixture
def redis_server(tmp_path):
    """A Redis of the test's own (append-only, fsync on every write) it may stop and kill."""
    server = EmbeddedRedis(str(tmp_path / "redis"), port=free_port(), appendfsync="always")
    server.start()
    yield server
    if server.process is not None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def sharq_on(redis_server: EmbeddedRedis, tmp_path, name: str = "sharq", **env: str) -> ServerProcess:
    settings = {
        "SHARQ_REDIS_URL": redis_server.url,
        "SHARQ_REDIS_SOCKET_TIMEOUT": str(SOCKET_TIMEOUT),
        "SHARQ_JOB_EXPIRE_INTERVAL": "500",
        "SHARQ_JOB_REQUEUE_INTERVAL": "100",
        **env,
    }
    return ServerProcess(str(tmp_path / name), env=settings).start()


def enqueue_batch(
    server: ServerProcess, queue_type: str, jobs: list[tuple[str, str]], interval: int = 0, **campaign: str
) -> None:
    for start in range(0, len(jobs), 100):
        batch = [
            {"queue_id": queue_id, "job_id": job_id, "payload": {"job": job_id}, "interval": interval, **campaign}
            for queue_id, job_id in jobs[start : start + 100]
        ]
        status, body = server.call("POST", f"/enqueue/{queue_type}/", {"jobs": batch})
        assert status == 200 and all(result["status"] == "queued" for result in body["results"])


def timed(server: ServerProcess, method: str, path: str, body: object = None) -> tuple[int, float, dict]:
    started = time.monotonic()
    status, reply = server.call(method, path, body)
    return status, time.monotonic() - started, reply


def test_redis_outage_is_503_fast_and_recovers(redis_server: EmbeddedRedis, tmp_path) -> None:
    server = sharq_on(redis_server, tmp_path)
    try:
        assert server.call("POST", "/enqueue/sms/u1/", {"job_id": "j1", "payload": 1, "interval": 0})[0] == 201
        calls = [
            ("GET", "/dequeue/sms/", None),
            ("POST", "/enqueue/sms/u1/", {"job_id": "j2", "payload": 1, "interval": 0}),
            ("POST", "/finish/sms/u1/j1/", None),
            ("GET", "/metrics/", None),
            ("GET", "/deepstatus/", None),
        ]
        redis_server.stop()  # refused connections
        refused = [timed(server, *call) for call in calls]
        redis_server.start()
        os.kill(redis_server.process.pid, signal.SIGSTOP)  # a Redis that accepts but never answers
        hung = [timed(server, *call) for call in calls]
        os.kill(redis_server.process.pid, signal.SIGCONT)
        for status, seconds, reply in refused + hung:
            assert status == 503 and reply["status"] == "failure"
            assert seconds < SOCKET_TIMEOUT + 1.0
        worst = [max(seconds for _, seconds, _ in calls) * 1000 for calls in (refused, hung)]
        print(f"\n503 latency: refused max {worst[0]:.0f} ms, hung max {worst[1]:.0f} ms (socket_timeout 1 s)")

        wait_for(lambda: server.call("GET", "/deepstatus/")[0] == 200, what="SharQ to serve again")
        status, job = server.call("GET", "/dequeue/sms/")
        assert (status, job["job_id"]) == (200, "j1")  # append-only: the job survived the restart
        # the requeue loop survived the outage too: the unfinished job comes back
        wait_for(lambda: server.call("GET", "/dequeue/sms/")[0] == 200, what="the requeue loop to requeue j1")
        assert "requeue pass failed" in server.log()
    finally:
        assert server.stop() == 0


def worker_pids(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def test_kill_9_of_workers_and_master_loses_nothing(redis_server: EmbeddedRedis, tmp_path) -> None:
    server = sharq_on(redis_server, tmp_path)
    jobs = [(f"q{n % 5}", f"j{n}") for n in range(50)]
    on_done = {"on_done": {"queue_type": "reports", "queue_id": "ops", "payload": None}}
    assert server.call("PUT", "/campaigns/sms/sale/", on_done)[0] == 200
    enqueue_batch(server, "sms", jobs, campaign="sale")
    assert server.call("GET", "/dequeue/sms/?count=20")[0] == 200  # 20 jobs active, never finished
    os.kill(worker_pids(server.process.pid)[0], signal.SIGKILL)
    server.process.kill()
    server.process.wait()
    for worker in worker_pids(server.process.pid):
        wait_for(lambda w=worker: not os.path.exists(f"/proc/{w}"), what="orphaned workers to exit")

    again = sharq_on(redis_server, tmp_path, "again")
    try:
        delivered = set()

        def drain() -> bool:
            status, body = again.call("GET", "/dequeue/sms/?count=50")
            for job in body.get("jobs", []) if status == 200 else []:
                delivered.add(job["job_id"])
                again.call("POST", f"/finish/sms/{job['queue_id']}/{job['job_id']}/")
            return len(delivered) == 50

        wait_for(drain, timeout=20, what="every job, the 20 orphaned ones after expiry")
        assert delivered == {job_id for _, job_id in jobs}
        # the campaign counted every move exactly, through the deaths, and said "done" once
        wait_for(lambda: again.call("GET", "/campaigns/sms/sale/")[1]["on_done_enqueued_at"], what="on_done")
        found = again.call("GET", "/campaigns/sms/sale/")[1]
        assert (found["total"], found["finished"], found["queued"] + found["active"], found["done"]) == (
            50,
            50,
            0,
            True,
        )
        assert again.call("GET", "/metrics/reports/ops/")[1]["queue_length"] == 1
    finally:
        assert again.stop() == 0


def test_kill_9_of_redis_keeps_every_acknowledged_job(redis_server: EmbeddedRedis, tmp_path) -> None:
    server = sharq_on(redis_server, tmp_path, SHARQ_JOB_EXPIRE_INTERVAL="600000")
    try:
        enqueue_batch(server, "sms", [(f"q{n % 3}", f"j{n}") for n in range(30)])
        active = server.call("GET", "/dequeue/sms/?count=10")[1]["jobs"]
        redis_server.kill()
        redis_server.start()
        wait_for(lambda: server.call("GET", "/deepstatus/")[0] == 200, what="Redis to be back")
        lengths = [server.call("GET", f"/metrics/sms/q{n}/")[1]["queue_length"] for n in range(3)]
        assert sum(lengths) == 20
        for job in active:
            assert server.call("GET", f"/job/sms/{job['queue_id']}/{job['job_id']}/")[1]["state"] == "active"
    finally:
        assert server.stop() == 0


def test_two_instances_twenty_pollers(redis_server: EmbeddedRedis, tmp_path) -> None:
    """Every job once, never to two pollers; for every queue, no window of T ms holds
    more than burst + T // interval dequeues and no more than max_active jobs are
    active at once, all measured on the Redis clock (issue 10's limits on a third
    of the queues: bursts of 3, caps of 1 and 2)."""
    interval, queues, total = 50, 40, 2000
    limits = {f"q{n}": {"burst": 3, "max_active": 1 + n % 2} for n in range(0, queues, 3)}
    servers = [sharq_on(redis_server, tmp_path, f"sharq{n}", SHARQ_JOB_EXPIRE_INTERVAL="60000") for n in range(2)]
    try:
        for queue_id, limit in limits.items():
            assert servers[1].call("PUT", f"/limits/sms/{queue_id}/", limit)[0] == 200
        enqueue_batch(servers[0], "sms", [(f"q{n % queues}", f"j{n}") for n in range(total)], interval)
        deliveries: list[tuple[str, str, int]] = []
        lock = threading.Lock()
        deadline = time.monotonic() + 60

        def poll(index: int) -> None:
            server = servers[index % 2]
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                while time.monotonic() < deadline:
                    with lock:
                        if len(deliveries) >= total:
                            return
                    connection.request("GET", "/dequeue/sms/")
                    response = connection.getresponse()
                    body = json.loads(response.read())
                    if response.status != 200:
                        time.sleep(min(body["retry_after_ms"] or 10, 10) / 1000)  # as a real worker waits
                        continue
                    with lock:
                        deliveries.append((body["queue_id"], body["job_id"], body["dequeued_at"]))
                    connection.request("POST", f"/finish/sms/{body['queue_id']}/{body['job_id']}/")
                    finished = connection.getresponse()
                    finished.read()
                    assert finished.status == 200
            finally:
                connection.close()

        started = time.monotonic()
        pollers = [threading.Thread(target=poll, args=(n,)) for n in range(20)]
        for thread in pollers:
            thread.start()
        for thread in pollers:
            thread.join()
        elapsed = time.monotonic() - started

        job_ids = [job_id for _, job_id, _ in deliveries]
        by_queue: dict[str, list[int]] = defaultdict(list)
        for queue_id, _, at in deliveries:
            by_queue[queue_id].append(at)
        plain = [times for queue_id, times in by_queue.items() if queue_id not in limits]
        gaps = [b - a for times in map(sorted, plain) for a, b in itertools.pairwise(times)]
        duplicates = len(job_ids) - len(set(job_ids))
        print(f"\n{len(deliveries)} deliveries of {total} jobs in {elapsed:.1f} s, {duplicates} duplicates, "
              f"smallest gap {min(gaps)} ms (interval {interval})")  # fmt: skip
        assert len(set(job_ids)) == total
        assert len(job_ids) == total
        assert min(gaps) >= interval
        for queue_id, times in by_queue.items():
            burst = limits.get(queue_id, {}).get("burst", 1)
            assert_window_bound(sorted(times), burst, interval)
        finished = finish_times(redis_server, deliveries)
        for queue_id, limit in limits.items():
            spans = [(at, finished[job_id]) for q, job_id, at in deliveries if q == queue_id]
            assert most_at_once(spans) <= limit["max_active"], queue_id
    finally:
        for server in servers:
            assert server.stop() == 0


def assert_window_bound(times: list[int], burst: int, interval: int) -> None:
    """No window [a, b] holds more than burst + (b - a) // interval of `times`."""
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            assert j - i + 1 <= burst + (times[j] - start) // interval, (times[i : j + 1], burst)


def finish_times(redis_server: EmbeddedRedis, deliveries: list[tuple[str, str, int]]) -> dict[str, int]:
    """When each job was finished, on the Redis clock (the dedupe window's record)."""
    client = redis.Redis.from_url(redis_server.url)
    with client.pipeline(transaction=False) as pipe:
        for queue_id, job_id, _ in deliveries:
            pipe.zscore("sharq:{sms}:done", f"{queue_id}:{job_id}")
        scores = pipe.execute()
    return {job_id: int(score) for (_, job_id, _), score in zip(deliveries, scores, strict=True)}


def most_at_once(spans: list[tuple[int, int]]) -> int:
    """The most spans [start, end) open at one moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    most = current = 0
    for _, change in events:
        current += change
        most = max(most, current)
    return most


def test_sigterm_finishes_in_flight_requests(tmp_path) -> None:
    """SIGTERM: a request in flight still gets its answer, the requeue lock is freed,
    and the embedded Redis stops only after the workers."""
    server = ServerProcess(str(tmp_path / "data"), workers=2, env={"SHARQ_JOB_REQUEUE_INTERVAL": "50"}).start()
    body = json.dumps({"job_id": "late", "payload": "x" * 1000, "interval": 0}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/")  # a worker now holds this keep-alive connection
        connection.getresponse().read()
        connection.putrequest("POST", "/enqueue/sms/u1/")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body[:100])  # headers and part of the body: in flight
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: refuses_connections(server.port), what="the workers to stop accepting")
        connection.send(body[100:])
        reply = connection.getresponse()
        assert (reply.status, json.loads(reply.read())) == (201, {"status": "queued"})
    finally:
        connection.close()
    assert server.process.wait(30) == 0
    log = server.log()
    assert log.rindex("Worker exiting") < log.index("embedded Redis stopped")

    # no requeue pass of its own for a while: a lock seen now was left by the first run
    again = ServerProcess(str(tmp_path / "data"), workers=1, env={"SHARQ_JOB_REQUEUE_INTERVAL": "600000"}).start()
    try:
        assert again.call("GET", "/dequeue/sms/")[1]["job_id"] == "late"
        client = redis.Redis(unix_socket_path=os.path.join(str(tmp_path / "data"), "redis.sock"))
        assert client.get("sharq:requeue_lock") is None  # freed by the workers that stopped
        client.close()
    finally:
        assert again.stop() == 0


def test_kill_9_of_master_takes_embedded_redis_down_cleanly(tmp_path) -> None:
    """The embedded Redis is SIGTERMed when its master dies, even by kill -9, so it
    flushes its append-only file and the next start finds every acknowledged job."""
    data_dir = str(tmp_path / "data")
    server = ServerProcess(data_dir, workers=1).start()
    jobs = [(f"q{n % 4}", f"j{n}") for n in range(40)]
    enqueue_batch(server, "sms", jobs)
    server.process.kill()
    server.process.wait()
    wait_for(lambda: not processes_mentioning(data_dir), what="the embedded Redis and the worker to exit")

    again = ServerProcess(data_dir, workers=1).start()
    try:
        lengths = [again.call("GET", f"/metrics/sms/q{n}/")[1]["queue_length"] for n in range(4)]
        assert lengths == [10, 10, 10, 10]
    finally:
        assert again.stop() == 0


def test_unreachable_redis_answers_every_request_within_one_timeout(tmp_path) -> None:
    """Issue 8.3: a Redis whose connects time out; 50 requests at once each get 503
    within about one socket_timeout (they used to queue: the k-th after k timeouts)."""
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(0)
        port = blackhole.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", port))  # fills the backlog: later connects hang
        env = {"SHARQ_REDIS_URL": f"redis://127.0.0.1:{port}/0", "SHARQ_REDIS_SOCKET_TIMEOUT": str(SOCKET_TIMEOUT)}
        server = ServerProcess(str(tmp_path / "sharq"), workers=1, env=env).start()
        try:
            results: list[tuple[int, float, dict]] = []
            body = {"job_id": "j", "payload": 1, "interval": 0}
            threads = [
                threading.Thread(target=lambda n=n: results.append(timed(server, "POST", f"/enqueue/t/q{n}/", body)))
                for n in range(50)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert len(results) == 50
            assert {status for status, _, _ in results} == {503}
            slowest = max(seconds for _, seconds, _ in results)
            print(f"\n50 concurrent requests on an unreachable Redis: slowest 503 after {slowest:.2f} s")
            assert slowest < 2.5 * SOCKET_TIMEOUT
            assert "took effect is unknown" in results[0][2]["message"]
        finally:
            filler.close()
            server.stop()


@pytest.mark.parametrize("refusal", ["READONLY", "OOM"])
def test_redis_refusing_writes_is_503_and_writes_nothing(redis_server: EmbeddedRedis, tmp_path, refusal) -> None:
    """Issue 8.4: a read-only replica after a failover, or maxmemory reached: 503 on
    both paths (redis-py in the test client, the auto-pipeline in the real server)."""
    primary = EmbeddedRedis(str(tmp_path / "primary"), port=free_port(), persistent=False)
    primary.start()
    admin = redis.Redis.from_url(redis_server.url)
    server = sharq_on(redis_server, tmp_path)
    try:
        assert server.call("POST", "/enqueue/sms/u1/", {"job_id": "a", "payload": 1, "interval": 0})[0] == 201
        assert server.call("GET", "/dequeue/sms/")[0] == 200
        before = admin.dbsize()
        if refusal == "READONLY":
            admin.replicaof("127.0.0.1", primary.port)
            admin.config_set("replica-serve-stale-data", "yes")
            wait_for(lambda: admin.info("replication")["master_link_status"] == "up", what="the replica link")
            before = admin.dbsize()
        else:
            admin.config_set("maxmemory", 1)
        calls = [
            ("POST", "/enqueue/sms/u1/", {"job_id": "b", "payload": 1, "interval": 0}),
            ("POST", "/enqueue/sms/", {"jobs": [{"queue_id": "u2", "job_id": "c", "payload": 1, "interval": 0}]}),
        ]  # (a finish frees memory, so maxmemory allows it; a replica's data is its primary's)
        for call in calls:
            status, reply = server.call(*call)
            assert (status, reply.get("reason")) == (503, refusal), (call, reply)
        assert admin.dbsize() == before
        assert "internal error" not in server.log()
    finally:
        server.stop()
        admin.replicaof("NO", "ONE")
        admin.config_set("maxmemory", 0)
        primary.stop()


def test_a_long_poll_answers_503_within_one_timeout_once_the_listener_lost_redis(
    redis_server: EmbeddedRedis, tmp_path
) -> None:
    """Found by review: once the listener's PINGs found a hung Redis, every long poll
    first waited a socket_timeout for the listener to subscribe again, then its own
    take timed out: 503 after two timeouts. A poll no longer waits on a listener
    that lost Redis (it wakes every line when it has subscribed again)."""
    settings = {"SHARQ_REDIS_URL": redis_server.url, "SHARQ_REDIS_SOCKET_TIMEOUT": str(SOCKET_TIMEOUT)}
    server = ServerProcess(str(tmp_path / "sharq"), workers=1, env=settings).start()
    try:
        assert server.call("GET", "/dequeue/sms/?wait=1")[0] == 404  # the listener subscribed
        with frozen(redis_server.process.pid):
            wait_for(lambda: "long-poll listener lost Redis" in server.log(), what="the listener to notice")
            hung = [timed(server, "GET", "/dequeue/sms/?wait=5") for _ in range(2)]
        assert [status for status, _, _ in hung] == [503, 503]
        assert max(seconds for _, seconds, _ in hung) < SOCKET_TIMEOUT + 0.5, hung
        wait_for(lambda: server.call("GET", "/deepstatus/")[0] == 200, what="SharQ to serve again")
        polled: list[tuple[int, float, dict]] = []
        poller = threading.Thread(target=lambda: polled.append(timed(server, "GET", "/dequeue/sms/?wait=10")))
        poller.start()
        assert server.call("POST", "/enqueue/sms/u1/", {"job_id": "j1", "payload": 1, "interval": 0})[0] == 201
        poller.join(15)
        assert polled[0][0] == 200 and polled[0][1] < 5  # woken by the new subscription, not at its deadline
    finally:
        assert server.stop() == 0


def test_a_first_long_poll_answers_503_at_once_when_redis_refuses(redis_server: EmbeddedRedis, tmp_path) -> None:
    """Found by review: the first long poll of a process waited a whole socket_timeout
    for its listener to subscribe, though Redis had refused the listener at once; it
    now goes on as soon as the listener's first try has ended, either way."""
    settings = {"SHARQ_REDIS_URL": redis_server.url, "SHARQ_REDIS_SOCKET_TIMEOUT": str(SOCKET_TIMEOUT)}
    redis_server.stop()  # refused connections
    server = ServerProcess(str(tmp_path / "sharq"), workers=1, env=settings).start()
    try:
        status, seconds, _ = timed(server, "GET", "/dequeue/sms/?wait=5")
        assert status == 503 and seconds < SOCKET_TIMEOUT / 2, seconds
    finally:
        assert server.stop() == 0
