"""A dequeued job, as dequeue.lua hands it back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ujson


@dataclass(frozen=True, slots=True)
class DequeuedJob:
    """One dequeued job; the payload stays the JSON text it was stored as.

    `dequeued_at` is the Redis time (ms) of the dequeue: the clock the rate limit
    is kept by, so a client can check the spacing without its own clock's jitter.
    `receipt` names this delivery: finish, touch and fail with it act only while
    no other delivery of the job has begun. `expires_at` is when the job goes back
    to its queue unless finished or touched. `cost` is the units it counts against
    its queue's and type's limits (1 unless its enqueue gave one), `priority` the
    job's (0-9); the answers show each only when not its default, as the record
    holds them, so a job without options reads as before.
    """

    queue_id: str
    job_id: str
    payload_json: bytes
    requeues_remaining: int
    current_queue_length: int
    dequeued_at: int
    receipt: str
    expires_at: int
    cost: int = 1
    priority: int = 0

    @classmethod
    def from_reply(
        cls, now: int, expire: int, queue_id: bytes, job_id: bytes, record: bytes, length: int, receipt: bytes
    ) -> DequeuedJob:
        remaining, limit_field, _, payload = record.split(b":", 3)
        queue, job = queue_id.decode(), job_id.decode()
        cost, priority = option_of(limit_field, b"c", 1), option_of(limit_field, b"p", 0)
        return cls(
            queue, job, payload, int(remaining), int(length), now, receipt.decode(), now + expire, cost, priority
        )

    def as_dict(self) -> dict[str, Any]:
        """The job as the library API returns it, payload decoded."""
        job = {
            "queue_id": self.queue_id,
            "job_id": self.job_id,
            "payload": ujson.loads(self.payload_json),
            "requeues_remaining": self.requeues_remaining,
            "current_queue_length": self.current_queue_length,
            "dequeued_at": self.dequeued_at,
            "receipt": self.receipt,
            "expires_at": self.expires_at,
        }
        if self.cost != 1:
            job["cost"] = self.cost
        if self.priority:
            job["priority"] = self.priority
        return job

    def json_members(self) -> bytes:
        """The same fields as JSON object members, the payload spliced in as stored.

        The HTTP answer is built from this without decoding and re-encoding the
        payload; identifiers are ``[A-Za-z0-9_-]`` and need no escaping.
        """
        return (
            b'"queue_id":"%s","job_id":"%s","payload":%s,"requeues_remaining":%d,'
            % (
                self.queue_id.encode(),
                self.job_id.encode(),
                self.payload_json,
                self.requeues_remaining,
            )
            + b'"current_queue_length":%d,"dequeued_at":%d,"receipt":"%s","expires_at":%d%s'
            % (
                self.current_queue_length,
                self.dequeued_at,
                self.receipt.encode(),
                self.expires_at,
                b"" if self.cost == 1 else b',"cost":%d' % self.cost,
            )
            + (b',"priority":%d' % self.priority if self.priority else b"")
        )


def option_of(limit_field: bytes, name: bytes, default: int) -> int:
    """A job option from its record's second field "<limit>|c=3|p=5..." (see
    job_option in _helpers.lua), `default` when the job did not give it."""
    for part in limit_field.split(b"|")[1:]:
        if part.startswith(name + b"="):
            return int(part[len(name) + 1 :])
    return default
