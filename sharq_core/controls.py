"""Tenant controls: a queue's interval and limits, pauses of a queue or a whole type."""

from __future__ import annotations

from typing import Any

from . import validation as check
from .base import KEEP, MAX_LIMIT, RATE_MEMORY_MS, EngineBase, optional_int
from .exceptions import NotFound, ShardsChanged
from .quotas import quota_spec
from .shards import CHANGING, Layout


class ControlCommands(EngineBase):
    """The engine's interval, set_limits, limits, pause, resume."""

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

        def update(shard: str) -> int:
            args = [queue_id, interval, self.keys.base(shard), self._now(), RATE_MEMORY_MS]
            return int(self._script("interval", self.keys.type_keys(shard), args))

        if not self._on_queue(queue_type, queue_id, update, lambda updated: not updated):
            raise NotFound("queue holds no queued or active job")
        return {"status": "success"}

    def set_limits(
        self,
        queue_type: str,
        queue_id: str,
        interval: Any = KEEP,
        burst: Any = KEEP,
        max_active: Any = KEEP,
        quotas: Any = KEEP,
        weight: Any = KEEP,
    ) -> dict[str, Any]:
        """Store limits of the queue's own that win over what enqueues carry: each
        given value is set, None clears it, KEEP leaves it. They stay when the
        queue runs empty, until cleared; a queue may get them before its first job.
        `quotas`: up to 3 windows {limit, window_ms, offset_ms?} (see quotas.py).
        `weight` (1 to 100, default 1) is the queue's share of the units handed out
        beside other ready queues (weighted_place in _helpers.lua); 1 clears it."""
        self._check_queue(queue_type, queue_id)
        values = [
            _limit("interval", interval, 0, check.MAX_INTERVAL),
            _limit("burst", burst, 1, MAX_LIMIT),
            _limit("max_active", max_active, 1, MAX_LIMIT),
        ]
        spec = quota_spec(quotas)
        share = _limit("weight", weight, 1, check.MAX_WEIGHT)
        share = "-" if share == 1 else share  # the default is stored as no weight

        def store(layout: Layout) -> None:
            shard = layout.of(queue_id)
            args = [queue_id, self.keys.base(shard), self._now(), *values, RATE_MEMORY_MS, layout.count, spec, share]
            if not self._script("limits", self.keys.type_keys(shard), args):
                raise ShardsChanged(CHANGING)
            self.redis.sadd(self.keys.queue_types(), shard)

        self._routed(queue_type, store)
        return self.limits(queue_type, queue_id)

    def clear_limits(self, queue_type: str, queue_id: str) -> dict[str, Any]:
        """Drop the queue's own limits: enqueues' intervals and the defaults apply again."""
        return self.set_limits(queue_type, queue_id, None, None, None, None, None)

    def limits(self, queue_type: str, queue_id: str) -> dict[str, Any]:
        """The queue's effective limits, each with where it comes from: "override",
        "last enqueue" or "default"."""
        info = self.queue_info(queue_type, queue_id)  # with its quotas' use (views.py)
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
        """pause.lua on the queue's shard, or for the whole type on every shard."""
        check.identifier("queue_type", queue_type)
        if queue_id is not None:
            check.identifier("queue_id", queue_id)

        def run(layout: Layout) -> int:
            shards = layout.names() if queue_id is None else [layout.of(queue_id)]
            for shard in shards:
                args = [action, queue_id or "", "" if for_ms is None else for_ms, self.keys.base(shard), self._now()]
                until = int(self._script("pause", self.keys.type_keys(shard), [*args, layout.count]))
                if until == -2:
                    raise ShardsChanged(CHANGING)
                if action == "pause":
                    self.redis.sadd(self.keys.queue_types(), shard)
            return until

        until = self._routed(queue_type, run)
        if action == "pause":
            return {"status": "success", "paused_until": None if until < 0 else until}
        return {"status": "success"}

    def type_paused_until(self, queue_type: str) -> int | None:
        """When the type's pause ends in ms (-1: until resumed), None when not paused."""
        shard = self._layout(check.identifier("queue_type", queue_type)).name(0)
        until = self.redis.get(self.keys.type_paused(shard))
        return None if until is None else int(until)

    # -- type-wide limits ----------------------------------------------------------

    def set_type_limits(
        self,
        queue_type: str,
        interval: Any = KEEP,
        burst: Any = KEEP,
        max_active: Any = KEEP,
        quotas: Any = KEEP,
    ) -> dict[str, Any]:
        """Limits of the type as a whole, on top of each queue's: a job goes out only
        when both allow it. Each given value is set, None clears it, KEEP leaves
        it. A type spread over N shards gives each shard an even share (see
        `type_limits` in _helpers.lua)."""
        check.identifier("queue_type", queue_type)
        values = [
            _limit("interval", interval, 1, check.MAX_INTERVAL),
            _limit("burst", burst, 1, MAX_LIMIT),
            _limit("max_active", max_active, 1, MAX_LIMIT),
            quota_spec(quotas),
        ]

        def store(layout: Layout) -> None:
            # refused while the shard count changes: its commit would apply the limits it read before
            for shard in dict.fromkeys([*layout.names(), queue_type]):  # the unsharded keys hold what GET answers
                args = [self.keys.base(shard), *values, layout.count]
                if not self._script("type_limits", self.keys.type_keys(shard), args):
                    raise ShardsChanged(CHANGING)

        self._routed(queue_type, store)
        return self.type_limits(queue_type)

    def clear_type_limits(self, queue_type: str) -> dict[str, Any]:
        """Drop the type-wide limits: only each queue's own apply again."""
        return self.set_type_limits(queue_type, None, None, None, None)

    def type_limits(self, queue_type: str) -> dict[str, Any]:
        """The type-wide limits (None where unset), the slots they count as held and
        over how many shards the type is spread."""
        check.identifier("queue_type", queue_type)
        layout = self._layout(queue_type)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.settings(queue_type), "interval", "burst", "max_active", "quotas")
            for shard in layout.names():
                pipe.hget(self.keys.settings(shard), "active")
            (interval, burst, cap, spec), *held = pipe.execute()
        limits = {"interval": optional_int(interval), "burst": optional_int(burst), "max_active": optional_int(cap)}
        if spec is not None:  # the units used are counted by each shard: this shows the first's share
            limits["quotas"] = self._quotas(layout.name(0), "*", spec)
        active = sum(int(n) for n in held if n is not None) if cap is not None else None
        return {"status": "success", "queue_type": queue_type, "limits": limits, "active": active,
                "shards": layout.count}  # fmt: skip


def _limit(name: str, value: Any, minimum: int, maximum: int) -> Any:
    """One field of set_limits as limits.lua takes it: a number, "-" to clear, "" to keep."""
    if value is KEEP:
        return ""
    if value is None:
        return "-"
    return check.integer(name, value, minimum, maximum)
