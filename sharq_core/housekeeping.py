"""Housekeeping: the requeue pass, type discovery, clearing queues, dead-letter retry and delete."""

from __future__ import annotations

import logging
import time
from typing import Any

from . import validation as check
from .base import DISCOVERY_INTERVAL_S, RATE_MEMORY_MS, REQUEUE_BATCH, EngineBase
from .exceptions import BadArgumentException, Conflict, DuplicateJob, NotFound
from .keys import glob_escape, member
from .shards import type_of

log = logging.getLogger(__name__)


class HousekeepingCommands(EngineBase):
    """The engine's requeue, discover_types, clear_queue, dead-letter retry and delete."""

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
        for shard in self._registered():  # each shard of a sharded type on its own
            for name, count in self.requeue_type(shard).items():
                totals[name] += count
            self.finish_campaigns(shard)
        return totals

    def finish_campaigns(self, shard: str) -> int:
        raise NotImplementedError  # campaigns.py

    def requeue_type(self, queue_type: str) -> dict[str, int]:
        """Requeue one type's expired jobs in batches of REQUEUE_BATCH until none is left."""
        keys = self.keys.type_keys(queue_type) + self.keys.live_keys(queue_type)
        args = [self._now(), self.keys.base(queue_type), REQUEUE_BATCH, RATE_MEMORY_MS, self.config.dedupe_window_ms]
        totals = {"requeued": 0, "dead": 0}  # "dead" counts those that expired too: dead letters all
        while True:
            handled, requeued, dead, trimmed, live, promoted, expired, swept = self._script("requeue", keys, args)
            totals["requeued"] += requeued
            totals["dead"] += dead + expired
            if max(handled, trimmed, promoted, swept) < REQUEUE_BATCH:
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
        if self.redis.exists(*self.keys.live_keys(queue_type)):
            self.redis.sadd(self.keys.queue_types(), queue_type)
        else:
            self._remember_drained(type_of(queue_type))

    def _remember_drained(self, queue_type: str) -> None:
        """Keep listing a drained type in the views for idle_type_retention_ms (a
        rate() over its counters, a dashboard row of zeros); older ones are dropped."""
        now = int(self._now() or self._redis_time())
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.drained_types(), {queue_type: now})
            pipe.zremrangebyscore(self.keys.drained_types(), "-inf", now - self.config.idle_type_retention_ms)
            pipe.execute()

    def _registered(self) -> list[str]:
        """The registry as stored: type names, shard names ("<type>#<n>") for shards."""
        return sorted(name.decode() for name in self.redis.smembers(self.keys.queue_types()))

    def discover_types(self) -> list[str]:
        """List again every type holding jobs that the registry lacks; returns them.

        SCAN visits the whole keyspace in small steps (on a cluster, every
        primary), so this is for the background loop, not for requests.
        """
        self._discovered_at = time.monotonic()
        prefix = glob_escape(self.keys.prefix)
        found = set()
        for suffix in ("queues", "dead", "campaigns"):
            for key in self.redis.scan_iter(match=f"{prefix}:{{*}}:{suffix}", count=1000):
                name = key.decode()
                found.add(name[len(self.keys.prefix) + 2 : -len(suffix) - 2])
        missing = sorted(found - set(self._registered()))
        if missing:
            self.redis.sadd(self.keys.queue_types(), *missing)
        return missing

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

        def clear(shard: str) -> int:
            keys, base, purge = self._queue_keys(shard, queue_id), self.keys.base(shard), "1" if purge_all else "0"
            deleted, at = 0, b"queued"
            while at != b"done":
                args = [queue_id, purge, REQUEUE_BATCH, at, RATE_MEMORY_MS, self._now(), base]
                count, at = self._script("clear", keys, args)
                deleted += count
            return deleted

        deleted = self._on_queue(queue_type, queue_id, clear, lambda deleted: not deleted)
        if not deleted:
            raise NotFound("queue holds nothing to delete")
        return {"status": "success", "message": f"deleted {deleted} job(s)", "deleted": deleted}

    def retry_dead_letter(
        self, queue_type: str, queue_id: str, job_id: str, expire_at: int | None = None, ttl_ms: int | None = None
    ) -> dict[str, Any]:
        """Put a dead-lettered job back at the end of its queue with its full
        requeue_limit and its options; it keeps its deadline unless `expire_at` or
        `ttl_ms` gives a new one, and a deadline not after now is refused."""
        self._check_job(queue_type, queue_id, job_id)
        deadline = check.deadline(expire_at, ttl_ms) or ""

        def retry(shard: str) -> tuple[int, str]:
            args = [self._now(), queue_id, job_id, self.keys.base(shard), deadline]
            return self._script("dead_retry", self._queue_keys(shard, queue_id), args), shard

        code, shard = self._on_queue(queue_type, queue_id, retry, lambda reply: reply[0] == 0)
        if code == 0:
            raise NotFound("no such dead-lettered job")
        if code == -2:
            raise BadArgumentException("expire_at must be later than now: the job's deadline has passed, give a new"
                                       " expire_at or ttl_ms to retry it")  # fmt: skip
        if code == -3:
            raise Conflict("the job's campaign was cancelled: it takes no jobs back", state="cancelled")
        if code < 0:
            raise DuplicateJob("job_id is already queued or active in this queue", state="queued")
        self.redis.sadd(self.keys.queue_types(), shard)
        return {"status": "queued"}

    def delete_dead_letter(self, queue_type: str, queue_id: str, job_id: str) -> dict[str, Any]:
        """Drop one dead-lettered job for good."""
        self._check_job(queue_type, queue_id, job_id)

        def delete(shard: str) -> int:
            keys = [self.keys.dead(shard), self.keys.dead_index(shard)]
            return int(self._script("dead_delete", keys, [member(queue_id, job_id)]))

        if not self._on_queue(queue_type, queue_id, delete, lambda deleted: not deleted):
            raise NotFound("no such dead-lettered job")
        return {"status": "success"}
