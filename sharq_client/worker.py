"""`Worker`: run a handler on the jobs of one queue type, N at a time.

Threads share the work, each with a client (connection) of its own:

- two fetchers keep up to max(concurrency, batch) jobs in hand (running or
  waiting for a handler) and ask for as many as they lack, carrying the acks
  of the jobs done since the last call (ack-and-take: one request per batch).
  The poller long-polls when nothing is ready, so an idle worker makes no
  request in vain and picks a job up the moment it is enqueued; the second
  only works while the last answer brought all it asked for, never waits, and
  so keeps a second call in flight while jobs are plentiful (and, when jobs are
  quick, asks for the next batch while this one runs);
- the handlers (a thread pool of `concurrency`) run the handler;
- the upkeep thread sends acks that would otherwise wait behind a long poll,
  reports failures, and touches every job still running at a third of its
  expiry, so a long job is never delivered twice.

When the server is away the worker backs off and tries again; it never crashes.
When the server refuses it for good (401 or 403: the token; 400: the queue type)
it logs why and stops, and `run()` raises that error.
`stop()` (or SIGTERM/SIGINT under `run()`) stops taking jobs; `join()` lets the
running ones finish within `grace` seconds and sends their acks. It closes the
connection of a long poll still parked (a waiting call never carries acks, so
none is lost): the server sees its client gone and hands it nothing, so a job
enqueued after the worker stopped stays queued.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .client import Client, Job
from .errors import BadRequest, Forbidden, NotFound, SharqClientError, StaleReceipt, Unauthorized, Unavailable

log = logging.getLogger("sharq_client.worker")

MAX_BACKOFF_S = 5.0
# Answers no retry mends: a token the server refuses, a queue type it will not take.
FATAL = (Unauthorized, Forbidden, BadRequest)
UPKEEP_TICK_S = 0.05
# Jobs held (fetched to done) shorter than this on average: the fetchers read a batch ahead.
QUICK_S = 0.05
# An ack waits for the fetcher's next call unless that call has been out this
# long (a long poll): then the upkeep thread sends it on its own.
PARKED_AFTER_S = 0.1


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
    if not number or not (value > 0 if positive else value >= 0):
        raise ValueError(f"{name} must be a number of ms {'> 0' if positive else '>= 0'}, not {value!r}")
    return math.ceil(value)


class Worker:
    """Run `handler(job)` on the jobs of `queue_type`; a return finishes the job, an
    exception fails it (with its text as the error), `Retry` retries it later."""

    def __init__(
        self,
        client: Client,
        queue_type: str,
        handler: Callable[[Job], Any],
        concurrency: int = 1,
        batch: int = 50,
        wait: int = 10,
        grace: float = 30.0,
    ) -> None:
        self.client = client
        self.queue_type = queue_type
        self.handler = handler
        self.concurrency = concurrency
        self.batch = min(batch, 100)
        self.capacity = max(concurrency, self.batch)  # jobs held: running or waiting for a handler
        self.wait = wait
        self.grace = grace
        self.processed = 0
        self.overlapped = 0  # calls sent while another was out (jobs plentiful)
        self.error: SharqClientError | None = None  # why the worker stopped on its own
        self._stopping = threading.Event()
        self._closed = threading.Event()  # join() is past the grace: the upkeep thread ends
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._running: dict[tuple[str, str], _Running] = {}
        self._acks: list[Job] = []
        self._failures: list[tuple[Job, BaseException]] = []
        self._asked = 0  # jobs the calls in flight asked for
        self._plentiful = False  # the last call brought all it asked for: a second fetcher helps
        self._worthwhile = max(1, self.capacity // 4)
        self._held_s = 0.0  # a moving mean of how long a job is held, fetched to done
        self._fetch_started: float | None = None  # when the poller's current call went out
        self._polling = False  # that call may wait (a long poll): it carries no ack

    # -- running --------------------------------------------------------------------------

    def run(self) -> None:
        """Work until SIGTERM or SIGINT (or `stop()`), then `join()`; raises the
        server's refusal (Unauthorized, Forbidden, BadRequest) when that stopped it."""
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda number, frame: self.stop())
        self.start()
        while not self._stopping.wait(1.0):
            pass
        self.join()
        if self.error is not None:
            raise self.error

    def start(self) -> Worker:
        """Work in background threads until `stop()`."""
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sharq-handler")
        self._upkeep_client = self.client.clone()
        self._upkeep = threading.Thread(target=self._upkeep_loop, args=(self._upkeep_client,), daemon=True)
        self._upkeep.start()
        self._fetch_clients = [self.client.clone(), self.client.clone()]  # join() closes them
        self._fetchers = [
            threading.Thread(target=self._fetch_loop, args=(client, polls), name=f"sharq-fetcher-{n}", daemon=True)
            for n, (client, polls) in enumerate(zip(self._fetch_clients, (True, False), strict=True))
        ]
        for fetcher in self._fetchers:
            fetcher.start()
        return self

    def stop(self) -> None:
        """Take no more jobs; the running ones get `grace` seconds to finish."""
        if not self._stopping.is_set():
            log.info("stopping: no new jobs; %d running get %.0fs to finish", len(self._running), self.grace)
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()

    # -- the fetchers ---------------------------------------------------------------------

    def _fetch_loop(self, client: Client, polls: bool) -> None:
        """One fetcher: ack-and-take calls until `stop()`. The poller (`polls`)
        always works and long-polls when nothing is ready; the other joins in,
        never waiting, while the last answer brought all it asked for."""
        delay = 0.1
        while (call := self._next_call(polls)) is not None:
            take, acks = call
            try:
                # a poll returns at once with whatever is ready, else when a job is
                # enqueued (or comes due), else after `wait` s; a call carrying acks
                # does not wait, so join() may cut a parked poll and lose no ack
                reply = client.finish_many(
                    self.queue_type, acks, take=take, wait=self.wait if polls and not acks else 0
                )
            except FATAL as error:
                self._call_ended(polls, take, acks)
                self._fail_for_good(error)
                return
            except (SharqClientError, OSError) as error:
                self._call_ended(polls, take, acks)
                if self._stopping.is_set():
                    return  # join() cut the poll
                log.warning("SharQ unavailable (%s); trying again in %.1fs", error, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            delay = 0.1
            self._call_ended(polls, take, [], reply.jobs)
            _log_results(reply.results)
            for job in reply.jobs:
                self._submit(job)  # a call out when stop() came still brings its jobs: they run

    def _next_call(self, polls: bool) -> tuple[int, list[Job]] | None:
        """Wait until this fetcher has a call worth making: how many to take, and
        the acks to carry (None once stopping)."""
        with self._changed:
            while not (self._stopping.is_set() or (take := self._worth_taking(polls))):
                self._changed.wait()
            if self._stopping.is_set():
                return None
            acks, self._acks = self._acks[:100], self._acks[100:]
            self.overlapped += self._asked > 0
            self._asked += take
            if polls:
                self._fetch_started, self._polling = time.monotonic(), not acks
            return take, acks

    def _worth_taking(self, polls: bool) -> int:
        """How many jobs to ask for now (0: none). The slots calls in flight asked
        for are spoken for; a call goes out when handlers are about to run short,
        or for a batch of a quarter of what the worker holds, so while jobs are
        plentiful two calls overlap, each worth its round trip."""
        # while jobs are plentiful and each is held briefly, the next batch is asked
        # for while this one runs: at most a batch more, done well within any grace
        ahead = self.batch if self._plentiful and self._held_s < QUICK_S else 0
        free = min(self.capacity + ahead - len(self._running) - self._asked, self.batch)
        if free <= 0 or not (polls or self._plentiful):
            return 0
        short = len(self._running) + self._asked <= self.concurrency
        return free if short or free >= self._worthwhile else 0

    def _call_ended(self, polls: bool, take: int, unsent: list[Job], jobs: Sequence[Job] = ()) -> None:
        """Hold what a call brought and free the slots it asked for; acks it may
        not have delivered go back (a repeat is answered "not active": harmless)."""
        with self._changed:
            self._acks[:0] = unsent
            self._asked -= take
            for job in jobs:
                self._running[(job.queue_id, job.job_id)] = _Running(job)
            self._plentiful = len(jobs) == take
            if polls:
                self._fetch_started = None
            self._changed.notify_all()

    def _fail_for_good(self, error: SharqClientError) -> None:
        """A refusal no retry mends (a token or a type the server will not take):
        stop, and let `run()` raise it."""
        self.error = error
        log.error("SharQ refused this worker (HTTP %s: %s): stopping", error.status, error.message)
        self.stop()

    def _submit(self, job: Job) -> None:
        try:
            future = self._pool.submit(self.handler, job)
        except RuntimeError:  # joined already: the job comes back after its expiry
            with self._changed:
                self._running.pop((job.queue_id, job.job_id), None)
            return
        future.add_done_callback(lambda done, job=job: self._done(job, done))

    def _done(self, job: Job, future: Future[Any]) -> None:
        cancelled = future.cancelled()  # by join() before it ran: it comes back after its expiry
        error = None if cancelled else future.exception()
        with self._changed:
            running = self._running.pop((job.queue_id, job.job_id), None)
            self._changed.notify_all()
            if cancelled:
                return
            if running is not None:
                self._held_s += (time.monotonic() - running.held_at - self._held_s) / 8  # a moving mean
            self.processed += 1
            if error is None:
                self._acks.append(job)
            else:
                self._failures.append((job, error))

    def _fetching(self) -> bool:
        return any(fetcher.is_alive() for fetcher in self._fetchers)

    def _requeue_acks(self, acks: list[Job]) -> None:
        with self._lock:
            self._acks[:0] = acks

    def join(self) -> None:
        """After `stop()`: let running jobs finish within the grace period, then send
        every ack and failure report."""
        self.stop()
        client = self.client.clone()
        deadline = time.monotonic() + self.grace
        with self._changed:
            while (self._running or self._fetching()) and time.monotonic() < deadline:
                if self._parked(polling=True):
                    self._fetch_clients[0].close()  # the server sees the client gone and hands it nothing
                self._changed.wait(min(UPKEEP_TICK_S, max(deadline - time.monotonic(), 0)))
            left = len(self._running)
        for fetch_client in self._fetch_clients:
            fetch_client.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._closed.set()  # no more heartbeats: what is still held comes back after its expiry
        if left:
            log.warning("%d job(s) still held after %.0fs: they will be delivered again", left, self.grace)
        self._upkeep.join(self.client.timeout)  # it ends after its current call at most
        try:
            self._send_pending(client, final=True)
        except (SharqClientError, OSError) as error:
            log.warning("could not send the last acks (%s): those jobs will be delivered again", error)
        for own in (client, self._upkeep_client):
            own.close()  # no idle keep-alive connection holds up a server's graceful stop
        log.info("stopped after %d job(s)", self.processed)

    # -- the upkeep thread --------------------------------------------------------------

    def _upkeep_loop(self, client: Client) -> None:
        while not self._closed.is_set():
            with self._changed:
                self._changed.wait(UPKEEP_TICK_S)
            try:
                self._send_pending(client)
                self._heartbeats(client)
            except (SharqClientError, OSError) as error:
                log.warning("SharQ unavailable (%s)", error)
                self._closed.wait(1.0)

    def _send_pending(self, client: Client, final: bool = False) -> None:
        """Acks the fetcher is not about to carry, then the failure reports, each
        on its own: one the server refuses is logged and dropped, never the rest."""
        with self._lock:
            failures, self._failures = self._failures, []
            send_acks = self._acks and (final or self._parked() or self._stopping.is_set())
            acks, self._acks = (self._acks[:100], self._acks[100:]) if send_acks else ([], self._acks)
        if acks:
            try:
                _log_results(client.finish_many(self.queue_type, acks).results)
            except (SharqClientError, OSError):
                self._requeue_acks(acks)
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


__all__ = ["Retry", "SharqClientError", "Throttle", "Worker"]
