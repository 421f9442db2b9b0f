"""How a server hears that a job of a type may be ready: the scripts' announcements.

On Redis 7 and later every script announces on its shard's own channel
(`SPUBLISH "<prefix>:{<type>}:ready"`), which Redis Cluster delivers within the
slot's shard only, so the cost of an announcement does not grow with the number
of primaries; a listener subscribes (`SSUBSCRIBE`) to the channels of the types it
has long polls parked on, as they come. Before 7.0 the scripts `PUBLISH` on
`"<prefix>:ready"`, which Cluster broadcasts to every node, and a listener
subscribes to that one channel. `announce` in `_helpers.lua` makes the same choice
from the version it runs on.

A subscription only listens, so a link dropped silently (a NAT or load balancer
that forgot it closes nothing and answers nothing) would look like a quiet one
forever: the listener PINGs through each subscribed connection and takes one
that does not answer within `socket_timeout` for dead.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import redis
from redis.client import PubSub
from redis.cluster import RedisCluster

from sharq_core import SharQ

# how often (s) each subscribed connection is asked to prove it is alive
PING_EVERY_S = 1.0
# how long (s) a shard channel no parked poll waits on stays subscribed: types
# no longer polled, and shards a reshard took away, are dropped after it
UNFOLLOW_AFTER_S = 60.0
_PING = "sharq-alive:"


def redis_major(client: Any) -> int:
    """The major version of the Redis `client` talks to (one node of a cluster)."""
    if isinstance(client, RedisCluster):
        info = client.info("server", target_nodes=RedisCluster.RANDOM)
    else:
        info = client.info("server")
    return int(str(info["redis_version"]).split(".", 1)[0])


class Announcements:
    """One subscription to the announcements, for the listener thread alone."""

    def __init__(self, engine: SharQ, unfollow_after_s: float = UNFOLLOW_AFTER_S) -> None:
        self.engine = engine
        self.sharded = redis_major(engine.redis) >= 7
        self.pubsub = engine.redis.pubsub(ignore_subscribe_messages=True)
        self.unfollow_after_s = unfollow_after_s
        self._channels: dict[str, float] = {}  # followed shard channel: when a parked poll last wanted it
        self._pings: dict[int, tuple[bytes, float]] = {}  # connection (its id): its unanswered PING, when it left
        self._pinged = time.monotonic()

    def open(self) -> None:
        """Subscribe to the one broadcast channel (before Redis 7); sharded channels
        come with the types asked for (`follow`)."""
        if not self.sharded:
            self.pubsub.subscribe(self.engine.keys.ready_channel())
            self.pubsub.get_message(timeout=self.engine.config.redis.socket_timeout)  # the subscribe reply

    def follow(self, queue_types: Iterable[str]) -> list[str]:
        """Subscribe to every shard channel of these types not yet followed, and drop
        those no parked poll has wanted for `unfollow_after_s`; returns the types that
        got a new channel (their parked polls should ask again, as an announcement
        before the subscription took would have been missed)."""
        if not self.sharded:
            return []
        now = time.monotonic()
        added = []
        for queue_type in queue_types:
            channels = [f"{self.engine.keys.base(shard)}:ready" for shard in self.engine._layout(queue_type).names()]
            new = [channel for channel in channels if channel not in self._channels]
            if new:
                self.pubsub.ssubscribe(*new)
                added.append(queue_type)
            self._channels.update(dict.fromkeys(channels, now))
        stale = [channel for channel, wanted in self._channels.items() if now - wanted > self.unfollow_after_s]
        if stale:
            self.pubsub.sunsubscribe(*stale)
            for channel in stale:
                del self._channels[channel]
        return added

    def next(self, timeout: float) -> str | None:
        """The internal type name of the next announcement, or None within `timeout`.
        Raises ConnectionError when a subscribed connection left a PING unanswered."""
        self._ping()
        if not self.sharded:
            message = self.pubsub.get_message(timeout=timeout)
        elif self.pubsub.subscribed:
            message = self.pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=timeout)
        else:
            time.sleep(timeout)  # nothing followed
            message = None
        if message is not None and message.get("type") == "pong":
            self._pings = {key: ping for key, ping in self._pings.items() if ping[0] != message["data"]}
        if message is None or message.get("type") not in ("message", "smessage"):
            return None
        return message["data"].decode()

    def _ping(self) -> None:
        """PING through each subscribed connection once a PING_EVERY_S, the next
        round once every one has answered; one silent past socket_timeout is dead."""
        now, deadline = time.monotonic(), self.engine.config.redis.socket_timeout
        connections = {id(pubsub): pubsub for pubsub in self._subscribed()}
        self._pings = {key: ping for key, ping in self._pings.items() if key in connections}
        if any(now - sent > deadline for _, sent in self._pings.values()):
            raise redis.ConnectionError(f"the subscription answered no PING within {deadline:g}s")
        if self._pings or now - self._pinged < PING_EVERY_S:
            return
        for key, pubsub in connections.items():
            text = f"{_PING}{key}:{now}"  # each PING its own, so no late PONG vouches for a later one
            pubsub.ping(text)
            self._pings[key] = (text.encode(), now)
        self._pinged = now

    def _subscribed(self) -> list[PubSub]:
        """The connections that hold subscriptions: the one, or on a cluster from
        Redis 7 one per node whose shard channels are followed."""
        nodes = getattr(self.pubsub, "node_pubsub_mapping", None)
        pubsubs = [self.pubsub] if not self.sharded or nodes is None else list(nodes.values())
        return [pubsub for pubsub in pubsubs if pubsub.subscribed]

    def close(self) -> None:
        self.pubsub.close()
