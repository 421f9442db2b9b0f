"""Micro-benchmark: decoding and checking an enqueue body, today's way and msgspec's.

Today the HTTP layer parses with ujson and the engine checks every field (its
own library API's checks, with the messages users see); msgspec decodes into the
typed models of `sharq_server.contract` and checks their bounds in one pass.

    python -m bench.decode
"""

from __future__ import annotations

import timeit
from typing import Any

import msgspec
import ujson

from sharq_core import Config, SharQ
from sharq_core import validation as check
from sharq_server.contract import NewJob, NewJobs

JOB = {"job_id": "job-1", "payload": {"to": "+15550100", "text": "hello"}, "interval": 1000, "requeue_limit": 3}
SINGLE = ujson.dumps(JOB).encode()
BATCH = ujson.dumps({"jobs": [{**JOB, "job_id": f"job-{i}", "queue_id": f"q{i % 7}"} for i in range(100)]}).encode()


def today_single(engine: SharQ, body: bytes) -> Any:
    fields = ujson.loads(body)
    check.known_fields(fields, NewJob.__struct_fields__)
    return engine._job_args(queue_id="q1", **engine._fields(fields))


def today_batch(engine: SharQ, body: bytes) -> Any:
    jobs = ujson.loads(body)["jobs"]
    return [engine._batch_job(index, job) for index, job in enumerate(jobs)]


def msgspec_parse_only(engine: SharQ, body: bytes) -> Any:
    jobs = msgspec.json.decode(body)["jobs"]
    return [engine._batch_job(index, job) for index, job in enumerate(jobs)]


def main() -> None:
    engine = SharQ(Config())
    single, batch = msgspec.json.Decoder(NewJob), msgspec.json.Decoder(NewJobs)
    cases = {
        "single, ujson + engine checks (today)": lambda: today_single(engine, SINGLE),
        "single, msgspec typed decode": lambda: single.decode(SINGLE),
        "batch of 100, ujson + engine checks (today)": lambda: today_batch(engine, BATCH),
        "batch of 100, msgspec decode + engine checks": lambda: msgspec_parse_only(engine, BATCH),
        "batch of 100, msgspec typed decode": lambda: batch.decode(BATCH),
    }
    for name, call in cases.items():
        runs, _ = timeit.Timer(call).autorange()
        best = min(timeit.repeat(call, number=runs, repeat=5)) / runs
        print(f"{name:48} {best * 1e6:9.2f} µs")


if __name__ == "__main__":
    main()
