"""The SharQ engine: the seed library's API over Redis, one Lua script per change.

`SharQ` combines one class per family of calls, each in a module of its own (as
redis-py combines its command families):

- producers.py     enqueue, enqueue_many
- delivery.py      dequeue/take, finish, finish_many, touch, fail, release
- controls.py      interval, limits, pause/resume
- views.py         metrics, type_stats, queue(s), job_status, dead_letters
- housekeeping.py  requeue, discover_types, clear_queue, dead-letter retry/delete
- layouts.py       type_settings: a hot type spread over shards (shards.py)
- autoscale.py     autoscale: the wanted concurrency of a type, for worker autoscaling
- campaigns.py     campaign(s), cancel_campaign, set_on_done: a fan-out followed as one
- base.py          the constants, state and script runner they share
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from redis.cluster import RedisCluster

from .autoscale import AutoscaleCommands
from .base import COUNTERS, KEEP, MAX_BATCH, RATE_MEMORY_MS, REQUEUE_BATCH  # re-exported: callers import them here
from .campaigns import CampaignCommands
from .config import Config, load_config
from .connection import connect
from .controls import ControlCommands
from .delivery import DeliveryCommands
from .housekeeping import HousekeepingCommands
from .keys import Keys
from .layouts import LayoutCommands
from .producers import ProducerCommands
from .replication import Shortfalls
from .scripts import load_scripts
from .views import ViewCommands


class SharQ(
    ProducerCommands,
    DeliveryCommands,
    ControlCommands,
    ViewCommands,
    CampaignCommands,
    HousekeepingCommands,
    LayoutCommands,
    AutoscaleCommands,
):
    """A rate-limited, multi-tenant job queue over one Redis (or Redis Cluster).

    `config` is a path to the seed's INI file, an already built `Config`, or None
    for defaults plus the environment. `clock`, when given, returns the time in
    ms and replaces Redis TIME (tests use it to step time); by default every
    script reads the time from Redis, so servers with skewed clocks agree.

    With `wait_replicas`, `shortfalls` counts the takes and acknowledgements
    answered while fewer replicas confirmed them (set `shortfalls.listener` to
    be told of each); every other change is refused then (NotReplicated).
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
        self._layouts = {}
        self._turns = itertools.count()
        self.shortfalls = Shortfalls()
        self._setup(config if isinstance(config, Config) else load_config(config), client)

    def _setup(self, config: Config, client: Any = None) -> None:
        self.config = config
        self.keys = Keys(config.redis.key_prefix)
        self.redis = client if client is not None else connect(config.redis)
        self.scripts = load_scripts(self.redis)
        self._pipeline = _auto_pipeline(config) if self._own_client else None

    def redis_client(self) -> Any:
        """The redis-py client the engine uses (a Redis or RedisCluster)."""
        return self.redis

    def close(self) -> None:
        """Close the connections the engine opened (a client passed in stays the
        caller's to close). A call after it connects again."""
        if self._own_client:
            if isinstance(self.redis, RedisCluster):  # its close() leaves each node's pool open
                self.redis.disconnect_connection_pools()
            self.redis.close()
        if self._pipeline is not None:
            self._pipeline.close()

    def reload_config(self, config: str | Config | None = None) -> None:
        """Read the configuration again (or take the one given) and reconnect."""
        self._setup(config if isinstance(config, Config) else load_config(config))

    def reload_lua_scripts(self) -> None:
        """Register the Lua scripts again (redis-py also reloads them on NOSCRIPT)."""
        self.scripts = load_scripts(self.redis)


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


__all__ = ["COUNTERS", "KEEP", "MAX_BATCH", "RATE_MEMORY_MS", "REQUEUE_BATCH", "SharQ"]
