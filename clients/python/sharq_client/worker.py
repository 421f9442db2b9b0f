"""`Worker`: run a handler on the jobs of one queue type, N at a time.

Threads share the work, each with a client (connection) of its own:

- three fetchers keep up to max(concurrency, batch) jobs in hand (running or
  waiting for a handler) and ask for as many as they lack, carrying the acks
  of the jobs done since the last call (ack-and-take: one request per batch).
  The poller long-polls when nothing is ready, so an idle worker makes no
  request in vain and picks a job up the moment it is enqueued; the two
  helpers only work while the last answer brought all it asked for, never
  wait, and so keep more calls in flight while jobs are plentiful (and, when
  jobs are quick, take full calls of 100 unless told a batch, and ask for the
  next two while this one runs: a call's round trip, not the handlers, is
  then what bounds the worker);
- the handlers (`concurrency` threads, started as jobs need them) take each job
  from a hand-off queue and run the handler (no future per job: the pool's
  futures were most of the worker's CPU with quick jobs);
- the upkeep thread sends acks that would otherwise wait behind a long poll
  or linger past a tenth of a second, reports failures, and touches every job still
  running at a third of its expiry, so a long job is never delivered twice.

When the server is away, or what answers is not SharQ (a proxy's redirect or
page), or a poll comes back empty at once (the server's parked-poll cap is
full), the worker backs off and tries again, keeping its acks. When the server
refuses it for good (401 or 403: the token; 400: the queue type) it logs why
and stops, and `run()` raises that error; so it does when one of its threads
dies, rather than idling on. `stop()` (or SIGTERM/SIGINT under `run()`) stops
taking jobs; `join()` lets the running ones finish within `grace` seconds (a
second SIGTERM/SIGINT ends the grace at once), sends their acks and gives back (to
the front of their queues, no requeue spent) those the grace did not let finish.
It closes the
connection of a long poll still parked (a waiting call never carries acks, so
none is lost): the server sees its client gone and hands it nothing, so a job
enqueued after the worker stopped stays queued.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .client import Client, Job
from .errors import BadRequest, Forbidden, NotFound, SharqClientError, StaleReceipt, Unauthorized
from .upkeep import UPKEEP_TICK_S, Retry, Throttle, Upkeep, _log_results, _Running

log = logging.getLogger("sharq_client.worker")

MAX_BACKOFF_S = 5.0
# Answers no retry mends: a token the server refuses, a queue type it will not take.
FATAL = (Unauthorized, Forbidden, BadRequest)
# Jobs held (fetched to done) shorter than this on average: the fetchers read a batch ahead.
QUICK_S = 0.05
# Fetchers besides the poller, joining in while jobs are plentiful (issue 29: with
# one, quick jobs left the worker waiting on two round trips and the cores idle).
HELPERS = 2


# The most jobs one call takes (the server's cap).
MAX_TAKE = 100


def default_batch(concurrency: int) -> int:
    """Jobs taken per call unless told: as many as the handlers run at once, from
    50 to 100 (the server's most); the jobs held stay max(concurrency, 50), as
    with the old fixed 50, while a busy worker makes fewer, fuller calls."""
    return min(100, max(50, concurrency))


class Worker(Upkeep):
    """Run `handler(job)` on the jobs of `queue_type`; a return finishes the job, an
    exception fails it (with its text as the error), `Retry` retries it later."""

    def __init__(
        self,
        client: Client,
        queue_type: str,
        handler: Callable[[Job], Any],
        concurrency: int = 1,
        batch: int | None = None,
        wait: int = 10,
        grace: float = 30.0,
    ) -> None:
        self.client = client
        self.queue_type = queue_type
        self.handler = handler
        self.concurrency = concurrency
        self.batch = min(batch or default_batch(concurrency), MAX_TAKE)
        # quick jobs, plentiful: full calls, unless the batch was given (issue 29)
        self.quick_batch = self.batch if batch else MAX_TAKE
        self.capacity = max(concurrency, self.batch)  # jobs held: running or waiting for a handler
        self.wait = wait
        self.grace = grace
        self.processed = 0
        self.overlapped = 0  # calls sent while another was out (jobs plentiful)
        self.deepest = 0  # the most calls out at once
        self.error: BaseException | None = None  # why the worker stopped on its own
        self.left = 0  # jobs still running when join() gave up on them
        self._stopping = threading.Event()
        self._closed = threading.Event()  # join() is past the grace: the upkeep thread ends
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._running: dict[tuple[str, str], _Running] = {}
        self._acks: list[Job] = []
        self._acks_due = math.inf
        self._signals = 0  # SIGTERM/SIGINT received under run()
        self._failures: list[tuple[Job, BaseException]] = []
        self._asked = 0  # jobs the calls in flight asked for
        self._calls = 0  # calls in flight
        self._plentiful = False  # the last call brought all it asked for: the helpers join in
        self._worthwhile = max(1, self.capacity // 4)
        # a moving mean of how long a job is held, fetched to done; None until one
        # is done, so no batch is read ahead before jobs are known to be quick
        self._held_s: float | None = None
        self._fetch_started: float | None = None  # when the poller's current call went out
        self._polling = False  # that call may wait (a long poll): it carries no ack
        self._given_up = False  # join() gave back the jobs still held

    # -- running --------------------------------------------------------------------------

    def run(self) -> None:
        """Work until SIGTERM or SIGINT (or `stop()`), then `join()`; raises the
        server's refusal (Unauthorized, Forbidden, BadRequest) when that stopped
        it, or what killed one of the worker's threads."""
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
        self.start()
        while not (self._stopping.is_set() or self._signals):
            self._stopping.wait(UPKEEP_TICK_S)
        self.join()
        if self.error is not None:
            raise self.error

    def _on_signal(self, signum: int, frame: Any) -> None:
        """SIGTERM or SIGINT: the first stops the worker, another ends join()'s
        grace. It takes no lock: it runs in the main thread, between any two of
        its steps, and that thread may hold one (join() holds the worker's)."""
        self._signals += 1

    def start(self) -> Worker:
        """Work in background threads until `stop()`."""
        self._handoff: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._handlers: list[threading.Thread] = []
        self._upkeep_client = self.client.clone()
        self._upkeep = self._thread("sharq-upkeep", self._upkeep_loop, self._upkeep_client)
        self._upkeep.start()
        self._fetch_clients = [self.client.clone() for _ in range(1 + HELPERS)]  # join() closes them
        self._fetchers = [
            self._thread(f"sharq-fetcher-{n}", self._fetch_loop, client, n == 0)
            for n, client in enumerate(self._fetch_clients)
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

    def _thread(self, name: str, loop: Callable[..., None], *args: Any) -> threading.Thread:
        return threading.Thread(target=self._guarded, args=(loop, *args), name=name, daemon=True)

    def _guarded(self, loop: Callable[..., None], *args: Any) -> None:
        """One of the worker's threads. Should it die, the worker stops and `run()`
        raises why: a worker taking nothing and reporting nothing must not idle on."""
        try:
            loop(*args)
        except BaseException as error:
            log.critical("thread %s died (%r): stopping", threading.current_thread().name, error, exc_info=error)
            self.error = self.error or error
            self.stop()

    # -- the fetchers ---------------------------------------------------------------------

    def _fetch_loop(self, client: Client, polls: bool) -> None:
        """One fetcher: ack-and-take calls until `stop()`. The poller (`polls`)
        always works and long-polls when nothing is ready; the other joins in,
        never waiting, while the last answer brought all it asked for."""
        delay = 0.1
        while (call := self._next_call(polls)) is not None:
            take, acks = call
            # a poll returns at once with whatever is ready, else when a job is
            # enqueued (or comes due), else after `wait` s; a call carrying acks
            # does not wait, so join() may cut a parked poll and lose no ack
            wait = self.wait if polls and not acks else 0
            sent = time.monotonic()
            try:
                reply = client.finish_many(self.queue_type, acks, take=take, wait=wait)
            except FATAL as error:
                self._call_ended(polls, take, acks)
                self._fail_for_good(error)
                return
            except (SharqClientError, OSError) as error:  # away, or not SharQ answering
                self._call_ended(polls, take, acks)
                if self._stopping.is_set():
                    return  # join() cut the poll
                log.warning("SharQ unavailable (%s); trying again in %.1fs", error, delay)
                delay = self._back_off(delay)
                continue
            self._call_ended(polls, take, [], reply.jobs)
            _log_results(reply.results)
            for job in reply.jobs:
                self._submit(job)  # a call out when stop() came still brings its jobs: they run
            if wait and not reply.jobs and time.monotonic() - sent < wait / 2:
                # empty long before its wait: the server would not park it (its cap
                # is full, or it is stopping); asking again at once would spin
                log.info("SharQ answered a poll at once with no job; asking again in %.1fs", delay)
                delay = self._back_off(delay)
            else:
                delay = 0.1

    def _back_off(self, delay: float) -> float:
        """Wait `delay` (less when stopping); the next, longer delay."""
        self._stopping.wait(delay)
        return min(delay * 2, MAX_BACKOFF_S)

    def _next_call(self, polls: bool) -> tuple[int, list[Job]] | None:
        """Wait until this fetcher has a call worth making: how many to take, and
        the acks to carry (None once stopping)."""
        with self._changed:
            while not (self._stopping.is_set() or (take := self._worth_taking(polls))):
                self._changed.wait()
            if self._stopping.is_set():
                return None
            acks = self._take_acks()
            self.overlapped += self._asked > 0
            self._asked += take
            self._calls += 1
            self.deepest = max(self.deepest, self._calls)
            if polls:
                self._fetch_started, self._polling = time.monotonic(), not acks
            return take, acks

    def _worth_taking(self, polls: bool) -> int:
        """How many jobs to ask for now (0: none). The slots calls in flight asked
        for are spoken for; a call goes out when handlers are about to run short,
        or for a batch of a quarter of what the worker holds, so while jobs are
        plentiful two calls overlap, each worth its round trip."""
        # while jobs are plentiful and each is held briefly, calls are full (the
        # round trip, not the handlers, bounds the worker: a full call costs the
        # server and Redis less a job) and the next batches are asked for while
        # this one runs: at most a batch more for each helper, done well within
        # any grace
        fast = self._plentiful and self._held_s is not None and self._held_s < QUICK_S
        size = self.quick_batch if fast else self.batch
        ahead = size * HELPERS if fast else 0
        free = min(max(self.capacity, size) + ahead - len(self._running) - self._asked, size)
        if free <= 0 or not (polls or self._plentiful):
            return 0
        short = len(self._running) + self._asked <= self.concurrency
        return free if short or free >= self._worthwhile else 0

    def _call_ended(self, polls: bool, take: int, unsent: list[Job], jobs: Sequence[Job] = ()) -> None:
        """Hold what a call brought and free the slots it asked for; acks it may
        not have delivered go back (a repeat is answered "not active": harmless)."""
        with self._changed:
            self._return_acks(unsent)
            self._asked -= take
            self._calls -= 1
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
        """Hand a job to the handlers, starting one more while the jobs held
        outnumber them (up to `concurrency`)."""
        if self._given_up:  # join() gave back what was held: the job comes back after its expiry
            with self._changed:
                self._running.pop((job.queue_id, job.job_id), None)
            return
        if len(self._handlers) < min(self.concurrency, len(self._running)):
            with self._lock:
                if len(self._handlers) < self.concurrency:
                    self._handlers.append(self._thread(f"sharq-handler-{len(self._handlers)}", self._handle_loop))
                    self._handlers[-1].start()
        self._handoff.put(job)

    def _handle_loop(self) -> None:
        """One handler thread: run the jobs handed over until join() sends None."""
        while (job := self._handoff.get()) is not None:
            if self._given_up:
                continue  # join() gave it back without its running
            try:
                self.handler(job)
                error = None
            except BaseException as exc:  # the job fails with it; the thread goes on
                error = exc
            self._done(job, error)

    def _done(self, job: Job, error: BaseException | None) -> None:
        with self._changed:
            running = self._running.pop((job.queue_id, job.job_id), None)
            if running is not None:
                held = time.monotonic() - running.held_at
                self._held_s = held if self._held_s is None else self._held_s + (held - self._held_s) / 8
            # the fetchers wake only when one would now call (or join() may end),
            # not at every job done: with quick jobs that was thousands a second
            if not self._running or self._worth_taking(True):
                self._changed.notify_all()
            self.processed += 1
            if error is None:
                self._hold_ack(job)
            else:
                self._failures.append((job, error))

    def _fetching(self) -> bool:
        return any(fetcher.is_alive() for fetcher in self._fetchers)

    def join(self) -> None:
        """After `stop()`: let running jobs finish within the grace period, then send
        every ack and failure report."""
        self.stop()
        client = self.client.clone()
        deadline = time.monotonic() + self.grace
        with self._changed:
            while (self._running or self._fetching()) and time.monotonic() < deadline and self._signals < 2:
                if self._parked(polling=True):
                    self._fetch_clients[0].close()  # the server sees the client gone and hands it nothing
                self._changed.wait(min(UPKEEP_TICK_S, max(deadline - time.monotonic(), 0)))
            held = [running.job for running in self._running.values()]
            self.left = len(held)
            self._given_up = True  # a handler runs none of them from now on
        for fetch_client in self._fetch_clients:
            fetch_client.close()
        for _ in range(len(self._handlers)):
            self._handoff.put(None)  # idle handlers end; busy ones after their job
        self._closed.set()  # no more heartbeats
        if held:
            after = "a second signal" if self._signals > 1 else f"{self.grace:.0f}s"
            log.warning("%d job(s) still held after %s: given back to their queues", len(held), after)
        self._upkeep.join(self.client.timeout)  # it ends after its current call at most
        try:
            self._send_pending(client, final=True)
            self._release(client, held)
        except (SharqClientError, OSError) as error:
            log.warning("could not send the last acks (%s): those jobs will be delivered again", error)
        for own in (client, self._upkeep_client):
            own.close()  # no idle keep-alive connection holds up a server's graceful stop
        log.info("stopped after %d job(s)", self.processed)

    def _release(self, client: Client, jobs: list[Job]) -> None:
        """Give back what the grace did not let finish, so another worker takes it
        now rather than after its expiry (and no requeue is spent on it)."""
        for job in jobs:
            with contextlib.suppress(NotFound, StaleReceipt):  # expired and handed out again meanwhile
                client.fail(job.queue_type, job.queue_id, job.job_id, job.receipt, release=True)


__all__ = ["Retry", "SharqClientError", "Throttle", "Worker"]
