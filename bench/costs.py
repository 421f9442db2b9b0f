"""End to end against BullMQ (issue 16): 20,000 no-op jobs on one Redis, and the
CPU each process spent per job.

SharQ: batch enqueue (100 a call, from this process) and one `sharq-worker`
(ack-and-take batches, concurrency 64) on a one-worker `sharq-server` in its
default configuration (access log on). BullMQ: `addBulk` (100 a call) from one
node process and one `Worker` (concurrency 200, completed jobs removed, as
SharQ forgets finished ones) in another. Both from first enqueue to last ack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil
import redis

from sharq_client import Client
from tests.support import free_port, wait_for

from .commands import commandstats
from .cpu import cpu_seconds
from .serve import server_process

HERE = os.path.dirname(os.path.abspath(__file__))
BULLMQ = os.path.join(HERE, "bullmq")
JOBS = 20_000
ROLES = ("redis", "server", "worker", "producer")


def family(pid: int) -> list[int]:
    """A process and its children (a gunicorn master and its workers)."""
    return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]


@contextmanager
def sharq_server(bin_dir: str, redis_url: str) -> Iterator[tuple[str, int]]:
    """A one-worker `sharq-server` from `bin_dir`, default settings but the Redis;
    yields its URL and pid."""
    port = free_port()
    command = [os.path.join(bin_dir, "sharq-server"), "--workers", "1", "--port", str(port)]
    env = {"SHARQ_REDIS_URL": redis_url, "SHARQ_JOB_EXPIRE_INTERVAL": "30000", "SHARQ_ACCESSLOG": "-"}
    with server_process(command, env, port) as served:
        yield served


def _produce(url: str, queue_type: str, jobs: int) -> float:
    """Batch-enqueue `jobs` over 100 queues; returns this thread's CPU seconds."""
    client, started = Client(url), time.thread_time()
    for start in range(0, jobs, 100):
        batch = [
            {"queue_id": f"q{n % 100}", "job_id": f"j{n}", "payload": n, "interval": 0}
            for n in range(start, min(start + 100, jobs))
        ]
        client.enqueue_many(queue_type, batch)
    return time.thread_time() - started


def sharq(bin_dir: str, store_url: str, store: redis.Redis, redis_pid: int, jobs: int = JOBS) -> dict[str, float]:
    """Jobs/s and CPU ms per job by process for SharQ built in `bin_dir`."""
    store.flushdb()
    with sharq_server(bin_dir, store_url) as (url, server_pid):
        command = [os.path.join(bin_dir, "sharq-worker"), "handlers:noop", "--url", url, "--type", "e2e",
                   "--concurrency", "64", "--batch", "100", "--log-level", "WARNING"]  # fmt: skip
        worker = subprocess.Popen(command, cwd=HERE)
        try:
            time.sleep(1.0)  # the worker is up and parked before the clock starts
            pids = {"redis": [redis_pid], "server": family(server_pid), "worker": [worker.pid]}
            before, calls = {role: cpu_seconds(p) for role, p in pids.items()}, commandstats(store)
            started = time.perf_counter()
            producer = _produce(url, "e2e", jobs)
            wait_for(lambda: not store.exists("sharq:{e2e}:queues"), timeout=120, interval=0.005, what="the jobs")
            elapsed = time.perf_counter() - started
            used = {role: cpu_seconds(p) - before[role] for role, p in pids.items()}
            used["commands"] = (commandstats(store) - calls).total()
        finally:
            worker.terminate()
            worker.wait(30)
    return _figures(jobs, elapsed, {**used, "producer": producer})


def bullmq_ready() -> bool:
    """BullMQ installed in bench/bullmq (npm install there once; node_modules is not committed)."""
    if os.path.isdir(os.path.join(BULLMQ, "node_modules", "bullmq")):
        return True
    if not shutil.which("npm"):
        return False
    done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=BULLMQ, check=False)
    return done.returncode == 0


def bullmq(redis_url: str, store: redis.Redis, redis_pid: int, jobs: int = JOBS) -> dict[str, float]:
    """Jobs/s and CPU ms per job by process for BullMQ on the same Redis."""
    store.flushdb()
    script = os.path.join(BULLMQ, "e2e.js")
    worker = subprocess.Popen(
        ["node", script, "worker", redis_url, str(jobs), "200"], stdout=subprocess.PIPE, text=True, cwd=BULLMQ
    )
    try:
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError("the BullMQ worker did not start")
        before, calls = cpu_seconds([redis_pid]), commandstats(store)
        started = time.perf_counter()
        producer = subprocess.run(
            ["node", script, "produce", redis_url, str(jobs)], capture_output=True, text=True, check=True, cwd=BULLMQ
        )
        last = worker.stdout.readline()
        elapsed = time.perf_counter() - started
        commands = (commandstats(store) - calls).total()
        worker.wait(60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(30)
    used = {
        "redis": cpu_seconds([redis_pid]) - before,
        "worker": _reported_cpu(last),
        "producer": _reported_cpu(producer.stdout.strip().splitlines()[-1]),
        "server": 0.0,
        "commands": commands,
    }
    store.flushdb()
    return _figures(jobs, elapsed, used)


def _reported_cpu(line: str) -> float:
    """The "cpu <seconds>" line a node process printed last (its whole life: the
    start-up costs are counted against it, a few ms per thousand jobs)."""
    name, value = line.split()
    if name != "cpu":
        raise RuntimeError(f"unexpected BullMQ output {line!r}")
    return float(value)


def _figures(jobs: int, elapsed: float, used: dict[str, float]) -> dict[str, float]:
    figures = {"jobs/s": jobs / elapsed, **{role: 1000 * used[role] / jobs for role in ROLES}}
    figures["total"] = sum(figures[role] for role in ROLES)
    figures["commands"] = used["commands"] / jobs  # INFO itself included: a handful in all
    return figures


def rows(label: str, figures: dict[str, float]) -> list[tuple[str, str, str]]:
    """Table rows: jobs/s, then CPU ms per job, all processes and each one."""
    split = ", ".join(f"{role} {figures[role]:.3f}" for role in ROLES)
    return [
        (f"{label}: 20,000 no-op jobs end to end", f"{figures['jobs/s']:,.0f} jobs/s", ""),
        (f"{label}: CPU ms per job", f"{figures['total']:.3f}", split),
        (f"{label}: Redis commands per job, end to end", f"{figures['commands']:.1f}", ""),
    ]


def measure(store_url: str, redis_pid: int, rounds: int, base_bin: str | None) -> list[tuple[str, str, str]]:
    """The end-to-end rows, medians of `rounds` runs alternating the cases."""
    store = redis.Redis.from_url(store_url)
    bin_dir = os.path.dirname(sys.executable)
    cases: dict[str, Callable[[], dict[str, float]]] = {"SharQ": lambda: sharq(bin_dir, store_url, store, redis_pid)}
    if base_bin:
        cases["SharQ before"] = lambda: sharq(base_bin, store_url, store, redis_pid)
    if bullmq_ready():
        cases["BullMQ 6.7"] = lambda: bullmq(store_url, store, redis_pid)
    seen: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            seen[name].append(case())
    result = []
    for name, runs in seen.items():
        middle = sorted(runs, key=lambda figures: figures["jobs/s"])[len(runs) // 2]
        result += rows(name, middle)
    return result
