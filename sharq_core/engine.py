"""The SharQ engine: the seed library's API over Redis, one Lua script per change."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ujson
from redis.exceptions import NoScriptError

from . import validation as check
from .config import Config, load_config
from .connection import connect
from .exceptions import BadArgumentException, DuplicateJob, NotFound, QueueFull, StaleReceipt
from .jobs import DequeuedJob
from .keys import Keys, member
from .scripts import load_scripts

log = logging.getLogger(__name__)

# How long a queue's last dequeue time is kept (ms) after it ran empty, at least,
# so the rate limit still holds when it is refilled, whatever the interval.
RATE_MEMORY_MS = 600_000
# Jobs handled per requeue or clear script call: keeps each call to a few ms.
REQUEUE_BATCH = 500
MAX_BATCH = 100
METRIC_MINUTES = 10
MAX_PAGE = 10_000
# How often (s) requeue() also scans the keyspace for types missing from the
# registry (a lost write or a lost key), so no type can hold jobs unseen.
DISCOVERY_INTERVAL_S = 30.0
MAX_LIMIT = 10**6
# the counters every type keeps since it began (the "totals" hash)
COUNTERS = ("enqueued", "dequeued", "finished", "failed", "requeued", "dead")
KEEP: Any = object()  # set_limits: leave this field as it is

# enqueue.lua's codes: the exception, its message and the job's state
_ENQUEUE_FAILURES = {
    -1: (DuplicateJob, "job_id is already queued in this queue", "queued"),
    -2: (QueueFull, "queue already holds max_queued_length jobs", None),
    -3: (DuplicateJob, "job_id is already active in this queue", "active"),
    -4: (DuplicateJob, "job_id is dead-lettered in this queue: retry or delete the dead letter first", "dead"),
    -5: (DuplicateJob, "job_id was finished within the dedupe window (dedupe_window_ms)", "finished"),
    -6: (DuplicateJob, "job_id is already scheduled in this queue", "scheduled"),
}


class SharQ:
    """A rate-limited, multi-tenant job queue over one Redis (or Redis Cluster).

    `config` is a path to the seed's INI file, an already built `Config`, or None
    for defaults plus the environment. `clock`, when given, returns the time in
    ms and replaces Redis TIME (tests use it to step time); by default every
    script reads the time from Redis, so servers with skewed clocks agree.
    """

    def __init__(
        self,
        config: str | Config | None = None,
        *,
        client: Any = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._clock = clock
        self._own_client = client is None
        self._discovered_at: float | None = None
        self._setup(config if isinstance(config, Config) else load_config(config), client)

    def _setup(self, config: Config, client: Any = None) -> None:
        self.config = config
        self.keys = Keys(config.redis.key_prefix)
        self.redis = client if client is not None else connect(config.redis)
        self.scripts = load_scripts(self.redis)
        self._pipeline = _auto_pipeline(config) if self._own_client else None

    # -- the seed library's housekeeping -----------------------------------------

    def redis_client(self) -> Any:
        """The redis-py client the engine uses (a Redis or RedisCluster)."""
        return self.redis

    def reload_config(self, config: str | Config | None = None) -> None:
        """Read the configuration again (or take the one given) and reconnect."""
        self._setup(config if isinstance(config, Config) else load_config(config))

    def reload_lua_scripts(self) -> None:
        """Register the Lua scripts again (redis-py also reloads them on NOSCRIPT)."""
        self.scripts = load_scripts(self.redis)

    # -- producers -----------------------------------------------------------

    def enqueue(
        self,
        payload: Any,
        interval: int,
        job_id: str,
        queue_id: str,
        queue_type: str = "default",
        requeue_limit: int | None = None,
        max_queued_length: int | None = None,
        delay_ms: int | None = None,
        not_before: int | None = None,
    ) -> dict[str, Any]:
        """Queue one job; raises DuplicateJob or QueueFull and then changes nothing.

        With `delay_ms` (from now) or `not_before` (epoch ms, on the Redis clock) the
        job is scheduled: it joins the back of its queue when due.
        """
        job = self._job_args(
            queue_id, job_id, payload, interval, requeue_limit, max_queued_length, delay_ms, not_before
        )
        code = self._enqueue(check.identifier("queue_type", queue_type), [job])[0]
        if code in _ENQUEUE_FAILURES:
            error, message, state = _ENQUEUE_FAILURES[code]
            raise error(message, **({"state": state} if state else {}))
        return {"status": "scheduled" if code == 2 else "queued"}

    def enqueue_fields(self, queue_type: str, queue_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """`enqueue` from a mapping such as a request body (job_id, payload, interval...)."""
        if not isinstance(fields, Mapping):
            raise BadArgumentException("the job must be an object")
        return self.enqueue(**self._fields(fields), queue_id=queue_id, queue_type=queue_type)

    def enqueue_many(self, queue_type: str, jobs: Any) -> list[dict[str, Any]]:
        """Queue up to MAX_BATCH jobs of one type in one atomic call, one result each.

        Any invalid job rejects the whole batch before Redis is touched; a
        duplicate or a full queue fails only that job.
        """
        check.identifier("queue_type", queue_type)
        if not isinstance(jobs, list) or not 1 <= len(jobs) <= MAX_BATCH:
            raise BadArgumentException(f"jobs must be a list of 1 to {MAX_BATCH} jobs")
        args = [self._batch_job(index, job) for index, job in enumerate(jobs)]
        codes = self._enqueue(queue_type, args)
        return [_batch_result(job, code) for job, code in zip(args, codes, strict=True)]

    def _batch_job(self, index: int, job: Any) -> list[Any]:
        if not isinstance(job, Mapping):
            raise BadArgumentException(f"jobs[{index}] must be an object")
        try:
            return self._job_args(queue_id=job.get("queue_id"), **self._fields(job, ("queue_id",)))
        except BadArgumentException as exc:
            raise BadArgumentException(f"jobs[{index}]: {exc.message}") from None

    @staticmethod
    def _fields(job: Mapping[str, Any], extra: tuple[str, ...] = ()) -> dict[str, Any]:
        """The job fields of a mapping, an absent payload marked as such; a field
        that is not one of them is refused (a misspelt requeue_limit must not
        quietly become "retry forever")."""
        check.known_fields(job, JOB_FIELDS + extra)
        return {
            "job_id": job.get("job_id"),
            "payload": job.get("payload", _MISSING),
            "interval": job.get("interval"),
            "requeue_limit": job.get("requeue_limit"),
            "max_queued_length": job.get("max_queued_length"),
            "delay_ms": job.get("delay_ms"),
            "not_before": job.get("not_before"),
        }

    def _job_args(
        self,
        queue_id: Any,
        job_id: Any,
        payload: Any,
        interval: Any,
        requeue_limit: Any,
        max_queued_length: Any,
        delay_ms: Any = None,
        not_before: Any = None,
    ) -> list[Any]:
        """Validate one job into the seven ARGV values enqueue.lua takes."""
        if payload is _MISSING:
            raise BadArgumentException("payload is required")
        if delay_ms is not None and not_before is not None:
            raise BadArgumentException("give delay_ms or not_before, not both")
        delay = check.optional_integer("delay_ms", delay_ms, 0, check.MAX_INTERVAL)
        due = check.optional_integer("not_before", not_before, 0, check.MAX_TIME)
        due_spec = f"+{delay}" if delay else ("" if due is None else due)
        if requeue_limit is None:
            requeue_limit = self.config.default_job_requeue_limit
        max_length = check.optional_integer("max_queued_length", max_queued_length, 1, check.MAX_QUEUED_LENGTH)
        return [
            check.identifier("queue_id", queue_id),
            check.identifier("job_id", job_id),
            check.payload_text(payload),
            check.integer("interval", interval, 0, check.MAX_INTERVAL),
            check.integer("requeue_limit", requeue_limit, -1, check.MAX_REQUEUE_LIMIT),
            "" if max_length is None else max_length,
            due_spec,
        ]

    def _enqueue(self, queue_type: str, jobs: list[list[Any]]) -> list[int]:
        keys = self.keys.type_keys(queue_type)
        args: list[Any] = [self._now(), self.keys.base(queue_type), self.config.dedupe_window_ms]
        for job in jobs:
            keys += [self.keys.queue(queue_type, job[0]), self.keys.jobs(queue_type, job[0])]
            args += job
        type_was_empty, *codes = self._script("enqueue", keys, args)
        if type_was_empty:
            # the only write outside the type's slot; rare, so a second trip is fine.
            # Should it be lost, requeue()'s discovery scan lists the type again.
            self.redis.sadd(self.keys.queue_types(), queue_type)
        return codes

    # -- workers -------------------------------------------------------------

    def dequeue(self, queue_type: str = "default") -> dict[str, Any]:
        """The ready job due first across the type's queues, or a failure that says
        in `retry_after_ms` when the next one is due (None when nothing is queued)."""
        jobs, wait = self.take(queue_type, 1)
        if not jobs:
            return {"status": "failure", "retry_after_ms": wait}
        return {"status": "success", **jobs[0].as_dict()}

    def dequeue_many(self, queue_type: str, count: int) -> dict[str, Any]:
        """Up to `count` ready jobs in fairness order, each within its queue's rate."""
        jobs, wait = self.take(queue_type, count)
        if not jobs:
            return {"status": "failure", "retry_after_ms": wait, "jobs": []}
        return {"status": "success", "jobs": [job.as_dict() for job in jobs]}

    def take(self, queue_type: str, count: int) -> tuple[list[DequeuedJob], int | None]:
        """Dequeue up to `count` jobs; with none, also the ms until one is due (None:
        nothing queued). The server answers from this without re-encoding payloads."""
        check.identifier("queue_type", queue_type)
        check.integer("count", count, 1, MAX_BATCH)
        args = [self._now(), self.keys.base(queue_type), self.config.job_expire_interval, count, _token()]
        return self._taken(self._script("dequeue", self.keys.type_keys(queue_type), args), 2)

    def _taken(self, reply: list[Any], start: int) -> tuple[list[DequeuedJob], int | None]:
        """The jobs a dequeue or finish script handed out from `reply[start:]`."""
        now, wait, expire = int(reply[0]), int(reply[1]), self.config.job_expire_interval
        jobs = [DequeuedJob.from_reply(now, expire, *reply[i : i + 5]) for i in range(start, len(reply), 5)]
        return jobs, (None if wait < 0 else wait)

    def finish(
        self, job_id: str, queue_id: str, queue_type: str = "default", receipt: str | None = None
    ) -> dict[str, Any]:
        """The seed's finish: `finish_job`, answering ``{'status': 'failure'}`` when
        the job is not active."""
        try:
            return self.finish_job(job_id, queue_id, queue_type, receipt)
        except NotFound:
            return {"status": "failure"}

    def finish_job(
        self, job_id: str, queue_id: str, queue_type: str = "default", receipt: str | None = None
    ) -> dict[str, Any]:
        """Acknowledge an active job; NotFound when it is not active.

        With `receipt`, only the delivery it names may finish the job: StaleReceipt
        when the job has been delivered again (or went back to its queue) since.
        """
        self._check_job(queue_type, queue_id, job_id)
        results, _, _ = self.finish_many(queue_type, [{"queue_id": queue_id, "job_id": job_id, "receipt": receipt}])
        result = results[0]
        if result["status"] == "failure":
            raise (StaleReceipt if result["code"] == StaleReceipt.status else NotFound)(result["message"])
        return {"status": "success"}

    def finish_many(
        self, queue_type: str, jobs: Any, next_count: int = 0
    ) -> tuple[list[dict[str, Any]], list[DequeuedJob], int | None]:
        """Finish up to MAX_BATCH jobs of one type in one atomic call, one result each
        (``{"queue_id", "job_id", "status", "code"?, "message"?}``); then, with
        `next_count`, hand out up to that many jobs in the same call. Returns the
        results, the jobs taken and, when none was, the ms until one is due."""
        check.identifier("queue_type", queue_type)
        check.integer("next", next_count, 0, MAX_BATCH)
        if not isinstance(jobs, list) or len(jobs) > MAX_BATCH or not (jobs or next_count):
            raise BadArgumentException(f"jobs must be a list of up to {MAX_BATCH} jobs (or empty, with next)")
        acks = [self._ack(index, job) for index, job in enumerate(jobs)]
        keys = self.keys.type_keys(queue_type)
        args: list[Any] = [
            self._now(),
            self.keys.base(queue_type),
            RATE_MEMORY_MS,
            self.config.dedupe_window_ms,
            self.config.job_expire_interval,
            next_count,
            _token(),
        ]
        for queue_id, job_id, receipt in acks:
            keys.append(self.keys.jobs(queue_type, queue_id))
            args += [queue_id, job_id, receipt]
        reply = self._script("finish", keys, args)
        count = int(reply[2])
        results = [_ack_result(ack, int(code)) for ack, code in zip(acks, reply[3 : 3 + count], strict=True)]
        taken, wait = self._taken(reply, 3 + count)
        return results, taken, wait

    def _ack(self, index: int, job: Any) -> tuple[str, str, str]:
        """One entry of a finish batch as (queue_id, job_id, receipt or "")."""
        try:
            if not isinstance(job, Mapping):
                raise BadArgumentException("must be an object")
            check.known_fields(job, ("queue_id", "job_id", "receipt"))
            receipt = job.get("receipt")
            return (
                check.identifier("queue_id", job.get("queue_id")),
                check.identifier("job_id", job.get("job_id")),
                "" if receipt is None else check.receipt(receipt),
            )
        except BadArgumentException as exc:
            raise BadArgumentException(f"jobs[{index}]: {exc.message}") from None

    def touch(
        self, job_id: str, queue_id: str, queue_type: str = "default", receipt: str | None = None
    ) -> dict[str, Any]:
        """Heartbeat: push an active job's expiry out by job_expire_interval."""
        self._check_job(queue_type, queue_id, job_id)
        expiry = int(
            self._script(
                "touch",
                [self.keys.active(queue_type), self.keys.receipts(queue_type), self.keys.jobs(queue_type, queue_id)],
                [self._now(), member(queue_id, job_id), self.config.job_expire_interval, _receipt(receipt), job_id],
            )
        )
        if expiry == -1:
            raise NotFound(NOT_ACTIVE)
        if expiry == -2:
            raise StaleReceipt(STALE_RECEIPT)
        return {"status": "success", "expires_at": expiry}

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
    ) -> dict[str, Any]:
        """A worker reports that an active job failed: it goes back to the front of
        its queue at once (or after `retry_after_ms`), counting against its
        requeue_limit like an expiry; with none left, or with `dead`, it goes to
        the dead letters with `error` as its reason. With `throttle` (its upstream
        answered 429) it goes back to the front without counting, and the whole
        queue is paused for `retry_after_ms`."""
        self._check_job(queue_type, queue_id, job_id)
        retry_after = check.optional_integer("retry_after_ms", retry_after_ms, 0, check.MAX_INTERVAL) or 0
        if error is not None and (not isinstance(error, str) or len(error) > MAX_ERROR):
            raise BadArgumentException(f"error must be a string of at most {MAX_ERROR} characters")
        if not isinstance(dead, bool):
            raise BadArgumentException("dead must be true or false")
        if not isinstance(throttle, bool):
            raise BadArgumentException("throttle must be true or false")
        if throttle and not retry_after:
            raise BadArgumentException("throttle needs retry_after_ms: how long the upstream asked to wait")
        code = self._fail(
            queue_type,
            queue_id,
            job_id,
            _receipt(receipt),
            check.text("error", error or ""),
            retry_after,
            dead=dead,
            counts=not throttle,
            throttle=throttle,
        )
        if code == 0:
            raise NotFound(NOT_ACTIVE)
        if code == -1:
            raise StaleReceipt(STALE_RECEIPT)
        state = "dead" if code == 2 else "queued" if throttle or not retry_after else "retrying"
        return {"status": "success", "state": state}

    def release(self, queue_type: str, jobs: Iterable[DequeuedJob]) -> None:
        """Put jobs whose client never received them back at the front of their
        queues at once, without counting a requeue (the server calls this when a
        response could not be written)."""
        for job in jobs:
            self._fail(queue_type, job.queue_id, job.job_id, job.receipt, counts=False)

    def _fail(
        self,
        queue_type: str,
        queue_id: str,
        job_id: str,
        receipt: str,
        error: str = "",
        retry_after: int = 0,
        *,
        dead: bool = False,
        counts: bool = True,
        throttle: bool = False,
    ) -> int:
        """fail.lua, its ARGV in order; returns its code."""
        keys = [*self.keys.type_keys(queue_type), self.keys.jobs(queue_type, queue_id)]
        args = [self._now(), self.keys.base(queue_type), queue_id, job_id, receipt, error, retry_after]
        args += [int(dead), int(counts), RATE_MEMORY_MS, int(throttle)]
        return int(self._script("fail", keys, args))

    def requeue(self, discover: bool | None = None) -> dict[str, int]:
        """Put every expired job of every type back (or into its dead-letter store).

        Types left with no queued, active or dead job leave the registry, so a pass
        costs in proportion to the live types. With `discover` (by default every
        DISCOVERY_INTERVAL_S) the keyspace is scanned first for types that hold
        jobs but are missing from the registry, and they are listed again.
        """
        if discover is None:
            due = self._discovered_at is None or time.monotonic() - self._discovered_at > DISCOVERY_INTERVAL_S
            discover = due
        if discover:
            for queue_type in self.discover_types():
                log.warning("queue type %s held jobs but was missing from the registry: listed again", queue_type)
        totals = {"requeued": 0, "dead": 0}
        for queue_type in self.queue_types():
            for name, count in self.requeue_type(queue_type).items():
                totals[name] += count
        return totals

    def requeue_type(self, queue_type: str) -> dict[str, int]:
        """Requeue one type's expired jobs in batches of REQUEUE_BATCH until none is left."""
        keys = self.keys.type_keys(queue_type)
        args = [self._now(), self.keys.base(queue_type), REQUEUE_BATCH, RATE_MEMORY_MS, self.config.dedupe_window_ms]
        totals = {"requeued": 0, "dead": 0}
        while True:
            handled, requeued, dead, trimmed, live, promoted = self._script("requeue", keys, args)
            totals["requeued"] += requeued
            totals["dead"] += dead
            if max(handled, trimmed, promoted) < REQUEUE_BATCH:
                break
        if not live:
            self._forget_type(queue_type)
        return totals

    def _forget_type(self, queue_type: str) -> None:
        """Drop a drained type from the registry without racing an enqueue.

        The SREM comes first and the emptiness check after it: an enqueue that ran
        before the check is seen (and the type listed again); one that runs after
        it finds the type empty and lists the type itself (see `_enqueue`).
        """
        self.redis.srem(self.keys.queue_types(), queue_type)
        live = (self.keys.queues, self.keys.dead, self.keys.limits, self.keys.paused, self.keys.type_paused)
        if self.redis.exists(*(key(queue_type) for key in live)):
            self.redis.sadd(self.keys.queue_types(), queue_type)

    def discover_types(self) -> list[str]:
        """List again every type holding jobs that the registry lacks; returns them.

        SCAN visits the whole keyspace in small steps (on a cluster, every
        primary), so this is for the background loop, not for requests.
        """
        self._discovered_at = time.monotonic()
        prefix = _glob_escape(self.keys.prefix)
        found = set()
        for suffix in ("queues", "dead"):
            for key in self.redis.scan_iter(match=f"{prefix}:{{*}}:{suffix}", count=1000):
                name = key.decode()
                found.add(name[len(self.keys.prefix) + 2 : -len(suffix) - 2])
        missing = sorted(found - set(self.queue_types()))
        if missing:
            self.redis.sadd(self.keys.queue_types(), *missing)
        return missing

    # -- queue administration ----------------------------------------------

    def interval(self, interval: int, queue_id: str, queue_type: str = "default") -> dict[str, Any]:
        """The seed's interval: `set_interval`, answering ``{'status': 'failure'}``
        when the queue holds no job."""
        try:
            return self.set_interval(interval, queue_id, queue_type)
        except NotFound:
            return {"status": "failure"}

    def set_interval(self, interval: int, queue_id: str, queue_type: str = "default") -> dict[str, Any]:
        """Change a queue's rate limit live; NotFound when it holds no job."""
        self._check_queue(queue_type, queue_id)
        check.integer("interval", interval, 0, check.MAX_INTERVAL)
        args = [queue_id, interval, self.keys.base(queue_type), self._now(), RATE_MEMORY_MS]
        updated = self._script("interval", self.keys.type_keys(queue_type), args)
        if not updated:
            raise NotFound("queue holds no queued or active job")
        return {"status": "success"}

    def clear_queue(self, queue_type: str, queue_id: str, purge_all: bool = False) -> dict[str, Any]:
        """The seed's clear_queue: `delete_queue`, answered as the seed did."""
        try:
            self.delete_queue(queue_type, queue_id, purge_all)
        except NotFound:
            return {"status": "Failure", "message": "No queued calls found"}
        purged = " and purged related resources" if purge_all else ""
        return {"status": "Success", "message": "Successfully removed all queued calls" + purged}

    def delete_queue(self, queue_type: str, queue_id: str, purge_all: bool = False) -> dict[str, Any]:
        """Delete the queued jobs of a queue, and with `purge_all` its active ones too.

        In batches of REQUEUE_BATCH, one script call each, so a queue of any length
        never blocks Redis for long; NotFound when there was nothing.
        """
        self._check_queue(queue_type, queue_id)
        if not isinstance(purge_all, bool):
            raise BadArgumentException("purge_all must be true or false")
        keys = self._queue_keys(queue_type, queue_id)
        base, purge = self.keys.base(queue_type), "1" if purge_all else "0"
        deleted, at = 0, b"queued"
        while at != b"done":
            args = [queue_id, purge, REQUEUE_BATCH, at, RATE_MEMORY_MS, self._now(), base]
            count, at = self._script("clear", keys, args)
            deleted += count
        if not deleted:
            raise NotFound("queue holds nothing to delete")
        return {"status": "success", "message": f"deleted {deleted} job(s)", "deleted": deleted}

    def get_queue_length(self, queue_type: str, queue_id: str) -> int:
        """How many jobs wait in the queue (active ones not counted)."""
        self._check_queue(queue_type, queue_id)
        return int(self.redis.llen(self.keys.queue(queue_type, queue_id)))

    def job_status(self, queue_type: str, queue_id: str, job_id: str) -> dict[str, Any]:
        """Where a job is: queued, scheduled (with `due_at`), active (with
        `expires_at`), retrying (with `due_at`), dead, finished (within the dedupe
        window), or unknown; with the last error a worker reported, if any."""
        self._check_job(queue_type, queue_id, job_id)
        keys = [*self.keys.type_keys(queue_type), self.keys.jobs(queue_type, queue_id)]
        state, detail, last_error = self._script("status", keys, [member(queue_id, job_id), job_id])
        state = state.decode()
        result: dict[str, Any] = {"status": "success", "state": state}
        if last_error:
            result["last_error"] = last_error.decode()
        if state == "active":
            result["expires_at"] = int(float(detail))
        elif state in ("retrying", "scheduled"):
            result["due_at"] = int(float(detail))
        elif state == "queued":
            remaining, limit, enqueued, _ = detail.split(b":", 3)
            result.update(requeues_remaining=int(remaining), requeue_limit=int(limit), enqueued_at=int(enqueued))
        elif state == "dead":
            result.update(_dead_record(detail))
        elif state == "finished":
            result["finished_at"] = int(float(detail))
        return result

    # -- tenant controls -------------------------------------------------------

    def set_limits(
        self, queue_type: str, queue_id: str, interval: Any = KEEP, burst: Any = KEEP, max_active: Any = KEEP
    ) -> dict[str, Any]:
        """Store limits of the queue's own that win over what enqueues carry: each
        given value is set, None clears it, KEEP leaves it. They stay when the
        queue runs empty, until cleared; a queue may get them before its first job."""
        self._check_queue(queue_type, queue_id)
        values = [
            _limit("interval", interval, 0, check.MAX_INTERVAL),
            _limit("burst", burst, 1, MAX_LIMIT),
            _limit("max_active", max_active, 1, MAX_LIMIT),
        ]
        args = [queue_id, self.keys.base(queue_type), self._now(), *values, RATE_MEMORY_MS]
        self._script("limits", self.keys.type_keys(queue_type), args)
        self.redis.sadd(self.keys.queue_types(), queue_type)
        return self.limits(queue_type, queue_id)

    def clear_limits(self, queue_type: str, queue_id: str) -> dict[str, Any]:
        """Drop the queue's own limits: enqueues' intervals and the defaults apply again."""
        return self.set_limits(queue_type, queue_id, None, None, None)

    def limits(self, queue_type: str, queue_id: str) -> dict[str, Any]:
        """The queue's effective limits, each with where it comes from: "override",
        "last enqueue" or "default"."""
        info = self.queue_info(queue_type, queue_id)
        return {"status": "success", "queue_id": queue_id, "limits": info["limits"]}

    def pause(self, queue_type: str, queue_id: str | None = None, for_ms: int | None = None) -> dict[str, Any]:
        """Hold a queue (or with no queue_id the whole type) back until `resume`, or
        for `for_ms`: enqueues are still accepted and active jobs can still finish."""
        return self._pause(
            "pause", queue_type, queue_id, check.optional_integer("for_ms", for_ms, 1, check.MAX_INTERVAL)
        )

    def resume(self, queue_type: str, queue_id: str | None = None) -> dict[str, Any]:
        """Let a paused queue (or type) be served again."""
        return self._pause("resume", queue_type, queue_id, None)

    def _pause(self, action: str, queue_type: str, queue_id: str | None, for_ms: int | None) -> dict[str, Any]:
        check.identifier("queue_type", queue_type)
        if queue_id is not None:
            check.identifier("queue_id", queue_id)
        args = [action, queue_id or "", "" if for_ms is None else for_ms, self.keys.base(queue_type), self._now()]
        until = int(self._script("pause", self.keys.type_keys(queue_type), args))
        if action == "pause":
            self.redis.sadd(self.keys.queue_types(), queue_type)
            return {"status": "success", "paused_until": None if until < 0 else until}
        return {"status": "success"}

    def type_paused_until(self, queue_type: str) -> int | None:
        """When the type's pause ends in ms (-1: until resumed), None when not paused."""
        until = self.redis.get(self.keys.type_paused(check.identifier("queue_type", queue_type)))
        return None if until is None else int(until)

    def queue_info(self, queue_type: str, queue_id: str) -> dict[str, Any]:
        """One queue now: queue_length, active, scheduled, its effective limits,
        paused_until, next_ready_at and the age of its oldest queued job."""
        self._check_queue(queue_type, queue_id)
        _, type_paused, queues = self._view(queue_type, ["one", queue_id])
        return {"status": "success", **queues[0], **_type_pause(type_paused)}

    def queues(self, queue_type: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """A page of the type's queues (holding jobs or limits of their own) in
        queue_id order, each as `queue_info` describes it; the cost grows with the
        page, not with the number of queues."""
        check.identifier("queue_type", queue_type)
        check.integer("limit", limit, 1, 1000)
        check.integer("offset", offset, 0, check.MAX_OFFSET)
        total, type_paused, queues = self._view(queue_type, ["page", offset, limit])
        return {"status": "success", "total": total, **_type_pause(type_paused), "queues": queues}

    def _view(self, queue_type: str, args: list[Any]) -> tuple[int, int | None, list[dict[str, Any]]]:
        """view.lua's answer: known queues, the type's pause, and the queues asked."""
        reply = self._script("view", self.keys.type_keys(queue_type), [self.keys.base(queue_type), self._now(), *args])
        now = int(reply[0])
        return int(reply[1]), reply[2], [_queue_view(now, reply[i : i + 14]) for i in range(3, len(reply), 14)]

    # -- dead letters --------------------------------------------------------

    def dead_letters(self, queue_type: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """The type's dead-lettered jobs, oldest death first, with payloads and reasons."""
        check.identifier("queue_type", queue_type)
        check.integer("limit", limit, 1, 1000)
        check.integer("offset", offset, 0, check.MAX_OFFSET)
        index = self.keys.dead_index(queue_type)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrange(index, offset, offset + limit - 1, withscores=True)
            pipe.zcard(index)
            page, total = pipe.execute()
        members = [name for name, _ in page]
        records = self.redis.hmget(self.keys.dead(queue_type), members) if members else []
        jobs = []
        for (name, died_at), raw in zip(page, records, strict=True):
            if raw is not None:
                queue_id, job_id = name.decode().split(":", 1)
                jobs.append({"queue_id": queue_id, "job_id": job_id, "died_at": int(died_at), **_dead_record(raw)})
        return {"status": "success", "total": int(total), "jobs": jobs}

    def retry_dead_letter(self, queue_type: str, queue_id: str, job_id: str) -> dict[str, Any]:
        """Put a dead-lettered job back at the end of its queue with its full requeue_limit."""
        self._check_job(queue_type, queue_id, job_id)
        keys = self._queue_keys(queue_type, queue_id)
        code = self._script("dead_retry", keys, [self._now(), queue_id, job_id, self.keys.base(queue_type)])
        if code == 0:
            raise NotFound("no such dead-lettered job")
        if code < 0:
            raise DuplicateJob("job_id is already queued or active in this queue", state="queued")
        self.redis.sadd(self.keys.queue_types(), queue_type)
        return {"status": "queued"}

    def delete_dead_letter(self, queue_type: str, queue_id: str, job_id: str) -> dict[str, Any]:
        """Drop one dead-lettered job for good."""
        self._check_job(queue_type, queue_id, job_id)
        deleted = self._script(
            "dead_delete",
            [self.keys.dead(queue_type), self.keys.dead_index(queue_type)],
            [member(queue_id, job_id)],
        )
        if not deleted:
            raise NotFound("no such dead-lettered job")
        return {"status": "success"}

    # -- views -----------------------------------------------------------------

    def queue_types(self) -> list[str]:
        return sorted(name.decode() for name in self.redis.smembers(self.keys.queue_types()))

    def metrics(
        self,
        queue_type: str | None = None,
        queue_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> dict[str, Any]:
        """Global, per-type or per-queue metrics, as in the seed README.

        The per-type view lists the queues holding jobs in id order, `limit` of
        them from `offset` (all by default, as the seed did), with their `total`.
        """
        if queue_id is not None and queue_type is None:
            raise BadArgumentException("queue_id needs a queue_type")
        if queue_type is None:
            types = self.queue_types()
            return {"status": "success", "queue_types": types, **self._counts(types, "")}
        check.identifier("queue_type", queue_type)
        if queue_id is None:
            check.optional_integer("limit", limit, 1, MAX_PAGE)
            check.integer("offset", offset, 0, check.MAX_OFFSET)
            names = sorted(name.decode() for name in self.redis.hkeys(self.keys.queues(queue_type)))
            page = names[offset:] if limit is None else names[offset : offset + limit]
            return {"status": "success", "queue_ids": page, "total": len(names)}
        return {
            "status": "success",
            "queue_length": self.get_queue_length(queue_type, queue_id),
            **self._counts([queue_type], f":{queue_id}"),
        }

    def minute_counts(self, queue_type: str) -> dict[str, dict[str, int]]:
        """One type's enqueue and dequeue counts of the last ten minutes."""
        return self._counts([check.identifier("queue_type", queue_type)], "")

    def _counts(self, queue_types: Iterable[str], suffix: str) -> dict[str, dict[str, int]]:
        """Ten per-minute enqueue and dequeue buckets summed over `queue_types`."""
        now = int(self._now() or self._redis_time())
        current = now - now % 60_000
        minutes = [current - 60_000 * back for back in range(METRIC_MINUTES - 1, -1, -1)]
        fields = ["e" + suffix, "d" + suffix]
        with self.redis.pipeline(transaction=False) as pipe:
            for queue_type in queue_types:
                for minute in minutes:
                    pipe.hmget(self.keys.stats(queue_type, minute), fields)
            replies = pipe.execute()
        enqueued = dict.fromkeys(map(str, minutes), 0)
        dequeued = dict.fromkeys(map(str, minutes), 0)
        for index, (e, d) in enumerate(replies):
            minute = str(minutes[index % METRIC_MINUTES])
            enqueued[minute] += int(e or 0)
            dequeued[minute] += int(d or 0)
        return {"enqueue_counts": enqueued, "dequeue_counts": dequeued}

    def type_stats(self, queue_type: str) -> dict[str, Any]:
        """One type's monitoring figures in one round trip: counters since it began
        (enqueued, dequeued, finished, failed, requeued, dead), jobs by state
        (queued, active, scheduled, dead) and queues by state (ready, waiting,
        paused, capped)."""
        check.identifier("queue_type", queue_type)
        reply = self._script("stats", self.keys.type_keys(queue_type), [self._now()])
        totals = dict(zip(reply[1][::2], reply[1][1::2], strict=True))
        count = {name: int(totals.get(name.encode(), 0)) for name in COUNTERS}
        active, scheduled, dead, ready, waiting, paused, capped, type_paused = (int(value) for value in reply[2:10])
        oldest = reply[10]
        return {
            "counters": count,
            "jobs": {"queued": int(totals.get(b"queued", 0)), "active": active, "scheduled": scheduled, "dead": dead},
            "queues": {"ready": ready, "waiting": waiting, "paused": paused, "capped": capped},
            "type_paused": bool(type_paused),
            "oldest_queued_age_ms": None if oldest is None else max(int(reply[0]) - int(oldest), 0),
        }

    def deep_status(self) -> dict[str, Any]:
        """Prove Redis answers and accepts writes (a full disk refuses them)."""
        self.redis.set(f"{self.keys.prefix}:deep_status", "ok", px=10_000)
        return {"status": "success"}

    # -- helpers -------------------------------------------------------------

    def _script(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        """Run one Lua script: auto-pipelined under gevent, else through redis-py."""
        if self._pipeline is None:
            return self.scripts[name](keys, args)
        script = self.scripts[name]
        try:
            return self._pipeline.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted or its script cache was flushed
            self._pipeline.call("SCRIPT", "LOAD", script.script)
            return self._pipeline.call("EVALSHA", script.sha, len(keys), *keys, *args)

    def _now(self) -> str | int:
        """The explicit clock's time in ms, or "" to let each script read Redis TIME."""
        return "" if self._clock is None else int(self._clock())

    def _redis_time(self) -> int:
        seconds, micros = self.redis.time()
        return seconds * 1000 + micros // 1000

    def _queue_keys(self, queue_type: str, queue_id: str) -> list[str]:
        """The type's keys, then the queue's list and jobs hash."""
        return [
            *self.keys.type_keys(queue_type),
            self.keys.queue(queue_type, queue_id),
            self.keys.jobs(queue_type, queue_id),
        ]

    @staticmethod
    def _check_queue(queue_type: Any, queue_id: Any) -> None:
        check.identifier("queue_type", queue_type)
        check.identifier("queue_id", queue_id)

    def _check_job(self, queue_type: Any, queue_id: Any, job_id: Any) -> list[str]:
        """Validate the three identifiers of one job and return its ARGV pair."""
        self._check_queue(queue_type, queue_id)
        check.identifier("job_id", job_id)
        return [queue_id, job_id]


_MISSING = object()
NOT_ACTIVE = "job is not active (never dequeued, finished, or expired and requeued)"
STALE_RECEIPT = "receipt does not name the job's current delivery: it was delivered again, or went back to its queue"
MAX_ERROR = 4000
JOB_FIELDS = ("job_id", "payload", "interval", "requeue_limit", "max_queued_length", "delay_ms", "not_before")


def _auto_pipeline(config: Config) -> Any:
    """An AutoPipeline when gevent has patched this process and Redis is neither a
    cluster (one connection cannot serve many nodes) nor behind TLS (redis-py
    speaks TLS with all its options); None otherwise."""
    if config.redis.clustered or not config.redis.autopipeline or config.redis.url.startswith("rediss:"):
        return None
    try:
        from gevent import monkey
    except ImportError:
        return None
    if not monkey.is_module_patched("socket"):
        return None
    from .autopipeline import AutoPipeline

    return AutoPipeline(config.redis)


def _limit(name: str, value: Any, minimum: int, maximum: int) -> Any:
    """One field of set_limits as limits.lua takes it: a number, "-" to clear, "" to keep."""
    if value is KEEP:
        return ""
    if value is None:
        return "-"
    return check.integer(name, value, minimum, maximum)


def _type_pause(until: Any) -> dict[str, Any]:
    return {} if until is None else {"type_paused_until": None if int(until) < 0 else int(until)}


def _queue_view(now: int, values: list[Any]) -> dict[str, Any]:
    """view.lua's 14 values of one queue as the answer's object."""
    queue_id, length, active, scheduled, interval, interval_source, burst, burst_source = values[:8]
    max_active, max_active_source, paused, next_ready, oldest, _ = values[8:]
    return {
        "queue_id": queue_id.decode(),
        "queue_length": length,
        "active": active,
        "scheduled": scheduled,
        "limits": {
            "interval": {"value": interval, "source": interval_source.decode()},
            "burst": {"value": burst, "source": burst_source.decode()},
            "max_active": {"value": max_active, "source": max_active_source.decode()},
        },
        "paused_until": None if paused is None else (None if paused < 0 else paused),
        "paused": paused is not None,
        "next_ready_at": next_ready,
        "oldest_queued_age_ms": None if oldest is None else max(now - oldest, 0),
    }


def _glob_escape(text: str) -> str:
    """`text` matched literally in a SCAN MATCH pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def _dead_record(raw: bytes) -> dict[str, Any]:
    record = ujson.loads(raw)
    return {
        "payload": ujson.loads(record["payload"]),
        "requeue_limit": record["requeue_limit"],
        "reason": record["reason"],
        "last_error": record.get("last_error"),
    }


def _token() -> str:
    """The receipt stem of one dequeue call; job n of the call gets "<token>.<n>"."""
    return secrets.token_hex(8)


def _receipt(receipt: str | None) -> str:
    return "" if receipt is None else check.receipt(receipt)


def _ack_result(ack: tuple[str, str, str], code: int) -> dict[str, Any]:
    result = {"queue_id": ack[0], "job_id": ack[1]}
    if code == 1:
        return {**result, "status": "success"}
    if code == -1:
        return {**result, "status": "failure", "code": StaleReceipt.status, "message": STALE_RECEIPT}
    return {**result, "status": "failure", "code": NotFound.status, "message": NOT_ACTIVE}


def _batch_result(job: list[Any], code: int) -> dict[str, Any]:
    result = {"queue_id": job[0], "job_id": job[1]}
    if code in _ENQUEUE_FAILURES:
        error, message, state = _ENQUEUE_FAILURES[code]
        failure = {**result, "status": "failure", "code": error.status, "message": message}
        return {**failure, "state": state} if state else failure
    return {**result, "status": "scheduled" if code == 2 else "queued"}
