"""Campaigns over HTTP, against a real sharq-server: the calls, the long poll, roles, bad input."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request

import pytest

from tests.support import ServerProcess, http, sample, wait_for

TOKENS = "admin-t=admin,prod-t=producer,view-t=viewer,work-t=worker"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"SHARQ_JOB_REQUEUE_INTERVAL": "100", "SHARQ_AUTH_TOKENS": TOKENS}
    server = ServerProcess(str(tmp_path_factory.mktemp("campaigns") / "data"), workers=1, env=env).start()
    yield server
    server.stop()


def call(server: ServerProcess, method: str, path: str, body: object = None, token: str = "admin-t"):
    return http(method, server.url + path, body, headers=bearer(token))


def job(job_id: str, queue_id: str = "t1", campaign: str = "spring") -> dict:
    return {"queue_id": queue_id, "job_id": job_id, "payload": {"to": job_id}, "interval": 0, "campaign": campaign}


def test_follow_cancel_and_on_done(server: ServerProcess) -> None:
    on_done = {"on_done": {"queue_type": "reports", "queue_id": "ops", "payload": {"what": "spring"}}}
    assert call(server, "PUT", "/campaigns/sms/spring/", on_done, "prod-t")[0] == 200
    status, body = call(server, "POST", "/enqueue/sms/", {"jobs": [job(f"j{n}", f"t{n % 3}") for n in range(6)]})
    assert status == 200 and {r["status"] for r in body["results"]} == {"queued"}
    solo = {"job_id": "solo", "payload": 1, "interval": 0, "campaign": "spring"}
    assert call(server, "POST", "/enqueue/sms/t1/", solo, "prod-t")[0] == 201
    status, taken = call(server, "GET", "/dequeue/sms/", token="work-t")
    assert status == 200
    status, found = call(server, "GET", "/campaigns/sms/spring/", token="view-t")
    assert (found["total"], found["queued"], found["active"], found["done"]) == (7, 6, 1, False)
    status, found = call(server, "DELETE", "/campaigns/sms/spring/", token="prod-t")
    assert (status, found["cancelled"], found["active"]) == (200, 6, 1)
    status, refused = call(server, "POST", "/enqueue/sms/t1/", {"job_id": "late", "payload": 1, "interval": 0,
                                                                 "campaign": "spring"})  # fmt: skip
    assert status == 409 and "cancelled" in refused["message"]
    status, gone = call(server, "GET", "/job/sms/t1/j1/", token="view-t")
    assert (status, gone["state"]) == (200, "cancelled")

    waited: dict = {}

    def long_poll() -> None:
        waited["answer"] = call(server, "GET", "/campaigns/sms/spring/?wait=10", token="view-t")

    poller = threading.Thread(target=long_poll)
    started = time.monotonic()
    poller.start()
    path = f"/finish/sms/{taken['queue_id']}/{taken['job_id']}/"
    assert call(server, "POST", path, {"receipt": taken["receipt"]}, "work-t")[0] == 200
    poller.join(15)
    status, found = waited["answer"]
    assert status == 200 and found["done"] is True and time.monotonic() - started < 5
    assert (found["finished"], found["cancelled"], found["total"]) == (1, 6, 7)

    def report():
        status, body = call(server, "GET", "/dequeue/reports/", token="work-t")
        return body if status == 200 else None

    done_job = wait_for(report, what="the on_done job")
    assert done_job["job_id"] == "campaign-done.spring"
    assert done_job["payload"]["payload"] == {"what": "spring"} and done_job["payload"]["cancelled"] == 6
    path = f"/finish/reports/ops/{done_job['job_id']}/"
    assert call(server, "POST", path, {"receipt": done_job["receipt"]}, "work-t")[0] == 200
    status, page = call(server, "GET", "/campaigns/sms/?limit=10", token="view-t")
    assert status == 200 and [c["campaign"] for c in page["campaigns"]] == ["spring"]
    assert page["campaigns"][0]["on_done_enqueued_at"] is not None


def scrape(server: ServerProcess) -> str:
    request = urllib.request.Request(server.url + "/metrics/?format=prometheus", headers=bearer("admin-t"))
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def test_metrics_per_type(server: ServerProcess) -> None:
    call(server, "POST", "/enqueue/push/", {"jobs": [job(f"p{n}", campaign=f"c{n % 2}") for n in range(5)]})
    exposition = scrape(server)
    assert sample(exposition, "sharq_campaigns_running", queue_type="push") == 2
    assert sample(exposition, "sharq_campaign_jobs", queue_type="push", state="queued") == 5
    assert sample(exposition, "sharq_campaign_jobs", queue_type="push", state="total") == 5
    call(server, "DELETE", "/campaigns/push/c0/")
    exposition = scrape(server)
    assert sample(exposition, "sharq_campaigns_running", queue_type="push") == 1
    assert sample(exposition, "sharq_campaign_jobs", queue_type="push", state="cancelled") == 3


def test_roles(server: ServerProcess) -> None:
    call(server, "POST", "/enqueue/sms/", {"jobs": [job("r1", campaign="roles")]})
    assert call(server, "DELETE", "/campaigns/sms/roles/", token="view-t")[0] == 403
    assert call(server, "DELETE", "/campaigns/sms/roles/", token="work-t")[0] == 403
    assert call(server, "GET", "/campaigns/sms/roles/", token="view-t")[0] == 200
    assert call(server, "GET", "/campaigns/sms/", token="prod-t")[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/campaigns/sms/some/?wait=31", None, "wait"),
        ("GET", "/campaigns/sms/bad.id/", None, "campaign"),
        ("PUT", "/campaigns/sms/some/", {"on_done": {"queue_type": "a b", "queue_id": "q", "payload": 1}},
         "on_done.queue_type"),
        ("PUT", "/campaigns/sms/some/", {"on_done": {"queue_type": "t", "queue_id": "", "payload": 1}},
         "on_done.queue_id"),
        ("POST", "/enqueue/bad/q/", {"job_id": "a", "payload": 1, "interval": 0, "campaign": "no good"}, "campaign"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_naming_the_field(server: ServerProcess, method, path, body, field) -> None:
    status, answer = call(server, method, path, body)
    assert status == 400 and field in answer["message"], answer
    assert call(server, "GET", "/campaigns/sms/some/")[0] == 404
    assert call(server, "GET", "/campaigns/bad/")[1]["campaigns"] == []


def test_both_clients_follow_a_campaign(server: ServerProcess) -> None:
    from sharq_client import AsyncClient, Client, Conflict

    client = Client(server.url, token="admin-t")
    try:
        client.enqueue("mail", "u1", "m1", {"n": 1}, 0, campaign="digest")
        client.on_done("mail", "digest", "reports", "digest", {"kind": "digest"})
        assert client.campaign("mail", "digest")["queued"] == 1
        assert client.cancel_campaign("mail", "digest")["cancelled"] == 1
        with pytest.raises(Conflict):
            client.enqueue("mail", "u1", "m2", 1, 0, campaign="digest")
        assert client.campaign("mail", "digest", wait=5)["done"] is True
        done_job = wait_for(lambda: client.dequeue("reports"), what="the on_done job")[0]
        assert done_job.job_id == "campaign-done.digest"
        client.finish("reports", done_job.queue_id, done_job.job_id, done_job.receipt)
    finally:
        client.close()

    async def scenario() -> None:
        async with AsyncClient(server.url, token="admin-t") as client:
            await client.enqueue("mail", "u2", "a1", 1, 0, campaign="weekly")
            assert (await client.campaign("mail", "weekly"))["total"] == 1
            assert "weekly" in [c["campaign"] for c in (await client.campaigns("mail"))["campaigns"]]

    asyncio.run(scenario())
