"""A queue type's layout: over how many shards it is spread, and changing that.

A change seals every shard involved (layout.lua), moves what the shards remember
of drained queues to where the new count puts them, then commits the count to
each shard, the type's unsharded keys (which servers read) last. While sealed,
no server can create per-queue state anywhere, so a server routing by a stale
count can never strand a job. A change left half done (Redis failed under it) is
recorded in the unsharded keys (`changing`): a call that meets a sealed shard
waits for the change to end, and completes it once it is older than
ABANDONED_MS; repeating the PUT completes it too.
"""

from __future__ import annotations

import time
from typing import Any

from . import validation as check
from .base import EngineBase
from .exceptions import Conflict
from .keys import glob_escape
from .shards import MAX_SHARDS, Layout

ABANDONED_MS = 5_000
LIVE = "the queue type holds jobs, dead letters, queue limits or pauses: drain it first"


class LayoutCommands(EngineBase):
    """The engine's type_settings and set_type_settings."""

    def type_settings(self, queue_type: str) -> dict[str, Any]:
        """The type's settings: over how many shards it is spread."""
        check.identifier("queue_type", queue_type)
        return {"status": "success", "queue_type": queue_type, "shards": self._layout(queue_type, fresh=True).count}

    def set_type_settings(self, queue_type: str, shards: Any) -> dict[str, Any]:
        """Spread the type over `shards` hash tags (1 = unsharded). Conflict while
        any shard holds jobs, dead letters, queue limits or pauses, and then
        nothing changed. What drained queues leave behind moves along: finished
        job_ids within the dedupe window, rate states and the counters since the
        type began; so do the type-wide limits."""
        check.identifier("queue_type", queue_type)
        count = check.integer("shards", shards, 1, MAX_SHARDS)
        old, new = self._layout(queue_type, fresh=True), Layout(queue_type, count)
        every = list(dict.fromkeys([*old.names(), *new.names(), queue_type]))  # the unsharded keys last
        authority = self.keys.settings(queue_type)
        self.redis.hset(authority, "changing", f"{count}:{self._redis_time()}")
        sealed = []
        for shard in every:
            if not self._layout_script(shard, "seal"):
                for done in sealed:
                    self._layout_script(done, "open")
                self.redis.hdel(authority, "changing")
                raise Conflict(LIVE)
            sealed.append(shard)
        self._carry(old, new)
        limits = ["-" if value is None else value.decode() for value in self.redis.hmget(authority, *_LIMITS)]
        for shard in every:
            self._script("type_limits", self.keys.type_keys(shard), [self.keys.base(shard), *limits])
            self._layout_script(shard, "commit", count)
        self.redis.hdel(authority, "changing")
        self._layouts.pop(queue_type, None)
        return self.type_settings(queue_type)

    def _settle_layout(self, queue_type: str) -> bool:
        """A call met a sealed shard twice: wait (within socket_timeout) for the
        change under way to end, finishing it should it be plainly abandoned;
        whether the call may be routed again."""
        deadline = time.monotonic() + self.config.redis.socket_timeout
        while time.monotonic() < deadline:
            changing = self.redis.hget(self.keys.settings(queue_type), "changing")
            if changing is None:
                return True  # over: the count read afresh is the new one
            count, started = (int(part) for part in changing.split(b":"))
            if self._redis_time() - started >= ABANDONED_MS:
                self.set_type_settings(queue_type, count)
                return True
            time.sleep(0.01)  # a change takes milliseconds
        return False

    def _layout_script(self, shard: str, action: str, count: int = 1) -> bool:
        keys = self.keys.type_keys(shard) + self.keys.live_keys(shard)
        return bool(self._script("layout", keys, [action, count]))

    def _carry(self, old: Layout, new: Layout) -> None:
        """Move what the old shards remember of drained queues to the new ones.
        All are sealed: nothing else writes them meanwhile."""
        moved = [name for name in old.names() if name not in new.names()]
        for shard in old.names():
            self._carry_finished(shard, new)
            self._carry_rates(shard, new)
        for shard in moved:
            with self.redis.pipeline(transaction=True) as pipe:  # read and drop at once: counted once
                pipe.hgetall(self.keys.totals(shard))
                pipe.delete(self.keys.totals(shard))
                totals, _ = pipe.execute()
            for name, value in totals.items():
                self.redis.hincrby(self.keys.totals(new.name(0)), name.decode(), int(value))

    def _carry_finished(self, shard: str, new: Layout) -> None:
        """Finished job_ids within the dedupe window go to their queue's new shard."""
        done = self.redis.zrange(self.keys.done(shard), 0, -1, withscores=True)
        for member, finished_at in done:
            target = new.of(member.decode().split(":", 1)[0])
            if target != shard:
                self.redis.zadd(self.keys.done(target), {member: finished_at})
                self.redis.pexpire(self.keys.done(target), self.config.dedupe_window_ms or 1)
                self.redis.zrem(self.keys.done(shard), member)

    def _carry_rates(self, shard: str, new: Layout) -> None:
        """Drained queues' rate states go to their new shard with the time they
        had left, so a refill still waits for the rate limit."""
        prefix = self.keys.last(shard, "")
        for key in self.redis.scan_iter(match=glob_escape(prefix) + "*", count=1000):
            queue_id = key.decode()[len(prefix) :]
            target = new.of(queue_id)
            if target == shard:
                continue
            value, left = self.redis.get(key), self.redis.pttl(key)
            if value is not None:
                self.redis.set(self.keys.last(target, queue_id), value, px=left if left > 0 else None)
            self.redis.delete(key)


_LIMITS = ("interval", "burst", "max_active", "quotas")  # as type_limits.lua takes them
