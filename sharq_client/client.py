"""`Client`: every SharQ endpoint as a method, over keep-alive HTTP connections.

Built on urllib3 (the pooling library under requests: thread-safe connection
pools, keep-alive, a timeout on every call, no hidden retries) without requests'
per-call overhead, which on a small machine cost as much as SharQ's own work.
Importing it needs neither Flask nor gevent.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import urllib3
from urllib3.connection import HTTPConnection

from .errors import NotFound, SharqClientError, Unavailable, error_for


@dataclass(frozen=True)
class Job:
    """One delivered job. `receipt` names this delivery: finish, touch and fail
    with it act only while no other delivery of the job has begun."""

    queue_type: str
    queue_id: str
    job_id: str
    payload: Any
    receipt: str
    requeues_remaining: int
    current_queue_length: int
    dequeued_at: int
    expires_at: int

    @classmethod
    def from_json(cls, queue_type: str, data: dict[str, Any]) -> Job:
        fields = ("queue_id", "job_id", "payload", "receipt", "requeues_remaining", "current_queue_length")
        return cls(queue_type, *(data[name] for name in fields), data["dequeued_at"], data["expires_at"])

    def ack(self) -> dict[str, str]:
        """This job as an entry of a finish batch."""
        return {"queue_id": self.queue_id, "job_id": self.job_id, "receipt": self.receipt}


@dataclass(frozen=True)
class Batch:
    """What an ack-and-take call answered: one result per finished job, the jobs
    taken, and when none was, the ms until one is due (None: none queued)."""

    results: list[dict[str, Any]]
    jobs: list[Job]
    retry_after_ms: int | None


class Client:
    """A SharQ server at `url`; `token` when it requires one; `timeout` (s) for
    every call (a long poll gets its wait on top)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._opened: weakref.WeakSet[HTTPConnection] = weakref.WeakSet()
        self._opened_lock = threading.Lock()
        self.pool = self._pool_manager()
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def clone(self) -> Client:
        """A client of its own (its own connections) for another thread."""
        return Client(self.url, self.token, self.timeout)

    def close(self) -> None:
        """Close every connection, even one a request (a long poll) still waits
        on: that request fails with Unavailable, and the server, seeing its
        client gone, hands it nothing. The client may be used again."""
        with self._opened_lock:
            opened = list(self._opened)
        for connection in opened:
            if connection.sock is not None:
                with contextlib.suppress(OSError):  # closed already
                    connection.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
        self.pool.clear()

    def _pool_manager(self) -> urllib3.PoolManager:
        """urllib3's pools, whose connections this client remembers as they
        connect: closing a pool closes only its idle connections."""
        manager = urllib3.PoolManager(num_pools=2, maxsize=8, retries=False)
        manager.pool_classes_by_scheme = {
            scheme: type(pool.__name__, (pool,), {"ConnectionCls": self._remembered(pool.ConnectionCls)})
            for scheme, pool in manager.pool_classes_by_scheme.items()
        }
        return manager

    def _remembered(self, base: type[HTTPConnection]) -> type[HTTPConnection]:
        client = self

        class Connection(base):  # type: ignore[valid-type, misc]
            def connect(self) -> None:
                super().connect()
                with client._opened_lock:
                    client._opened.add(self)

        return Connection

    # -- producers -------------------------------------------------------------------

    def enqueue(
        self,
        queue_type: str,
        queue_id: str,
        job_id: str,
        payload: Any,
        interval: int,
        requeue_limit: int | None = None,
        max_queued_length: int | None = None,
        delay_ms: int | None = None,
        not_before: int | None = None,
    ) -> str:
        """Queue one job, or with `delay_ms` (from now) or `not_before` (epoch ms, on
        the server's Redis clock) schedule it; returns "queued" or "scheduled".
        DuplicateJob (with `.state`) or QueueFull when refused."""
        body = {"job_id": job_id, "payload": payload, "interval": interval}
        optional = _given(requeue_limit=requeue_limit, max_queued_length=max_queued_length)
        body |= optional | _given(delay_ms=delay_ms, not_before=not_before)
        return self._call("POST", f"/enqueue/{queue_type}/{queue_id}/", body)["status"]

    def enqueue_many(self, queue_type: str, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Up to 100 jobs (each with queue_id, job_id, payload, interval...) in one
        atomic call; one result each."""
        return self._call("POST", f"/enqueue/{queue_type}/", {"jobs": jobs})["results"]

    # -- workers -----------------------------------------------------------------------

    def dequeue(self, queue_type: str = "default", count: int = 1, wait: int = 0) -> list[Job]:
        """Up to `count` jobs, waiting up to `wait` s (0-30) for one; [] when none."""
        query = {"count": count, "wait": wait}
        try:
            data = self._call("GET", f"/dequeue/{queue_type}/", query=query, extra_timeout=wait)
        except NotFound:
            return []
        return [Job.from_json(queue_type, job) for job in data["jobs"]]

    def finish(self, queue_type: str, queue_id: str, job_id: str, receipt: str | None = None) -> None:
        """Acknowledge a job; NotFound when it is not active, StaleReceipt when the
        receipt names an earlier delivery."""
        self._call("POST", f"/finish/{queue_type}/{queue_id}/{job_id}/", _given(receipt=receipt))

    def finish_many(self, queue_type: str, jobs: list[Job | dict[str, Any]], take: int = 0, wait: int = 0) -> Batch:
        """Finish up to 100 jobs atomically and, with `take`, take up to that many
        in the same call (waiting up to `wait` s when none is ready): ack-and-take."""
        acks = [job.ack() if isinstance(job, Job) else job for job in jobs]
        query = {"next": take, "wait": wait} if take else None
        data = self._call("POST", f"/finish/{queue_type}/", {"jobs": acks}, query=query, extra_timeout=wait)
        taken = [Job.from_json(queue_type, job) for job in data.get("jobs", [])]
        return Batch(data["results"], taken, data.get("retry_after_ms"))

    def touch(self, queue_type: str, queue_id: str, job_id: str, receipt: str | None = None) -> int:
        """Heartbeat: push the job's expiry out; returns the new expiry (epoch ms)."""
        path = f"/touch/{queue_type}/{queue_id}/{job_id}/"
        return self._call("POST", path, _given(receipt=receipt))["expires_at"]

    def fail(
        self,
        queue_type: str,
        queue_id: str,
        job_id: str,
        receipt: str | None = None,
        error: str | None = None,
        retry_after_ms: int | None = None,
        dead: bool = False,
        throttle: bool = False,
    ) -> str:
        """Report a failure: back to the front of its queue now (or after
        `retry_after_ms`), or dead; with `throttle` (the upstream said 429) back to
        the front uncounted and the queue paused `retry_after_ms`. Returns the
        job's state (queued, retrying, dead)."""
        body = _given(receipt=receipt, error=error, retry_after_ms=retry_after_ms)
        body |= ({"dead": True} if dead else {}) | ({"throttle": True} if throttle else {})
        return self._call("POST", f"/fail/{queue_type}/{queue_id}/{job_id}/", body)["state"]

    # -- administration and views ------------------------------------------------------

    def job_status(self, queue_type: str, queue_id: str, job_id: str) -> dict[str, Any]:
        """The job's state (queued, scheduled, active, retrying, dead, finished) and
        what goes with it; NotFound when the queue does not know it."""
        return self._call("GET", f"/job/{queue_type}/{queue_id}/{job_id}/")

    job = job_status  # its first name, kept

    def interval(self, queue_type: str, queue_id: str, interval: int) -> None:
        self._call("POST", f"/interval/{queue_type}/{queue_id}/", {"interval": interval})

    def metrics(self, queue_type: str | None = None, queue_id: str | None = None, **page: int) -> dict[str, Any]:
        path = "/metrics/" + "".join(f"{part}/" for part in (queue_type, queue_id) if part)
        return self._call("GET", path, query=page or None)

    def delete_queue(self, queue_type: str, queue_id: str, purge_all: bool = False) -> int:
        """Delete the queue's queued jobs (with `purge_all` its active ones too)."""
        return self._call("DELETE", f"/deletequeue/{queue_type}/{queue_id}/", {"purge_all": purge_all})["deleted"]

    def dead_letters(self, queue_type: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return self._call("GET", f"/deadletter/{queue_type}/", query={"limit": limit, "offset": offset})

    def retry_dead_letter(self, queue_type: str, queue_id: str, job_id: str) -> None:
        self._call("POST", f"/deadletter/{queue_type}/{queue_id}/{job_id}/retry/")

    def delete_dead_letter(self, queue_type: str, queue_id: str, job_id: str) -> None:
        self._call("DELETE", f"/deadletter/{queue_type}/{queue_id}/{job_id}/")

    def set_limits(self, queue_type: str, queue_id: str, **limits: int | None) -> dict[str, Any]:
        """interval=, burst=, max_active=: a value sets one, None clears it."""
        return self._call("PUT", f"/limits/{queue_type}/{queue_id}/", limits)["limits"]

    def limits(self, queue_type: str, queue_id: str) -> dict[str, Any]:
        return self._call("GET", f"/limits/{queue_type}/{queue_id}/")["limits"]

    def clear_limits(self, queue_type: str, queue_id: str) -> None:
        self._call("DELETE", f"/limits/{queue_type}/{queue_id}/")

    def set_type_limits(self, queue_type: str, **limits: int | None) -> dict[str, Any]:
        """The type-wide interval=, burst=, max_active= on top of each queue's: a
        value sets one, None clears it."""
        return self._call("PUT", f"/limits/{queue_type}/", limits)

    def type_limits(self, queue_type: str) -> dict[str, Any]:
        return self._call("GET", f"/limits/{queue_type}/")

    def clear_type_limits(self, queue_type: str) -> dict[str, Any]:
        return self._call("DELETE", f"/limits/{queue_type}/")

    def set_type_settings(self, queue_type: str, shards: int) -> dict[str, Any]:
        """Spread the type over `shards` hash tags (Conflict while it holds anything)."""
        return self._call("PUT", f"/types/{queue_type}/", {"shards": shards})

    def type_settings(self, queue_type: str) -> dict[str, Any]:
        return self._call("GET", f"/types/{queue_type}/")

    def pause(self, queue_type: str, queue_id: str | None = None, for_ms: int | None = None) -> int | None:
        """Pause a queue (or the whole type); returns when it ends (None: until resumed)."""
        path = f"/pause/{queue_type}/" + (f"{queue_id}/" if queue_id else "")
        return self._call("POST", path, _given(for_ms=for_ms))["paused_until"]

    def resume(self, queue_type: str, queue_id: str | None = None) -> None:
        self._call("POST", f"/resume/{queue_type}/" + (f"{queue_id}/" if queue_id else ""))

    def queue_info(self, queue_type: str, queue_id: str) -> dict[str, Any]:
        """One queue now: lengths, effective limits, pause, next ready, oldest job's age."""
        return self._call("GET", f"/queue/{queue_type}/{queue_id}/")

    queue = queue_info  # its first name, kept

    def type_stats(self, queue_type: str) -> dict[str, Any]:
        """One type's counters since it began, jobs and queues by state, and its
        per-minute counts."""
        return self._call("GET", f"/stats/{queue_type}/")

    def queues(self, queue_type: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return self._call("GET", f"/queues/{queue_type}/", query={"limit": limit, "offset": offset})

    def deep_status(self) -> dict[str, Any]:
        return self._call("GET", "/deepstatus/")

    # -- the one request path --------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        extra_timeout: float = 0,
    ) -> dict[str, Any]:
        """One request; the JSON answer, or the exception its failure maps to."""
        url = self.url + path + ("?" + urlencode(query) if query else "")
        try:
            response = self.pool.request(
                method,
                url,
                body=None if body is None else json.dumps(body).encode(),
                headers=self.headers,
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout + extra_timeout),
            )
        except urllib3.exceptions.HTTPError as error:
            raise Unavailable(f"SharQ at {self.url} did not answer: {error}", status=None) from error
        try:
            data = json.loads(response.data)
        except ValueError:
            data = {"message": response.data[:200].decode(errors="replace")}
        if response.status >= 400:
            raise error_for(response.status, data if isinstance(data, dict) else {})
        if not isinstance(data, dict):
            raise SharqClientError(f"unexpected answer from {path}", response.status)
        return data


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that were given (not None)."""
    return {name: value for name, value in fields.items() if value is not None}
