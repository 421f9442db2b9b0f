"""Issue 28.2: the token-free probes Kubernetes calls (`/livez`, `/readyz`), the
server's drain on SIGTERM and sharq-worker's, on a real sharq-server over a Redis
of the test's own and a real sharq-worker process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from http.client import HTTPConnection

import pytest

from sharq_server.embedded import EmbeddedRedis
from tests.support import ServerProcess, free_port, refuses_connections, wait_for

pytestmark = pytest.mark.e2e

SOCKET_TIMEOUT = 1.0
TOKEN = "probe-secret-token"


@pytest.fixture
def store(tmp_path):
    """A Redis the test may stop and freeze (SIGSTOP: it accepts but never answers)."""
    server = EmbeddedRedis(str(tmp_path / "redis"), port=free_port(), persistent=False)
    server.start()
    yield server
    if server.process is not None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def sharq_on(store: EmbeddedRedis, tmp_path, **env: str) -> ServerProcess:
    settings = {
        "SHARQ_REDIS_URL": store.url,
        "SHARQ_REDIS_SOCKET_TIMEOUT": str(SOCKET_TIMEOUT),
        "SHARQ_AUTH_TOKENS": TOKEN,
        **env,
    }
    return ServerProcess(str(tmp_path / "sharq"), workers=1, env=settings).start()


def probe(server: ServerProcess, path: str, headers: dict | None = None) -> tuple[int, bytes, float]:
    """(status, raw body, seconds taken) of one GET, no token unless given."""
    started = time.monotonic()
    connection = HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        reply = connection.getresponse()
        return reply.status, reply.read(), time.monotonic() - started
    finally:
        connection.close()


def test_probes_need_no_token_and_disclose_nothing(store: EmbeddedRedis, tmp_path) -> None:
    """Auth is on: /livez and /readyz answer without a token, with a wrong one too,
    and say nothing but success (no version, no address, no setting)."""
    server = sharq_on(store, tmp_path)
    try:
        assert server.call("GET", "/deepstatus/")[0] == 401  # the deep check still wants a token
        for path in ("/livez", "/readyz", "/livez/", "/readyz/"):
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                status, body, _ = probe(server, path, headers)
                assert (status, json.loads(body)) == (200, {"status": "success"}), path
    finally:
        assert server.stop() == 0


def test_readyz_is_503_within_socket_timeout_while_redis_is_down_or_hung(store: EmbeddedRedis, tmp_path) -> None:
    """Refused connections, then a Redis that accepts but never answers: /readyz is
    503 within socket_timeout (Kubernetes takes the pod out of the Service) while
    /livez stays 200 (a restart would not mend Redis); both 200 once it is back."""
    server = sharq_on(store, tmp_path)
    try:
        store.stop()
        refused = probe(server, "/readyz")
        assert probe(server, "/livez")[0] == 200
        store.start()
        assert store.process is not None
        os.kill(store.process.pid, signal.SIGSTOP)
        hung = probe(server, "/readyz")
        assert probe(server, "/livez")[0] == 200
        os.kill(store.process.pid, signal.SIGCONT)
        for status, body, seconds in (refused, hung):
            answer = json.loads(body)
            assert (status, answer["status"]) == (503, "failure")
            assert seconds < SOCKET_TIMEOUT + 0.5
            assert str(store.port) not in body.decode() and "127.0.0.1" not in body.decode()
        print(f"\n/readyz 503 after {refused[2] * 1000:.0f} ms (refused), {hung[2] * 1000:.0f} ms (hung)")
        wait_for(lambda: probe(server, "/readyz")[0] == 200, what="/readyz once Redis answers again")
    finally:
        assert server.stop() == 0


def test_sigterm_drains_within_graceful_timeout_and_exits_0(store: EmbeddedRedis, tmp_path) -> None:
    """SIGTERM: new connections are refused at once, a parked long poll is answered
    at once, a request in flight is answered, one that never completes is cut at
    graceful_timeout, and the server exits 0 (what a rolling update needs)."""
    graceful = 2
    server = sharq_on(store, tmp_path, SHARQ_GRACEFUL_TIMEOUT=str(graceful))
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    body = json.dumps({"job_id": "late", "payload": "x" * 1000, "interval": 0}).encode()
    parked = HTTPConnection("127.0.0.1", server.port, timeout=10)
    finishing = HTTPConnection("127.0.0.1", server.port, timeout=10)
    stuck = HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        parked.request("GET", "/dequeue/sms/?wait=30", headers=auth)
        wait_for(lambda: server.call("GET", "/deepstatus/", headers=auth)[1]["parked"] == 1, what="the parked poll")
        for connection in (finishing, stuck):
            connection.putrequest("POST", "/enqueue/sms/u1/")
            for name, value in auth.items():
                connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body[:100])  # headers and part of the body: in flight
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        answer = parked.getresponse()
        assert answer.status == 404 and time.monotonic() - started < 2  # answered at once, nothing taken
        wait_for(lambda: refuses_connections(server.port), what="the server to stop accepting")
        finishing.send(body[100:])
        reply = finishing.getresponse()
        assert (reply.status, json.loads(reply.read())) == (201, {"status": "queued"})
        assert server.process.wait(graceful + 5) == 0  # `stuck` never sends the rest of its body
        drained = time.monotonic() - started
        print(f"\ndrained in {drained:.2f} s with a stuck request (graceful_timeout {graceful} s)")
        assert drained < graceful + 3
    finally:
        for connection in (parked, finishing, stuck):
            connection.close()
        server.stop()


HANDLERS = """
import pathlib, time

def timed(job):
    folder = pathlib.Path(job.payload["folder"])
    (folder / ("started-" + job.job_id)).touch()
    time.sleep(job.payload["seconds"])
    (folder / ("done-" + job.job_id)).touch()
"""


def test_sharq_worker_drains_within_its_grace_sends_every_ack_and_exits_0(store: EmbeddedRedis, tmp_path) -> None:
    """SIGTERM while a short and a long job run: the worker takes nothing more, the
    short one finishes and its ack reaches the server, the long one outlasts the
    grace and is given back at once (its expiry is a minute away) with no requeue
    spent (requeue_limit 0: a spent one would have dead-lettered it), and the
    process exits 0 within the grace and a margin."""
    server = sharq_on(store, tmp_path, SHARQ_JOB_EXPIRE_INTERVAL="60000")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    (tmp_path / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    grace = 2.0
    command = [os.path.join(os.path.dirname(sys.executable), "sharq-worker"), "handlers:timed", "--type", "drain"]
    command += ["--concurrency", "2", "--grace", str(grace)]
    env = {**os.environ, "SHARQ_URL": server.url, "SHARQ_TOKEN": TOKEN}
    log_path = tmp_path / "worker.log"
    try:
        for job_id, seconds in (("short", 1.0), ("long", 60)):
            job = {"job_id": job_id, "payload": {"folder": str(tmp_path), "seconds": seconds}, "interval": 0}
            job["requeue_limit"] = 0
            assert server.call("POST", f"/enqueue/drain/{job_id}/", job, headers=auth)[0] == 201
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: (tmp_path / "started-long").exists() and (tmp_path / "started-short").exists(),
                     what="both jobs to start")  # fmt: skip
            started = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(grace + 10) == 0, log_path.read_text()
            stopped = time.monotonic() - started
        finally:
            if worker.poll() is None:
                worker.kill()
        print(f"\nsharq-worker exited 0 {stopped:.2f} s after SIGTERM (grace {grace} s)")
        assert stopped < grace + 3
        assert server.call("POST", "/enqueue/drain/later/", {"job_id": "later", "payload": {}, "interval": 0},
                           headers=auth)[0] == 201  # fmt: skip
        state = lambda job_id: server.call("GET", f"/job/drain/{job_id}/{job_id}/", headers=auth)[1]["state"]  # noqa: E731
        assert (tmp_path / "done-short").exists() and state("short") == "finished"  # its ack was sent
        assert not (tmp_path / "done-long").exists() and state("later") == "queued"  # nothing taken after SIGTERM
        assert state("long") == "queued"  # given back before the worker exited
        status, job = server.call("GET", "/dequeue/drain/", headers=auth)
        assert (status, job["job_id"], job["requeues_remaining"]) == (200, "long", 0)
        output = log_path.read_text()
        assert "given back to their queues" in output and "Traceback" not in output
    finally:
        assert server.stop() == 0


def test_release_gives_a_job_back_at_once_uncounted_and_takes_no_other_outcome(store: EmbeddedRedis, tmp_path) -> None:
    """POST /fail/ with release: the job is queued again at once, its requeue not
    spent; combined with dead, throttle or retry_after_ms it is a 400 that changes
    nothing."""
    server = sharq_on(store, tmp_path)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        job = {"job_id": "j", "payload": 1, "interval": 0, "requeue_limit": 0}
        assert server.call("POST", "/enqueue/rel/q/", job, headers=auth)[0] == 201
        receipt = server.call("GET", "/dequeue/rel/", headers=auth)[1]["receipt"]
        for refused in ({"dead": True}, {"throttle": True, "retry_after_ms": 10}, {"retry_after_ms": 10}):
            status, body = server.call("POST", "/fail/rel/q/j/", {"receipt": receipt, "release": True, **refused},
                                       headers=auth)  # fmt: skip
            assert status == 400 and "release" in body["message"], body
        assert server.call("GET", "/job/rel/q/j/", headers=auth)[1]["state"] == "active"
        status, body = server.call("POST", "/fail/rel/q/j/", {"receipt": receipt, "release": True}, headers=auth)
        assert (status, body) == (200, {"status": "success", "state": "queued"})
        status, again = server.call("GET", "/dequeue/rel/", headers=auth)
        assert (status, again["job_id"], again["requeues_remaining"]) == (200, "j", 0)
    finally:
        assert server.stop() == 0
