"""What every part of the engine shares: its constants, its state and how it runs a script."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from . import validation as check
from .exceptions import ShardsChanged
from .replication import (
    READ_ONLY,
    REDELIVERABLE,
    TOPOLOGY_ERRORS,
    Shortfalls,
    Wait,
    cluster_eval_and_wait,
    cluster_eval_many,
    eval_and_wait,
    eval_many,
    follow_topology,
)
from .shards import LAYOUT_TTL_S, Layout

# How long a queue's last dequeue time is kept (ms) after it ran empty, at least,
# so the rate limit still holds when it is refilled, whatever the interval.
RATE_MEMORY_MS = 600_000

# Jobs handled per requeue or clear script call: keeps each call to a few ms.
REQUEUE_BATCH = 500

MAX_BATCH = 100

METRIC_MINUTES = 10

# the minutes of per-type rates (enqueued, handed out, finished, failed) kept for the dashboard
RATE_MINUTES = 60

MAX_PAGE = 10_000

# How often (s) requeue() also scans the keyspace for types missing from the
# registry (a lost write or a lost key), so no type can hold jobs unseen.
DISCOVERY_INTERVAL_S = 30.0

MAX_LIMIT = 10**6

# the counters every type keeps since it began (the "totals" hash)
COUNTERS = ("enqueued", "dequeued", "finished", "failed", "requeued", "dead", "expired")

KEEP: Any = object()  # set_limits: leave this field as it is

T = TypeVar("T")


def optional_int(value: bytes | None) -> int | None:
    """A Redis reply that may be nil, as an int or None."""
    return None if value is None else int(value)


class EngineBase:
    """The state the command families share (set up by `SharQ`) and their helpers."""

    _layouts: dict[str, tuple[float, Layout]]
    _turns: Iterator[int]
    shortfalls: Shortfalls

    def _layout(self, queue_type: str, fresh: bool = False) -> Layout:
        """Over how many shards the type is spread (read at most once a LAYOUT_TTL_S)."""
        cached = self._layouts.get(queue_type)
        if cached and not fresh and time.monotonic() - cached[0] < LAYOUT_TTL_S:
            return cached[1]
        count = self.redis.hget(self.keys.settings(queue_type), "shards")
        layout = Layout(queue_type, int(count or 1))
        if len(self._layouts) > 10_000:  # clients choose type names: keep the cache bounded
            self._layouts.clear()
        self._layouts[queue_type] = (time.monotonic(), layout)
        return layout

    def _shard(self, queue_type: str, queue_id: str) -> str:
        """The internal type name of the shard `queue_id` lives on."""
        return self._layout(queue_type).of(queue_id)

    def _on_queue(self, queue_type: str, queue_id: str, call: Callable[[str], T], missed: Callable[[T], bool]) -> T:
        """`call(shard)` on the shard `queue_id` lives on. An answer that found
        nothing there (`missed`) may come from a count cached before another
        server changed it (LAYOUT_TTL_S): it is checked against the count read
        afresh and asked again where that puts the queue. A type holding the
        job cannot change its count meanwhile, so the second answer stands. Only
        a miss reads the count: a finish that finds its job costs nothing more."""
        shard = self._shard(queue_type, queue_id)
        answer = call(shard)
        if missed(answer):
            current = self._layout(queue_type, fresh=True).of(queue_id)
            if current != shard:
                return call(current)
        return answer

    def _routed(self, queue_type: str, call: Callable[[Layout], T]) -> T:
        """`call(layout)`, once more on a layout read afresh should a script refuse
        the cached one (the shard count changed meanwhile)."""
        try:
            return call(self._layout(queue_type))
        except ShardsChanged:
            try:
                return call(self._layout(queue_type, fresh=True))
            except ShardsChanged:
                if not self._settle_layout(queue_type):
                    raise
                return call(self._layout(queue_type, fresh=True))

    def _settle_layout(self, queue_type: str) -> bool:
        raise NotImplementedError  # layouts.py

    def _script(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        """Run one Lua script; on a cluster, again while a failover or migration
        refuses it, within the socket timeout."""
        if isinstance(self.redis, RedisCluster):
            return follow_topology(lambda: self._run_script(name, keys, args), self.config.redis.socket_timeout)
        return self._run_script(name, keys, args)

    def _scripts(self, name: str, calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        """Several calls of one script (a batch's calls on each shard it touches)
        sent together: one round trip, or one per node of a cluster, not one per
        call. A call refused before it ran (a moving slot, a flushed script cache)
        runs again on its own, as `_script` runs one; any other refusal raises."""
        if len(calls) == 1:
            return [self._script(name, *calls[0])]
        script, wait = self.scripts[name], self._durable(name)
        if self._pipeline is not None:
            commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls]
            replies = self._pipeline.call_many(commands, wait)
        elif isinstance(self.redis, RedisCluster):
            replies = cluster_eval_many(self.redis, script, calls, wait)
        else:
            replies = eval_many(self.redis, script, calls, wait)
        for index, reply in enumerate(replies):
            if isinstance(reply, (NoScriptError, *TOPOLOGY_ERRORS)):
                replies[index] = self._script(name, *calls[index])
            elif isinstance(reply, Exception):
                raise reply
        return replies

    def _run_script(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        """Auto-pipelined under gevent, else through redis-py; a change is answered
        once `wait_replicas` replicas hold it (see replication.py)."""
        script, wait = self.scripts[name], self._durable(name)
        if self._pipeline is not None:
            command = ("EVALSHA", script.sha, len(keys), *keys, *args)
            try:
                return self._pipeline.call(*command, wait=wait)
            except NoScriptError:  # Redis restarted or its script cache was flushed
                self._pipeline.call("SCRIPT", "LOAD", script.script)
                return self._pipeline.call(*command, wait=wait)
        if wait is None:
            return script(keys, args)
        if isinstance(self.redis, RedisCluster):
            return cluster_eval_and_wait(self.redis, script, keys, args, wait)
        return eval_and_wait(self.redis, script, keys, args, wait)

    def _durable(self, name: str) -> Wait | None:
        """How the script's changes wait for replicas: not at all (a read, or no
        `wait_replicas`); refused when replicas are short; or, for a take or an
        acknowledgement (whose loss costs a redelivery), answered all the same,
        the shortfall counted in `shortfalls`, which also says when a take need
        not wait at all (see replication.py)."""
        settings = self.config.redis
        if not settings.wait_replicas or name in READ_ONLY:
            return None
        if name not in REDELIVERABLE:
            return Wait(settings)
        if self.shortfalls.skip_wait():
            self.shortfalls.record(name, settings.wait_replicas, waited=False)
            return None
        return Wait(settings, name, self.shortfalls)

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
