"""Hot types over shards: one queue type spread over N hash tags, each queue on one.

A queue type lives under one hash tag, so on a Redis Cluster it lives on one
primary. `PUT /types/<type>/ {"shards": N}` spreads it over N tags
("<type>#0" ... "<type>#N-1"), which Cluster places on different primaries. A
queue always maps to one shard (a stable hash of its id), so everything about a
queue (its order, rate, burst, cap and pause) stays exact in one atomic script.
Calls on a queue go to its shard; calls on the type (dequeue, views, type pause)
visit every shard. With one shard the names are the type's own, as before.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

MAX_SHARDS = 64
# how long (s) a server trusts the shard count it read: a count changed meanwhile
# is caught by the scripts that create per-queue state (layout_ok), which refuse,
# and by a call on a queue that finds nothing, which checks the count afresh (_on_queue)
LAYOUT_TTL_S = 1.0

CHANGING = "the queue type's shard count is changing; retrying is safe"


@dataclass(frozen=True)
class Layout:
    """Over how many shards `queue_type` is spread, and the shards' names."""

    queue_type: str
    count: int = 1

    def names(self) -> list[str]:
        """Every shard's internal type name, in order."""
        return [self.name(index) for index in range(self.count)]

    def name(self, index: int) -> str:
        return self.queue_type if self.count == 1 else f"{self.queue_type}#{index}"

    def of(self, queue_id: str) -> str:
        """The shard a queue lives on: CRC-32 of its id, the same in every process."""
        return self.queue_type if self.count == 1 else self.name(zlib.crc32(queue_id.encode()) % self.count)

    def group(self, queue_ids: Mapping[int, str]) -> dict[str, list[int]]:
        """The positions of a batch's queue ids (position -> id) by shard, in order:
        one script call per shard."""
        groups: dict[str, list[int]] = {}
        for position, queue_id in queue_ids.items():
            groups.setdefault(self.of(queue_id), []).append(position)
        return groups

    def rotation(self, turn: int) -> list[str]:
        """Every shard, starting at a different one each turn, so none is starved."""
        names = self.names()
        start = turn % self.count
        return names[start:] + names[:start]


def type_of(name: str) -> str:
    """The queue type an internal shard name belongs to."""
    return name.split("#", 1)[0]
