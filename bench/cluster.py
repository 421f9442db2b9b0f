"""One hot queue type on a Redis Cluster of 3 primaries, on 1 shard and on 6 (issue 17).

It starts a local cluster (3 primaries, no replicas; the redis-server on PATH, as
`bench/run.py` uses, else the embedded 6.2 binary) and a
two-worker `sharq-server` pointed at it, then runs the same load on the type
unsharded and spread over 6 shards: 4 producer threads batch-enqueue 20,000
no-op jobs (100 a call) over 1,000 tenants while one `sharq-worker` (ack-and-take
batches, concurrency 64) drains them. For each run: jobs/s, first enqueue to
last ack, and each primary's CPU (psutil, before and after) per job; the busiest
primary's is the figure that sharding should cut. INFO commandstats says what
each primary ran: script calls and wake-ups (PUBLISH or SPUBLISH) per 100 jobs. Each case runs twice:
with Redis's default `hash-max-ziplist-entries` (512) and with 64, which keeps a
shard's per-queue hashes out of the flat encoding every read scans. The primaries
are emptied before each run.

On 2 cores the absolute rate cannot grow with primaries (they share the cores
with the server and the worker); the busiest primary's CPU per job shows what
more machines would give.

    python -m bench.cluster [--rounds 3] [--jobs 20000]
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
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from sharq_client import Client
from sharq_core.keys import Keys
from sharq_core.shards import Layout
from sharq_server.embedded import redis_executable
from tests.support import LocalCluster, free_port, wait_for

from .costs import cpu_seconds
from .serve import server_process

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
# a type whose 6 shards' hash tags land 2 on each primary (CRC16 slots; most names
# land 3/2/1 or worse, see `placement`); the unsharded type lands on one primary
QUEUE_TYPE = "webhook"
TENANTS = 1_000
PRODUCERS = 4
JOBS = 20_000
KEYS = Keys("sharq")


@dataclass(frozen=True)
class Case:
    """A shard count, and Redis's `hash-max-ziplist-entries` (512 is the default of
    6.2 and 7; below it a hash is one flat list that every read scans)."""

    shards: int
    hash_entries: int = 512

    @property
    def label(self) -> str:
        spread = "1 shard" if self.shards == 1 else f"{self.shards} shards"
        return f"hot type on {spread}, hash entries {self.hash_entries}"


CASES = (Case(1), Case(6), Case(1, 64), Case(6, 64))


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


def run_case(url: str, cluster: LocalCluster, case: Case, jobs: int) -> dict:
    """One run of `jobs` jobs end to end on the type as `case` spreads it, on
    primaries emptied first (so every hash starts in the encoding `case` gives it)."""
    layout = Layout(QUEUE_TYPE, case.shards)
    ports = [node.port for node in cluster.nodes]
    pids = [node.process.pid for node in cluster.nodes]
    for port in ports:
        primary = redis.Redis(port=port)
        primary.flushall()
        primary.config_set("hash-max-ziplist-entries", case.hash_entries)
        primary.config_resetstat()
    Client(url).set_type_settings(QUEUE_TYPE, case.shards)
    store = RedisCluster.from_url(cluster.url)
    with worker(url):
        before = [cpu_seconds([pid]) for pid in pids]
        started = time.perf_counter()
        produce(url, jobs)
        # every 20 ms: the checks are EXISTS calls on the primaries being measured
        wait_for(lambda: drained(store, layout), timeout=120, interval=0.02, what="the jobs to be done")
        elapsed = time.perf_counter() - started
        used = [cpu_seconds([pid]) - start for pid, start in zip(pids, before, strict=True)]
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


def measure(rounds: int, jobs: int) -> dict[Case, dict]:
    """The median run (by the busiest primary's CPU per job) of each case, the
    cases alternating round by round."""
    data_dir = tempfile.mkdtemp(prefix="sharq-cluster-bench-")
    cluster = LocalCluster(data_dir, redis_binary()).start()
    port = free_port()
    env = {
        "SHARQ_REDIS_URL": cluster.url,
        "SHARQ_REDIS_CLUSTERED": "1",
        "SHARQ_JOB_EXPIRE_INTERVAL": "30000",
        "SHARQ_ACCESSLOG": "off",
    }
    command = [os.path.join(BIN, "sharq-server"), "--workers", "2", "--port", str(port)]
    seen: dict[Case, list[dict]] = {case: [] for case in CASES}
    try:
        with server_process(command, env, port) as (url, _):
            for _ in range(rounds):
                for case in CASES:
                    seen[case].append(run_case(url, cluster, case, jobs))
    finally:
        cluster.stop()  # each node by its pid
        shutil.rmtree(data_dir, ignore_errors=True)
    return {case: sorted(runs, key=lambda r: max(r["us/job"]))[len(runs) // 2] for case, runs in seen.items()}


def ratios(result: dict[Case, dict]) -> dict[int, float]:
    """Busiest primary's CPU per job on 6 shards / on 1, for each hash setting."""
    busiest = {case: max(run["us/job"]) for case, run in result.items()}
    return {
        entries: busiest[Case(6, entries)] / busiest[Case(1, entries)]
        for entries in sorted({case.hash_entries for case in result}, reverse=True)
    }


def rows(result: dict[Case, dict], jobs: int) -> list[tuple[str, str, str]]:
    """The cluster rows of `make bench`'s table."""
    out = []
    for case, run in result.items():
        label = f"cluster, {case.label}"
        shares = "/".join(f"{us / sum(run['us/job']):.2f}" for us in run["us/job"])
        out.append((f"{label}: {jobs:,} jobs end to end", f"{run['jobs/s']:,.0f} jobs/s", ""))
        out.append((f"{label}: busiest primary's CPU per job", f"{max(run['us/job']):.1f} µs", f"shares {shares}"))
    for entries, ratio in ratios(result).items():
        out.append((f"cluster, busiest primary per job, 6 shards / 1 (hash entries {entries})", f"{ratio:.2f}",
                    f"target <= 0.45, Redis {redis_version()}"))  # fmt: skip
    return out


def table(result: dict[Case, dict], jobs: int) -> str:
    """The table `python -m bench.cluster` prints: one line per case."""
    lines = [
        f"| {jobs:,} jobs, 1,000 tenants | jobs/s | Redis CPU µs per job: busiest primary | all primaries "
        "| each primary (shards on it) | script calls per 100 jobs, each primary "
        "| PUBLISH/SPUBLISH per 100 jobs, each primary |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, run in result.items():
        each = ", ".join(f"{us:.1f} ({n})" for us, n in zip(run["us/job"], run["placement"], strict=True))
        scripts = " / ".join(f"{100 * n:.1f}" for n in run["scripts/job"])
        published = " / ".join(f"{100 * n:.1f}" for n in run["publish/job"])
        lines.append(
            f"| {case.label} | {run['jobs/s']:,.0f} | {max(run['us/job']):.1f} | {sum(run['us/job']):.1f} | {each} "
            f"| {scripts} | {published} |"
        )
    lines.append("")
    for entries, ratio in ratios(result).items():
        lines.append(f"busiest primary's CPU per job, 6 shards / 1, hash-max-ziplist-entries {entries}: "
                     f"{ratio:.2f} (target <= 0.45, ideal 0.33)")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=JOBS)
    options = parser.parse_args()
    started = time.monotonic()
    result = measure(options.rounds, options.jobs)
    print(table(result, options.jobs))
    print(f"Redis {redis_version()}, {os.cpu_count()} CPUs, {options.rounds} rounds, medians, "
          f"{time.monotonic() - started:.0f} s in all")  # fmt: skip


if __name__ == "__main__":
    main()
