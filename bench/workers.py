"""The worker side of `make bench` (issue 9), measured side by side in one run.

- pickup latency into an idle system: a job enqueued while a long poll is
  parked, against the README's old polling worker (sleep `retry_after_ms`, at
  most 1 s);
- the CPU that 1,000 parked long polls cost the server;
- end to end, 20,000 no-op jobs from first enqueue to last ack: `sharq-worker`
  (ack-and-take batches) against the old request pattern (batch enqueue,
  ``?count=50``, one finish request per job);
- the share of the allowed rate achieved when 1,000 queues at 1 job/s are
  drained by long-polling workers.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import redis
import urllib3

from sharq_client import Client, Worker
from tests.support import free_port, http, wait_for

from .cpu import cpu_seconds

BIN = os.path.dirname(sys.executable)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def pickup_latency(url: str, samples: int = 200) -> tuple[float, float, float]:
    """p50, p99 (ms) from the enqueue call to a long-polling worker holding the job
    (the enqueue's own HTTP round trip included), and p50 from the enqueue's answer."""
    client, producer = Client(url), Client(url)
    latencies: list[float] = []
    after_answer: list[float] = []
    got: list[tuple[list, float]] = []

    def poll() -> None:
        got.append((client.dequeue("pickup", wait=5), time.perf_counter()))

    for n in range(samples):
        got.clear()
        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.05)  # the system is idle and the poll parked when the job comes
        sent = time.perf_counter()
        producer.enqueue("pickup", f"q{n % 10}", f"j{n}", 1, interval=0)
        answered = time.perf_counter()
        poller.join()
        jobs, received = got[0]
        latencies.append((received - sent) * 1000)
        after_answer.append((received - answered) * 1000)
        client.finish("pickup", jobs[0].queue_id, jobs[0].job_id, jobs[0].receipt)
    return (*_percentiles(latencies), statistics.median(after_answer))


def polling_pickup_latency(url: str, samples: int = 20) -> tuple[float, float]:
    """The same for the README's old worker: dequeue, and on 404 sleep
    min(retry_after_ms or 1000, 1000) ms."""
    pool, latencies = urllib3.PoolManager(retries=False), []
    stop = threading.Event()
    got: dict[str, float] = {}

    def old_worker() -> None:
        while not stop.is_set():
            reply = pool.request("GET", f"{url}/dequeue/pickup-old/", timeout=5)
            if reply.status == 404:
                time.sleep(min(reply.json()["retry_after_ms"] or 1000, 1000) / 1000)
                continue
            got[reply.json()["job_id"]] = time.perf_counter()

    thread = threading.Thread(target=old_worker)
    thread.start()
    producer = Client(url)
    for n in range(samples):
        time.sleep(0.137)  # enqueue at arbitrary moments of the poller's sleep
        sent = time.perf_counter()
        producer.enqueue("pickup-old", "q", f"j{n}", 1, interval=0)
        wait_for(lambda n=n: f"j{n}" in got, what="the polling worker")
        latencies.append((got[f"j{n}"] - sent) * 1000)
    stop.set()
    thread.join()
    return _percentiles(latencies)


def parked_cpu(url: str, pids: list[int], parked: int = 1000, seconds: float = 5.0) -> float:
    """Per cent of one core the server processes use while `parked` long polls wait."""
    sockets = []
    for n in range(parked):
        sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        sock.sendall(f"GET /dequeue/idle{n % 10}/?wait=30 HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        sockets.append(sock)
    try:
        time.sleep(2.0)  # let them all arrive and park before measuring
        before, started = cpu_seconds(pids), time.monotonic()
        time.sleep(seconds)
        used = cpu_seconds(pids) - before
        return 100 * used / (time.monotonic() - started)
    finally:
        for sock in sockets:
            sock.close()


def server_pids(master: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    return [master, *map(int, children)]


def _produce(url: str, queue_type: str, jobs: int, queues: int = 100, interval: int = 0) -> None:
    client = Client(url)
    for start in range(0, jobs, 100):
        batch = [
            {"queue_id": f"q{n % queues}", "job_id": f"j{n}", "payload": n, "interval": interval}
            for n in range(start, min(start + 100, jobs))
        ]
        client.enqueue_many(queue_type, batch)


def _drained(store: redis.Redis, queue_type: str) -> Callable[[], bool]:
    """True once the type holds no queued or active job."""
    return lambda: not store.exists(f"sharq:{{{queue_type}}}:queues")


def end_to_end_worker(url: str, store: redis.Redis, jobs: int = 20_000, concurrency: int = 8) -> float:
    """Jobs/s, first enqueue to last ack, with `sharq-worker` (ack-and-take batches)."""
    handlers = os.path.join(os.path.dirname(os.path.abspath(__file__)))
    command = [os.path.join(BIN, "sharq-worker"), "handlers:noop", "--url", url, "--type", "e2e-new",
               "--concurrency", str(concurrency), "--batch", "100", "--log-level", "WARNING"]  # fmt: skip
    worker = subprocess.Popen(command, cwd=handlers)
    try:
        time.sleep(1.0)  # the worker is up and parked before the clock starts
        started = time.perf_counter()
        _produce(url, "e2e-new", jobs)
        wait_for(_drained(store, "e2e-new"), timeout=120, interval=0.005, what="the jobs to be done")
        return jobs / (time.perf_counter() - started)
    finally:
        worker.terminate()
        worker.wait(30)


def end_to_end_old(url: str, store: redis.Redis, jobs: int = 20_000, threads: int = 8) -> float:
    """Jobs/s with the old pattern: ?count=50 dequeues and one finish per job (on
    the same HTTP library as sharq_client, so only the request pattern differs)."""
    stop = threading.Event()

    def old_worker() -> None:
        pool = urllib3.PoolManager(retries=False)
        while not stop.is_set():
            reply = pool.request("GET", f"{url}/dequeue/e2e-old/?count=50", timeout=5)
            if reply.status == 404:
                time.sleep(0.005)
                continue
            for job in reply.json()["jobs"]:
                pool.request("POST", f"{url}/finish/e2e-old/{job['queue_id']}/{job['job_id']}/", timeout=5)

    workers = [threading.Thread(target=old_worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    started = time.perf_counter()
    _produce(url, "e2e-old", jobs)
    wait_for(_drained(store, "e2e-old"), timeout=300, interval=0.005, what="the jobs to be done")
    rate = jobs / (time.perf_counter() - started)
    stop.set()
    for thread in workers:
        thread.join()
    return rate


def rate_share(url: str, queues: int = 1000, seconds: float = 10.0) -> float:
    """Dequeues achieved over `seconds` / the most the rate allows, 1,000 queues at
    one job per second each, drained by long-polling workers."""
    _produce(url, "rated", queues * (int(seconds) + 3), queues=queues, interval=1000)
    times: list[int] = []
    lock = threading.Lock()

    def record(job) -> None:
        with lock:
            times.append(job.dequeued_at)

    worker = Worker(Client(url), "rated", record, concurrency=16, batch=100, wait=5, grace=5)
    worker.start()
    time.sleep(seconds + 2)
    worker.join()
    first = min(times)
    window = [t for t in times if first <= t < first + seconds * 1000]
    return len(window) / (queues * seconds)  # the first second's burst counts in the window


def measure(url: str, master_pid: int, store: redis.Redis) -> list[tuple[str, str, str]]:
    """The worker rows of the bench table."""
    rows = []
    p50, p99, after = pickup_latency(url)
    old50, old99 = polling_pickup_latency(url)
    rows.append(("pickup latency, long poll", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms", "target p50 <= 3, p99 <= 10"))
    rows.append(("pickup after the enqueue's own answer, long poll", f"p50 {after:.1f} ms", ""))
    rows.append(("pickup latency, README polling worker", f"p50 {old50:.0f} ms, p99 {old99:.0f} ms", ""))
    cpu = parked_cpu(url, server_pids(master_pid))
    rows.append(("server CPU with 1,000 parked long polls", f"{cpu:.1f}% of a core", "target < 5%"))
    new = end_to_end_worker(url, store)
    old = end_to_end_old(url, store)
    rows.append(("20,000 no-op jobs end to end, sharq-worker", f"{new:,.0f} jobs/s", f"{new / old:.1f}x old"))
    rows.append(("20,000 no-op jobs end to end, old pattern", f"{old:,.0f} jobs/s", "target new >= 3x"))
    share = rate_share(url)
    rows.append(("share of allowed rate, 1,000 queues at 1 job/s", f"{share:.3f}", "target >= 0.99"))
    return rows


def start_server(redis_url: str, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [os.path.join(BIN, "sharq-server"), "--workers", str(workers), "--port", str(port)]
    env = {**os.environ, "SHARQ_REDIS_URL": redis_url, "SHARQ_JOB_EXPIRE_INTERVAL": "30000", "SHARQ_ACCESSLOG": "off"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(url), timeout=30, what=url)
    return process, url


def _answers(url: str) -> bool:
    try:
        return http("GET", url + "/", timeout=1)[0] == 200
    except OSError:
        return False
