"""What the worker's upkeep thread does: send acks and failure reports, touch
running jobs; and the exceptions a handler raises to say how its job failed."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from .client import Client, Job
from .errors import NotFound, SharqClientError, StaleReceipt, Unavailable

log = logging.getLogger("sharq_client.worker")

UPKEEP_TICK_S = 0.05
MAX_DELAY_MS = 10**12  # the longest retry_after_ms the server takes
# An ack waits for the fetcher's next call unless that call has been out this
# long (a long poll): then the upkeep thread sends it on its own.
PARKED_AFTER_S = 0.1
# Nor does an ack wait longer than this (or a tenth of its job's expiry, when
# shorter) for a fetcher's call: jobs waiting for a handler may keep the
# fetchers idle for many jobs' time, and a late ack is refused as stale.
ACK_LINGER_S = 0.1
# The most acks one call carries (the server's cap).
MAX_ACKS = 100


class Retry(Exception):
    """Raise from a handler to have the job retried after `after_ms` (it counts
    against its requeue_limit, as any failure does). A fraction of a ms rounds up;
    a negative delay is a ValueError."""

    def __init__(self, after_ms: float = 0, reason: str = "") -> None:
        self.after_ms = _whole_ms("after_ms", after_ms, positive=False)
        super().__init__(reason or f"retry in {self.after_ms} ms")


class Throttle(Exception):
    """Raise from a handler when the job's upstream said 429: the job goes back to
    the front of its queue without counting a requeue, and the whole queue is
    paused `retry_after_ms`, so no other worker hammers that upstream meanwhile.
    The pause must be positive (a fraction of a ms rounds up): `Throttle(0)` is a
    ValueError, as a pause of nothing would not hold anyone back."""

    def __init__(self, retry_after_ms: float, reason: str = "") -> None:
        self.retry_after_ms = _whole_ms("retry_after_ms", retry_after_ms, positive=True)
        super().__init__(reason or f"upstream throttled: retry in {self.retry_after_ms} ms")


def _whole_ms(name: str, value: float, positive: bool) -> int:
    """A delay as the whole ms the server takes, checked when the handler raises."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not (value > 0 if positive else value >= 0) or not value <= MAX_DELAY_MS:
        bounds = f"{'> 0' if positive else '>= 0'} and <= {MAX_DELAY_MS}"
        raise ValueError(f"{name} must be a number of ms {bounds} (what the server takes), not {value!r}")
    return math.ceil(value)


class Upkeep:
    """The worker's upkeep thread (a mixin of `Worker`, whose state it shares)."""

    queue_type: str
    _acks: list[Job]
    _acks_due: float  # when the oldest ack must go, fetcher's call or not (inf: none held)
    _failures: list[tuple[Job, BaseException]]
    _running: dict[Any, _Running]
    _lock: threading.Lock
    _changed: threading.Condition
    _closed: threading.Event
    _stopping: threading.Event
    _fetch_started: float | None
    _polling: bool

    def _upkeep_loop(self, client: Client) -> None:
        while not self._closed.is_set():
            # its own tick, not every change: woken at each job done it scanned
            # every running job thousands of times a second (issue 29)
            self._closed.wait(UPKEEP_TICK_S)
            try:
                self._send_pending(client)
                self._heartbeats(client)
            except (SharqClientError, OSError) as error:
                log.warning("SharQ unavailable (%s)", error)
                self._closed.wait(1.0)

    def _send_pending(self, client: Client, final: bool = False) -> None:
        """Acks the fetcher is not about to carry, every one of them (100 a call:
        once stopping, no fetcher's call carries any, and join() sends the last
        of them), then the failure reports, each on its own: one the server
        refuses is logged and dropped, never the rest."""
        with self._lock:
            failures, self._failures = self._failures, []
            due = time.monotonic() >= self._acks_due
            send_acks = final or due or self._parked() or self._stopping.is_set()
            acks: list[Job] = []
            if send_acks:
                acks, self._acks, self._acks_due = self._acks, [], math.inf
        for start in range(0, len(acks), MAX_ACKS):
            try:
                _log_results(client.finish_many(self.queue_type, acks[start : start + MAX_ACKS]).results)
            except (SharqClientError, OSError):
                with self._lock:
                    self._return_acks(acks[start:])
                self._requeue_failures(failures)
                raise
        for index, (job, error) in enumerate(failures):
            try:
                self._report(client, job, error)
            except (Unavailable, OSError):
                self._requeue_failures(failures[index:])
                raise

    def _parked(self, polling: bool = False) -> bool:
        """Whether the fetcher's call (with `polling`, a long poll) has been out
        long enough to be waiting at the server. Called holding the lock."""
        started = self._fetch_started
        out = started is not None and time.monotonic() - started > PARKED_AFTER_S
        return out and (self._polling or not polling)

    def _hold_ack(self, job: Job) -> None:
        """A finished job's ack, to go with the next call, and within its linger
        whatever the fetchers do. Called holding the lock."""
        self._acks.append(job)
        linger = min(ACK_LINGER_S, (job.expires_at - job.dequeued_at) / 10_000)
        self._acks_due = min(self._acks_due, time.monotonic() + linger)

    def _take_acks(self) -> list[Job]:
        """Up to MAX_ACKS acks for the call about to go. Called holding the lock."""
        acks, self._acks = self._acks[:MAX_ACKS], self._acks[MAX_ACKS:]
        if not self._acks:
            self._acks_due = math.inf
        return acks

    def _return_acks(self, acks: list[Job]) -> None:
        """Acks a call may not have delivered: first in line, due now (a repeat is
        answered "not active": harmless). Called holding the lock."""
        if acks:
            self._acks[:0] = acks
            self._acks_due = time.monotonic()

    def _requeue_failures(self, failures: list[tuple[Job, BaseException]]) -> None:
        with self._lock:
            self._failures[:0] = failures

    def _report(self, client: Client, job: Job, error: BaseException) -> None:
        throttle = isinstance(error, Throttle)
        retry_after = error.after_ms if isinstance(error, Retry) else error.retry_after_ms if throttle else None
        text = str(error) if isinstance(error, (Retry, Throttle)) else f"{type(error).__name__}: {error}"
        text = text[:4000].encode("utf-8", "replace").decode()  # a lone surrogate is not text Redis keeps
        try:
            state = client.fail(
                job.queue_type, job.queue_id, job.job_id, job.receipt, text, retry_after, throttle=throttle
            )
            log.warning("job %s/%s failed (%s): now %s", job.queue_id, job.job_id, text, state)
        except (NotFound, StaleReceipt) as gone:
            log.warning("job %s/%s failed, but is no longer this worker's: %s", job.queue_id, job.job_id, gone)
        except Unavailable:
            raise
        except SharqClientError as refused:
            log.error(
                "failure report of %s/%s refused (%s): it comes back after its expiry",
                job.queue_id,
                job.job_id,
                refused,
            )

    def _heartbeats(self, client: Client) -> None:
        """Touch every running job a third of its expiry after its last touch."""
        now = time.monotonic()
        with self._lock:
            due = [running for running in self._running.values() if now >= running.next_touch]
        for running in due:
            job = running.job
            try:
                client.touch(job.queue_type, job.queue_id, job.job_id, job.receipt)
                running.next_touch = now + running.period
            except (NotFound, StaleReceipt) as error:
                log.warning("job %s/%s is no longer this worker's: %s", job.queue_id, job.job_id, error)
                running.next_touch = float("inf")


class _Running:
    """A job being handled (or waiting for a handler), since when, and when it
    next needs a heartbeat."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.held_at = time.monotonic()
        self.period = max((job.expires_at - job.dequeued_at) / 3000, 0.05)
        self.next_touch = time.monotonic() + self.period


def _log_results(results: list[dict[str, Any]]) -> None:
    for result in results:
        if result["status"] != "success":
            log.warning("finish of %s/%s refused: %s", result["queue_id"], result["job_id"], result["message"])
