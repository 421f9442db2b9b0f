"""The fault checker's scenarios with a campaign: a real sharq-server (or two) on a
Redis of the test's own, real `sharq-worker` processes working the campaign's
jobs, and a fault in the middle: Redis restarted, workers and a server killed -9,
two instances finishing the last jobs at once. Every count read along the way
sums to `total`; at the end every job is finished, the campaign is done, and
exactly one on_done job `campaign-done.<id>` sits in its queue."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from sharq_server.embedded import EmbeddedRedis
from tests.support import ServerProcess, wait_for
from tests.test_client import sharq_worker
from tests.test_faults import enqueue_batch, sharq_on
from tests.test_faults import redis_server as redis_server  # the fixture: a Redis the test may stop and kill

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

STATES = ("queued", "scheduled", "active", "finished", "dead", "expired", "cancelled")
TOTAL = 200
JOBS = [(f"t{n % 20}", f"m{n}") for n in range(TOTAL)]
ON_DONE = {"on_done": {"queue_type": "reports", "queue_id": "ops", "payload": {"report": "sale"}}}

HANDLERS = """
import os, time

def record(job):
    time.sleep(0.01)  # a few jobs are always in hand when a fault strikes
    with open(os.path.join(os.getcwd(), "ran"), "a") as ran:
        ran.write(job.job_id + "\\n")
"""


def start_workers(server: ServerProcess, folder, count: int, name: str) -> list[subprocess.Popen[bytes]]:
    """`count` sharq-worker processes on the campaign's type, each in a folder of its own."""
    workers = []
    for n in range(count):
        home = folder / f"{name}{n}"
        home.mkdir()
        workers.append(sharq_worker(server, home, HANDLERS, "handlers:record", "sms")[0])
    return workers


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
        worker.wait()


def counts(server: ServerProcess) -> dict:
    """The campaign as the server answers it, checked to sum to total (a Redis that
    is down or a server that is gone answers nothing: None)."""
    try:
        status, found = server.call("GET", "/campaigns/sms/sale/", timeout=5)
    except OSError:
        return {}
    if status != 200:
        return {}
    assert sum(found[state] for state in STATES) == found["total"] == TOTAL, found
    assert found["done"] is (found["queued"] + found["scheduled"] + found["active"] == 0), found
    return found


def progressed(server: ServerProcess, finished: int) -> dict:
    """The counts once at least `finished` jobs are."""

    def enough() -> dict | None:
        found = counts(server)
        return found if found.get("finished", 0) >= finished else None

    return wait_for(enough, timeout=20, what=f"{finished} finished")


def check_the_end(server: ServerProcess, folder, target: str = "reports") -> None:
    """Every job ran and counted finished once, the campaign is done, and its on_done
    job is in `target`/ops exactly once, with the final counts (in sms/ops, the
    campaign's own type, the workers take it: it ran once)."""
    wait_for(lambda: counts(server).get("on_done_enqueued_at"), timeout=20, what="the on_done job")
    found = counts(server)
    assert (found["finished"], found["done"]) == (TOTAL, True), found
    if target == "sms":
        done_job = "/job/sms/ops/campaign-done.sale/"
        wait_for(lambda: server.call("GET", done_job)[1]["state"] == "finished", what="the on_done job to run")
    ran = [job_id for path in folder.glob("*/ran") for job_id in path.read_text().split()]
    mine = {job_id for _, job_id in JOBS}
    assert {job_id for job_id in ran if job_id in mine} == mine  # at least once each (a killed worker's ran again)
    if target == "sms":
        assert ran.count("campaign-done.sale") == 1 and len(set(ran) - mine) == 1
        return
    assert server.call("GET", "/metrics/reports/ops/")[1]["queue_length"] == 1
    status, taken = server.call("GET", "/dequeue/reports/?count=10")
    assert status == 200 and [job["job_id"] for job in taken["jobs"]] == ["campaign-done.sale"]
    payload = taken["jobs"][0]["payload"]
    assert payload["payload"] == {"report": "sale"}
    assert (payload["total"], payload["finished"], payload["queued"] + payload["active"]) == (TOTAL, TOTAL, 0)


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_redis_restarted_mid_campaign(redis_server: EmbeddedRedis, tmp_path, how: str) -> None:
    """Redis stopped (or killed -9) and started again on its append-only file while
    two workers take, run and finish the campaign's jobs."""
    server = sharq_on(redis_server, tmp_path)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        assert server.call("PUT", "/campaigns/sms/sale/", ON_DONE)[0] == 200
        enqueue_batch(server, "sms", JOBS, campaign="sale")
        workers = start_workers(server, tmp_path, 2, "worker")
        progressed(server, TOTAL // 4)
        getattr(redis_server, how)()
        assert counts(server) == {}  # Redis is down: no answer, and no count either
        redis_server.start()
        check_the_end(server, tmp_path)
    finally:
        stop(workers)
        assert server.stop() == 0


def test_workers_and_a_server_killed_mid_campaign(redis_server: EmbeddedRedis, tmp_path) -> None:
    """A worker killed -9 with jobs in hand (they come back after their expiry),
    then the server killed -9 with its gunicorn workers and the other worker; a new
    server and new workers finish the campaign."""
    server = sharq_on(redis_server, tmp_path)
    workers: list[subprocess.Popen[bytes]] = []
    again = None
    try:
        assert server.call("PUT", "/campaigns/sms/sale/", ON_DONE)[0] == 200
        enqueue_batch(server, "sms", JOBS, campaign="sale")
        workers = start_workers(server, tmp_path, 2, "first")
        assert progressed(server, TOTAL // 5)["active"] > 0
        workers[0].kill()  # with jobs in hand: they come back after their expiry
        progressed(server, TOTAL // 2)
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
        stop(workers)
        again = sharq_on(redis_server, tmp_path, "again")
        workers = start_workers(again, tmp_path, 2, "second")
        check_the_end(again, tmp_path)
        assert again.call("GET", "/stats/sms/")[1]["counters"]["requeued"] > 0
    finally:
        stop(workers)
        if again is not None:
            assert again.stop() == 0


@pytest.mark.parametrize("target", ["reports", "sms"])
def test_two_instances_share_a_campaign(redis_server: EmbeddedRedis, tmp_path, target: str) -> None:
    """Two servers on one Redis: each takes half the producers' batches and has a
    worker of its own, so the last finishes race on both; on_done is set on one
    and said on both, yet enqueued once: by a requeue pass (another type), or by
    the script of the last finish (the campaign's own type)."""
    servers = [sharq_on(redis_server, tmp_path, f"sharq{n}") for n in range(2)]
    workers: list[subprocess.Popen[bytes]] = []
    on_done = {"on_done": {**ON_DONE["on_done"], "queue_type": target}}
    try:
        assert servers[1].call("PUT", "/campaigns/sms/sale/", on_done)[0] == 200
        for n, server in enumerate(servers):
            enqueue_batch(server, "sms", JOBS[n::2], campaign="sale")
        for n, server in enumerate(servers):
            workers += start_workers(server, tmp_path, 1, f"on{n}-")
        progressed(servers[0], TOTAL // 2)
        assert servers[0].call("PUT", "/campaigns/sms/sale/", on_done)[0] == 200  # the same, said again
        wait_for(lambda: all(counts(server).get("done") for server in servers), timeout=20, what="done on both")
        check_the_end(servers[1], tmp_path, target)
        assert counts(servers[0]) == counts(servers[1])
    finally:
        stop(workers)
        for server in servers:
            assert server.stop() == 0
