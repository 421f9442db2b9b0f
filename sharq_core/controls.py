"""Tenant controls: a queue's interval and limits, pauses of a queue or a whole type."""

from __future__ import annotations

from typing import Any

from . import validation as check
from .base import KEEP, MAX_LIMIT, RATE_MEMORY_MS, EngineBase
from .exceptions import NotFound


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
        args = [queue_id, interval, self.keys.base(queue_type), self._now(), RATE_MEMORY_MS]
        updated = self._script("interval", self.keys.type_keys(queue_type), args)
        if not updated:
            raise NotFound("queue holds no queued or active job")
        return {"status": "success"}

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


def _limit(name: str, value: Any, minimum: int, maximum: int) -> Any:
    """One field of set_limits as limits.lua takes it: a number, "-" to clear, "" to keep."""
    if value is KEEP:
        return ""
    if value is None:
        return "-"
    return check.integer(name, value, minimum, maximum)
