"""The background requeue loop: one greenlet per worker, one pass at a time overall.

Every worker of every instance runs the loop every `job_requeue_interval` ms;
a Redis lock (SET NX PX with a random token, kept by a holder that asks again,
released only by its owner) lets one pass run at a time. Passes are safe to overlap anyway (each script call is
atomic), so the lock only saves work, and its expiry frees it if a holder dies.
"""

from __future__ import annotations

import logging
import secrets
import threading

import redis
from flask import Flask

from sharq_core import BackendUnavailable, SharQ

from .longpoll import close_on_shutdown
from .prometheus import REQUEUE_FAILURES, REQUEUE_PASSES

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


class RequeueLoop:
    """Start with `start()` (a thread, i.e. a greenlet under gevent); `stop()` ends it."""

    def __init__(self, engine: SharQ) -> None:
        self.engine = engine
        self.interval_s = engine.config.job_requeue_interval / 1000
        self.lock_ms = max(5 * engine.config.job_requeue_interval, 5000)
        self.token = secrets.token_hex(16)
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sharq-requeue", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current pass and release the lock if this loop holds it."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self._release()
        except redis.RedisError as error:
            log.warning("could not release the requeue lock: %s", error)

    def run_once(self) -> dict[str, int] | None:
        """One pass if this loop holds the lock (taken now, or already its own: a
        SET sent before Redis hung may have run after the client gave up on it);
        None when another process holds it."""
        if not self.engine.scripts["lock"]([self.engine.keys.requeue_lock()], [self.token, self.lock_ms]):
            return None
        try:
            return self.engine.requeue()
        finally:
            self._release()

    def _release(self) -> None:
        self.engine.scripts["unlock"]([self.engine.keys.requeue_lock()], [self.token])

    def _run(self) -> None:
        delay = self.interval_s
        while not self._stopped.wait(delay):
            try:
                counts = self.run_once()
                if counts is not None:
                    REQUEUE_PASSES.inc()
                if counts and any(counts.values()):
                    log.info("requeued %(requeued)d expired job(s), dead-lettered %(dead)d", counts)
                delay = self.interval_s
            except (redis.RedisError, BackendUnavailable) as error:  # Redis away, say
                REQUEUE_FAILURES.inc()
                delay = min(max(delay * 2, self.interval_s), MAX_BACKOFF_S)
                log.warning("requeue pass failed (%s); next try in %.1fs", error, delay)
            except Exception:
                REQUEUE_FAILURES.inc()
                log.exception("requeue pass failed")


def start_requeue_loop(app: Flask) -> RequeueLoop:
    """In a gunicorn worker: start this process's requeue loop for `app`'s engine
    (kept in app.extensions), and have parked long-polls answer at once when the
    worker is told to stop."""
    loop = RequeueLoop(app.extensions["sharq"])
    app.extensions["sharq_requeue"] = loop
    loop.start()
    close_on_shutdown(app.extensions["sharq_longpoll"])
    return loop
