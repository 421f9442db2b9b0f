"""The real `sharq-server` CLI: 2 gunicorn gevent workers and its embedded Redis."""

from __future__ import annotations

import pytest

from tests.support import ServerProcess, processes_mentioning, wait_for

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
