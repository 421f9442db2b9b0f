"""Single enqueue, dequeue and finish calls on the engine (issue 26): Redis commands
and EVALSHA µs per call, beside 1,000 other ready queues, on a redis-server of its own.

    python -m bench.single_calls [ttl]      # "ttl": every job carries a deadline (ttl_ms)

Run it from two checkouts (PYTHONPATH=<checkout>) one after the other, twice, to
compare a change with the code before it: commands per call are exact, µs are noisy.
With "ttl" it also times one dequeue that meets 10,000 expired jobs at a queue's head.
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


def main(with_ttl: bool) -> None:
    server = EmbeddedRedis(tempfile.mkdtemp(), port=free_port(), executable=redis_executable())
    server.start()
    try:
        base = Config()
        sq = SharQ(dataclasses.replace(base, redis=dataclasses.replace(base.redis, url=server.url, embedded=False)))
        store = redis.Redis.from_url(server.url)
        options: dict[str, Any] = {"ttl_ms": 3_600_000} if with_ttl else {}
        for queue in range(1000):
            sq.enqueue(1, 0, "w", f"other{queue}", "t", **options)
        spent = {name: [0, 0] for name in ("enqueue", "dequeue", "finish")}
        for n in range(CALLS):
            measure(store, spent["enqueue"], lambda n=n: sq.enqueue(n, 0, f"j{n}", f"q{n % 50}", "t", **options))
            job = measure(store, spent["dequeue"], lambda: sq.dequeue("t"))
            measure(store, spent["finish"], lambda j=job: sq.finish(j["job_id"], j["queue_id"], "t", j["receipt"]))
        for name, (commands, usec) in spent.items():
            print(f"{name:8s} {commands / CALLS:6.2f} commands/call  {usec / CALLS:7.1f} µs in scripts/call")
        if with_ttl:
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
    main("ttl" in sys.argv[1:])
