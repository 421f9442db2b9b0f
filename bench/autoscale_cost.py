"""What the autoscale bookkeeping costs the hot path (issue 28): 20,000 jobs
dequeued and finished one call each, on the engine directly, in three shapes:

- deep:     100 queues without limits, 200 jobs each (no queue ever empties
            until the end: the listing bookkeeping runs ~100 times in all);
- churn:    20,000 queues of one job each (every job lists and unlists its queue);
- limited:  100 queues with a cap (max_active 1000) and an interval of 1 ms.

Prints, per shape, the Redis commands the scripts ran per job and Redis' µs per
job in EVALSHA (INFO commandstats, the scripts' own commands included), and the
wall time per job of dequeue + finish. The command count is exact; the times
vary with the machine's load (compare runs made back to back).
Run: PYTHONPATH=<checkout> python -m bench.autoscale_cost (once per checkout,
the same machine, the same minute, to compare).
"""

from __future__ import annotations

import sys
import tempfile
import time

import redis

from sharq_core import Config, RedisSettings, SharQ
from sharq_server.embedded import EmbeddedRedis
from tests.support import free_port

from .commands import commandstats, per_job, script_usec

JOBS = 20_000


def fill(sq: SharQ, shape: str) -> None:
    queues = JOBS if shape == "churn" else 100
    interval = 1 if shape == "limited" else 0
    if shape == "limited":
        for n in range(queues):
            sq.set_limits("t", f"q{n}", max_active=1000)
    jobs = [{"queue_id": f"q{n % queues}", "job_id": f"j{n}", "payload": n, "interval": interval} for n in range(JOBS)]
    for start in range(0, JOBS, 100):
        sq.enqueue_many("t", jobs[start : start + 100])


def run(sq: SharQ, store: redis.Redis) -> tuple[float, float, float]:
    """Commands, µs of Redis script time and µs of wall time per dequeue + finish."""
    calls, usec, started, done = commandstats(store), script_usec(store), time.perf_counter(), 0
    while done < JOBS:
        jobs, _ = sq.take("t", 1)
        if not jobs:
            time.sleep(0.001)  # an interval of 1 ms: the next is due within it
            continue
        sq.finish_job(jobs[0].job_id, jobs[0].queue_id, "t", jobs[0].receipt)
        done += 1
    wall = time.perf_counter() - started
    usec = script_usec(store) - usec
    commands, _ = per_job(calls, commandstats(store), JOBS)
    return commands - 2, usec / JOBS, wall * 1e6 / JOBS  # less the two EVALSHA


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(folder, port=free_port())
        server.start()
        try:
            store = redis.Redis.from_url(server.url)
            sq = SharQ(Config(redis=RedisSettings(url=server.url, embedded=False)))
            for shape in sys.argv[1:] or ("deep", "churn", "limited"):
                store.flushall()
                fill(sq, shape)
                commands, redis_us, wall_us = run(sq, store)
                figures = f"{commands:5.2f} commands/job   redis {redis_us:6.1f} µs/job   wall {wall_us:7.1f} µs/job"
                print(f"{shape:8} {figures}")
            sq.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
