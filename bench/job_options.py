"""End to end with per-job options in use (issues 25 and 27): 20,000 no-op jobs,
one producer batch in flight, `sharq-server` and `sharq-worker --concurrency 64`
as a user starts them, in three cases that alternate within each round:

- none: jobs as `make bench` sends them;
- cost and day quota: every job costs 3 units and each of the 100 queues has a
  day quota far above the run (counted at every hand-out, never holding);
- campaign: every job in one campaign, with an on_done job.

    python -m bench.job_options [rounds]

Prints each case's median jobs/s and its ratio to "none" in the same round: the
issues' bound is "within 10%".
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile

import redis

from sharq_client import Client
from sharq_server.embedded import EmbeddedRedis, redis_executable
from tests.support import free_port

from .costs import sharq

DAY_MS = 86_400_000


def with_day_quota(client: Client) -> None:
    for queue in range(100):
        client.set_limits("e2e", f"q{queue}", quotas=[{"window_ms": DAY_MS, "limit": 1_000_000}])


def with_campaign(client: Client) -> None:
    client.on_done("e2e", "bench", "reports", "ops")


CASES = {
    "none": ({}, None),
    "cost and day quota": ({"cost": 3}, with_day_quota),
    "campaign": ({"campaign": "bench"}, with_campaign),
}


def main(rounds: int) -> None:
    server = EmbeddedRedis(tempfile.mkdtemp(), port=free_port(), executable=redis_executable())
    server.start()
    try:
        store, bin_dir = redis.Redis.from_url(server.url), os.path.dirname(sys.executable)
        seen: dict[str, list[float]] = {name: [] for name in CASES}
        for _ in range(rounds):
            for name, (fields, prepare) in CASES.items():
                figures = sharq(
                    bin_dir, server.url, store, server.process.pid, 1, "defaults", fields=fields, prepare=prepare
                )
                seen[name].append(figures["jobs/s"])
        for name, rates in seen.items():
            ratios = [rate / plain for rate, plain in zip(rates, seen["none"], strict=True)]
            print(f"{name:20s} {statistics.median(rates):7,.0f} jobs/s  {statistics.median(ratios):.2f}x none "
                  f"(rounds: {', '.join(f'{rate:,.0f}' for rate in rates)})")  # fmt: skip
    finally:
        server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
