"""Every Redis key name SharQ uses, one function per key.

All keys of one queue type share the hash tag ``{<queue_type>}`` so each Lua script
touches one Redis Cluster slot. The Lua scripts derive the per-queue keys of a
queue they pick themselves (dequeue, requeue) from `base` with the same suffixes as
below; `tests/test_keys.py` checks that both sides agree. The layout is documented
in the package docstring (``sharq_core/__init__.py``).
"""

from __future__ import annotations


class Keys:
    """Key names under one `key_prefix`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def queue_types(self) -> str:
        """SET of every queue type ever enqueued to (written by Python, not Lua)."""
        return f"{self.prefix}:queue_types"

    def requeue_lock(self) -> str:
        """STRING token of the process running the requeue pass (SET NX PX)."""
        return f"{self.prefix}:requeue_lock"

    def base(self, queue_type: str) -> str:
        """Common start of every key of `queue_type`, hash tag included."""
        return f"{self.prefix}:{{{queue_type}}}"

    def ready(self, queue_type: str) -> str:
        return f"{self.base(queue_type)}:ready"

    def active(self, queue_type: str) -> str:
        return f"{self.base(queue_type)}:active"

    def queues(self, queue_type: str) -> str:
        return f"{self.base(queue_type)}:queues"

    def dead(self, queue_type: str) -> str:
        return f"{self.base(queue_type)}:dead"

    def dead_index(self, queue_type: str) -> str:
        return f"{self.base(queue_type)}:dead_at"

    def done(self, queue_type: str) -> str:
        """ZSET ``Q:J`` -> ms it was finished, for the dedupe window."""
        return f"{self.base(queue_type)}:done"

    def receipts(self, queue_type: str) -> str:
        """HASH ``Q:J`` -> receipt of the job's current delivery."""
        return f"{self.base(queue_type)}:receipts"

    def errors(self, queue_type: str) -> str:
        """HASH ``Q:J`` -> the last error a worker reported for the job."""
        return f"{self.base(queue_type)}:errors"

    def ready_channel(self) -> str:
        """Pub/sub channel: the message is a queue type that may have a job ready."""
        return f"{self.prefix}:ready"

    def queue(self, queue_type: str, queue_id: str) -> str:
        return f"{self.base(queue_type)}:q:{queue_id}"

    def jobs(self, queue_type: str, queue_id: str) -> str:
        return f"{self.base(queue_type)}:j:{queue_id}"

    def last(self, queue_type: str, queue_id: str) -> str:
        return f"{self.base(queue_type)}:last:{queue_id}"

    def stats(self, queue_type: str, minute_ms: int) -> str:
        return f"{self.base(queue_type)}:stats:{minute_ms}"


def member(queue_id: str, job_id: str) -> str:
    """How a job is named in the per-type active and dead-letter sets."""
    return f"{queue_id}:{job_id}"
