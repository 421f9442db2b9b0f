"""Redis commands per job (issue 16), from INFO commandstats: the commands a
script runs count there one by one, so the difference around a call is what it
cost Redis in commands.

By script, on the engine directly: a batch enqueue of 100 jobs over 100 queues,
then ack-and-take of 100 at a time (finish.lua with `next`, the batch worker's
call) until the type is empty. End to end: around `bench.costs`' SharQ run.
"""

from __future__ import annotations

from collections import Counter

import redis

from sharq_core import Config, RedisSettings, SharQ

JOBS = 20_000


def commandstats(store: redis.Redis) -> Counter[str]:
    """Calls so far by command name (lower case)."""
    return Counter({name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in _stats(store).items()})


def _stats(store: redis.Redis) -> dict[str, dict[str, int]]:
    return {name: stat for name, stat in store.info("commandstats").items() if isinstance(stat, dict)}


def per_job(before: Counter[str], after: Counter[str], jobs: int) -> tuple[float, dict[str, float]]:
    """All commands per job, and the commands behind it per job, most first."""
    spent = after - before
    spent.pop("info", None)
    each = {name: calls / jobs for name, calls in spent.most_common()}
    return sum(each.values()), each


def by_script(store_url: str, jobs: int = JOBS) -> list[tuple[str, float, dict[str, float]]]:
    """(call, commands per job, breakdown) for the batch enqueue and the ack-and-take."""
    store = redis.Redis.from_url(store_url)
    store.flushdb()
    engine = SharQ(Config(redis=RedisSettings(url=store_url, embedded=False), job_expire_interval=600_000))
    engine.take("cmd", 1)  # the scripts loaded and the layout read before counting
    before = commandstats(store)
    for start in range(0, jobs, 100):
        batch = [
            {"queue_id": f"q{n % 100}", "job_id": f"j{n}", "payload": n, "interval": 0}
            for n in range(start, start + 100)
        ]
        engine.enqueue_many("cmd", batch)
    enqueued = commandstats(store)
    taken, _ = engine.take("cmd", 100)
    while taken:
        acks = [{"queue_id": job.queue_id, "job_id": job.job_id, "receipt": job.receipt} for job in taken]
        _, taken, _ = engine.finish_many("cmd", acks, 100)
    finished = commandstats(store)
    store.flushdb()
    return [
        ("batch enqueue (100 a call)", *per_job(before, enqueued, jobs)),
        ("ack-and-take (100 a call)", *per_job(enqueued, finished, jobs)),
    ]


def rows(store_url: str) -> list[tuple[str, str, str]]:
    """Table rows: commands per job by call, the five commands most run."""
    return [
        (f"Redis commands per job: {name}", f"{total:.1f}", _top(each)) for name, total, each in by_script(store_url)
    ]


def _top(each: dict[str, float], count: int = 6) -> str:
    return ", ".join(f"{name} {calls:.2f}" for name, calls in list(each.items())[:count])


if __name__ == "__main__":
    import sys

    for row in rows(sys.argv[1]):
        print(" | ".join(row))
