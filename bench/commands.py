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


def script_usec(store: redis.Redis) -> int:
    """µs Redis has spent in EVALSHA so far (a script's own commands included)."""
    return int(_stats(store).get("cmdstat_evalsha", {}).get("usec", 0))


def _stats(store: redis.Redis) -> dict[str, dict[str, int]]:
    return {name: stat for name, stat in store.info("commandstats").items() if isinstance(stat, dict)}


def per_job(before: Counter[str], after: Counter[str], jobs: int) -> tuple[float, dict[str, float]]:
    """All commands per job, and the commands behind it per job, most first."""
    spent = after - before
    spent.pop("info", None)
    each = {name: calls / jobs for name, calls in spent.most_common()}
    return sum(each.values()), each


def by_script(store_url: str, jobs: int = JOBS) -> list[tuple[str, float, float, dict[str, float]]]:
    """(call, commands per job, script µs per job, breakdown) for the batch enqueue
    and the ack-and-take."""
    store = redis.Redis.from_url(store_url)
    store.flushdb()
    engine = SharQ(Config(redis=RedisSettings(url=store_url, embedded=False), job_expire_interval=600_000))
    engine.take("cmd", 1)  # the scripts loaded and the layout read before counting
    before, started = commandstats(store), script_usec(store)
    for start in range(0, jobs, 100):
        batch = [
            {"queue_id": f"q{n % 100}", "job_id": f"j{n}", "payload": n, "interval": 0}
            for n in range(start, start + 100)
        ]
        engine.enqueue_many("cmd", batch)
    enqueued, enqueue_usec = commandstats(store), script_usec(store)
    taken, _ = engine.take("cmd", 100)
    while taken:
        acks = [{"queue_id": job.queue_id, "job_id": job.job_id, "receipt": job.receipt} for job in taken]
        _, taken, _ = engine.finish_many("cmd", acks, 100)
    finished, finish_usec = commandstats(store), script_usec(store)
    store.flushdb()
    enqueue_calls, enqueue_each = per_job(before, enqueued, jobs)
    finish_calls, finish_each = per_job(enqueued, finished, jobs)
    return [
        ("batch enqueue (100 a call)", enqueue_calls, (enqueue_usec - started) / jobs, enqueue_each),
        ("ack-and-take (100 a call)", finish_calls, (finish_usec - enqueue_usec) / jobs, finish_each),
    ]


def rows(store_url: str) -> list[tuple[str, str, str]]:
    """Table rows: commands and script µs per job by call, the commands most run."""
    return [
        (f"Redis commands per job: {name}", f"{total:.1f} ({usec:.1f} µs in scripts)", _top(each))
        for name, total, usec, each in by_script(store_url)
    ]


def _top(each: dict[str, float], count: int = 6) -> str:
    return ", ".join(f"{name} {calls:.2f}" for name, calls in list(each.items())[:count])


if __name__ == "__main__":
    import sys

    for row in rows(sys.argv[1]):
        print(" | ".join(row))
