"""`make bench`: SharQ against an empty Flask app on the same gunicorn + gevent settings.

It starts its own Redis, SharQ (`sharq-server`, 1 then 2 workers), an empty Flask
app and a one-PING-per-request app, drives them with wrk (throughput) and hey
(latency at a fixed rate), then a hot type unsharded and over 6 shards on a
3-primary Redis Cluster (`bench/cluster.py`), and prints one table: each figure absolute and as a
ratio to the empty app measured just before it, medians of 3 rounds. With one
worker the servers run on CPU 0 and wrk and Redis on CPU 1, which keeps the
figures steady on a 2-core machine; with two workers the servers may use both.

    python -m bench.run [--rounds 3] [--seconds 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable

import redis

from sharq_core import Config, RedisSettings, SharQ
from sharq_server.embedded import EmbeddedRedis
from tests.support import free_port, http

from . import cluster, commands, costs
from . import workers as workers_bench
from .serve import serving

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
CONNECTIONS = 32
# the settings sharq-server gives gunicorn (sharq_server/cli.py), for the reference apps
GUNICORN = ["-k", "gevent", "--worker-connections", "1000", "--keep-alive", "5", "--timeout", "30"]


def pinned(cpu: str | None, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command] if cpu else command


def wrk(url: str, seconds: float, script: str | None = None, *args: str) -> tuple[float, str]:
    """Successful requests per second (non-2xx excluded) and wrk's whole output."""
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency"]
    if script:
        command += ["-s", os.path.join(HERE, "wrk", script)]
    command += [url, "--", *args] if args else [url]
    out = subprocess.run(pinned("1", command), capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (total - int(failed.group(1) if failed else 0)) / seconds, out


class Bench:
    def __init__(self, seconds: float, redis_url: str) -> None:
        self.seconds = seconds
        self.client = redis.Redis.from_url(redis_url)
        self.engine = SharQ(Config(redis=RedisSettings(url=redis_url, embedded=False), job_expire_interval=600_000))
        self.runs = itertools.count()

    def fresh_type(self) -> str:
        return f"b{next(self.runs)}"

    def fill(self, queue_type: str, queues: int, jobs: int, interval: int = 0) -> None:
        """Queue `jobs` jobs (at least one per queue) over `queues` queues, 100 per
        atomic call: 36-character job_ids and 30-byte payloads, the issue's shape."""
        total = queues * max(1, jobs // queues)
        for start in range(0, total, 100):
            batch = [
                {"queue_id": f"q{n % queues}", "job_id": f"{n:08d}-be35-4368-90fa-7736570dabc4", "payload": "x" * 28,
                 "interval": interval}
                for n in range(start, min(start + 100, total))
            ]  # fmt: skip
            self.engine.enqueue_many(queue_type, batch)

    # -- the measurements: each returns operations (or jobs) per second ------

    def plain(self, url: str) -> float:
        return wrk(url + "/", self.seconds)[0]

    def enqueue(self, url: str) -> float:
        rate = wrk(url, self.seconds, "enqueue.lua", self.fresh_type(), f"{next(self.runs):08d}")[0]
        self.client.flushdb()
        return rate

    def dequeue(self, url: str, queues: int = 10) -> float:
        queue_type = self.fresh_type()
        self.fill(queue_type, queues, max(queues, 15_000))
        rate = wrk(f"{url}/dequeue/{queue_type}/", self.seconds)[0]
        self.client.flushdb()
        return rate

    def cycles(self, url: str) -> float:
        queue_type = self.fresh_type()
        self.fill(queue_type, 10, 10_000)
        out = wrk(url, self.seconds, "cycle.lua", queue_type)[1]
        self.client.flushdb()
        return int(re.search(r"cycles (\d+)", out).group(1)) / self.seconds

    def enqueue_batch(self, url: str) -> float:
        rate = wrk(url, self.seconds, "enqueue.lua", self.fresh_type(), f"{next(self.runs):08d}", "50")[0]
        self.client.flushdb()
        return 50 * rate

    def dequeue_mix(self, url: str, controlled: bool) -> float:
        """Dequeues/s over 1,000 queues after each was served once; with `controlled`
        half of them are paused (250) or at a concurrency cap of 1 (250)."""
        queue_type = self.fresh_type()
        if controlled:
            for n in range(1, 500, 2):
                self.engine.set_limits(queue_type, f"q{n}", max_active=1)
        self.fill(queue_type, 1_000, 30_000)
        for _ in range(10):
            self.engine.take(queue_type, 100)
        if controlled:
            for n in range(0, 500, 2):
                self.engine.pause(queue_type, f"q{n}")
        rate = wrk(f"{url}/dequeue/{queue_type}/", self.seconds)[0]
        self.client.flushdb()
        return rate

    def dequeue_batch(self, url: str) -> float:
        queue_type = self.fresh_type()
        self.fill(queue_type, 100, 60_000)
        rate = wrk(f"{url}/dequeue/{queue_type}/?count=50", self.seconds)[0]
        jobs = 60_000 - sum(self.engine.get_queue_length(queue_type, f"q{n}") for n in range(100))
        self.client.flushdb()
        return jobs / self.seconds if rate else 0.0


def rounds_of(rounds: int, ceiling: Callable[[], float], measures: dict[str, Callable[[], float]]) -> dict:
    """Each measure once per round, right after a run of the empty app, so that the
    ratio compares two runs seconds apart (this machine's speed drifts by tens of
    per cent over minutes). Returns {name: [(absolute, ratio to the empty app), ...]}."""
    seen: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _ in range(rounds):
        for name, measure in measures.items():
            empty = ceiling()
            value = measure()
            seen["empty Flask app, requests/s"].append((empty, 1.0))
            seen[name].append((value, value / empty))
    return seen


def medians(seen: dict) -> dict:
    """{name: (median absolute, median ratio)} of what rounds_of saw."""
    return {
        name: (statistics.median(v for v, _ in pairs), statistics.median(r for _, r in pairs))
        for name, pairs in seen.items()
    }


def paired(seen: dict, top: str, bottom: str) -> float:
    """The median over rounds of top / bottom within one round: two measures a
    few seconds apart, where dividing the medians of ratios to the empty app
    mixes runs minutes apart and swings by 15%."""
    return statistics.median(a / b for (a, _), (b, _) in zip(seen[top], seen[bottom], strict=True))


def latency(url: str, path: str, rate: int = 500, seconds: int = 5) -> tuple[float, float]:
    """p50 and p99 in ms from hey at a fixed total rate (10 connections)."""
    command = ["hey", "-z", f"{seconds}s", "-c", "10", "-q", str(rate // 10), url + path]
    out = subprocess.run(pinned("1", command), capture_output=True, text=True, check=True).stdout
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", out).group(1)) * 1000
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", out).group(1)) * 1000
    return p50, p99


def bytes_per_job(bench: Bench) -> float:
    """Redis memory per queued job: 36-character job_ids, 30-byte payloads, 100 queues."""
    bench.client.flushdb()
    before = bench.client.info("memory")["used_memory"]
    jobs = 100_000
    bench.fill(bench.fresh_type(), 100, jobs)
    used = bench.client.info("memory")["used_memory"] - before
    bench.client.flushdb()
    return used / jobs


def smallest_gap(url: str, bench: Bench) -> tuple[int, int]:
    """8 pollers on 5 queues at a 100 ms interval while wrk loads the server with
    enqueues; returns (smallest gap in ms between two dequeues of one queue, jobs)."""
    queue_type = bench.fresh_type()
    bench.fill(queue_type, 5, 500, interval=100)
    seen: dict[str, list[int]] = defaultdict(list)
    deadline = time.monotonic() + bench.seconds

    def poll() -> None:
        while time.monotonic() < deadline:
            status, body = http("GET", f"{url}/dequeue/{queue_type}/")
            if status == 200:
                seen[body["queue_id"]].append(body["dequeued_at"])

    pollers = [threading.Thread(target=poll) for _ in range(8)]
    load = threading.Thread(target=lambda: bench.enqueue(url))
    for thread in [*pollers, load]:
        thread.start()
    for thread in [*pollers, load]:
        thread.join()
    gaps = [b - a for times in map(sorted, seen.values()) for a, b in itertools.pairwise(times)]
    return min(gaps), sum(map(len, seen.values()))


def run(rounds: int, seconds: float, sharq_bin: str, parts: str, base: str | None) -> list[tuple[str, str, str]]:
    data_dir = tempfile.mkdtemp(prefix="sharq-bench-")
    executable = shutil.which("redis-server") or None
    # no append-only file: a rewrite forked in the middle of a run would skew it
    store = EmbeddedRedis(data_dir, port=free_port(), executable=executable, persistent=False)
    store.start()
    subprocess.run(["taskset", "-pc", "1", str(store.process.pid)], capture_output=True, check=False)
    # SharQ as a user gets it by default: access log on (to stdout, here discarded)
    env = {"SHARQ_REDIS_URL": store.url, "SHARQ_JOB_EXPIRE_INTERVAL": "600000"}
    bench = Bench(seconds, store.url)
    rows: list[tuple[str, str, str]] = []
    try:
        if parts in ("all", "server"):
            for workers, cpu in ((1, "0"), (2, None)):
                rows += measure_workers(bench, env, workers, cpu, rounds, sharq_bin, base)
            rows.append(("Redis bytes per queued job", f"{bytes_per_job(bench):.0f}", "target <= 200"))
        if parts in ("all", "e2e"):
            bench.client.flushdb()
            rows += costs.measure(store.url, store.process.pid, rounds, base and os.path.dirname(base))
            rows += commands.rows(store.url)
        if parts in ("all", "workers"):
            bench.client.flushdb()
            server, url = workers_bench.start_server(store.url, workers=2)
            try:
                rows += [
                    (f"2w {name}", value, note)
                    for name, value, note in workers_bench.measure(url, server.pid, bench.client)
                ]
            finally:
                server.terminate()
                server.wait(30)
    finally:
        store.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    if parts in ("all", "cluster"):
        rows += cluster.rows(cluster.measure(max(rounds, cluster.ROUNDS), cluster.JOBS, base), cluster.JOBS)
    return rows


def measure_workers(
    bench: Bench, env: dict[str, str], workers: int, cpu: str | None, rounds: int, sharq_bin: str, base: str | None
) -> list:
    ports = [free_port() for _ in range(5)]
    gunicorn = [os.path.join(BIN, "gunicorn"), *GUNICORN, "-w", str(workers)]
    sharq = [sharq_bin, "--workers", str(workers), "--port", str(ports[2])]
    with (
        serving(pinned(cpu, [*gunicorn, "-b", f"127.0.0.1:{ports[0]}", "bench.apps:empty"]), env, ports[0]) as empty,
        serving(pinned(cpu, [*gunicorn, "-b", f"127.0.0.1:{ports[1]}", "bench.apps:ping"]), env, ports[1]) as ping,
        serving(pinned(cpu, sharq), env, ports[2]) as url,
        serving(pinned(cpu, [*sharq[:-1], str(ports[3])]), {**env, "SHARQ_ACCESSLOG": "-"}, ports[3]) as logged,
        serving(pinned(cpu, [base or sharq_bin, *sharq[1:-1], str(ports[4])]), env, ports[4]) as before,
    ):
        measures: dict[str, Callable[[], float]] = {
            "one Redis PING per request, requests/s": lambda: bench.plain(ping),
            "enqueue/s": lambda: bench.enqueue(url),
            "dequeue/s (10 ready queues)": lambda: bench.dequeue(url, 10),
            "dequeue+finish cycles/s": lambda: bench.cycles(url),
        }
        if workers == 1:
            measures.update(
                {
                    "dequeue/s at 1,000 ready queues": lambda: bench.dequeue(url, 1_000),
                    "dequeue/s at 10,000 ready queues": lambda: bench.dequeue(url, 10_000),
                    "dequeue/s at 50,000 ready queues": lambda: bench.dequeue(url, 50_000),
                    "dequeue/s, 1,000 queues": lambda: bench.dequeue_mix(url, controlled=False),
                    "dequeue/s, 1,000 queues, half paused or at their cap": lambda: bench.dequeue_mix(url, True),
                    "batch enqueue, jobs/s (50 per call)": lambda: bench.enqueue_batch(url),
                    "batch dequeue, jobs/s (count=50)": lambda: bench.dequeue_batch(url),
                    "enqueue/s, access log on": lambda: bench.enqueue(logged),
                    "dequeue+finish cycles/s, access log on": lambda: bench.cycles(logged),
                }
            )
            if base:
                measures.update(
                    {
                        "before: enqueue/s": lambda: bench.enqueue(before),
                        "before: dequeue/s (10 ready queues)": lambda: bench.dequeue(before, 10),
                        "before: dequeue+finish cycles/s": lambda: bench.cycles(before),
                        "before: dequeue/s at 50,000 ready queues": lambda: bench.dequeue(before, 50_000),
                    }
                )
        seen = rounds_of(rounds, lambda: bench.plain(empty), measures)
        result = medians(seen)
        rows = [(f"{workers}w {name}", f"{value:,.0f}", f"{ratio:.2f}") for name, (value, ratio) in result.items()]
        if workers == 1:
            flat = paired(seen, "dequeue/s at 50,000 ready queues", "dequeue/s (10 ready queues)")
            rows.append(("1w dequeue at 50,000 / at 10 ready queues", f"{flat:.2f}", "target >= 0.9"))
            for name in ("enqueue/s", "dequeue+finish cycles/s"):
                cost = 1 - paired(seen, f"{name}, access log on", name)
                rows.append((f"1w {name}: cost of the access log", f"{cost:.0%}", "target <= 5%"))
            mixed = paired(seen, "dequeue/s, 1,000 queues, half paused or at their cap", "dequeue/s, 1,000 queues")
            rows.append(("1w dequeue, half paused or capped / plain mix", f"{mixed:.2f}", "target >= 0.9"))
            for name in (n for n in result if f"before: {n}" in result):
                now = paired(seen, name, f"before: {name}")
                rows.append((f"1w {name}: now / before", f"{now:.2f}", "target >= 0.95"))
            bench.fill("latency", 10, 20_000)
            for name, base in (("empty app GET /", empty), ("dequeue", url)):
                p50, p99 = latency(base, "/" if base is empty else "/dequeue/latency/")
                rows.append((f"1w {name} latency at 500 req/s", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms", ""))
            bench.client.flushdb()
            gap, jobs = smallest_gap(url, bench)
            rows.append(("1w smallest gap, 100 ms interval, 8 pollers under load", f"{gap} ms ({jobs} jobs)", ">= 100"))
            bench.client.flushdb()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument(
        "--sharq-bin", default=os.path.join(BIN, "sharq-server"), help="the sharq-server to measure (another build)"
    )
    parser.add_argument(
        "--base", help="another build's sharq-server (e.g. a checkout of an older commit) to measure side by side"
    )
    parser.add_argument(
        "--parts", choices=["all", "server", "e2e", "workers", "cluster"], default="all", help="what to measure"
    )
    options = parser.parse_args()
    started = time.monotonic()
    rows = run(options.rounds, options.seconds, options.sharq_bin, options.parts, options.base)
    width = max(len(row[0]) for row in rows)
    print(f"\n| {'measure':<{width}} | absolute | ratio to empty app |")
    print(f"|{'-' * (width + 2)}|---|---|")
    for name, value, ratio in rows:
        print(f"| {name:<{width}} | {value} | {ratio} |")
    print(f"\n{os.cpu_count()} CPUs, {options.rounds} rounds of {options.seconds:g} s, "
          f"{time.monotonic() - started:.0f} s in all")  # fmt: skip


if __name__ == "__main__":
    main()
