"""What a dequeue hands a client: a delivered job, and an ack-and-take's answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Job:
    """One delivered job. `receipt` names this delivery: finish, touch and fail
    with it act only while no other delivery of the job has begun; `priority` is
    its priority (0-9)."""

    queue_type: str
    queue_id: str
    job_id: str
    payload: Any
    receipt: str
    requeues_remaining: int
    current_queue_length: int
    dequeued_at: int
    expires_at: int
    cost: int = 1  # units it counts against its limits (the server shows it when not 1)
    priority: int = 0

    @classmethod
    def from_json(cls, queue_type: str, data: dict[str, Any]) -> Job:
        fields = ("queue_id", "job_id", "payload", "receipt", "requeues_remaining", "current_queue_length")
        values = (data[name] for name in fields)
        return cls(
            queue_type, *values, data["dequeued_at"], data["expires_at"], data.get("cost", 1), data.get("priority", 0)
        )

    def ack(self, cost: int | None = None) -> dict[str, Any]:
        """This job as an entry of a finish batch; with `cost`, what it really cost."""
        ack: dict[str, Any] = {"queue_id": self.queue_id, "job_id": self.job_id, "receipt": self.receipt}
        return ack if cost is None else {**ack, "cost": cost}


@dataclass(frozen=True)
class Batch:
    """What an ack-and-take call answered: one result per finished job, the jobs
    taken, and when none was, the ms until one is due (None: none queued)."""

    results: list[dict[str, Any]]
    jobs: list[Job]
    retry_after_ms: int | None
