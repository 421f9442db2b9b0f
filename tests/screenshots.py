"""Regenerate the dashboard images the docs show (`make screenshots`).

Starts a Redis and a real `sharq-server` on it, plays an hour of demo traffic
into the engine with a clock stepped minute by minute (so the charts have an
hour to draw), leaves some work for the health panel to flag, then photographs
/dashboard/ in Debian's chromium at 1280 px and 390 px into docs/img/.

    python -m tests.screenshots [--out docs/img]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from sharq_core import Config, SharQ
from sharq_server.embedded import EmbeddedRedis
from tests.support import Clock, ServerProcess, free_port

WIDTHS = (1280, 390)


def play_hour(engine: SharQ, clock: Clock, queue_type: str, per_minute: int, fail_every: int) -> None:
    """An hour of traffic ending now: each minute enqueues a wave of jobs over a
    few tenants and hands out what the workers can take, finishing all but every
    `fail_every`th."""
    now = clock.now
    for minute in range(60, 0, -1):
        clock.now = now - minute * 60_000
        wave = int(per_minute * (1.2 + math.sin(minute / 9)) / 2)
        jobs = [
            {"queue_id": f"tenant-{n % 7}", "job_id": f"{minute}-{n}", "payload": {"n": n}, "interval": 0}
            for n in range(wave)
        ]
        for start in range(0, len(jobs), 100):
            engine.enqueue_many(queue_type, jobs[start : start + 100])
        clock.now += 20_000
        taken: list[dict] = []
        capacity = int(per_minute * (0.55 + 0.1 * math.cos(minute / 5)))  # the workers fall behind, then catch up
        while len(taken) < capacity:
            batch = engine.dequeue_many(queue_type, min(100, capacity - len(taken))).get("jobs", [])
            if not batch:
                break
            taken += batch
        for n, job in enumerate(taken):
            if n % fail_every == 0:
                engine.fail(queue_type, job["queue_id"], job["job_id"], receipt=job["receipt"], error="timeout")
            else:
                engine.finish(job["job_id"], job["queue_id"], queue_type, receipt=job["receipt"])
    clock.now = now


def seed(redis_url: str) -> None:
    """Demo data: two busy types with an hour behind them, a dead letter, a paused
    and a capped queue, and a type whose jobs no worker takes."""
    base = Config()
    config = dataclasses.replace(base, redis=dataclasses.replace(base.redis, url=redis_url, embedded=False))
    clock = Clock(int(time.time() * 1000))
    engine = SharQ(config, clock=clock)
    play_hour(engine, clock, "sms", per_minute=240, fail_every=40)
    play_hour(engine, clock, "email", per_minute=90, fail_every=15)
    clock.now = int(time.time() * 1000)
    job = {"queue_id": "acme", "job_id": "bounce-1", "payload": {"to": "+100"}, "interval": 0}
    engine.enqueue_many("sms", [job])
    taken = engine.dequeue_many("sms", 1)["jobs"][0]
    engine.fail("sms", taken["queue_id"], taken["job_id"], receipt=taken["receipt"], error="invalid number", dead=True)
    engine.enqueue_many(
        "sms", [{"queue_id": f"tenant-{n}", "job_id": f"w{n}", "payload": n, "interval": 0} for n in range(7)]
    )
    engine.pause("sms", "tenant-3")
    engine.set_limits("sms", "tenant-5", max_active=1)
    clock.now -= 120_000  # webhooks waited two minutes: no worker took any
    engine.enqueue_many(
        "webhooks", [{"queue_id": f"hook-{n}", "job_id": f"h{n}", "payload": n, "interval": 0} for n in range(4)]
    )
    engine.close()


def photograph(url: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for width in WIDTHS:
            page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
            page.goto(url + "/dashboard/?stall=60")
            page.locator('#types tr[data-type="sms"] button').click()
            page.locator('#queues tr[data-queue="tenant-0"]').wait_for()
            page.locator("#backlog-chart .y-tick").first.wait_for()
            page.evaluate("window.scrollTo(0, 0)")
            path = out / f"dashboard-{width}.png"
            height = page.evaluate("document.documentElement.scrollHeight")  # a phone's: its first screens
            page.screenshot(
                path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": min(height, 2400)}
            )
            written.append(path)
            page.close()
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sharq-shots-") as scratch:
        redis = EmbeddedRedis(os.path.join(scratch, "redis"), port=free_port(), persistent=False)
        os.makedirs(redis.data_dir)
        redis.start()
        server = None
        try:
            seed(redis.url)
            env = {"SHARQ_REDIS_URL": redis.url, "SHARQ_AUTH_TOKENS": ""}
            server = ServerProcess(os.path.join(scratch, "data"), workers=1, env=env).start()
            for path in photograph(server.url, args.out):
                print(path)
        finally:
            if server is not None:
                server.stop()
            redis.stop()


if __name__ == "__main__":
    main()
