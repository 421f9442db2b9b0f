"""Autoscaling: how many jobs of a type could usefully run at once, now.

Per shard, from what autoscale.lua reads (constant work, whatever the number of
queues): each backlogged queue that is not paused wants min(rate x duration, cap)
workers (rate = 1000 / interval jobs/s; a queue with neither limit, its backlog),
summed from the sums the scripts keep (count_demand in _helpers.lua). The sum is
then held within what the type holds (queued + active jobs: a queue's backlog is
not counted queue by queue, only in total), raised to the jobs running now (they
need their workers whatever the estimate says), and bounded by the type-wide
limits (type rate x duration, max_active). 0 while the type is paused.
"""

from __future__ import annotations

import math
from typing import Any

from . import validation as check
from .base import EngineBase

# Backlogged queues without rate limit or cap whose lengths one read samples (per shard).
DEMAND_SAMPLE = 100

RATE_SCALE = 1e6  # the demand sums hold rates in jobs/s x 1e6


class AutoscaleCommands(EngineBase):
    """The engine's autoscale."""

    def autoscale(self, queue_type: str) -> dict[str, Any]:
        """The type's wanted concurrency and the inputs it came from (see the module)."""
        check.identifier("queue_type", queue_type)
        shards = self._layout(queue_type).names()
        calls = [(self.keys.type_keys(shard), [self.keys.base(shard), DEMAND_SAMPLE]) for shard in shards]
        figures = [self._shard_demand(reply) for reply in self._scripts("autoscale", calls)]
        measured = [shard["duration"] for shard in figures if shard["measured"]]
        wanted = sum(shard["wanted"] for shard in figures)
        bounds = {shard["bound"] for shard in figures}
        inputs = {
            name: _total(shard[name] for shard in figures)
            for name in ("queues", "unlimited_queues", "rate", "demand", "queued", "active", "type_rate",
                         "type_max_active")
        }  # fmt: skip
        return {
            "status": "success",
            "queue_type": queue_type,
            "wanted_concurrency": max(math.ceil(wanted - 1e-9), 0),
            "job_duration_seconds": round(sum(measured) / len(measured) if measured else figures[0]["duration"], 3),
            "job_duration_source": "measured" if measured else "default",
            "type_paused": any(shard["paused"] for shard in figures),
            "bound": bounds.pop() if len(bounds) == 1 else "mixed",
            "inputs": inputs,
            "shards": len(shards),
        }

    def _shard_demand(self, reply: list[Any]) -> dict[str, Any]:
        """One shard's figures and its wanted concurrency, from autoscale.lua's reply."""
        paused, duration_ms, queued, active, backlogged, raw_sums, sampled, sampled_length, interval, cap = reply
        measured = duration_ms is not None
        duration = float(duration_ms if measured else self.config.default_job_duration_ms) / 1000
        sums = {name.decode(): int(value) for name, value in zip(raw_sums[::2], raw_sums[1::2], strict=True)}
        unlimited = sums.pop("f", 0)
        per_job = sampled_length / sampled if sampled else 1.0  # each listed queue holds a job at least
        demand, rate = unlimited * max(per_job, 1.0) + sums.pop("c", 0), sums.pop("r", 0) / RATE_SCALE
        demand += rate * duration
        for name in [name for name in sums if name.startswith("r")]:  # queues with a rate and a cap
            bucket_rate = sums[name] / RATE_SCALE
            rate += bucket_rate
            demand += min(bucket_rate * duration, sums.get("c" + name[1:], 0))
        type_rate = 1000 / int(interval) if interval is not None else None
        wanted, bound = _bounded(
            demand,
            active,
            [
                ("jobs", queued + active),
                ("type_rate", None if type_rate is None else type_rate * duration),
                ("type_max_active", None if cap is None else int(cap)),
            ],
        )
        if paused:
            wanted, bound = 0.0, "paused"
        return {
            "wanted": wanted, "bound": bound, "duration": duration, "measured": measured, "paused": bool(paused),
            "queues": backlogged, "unlimited_queues": unlimited, "rate": rate, "demand": demand, "queued": queued,
            "active": active, "type_rate": type_rate, "type_max_active": None if cap is None else int(cap),
        }  # fmt: skip


def _bounded(demand: float, active: int, limits: list[tuple[str, float | None]]) -> tuple[float, str]:
    """The queues' demand (or, when more run now, the active jobs) within each limit
    that is set, and the name of the one that decided."""
    wanted, bound = (demand, "queues") if demand >= active else (float(active), "active")
    for name, limit in limits:
        if limit is not None and limit < wanted:
            wanted, bound = limit, name
    return wanted, bound


def _total(values: Any) -> Any:
    """The shards' figures summed (rounded, when they are rates or demands); None
    when the figure is unset on every shard."""
    given = [value for value in values if value is not None]
    if not given:
        return None
    total = sum(given)
    return round(total, 3) if isinstance(total, float) else total
