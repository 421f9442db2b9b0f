"""Hypothesis drives the engine and a plain-Python model of SPEC's semantics side by side.

The model keeps, per queue, a FIFO of job ids, the interval, the last dequeue time
and the time the queue is next due; dequeue serves the earliest-due queue (ties by
queue id, as a Redis sorted set orders them). Every step's result must be equal.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sharq_core import Config, DuplicateJob, NotFound, QueueFull, SharQ
from tests.support import Clock

EXPIRE = 100
WINDOW = 200  # the dedupe window (ms): a finished job_id is refused this long
QUEUES = st.sampled_from(["qa", "qb"])
JOBS = st.sampled_from(["j1", "j2", "j3"])
INTERVALS = st.sampled_from([0, 30, 150])
# steps that land on, just before and just after every interval and the expiry
STEPS = st.sampled_from([0, 1, 29, 30, 31, 99, 100, 149, 150])


class Model:
    """SPEC's semantics, written as directly as possible."""

    def __init__(self) -> None:
        self.now = 0
        self.fifo: dict[str, deque[str]] = {}
        self.jobs: dict[tuple[str, str], dict] = {}  # queued or active
        self.active: dict[tuple[str, str], int] = {}  # -> expiry
        self.interval: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.due: dict[str, int] = {}
        self.dead: set[tuple[str, str]] = set()
        self.done: dict[tuple[str, str], int] = {}  # -> finish time

    def _make_due(self, queue: str) -> None:
        last = self.last.get(queue)
        wait_until = last + self.interval[queue] if last is not None else self.now
        self.due[queue] = max(self.now, wait_until)

    def enqueue(self, queue, job, payload, interval, limit, max_length):
        if (queue, job) in self.jobs or (queue, job) in self.dead:
            return "duplicate"
        if self.now - self.done.get((queue, job), -WINDOW) < WINDOW:
            return "duplicate"
        if max_length is not None and len(self.fifo.get(queue, ())) >= max_length:
            return "full"
        self.jobs[(queue, job)] = {"payload": payload, "remaining": limit, "limit": limit}
        old = self.interval.get(queue)
        self.interval[queue] = interval
        self.fifo.setdefault(queue, deque()).append(job)
        if len(self.fifo[queue]) == 1:
            self._make_due(queue)
        elif old != interval and queue in self.last:
            self.due[queue] = self.last[queue] + interval
        return "queued"

    def dequeue(self, count):
        served = []
        while len(served) < count and self.due:
            queue = min(self.due, key=lambda q: (self.due[q], q))
            if self.due[queue] > self.now:
                break
            job = self.fifo[queue].popleft()
            self.active[(queue, job)] = self.now + EXPIRE
            self.last[queue] = self.now
            if self.fifo[queue]:
                self.due[queue] = self.now + self.interval[queue]
            else:
                del self.due[queue], self.fifo[queue]
            record = self.jobs[(queue, job)]
            served.append((queue, job, record["payload"], record["remaining"], len(self.fifo.get(queue, ()))))
        if served:
            return served, 0
        if not self.due:
            return [], None
        return [], min(self.due.values()) - self.now

    def _forget_if_empty(self, queue):
        if not any(q == queue for q, _ in self.jobs):
            self.interval.pop(queue, None)

    def finish(self, queue, job):
        if self.active.pop((queue, job), None) is None:
            return False
        del self.jobs[(queue, job)]
        self.done[(queue, job)] = self.now
        self._forget_if_empty(queue)
        return True

    def set_interval(self, queue, interval):
        if queue not in self.interval:
            return False
        self.interval[queue] = interval
        if queue in self.due and queue in self.last:
            self.due[queue] = self.last[queue] + interval
        return True

    def requeue(self):
        expired = sorted(((t, f"{q}:{j}") for (q, j), t in self.active.items() if t <= self.now), reverse=True)
        requeued = dead = 0
        for _, name in expired:
            queue, job = name.split(":")
            del self.active[(queue, job)]
            record = self.jobs[(queue, job)]
            if record["remaining"] == 0:
                del self.jobs[(queue, job)]
                self.dead.add((queue, job))
                self._forget_if_empty(queue)
                dead += 1
                continue
            if record["remaining"] > 0:
                record["remaining"] -= 1
            self.fifo.setdefault(queue, deque()).appendleft(job)
            if len(self.fifo[queue]) == 1:
                self._make_due(queue)
            requeued += 1
        return {"requeued": requeued, "dead": dead}

    def touch(self, queue, job):
        if (queue, job) not in self.active:
            return None
        self.active[(queue, job)] = self.now + EXPIRE
        return self.now + EXPIRE


class EngineVersusModel(RuleBasedStateMachine):
    engine: SharQ
    clock: Clock
    flush: Callable[[], object]

    @initialize()
    def start(self) -> None:
        self.flush()
        self.model = Model()
        self.model.now = self.clock.now

    @rule(ms=STEPS)
    def advance(self, ms: int) -> None:
        self.clock.advance(ms)
        self.model.now += ms

    @rule(
        queue=QUEUES,
        job=JOBS,
        payload=st.integers(0, 9),
        interval=INTERVALS,
        limit=st.sampled_from([-1, 0, 1, 2]),
        max_length=st.sampled_from([None, 2]),
    )
    def enqueue(self, queue, job, payload, interval, limit, max_length) -> None:
        expected = self.model.enqueue(queue, job, payload, interval, limit, max_length)
        try:
            self.engine.enqueue(payload, interval, job, queue, "t", limit, max_length)
            got = "queued"
        except DuplicateJob:
            got = "duplicate"
        except QueueFull:
            got = "full"
        assert got == expected

    @rule(count=st.sampled_from([1, 1, 3]))
    def dequeue(self, count: int) -> None:
        expected, wait = self.model.dequeue(count)
        reply = self.engine.dequeue_many("t", count)
        got = [
            (j["queue_id"], j["job_id"], j["payload"], j["requeues_remaining"], j["current_queue_length"])
            for j in reply["jobs"]
        ]
        assert got == expected
        assert reply.get("retry_after_ms", 0) == wait

    @rule(queue=QUEUES, job=JOBS)
    def finish(self, queue: str, job: str) -> None:
        expected = self.model.finish(queue, job)
        assert (self.engine.finish(job, queue, "t")["status"] == "success") == expected

    @rule(queue=QUEUES, interval=INTERVALS)
    def set_interval(self, queue: str, interval: int) -> None:
        expected = self.model.set_interval(queue, interval)
        assert (self.engine.interval(interval, queue, "t")["status"] == "success") == expected

    @rule()
    def requeue(self) -> None:
        assert self.engine.requeue() == self.model.requeue()

    @rule(queue=QUEUES, job=JOBS)
    def touch(self, queue: str, job: str) -> None:
        expected = self.model.touch(queue, job)
        try:
            got = self.engine.touch(job, queue, "t")["expires_at"]
        except NotFound:
            got = None
        assert got == expected

    @invariant()
    def same_lengths_and_queues(self) -> None:
        if not hasattr(self, "model"):
            return
        for queue in ("qa", "qb"):
            assert self.engine.get_queue_length("t", queue) == len(self.model.fifo.get(queue, ()))
        assert self.engine.metrics("t")["queue_ids"] == sorted(self.model.interval)


@pytest.mark.timeout(300)
def test_engine_matches_model(config: Config, redis_client) -> None:
    EngineVersusModel.flush = redis_client.flushall
    EngineVersusModel.clock = Clock()
    EngineVersusModel.engine = SharQ(
        dataclasses.replace(config, job_expire_interval=EXPIRE, dedupe_window_ms=WINDOW),
        clock=EngineVersusModel.clock,
    )
    EngineVersusModel.TestCase.settings = settings(
        max_examples=100, stateful_step_count=50, deadline=None, derandomize=True
    )
    EngineVersusModel.TestCase().runTest()
