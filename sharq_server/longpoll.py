"""Long-poll dequeue: park requests until a job of their type is ready.

Every script that makes a job ready (enqueue, requeue, a failed job's return, a
dead letter's retry, a lower interval) publishes the queue type on
``<prefix>:ready``. One listener per worker process subscribes to it, so the
wake-up crosses gunicorn workers and server instances, on a single Redis or a
cluster (PUBLISH reaches every node; after a failover the listener subscribes
again where the refreshed slot map says).

Parked requests of one type stand in line, first come first served. Only the
head of the line asks Redis: when a message names its type, or when the
earliest rate-limited queue of the type comes due (the dequeue script says
when), so a queue is handed out at its due time and parked requests never poll.
When the head leaves (with jobs, or at its deadline) the next one asks at once.
Every poll asks once more at its deadline before answering with nothing: an
announcement lost on the way (a link found dead only later) costs a wait, never
a queued job.
"""

from __future__ import annotations

import logging
import math
import select
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any

import redis

from sharq_core import SharQ, SharqError
from sharq_core import validation as check
from sharq_core.jobs import DequeuedJob
from sharq_core.replication import refresh_topology
from sharq_core.shards import type_of

from .announcements import UNFOLLOW_AFTER_S, Announcements

log = logging.getLogger(__name__)

MAX_WAIT_S = 30
# how often (s) a parked request looks whether its client is still there
ALIVE_CHECK_S = 1.0
_RECONNECT_MAX_S = 5.0
# how soon (s) the listener follows the sharded channels of a type newly waited on
_FOLLOW_S = 0.05


class _Waiter:
    """One parked request: woken by setting `event`."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


class TooManyParked(SharqError):
    """This worker process already holds its share of parked long polls (429: the
    server is fine, it asks the client to come back, as Retry-After says)."""

    status = 429
    headers = {"Retry-After": "1"}  # noqa: RUF012 - read-only


class LongPoll:
    """The parked requests of one worker process and the listener that wakes them.

    At most `max_parked` requests park at once: gunicorn's gevent worker serves
    `worker_connections` connections and leaves the rest in the listen backlog, so
    parked polls filling them would stall every other client. A poll beyond the
    cap still takes what is ready now; with nothing, it is refused with 429 and
    Retry-After, which clients (and `sharq-worker`) answer by backing off. An
    ack-and-take whose acks are done is never refused: it answers what it has
    (one with no acks is a poll like any other).
    """

    def __init__(self, engine: SharQ, max_parked: int = 900, unfollow_after_s: float = UNFOLLOW_AFTER_S) -> None:
        self.engine = engine
        self.max_parked = max_parked
        self.unfollow_after_s = unfollow_after_s
        self._lines: dict[str, deque[_Waiter]] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._listener: threading.Thread | None = None
        self._settled = threading.Event()  # the listener's first try ended: subscribed, or Redis failed it

    def take(
        self,
        queue_type: str,
        count: int,
        wait: Any,
        alive: Callable[[], bool] = lambda: True,
        refuse_when_full: bool = True,
    ) -> tuple[list[DequeuedJob], int | None]:
        """Up to `count` jobs, waiting up to `wait` seconds for one to be ready.

        `alive` says whether the client is still there: nothing is taken for a
        client that has gone. Returns the jobs (none after the wait, or when the
        server is shutting down) and, with none, the ms until one is due.
        """
        check.integer("wait", wait, 0, MAX_WAIT_S)
        if wait == 0 or self._closing.is_set():
            return self.engine.take(queue_type, count)
        if self.parked >= self.max_parked:
            jobs, due = self.engine.take(queue_type, count)
            if jobs or not refuse_when_full:
                return jobs, due
            raise TooManyParked(
                f"{self.parked} long polls already wait in this server process; retry shortly", reason="long_polls_full"
            )
        self._listen()
        deadline = time.monotonic() + wait
        waiter = _Waiter()
        line = self._join(queue_type, waiter)
        try:
            due: int | None = None
            # when the last take said a job comes due (a rate, a pause for_ms, a
            # delay): kept as a time, as the naps between liveness checks pass
            due_at = math.inf
            waiter.event.set()  # the head asks at once; the others when they become head
            while not self._closing.is_set():
                now = time.monotonic()
                timeout = deadline - now
                if timeout <= 0:
                    break
                woken = waiter.event.wait(max(min(timeout, due_at - now, ALIVE_CHECK_S), 0))
                waiter.event.clear()
                if not woken and not alive():
                    return [], None  # the client left: its place (and the cap's slot) frees now
                if self._closing.is_set() or line[0] is not waiter:
                    continue
                if not woken and time.monotonic() < due_at:
                    continue  # only the liveness check came due (or the deadline: the last look)
                if not alive():
                    return [], None
                jobs, due = self.engine.take(queue_type, count)
                if jobs:
                    return jobs, 0
                due_at = math.inf if due is None else time.monotonic() + due / 1000
            if self._closing.is_set() or not alive():
                return [], due
            jobs, due = self.engine.take(queue_type, count)  # the last look, at the deadline
            return jobs, 0 if jobs else due
        finally:
            self._leave(queue_type, line, waiter)

    @property
    def parked(self) -> int:
        """How many requests wait in this process now."""
        return self.parked_on(None)

    def parked_on(self, queue_types: Collection[str] | None) -> int:
        """How many requests wait in this process now on these types (None: on any)."""
        with self._lock:
            lines = self._lines.items()
            return sum(len(line) for kind, line in lines if queue_types is None or kind in queue_types)

    def close(self) -> None:
        """Shutting down: every parked request answers now, none parks again."""
        self._closing.set()
        with self._lock:
            waiters = [waiter for line in self._lines.values() for waiter in line]
        for waiter in waiters:
            waiter.event.set()

    # -- the line of one type ----------------------------------------------------

    def _join(self, queue_type: str, waiter: _Waiter) -> deque[_Waiter]:
        with self._lock:
            line = self._lines.setdefault(queue_type, deque())
            line.append(waiter)
            return line

    def _leave(self, queue_type: str, line: deque[_Waiter], waiter: _Waiter) -> None:
        with self._lock:
            was_head = line[0] is waiter
            line.remove(waiter)
            if not line:
                self._lines.pop(queue_type, None)
            elif was_head:
                line[0].event.set()  # the next in line asks at once

    def _wake(self, queue_type: str | None = None) -> None:
        """Wake the head of `queue_type`'s line (of every line when None)."""
        with self._lock:
            lines = list(self._lines.values()) if queue_type is None else [self._lines.get(queue_type)]
            heads = [line[0] for line in lines if line]
        for head in heads:
            head.event.set()

    # -- the listener ----------------------------------------------------------------

    def _listen(self) -> None:
        """Start this process's listener on first use, and wait (briefly) until it
        has subscribed, so a job announced meanwhile is not missed. A listener that
        lost Redis is not waited for (nor is its first try, once Redis failed it):
        the poll's own take answers 503 within one socket_timeout (waiting first
        made it two), and once the listener has subscribed again it wakes every
        line to look."""
        if self._listener is None:
            with self._lock:
                if self._listener is None:
                    self._listener = threading.Thread(target=self._run, name="sharq-longpoll", daemon=True)
                    self._listener.start()
        self._settled.wait(self.engine.config.redis.socket_timeout)

    def _run(self) -> None:
        delay = 0.1
        while not self._closing.is_set():
            announcements: Announcements | None = None
            try:
                announcements = Announcements(self.engine, self.unfollow_after_s)
                announcements.open()
                self._settled.set()
                self._wake()  # anything announced before the subscription took is looked at now
                delay = 0.1
                while not self._closing.is_set():
                    for queue_type in announcements.follow(self._waiting_types()):
                        self._wake(queue_type)  # its first announcements may have come before
                    announced = announcements.next(timeout=_FOLLOW_S if announcements.sharded else 1.0)
                    if announced is not None:
                        self._wake(type_of(announced))  # a shard wakes its type's line
            except (redis.RedisError, OSError) as error:
                self._settled.set()
                self._wake()  # parked polls ask Redis now: each answers 503 at once, not at its deadline
                # on a cluster, the channel's node may have failed over: subscribe
                # next time where the refreshed slot map says
                refresh_topology(self.engine.redis)
                log.warning("long-poll listener lost Redis (%s); again in %.1fs", error, delay)
                self._closing.wait(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)
            except Exception:  # a bug or an unreadable message must not end the thread
                self._settled.set()
                self._wake()
                log.exception("long-poll listener failed; subscribing again in %.1fs", delay)
                self._closing.wait(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)
            finally:
                if announcements is not None:
                    announcements.close()

    def _waiting_types(self) -> list[str]:
        with self._lock:
            return list(self._lines)


def client_alive(sock: Any) -> bool:
    """False once the client has closed its end of the connection (its socket
    reads as end-of-file); True when unknown."""
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return not readable or sock.recv(1, socket.MSG_PEEK) != b""
    except (OSError, ValueError):
        return False


def close_on_shutdown(longpoll: LongPoll) -> None:
    """In a gunicorn gevent worker: on SIGTERM, SIGINT or SIGQUIT, answer every
    parked request at once (then let gunicorn's own handler stop the worker)."""
    import gevent  # only gunicorn's gevent workers get here

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(number: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
            # out of the signal handler, as gunicorn's own handlers do: waking
            # greenlets must not switch inside it
            gevent.spawn(longpoll.close)
            previous(number, frame)

        signal.signal(signum, handler)
