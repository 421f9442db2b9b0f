"""One hot queue type on a Redis Cluster of 3 primaries, on 1 shard and on 6 (issue 17).

It starts a local cluster (3 primaries, no replicas; the redis-server on PATH, as
`bench/run.py` uses, else the embedded 6.2 binary) and a two-worker
`sharq-server` pointed at it, then runs the same load on the type unsharded and
spread over 6 shards, alternating round by round: 4 producer threads
batch-enqueue 40,000 no-op jobs (100 a call) over 1,000 tenants while one
`sharq-worker` (ack-and-take batches, concurrency 64) drains them. For each run:
jobs/s, first enqueue to last ack, and each primary's CPU per job (the kernel's
per-thread run time in ns, /proc/<pid>/task/*/schedstat, where psutil counts
10 ms ticks); the busiest primary's is the figure sharding should cut. Each
round gives one ratio, busiest primary on 6 shards / on 1; the median of the
rounds is reported with their range. INFO commandstats says what each primary
ran: script calls and wake-ups (PUBLISH or SPUBLISH) per 100 jobs. The primaries
are emptied before each run.

On 2 cores the absolute rate cannot grow with primaries (they share the cores
with the server, the worker and the producers); the busiest primary's CPU per
job shows what more machines would give.

    python -m bench.cluster [--rounds 5] [--jobs 40000] [--base OLD/.venv/bin/sharq-server]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from sharq_client import Client
from sharq_core.keys import Keys
from sharq_core.shards import Layout
from sharq_server.embedded import redis_executable
from tests.support import LocalCluster, free_port, wait_for

from .cpu import run_time
from .serve import server_process

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
# a type whose 6 shards' hash tags land 2 on each primary (CRC16 slots; most names
# land 3/2/1 or worse, see `placement`); the unsharded type lands on one primary
QUEUE_TYPE = "webhook"
TENANTS = 1_000
PRODUCERS = 4
JOBS = 40_000
ROUNDS = 5
KEYS = Keys("sharq")


SHARDS = (1, 6)  # the hot type unsharded, and spread over 6 shards (2 on each primary)


def label(shards: int) -> str:
    return "hot type on 1 shard" if shards == 1 else f"hot type on {shards} shards"


def redis_binary() -> str:
    """Redis 7 where installed (make bench installs Debian's): what a cluster runs
    today, and its sharded pub/sub keeps each wake-up on its shard's node, where
    6.2's PUBLISH is relayed to every node over the cluster bus."""
    return shutil.which("redis-server") or redis_executable()


def redis_version() -> str:
    """The version of `redis_binary()`, e.g. "7.0.15"."""
    out = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("v=", 1)[1].split()[0]


def owned_slots(port: int) -> set[int]:
    """The slots a primary serves (from CLUSTER NODES, which Redis 6.2 has)."""
    owned: set[int] = set()
    for line in redis.Redis(port=port, decode_responses=True).execute_command("CLUSTER", "NODES").splitlines():
        fields = line.split()
        if "myself" in fields[2]:
            for span in fields[8:]:
                low, _, high = span.partition("-")
                owned.update(range(int(low), int(high or low) + 1))
    return owned


def shards_per_primary(ports: list[int], layout: Layout) -> list[int]:
    """How many of the layout's shards each primary holds, in node order."""
    slots = [key_slot(KEYS.base(name).encode()) for name in layout.names()]
    return [sum(slot in owned for slot in slots) for owned in map(owned_slots, ports)]


def produce(url: str, jobs: int, threads: int = PRODUCERS) -> None:
    """Batch-enqueue `jobs` jobs, 100 a call, over TENANTS queues from `threads` threads."""

    def part(first: int) -> None:
        client = Client(url)
        for start in range(first * 100, jobs, threads * 100):
            batch = [
                {"queue_id": f"t{n % TENANTS}", "job_id": f"j{n}", "payload": n, "interval": 0}
                for n in range(start, min(start + 100, jobs))
            ]
            results = client.enqueue_many(QUEUE_TYPE, batch)
            if any(result["status"] != "queued" for result in results):
                raise RuntimeError(f"an enqueue failed: {results}")
        client.close()

    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(part, n) for n in range(threads)]:
            done.result()


def drained(store: RedisCluster, layout: Layout) -> bool:
    """True once no shard of the type holds a queued or active job."""
    return not any(store.exists(KEYS.queues(name)) for name in layout.names())


@contextmanager
def worker(url: str) -> Iterator[None]:
    """One `sharq-worker` on the type (ack-and-take batches of 100, concurrency 64)."""
    command = [os.path.join(BIN, "sharq-worker"), "handlers:noop", "--url", url, "--type", QUEUE_TYPE,
               "--concurrency", "64", "--batch", "100", "--log-level", "WARNING"]  # fmt: skip
    process = subprocess.Popen(command, cwd=HERE)
    try:
        time.sleep(1.0)  # the worker is up and parked before the clock starts
        yield
    finally:
        process.terminate()
        process.wait(30)


def run_case(url: str, cluster: LocalCluster, shards: int, jobs: int) -> dict:
    """One run of `jobs` jobs end to end on the type spread over `shards`, on
    primaries emptied first."""
    layout = Layout(QUEUE_TYPE, shards)
    ports = [node.port for node in cluster.nodes]
    pids = [node.process.pid for node in cluster.nodes]
    for port in ports:
        primary = redis.Redis(port=port)
        primary.flushall()
        primary.config_resetstat()
    Client(url).set_type_settings(QUEUE_TYPE, shards)
    store = RedisCluster.from_url(cluster.url)
    with worker(url):
        before = [run_time(pid) for pid in pids]
        started = time.perf_counter()
        produce(url, jobs)
        # every 20 ms: the checks are EXISTS calls on the primaries being measured
        wait_for(lambda: drained(store, layout), timeout=120, interval=0.02, what="the jobs to be done")
        elapsed = time.perf_counter() - started
        used = [run_time(pid) - start for pid, start in zip(pids, before, strict=True)]
        stats = [redis.Redis(port=port).info("commandstats") for port in ports]
    store.close()
    return {
        "placement": shards_per_primary(ports, layout),
        "jobs/s": jobs / elapsed,
        "us/job": [1e6 * seconds / jobs for seconds in used],
        "scripts/job": [_calls(s, "evalsha") / jobs for s in stats],
        "publish/job": [(_calls(s, "publish") + _calls(s, "spublish")) / jobs for s in stats],
    }


def _calls(stats: dict[str, dict[str, float]], command: str) -> float:
    return stats.get(f"cmdstat_{command}", {}).get("calls", 0)


@dataclass
class Result:
    """Every run of each shard count, in round order."""

    runs: dict[int, list[dict]]

    def median(self, shards: int) -> dict:
        """The median run of a shard count, by its busiest primary's CPU per job."""
        runs = sorted(self.runs[shards], key=lambda run: max(run["us/job"]))
        return runs[len(runs) // 2]

    def ratios(self) -> list[float]:
        """Each round's busiest primary's CPU per job, on 6 shards / on 1, sorted."""
        pairs = zip(self.runs[SHARDS[1]], self.runs[SHARDS[0]], strict=True)
        return sorted(max(sharded["us/job"]) / max(whole["us/job"]) for sharded, whole in pairs)

    def ratio(self) -> str:
        """The median of the rounds' ratios and their range, e.g. "0.40 (0.37-0.44)"."""
        ratios = self.ratios()
        return f"{ratios[len(ratios) // 2]:.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"


def measure(rounds: int, jobs: int, base: str | None = None) -> dict[str, Result]:
    """Every shard count once a round, `rounds` rounds, on one cluster; with `base`
    (another build's sharq-server) that build's server too, round by round."""
    data_dir = tempfile.mkdtemp(prefix="sharq-cluster-bench-")
    cluster = LocalCluster(data_dir, redis_binary()).start()
    env = {
        "SHARQ_REDIS_URL": cluster.url,
        "SHARQ_REDIS_CLUSTERED": "1",
        "SHARQ_JOB_EXPIRE_INTERVAL": "30000",
        "SHARQ_ACCESSLOG": "off",
    }
    builds = {"this build": os.path.join(BIN, "sharq-server"), **({"base": base} if base else {})}
    results = {build: Result({shards: [] for shards in SHARDS}) for build in builds}
    try:
        with ExitStack() as servers:
            urls = {}
            for build, binary in builds.items():
                port = free_port()
                urls[build], _ = servers.enter_context(
                    server_process([binary, "--workers", "2", "--port", str(port)], env, port)
                )
            for _ in range(rounds):
                for build, url in urls.items():
                    for shards in SHARDS:
                        results[build].runs[shards].append(run_case(url, cluster, shards, jobs))
    finally:
        cluster.stop()  # each node by its pid
        shutil.rmtree(data_dir, ignore_errors=True)
    return results


def rows(results: dict[str, Result], jobs: int) -> list[tuple[str, str, str]]:
    """The cluster rows of `make bench`'s table."""
    out = []
    for build, result in results.items():
        prefix = "cluster" if build == "this build" else f"cluster ({build})"
        for shards in SHARDS:
            run, name = result.median(shards), f"{prefix}, {label(shards)}"
            shares = "/".join(f"{us / sum(run['us/job']):.2f}" for us in run["us/job"])
            out.append((f"{name}: {jobs:,} jobs end to end", f"{run['jobs/s']:,.0f} jobs/s", ""))
            out.append((f"{name}: busiest primary's CPU per job", f"{max(run['us/job']):.1f} µs", f"shares {shares}"))
        out.append((f"{prefix}, busiest primary per job, 6 shards / 1", result.ratio(),
                    f"target <= 0.45, Redis {redis_version()}"))  # fmt: skip
    return out


def table(results: dict[str, Result], jobs: int) -> str:
    """The table `python -m bench.cluster` prints: one line per build and shard count."""
    lines = [
        f"| {jobs:,} jobs, 1,000 tenants | jobs/s | Redis CPU µs per job: busiest primary | all primaries "
        "| each primary (shards on it) | script calls per 100 jobs, each primary "
        "| PUBLISH/SPUBLISH per 100 jobs, each primary |",
        "|---|---|---|---|---|---|---|",
    ]
    for build, result in results.items():
        for shards in SHARDS:
            run = result.median(shards)
            name = label(shards) if len(results) == 1 else f"{build}: {label(shards)}"
            each = ", ".join(f"{us:.1f} ({n})" for us, n in zip(run["us/job"], run["placement"], strict=True))
            scripts = " / ".join(f"{100 * n:.1f}" for n in run["scripts/job"])
            published = " / ".join(f"{100 * n:.1f}" for n in run["publish/job"])
            lines.append(
                f"| {name} | {run['jobs/s']:,.0f} | {max(run['us/job']):.1f} | {sum(run['us/job']):.1f} "
                f"| {each} | {scripts} | {published} |"
            )
    lines.append("")
    for build, result in results.items():
        lines.append(f"{build}: busiest primary's CPU per job, 6 shards / 1, median of the rounds (range): "
                     f"{result.ratio()} (target <= 0.45, ideal 0.33)")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--jobs", type=int, default=JOBS)
    parser.add_argument("--base", help="another build's sharq-server (an older checkout) to measure side by side")
    options = parser.parse_args()
    started = time.monotonic()
    results = measure(options.rounds, options.jobs, options.base)
    print(table(results, options.jobs))
    print(f"Redis {redis_version()}, {os.cpu_count()} CPUs, {options.rounds} rounds, "
          f"{time.monotonic() - started:.0f} s in all")  # fmt: skip


if __name__ == "__main__":
    main()
