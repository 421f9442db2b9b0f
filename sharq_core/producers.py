"""Producers' calls: enqueue one job or a batch, each checked whole before Redis is touched."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import validation as check
from .base import MAX_BATCH, EngineBase
from .exceptions import BadArgumentException, Conflict, DuplicateJob, NotReplicated, QueueFull, ShardsChanged
from .shards import CHANGING

# enqueue.lua's codes: the exception, its message and the job's state
_ENQUEUE_FAILURES = {
    -1: (DuplicateJob, "job_id is already queued in this queue", "queued"),
    -2: (QueueFull, "queue already holds max_queued_length jobs", None),
    -3: (DuplicateJob, "job_id is already active in this queue", "active"),
    -4: (DuplicateJob, "job_id is dead-lettered in this queue: retry or delete the dead letter first", "dead"),
    -5: (DuplicateJob, "job_id was finished within the dedupe window (dedupe_window_ms)", "finished"),
    -6: (DuplicateJob, "job_id is already scheduled in this queue", "scheduled"),
    -7: (BadArgumentException, "expire_at must be later than now (Redis clock)", None),
    -8: (Conflict, "the job's campaign was cancelled: it takes no new jobs", "cancelled"),
}

_MISSING = object()

JOB_FIELDS = (
    "job_id", "payload", "interval", "requeue_limit", "max_queued_length", "delay_ms", "not_before", "expire_at",
    "ttl_ms", "campaign", "cost", "priority",
)  # fmt: skip
_BATCH_FIELDS = frozenset((*JOB_FIELDS, "queue_id"))


class ProducerCommands(EngineBase):
    """The engine's enqueue, enqueue_fields, enqueue_many."""

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
        expire_at: int | None = None,
        ttl_ms: int | None = None,
        campaign: str | None = None,
        cost: int | None = None,
        priority: int | None = None,
    ) -> dict[str, Any]:
        """Queue one job; raises DuplicateJob, QueueFull or Conflict (its campaign
        was cancelled) and then changes nothing.

        With `delay_ms` (from now) or `not_before` (epoch ms, on the Redis clock) the
        job is scheduled: it joins the back of its queue when due. With `expire_at`
        (epoch ms, Redis clock) or `ttl_ms` (from now, even for a delayed job) it is
        never handed out after that: it expires into the dead letters instead.
        With `campaign` it counts in that campaign of the type (campaigns.py).
        `cost` (units, 1 by default) is what it counts against its queue's and
        type's rate limits and quotas. With `priority` (0-9, default 0) it is handed
        out before every job of a lower priority queued in its queue, after those of
        its own queued before it.
        """
        job = self._job_args(
            queue_id, job_id, payload, interval, requeue_limit, max_queued_length, delay_ms, not_before, expire_at,
            ttl_ms, campaign, cost, priority,
        )  # fmt: skip
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
        """Queue up to MAX_BATCH jobs of one type in one atomic call (one per shard
        on a type spread over shards), one result each.

        Any invalid job rejects the whole batch before Redis is touched; a
        duplicate or a full queue fails only that job. Should an error be raised
        (Redis unavailable, ShardsChanged), some shards' jobs may be stored:
        sending the batch again is safe, those answer DuplicateJob ("queued").
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
            check.known_fields(job, _BATCH_FIELDS)
            get = job.get  # as _fields, without the dict between: this runs for every job of a batch
            return self._job_args(
                get("queue_id"), get("job_id"), get("payload", _MISSING), get("interval"), get("requeue_limit"),
                get("max_queued_length"), get("delay_ms"), get("not_before"), get("expire_at"), get("ttl_ms"),
                get("campaign"), get("cost"), get("priority"),
            )  # fmt: skip
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
            "expire_at": job.get("expire_at"),
            "ttl_ms": job.get("ttl_ms"),
            "campaign": job.get("campaign"),
            "cost": job.get("cost"),
            "priority": job.get("priority"),
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
        expire_at: Any = None,
        ttl_ms: Any = None,
        campaign: Any = None,
        cost: Any = None,
        priority: Any = None,
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
        limit = check.integer("requeue_limit", requeue_limit, -1, check.MAX_REQUEUE_LIMIT)
        deadline = check.deadline(expire_at, ttl_ms)
        max_length = check.optional_integer("max_queued_length", max_queued_length, 1, check.MAX_QUEUED_LENGTH)
        units = check.cost("cost", cost)
        rank = check.optional_integer("priority", priority, 0, check.MAX_PRIORITY)
        # options ride after the requeue limit in the order c, p, x, g, each only
        # when not its default (see job_option in _helpers.lua)
        options = "" if units is None or units == 1 else f"|c={units}"
        options += f"|p={rank}" if rank else ""
        options += "" if deadline is None else f"|x={deadline}"
        options += "" if campaign is None else f"|g={check.identifier('campaign', campaign)}"
        return [
            check.identifier("queue_id", queue_id),
            check.identifier("job_id", job_id),
            check.payload_text(payload),
            check.integer("interval", interval, 0, check.MAX_INTERVAL),
            f"{limit}{options}",
            "" if max_length is None else max_length,
            due_spec,
        ]

    def _enqueue_scripts(self, groups: dict[str, Any], calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        """enqueue.lua's calls. When replicas fall short, the jobs are on the primary
        all the same, and no reply says whether a shard was empty: every shard is
        listed in the registry (a drained one leaves it again at the next requeue
        pass), or a failover keeping those jobs would leave them unseen by the
        requeue loop until its discovery scan."""
        try:
            return self._scripts("enqueue", calls)
        except NotReplicated:
            self.redis.sadd(self.keys.queue_types(), *groups)
            raise

    def _enqueue(self, queue_type: str, jobs: list[list[Any]]) -> list[int]:
        """enqueue.lua's code for each job, one call per shard the jobs map to, all
        sent together (`_scripts`). A shard that finds the shard count changed
        writes nothing; its jobs are routed again on the count read afresh."""
        codes: dict[int, int] = {}
        for attempt in range(3):
            if attempt == 2 and not self._settle_layout(queue_type):
                break
            layout = self._layout(queue_type, fresh=attempt > 0)
            pending = {index: job[0] for index, job in enumerate(jobs) if index not in codes}
            groups = layout.group(pending)
            calls = [self._enqueue_call(shard, layout.count, [jobs[i] for i in ids]) for shard, ids in groups.items()]
            listed = []  # shards that held no queue before the call
            for (shard, indexes), reply in zip(groups.items(), self._enqueue_scripts(groups, calls), strict=True):
                type_was_empty, *shard_codes = reply
                if type_was_empty < 0:  # the shard count changed: routed again
                    continue
                if type_was_empty:
                    listed.append(shard)
                codes.update(zip(indexes, shard_codes, strict=True))
            if listed:
                # the only write outside the types' slots; rare, so one more trip is fine.
                # Should it be lost, requeue()'s discovery scan lists the type again.
                self.redis.sadd(self.keys.queue_types(), *listed)
            if len(codes) == len(jobs):
                return [codes[index] for index in range(len(jobs))]
        raise ShardsChanged(CHANGING)

    def _enqueue_call(self, shard: str, count: int, jobs: list[list[Any]]) -> tuple[list[Any], list[Any]]:
        """The keys and arguments of one enqueue.lua call on one shard."""
        keys = self.keys.type_keys(shard)
        args: list[Any] = [self._now(), self.keys.base(shard), self.config.dedupe_window_ms, count]
        for job in jobs:
            keys += [self.keys.queue(shard, job[0]), self.keys.jobs(shard, job[0])]
            args += job
        return keys, args


def _batch_result(job: list[Any], code: int) -> dict[str, Any]:
    result = {"queue_id": job[0], "job_id": job[1]}
    if code in _ENQUEUE_FAILURES:
        error, message, state = _ENQUEUE_FAILURES[code]
        failure = {**result, "status": "failure", "code": error.status, "message": message}
        return {**failure, "state": state} if state else failure
    return {**result, "status": "scheduled" if code == 2 else "queued"}
