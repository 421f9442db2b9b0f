"""`AsyncClient`: `Client` for asyncio services (FastAPI and the like).

The same methods, arguments, answers and exceptions as `Client`, awaited. Built
on httpx (the extra `sharq-client[async]`): the asyncio HTTP client that
FastAPI's own TestClient uses, with connect and read timeouts apart as urllib3's,
a pool of keep-alive connections, and a request that closes its connection when
its task is cancelled. Importing it needs neither Flask nor gevent.

    async with AsyncClient("http://127.0.0.1:8080") as client:
        await client.enqueue("sms", "user001", "j1", {"to": "+15550100"}, interval=1000)
        jobs = await client.dequeue("sms", wait=20)

Cancelling a long-poll `dequeue` (a task's `cancel()`, `asyncio.timeout`) closes
its connection: the server then hands that request nothing, and a job that came
meanwhile stays queued for the next dequeue.
"""

from __future__ import annotations

from typing import Any

try:
    import httpx
except ImportError as missing:  # an optional extra
    raise ImportError("sharq_client.AsyncClient needs httpx: pip install 'sharq-client[async]'") from missing

from . import calls
from .calls import Call
from .errors import Unavailable
from .jobs import Batch, Job


class AsyncClient:
    """A SharQ server at `url`; `token` when it requires one; `timeout` (s) for
    every call (a long poll gets its wait on top); up to `max_connections` at
    once (each waiting long poll holds one). Use it in `async with` (or `await
    close()`), within one event loop."""

    def __init__(
        self, url: str, token: str | None = None, timeout: float = 10.0, *, max_connections: int = 100
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.max_connections = max_connections
        self.http = self._pool()

    def _pool(self) -> httpx.AsyncClient:
        """httpx's client: the pool of keep-alive connections, no proxies from the environment."""
        return httpx.AsyncClient(
            base_url=self.url,
            headers=calls.headers(self.token),
            limits=httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections),
            trust_env=False,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def clone(self) -> AsyncClient:
        """A client of its own (its own connections)."""
        return AsyncClient(self.url, self.token, self.timeout, max_connections=self.max_connections)

    async def close(self) -> None:
        """Close every connection, even one a request (a long poll) still waits on:
        that request fails with Unavailable, and the server, seeing its client gone,
        hands it nothing. The client may be used again."""
        http, self.http = self.http, self._pool()
        await http.aclose()

    # -- producers -------------------------------------------------------------------

    async def enqueue(
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
        """Queue one job, or with `delay_ms` (from now) or `not_before` (epoch ms)
        schedule it; with `expire_at` or `ttl_ms` never hand it out after that;
        returns "queued" or "scheduled". With `campaign` it counts in that campaign
        of the type. `cost`: the units it counts against every limit (1 by default);
        with `priority` (0-9) it goes before every lower one in its queue.
        DuplicateJob (with `.state`), QueueFull, or Conflict (its campaign was
        cancelled) when refused."""
        args = (requeue_limit, max_queued_length, delay_ms, not_before, expire_at, ttl_ms, campaign, cost, priority)
        call = calls.enqueue(queue_type, queue_id, job_id, payload, interval, *args)
        return await self._send(call)

    async def enqueue_many(self, queue_type: str, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Up to 100 jobs in one atomic call; one result each."""
        return await self._send(calls.enqueue_many(queue_type, jobs))

    # -- workers -----------------------------------------------------------------------

    async def dequeue(self, queue_type: str = "default", count: int = 1, wait: int = 0) -> list[Job]:
        """Up to `count` jobs, waiting up to `wait` s (0-30) for one; [] when none.
        Cancelled while it waits, it takes nothing."""
        return await self._send(calls.dequeue(queue_type, count, wait))

    async def finish(
        self, queue_type: str, queue_id: str, job_id: str, receipt: str | None = None, cost: int | None = None
    ) -> None:
        """Acknowledge a job; NotFound when it is not active, StaleReceipt when the
        receipt names an earlier delivery."""
        await self._send(calls.finish(queue_type, queue_id, job_id, receipt, cost))

    async def finish_many(
        self, queue_type: str, jobs: list[Job | dict[str, Any]], take: int = 0, wait: int = 0
    ) -> Batch:
        """Finish up to 100 jobs atomically and, with `take`, take up to that many
        in the same call (ack-and-take)."""
        return await self._send(calls.finish_many(queue_type, jobs, take, wait))

    async def touch(self, queue_type: str, queue_id: str, job_id: str, receipt: str | None = None) -> int:
        """Heartbeat: push the job's expiry out; returns the new expiry (epoch ms)."""
        return await self._send(calls.touch(queue_type, queue_id, job_id, receipt))

    async def fail(
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
        """Report a failure as `Client.fail` does; returns the job's state."""
        args = (receipt, error, retry_after_ms, dead, throttle, release, cost)
        call = calls.fail(queue_type, queue_id, job_id, *args)
        return await self._send(call)

    # -- administration and views ------------------------------------------------------

    async def job_status(self, queue_type: str, queue_id: str, job_id: str) -> dict[str, Any]:
        """The job's state and what goes with it; NotFound when the queue does not know it."""
        return await self._send(calls.job_status(queue_type, queue_id, job_id))

    job = job_status

    async def interval(self, queue_type: str, queue_id: str, interval: int) -> None:
        await self._send(calls.interval(queue_type, queue_id, interval))

    async def metrics(self, queue_type: str | None = None, queue_id: str | None = None, **page: int) -> dict[str, Any]:
        return await self._send(calls.metrics(queue_type, queue_id, **page))

    async def delete_queue(self, queue_type: str, queue_id: str, purge_all: bool = False) -> int:
        """Delete the queue's queued jobs (with `purge_all` its active ones too)."""
        return await self._send(calls.delete_queue(queue_type, queue_id, purge_all))

    async def dead_letters(self, queue_type: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return await self._send(calls.dead_letters(queue_type, limit, offset))

    async def retry_dead_letter(
        self, queue_type: str, queue_id: str, job_id: str, expire_at: int | None = None, ttl_ms: int | None = None
    ) -> None:
        """Requeue a dead letter; it keeps its deadline unless `expire_at` or `ttl_ms` gives a new one."""
        await self._send(calls.retry_dead_letter(queue_type, queue_id, job_id, expire_at, ttl_ms))

    async def delete_dead_letter(self, queue_type: str, queue_id: str, job_id: str) -> None:
        await self._send(calls.delete_dead_letter(queue_type, queue_id, job_id))

    async def set_limits(self, queue_type: str, queue_id: str, **limits: int | None) -> dict[str, Any]:
        """interval=, burst=, max_active=, quotas=, weight=: a value sets one, None clears it."""
        return await self._send(calls.set_limits(queue_type, queue_id, **limits))

    async def limits(self, queue_type: str, queue_id: str) -> dict[str, Any]:
        return await self._send(calls.limits(queue_type, queue_id))

    async def clear_limits(self, queue_type: str, queue_id: str) -> None:
        await self._send(calls.clear_limits(queue_type, queue_id))

    async def set_type_limits(self, queue_type: str, **limits: int | None) -> dict[str, Any]:
        """The type-wide interval=, burst=, max_active= on top of each queue's: a
        value sets one, None clears it."""
        return await self._send(calls.set_type_limits(queue_type, **limits))

    async def type_limits(self, queue_type: str) -> dict[str, Any]:
        return await self._send(calls.type_limits(queue_type))

    async def clear_type_limits(self, queue_type: str) -> dict[str, Any]:
        return await self._send(calls.clear_type_limits(queue_type))

    async def set_type_settings(self, queue_type: str, shards: int) -> dict[str, Any]:
        """Spread the type over `shards` hash tags (Conflict while it holds anything)."""
        return await self._send(calls.set_type_settings(queue_type, shards))

    async def type_settings(self, queue_type: str) -> dict[str, Any]:
        return await self._send(calls.type_settings(queue_type))

    async def pause(self, queue_type: str, queue_id: str | None = None, for_ms: int | None = None) -> int | None:
        """Pause a queue (or the whole type); returns when it ends (None: until resumed)."""
        return await self._send(calls.pause(queue_type, queue_id, for_ms))

    async def resume(self, queue_type: str, queue_id: str | None = None) -> None:
        await self._send(calls.resume(queue_type, queue_id))

    async def queue_info(self, queue_type: str, queue_id: str) -> dict[str, Any]:
        """One queue now: lengths, effective limits, pause, next ready, oldest job's age."""
        return await self._send(calls.queue_info(queue_type, queue_id))

    queue = queue_info

    async def type_stats(self, queue_type: str) -> dict[str, Any]:
        """One type's counters since it began, jobs and queues by state, per-minute counts."""
        return await self._send(calls.type_stats(queue_type))

    async def autoscale(self, queue_type: str) -> dict[str, Any]:
        """How many jobs of the type could usefully run at once now, and its inputs."""
        return await self._send(calls.autoscale(queue_type))

    async def queues(self, queue_type: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return await self._send(calls.queues(queue_type, limit, offset))

    # -- campaigns -----------------------------------------------------------------------

    async def campaign(self, queue_type: str, campaign: str, wait: int = 0) -> dict[str, Any]:
        """A campaign's counts (total, queued, scheduled, active, finished, dead,
        expired, cancelled), `done`, started_at and ended_at; with `wait` (s, up to
        30) answered as soon as it is done. NotFound when unknown."""
        return await self._send(calls.campaign(queue_type, campaign, wait))

    async def campaigns(self, queue_type: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """A page of the type's campaigns, newest first."""
        return await self._send(calls.campaigns(queue_type, limit, offset))

    async def cancel_campaign(self, queue_type: str, campaign: str) -> dict[str, Any]:
        """Remove its queued and scheduled jobs (counted cancelled) and refuse new
        ones (Conflict); active ones end as they would. Returns the counts."""
        return await self._send(calls.cancel_campaign(queue_type, campaign))

    async def on_done(
        self, queue_type: str, campaign: str, target_type: str, target_queue: str, payload: Any = None
    ) -> dict[str, Any]:
        """Once the campaign is done, enqueue one job `campaign-done.<campaign>` into
        target_type/target_queue, its payload holding `payload` and the final counts."""
        return await self._send(calls.on_done(queue_type, campaign, target_type, target_queue, payload))

    async def deep_status(self) -> dict[str, Any]:
        return await self._send(calls.deep_status())

    # -- the one request path --------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        extra_timeout: float = 0,
    ) -> dict[str, Any]:
        """One request as `Client._call` makes it; the JSON answer."""
        return await self._send(Call(method, path, body, query, extra_timeout, read=lambda data: data))

    async def _send(self, call: Call) -> Any:
        """One request; the call's result, or the exception its failure maps to."""
        timeout = httpx.Timeout(self.timeout, read=self.timeout + call.wait)
        try:
            response = await self.http.request(call.method, call.target(), content=call.content(), timeout=timeout)
        except httpx.HTTPError as error:
            reason = f"{type(error).__name__}: {error}".rstrip(": ")
            raise Unavailable(f"SharQ at {self.url} did not answer: {reason}", status=None) from error
        return call.answer(response.status_code, response.content)
