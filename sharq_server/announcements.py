"""How a server hears that a job of a type may be ready: the scripts' announcements.

On Redis 7 and later every script announces on its shard's own channel
(`SPUBLISH "<prefix>:{<type>}:ready"`), which Redis Cluster delivers within the
slot's shard only, so the cost of an announcement does not grow with the number
of primaries; a listener subscribes (`SSUBSCRIBE`) to the channels of the types it
has long polls parked on, as they come. Before 7.0 the scripts `PUBLISH` on
`"<prefix>:ready"`, which Cluster broadcasts to every node, and a listener
subscribes to that one channel. `announce` in `_helpers.lua` makes the same choice
from the version it runs on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from redis.cluster import RedisCluster

from sharq_core import SharQ


def redis_major(client: Any) -> int:
    """The major version of the Redis `client` talks to (one node of a cluster)."""
    if isinstance(client, RedisCluster):
        info = client.info("server", target_nodes=RedisCluster.RANDOM)
    else:
        info = client.info("server")
    return int(str(info["redis_version"]).split(".", 1)[0])


class Announcements:
    """One subscription to the announcements, for the listener thread alone."""

    def __init__(self, engine: SharQ) -> None:
        self.engine = engine
        self.sharded = redis_major(engine.redis) >= 7
        self.pubsub = engine.redis.pubsub(ignore_subscribe_messages=True)
        self._channels: set[str] = set()

    def open(self) -> None:
        """Subscribe to the one broadcast channel (before Redis 7); sharded channels
        come with the types asked for (`follow`)."""
        if not self.sharded:
            self.pubsub.subscribe(self.engine.keys.ready_channel())
            self.pubsub.get_message(timeout=self.engine.config.redis.socket_timeout)  # the subscribe reply

    def follow(self, queue_types: Iterable[str]) -> list[str]:
        """Subscribe to every shard channel of these types not yet followed; returns
        the types that got a new channel (their parked polls should ask again, as an
        announcement before the subscription took would have been missed)."""
        if not self.sharded:
            return []
        added = []
        for queue_type in queue_types:
            channels = [f"{self.engine.keys.base(shard)}:ready" for shard in self.engine._layout(queue_type).names()]
            new = [channel for channel in channels if channel not in self._channels]
            if new:
                self.pubsub.ssubscribe(*new)
                self._channels.update(new)
                added.append(queue_type)
        return added

    def next(self, timeout: float) -> str | None:
        """The internal type name of the next announcement, or None within `timeout`."""
        if not self.sharded:
            message = self.pubsub.get_message(timeout=timeout)
        elif self._channels:
            message = self.pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=timeout)
        else:
            time.sleep(timeout)  # nothing followed yet
            message = None
        if message is None or message.get("type") not in ("message", "smessage"):
            return None
        return message["data"].decode()

    def close(self) -> None:
        self.pubsub.close()
