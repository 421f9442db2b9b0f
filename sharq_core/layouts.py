"""A queue type's layout: over how many shards it is spread, and changing that.

One change at a time: a change holds the type's lease (`change_lease`), which it
renews while it works, so concurrent PUTs take turns and nobody mistakes a
live change for a dead one. It records itself in the unsharded keys
(`changing`: the count it goes to and how many shards it reaches), seals every
shard involved (layout.lua), moves what the shards remember of drained queues
to where the new count puts them (a bounded number of calls, see carry.py),
then opens each shard at the new count, the type's unsharded keys (which
servers read) last. While sealed, no server can create per-queue state
anywhere, so a server routing by a stale count can never strand a job. A call
that meets a sealed shard waits for the change to end; once its lease ran out
(the process died), the call completes it, or, should a shard hold live state
by then, rolls it back, and carries on.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import Any

from . import validation as check
from .base import EngineBase
from .carry import carry
from .exceptions import Conflict, ShardsChanged
from .shards import MAX_SHARDS, Layout

LEASE_MS = 5_000  # a change renews its lease at least every LEASE_MS / 5
BLOCKERS_SHOWN = 5  # queue ids a refusal names per kind of live state


class LayoutCommands(EngineBase):
    """The engine's type_settings and set_type_settings."""

    def type_settings(self, queue_type: str) -> dict[str, Any]:
        """The type's settings: over how many shards it is spread."""
        check.identifier("queue_type", queue_type)
        return {"status": "success", "queue_type": queue_type, "shards": self._layout(queue_type, fresh=True).count}

    def set_type_settings(self, queue_type: str, shards: Any) -> dict[str, Any]:
        """Spread the type over `shards` hash tags (1 = unsharded); the count it has
        already answers at once, touching nothing. Conflict while any shard holds
        jobs, dead letters, queue limits or pauses (the message names them), and
        then nothing changed. What drained queues leave behind moves along:
        finished job_ids within the dedupe window, rate states (the queues' and
        the type's) and the counters since the type began; so do the type-wide
        limits. ShardsChanged (503) when another change holds the type for
        longer than socket_timeout."""
        check.identifier("queue_type", queue_type)
        count = check.integer("shards", shards, 1, MAX_SHARDS)
        deadline = time.monotonic() + self.config.redis.socket_timeout
        while (lease := self._take_lease(queue_type)) is None:
            if time.monotonic() > deadline:
                raise ShardsChanged("another change of the queue type's shard count is under way; retrying is safe")
            time.sleep(0.01)
        self._change_leased(queue_type, count, lease)
        return self.type_settings(queue_type)

    def _change_leased(self, queue_type: str, count: int, lease: _Lease) -> None:
        """`_change`, then the lease given back and the cached count dropped."""
        try:
            self._change(queue_type, count, lease)
        finally:
            self._script("unlock", [lease.key], [lease.token])
            self._layouts.pop(queue_type, None)

    def _change(self, queue_type: str, count: int, lease: _Lease) -> None:
        """Change the count under `lease`, completing (or superseding) a change
        left half done: its shards are sealed, carried from and opened too."""
        authority = self.keys.settings(queue_type)
        stored, pending = self.redis.hmget(authority, "shards", "changing")
        old, new = Layout(queue_type, int(stored or 1)), Layout(queue_type, count)
        if pending is None and old.count == count:
            return  # nothing to do: nothing sealed, nothing touched
        reach = max(old.count, count, min(int(pending.split(b":")[-1]), MAX_SHARDS) if pending else 1)
        self.redis.hset(authority, "changing", f"{count}:{reach}")
        every = list(dict.fromkeys([*Layout(queue_type, reach).names(), queue_type]))  # the unsharded keys last
        for shard in every:
            self._renew(lease)
            if not self._layout_script(shard, "seal"):
                blockers = self._blockers(every)
                for each in every:  # back as it was, the shards an abandoned change sealed included
                    self._layout_script(each, "open", old.count)
                self.redis.hdel(authority, "changing")
                raise Conflict(_blocked_message(queue_type, blockers), blocked_by=blockers)
        rate = self._type_rate(old, new)
        carry(self.redis, self.keys, every, new, self.config.dedupe_window_ms, lambda: self._renew(lease))
        limits = ["-" if value is None else value.decode() for value in self.redis.hmget(authority, *_LIMITS)]
        for shard in sorted(every, key=lambda name: name == queue_type):
            self._renew(lease)
            self._script("type_limits", self.keys.type_keys(shard), [self.keys.base(shard), *limits, ""])
            self._layout_script(shard, "open", count, rate if shard in new.names() else "-")
        self.redis.hdel(authority, "changing")

    def _take_lease(self, queue_type: str) -> _Lease | None:
        """The type's change lease, or None while another change holds it."""
        lease = _Lease(self.keys.change_lease(queue_type), secrets.token_hex(8))
        return lease if self._script("lock", [lease.key], [lease.token, LEASE_MS]) else None

    def _renew(self, lease: _Lease) -> None:
        """Keep the lease: a change that lost it (paused past LEASE_MS) stops."""
        if time.monotonic() - lease.renewed < LEASE_MS / 5000:
            return
        if not self._script("lock", [lease.key], [lease.token, LEASE_MS]):
            raise ShardsChanged("the change of the shard count outlived its lease and was taken over; retrying is safe")
        lease.renewed = time.monotonic()

    def _settle_layout(self, queue_type: str) -> bool:
        """A call met a sealed shard twice: wait (within socket_timeout) for the
        change under way to end; complete it once its lease ran out (its process
        died), or roll it back should a shard hold live state by then. Whether
        the call may be routed again; never a Conflict of its own."""
        deadline = time.monotonic() + self.config.redis.socket_timeout
        while time.monotonic() < deadline:
            pending = self.redis.hget(self.keys.settings(queue_type), "changing")
            if pending is None:
                return True  # over: the count read afresh is the new one
            lease = self._take_lease(queue_type)
            if lease is not None:  # nobody renews it: abandoned
                with contextlib.suppress(Conflict):  # rolled back: every shard open at the count it had
                    self._change_leased(queue_type, int(pending.split(b":")[0]), lease)
                return True
            time.sleep(0.01)
        return False

    def _layout_script(self, shard: str, action: str, count: int = 1, rate: str = "") -> bool:
        keys = self.keys.type_keys(shard) + self.keys.live_keys(shard)
        return bool(self._script("layout", keys, [action, count, rate]))

    def _type_rate(self, old: Layout, new: Layout) -> str:
        """The type-wide rate state each new shard starts from: what the old shards
        still owe, in jobs, shared evenly. A shard of a type over n shards allows
        one job per n x interval (type_limits in _helpers.lua); its state `last`
        owes (last + n x interval - now) / (n x interval) jobs. "-": none owed."""
        interval = self.redis.hget(self.keys.settings(old.queue_type), "interval")
        if interval is None:
            return "-"
        now, interval = int(self._now() or self._redis_time()), int(interval)
        with self.redis.pipeline(transaction=False) as pipe:
            for shard in old.names():
                pipe.hmget(self.keys.settings(shard), "last", "shards")
            states = pipe.execute()
        owed = sum(
            max(0, int(last) + interval * int(n or 1) - now) / (interval * int(n or 1))
            for last, n in states
            if last is not None
        )
        return "-" if owed == 0 else str(now + round(owed * interval) - interval * new.count)

    def _blockers(self, shards: list[str]) -> dict[str, Any]:
        """What keeps the type live, for the refusal: the queues holding jobs (and
        how many jobs are active), dead letters, queue limits, quotas, pauses and
        kept campaigns (their counts live per shard)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                for key in (
                    self.keys.queues(shard),
                    self.keys.limits(shard),
                    self.keys.paused(shard),
                    self.keys.quotas(shard),
                ):
                    pipe.hlen(key)
                    pipe.hscan(key, 0, count=BLOCKERS_SHOWN)
                pipe.zcard(self.keys.active(shard))
                pipe.hlen(self.keys.dead(shard))
                pipe.exists(self.keys.type_paused(shard))
                pipe.zcard(self.keys.campaigns(shard))
            replies = pipe.execute()
        found: dict[str, Any] = {}
        for start in range(0, len(replies), 12):
            mine = replies[start : start + 12]
            for index, name in enumerate(
                ("queues_with_jobs", "queues_with_limits", "paused_queues", "queues_with_quotas")
            ):
                total, (_, fields) = mine[2 * index], mine[2 * index + 1]
                if total:
                    kind = found.setdefault(name, {"total": 0, "first": []})
                    kind["total"] += total
                    kind["first"] = sorted(kind["first"] + [field.decode() for field in fields])[:BLOCKERS_SHOWN]
            for name, value in zip(("active_jobs", "dead_letters", "type_paused", "campaigns"), mine[8:], strict=True):
                if value:
                    found[name] = bool(value) if name == "type_paused" else found.get(name, 0) + value
        return found


class _Lease:
    """A held change lease: its key, this change's token, when it was last renewed."""

    def __init__(self, key: str, token: str) -> None:
        self.key, self.token, self.renewed = key, token, time.monotonic()


def _blocked_message(queue_type: str, found: dict[str, Any]) -> str:
    """The refusal in words: what still lives in the type and how to clear it."""
    parts = []
    for name, what, remedy in (
        ("queues_with_jobs", "queue(s) hold queued, delayed or active jobs", "finish or delete them"),
        ("queues_with_limits", "queue(s) have limits of their own", f"DELETE /limits/{queue_type}/<queue_id>/"),
        ("paused_queues", "queue(s) are paused", "resume them"),
        ("queues_with_quotas", "queue(s) have quotas of their own", 'clear them ("quotas": null)'),
    ):
        if name in found:
            listed = ", ".join(found[name]["first"]) + (", ..." if found[name]["total"] > BLOCKERS_SHOWN else "")
            parts.append(f"{found[name]['total']} {what} ({listed}): {remedy}")
    if "active_jobs" in found:
        parts.append(f"{found['active_jobs']} job(s) are active: finish or fail them")
    if "dead_letters" in found:
        parts.append(f"{found['dead_letters']} dead letter(s): retry or delete them")
    if "type_paused" in found:
        parts.append(f"the type is paused: POST /resume/{queue_type}/")
    if "campaigns" in found:
        parts.append(f"{found['campaigns']} campaign(s) are kept: until campaign_retention_ms after they are done")
    return f"queue type {queue_type} still holds state that lives per queue; drain it first: " + "; ".join(parts)


_LIMITS = ("interval", "burst", "max_active", "quotas")  # as type_limits.lua takes them
