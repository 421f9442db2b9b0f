"""`Client`: every SharQ endpoint as a method, over keep-alive HTTP connections.

Built on urllib3 (the pooling library under requests: thread-safe connection
pools, keep-alive, a timeout on every call, no hidden retries) without requests'
per-call overhead, which on a small machine cost as much as SharQ's own work.
Importing it needs neither Flask nor gevent.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection

from . import calls
from .calls import Call
from .errors import Unavailable
from .jobs import Batch, Job


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
        self.headers = calls.headers(token)

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
        expire_at: int | None = None,
        ttl_ms: int | None = None,
        campaign: str | None = None,
        cost: int | None = None,
        priority: int | None = None,
    ) -> str:
        """Queue one job, or with `delay_ms` (from now) or `not_before` (epoch ms, on
        the server's Redis clock) schedule it; returns "queued" or "scheduled".
        With `expire_at` (epoch ms) or `ttl_ms` (from now) it is never handed out
        after that (it expires into the dead letters). With `campaign` it counts in
        that campaign of the type. `cost`: the units it counts against every rate
        limit and quota (1 by default). With `priority` (0-9, default 0) it is handed
        out before every job of a lower priority in its queue. DuplicateJob (with
        `.state`), QueueFull, or Conflict (its campaign was cancelled) when refused."""
        args = (requeue_limit, max_queued_length, delay_ms, not_before, expire_at, ttl_ms, campaign, cost, priority)
        return self._send(calls.enqueue(queue_type, queue_id, job_id, payload, interval, *args))

    def enqueue_many(self, queue_type: str, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Up to 100 jobs (each with queue_id, job_id, payload, interval...) in one
        atomic call; one result each."""
        return self._send(calls.enqueue_many(queue_type, jobs))

    # -- workers -----------------------------------------------------------------------

    def dequeue(self, queue_type: str = "default", count: int = 1, wait: int = 0) -> list[Job]:
        """Up to `count` jobs, waiting up to `wait` s (0-30) for one; [] when none."""
        return self._send(calls.dequeue(queue_type, count, wait))

    def finish(
        self, queue_type: str, queue_id: str, job_id: str, receipt: str | None = None, cost: int | None = None
    ) -> None:
        """Acknowledge a job; NotFound when it is not active, StaleReceipt when the
        receipt names an earlier delivery."""
        self._send(calls.finish(queue_type, queue_id, job_id, receipt, cost))

    def finish_many(self, queue_type: str, jobs: list[Job | dict[str, Any]], take: int = 0, wait: int = 0) -> Batch:
        """Finish up to 100 jobs atomically and, with `take`, take up to that many
        in the same call (waiting up to `wait` s when none is ready): ack-and-take."""
        return self._send(calls.finish_many(queue_type, jobs, take, wait))

    def touch(self, queue_type: str, queue_id: str, job_id: str, receipt: str | None = None) -> int:
        """Heartbeat: push the job's expiry out; returns the new expiry (epoch ms)."""
        return self._send(calls.touch(queue_type, queue_id, job_id, receipt))

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
        release: bool = False,
        cost: int | None = None,
    ) -> str:
        """Report a failure: back to the front of its queue now (or after
        `retry_after_ms`), or dead; with `throttle` (the upstream said 429) back to
        the front uncounted and the queue paused `retry_after_ms`; with `release`
        (this worker is stopping) back to the front at once, uncounted. Returns the
        job's state (queued, retrying, dead)."""
        args = (receipt, error, retry_after_ms, dead, throttle, release, cost)
        return self._send(calls.fail(queue_type, queue_id, job_id, *args))

    # -- administration and views ------------------------------------------------------

    def job_status(self, queue_type: str, queue_id: str, job_id: str) -> dict[str, Any]:
        """The job's state (queued, scheduled, active, retrying, dead, finished) and
        what goes with it; NotFound when the queue does not know it."""
        return self._send(calls.job_status(queue_type, queue_id, job_id))

    job = job_status  # its first name, kept

    def interval(self, queue_type: str, queue_id: str, interval: int) -> None:
        self._send(calls.interval(queue_type, queue_id, interval))

    def metrics(self, queue_type: str | None = None, queue_id: str | None = None, **page: int) -> dict[str, Any]:
        return self._send(calls.metrics(queue_type, queue_id, **page))

    def delete_queue(self, queue_type: str, queue_id: str, purge_all: bool = False) -> int:
        """Delete the queue's queued jobs (with `purge_all` its active ones too)."""
        return self._send(calls.delete_queue(queue_type, queue_id, purge_all))

    def dead_letters(self, queue_type: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return self._send(calls.dead_letters(queue_type, limit, offset))

    def retry_dead_letter(
        self, queue_type: str, queue_id: str, job_id: str, expire_at: int | None = None, ttl_ms: int | None = None
    ) -> None:
        """Requeue a dead letter; it keeps its deadline unless `expire_at` or `ttl_ms` gives a new one."""
        self._send(calls.retry_dead_letter(queue_type, queue_id, job_id, expire_at, ttl_ms))

    def delete_dead_letter(self, queue_type: str, queue_id: str, job_id: str) -> None:
        self._send(calls.delete_dead_letter(queue_type, queue_id, job_id))

    def set_limits(self, queue_type: str, queue_id: str, **limits: int | None) -> dict[str, Any]:
        """interval=, burst=, max_active=, quotas=, weight=: a value sets one, None clears it."""
        return self._send(calls.set_limits(queue_type, queue_id, **limits))

    def limits(self, queue_type: str, queue_id: str) -> dict[str, Any]:
        return self._send(calls.limits(queue_type, queue_id))

    def clear_limits(self, queue_type: str, queue_id: str) -> None:
        self._send(calls.clear_limits(queue_type, queue_id))

    def set_type_limits(self, queue_type: str, **limits: int | None) -> dict[str, Any]:
        """The type-wide interval=, burst=, max_active= on top of each queue's: a
        value sets one, None clears it."""
        return self._send(calls.set_type_limits(queue_type, **limits))

    def type_limits(self, queue_type: str) -> dict[str, Any]:
        return self._send(calls.type_limits(queue_type))

    def clear_type_limits(self, queue_type: str) -> dict[str, Any]:
        return self._send(calls.clear_type_limits(queue_type))

    def set_type_settings(self, queue_type: str, shards: int) -> dict[str, Any]:
        """Spread the type over `shards` hash tags (Conflict while it holds anything)."""
        return self._send(calls.set_type_settings(queue_type, shards))

    def type_settings(self, queue_type: str) -> dict[str, Any]:
        return self._send(calls.type_settings(queue_type))

    def pause(self, queue_type: str, queue_id: str | None = None, for_ms: int | None = None) -> int | None:
        """Pause a queue (or the whole type); returns when it ends (None: until resumed)."""
        return self._send(calls.pause(queue_type, queue_id, for_ms))

    def resume(self, queue_type: str, queue_id: str | None = None) -> None:
        self._send(calls.resume(queue_type, queue_id))

    def queue_info(self, queue_type: str, queue_id: str) -> dict[str, Any]:
        """One queue now: lengths, effective limits, pause, next ready, oldest job's age."""
        return self._send(calls.queue_info(queue_type, queue_id))

    queue = queue_info  # its first name, kept

    def type_stats(self, queue_type: str) -> dict[str, Any]:
        """One type's counters since it began, jobs and queues by state, and its
        per-minute counts."""
        return self._send(calls.type_stats(queue_type))

    def autoscale(self, queue_type: str) -> dict[str, Any]:
        """How many jobs of the type could usefully run at once now (`wanted_concurrency`),
        and the inputs it came from."""
        return self._send(calls.autoscale(queue_type))

    def queues(self, queue_type: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return self._send(calls.queues(queue_type, limit, offset))

    # -- campaigns -----------------------------------------------------------------------

    def campaign(self, queue_type: str, campaign: str, wait: int = 0) -> dict[str, Any]:
        """A campaign's counts (total, queued, scheduled, active, finished, dead,
        expired, cancelled), `done`, started_at and ended_at; with `wait` (s, up to
        30) answered as soon as it is done. NotFound when unknown."""
        return self._send(calls.campaign(queue_type, campaign, wait))

    def campaigns(self, queue_type: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """A page of the type's campaigns, newest first."""
        return self._send(calls.campaigns(queue_type, limit, offset))

    def cancel_campaign(self, queue_type: str, campaign: str) -> dict[str, Any]:
        """Remove its queued and scheduled jobs (counted cancelled) and refuse new
        ones (Conflict); active ones end as they would. Returns the counts."""
        return self._send(calls.cancel_campaign(queue_type, campaign))

    def on_done(
        self, queue_type: str, campaign: str, target_type: str, target_queue: str, payload: Any = None
    ) -> dict[str, Any]:
        """Once the campaign is done, enqueue one job `campaign-done.<campaign>` into
        target_type/target_queue, its payload holding `payload` and the final counts."""
        return self._send(calls.on_done(queue_type, campaign, target_type, target_queue, payload))

    def deep_status(self) -> dict[str, Any]:
        return self._send(calls.deep_status())

    # -- the one request path --------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        extra_timeout: float = 0,
    ) -> dict[str, Any]:
        """Any request; the JSON answer (for what no method covers)."""
        return self._send(Call(method, path, body, query, extra_timeout, read=lambda data: data))

    def _send(self, call: Call) -> Any:
        """One request; the call's result, or the exception its failure maps to."""
        try:
            response = self.pool.request(
                call.method,
                self.url + call.target(),
                body=call.content(),
                headers=self.headers,
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout + call.wait),
            )
        except urllib3.exceptions.HTTPError as error:
            raise Unavailable(f"SharQ at {self.url} did not answer: {error}", status=None) from error
        return call.answer(response.status, response.data)
