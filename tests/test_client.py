"""sharq_client's Client and Worker against a real sharq-server (issue 9)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from sharq_client import (
    BadRequest,
    Client,
    Conflict,
    DuplicateJob,
    NotFound,
    Retry,
    StaleReceipt,
    Unauthorized,
    Unavailable,
    Worker,
    calls,
)
from tests.support import ServerProcess, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"SHARQ_JOB_EXPIRE_INTERVAL": "900", "SHARQ_JOB_REQUEUE_INTERVAL": "100", "SHARQ_AUTH_TOKENS": "tok"}
    server = ServerProcess(str(tmp_path_factory.mktemp("client") / "data"), env=env).start()
    yield server
    server.stop()


@pytest.fixture
def client(server: ServerProcess):
    client = Client(server.url, token="tok", timeout=5)
    yield client
    client.close()


def test_client_covers_the_api_with_typed_errors(client: Client, server: ServerProcess) -> None:
    client.enqueue("api", "q1", "a", {"n": 1}, interval=0, requeue_limit=2)
    with pytest.raises(DuplicateJob) as duplicate:
        client.enqueue("api", "q1", "a", {"n": 1}, interval=0)
    assert duplicate.value.state == "queued" and duplicate.value.status == 409
    with pytest.raises(BadRequest, match="unknown field"):
        client._call("POST", "/enqueue/api/q1/", {"job_id": "b", "payload": 1, "interval": 0, "intervall": 1})
    results = client.enqueue_many("api", [{"queue_id": "q2", "job_id": "b", "payload": 2, "interval": 0}])
    assert results[0]["status"] == "queued"
    [job] = client.dequeue("api")
    assert (job.job_id, job.payload, job.requeues_remaining) == ("a", {"n": 1}, 2)
    assert client.touch("api", "q1", "a", job.receipt) > job.dequeued_at
    assert client.fail("api", "q1", "a", job.receipt, error="boom") == "queued"
    assert client.job("api", "q1", "a")["last_error"] == "boom"
    with pytest.raises(StaleReceipt):
        client.finish("api", "q1", "a", job.receipt)
    batch = client.finish_many("api", [], take=5)
    assert sorted(j.job_id for j in batch.jobs) == ["a", "b"]
    assert [r["status"] for r in client.finish_many("api", batch.jobs).results] == ["success", "success"]
    with pytest.raises(NotFound):
        client.finish("api", "q1", "a")
    assert client.dequeue("api", wait=1) == []
    assert client.metrics("api")["status"] == "success"
    assert client.deep_status()["status"] == "success"
    with pytest.raises(Unauthorized):
        Client(server.url).metrics()
    with pytest.raises(Unavailable):
        Client("http://127.0.0.1:9").metrics()


def test_client_imports_without_flask_or_gevent() -> None:
    code = "import sys; sys.modules['flask'] = sys.modules['gevent'] = None; import sharq_client; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "ok", done.stderr


def run_worker(client: Client, queue_type: str, handler, **options) -> Worker:
    return Worker(client, queue_type, handler, **options).start()


def test_worker_runs_every_job_once_and_acks_it(client: Client) -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def handler(job) -> None:
        with lock:
            seen.append(job.job_id)

    worker = run_worker(client, "w1", handler, concurrency=4, wait=1)
    jobs = [{"queue_id": f"q{n % 5}", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(60)]
    client.enqueue_many("w1", jobs[:30])
    client.enqueue_many("w1", jobs[30:])
    wait_for(lambda: len(seen) == 60, what="60 jobs handled")
    worker.join()
    assert sorted(seen) == sorted(job["job_id"] for job in jobs)
    assert {client.job("w1", job["queue_id"], job["job_id"])["state"] for job in jobs} == {"finished"}


def test_a_job_longer_than_the_expiry_is_touched_and_runs_once(client: Client) -> None:
    runs: list[str] = []

    def slow(job) -> None:
        runs.append(job.job_id)
        time.sleep(2.0)  # the work itself: over twice the server's 900 ms expiry

    worker = run_worker(client, "w2", slow, wait=1)
    client.enqueue("w2", "q", "long", 1, interval=0)
    wait_for(lambda: client.job("w2", "q", "long")["state"] == "finished", timeout=15, what="the long job to finish")
    worker.join()
    assert runs == ["long"]


def test_failures_and_retries_are_reported(client: Client) -> None:
    def handler(job) -> None:
        if job.job_id == "boom":
            raise ValueError("upstream said no")
        raise Retry(after_ms=60_000)

    worker = run_worker(client, "w3", handler, wait=1)
    client.enqueue("w3", "q", "boom", 1, interval=0, requeue_limit=0)
    client.enqueue("w3", "q", "later", 1, interval=0, requeue_limit=3)
    wait_for(lambda: client.job("w3", "q", "boom")["state"] == "dead", what="boom to be dead-lettered")
    wait_for(lambda: client.job("w3", "q", "later")["state"] == "retrying", what="later to wait for its retry")
    worker.join()
    dead = client.dead_letters("w3")["jobs"][0]
    assert dead["reason"] == "ValueError: upstream said no"


def test_worker_survives_a_server_restart(tmp_path) -> None:
    server = ServerProcess(str(tmp_path / "data"), workers=1).start()
    client = Client(server.url, timeout=3)
    seen: list[str] = []
    worker = run_worker(client, "w4", lambda job: seen.append(job.job_id), wait=1)
    try:
        client.enqueue("w4", "q", "before", 1, interval=0)
        wait_for(lambda: seen == ["before"], what="the first job")
        assert server.stop() == 0
        server.start()  # same port, same data
        client.enqueue("w4", "q", "after", 1, interval=0)
        wait_for(lambda: seen == ["before", "after"], timeout=20, what="the worker to reconnect")
    finally:
        worker.join()
        server.stop()


HANDLERS = """
import pathlib, time

def slow(job):
    folder = pathlib.Path(job.payload["folder"])
    (folder / ("started-" + job.job_id)).touch()
    time.sleep(1.0)
    (folder / ("done-" + job.job_id)).touch()
"""


def sharq_worker(server: ServerProcess, folder, handlers: str, handler: str, queue_type: str):
    """`sharq-worker` run on `handler` of the module `handlers` (written to
    `folder`); the process and the path of its log."""
    (folder / "handlers.py").write_text(textwrap.dedent(handlers))
    command = [os.path.join(os.path.dirname(sys.executable), "sharq-worker"), handler, "--type", queue_type]
    env = {**os.environ, "SHARQ_URL": server.url, "SHARQ_TOKEN": "tok"}
    log_path = folder / "worker.log"
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT), log_path


def test_sharq_worker_cli_finishes_what_it_holds_on_sigterm(client: Client, server: ServerProcess, tmp_path) -> None:
    worker, log_path = sharq_worker(server, tmp_path, HANDLERS, "handlers:slow", "w5")
    try:
        client.enqueue("w5", "q", "first", {"folder": str(tmp_path)}, interval=0)
        client.enqueue("w5", "q", "second", {"folder": str(tmp_path)}, interval=0)
        wait_for(lambda: (tmp_path / "started-first").exists(), what="the first job to start")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    output = log_path.read_text()
    assert (tmp_path / "done-first").exists() and (tmp_path / "done-second").exists(), output
    assert client.job("w5", "q", "first")["state"] == "finished"
    assert client.job("w5", "q", "second")["state"] == "finished"  # it held both: it finished both
    client.enqueue("w5", "q", "third", {"folder": str(tmp_path)}, interval=0)
    assert client.job("w5", "q", "third")["state"] == "queued"  # nobody takes it any more
    assert "stopping" in output and "Traceback" not in output


def test_client_has_the_readme_names_and_delays(client: Client) -> None:
    """Delayed enqueues, `queue_info` (the engine's name; `queue` stays) and
    `type_stats`, as the README promises."""
    assert client.enqueue("names", "q", "now", 1, interval=0) == "queued"
    assert client.enqueue("names", "q", "later", 1, interval=0, delay_ms=3_600_000) == "scheduled"
    due = client.job("names", "q", "later")["due_at"]
    assert client.enqueue("names", "q", "then", 1, interval=0, not_before=due) == "scheduled"
    with pytest.raises(BadRequest, match="not both"):
        client.enqueue("names", "q", "both", 1, interval=0, delay_ms=1, not_before=due)
    info = client.queue_info("names", "q")
    assert (info["queue_length"], info["scheduled"]) == (1, 2)
    assert client.queue("names", "q")["scheduled"] == 2
    stats = client.type_stats("names")
    assert stats["status"] == "success" and "enqueue_counts" in stats
    for name in ("set_limits", "limits", "clear_limits", "pause", "resume", "queue_info", "queues", "job_status"):
        assert callable(getattr(client, name))


def test_ids_that_would_name_another_queue_are_refused_before_sending(client: Client) -> None:
    """Found by review: "acme#typo" went into the path as "acme" (the fragment cut),
    so delete_queue emptied acme. Ids are checked as the server checks them."""
    client.enqueue("esc", "acme", "k1", 1, 0)
    for queue_id in ("acme#typo", "acme?x=1", "acme/x", "", "é"):
        with pytest.raises(BadRequest, match="queue_id must be"):
            client.delete_queue("esc", queue_id)
    with pytest.raises(BadRequest, match="queue_type must be"):
        client.dequeue("sms?x")
    assert client.queue_info("esc", "acme")["queue_length"] == 1


def test_an_unreachable_server_is_unavailable_with_no_status() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(Unavailable) as unreachable:
        Client(f"http://127.0.0.1:{port}", timeout=2).deep_status()
    assert unreachable.value.status is None  # no answer came at all: not a 503


def test_a_conflict_that_is_not_about_a_receipt_is_conflict(client: Client) -> None:
    """Issue 23 (11): a reshard refused while the type holds jobs raised StaleReceipt
    ("the receipt names an earlier delivery"); only receipts' 409s are that."""
    client.enqueue("cf", "q", "held", 1, interval=0)
    with pytest.raises(Conflict) as conflict:
        client.set_type_settings("cf", 2)
    assert type(conflict.value) is Conflict and conflict.value.status == 409
    [job] = client.dequeue("cf")
    client.fail("cf", "q", "held", job.receipt)
    for stale in (client.finish, client.touch, client.fail):
        with pytest.raises(StaleReceipt):
            stale("cf", "q", "held", job.receipt)


NOT_SHARQS = [
    (302, b""),  # a proxy's redirect to its login page
    (200, b"<html><body>Sign in</body></html>"),
    (200, b"{}"),  # JSON without the members the call answers
    (200, b'{"status": "success", "results": [], "jobs": [{"job_id": "x"}]}'),
    (200, b'{"status": "success", "results": [{"ok": 1}], "jobs": []}'),
    (200, b"[]"),
    (404, b"<html>Not Found</html>"),  # not SharQ's "no job is ready"
    (502, b"<html>Bad Gateway</html>"),
]


@pytest.mark.parametrize(("status", "raw"), NOT_SHARQS)
def test_an_answer_that_is_not_sharqs_is_unavailable(status: int, raw: bytes) -> None:
    """Issue 23 (9): a proxy's 302 or page made the worker's batch reader raise
    KeyError, which nothing caught; it reads as the server being away."""
    reads = [calls.finish_many("t", [], take=5)] + ([] if b"results" in raw else [calls.dequeue("t", count=5)])
    for call in reads:
        with pytest.raises(Unavailable, match="not a SharQ answer") as away:
            call.answer(status, raw)
        assert away.value.status == status


def test_a_proxys_refusal_of_the_request_keeps_its_class() -> None:
    """A 401, 403 or 413 page from a proxy says what SharQ's would: the worker
    stops on a refused token, whoever refused it."""
    with pytest.raises(Unauthorized, match="Authorization Required"):
        calls.deep_status().answer(401, b"<html>Authorization Required</html>")
