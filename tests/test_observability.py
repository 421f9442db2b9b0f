"""Issue 23: what monitoring sees. A drained type keeps its figures; a Redis outage
still serves the process' own metrics; every gunicorn worker's counters are summed
in each scrape, even when gunicorn is run directly."""

from __future__ import annotations

import dataclasses

import pytest
from flask.testing import FlaskClient

from sharq_core import Config, SharQ
from sharq_server import create_app
from tests.support import Clock

JOB = {"job_id": "j1", "payload": 1, "interval": 0}
HOUR_MS = 3_600_000


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
