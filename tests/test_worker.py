"""sharq_client's Worker against a real sharq-server (issues 14 and 16): failure
reports, stopping, cancelled jobs, fatal errors, and more than one request out."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from sharq_client import BadRequest, Client, Retry, SharqClientError, Throttle, Unauthorized, Worker
from tests import test_client
from tests.support import ServerProcess, wait_for

pytestmark = pytest.mark.e2e

server, client = test_client.server, test_client.client  # the same server (token, 900 ms expiry)


def states(client: Client, queue_type: str, jobs: list[dict]) -> dict[str, str]:
    return {job["job_id"]: client.job(queue_type, job["queue_id"], job["job_id"])["state"] for job in jobs}


def test_a_refused_failure_report_loses_no_ack(client: Client) -> None:
    """Retry with a float delay and an error text no Redis can store: both reports
    go (coerced), and every finished job's ack with them."""

    def handler(job) -> None:
        if job.job_id == "float":
            raise Retry(after_ms=2.5 * 1000)
        if job.job_id == "surrogate":
            raise ValueError("bad byte \udc80 from upstream")

    jobs = [{"queue_id": f"q{n % 3}", "job_id": f"ok{n}", "payload": n, "interval": 0} for n in range(20)]
    jobs.append({"queue_id": "q0", "job_id": "float", "payload": 0, "interval": 0, "requeue_limit": 1})
    jobs.append({"queue_id": "q0", "job_id": "surrogate", "payload": 0, "interval": 0, "requeue_limit": 0})
    worker = Worker(client, "f1", handler, concurrency=4, wait=1).start()
    client.enqueue_many("f1", jobs)
    wait_for(lambda: worker.processed == len(jobs), what="every job handled")
    worker.join()
    assert client.job("f1", "q0", "float")["state"] == "retrying"
    [dead] = client.dead_letters("f1")["jobs"]
    assert (dead["job_id"], dead["reason"]) == ("surrogate", "ValueError: bad byte ? from upstream")
    assert set(states(client, "f1", jobs[:20]).values()) == {"finished"}


def test_retry_and_throttle_check_their_delay() -> None:
    assert Retry(after_ms=2.5 * 1000).after_ms == 2500
    assert Throttle(retry_after_ms=0.2).retry_after_ms == 1
    with pytest.raises(ValueError, match="after_ms"):
        Retry(after_ms=-1)
    with pytest.raises(ValueError, match="retry_after_ms"):
        Throttle(retry_after_ms=0)
    for beyond in (10**15, float("inf")):  # found by review: the server would refuse the report
        with pytest.raises(ValueError, match="after_ms"):
            Retry(after_ms=beyond)


def test_slow_jobs_are_never_fetched_ahead(client: Client) -> None:
    """Found by review: before any job was done the worker counted as quick and read
    a batch ahead, holding twice what it may (2 jobs with concurrency 1, batch 1)."""
    client.enqueue_many(
        "slow", [{"queue_id": f"q{n}", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(6)]
    )
    release = threading.Event()
    worker = Worker(client, "slow", lambda job: release.wait(5), concurrency=1, batch=1, wait=1).start()
    try:
        wait_for(lambda: client.type_stats("slow")["jobs"]["active"] >= 1, what="a job taken")
        peak = max(client.type_stats("slow")["jobs"]["active"] for _ in range(20))
        assert peak == 1
    finally:
        release.set()
        worker.stop()
        worker.join()


def test_a_stopped_worker_leaves_the_next_job_queued(tmp_path) -> None:
    """join() ends the parked long poll: a job enqueued afterwards is nobody's."""
    server = ServerProcess(str(tmp_path / "data"), workers=1).start()  # one process: `parked` counts them all
    client = Client(server.url, timeout=5)
    try:
        worker = Worker(client, "lp", lambda job: None, wait=30).start()
        wait_for(lambda: client.deep_status()["parked"] == 1, what="the worker's poll to park")
        worker.join()
        client.enqueue("lp", "q", "after", 1, interval=0, requeue_limit=0)
        wait_for(lambda: client.deep_status()["parked"] == 0, what="the server to drop the poll")
        assert client.job("lp", "q", "after")["state"] == "queued"
        assert [job.job_id for job in client.dequeue("lp")] == ["after"]
    finally:
        client.close()
        server.stop()


def test_jobs_join_gave_up_on_come_back_and_it_waits_its_grace_once(client: Client) -> None:
    """One job blocks the only handler past the grace; the two waiting for it are
    cancelled: none of the three is touched any more, so all come back."""
    release = threading.Event()
    started: list[str] = []

    def stuck(job) -> None:
        started.append(job.job_id)
        release.wait(30)

    jobs = [{"queue_id": "q", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(3)]
    client.enqueue_many("c1", jobs)
    worker = Worker(client, "c1", stuck, concurrency=1, wait=1, grace=2).start()
    try:
        wait_for(lambda: started, what="the first job to start")
        begun = time.monotonic()
        worker.join()
        assert time.monotonic() - begun < 3.5  # the grace (2 s), once
        wait_for(lambda: set(states(client, "c1", jobs).values()) == {"queued"}, what="every job back in its queue")
        assert started == ["j0"] and worker.processed == 0
    finally:
        release.set()


def test_a_refused_token_or_type_stops_the_worker_with_its_error(client: Client, server: ServerProcess) -> None:
    raised: list[BaseException] = []

    def run(worker: Worker) -> None:
        try:
            worker.run()  # off the main thread: no signal handlers
        except SharqClientError as error:
            raised.append(error)

    thread = threading.Thread(target=run, args=(Worker(Client(server.url, token="wrong"), "t1", print, wait=1),))
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and isinstance(raised[0], Unauthorized)
    worker = Worker(client, "bad.type", print, wait=1).start()
    wait_for(lambda: worker.error, what="the worker to give up")
    worker.join()
    assert isinstance(worker.error, BadRequest) and "queue_type" in worker.error.message


def test_sharq_worker_exits_non_zero_on_a_refused_token(server: ServerProcess) -> None:
    command = [os.path.join(os.path.dirname(sys.executable), "sharq-worker"), "json:dumps", "--type", "t2"]
    env = {**os.environ, "SHARQ_URL": server.url, "SHARQ_TOKEN": "wrong"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "HTTP 401" in done.stderr and "Traceback" not in done.stderr


def test_plentiful_jobs_keep_two_calls_in_flight_and_each_runs_once(client: Client) -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def handler(job) -> None:
        with lock:
            seen.append(job.job_id)

    client.pause("p1")  # everything queued before the worker may take any
    jobs = [{"queue_id": f"q{n % 7}", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(2000)]
    for start in range(0, len(jobs), 100):
        client.enqueue_many("p1", jobs[start : start + 100])
    worker = Worker(client, "p1", handler, concurrency=4, batch=50, wait=1).start()
    client.resume("p1")
    wait_for(lambda: len(seen) >= len(jobs), timeout=30, what="every job handled")
    worker.join()
    assert sorted(seen) == sorted(job["job_id"] for job in jobs)
    assert worker.overlapped > 0
    assert client.queues("p1")["total"] == 0  # every job acknowledged: no queue holds one
