"""Single enqueue, dequeue and finish calls on the engine (issue 26): Redis commands
and EVALSHA µs per call, beside 1,000 other ready queues, on a redis-server of its own.

    python -m bench.single_calls [ttl] [cost] [quota] [weight] [priority] [ready50k]

With no mode the jobs use no per-job feature. Each mode turns one on, and modes combine:
    ttl       every job carries a deadline (ttl_ms); also times one dequeue that
              meets 10,000 expired jobs at a queue's head
    cost      every job carries cost=3
    quota     the measured queues and the 1,000 others have a day quota (set_limits)
              above anything the run takes, so nothing is held
    weight    the measured queues have weight 4 (set_limits)
    priority  every job carries priority=5
    ready50k  50,000 other ready queues instead of 1,000 (queued 100 a call), so the
              dequeues are takes beside 50,000 ready queues (opt-in: it takes longer)

Run it from two checkouts (PYTHONPATH=<checkout>) one after the other, twice, to
compare a change with the code before it: commands per call are exact, µs are noisy.
A mode needs a checkout that has its feature.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections import Counter
from typing import Any

import redis

from sharq_core import Config, SharQ
from sharq_server.embedded import EmbeddedRedis, redis_executable
from tests.support import free_port

CALLS = 2000
MEASURED = 50  # queues q0..q49 take the measured enqueues
MODES = ("ttl", "cost", "quota", "weight", "priority", "ready50k")
DAY_QUOTA = [{"limit": 10**6, "window_ms": 86_400_000}]  # far above what a run takes


def main(modes: set[str]) -> None:
    server = EmbeddedRedis(tempfile.mkdtemp(), port=free_port(), executable=redis_executable())
    server.start()
    try:
        base = Config()
        sq = SharQ(dataclasses.replace(base, redis=dataclasses.replace(base.redis, url=server.url, embedded=False)))
        store = redis.Redis.from_url(server.url)
        options: dict[str, Any] = {"ttl_ms": 3_600_000} if "ttl" in modes else {}
        if "cost" in modes:
            options["cost"] = 3
        if "priority" in modes:
            options["priority"] = 5
        others = 50_000 if "ready50k" in modes else 1000
        set_limits(sq, modes, others)
        if "ready50k" in modes:
            for start in range(0, others, 100):
                sq.enqueue_many("t", [{"queue_id": f"other{queue}", "job_id": "w", "payload": 1, "interval": 0,
                                       **options} for queue in range(start, start + 100)])  # fmt: skip
        else:
            for queue in range(others):
                sq.enqueue(1, 0, "w", f"other{queue}", "t", **options)
        spent = {name: [0, 0] for name in ("enqueue", "dequeue", "finish")}
        for n in range(CALLS):
            measure(store, spent["enqueue"], lambda n=n: sq.enqueue(n, 0, f"j{n}", f"q{n % MEASURED}", "t", **options))
            job = measure(store, spent["dequeue"], lambda: sq.dequeue("t"))
            measure(store, spent["finish"], lambda j=job: sq.finish(j["job_id"], j["queue_id"], "t", j["receipt"]))
        for name, (commands, usec) in spent.items():
            print(f"{name:8s} {commands / CALLS:6.2f} commands/call  {usec / CALLS:7.1f} µs in scripts/call")
        if "ttl" in modes:
            for batch in range(100):
                jobs = [{"queue_id": "late", "job_id": f"x{batch}-{n}", "payload": n, "interval": 0, "ttl_ms": 1}
                        for n in range(100)]  # fmt: skip
                sq.enqueue_many("late", jobs)
            time.sleep(0.01)
            one = [0, 0]
            measure(store, one, lambda: sq.dequeue("late"))
            print(f"dequeue meeting 10,000 expired jobs: {one[0]} commands, {one[1]} µs in scripts")
    finally:
        server.stop()


def set_limits(sq: SharQ, modes: set[str], others: int) -> None:
    """The limits the modes give, set before any job (as PUT /limits/t/<queue>/ does)."""
    measured = [f"q{n}" for n in range(MEASURED)]
    if "quota" in modes:
        for queue_id in measured + [f"other{n}" for n in range(others)]:
            sq.set_limits("t", queue_id, quotas=DAY_QUOTA)
    if "weight" in modes:
        for queue_id in measured:
            sq.set_limits("t", queue_id, weight=4)


def measure(store: redis.Redis, spent: list[int], call: Any) -> Any:
    before = stats(store)
    result = call()
    after = stats(store)
    calls = after[0] - before[0]
    calls.pop("cmdstat_info", None)
    spent[0] += sum(calls.values()) - 1  # the script's own commands, less its EVALSHA
    spent[1] += after[1] - before[1]
    return result


def stats(store: redis.Redis) -> tuple[Counter[str], int]:
    found = {name: stat for name, stat in store.info("commandstats").items() if isinstance(stat, dict)}
    return Counter({name: int(stat["calls"]) for name, stat in found.items()}), int(found["cmdstat_evalsha"]["usec"])


if __name__ == "__main__":
    unknown = set(sys.argv[1:]) - set(MODES)
    if unknown:
        sys.exit(f"unknown mode {', '.join(sorted(unknown))}; modes: {' '.join(MODES)}")
    main(set(sys.argv[1:]))
