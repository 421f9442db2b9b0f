"""Issue 23: what monitoring sees. A drained type keeps its figures; a Redis outage
still serves the process' own metrics; every gunicorn worker's counters are summed
in each scrape, even when gunicorn is run directly."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from sharq_core import Config, SharQ
from sharq_server import create_app
from sharq_server.embedded import EmbeddedRedis
from sharq_server.process_metrics import _start_time
from tests.support import Clock, ServerProcess, free_port, http, wait_for

JOB = {"job_id": "j1", "payload": 1, "interval": 0}
HOUR_MS = 3_600_000
ROOT = Path(__file__).resolve().parent.parent
SOCKET_TIMEOUT = 1.0
ENQUEUE_503 = 'sharq_http_requests_total{method="POST",route="/enqueue/<queue_type>/<queue_id>/",status="503"} 1.0'


@pytest.fixture
def store(tmp_path):
    """A Redis of the test's own, which it stops and freezes."""
    server = EmbeddedRedis(str(tmp_path / "redis"), port=free_port(), persistent=False)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def timed_scrape(url: str) -> tuple[int, float, str]:
    """One real scrape of /metrics/: status, seconds and text."""
    started = time.monotonic()
    with urllib.request.urlopen(url + "/metrics/?format=prometheus", timeout=30) as response:
        return response.status, time.monotonic() - started, response.read().decode()


@pytest.fixture
def app(config: Config, redis_client):
    app = create_app(config)
    yield app
    app.extensions["sharq_longpoll"].close()


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


def scrape(client: FlaskClient) -> str:
    response = client.get("/metrics/?format=prometheus")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_a_drained_type_keeps_its_row_and_its_series(client: FlaskClient, app) -> None:
    """A type that empties left /metrics/ (so the dashboard's table and its "(all
    types)" chart) and the Prometheus exposition, counters included."""
    engine: SharQ = app.extensions["sharq"]
    assert client.post("/enqueue/sms/u1/", json=JOB).status_code == 201
    job = client.get("/dequeue/sms/").get_json()
    assert client.post(f"/finish/sms/u1/{job['job_id']}/", json={"receipt": job["receipt"]}).status_code == 200
    engine.requeue(discover=False)
    assert "sms" not in engine.queue_types()  # drained: it left the registry
    listed = client.get("/metrics/").get_json()
    assert listed["queue_types"] == ["sms"]
    assert sum(listed["enqueue_counts"].values()) == 1 and sum(listed["dequeue_counts"].values()) == 1
    stats = client.get("/stats/sms/").get_json()
    assert stats["jobs"] == {"queued": 0, "active": 0, "scheduled": 0, "dead": 0}
    assert stats["counters"]["finished"] == 1 and sum(stats["enqueue_counts"].values()) == 1
    text = scrape(client)
    for line in (
        'sharq_jobs_enqueued_total{queue_type="sms"} 1.0',
        'sharq_jobs_finished_total{queue_type="sms"} 1.0',
        'sharq_jobs{queue_type="sms",state="queued"} 0.0',
        'sharq_queues{queue_type="sms",state="ready"} 0.0',
    ):
        assert line in text, line


def test_a_drained_type_is_listed_for_the_retention_then_dropped(sq: SharQ, clock: Clock) -> None:
    sq.enqueue({"n": 1}, 0, "j1", "u1", "sms")
    sq.enqueue({"n": 1}, 0, "j1", "u1", "email")
    sq.delete_queue("sms", "u1")
    sq.requeue(discover=False)
    assert (sq.queue_types(), sq.listed_types()) == (["email"], ["email", "sms"])
    clock.advance(HOUR_MS - 1)
    assert sq.listed_types() == ["email", "sms"]  # kept one hour by default
    clock.advance(1)
    assert sq.listed_types() == ["email"]
    sq.enqueue({"n": 1}, 0, "j2", "u1", "sms")  # back: listed as live again
    assert sq.listed_types() == ["email", "sms"]


def test_the_retention_is_configurable(config: Config, redis_client, clock: Clock) -> None:
    engine = SharQ(dataclasses.replace(config, idle_type_retention_ms=0), clock=clock)
    try:
        engine.enqueue({"n": 1}, 0, "j1", "u1", "sms")
        engine.delete_queue("sms", "u1")
        engine.requeue(discover=False)
        assert engine.listed_types() == []  # 0: dropped as it drains, as before
    finally:
        engine.close()


@pytest.mark.e2e
def test_a_redis_outage_still_serves_the_process_metrics(store: EmbeddedRedis, tmp_path) -> None:
    """While Redis was down the scrape answered 503, so every series vanished, the
    503 counters with them, and no alert could fire on the outage."""
    env = {"SHARQ_REDIS_URL": store.url, "SHARQ_REDIS_SOCKET_TIMEOUT": str(SOCKET_TIMEOUT)}
    server = ServerProcess(str(tmp_path / "data"), workers=1, env=env).start()
    try:
        assert server.call("POST", "/enqueue/sms/u1/", JOB)[0] == 201
        status, _, text = timed_scrape(server.url)
        assert "sharq_redis_up 1.0" in text and 'sharq_jobs{queue_type="sms",state="queued"} 1.0' in text
        store.stop()  # refused connections
        assert server.call("POST", "/enqueue/sms/u1/", {**JOB, "job_id": "j2"})[0] == 503
        refused = timed_scrape(server.url)
        store.start()
        os.kill(store.process.pid, signal.SIGSTOP)  # accepts, never answers
        hung = timed_scrape(server.url)
        os.kill(store.process.pid, signal.SIGCONT)
        for status, seconds, text in (refused, hung):
            assert status == 200 and seconds < SOCKET_TIMEOUT + 1.0, (status, seconds)
            assert "sharq_redis_up 0.0" in text and ENQUEUE_503 in text
            assert "sharq_jobs{" not in text  # no queue figure rather than a wrong one
        print(f"\nscrape during an outage: refused {refused[1] * 1000:.0f} ms, hung {hung[1] * 1000:.0f} ms")
        wait_for(lambda: "sharq_redis_up 1.0" in timed_scrape(server.url)[2], what="sharq_redis_up 1 again")
    finally:
        assert server.stop() == 0


def answered_by(log: Path, path: str) -> dict[str, int]:
    """How many answers to `path` each worker (its pid) wrote to the access log."""
    lines = log.read_text().splitlines() if log.exists() else []
    found: dict[str, int] = {}
    for pid in (line.split()[0] for line in lines if line.split()[1:2] == [path]):
        found[pid] = found.get(pid, 0) + 1
    return found


@pytest.mark.e2e
def test_gunicorn_run_directly_sums_every_worker_in_each_scrape(store: EmbeddedRedis, tmp_path) -> None:
    """`gunicorn -w 2 wsgi:app` as the README shows, no PROMETHEUS_MULTIPROC_DIR:
    each scrape showed one worker's counters (3 of 6 enqueues)."""
    port, log = free_port(), tmp_path / "access.log"
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(SHARQ_REDIS_URL=store.url, PYTHONPATH=str(ROOT))
    command = [
        os.path.join(os.path.dirname(sys.executable), "gunicorn"), "-k", "gevent", "-w", "2", "--no-control-socket",
        "-b", f"127.0.0.1:{port}", "--access-logfile", str(log), "--access-logformat", "%(p)s %(U)s %(s)s", "wsgi:app",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    exited = subprocess.Popen(["true"])
    exited.wait()
    left_over = Path(tempfile.gettempdir()) / f"sharq-metrics-{exited.pid}-1"
    left_over.mkdir()  # the directory of a master that has exited: the workers remove it
    with open(tmp_path / "gunicorn.log", "ab") as output:
        gunicorn = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    shared = Path(tempfile.gettempdir()) / f"sharq-metrics-{gunicorn.pid}-{_start_time(gunicorn.pid)}"
    try:
        wait_for(lambda: _answers(url), timeout=30, what="gunicorn")
        enqueued = 0

        def both_workers_enqueued() -> bool:
            nonlocal enqueued
            enqueued += 1
            assert http("POST", f"{url}/enqueue/sms/u1/", {**JOB, "job_id": f"j{enqueued}"})[0] == 201
            return len(answered_by(log, "/enqueue/sms/u1/")) == 2

        wait_for(both_workers_enqueued, timeout=30, interval=0, what="an enqueue answered by each worker")
        pattern = re.compile(r'sharq_http_requests_total\{method="POST",route="/enqueue/<queue_type>/<queue_id>/"'
                             r',status="201"\} ([0-9.]+)')  # fmt: skip

        def every_scrape_sums_both() -> bool:
            text = timed_scrape(url)[2]
            assert [float(n) for n in pattern.findall(text)] == [enqueued], text
            return len(answered_by(log, "/metrics/")) == 2

        wait_for(every_scrape_sums_both, timeout=30, interval=0, what="a scrape answered by each worker")
        print(f"\n{enqueued} enqueues over 2 workers: every scrape counted all of them")
        assert len(list(shared.glob("*.db"))) >= 2 and not left_over.exists()
    finally:
        gunicorn.terminate()
        assert gunicorn.wait(30) == 0
        shutil.rmtree(shared, ignore_errors=True)
        shutil.rmtree(left_over, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        return http("GET", url + "/", timeout=1)[0] == 200
    except OSError:
        return False
