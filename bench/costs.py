"""End to end against BullMQ (issues 16 and 29): 20,000 no-op jobs on one Redis,
first enqueue to last ack, in two producer shapes and two worker settings, and
the CPU each process spent per job.

Producer shapes: one batch of 100 in flight at a time, and 4 in flight (SharQ:
4 threads, each `POST /enqueue/<type>/` over its own keep-alive connection;
BullMQ: 4 `addBulk` calls outstanding on its connection).

Worker settings, "defaults": what a user gets giving only the concurrency
(`sharq-server` as it starts, `sharq-worker --concurrency 64`; a BullMQ `Worker`
of concurrency 200, completed jobs kept). "tuned": `sharq-server --workers 2`,
`sharq-worker --concurrency 64 --batch 100`; BullMQ with completed jobs removed,
as SharQ forgets finished ones. SharQ's server keeps its access log on.

For each run, the cores left idle: the share of the machine's CPU time that no
process of the run (Redis, server, worker, producer) used; the machine's own
busy share, which shows whether something else ran meanwhile; and the share of
the run Redis, the one serial stage, spent ready to run but waiting for a core. The cases
alternate within each round; each SharQ figure comes with its ratio to BullMQ's
(and with `--base`, to the other build's) in the same round, medians of rounds.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil
import redis

from sharq_client import Client
from tests.support import free_port, wait_for

from .commands import commandstats
from .cpu import cpu_seconds, wait_time
from .serve import server_process

HERE = os.path.dirname(os.path.abspath(__file__))
BULLMQ = os.path.join(HERE, "bullmq")
JOBS = 20_000
ROLES = ("redis", "server", "worker", "producer")
SHAPES = (1, 4)  # producer batches in flight
SETTINGS = ("defaults", "tuned")
SHARQ_SETTINGS = {
    "defaults": ([], ["--concurrency", "64"]),
    "tuned": (["--workers", "2"], ["--concurrency", "64", "--batch", "100"]),
}
BULLMQ_SETTINGS = {"defaults": "keep", "tuned": "remove"}
BULLMQ_CONCURRENCY = "200"


def family(pid: int) -> list[int]:
    """A process and its children (a gunicorn master and its workers)."""
    return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]


@contextmanager
def sharq_server(bin_dir: str, redis_url: str, options: list[str]) -> Iterator[tuple[str, int]]:
    """`sharq-server` from `bin_dir` with `options`, default settings but the Redis;
    yields its URL and pid."""
    port = free_port()
    command = [os.path.join(bin_dir, "sharq-server"), *options, "--port", str(port)]
    env = {"SHARQ_REDIS_URL": redis_url, "SHARQ_JOB_EXPIRE_INTERVAL": "30000", "SHARQ_ACCESSLOG": "-"}
    with server_process(command, env, port) as served:
        yield served


def _produce(url: str, queue_type: str, jobs: int, in_flight: int, fields: dict | None = None) -> float:
    """Batch-enqueue `jobs` over 100 queues from `in_flight` threads, each with its
    own client (keep-alive connection), each job with `fields` besides its own;
    returns their CPU seconds."""
    starts = iter(range(0, jobs, 100))
    lock = threading.Lock()
    spent: list[float] = []

    def sender() -> None:
        client, started = Client(url), time.thread_time()
        while True:
            with lock:
                start = next(starts, None)
            if start is None:
                break
            batch = [
                {"queue_id": f"q{n % 100}", "job_id": f"j{n}", "payload": n, "interval": 0, **(fields or {})}
                for n in range(start, min(start + 100, jobs))
            ]
            client.enqueue_many(queue_type, batch)
        spent.append(time.thread_time() - started)
        client.close()

    senders = [threading.Thread(target=sender) for _ in range(in_flight)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    if len(spent) != in_flight:
        raise RuntimeError("a producer thread failed")
    return sum(spent)


@contextmanager
def _machine_busy(figures: dict[str, float], redis_pid: int) -> Iterator[None]:
    """Sets figures["machine"]: the share of all cores busy (anyone's work)
    meanwhile; and figures["redis waited"]: the seconds Redis waited for a core."""
    before, waited = psutil.cpu_times(), wait_time(redis_pid)
    yield
    after, waited_after = psutil.cpu_times(), wait_time(redis_pid)
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    total = sum(after) - sum(before)
    figures["machine"] = 1 - idle / total if total else 0.0
    figures["redis waited"] = math.nan if waited is None or waited_after is None else waited_after - waited


def sharq(
    bin_dir: str,
    store_url: str,
    store: redis.Redis,
    redis_pid: int,
    in_flight: int,
    setting: str,
    jobs: int = JOBS,
    fields: dict | None = None,
    prepare: Callable[[Client], None] | None = None,
) -> dict[str, float]:
    """Jobs/s and CPU ms per job by process for SharQ built in `bin_dir`; each job
    with `fields` (a cost, a campaign), the type set up by `prepare` first (quotas)."""
    store.flushdb()
    server_options, worker_options = SHARQ_SETTINGS[setting]
    with sharq_server(bin_dir, store_url, server_options) as (url, server_pid):
        command = [os.path.join(bin_dir, "sharq-worker"), "handlers:noop", "--url", url, "--type", "e2e",
                   *worker_options, "--log-level", "WARNING"]  # fmt: skip
        worker = subprocess.Popen(command, cwd=HERE)
        machine: dict[str, float] = {}
        try:
            if prepare:
                client = Client(url)
                prepare(client)
                client.close()
            time.sleep(1.0)  # the worker is up and parked before the clock starts
            pids = {"redis": [redis_pid], "server": family(server_pid), "worker": [worker.pid]}
            before, calls = {role: cpu_seconds(p) for role, p in pids.items()}, commandstats(store)
            with _machine_busy(machine, redis_pid):
                started = time.perf_counter()
                producer = _produce(url, "e2e", jobs, in_flight, fields)
                wait_for(lambda: not store.exists("sharq:{e2e}:queues"), timeout=120, interval=0.005, what="the jobs")
                elapsed = time.perf_counter() - started
            used = {role: cpu_seconds(p) - before[role] for role, p in pids.items()}
            used["commands"] = (commandstats(store) - calls).total()
        finally:
            worker.terminate()
            worker.wait(30)
    return _figures(jobs, elapsed, {**used, "producer": producer, **machine})


def bullmq_ready() -> bool:
    """BullMQ installed in bench/bullmq (npm install there once; node_modules is not committed)."""
    if os.path.isdir(os.path.join(BULLMQ, "node_modules", "bullmq")):
        return True
    if not shutil.which("npm"):
        return False
    done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=BULLMQ, check=False)
    return done.returncode == 0


def bullmq(
    redis_url: str, store: redis.Redis, redis_pid: int, in_flight: int, setting: str, jobs: int = JOBS
) -> dict[str, float]:
    """Jobs/s and CPU ms per job by process for BullMQ on the same Redis."""
    store.flushdb()
    script = os.path.join(BULLMQ, "e2e.js")
    command = ["node", script, "worker", redis_url, str(jobs), BULLMQ_CONCURRENCY, BULLMQ_SETTINGS[setting]]
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=BULLMQ)
    machine: dict[str, float] = {}
    try:
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError("the BullMQ worker did not start")
        before, calls = cpu_seconds([redis_pid]), commandstats(store)
        with _machine_busy(machine, redis_pid):
            started = time.perf_counter()
            producer = subprocess.run(
                ["node", script, "produce", redis_url, str(jobs), str(in_flight)],
                capture_output=True,
                text=True,
                check=True,
                cwd=BULLMQ,
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
        **machine,
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
    cores = os.cpu_count() or 1
    figures["idle"] = 1 - sum(used[role] for role in ROLES) / elapsed / cores
    figures["machine"] = used["machine"]
    figures["redis waited"] = used["redis waited"] / elapsed
    return figures


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return sorted(runs, key=lambda figures: figures["jobs/s"])[len(runs) // 2]


def rows(label: str, runs: list[dict[str, float]], ratios: dict[str, list[float]]) -> list[tuple[str, str, str]]:
    """Table rows of one case: jobs/s (with its ratios), CPU ms per job, all
    processes and each one, Redis commands per job and the cores left idle."""
    figures = _median(runs)
    split = ", ".join(f"{role} {figures[role]:.3f}" for role in ROLES)
    against = ", ".join(f"{statistics.median(seen):.2f}x {other}" for other, seen in ratios.items())
    idle = statistics.median(run["idle"] for run in runs)
    machine = statistics.median(run["machine"] for run in runs)
    waited = statistics.median(run["redis waited"] for run in runs)
    return [
        (f"{label}: {JOBS:,} no-op jobs end to end", f"{figures['jobs/s']:,.0f} jobs/s", against),
        (f"{label}: CPU ms per job", f"{figures['total']:.3f}", f"{split}; {figures['commands']:.1f} Redis commands"),
        (
            f"{label}: cores left idle",
            f"{idle:.0%}",
            f"machine busy {machine:.0%} (anyone's work); Redis waited for a core {waited:.0%} of the run",
        ),
    ]


def _compared(name: str, systems: dict) -> list[str]:
    """What a case's jobs/s is divided by: SharQ's by every other system's, the
    other build's by BullMQ's."""
    if name == "SharQ":
        return [other for other in systems if other != name]
    return [other for other in systems if other.startswith("BullMQ") and name.startswith("SharQ")]


def measure(store_url: str, redis_pid: int, rounds: int, base_bin: str | None) -> list[tuple[str, str, str]]:
    """The end-to-end rows: every case once a round, the cases alternating; medians."""
    store = redis.Redis.from_url(store_url)
    bin_dir = os.path.dirname(sys.executable)
    systems: dict[str, Callable[[int, str], dict[str, float]]] = {
        "SharQ": lambda shape, setting: sharq(bin_dir, store_url, store, redis_pid, shape, setting)
    }
    if base_bin:
        systems["SharQ before"] = lambda shape, setting: sharq(base_bin, store_url, store, redis_pid, shape, setting)
    if bullmq_ready():
        systems["BullMQ 6.7"] = lambda shape, setting: bullmq(store_url, store, redis_pid, shape, setting)
    cases = [(name, shape, setting) for shape in SHAPES for setting in SETTINGS for name in systems]
    seen: dict[tuple[str, int, str], list[dict[str, float]]] = {case: [] for case in cases}
    for _ in range(rounds):
        for name, shape, setting in cases:
            seen[name, shape, setting].append(systems[name](shape, setting))
    result = []
    for (name, shape, setting), runs in seen.items():
        ratios = {
            other: [run["jobs/s"] / them["jobs/s"] for run, them in zip(runs, seen[other, shape, setting], strict=True)]
            for other in _compared(name, systems)
        }
        result += rows(f"{name}, {shape} batch{'es' if shape > 1 else ''} in flight, {setting}", runs, ratios)
    return result
