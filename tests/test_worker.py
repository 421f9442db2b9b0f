"""sharq_client's Worker against a real sharq-server (issues 14 and 16): failure
reports, stopping, cancelled jobs, fatal errors, and more than one request out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sharq_client import BadRequest, Client, Retry, SharqClientError, Throttle, TooManyWaiting, Unauthorized, Worker
from tests import test_client
from tests.support import ServerProcess, http, wait_for

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


def test_plentiful_quick_jobs_keep_three_calls_in_flight_and_each_runs_once(client: Client) -> None:
    """Issue 29: with one helper, a worker of quick jobs waited on two round trips
    at most while the server and Redis had cores to spare; the second helper keeps
    a third call out, and still every job runs once and is acknowledged."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def handler(job) -> None:
        with lock:
            seen[job.job_id] += 1

    client.pause("p3")
    jobs = [{"queue_id": f"q{n % 7}", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(4000)]
    for start in range(0, len(jobs), 100):
        client.enqueue_many("p3", jobs[start : start + 100])
    worker = Worker(client, "p3", handler, concurrency=4, batch=50, wait=1).start()
    client.resume("p3")
    wait_for(lambda: sum(seen.values()) >= len(jobs), timeout=30, what="every job handled")
    worker.join()
    assert seen == Counter(job["job_id"] for job in jobs)
    assert worker.deepest == 3
    assert client.queues("p3")["total"] == 0


def test_a_stopped_worker_sends_every_ack_it_holds(tmp_path) -> None:
    """The acks of jobs done after stop() go with no fetcher's call: the upkeep
    thread sent 100 on each tick, and join() at most 100 more once the last job
    was done; the rest ran, yet came back after their expiry to run again. A
    worker of quick jobs holds 300 (full calls, two ahead); here 400 handlers
    end at once after stop(). Every ack now goes, 100 a call."""
    go = threading.Event()
    entered: list[str] = []
    lock = threading.Lock()

    def handler(job) -> None:
        with lock:
            entered.append(job.job_id)
        go.wait(20)

    jobs = [{"queue_id": f"q{n % 7}", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(400)]
    # the default 30 s expiry: no job held here needs a touch
    with ServerProcess(str(tmp_path / "data"), workers=1).start() as server:
        client = Client(server.url, timeout=5)
        for start in range(0, len(jobs), 100):
            client.enqueue_many("stop", jobs[start : start + 100])
        worker = Worker(client, "stop", handler, concurrency=len(jobs), wait=1).start()
        try:
            wait_for(lambda: len(entered) == len(jobs), timeout=20, what="every job running")
            worker.stop()
        finally:
            go.set()
        worker.join()
        states = Counter(client.job("stop", job["queue_id"], job["job_id"])["state"] for job in jobs)
        client.close()
    assert worker.processed == len(jobs) and states == {"finished": len(jobs)}


class _CountingWorker(Worker):
    """A Worker that counts its upkeep passes and its fetchers' wake-ups."""

    upkeep_passes = 0
    wakes = 0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.takes: list[int] = []

    def _heartbeats(self, client: Client) -> None:
        self.upkeep_passes += 1
        super()._heartbeats(client)

    def _worth_taking(self, polls: bool) -> int:
        self.wakes += threading.current_thread().name.startswith("sharq-fetcher")
        return super()._worth_taking(polls)

    def _next_call(self, polls: bool):
        call = super()._next_call(polls)
        if call is not None:
            self.takes.append(call[0])
        return call


def test_a_job_done_wakes_neither_the_upkeep_nor_idle_fetchers(client: Client) -> None:
    """Issue 29: every job done woke the upkeep thread, which scanned every job held
    for heartbeats, and every fetcher, which found nothing worth a call: with quick
    jobs, thousands of passes a second on the worker's one core. The upkeep now runs
    on its own tick, and a fetcher wakes when a call is worth making."""
    client.pause("wk")
    jobs = [{"queue_id": f"q{n % 7}", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(2000)]
    for start in range(0, len(jobs), 100):
        client.enqueue_many("wk", jobs[start : start + 100])
    worker = _CountingWorker(client, "wk", lambda job: None, concurrency=64, wait=1).start()
    started = time.monotonic()
    client.resume("wk")
    wait_for(lambda: worker.processed >= len(jobs), timeout=30, what="every job handled")
    elapsed = time.monotonic() - started
    worker.join()
    assert worker.upkeep_passes <= elapsed / 0.05 + 10, (worker.upkeep_passes, elapsed)  # its tick, not each job
    assert worker.wakes < len(jobs), worker.wakes  # fewer than one a job done
    assert client.queues("wk")["total"] == 0


@pytest.mark.parametrize("batch", [None, 20])
def test_quick_plentiful_jobs_are_taken_100_a_call_unless_told_a_batch(client: Client, batch) -> None:
    """Issue 29: while jobs are quick and plentiful a call's round trip bounds the
    worker, and a full call costs the server and Redis less a job: the fetchers
    take 100 (the server's most) whatever the default batch; a batch given
    (`--batch`) is kept."""
    queue_type = f"full{batch}"
    client.pause(queue_type)
    jobs = [{"queue_id": f"q{n % 7}", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(3000)]
    for start in range(0, len(jobs), 100):
        client.enqueue_many(queue_type, jobs[start : start + 100])
    worker = _CountingWorker(client, queue_type, lambda job: None, concurrency=4, batch=batch, wait=1).start()
    client.resume(queue_type)
    wait_for(lambda: worker.processed >= len(jobs), timeout=30, what="every job handled")
    worker.join()
    assert worker.batch == (batch or 50)
    assert max(worker.takes) == (batch or 100)
    assert client.queues(queue_type)["total"] == 0


def test_the_default_batch_follows_the_concurrency_from_50_to_100(client: Client) -> None:
    """Issue 29: `sharq-worker --concurrency 64` took 50 a call, so it made more,
    smaller calls than its handlers could use; the default is now the concurrency,
    from 50 (what it was) to 100 (the server's most), and the jobs it holds stay
    max(concurrency, 50) as before."""
    from sharq_client.cli import parse_args

    for concurrency, batch in ((1, 50), (64, 64), (100, 100), (500, 100)):
        worker = Worker(client, "t", print, concurrency=concurrency)
        assert (worker.batch, worker.capacity) == (batch, max(concurrency, 50))
    assert Worker(client, "t", print, concurrency=64, batch=20).batch == 20
    assert parse_args(["m:f", "--url", "http://x", "--type", "t"]).batch is None


def test_a_finished_jobs_ack_goes_while_the_fetchers_wait(client: Client) -> None:
    """Issue 23 (7): with sharq-worker's defaults (concurrency 1, batch 50) and a
    backlog, a finished job's ack waited for a quarter of the 50 slots to free:
    past its expiry, so it ran twice. It goes on its own after a short linger."""
    runs: Counter[str] = Counter()
    first: list[str] = []
    lock, release = threading.Lock(), threading.Event()

    def handler(job) -> None:
        with lock:
            runs[job.job_id] += 1
            if not first:
                first.append(job.job_id)
                time.sleep(0.1)  # the work: not so quick that the fetchers read a batch ahead
                return
        release.wait(10)  # the others wait while the first's ack must go

    jobs = [{"queue_id": f"q{n}", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(60)]
    client.enqueue_many("ack", jobs)
    worker = Worker(client, "ack", handler).start()
    try:
        wait_for(lambda: worker.processed, what="the first job done")
        done = f"q{first[0][1:]}", first[0]
        # well within the server's 900 ms expiry
        wait_for(lambda: client.job("ack", *done)["state"] == "finished", timeout=0.6, what="its ack")
    finally:
        release.set()
    wait_for(lambda: set(states(client, "ack", jobs).values()) == {"finished"}, what="every job finished")
    worker.join()
    # the finished job never ran again (the others sat on a 900 ms expiry held by
    # touches; on a loaded machine one may miss its touch and rerun, as at-least-once allows)
    assert runs[first[0]] == 1


class Proxy:
    """A real HTTP server standing in front of sharq-server, as a proxy or load
    balancer would: it forwards every request and counts them, but answers the
    /finish/ calls `when(acks)` selects itself, with the next of `junk`."""

    def __init__(self, upstream: str, junk: list[tuple[int, bytes]], when=lambda acks: True) -> None:
        self.upstream, self.junk, self.when = upstream, junk, when
        self.calls = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy.serve(self)

            do_POST = do_PUT = do_DELETE = do_GET

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        acks = json.loads(body)["jobs"] if request.path.startswith("/finish/") else None
        with self.lock:
            self.calls += 1
            answer = self.junk.pop(0) if acks is not None and self.junk and self.when(acks) else None
        status, content = answer or self.forward(request, body)
        request.send_response(status)
        request.send_header("Content-Length", str(len(content)))
        if status == 302:
            request.send_header("Location", "/login")
        request.end_headers()
        request.wfile.write(content)

    def forward(self, request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, bytes]:
        headers = {name: request.headers[name] for name in ("Content-Type", "Authorization") if request.headers[name]}
        upstream = urllib.request.Request(self.upstream + request.path, body or None, headers, method=request.command)
        try:
            with urllib.request.urlopen(upstream, timeout=40) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_answers_that_are_not_sharqs_are_waited_out_and_lose_no_ack(tmp_path) -> None:
    """Issue 23 (9): a proxy's 302 (or a page) made the batch reader raise
    KeyError: the fetcher died with the acks it carried, the process idled on.
    Now each such answer reads as the server away: the acks are kept and sent
    again, and every job finishes having run once (long before its 30 s expiry)."""
    server = ServerProcess(str(tmp_path / "data"), workers=1).start()
    junk = [(302, b""), (200, b"<html>Sign in</html>"), (200, b"{}"), (200, b'{"status": "success"}')]
    # the first poll meets a redirect; the next calls carrying acks meet the rest
    proxy = Proxy(server.url, junk, when=lambda acks: bool(acks) or len(junk) == 4)
    runs: Counter[str] = Counter()
    jobs = [{"queue_id": f"q{n % 3}", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(20)]
    worker = Worker(Client(proxy.url, timeout=5), "px", lambda job: runs.update([job.job_id]), 2, wait=1)
    try:
        Client(server.url).enqueue_many("px", jobs)
        worker.start()
        wait_for(lambda: not junk and runs.total() == 20, what="every junk answer served, every job run")
        direct = Client(server.url)
        wait_for(lambda: set(states(direct, "px", jobs).values()) == {"finished"}, what="every ack delivered")
        assert worker.error is None and worker._fetching()
        worker.join()
        assert set(runs.values()) == {1}
    finally:
        worker.stop()
        proxy.close()
        server.stop()


EMPTY_BATCH = b'{"status": "success", "results": [], "jobs": [], "retry_after_ms": null}'


def test_an_idle_worker_backs_off_when_the_server_parks_no_more_polls(tmp_path) -> None:
    """Issue 23 (8): with the server's parked-poll cap full, the worker's poll (an
    ack-and-take with no acks) answered "200, no jobs" at once and the worker
    asked again at once: 1,079 calls in 2 s. It is refused with 429 now, as
    /dequeue/ is, and the worker backs off."""
    env = {"SHARQ_WORKER_CONNECTIONS": "10"}  # the cap: 9 parked polls
    server = ServerProcess(str(tmp_path / "data"), workers=1, env=env).start()
    proxy = Proxy(server.url, [])  # counts the calls
    try:
        with ThreadPoolExecutor(9) as pool:
            for _ in range(9):
                pool.submit(http, "GET", f"{server.url}/dequeue/other/?wait=20", timeout=30)
            wait_for(lambda: server.call("GET", "/deepstatus/")[1]["parked"] == 9, what="the cap full")
            with pytest.raises(TooManyWaiting):
                Client(server.url).finish_many("idle", [], take=1, wait=20)
            worker = Worker(Client(proxy.url), "idle", print).start()
            time.sleep(2)  # the window the calls are counted in
            worker.join()
            assert proxy.calls <= 10, f"{proxy.calls} calls in 2 s"
            assert server.stop() == 0  # answers the parked polls
    finally:
        proxy.close()
        server.stop()


def test_a_poll_answered_empty_at_once_is_not_asked_again_at_once(client: Client, server: ServerProcess) -> None:
    """Issue 23 (8): whatever makes a server answer a poll at once with nothing (an
    older server at its cap, one stopping), the worker backs off, not spins."""
    junk = [(200, EMPTY_BATCH)] * 10_000
    proxy = Proxy(server.url, junk, when=lambda acks: not acks)
    try:
        worker = Worker(Client(proxy.url, token="tok"), "idle", print).start()
        time.sleep(1.5)  # the window the calls are counted in
        worker.join()
        assert proxy.calls <= 10, f"{proxy.calls} calls in 1.5 s"
    finally:
        proxy.close()


BROKEN = """
import sharq_client.upkeep

def heartbeats(self, client):
    raise RuntimeError("a bug in the upkeep thread")

sharq_client.upkeep.Upkeep._heartbeats = heartbeats  # the bug, planted

def handle(job):
    pass
"""


def test_a_worker_thread_that_dies_ends_sharq_worker_non_zero(server: ServerProcess, tmp_path) -> None:
    """Issue 23 (9): a thread that died left the process running, taking nothing,
    reporting nothing. Now the worker stops, run() raises, the process exits 1."""
    worker, log_path = test_client.sharq_worker(server, tmp_path, BROKEN, "handlers:handle", "t3")
    try:
        assert worker.wait(20) == 1
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert "a worker thread failed: RuntimeError('a bug in the upkeep thread')" in log_path.read_text()


STUCK = """
import pathlib, time

def stuck(job):
    pathlib.Path(job.payload).touch()
    time.sleep(60)
"""


def test_a_second_signal_ends_the_grace_at_once(client: Client, server: ServerProcess, tmp_path) -> None:
    """Issue 23: the signal handler took the worker's lock, which join() (in the same
    main thread) may hold; now it takes none, and a second Ctrl-C ends the grace:
    the process exits at once, the running job comes back after its expiry."""
    worker, log_path = test_client.sharq_worker(server, tmp_path, STUCK, "handlers:stuck", "t4")
    try:
        client.enqueue("t4", "q", "stuck", str(tmp_path / "started"), interval=0)
        wait_for(lambda: (tmp_path / "started").exists(), what="the job to start")
        worker.send_signal(signal.SIGINT)
        wait_for(lambda: "stopping" in log_path.read_text(), what="the first signal to stop it")
        worker.send_signal(signal.SIGINT)
        assert worker.wait(10) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert "1 job(s) still held after a second signal" in log_path.read_text()
    wait_for(lambda: client.job("t4", "q", "stuck")["state"] == "queued", what="the job back in its queue")
