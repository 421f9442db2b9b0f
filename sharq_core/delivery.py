"""Workers' calls: take jobs, then finish, fail, touch or hand them back."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from . import validation as check
from .base import MAX_BATCH, RATE_MEMORY_MS, EngineBase
from .exceptions import BadArgumentException, NotFound, StaleReceipt
from .jobs import DequeuedJob
from .keys import member
from .shards import Layout

NOT_ACTIVE = "job is not active (never dequeued, finished, or expired and requeued)"

STALE_RECEIPT = "receipt does not name the job's current delivery: it was delivered again, or went back to its queue"

MAX_ERROR = 4000

_ACK_FIELDS = frozenset(("queue_id", "job_id", "receipt", "cost"))

REAL_COST_NEEDS_RECEIPT = "cost needs the receipt of the delivery it reports on"


class DeliveryCommands(EngineBase):
    """The engine's dequeue, take, finish, finish_many, touch, fail, release."""

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
        layout = self._layout(queue_type)
        if layout.count == 1:
            return self._take_shard(queue_type, count)
        jobs: list[DequeuedJob] = []
        waits = []
        for shard in layout.rotation(next(self._turns)):  # each call starts at another shard
            taken, wait = self._take_shard(shard, count - len(jobs))
            jobs += taken
            if len(jobs) == count:
                break
            if wait is not None:
                waits.append(wait)
        return (jobs, 0) if jobs else ([], min(waits, default=None))

    def _take_shard(self, shard: str, count: int) -> tuple[list[DequeuedJob], int | None]:
        args = [self._now(), self.keys.base(shard), self.config.job_expire_interval, count, _token(), RATE_MEMORY_MS]
        return self._taken(self._script("dequeue", self.keys.type_keys(shard), args), 2)

    def _taken(self, reply: list[Any], start: int) -> tuple[list[DequeuedJob], int | None]:
        """The jobs a dequeue or finish script handed out from `reply[start:]`."""
        now, wait, expire = int(reply[0]), int(reply[1]), self.config.job_expire_interval
        jobs = [DequeuedJob.from_reply(now, expire, *reply[i : i + 5]) for i in range(start, len(reply), 5)]
        return jobs, (None if wait < 0 else wait)

    def finish(
        self,
        job_id: str,
        queue_id: str,
        queue_type: str = "default",
        receipt: str | None = None,
        cost: int | None = None,
    ) -> dict[str, Any]:
        """The seed's finish: `finish_job`, answering ``{'status': 'failure'}`` when
        the job is not active."""
        try:
            return self.finish_job(job_id, queue_id, queue_type, receipt, cost)
        except NotFound:
            return {"status": "failure"}

    def finish_job(
        self,
        job_id: str,
        queue_id: str,
        queue_type: str = "default",
        receipt: str | None = None,
        cost: int | None = None,
    ) -> dict[str, Any]:
        """Acknowledge an active job; NotFound when it is not active.

        With `receipt`, only the delivery it names may finish the job: StaleReceipt
        when the job has been delivered again (or went back to its queue) since.
        With it, `cost` reports what the job really cost (see `_real_cost`).
        """
        self._check_job(queue_type, queue_id, job_id)
        _real_cost(receipt, cost)  # refused as "receipt ..." or "cost ...", not as an entry of a batch
        ack = {"queue_id": queue_id, "job_id": job_id, "receipt": receipt}
        results, _, _ = self.finish_many(queue_type, [ack if cost is None else {**ack, "cost": cost}])
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
        layout = self._layout(queue_type)
        results, taken, wait = self._finish_by(layout, acks, next_count)
        missed = [index for index, result in enumerate(results) if result.get("code") == NotFound.status]
        if missed and self._layout(queue_type, fresh=True) != layout:
            # routed by a count cached before another server changed it: the acks
            # that found nothing are asked again where the count read afresh puts them
            again, _, _ = self._finish_by(self._layout(queue_type), [acks[index] for index in missed], 0)
            for index, result in zip(missed, again, strict=True):
                results[index] = result
        return results, taken, wait

    def _finish_by(
        self, layout: Layout, acks: list[tuple[str, str, str]], next_count: int
    ) -> tuple[list[dict[str, Any]], list[DequeuedJob], int | None]:
        """finish_many's acks routed by `layout`, and the take after them."""
        queue_type = layout.queue_type
        if layout.count == 1:  # acks and take in one call
            return self._finish_shard(queue_type, acks, next_count)
        groups = layout.group({index: ack[0] for index, ack in enumerate(acks)})
        results: list[dict[str, Any]] = [{} for _ in acks]
        taken: list[DequeuedJob] = []
        last = list(groups)[-1] if groups else None
        calls = [  # the last call also takes, as unsharded
            self._finish_call(shard, [acks[i] for i in indexes], next_count if shard == last else 0)
            for shard, indexes in groups.items()
        ]
        for indexes, reply in zip(groups.values(), self._scripts("finish", calls), strict=True):
            mine = self._finished([acks[i] for i in indexes], reply)
            for index, result in zip(indexes, mine[0], strict=True):
                results[index] = result
            taken += mine[1]
        if len(taken) == next_count:
            return results, taken, None
        more, wait = self.take(queue_type, next_count - len(taken))  # that shard had too few: the others
        return results, taken + more, (wait if not taken and not more else None)

    def _finish_shard(
        self, shard: str, acks: list[tuple[str, str, str, Any]], next_count: int
    ) -> tuple[list[dict[str, Any]], list[DequeuedJob], int | None]:
        """finish.lua on one shard: its acks, then up to `next_count` jobs of it."""
        return self._finished(acks, self._script("finish", *self._finish_call(shard, acks, next_count)))

    def _finish_call(
        self, shard: str, acks: list[tuple[str, str, str, Any]], next_count: int
    ) -> tuple[list[Any], list[Any]]:
        """The keys and arguments of one finish.lua call on one shard."""
        keys = self.keys.type_keys(shard)
        args: list[Any] = [
            self._now(),
            self.keys.base(shard),
            RATE_MEMORY_MS,
            self.config.dedupe_window_ms,
            self.config.job_expire_interval,
            next_count,
            _token(),
        ]
        for queue_id, job_id, receipt, cost in acks:
            keys.append(self.keys.jobs(shard, queue_id))
            args += [queue_id, job_id, receipt, cost]
        return keys, args

    def _finished(
        self, acks: list[tuple[str, str, str, Any]], reply: list[Any]
    ) -> tuple[list[dict[str, Any]], list[DequeuedJob], int | None]:
        """Each ack's result and the jobs taken, from a finish.lua reply."""
        count = int(reply[2])
        results = [_ack_result(ack, int(code)) for ack, code in zip(acks, reply[3 : 3 + count], strict=True)]
        taken, wait = self._taken(reply, 3 + count)
        return results, taken, wait

    def _ack(self, index: int, job: Any) -> tuple[str, str, str, Any]:
        """One entry of a finish batch as (queue_id, job_id, receipt or "", real cost or "")."""
        try:
            if not isinstance(job, Mapping):
                raise BadArgumentException("must be an object")
            check.known_fields(job, _ACK_FIELDS)
            queue_id = check.identifier("queue_id", job.get("queue_id"))
            job_id = check.identifier("job_id", job.get("job_id"))
            receipt, cost = _real_cost(job.get("receipt"), job.get("cost"))
            return queue_id, job_id, receipt, cost
        except BadArgumentException as exc:
            raise BadArgumentException(f"jobs[{index}]: {exc.message}") from None

    def touch(
        self, job_id: str, queue_id: str, queue_type: str = "default", receipt: str | None = None
    ) -> dict[str, Any]:
        """Heartbeat: push an active job's expiry out by job_expire_interval."""
        self._check_job(queue_type, queue_id, job_id)
        args = [self._now(), member(queue_id, job_id), self.config.job_expire_interval, _receipt(receipt), job_id]

        def touch(shard: str) -> int:
            keys = [self.keys.active(shard), self.keys.receipts(shard), self.keys.jobs(shard, queue_id)]
            return int(self._script("touch", keys, args))

        expiry = self._on_queue(queue_type, queue_id, touch, lambda code: code == -1)
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
        release: bool = False,
        cost: int | None = None,
    ) -> dict[str, Any]:
        """A worker reports that an active job failed: it goes back to the front of
        its queue at once (or after `retry_after_ms`), counting against its
        requeue_limit like an expiry; with none left, or with `dead`, it goes to
        the dead letters with `error` as its reason. With `throttle` (its upstream
        answered 429) it goes back to the front without counting, and the whole
        queue is paused for `retry_after_ms`. With `release` (a stopping worker
        gives back what it could not finish) it goes back to the front at once,
        without counting. With the receipt, `cost` reports what the attempt
        really cost (see `_real_cost`)."""
        self._check_job(queue_type, queue_id, job_id)
        receipt, real_cost = _real_cost(receipt, cost)
        retry_after = check.optional_integer("retry_after_ms", retry_after_ms, 0, check.MAX_INTERVAL) or 0
        if error is not None and (not isinstance(error, str) or len(error) > MAX_ERROR):
            raise BadArgumentException(f"error must be a string of at most {MAX_ERROR} characters")
        if not isinstance(dead, bool):
            raise BadArgumentException("dead must be true or false")
        if not isinstance(throttle, bool):
            raise BadArgumentException("throttle must be true or false")
        if throttle and not retry_after:
            raise BadArgumentException("throttle needs retry_after_ms: how long the upstream asked to wait")
        if not isinstance(release, bool):
            raise BadArgumentException("release must be true or false")
        if release and (dead or throttle or retry_after):
            raise BadArgumentException("release (back at once, uncounted) takes no dead, throttle or retry_after_ms")
        code = self._fail(
            queue_type,
            queue_id,
            job_id,
            receipt,
            check.text("error", error or ""),
            retry_after,
            dead=dead,
            counts=not (throttle or release),
            throttle=throttle,
            real_cost=real_cost,
        )
        if code == 0:
            raise NotFound(NOT_ACTIVE)
        if code == -1:
            raise StaleReceipt(STALE_RECEIPT)
        if code in (2, 3):
            return {"status": "success", "state": "dead" if code == 2 else "expired"}
        # only a job that really waits retries: one with no requeue left whose campaign
        # was cancelled ends at once, whatever retry_after_ms said
        return {"status": "success", "state": "retrying" if code == 4 else "queued"}

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
        real_cost: int | str = "",
    ) -> int:
        """fail.lua on the queue's shard, its ARGV in order; returns its code."""

        def fail(shard: str) -> int:
            keys = [*self.keys.type_keys(shard), self.keys.jobs(shard, queue_id)]
            args = [self._now(), self.keys.base(shard), queue_id, job_id, receipt, error, retry_after]
            args += [int(dead), int(counts), RATE_MEMORY_MS, int(throttle), real_cost]
            return int(self._script("fail", keys, args))

        return self._on_queue(queue_type, queue_id, fail, lambda code: code == 0)


def _token() -> str:
    """The receipt stem of one dequeue call; job n of the call gets "<token>.<n>"."""
    return secrets.token_hex(8)


def _receipt(receipt: str | None) -> str:
    return "" if receipt is None else check.receipt(receipt)


def _real_cost(receipt: Any, cost: Any) -> tuple[str, int | str]:
    """The receipt ("" = any delivery) and the real cost a finish or fail reports
    ("" = none). A cost known only after the call (tokens used) charges what it
    exceeds the job's own to the rate state; it needs the receipt, so that only
    the delivery that ran the job can report it."""
    receipt = _receipt(receipt)
    real = check.cost("cost", cost)
    if real is not None and not receipt:
        raise BadArgumentException(REAL_COST_NEEDS_RECEIPT)
    return receipt, "" if real is None else real


def _ack_result(ack: tuple[str, str, str, Any], code: int) -> dict[str, Any]:
    result = {"queue_id": ack[0], "job_id": ack[1]}
    if code == 1:
        return {**result, "status": "success"}
    if code == -1:
        return {**result, "status": "failure", "code": StaleReceipt.status, "message": STALE_RECEIPT}
    return {**result, "status": "failure", "code": NotFound.status, "message": NOT_ACTIVE}
