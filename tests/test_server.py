"""Every route and error path of the HTTP API, through Flask's test client on real Redis."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from flask.testing import FlaskClient
from redis import exceptions as redis_errors

from sharq_core import Config
from sharq_core.tokens import parse_tokens
from sharq_server import create_app
from sharq_server.errors import unavailable_reason
from sharq_server.requeue import RequeueLoop
from tests.support import free_port, wait_for

JOB = {"job_id": "j1", "payload": {"message": "hello, world"}, "interval": 0}


@pytest.fixture
def app(config: Config, redis_client):
    app = create_app(dataclasses.replace(config, job_expire_interval=200))
    yield app
    app.extensions["sharq_longpoll"].close()  # its listener, if a test started one, stops too


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


def enqueue(client: FlaskClient, job_id: str = "j1", queue_id: str = "u1", **fields) -> tuple[int, dict]:
    response = client.post(f"/enqueue/sms/{queue_id}/", json={**JOB, "job_id": job_id, **fields})
    return response.status_code, response.get_json()


def test_index(client: FlaskClient) -> None:
    response = client.get("/")
    assert (response.status_code, response.get_json()) == (200, {"message": "Hello, SharQ!"})


def test_enqueue_dequeue_finish(client: FlaskClient) -> None:
    assert enqueue(client) == (201, {"status": "queued"})
    response = client.get("/dequeue/sms/")
    assert response.status_code == 200
    body = response.get_json()
    assert body.pop("dequeued_at") > 1_700_000_000_000  # Redis time, ms
    assert body.pop("expires_at") > 1_700_000_000_000
    assert len(body.pop("receipt")) == 18
    assert body == {
        "status": "success",
        "queue_id": "u1",
        "job_id": "j1",
        "payload": {"message": "hello, world"},
        "requeues_remaining": -1,
        "current_queue_length": 0,
    }
    assert client.post("/finish/sms/u1/j1/").get_json() == {"status": "success"}
    finished_again = client.post("/finish/sms/u1/j1/")
    assert finished_again.status_code == 404
    assert finished_again.get_json()["status"] == "failure"


def test_body_read_without_content_type(client: FlaskClient) -> None:
    body = b'{"job_id": "j1", "payload": 1, "interval": 0}'
    response = client.post("/enqueue/sms/u1/", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 201


def test_dequeue_default_type_and_no_slash(client: FlaskClient) -> None:
    client.post("/enqueue/default/u1/", json=JOB)
    assert client.get("/dequeue").get_json()["job_id"] == "j1"


def test_head_does_not_take_a_job(client: FlaskClient) -> None:
    enqueue(client)
    response = client.head("/dequeue/sms/")
    assert (response.status_code, response.headers["Allow"]) == (405, "GET")
    assert client.get("/dequeue/sms/").get_json()["job_id"] == "j1"


def test_dequeue_nothing_ready(client: FlaskClient) -> None:
    response = client.get("/dequeue/sms/")
    assert response.status_code == 404
    assert response.get_json() == {"status": "failure", "message": "no job is ready", "retry_after_ms": None}
    enqueue(client, "a", interval=60_000)
    enqueue(client, "b", interval=60_000)
    client.get("/dequeue/sms/")
    wait = client.get("/dequeue/sms/").get_json()["retry_after_ms"]
    assert 59_000 < wait <= 60_000


def test_duplicate_and_full(client: FlaskClient, redis_client) -> None:
    enqueue(client, max_queued_length=1)
    assert enqueue(client)[0] == 409
    assert enqueue(client, "j2", max_queued_length=1)[0] == 429
    assert client.get("/metrics/sms/u1/").get_json()["queue_length"] == 1


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"job_id": "j1", "interval": 0}',
        b'{"job_id": "j1", "payload": 1}',
        b'{"job_id": "j1", "payload": 1, "interval": "10"}',
        b'{"job_id": "j1", "payload": 1, "interval": true}',
        b'{"job_id": "j1", "payload": 1, "interval": 1.5}',
        b'{"job_id": "j1", "payload": 1, "interval": -1}',
        b'{"job_id": "j1", "payload": 1, "interval": 1e400}',
        b'{"job_id": "j1", "payload": NaN, "interval": 0}',
        b'{"job_id": "j1", "payload": 1, "interval": 100000000000000000000000}',
        b'{"job_id": "j/1", "payload": 1, "interval": 0}',
        b'{"job_id": "j\\u00001", "payload": 1, "interval": 0}',
        b'{"job_id": 7, "payload": 1, "interval": 0}',
        b'{"job_id": "j1", "payload": 1, "interval": 0, "requeue_limit": -2}',
        b'{"job_id": "j1", "payload": 1, "interval": 0, "max_queued_length": 0}',
        b'{"job_id": "j1", "payload": "\xff\xfe", "interval": 0}',
        b"[" * 100_000,
        b'{"job_id": "j1", "payload": "\\ud800", "interval": 0}',
        b'{"job_id": "j1", "payload": 1, "interval": 0, "requeue_limt": 0}',
    ],
)
def test_bad_enqueue_is_400_and_changes_nothing(client: FlaskClient, redis_client, body: bytes) -> None:
    response = client.post("/enqueue/sms/u1/", data=body)
    assert response.status_code == 400
    assert response.get_json()["status"] == "failure"
    assert response.get_json()["message"]
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize("path", ["/enqueue/sms/..%2Fetc/", "/enqueue/s%00ms/u1/", "/enqueue/" + "x" * 101 + "/u1/"])
def test_bad_identifiers_in_path(client: FlaskClient, redis_client, path: str) -> None:
    response = client.post(path, json=JOB)
    assert response.status_code in (400, 404)  # a decoded "/" matches no route at all
    assert response.get_json()["status"] == "failure"
    assert redis_client.dbsize() == 0


def test_body_over_one_mib_is_413(client: FlaskClient, redis_client) -> None:
    response = client.post("/enqueue/sms/u1/", json={**JOB, "payload": "x" * (1024 * 1024)})
    assert response.status_code == 413
    assert response.get_json() == {
        "status": "failure",
        "message": "request body is larger than 1048576 bytes; raise [sharq-server] max_body_size"
        " (SHARQ_MAX_BODY_SIZE) to accept more",
    }
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/enqueue/sms/u1/",
            {"job_id": "j1", "payload": 1, "interval": 0, "requeue_limt": 0},
            "unknown field 'requeue_limt'",
        ),
        ("/enqueue/sms/", {"jobs": [{**JOB, "queue_id": "u1", "intervall": 5}]}, "jobs[0]: unknown field 'intervall'"),
        ("/enqueue/sms/", {"jobs": [], "atomic": True}, "unknown field 'atomic'"),
        ("/interval/sms/u1/", {"interval": 5, "queue": "u1"}, "unknown field 'queue'"),
        ("/enqueue/sms/u1/", {"job_id": "j1", "payload": 1}, "interval is required"),
        ("/enqueue/sms/u1/", {"payload": 1, "interval": 0}, "job_id is required"),
        ("/enqueue/sms/", {"jobs": [{"job_id": "j1", "payload": 1, "interval": 0}]}, "jobs[0]: queue_id is required"),
    ],
)
def test_misspelt_and_missing_fields_are_named(client: FlaskClient, redis_client, path, body, message) -> None:
    """Issue 8: a misspelt field is refused by name, a missing one said to be required."""
    response = client.post(path, json=body)
    assert response.status_code == 400
    assert response.get_json()["message"].startswith(message)
    assert redis_client.dbsize() == 0


def test_delete_queue_refuses_unknown_fields(client: FlaskClient) -> None:
    enqueue(client)
    response = client.delete("/deletequeue/sms/u1/", json={"purge": True})
    assert response.status_code == 400
    assert client.get("/metrics/sms/u1/").get_json()["queue_length"] == 1


@pytest.mark.parametrize("query", ["?count=\u00b2", "?count=%C2%B2", "?count=\u0663", "?count=1234567890"])
def test_non_ascii_digits_in_the_query_are_400(client: FlaskClient, query: str) -> None:
    """Issue 8.8: str.isdigit() takes "²" and "٣"; int() does not."""
    enqueue(client)
    assert client.get("/dequeue/sms/" + query).status_code == 400
    assert client.get("/deadletter/sms/?limit=%C2%B2").status_code == 400
    assert client.get("/metrics/sms/?limit=%C2%B2").status_code == 400


def test_metrics_of_a_type_pages(client: FlaskClient) -> None:
    for queue in ("c", "a", "b"):
        enqueue(client, queue_id=queue)
    assert client.get("/metrics/sms/?limit=2").get_json() == {"status": "success", "queue_ids": ["a", "b"], "total": 3}
    assert client.get("/metrics/sms/?limit=2&offset=2").get_json()["queue_ids"] == ["c"]
    assert client.get("/metrics/sms/?limit=0").status_code == 400


def test_unknown_route_and_wrong_method(client: FlaskClient) -> None:
    missing = client.get("/nope/")
    assert (missing.status_code, missing.get_json()["status"]) == (404, "failure")
    wrong = client.put("/dequeue/")
    assert (wrong.status_code, wrong.get_json()["status"]) == (405, "failure")


def test_touch_and_job_status(client: FlaskClient) -> None:
    assert client.get("/job/sms/u1/j1/").status_code == 404
    enqueue(client)
    assert client.get("/job/sms/u1/j1/").get_json()["state"] == "queued"
    assert client.post("/touch/sms/u1/j1/").status_code == 404
    client.get("/dequeue/sms/")
    touched = client.post("/touch/sms/u1/j1/").get_json()
    status = client.get("/job/sms/u1/j1/").get_json()
    assert status == {"status": "success", "state": "active", "expires_at": touched["expires_at"]}


def test_interval(client: FlaskClient) -> None:
    assert client.post("/interval/sms/u1/", json={"interval": 5}).status_code == 404
    enqueue(client)
    assert client.post("/interval/sms/u1/", json={"interval": 5}).get_json() == {"status": "success"}
    assert client.post("/interval/sms/u1/", json={"interval": "5"}).status_code == 400
    assert client.post("/interval/sms/u1/", data=b"{}").status_code == 400


def test_metrics(client: FlaskClient) -> None:
    enqueue(client)
    overall = client.get("/metrics/").get_json()
    assert overall["queue_types"] == ["sms"]
    assert len(overall["enqueue_counts"]) == len(overall["dequeue_counts"]) == 10
    assert sum(overall["enqueue_counts"].values()) == 1
    assert client.get("/metrics/sms/").get_json() == {"status": "success", "queue_ids": ["u1"], "total": 1}
    queue = client.get("/metrics/sms/u1/").get_json()
    assert queue["queue_length"] == 1
    assert sum(queue["enqueue_counts"].values()) == 1
    assert client.get("/metrics/s!s/").status_code == 400


def test_delete_queue(client: FlaskClient) -> None:
    assert client.delete("/deletequeue/sms/u1/").status_code == 404
    enqueue(client, "a")
    enqueue(client, "b")
    client.get("/dequeue/sms/")
    assert client.delete("/deletequeue/sms/u1/").get_json()["deleted"] == 1
    assert client.delete("/deletequeue/sms/u1/", json={"purge_all": "yes"}).status_code == 400
    assert client.delete("/deletequeue/sms/u1/", json={"purge_all": True}).get_json()["deleted"] == 1
    assert client.post("/finish/sms/u1/a/").status_code == 404


def test_dead_letters(client: FlaskClient, app) -> None:
    enqueue(client, "a", requeue_limit=0)
    client.get("/dequeue/sms/")
    loop = RequeueLoop(app.extensions["sharq"])
    wait_for(lambda: loop.run_once() == {"requeued": 0, "dead": 1}, what="the job to expire")
    listing = client.get("/deadletter/sms/").get_json()
    assert listing["total"] == 1
    assert listing["jobs"][0]["payload"] == JOB["payload"]
    assert listing["jobs"][0]["reason"]
    assert client.post("/deadletter/sms/u1/a/retry/").get_json() == {"status": "queued"}
    assert client.get("/dequeue/sms/").get_json()["job_id"] == "a"
    assert client.delete("/deadletter/sms/u1/a/").status_code == 404
    assert client.post("/deadletter/sms/u1/a/retry/").status_code == 404
    assert client.get("/deadletter/sms/?limit=x").status_code == 400


def test_batch_enqueue_and_dequeue(client: FlaskClient) -> None:
    jobs = [{"queue_id": f"u{n % 3}", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(10)]
    response = client.post("/enqueue/sms/", json={"jobs": [*jobs, jobs[0]]})
    results = response.get_json()["results"]
    assert [r["status"] for r in results] == ["queued"] * 10 + ["failure"]
    assert results[-1]["code"] == 409
    got = client.get("/dequeue/sms/?count=50").get_json()
    assert got["status"] == "success"
    assert sorted(job["payload"] for job in got["jobs"]) == list(range(10))
    assert client.get("/dequeue/sms/?count=101").status_code == 400
    assert client.post("/enqueue/sms/", json={"jobs": "x"}).status_code == 400


def test_deep_status(client: FlaskClient) -> None:
    assert client.get("/deepstatus/").get_json() == {"status": "success", "parked": 0}


def test_redis_down_is_503(config: Config) -> None:
    down = dataclasses.replace(
        config.redis, url=f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5, clustered=False
    )
    client = create_app(dataclasses.replace(config, redis=down)).test_client()
    for response in (
        client.get("/deepstatus/"),
        client.post("/enqueue/sms/u1/", json=JOB),
        client.get("/dequeue/"),
    ):
        assert response.status_code == 503
        assert response.get_json()["status"] == "failure"
    assert client.post("/enqueue/sms/u1/", data=b"junk").status_code == 400  # checked before Redis


def test_auth_tokens(config: Config, redis_client) -> None:
    server = dataclasses.replace(config.server, auth_tokens=parse_tokens("s3cret,other"))
    client = create_app(dataclasses.replace(config, server=server)).test_client()
    assert client.get("/").status_code == 200
    assert client.get("/metrics/").status_code == 401
    assert client.get("/metrics/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics/", headers={"Authorization": "Basic s3cret"}).status_code == 401
    assert client.get("/metrics/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/metrics/", headers={"Authorization": "Bearer other"}).status_code == 200


def test_requeue_lock_lets_one_pass_run(app) -> None:
    first, second = RequeueLoop(app.extensions["sharq"]), RequeueLoop(app.extensions["sharq"])
    engine = app.extensions["sharq"]
    assert engine.redis.set(engine.keys.requeue_lock(), first.token, nx=True, px=5000)
    assert second.run_once() is None
    second.stop()  # must not release a lock it does not own
    assert engine.redis.get(engine.keys.requeue_lock()) == first.token.encode()
    first.stop()
    assert engine.redis.get(engine.keys.requeue_lock()) is None
    assert second.run_once() == {"requeued": 0, "dead": 0}


def test_requeue_loop_recognises_its_own_lock(app) -> None:
    """Issue 8 (faults): a lock SET that timed out on the client but ran when Redis
    resumed belongs to this loop; the next pass must run, not wait for the expiry."""
    loop, engine = RequeueLoop(app.extensions["sharq"]), app.extensions["sharq"]
    engine.redis.set(engine.keys.requeue_lock(), loop.token, px=60_000)
    assert loop.run_once() == {"requeued": 0, "dead": 0}
    assert engine.redis.get(engine.keys.requeue_lock()) is None


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (redis_errors.ReadOnlyError("You can't write against a read only replica."), "READONLY"),
        (redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "OOM"),
        (redis_errors.ResponseError("Error running script (call to f_1): @user_script:9: -READONLY You"), "READONLY"),
        (redis_errors.ResponseError("OOM command not allowed when used memory > 'maxmemory'. script: 1a"), "OOM"),
        (redis_errors.MasterDownError("Link with MASTER is down"), "MASTERDOWN"),
        (redis_errors.ResponseError("MASTERDOWN Link with MASTER is down"), "MASTERDOWN"),
        (redis_errors.ClusterDownError("The cluster is down"), "CLUSTERDOWN"),
        (redis_errors.TryAgainError("Multiple keys request during rehashing of slot"), "TRYAGAIN"),
        (redis_errors.ResponseError("CLUSTERDOWN Hash slot not served"), "CLUSTERDOWN"),
        (redis_errors.ResponseError("UNBLOCKED force unblock from blocking operation, instance state"), "UNBLOCKED"),
        (redis_errors.BusyLoadingError("Redis is loading the dataset in memory"), "LOADING"),
        (redis_errors.TimeoutError("Timeout reading from socket"), "timeout"),
        (redis_errors.ResponseError("ERR unknown command 'NOPE'"), None),
        (redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), None),
    ],
)
def test_redis_errors_that_mean_unavailable(error: Exception, reason: str | None) -> None:
    """Issue 8.4: redis-py's classes (which strip the code) and codes inside script errors."""
    assert unavailable_reason(error) == reason


def test_receipts_fail_and_ack_and_take_over_http(client: FlaskClient) -> None:
    """Issue 9 over HTTP: receipts (409 for a stale one), fail, finish batches with ?next."""
    for n in range(4):
        enqueue(client, f"j{n}", requeue_limit=2)
    first = client.get("/dequeue/sms/").get_json()
    failed = client.post("/fail/sms/u1/j0/", json={"receipt": first["receipt"], "error": "upstream 500"})
    assert failed.get_json() == {"status": "success", "state": "queued"}
    again = client.get("/dequeue/sms/").get_json()
    assert (again["job_id"], again["requeues_remaining"]) == ("j0", 1)
    stale = client.post("/finish/sms/u1/j0/", json={"receipt": first["receipt"]})
    assert stale.status_code == 409 and "current delivery" in stale.get_json()["message"]
    assert client.post("/fail/sms/u1/j0/", json={"receipt": again["receipt"], "retry": 5}).status_code == 400
    assert client.get("/job/sms/u1/j0/").get_json()["last_error"] == "upstream 500"
    body = {"jobs": [{"queue_id": "u1", "job_id": "j0", "receipt": again["receipt"]}]}
    batch = client.post("/finish/sms/?next=2", json=body).get_json()
    assert batch["results"] == [{"queue_id": "u1", "job_id": "j0", "status": "success"}]
    assert [job["job_id"] for job in batch["jobs"]] == ["j1", "j2"]
    acks = [{"queue_id": "u1", "job_id": job["job_id"], "receipt": job["receipt"]} for job in batch["jobs"]]
    last = client.post("/finish/sms/?next=5", json={"jobs": acks}).get_json()
    assert [job["job_id"] for job in last["jobs"]] == ["j3"]
    done = client.post("/fail/sms/u1/j3/", json={"error": "bad number", "dead": True}).get_json()
    assert done == {"status": "success", "state": "dead"}
    empty = client.post("/finish/sms/?next=1", json={"jobs": []}).get_json()
    assert empty == {"status": "success", "results": [], "jobs": [], "retry_after_ms": None}
    assert client.post("/finish/sms/", json={"jobs": [{"queue_id": "u1"}]}).status_code == 400
    assert client.get("/dequeue/sms/?wait=31").status_code == 400


def test_tenant_controls_over_http(client: FlaskClient) -> None:
    """Issue 10 over HTTP: limits, pause and resume, the queue views, throttle, delay."""
    put = client.put("/limits/sms/acme/", json={"interval": 60_000, "max_active": 2})
    assert put.get_json()["limits"]["interval"] == {"value": 60_000, "source": "override"}
    assert client.put("/limits/sms/acme/", json={"burts": 2}).status_code == 400
    assert client.put("/limits/sms/acme/", json={"burst": 0}).status_code == 400
    enqueue(client, "a", "acme", interval=500)
    assert client.get("/limits/sms/acme/").get_json()["limits"]["interval"]["source"] == "override"
    assert client.post("/pause/sms/acme/", json={"for_ms": 60_000}).get_json()["paused_until"] > 0
    assert client.get("/dequeue/sms/").status_code == 404
    assert client.post("/resume/sms/acme/").get_json() == {"status": "success"}
    job = client.get("/dequeue/sms/").get_json()
    throttled = client.post(
        "/fail/sms/acme/a/", json={"receipt": job["receipt"], "retry_after_ms": 5000, "throttle": True}
    )
    assert throttled.get_json() == {"status": "success", "state": "queued"}
    info = client.get("/queue/sms/acme/").get_json()
    assert (info["queue_length"], info["paused"], info["limits"]["max_active"]["value"]) == (1, True, 2)
    assert client.post("/pause/sms/").get_json() == {"status": "success", "paused_until": None}
    assert client.post("/resume/sms/").status_code == 200
    assert client.post("/enqueue/sms/later/", json={**JOB, "job_id": "d", "delay_ms": 1000}).get_json() == {
        "status": "scheduled"
    }
    assert client.get("/job/sms/later/d/").get_json()["state"] == "scheduled"
    page = client.get("/queues/sms/?limit=1").get_json()
    assert (page["total"], [q["queue_id"] for q in page["queues"]]) == (2, ["acme"])
    assert client.delete("/limits/sms/acme/").get_json()["limits"]["interval"]["source"] == "last enqueue"
    assert client.post("/pause/sms/acme/", json={"for": 5}).status_code == 400


def test_metrics_negotiate_prometheus(client: FlaskClient, app) -> None:
    """Issue 11 (first part): a Prometheus scrape gets the text exposition, values
    equal to what the store holds after a scripted sequence; curl keeps the JSON."""
    engine = app.extensions["sharq"]
    for n in range(4):
        enqueue(client, f"j{n}", f"u{n % 2}")
    client.post("/enqueue/sms/later/", json={**JOB, "job_id": "d", "delay_ms": 60_000})
    first = client.get("/dequeue/sms/").get_json()
    client.post(f"/finish/sms/{first['queue_id']}/{first['job_id']}/")
    second = client.get("/dequeue/sms/").get_json()
    client.post(f"/fail/sms/{second['queue_id']}/{second['job_id']}/", json={"dead": True})
    client.post("/pause/sms/u0/")
    client.put("/limits/sms/capped/", json={"max_active": 1})
    client.put("/limits/sms/", json={"interval": 1, "burst": 100, "max_active": 50})  # type-wide, loose
    enqueue(client, "c1", "capped")
    enqueue(client, "c2", "capped")
    enqueue(client, "r1", "rated", interval=60_000)
    enqueue(client, "r2", "rated", interval=60_000)
    for _ in range(3):  # u1's last, then one of each: capped is at its cap, rated waits for its rate
        client.get("/dequeue/sms/")
    scrape = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    response = client.get("/metrics/", headers={"Accept": scrape})
    assert response.content_type.startswith("application/openmetrics-text")
    text = response.get_data(as_text=True)
    stats = engine.type_stats("sms")
    assert stats["queues"] == {"ready": 0, "waiting": 1, "paused": 1, "capped": 1, "quota_held": 0}, stats
    for line in (
        'sharq_queues{queue_type="sms",state="capped"} 1.0',
        'sharq_queues{queue_type="sms",state="waiting"} 1.0',
        'sharq_jobs{queue_type="sms",state="queued"} 3.0',
        'sharq_jobs{queue_type="sms",state="scheduled"} 1.0',
        'sharq_jobs{queue_type="sms",state="dead"} 1.0',
        'sharq_jobs_enqueued_total{queue_type="sms"} 9.0',
        'sharq_jobs_dequeued_total{queue_type="sms"} 5.0',
        'sharq_jobs_finished_total{queue_type="sms"} 1.0',
        'sharq_jobs_failed_total{queue_type="sms"} 1.0',
        'sharq_jobs_dead_total{queue_type="sms"} 1.0',
        'sharq_queues{queue_type="sms",state="paused"} 1.0',
        'sharq_oldest_queued_job_age_seconds{queue_type="sms"}',
        'sharq_type_limit{limit="interval_ms",queue_type="sms"} 1.0',
        'sharq_type_limit{limit="max_active",queue_type="sms"} 50.0',
        f'sharq_type_active_slots{{queue_type="sms"}} {stats["jobs"]["active"]}.0',
        'sharq_type_shards{queue_type="sms"} 1.0',
    ):
        assert line in text, line
    assert engine.type_stats("sms")["jobs"]["queued"] == 3
    plain = client.get("/metrics/?format=prometheus")
    assert plain.content_type.startswith("text/plain") and "sharq_jobs{" in plain.get_data(as_text=True)
    assert client.get("/metrics/", headers={"Accept": "*/*"}).get_json()["status"] == "success"


# -- found by review (issue 14) -------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "name"),
    [("next=1&wait=abc", "wait"), ("next=1&wait=31", "wait"), ("next=101", "next"), ("next=x&wait=1", "next")],
)
def test_ack_and_take_checks_every_parameter_before_acting(client: FlaskClient, query: str, name: str) -> None:
    """A refused ack-and-take applied nothing and took nothing (it used to ack, take
    a job nobody received, then answer 400)."""
    for job_id in ("a", "b"):
        enqueue(client, job_id, requeue_limit=0)
    job = client.get("/dequeue/sms/").get_json()
    ack = {"jobs": [{"queue_id": "u1", "job_id": job["job_id"], "receipt": job["receipt"]}]}
    response = client.post(f"/finish/sms/?{query}", json=ack)
    assert response.status_code == 400
    assert name in response.get_json()["message"]
    assert client.get(f"/job/sms/u1/{job['job_id']}/").get_json()["state"] == "active"  # not acked
    assert client.get("/job/sms/u1/b/").get_json()["state"] == "queued"  # not taken


@pytest.mark.parametrize(
    ("query", "name"), [("count=0&wait=5", "count"), ("count=101&wait=5", "count"), ("count=2&wait=31", "wait")]
)
def test_a_bad_long_poll_is_refused_before_it_parks(client: FlaskClient, app, query: str, name: str) -> None:
    """Not after standing in line behind a parked request (it used to wait its turn)."""
    longpoll = app.extensions["sharq_longpoll"]
    ahead = threading.Thread(target=longpoll.take, args=("sms", 1, 10), daemon=True)
    ahead.start()
    wait_for(lambda: longpoll.parked == 1, what="a request parked ahead")
    response = client.get(f"/dequeue/sms/?{query}")
    assert response.status_code == 400
    assert name in response.get_json()["message"]
    assert longpoll.parked == 1  # answered while the one ahead still waits
    enqueue(client)  # lets the one ahead go
    ahead.join(5)


def test_a_paused_type_says_so(client: FlaskClient) -> None:
    enqueue(client)
    assert client.post("/pause/sms/").status_code == 200
    response = client.get("/dequeue/sms/")
    assert response.status_code == 404
    assert response.get_json() == {
        "status": "failure", "message": "queue type is paused until resumed", "retry_after_ms": None, "paused": True,
    }  # fmt: skip
    client.post("/resume/sms/")
    assert client.get("/dequeue/sms/").status_code == 200


def test_touch_with_a_stale_receipt_is_409(client: FlaskClient, app, redis_client) -> None:
    enqueue(client)
    stale = client.get("/dequeue/sms/").get_json()["receipt"]
    app.extensions["sharq"].release("sms", app.extensions["sharq"].take("sms", 1)[0])  # nothing more active
    client.post("/fail/sms/u1/j1/", json={"receipt": stale})  # back to its queue
    client.get("/dequeue/sms/")  # a new delivery
    response = client.post("/touch/sms/u1/j1/", json={"receipt": stale})
    assert response.status_code == 409, response.get_json()


@pytest.mark.parametrize("query", ["count=1&count=abc", "wait=0&wait=5"])
def test_a_query_parameter_given_twice_is_refused(client: FlaskClient, query: str) -> None:
    """Found by review: the first value was read and the second ignored, while the
    access-log filter read them all."""
    enqueue(client)
    response = client.get(f"/dequeue/sms/?{query}")
    assert response.status_code == 400
    assert "given more than once" in response.get_json()["message"]
    assert client.get("/job/sms/u1/j1/").get_json()["state"] == "queued"


def test_a_bad_receipt_on_a_single_finish_names_the_field(client: FlaskClient) -> None:
    """Found by review: it answered as if the job were entry 0 of a batch."""
    response = client.post("/finish/sms/u1/j1/", json={"receipt": "x"})
    assert (response.status_code, response.get_json()["message"]) == (
        400, "receipt must be a receipt a dequeue handed out",
    )  # fmt: skip
