"""Hypothesis drives the engine and a plain-Python model of SPEC's semantics side by side.

The model keeps, per queue, a FIFO of job ids, the interval (the last enqueue's, or
the queue's own limits), the rate state, the time the queue is next due, its
active jobs, its pause and its delayed jobs; dequeue serves the earliest-due
queue (ties by queue id, as a Redis sorted set orders them). Every step's result
must be equal.

The rate is a generic cell rate algorithm with one stored time per queue, L:
with burst 1 it is the last dequeue, and the next job is due at L + interval
(SPEC's rule); with burst B it is due at L + interval - (B-1) x interval, and a
dequeue moves L to max(L + interval, now). So over any window of T ms a queue
serves at most B + T // interval jobs; `test_burst_window_bound` checks that
directly on the engine.

Deadlines (issue 26): a job enqueued with ttl_ms is never handed out from its
deadline on. A take that meets it at a queue's head drops it to the dead letters
(at most 10 per call) and goes on; the requeue pass expires those still queued or
delayed, and a delivery that ends after the deadline expires instead of going back.

Priorities (issue 26): a job enqueued with a priority (0-9) goes behind every job
of its priority or higher in its queue, and one coming back (a delivery that ended)
in front of those of its own priority: the queue's order is always by priority,
highest first, and first in first out within one (`priority_order_holds`).

Jobs may also belong to one campaign: its counts must equal the model's and sum to
its total after every step, it is done exactly when it has jobs and none is
queued, scheduled or active (an expired job counts `expired`), a cancel removes its queued and delayed jobs, and
its on_done job is enqueued once, by the first requeue pass after it is done.

Jobs cost units (issue 25): a job of cost c is due at L + interval - (B - min(c, B))
x interval (one costing more than B once the state is fully idle), moves L to
max(L + interval, now) + (c - 1) x interval, and a higher real cost reported on
finish moves L by the difference; `test_units_window_bound` checks that over any
window a queue hands out at most max(B, largest cost) + T // interval units.

Type-wide limits (PUT /limits/<type>/) count units the same way: the type has one
rate state and its quota counts every queue's units (owner "*"). A take judges them
on the job it would hand out next, once that job's queue lets it go; when they hold
it, the take stops there and every queue keeps its place. `quotas_hold_on_the_engine`
and `type_rate_holds_on_the_engine` check the bounds on what the engine handed out;
`test_type_limits_match_the_model` drives them where the machine rarely gets.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import deque
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from redis import Redis

from sharq_core import Config, DuplicateJob, NotFound, QueueFull, SharQ
from sharq_core.campaigns import STATES
from sharq_core.exceptions import Conflict
from tests.support import Clock, wait_for

EXPIRE = 100
WINDOW = 200  # the dedupe window (ms): a finished job_id is refused this long
QUEUES = st.sampled_from(["qa", "qb"])
JOBS = st.sampled_from(["j1", "j2", "j3"])
COSTS = st.sampled_from([1, 1, 2, 5])
INTERVALS = st.sampled_from([0, 30, 150])
# steps that land on, just before and just after every interval and the expiry
STEPS = st.sampled_from([0, 1, 29, 30, 31, 99, 100, 149, 150])
TTLS = st.sampled_from([None, None, 30, 150])
PRIORITIES = st.sampled_from([0, 0, 0, 1, 9])
MAX_EXPIRED_PER_TAKE = 10


def as_served(job: dict) -> tuple:
    """A dequeued job as the model's dequeue lists it."""
    return (
        job["queue_id"],
        job["job_id"],
        job["payload"],
        job["requeues_remaining"],
        job["current_queue_length"],
        job.get("cost", 1),
    )


class Model:
    """SPEC's semantics, written as directly as possible."""

    def __init__(self) -> None:
        self.now = 0
        self.fifo: dict[str, deque[str]] = {}
        self.jobs: dict[tuple[str, str], dict] = {}  # queued, delayed or active
        self.active: dict[tuple[str, str], int] = {}  # -> expiry
        self.retrying: set[tuple[str, str]] = set()  # active entries waiting for retry_after_ms
        self.interval: dict[str, int] = {}  # the last enqueue's, while the queue holds jobs
        self.limits: dict[str, dict] = {}  # the queue's own: interval, burst, cap, weight
        # what is left of a queue's turn less its quantum (weighted_place), and the
        # queues that kept their place after their last service
        self.turns: dict[str, int] = {}
        self.kept: set[str] = set()
        self.largest_cost = 1  # of any job queued: the unit of a turn
        self.least_cost: int | None = None  # of any job queued: turns count once costs vary
        self.last: dict[str, int] = {}  # the rate state L
        self.due: dict[str, int] = {}  # the ready set
        self.paused: dict[str, int] = {}  # -> end, -1 until resumed
        self.delayed: dict[tuple[str, str], int] = {}  # -> due
        self.dead: set[tuple[str, str]] = set()
        self.done: dict[tuple[str, str], int] = {}  # -> finish time
        self.expired = 0  # jobs never handed out by their deadline
        self.campaign = {"total": 0, "finished": 0, "dead": 0, "expired": 0, "cancelled": 0}  # the one campaign's past
        self.campaign_cancelled = False
        self.quotas: dict[str, tuple[int, int]] = {}  # the queue's own quota: (limit, window_ms)
        # (queue, window_ms) -> (window start, units counted): each window counts its
        # own, so a quota set with another window starts from 0, as the engine's does
        self.used: dict[tuple[str, int], tuple[int, int]] = {}
        # type-wide limits (PUT /limits/<type>/): the type's quota is quotas["*"] (the
        # engine's owner for it), its rate (interval, burst) and rate state L here
        self.type_rate: tuple[int, int] | None = None
        self.type_last: int | None = None

    def campaign_counts(self) -> dict[str, int]:
        """The campaign's counts: the live ones from where its jobs are now."""
        mine = {key for key, record in self.jobs.items() if record["campaign"]}
        scheduled = sum(1 for key in self.delayed if key in mine)
        active = sum(1 for key in self.active if key in mine)
        queued = len(mine) - scheduled - active
        return {**self.campaign, "queued": queued, "scheduled": scheduled, "active": active}

    def campaign_done(self) -> bool:
        counts = self.campaign_counts()
        live = counts["queued"] + counts["scheduled"] + counts["active"]
        return live == 0 and (counts["total"] > 0 or self.campaign_cancelled)

    def cancel(self) -> None:
        """Its queued and delayed jobs go; active ones end as they would."""
        self.campaign_cancelled = True
        for key in [key for key, record in self.jobs.items() if record["campaign"] and key not in self.active]:
            queue, job = key
            del self.jobs[key]
            if self.delayed.pop(key, None) is None:
                self.fifo[queue].remove(job)
                if not self.fifo[queue]:
                    del self.fifo[queue]
                self._schedule(queue)
            self.campaign["cancelled"] += 1
            self._forget_if_empty(queue)

    # -- quotas over fixed windows (issue 25.2) -----------------------------------------

    def _window(self, queue: str) -> tuple[int, int]:
        """The start of the queue's quota window now, and the units counted in it."""
        window = self.quotas[queue][1]
        start = self.now - self.now % window
        began, used = self.used.get((queue, window), (start, 0))
        return start, (used if began == start else 0)

    def _quota_held_until(self, queue: str, cost: int) -> int | None:
        if queue not in self.quotas:
            return None
        start, used = self._window(queue)
        return start + self.quotas[queue][1] if used + cost > self.quotas[queue][0] else None

    def _count(self, queue: str, units: int) -> None:
        if queue in self.quotas:
            start, used = self._window(queue)
            self.used[(queue, self.quotas[queue][1])] = (start, used + units)

    # -- type-wide limits (issue 19.1, counted in units by issue 25) -----------------

    def _type_wait(self, cost: int) -> int:
        """0 when the type's quota and rate let the job a take would hand out next (its
        queue lets it) go now, else the ms until they do (the quota's reset first, as
        type_gate says)."""
        held = self._quota_held_until("*", cost)
        if held is not None:
            return held - self.now
        if self.type_rate is not None and self.type_last is not None:
            interval, burst = self.type_rate
            due = self.type_last + interval - (burst - min(cost, burst)) * interval
            return max(due - self.now, 0)
        return 0

    def _type_took(self, cost: int) -> None:
        self._count("*", cost)
        if self.type_rate is not None:
            interval = self.type_rate[0]
            last = self.now if self.type_last is None else max(self.type_last + interval, self.now)
            self.type_last = last + (cost - 1) * interval

    def set_type_rate(self, rate: tuple[int, int] | None) -> None:
        """Clearing the interval drops the type's rate state; changing it keeps it."""
        self.type_rate = rate
        if rate is None:
            self.type_last = None

    def set_type_quota(self, quota: tuple[int, int] | None) -> None:
        """No queue moves: the type's quota is judged as a take meets a job."""
        if quota is None:
            self.quotas.pop("*", None)
        else:
            self.quotas["*"] = quota

    # -- the queue's limits and place in the ready set ----------------------------

    def _limits(self, queue: str) -> tuple[int, int, int | None]:
        own = self.limits.get(queue, {})
        interval = own.get("interval")
        return (self.interval.get(queue, 0) if interval is None else interval), own.get("burst", 1), own.get("cap")

    def _due_by_rate(self, queue: str, cost: int) -> int:
        interval, burst, _ = self._limits(queue)
        return self.last[queue] + interval - (burst - min(cost, burst)) * interval

    def _head_cost(self, queue: str) -> int:
        return self.jobs[(queue, self.fifo[queue][0])]["cost"]

    def _active_count(self, queue: str) -> int:
        return sum(1 for (q, j) in self.active if q == queue and (q, j) not in self.retrying)

    def _schedule(self, queue: str) -> None:
        """Where the queue stands in the ready set: absent when it cannot be served."""
        if not self.fifo.get(queue):
            self._unlist(queue)
            return
        cap = self._limits(queue)[2]
        paused = self.paused.get(queue)
        if paused is not None and 0 <= paused <= self.now:
            del self.paused[queue]
            paused = None
        if paused == -1 or (cap is not None and self._active_count(queue) >= cap):
            self._unlist(queue)
            return
        listed = self.due.get(queue)
        due = self.now if listed is None else listed
        if queue in self.last:
            # fairness: borrowed burst never lists a queue before now, nor before
            # the place it already had among queues that were really waiting
            rate = self._due_by_rate(queue, self._head_cost(queue))
            due = max(rate, min(self.now if listed is None else listed, self.now))
            if listed is not None and listed < due and rate <= self.now and self._turn_counted(queue):
                due = listed  # its place within its turn, while its rate lets a job go now
        if paused is not None:
            due = max(due, paused)
        self.due[queue] = due

    def _unlist(self, queue: str) -> None:
        """Out of the ready set other than by a service: a queue that was listed
        ends its turn (unlist in _helpers.lua)."""
        if self.due.pop(queue, None) is not None:
            self.turns.pop(queue, None)

    def _turn_counted(self, queue: str) -> bool:
        """A queue of weight over 1, or among jobs of several costs, counts its
        turns; else each turn is one job (turn_counted in _helpers.lua)."""
        weight = self.limits.get(queue, {}).get("weight", 1)
        return weight > 1 or self.largest_cost > (self.least_cost or 1)

    def _turn_covers(self, queue: str, cost: int) -> bool:
        """Whether what is left of the queue's turn covers its head job of `cost`;
        when not (a costlier job came to the front mid-turn) the turn ends, carrying
        what was left (turn_take in _helpers.lua)."""
        quantum = self.limits.get(queue, {}).get("weight", 1) * self.largest_cost
        left = self.turns.get(queue, 0) + quantum
        if not self._turn_counted(queue) or cost <= left:
            return True
        self.turns[queue] = left
        return False

    def _take_turn(self, queue: str, listed: int, cost: int) -> None:
        """Deficit round robin in units: a turn gives a queue weight x the largest
        cost queued; it keeps its place `listed` while what is left covers its next
        job (unless its rate holds it), then goes to the back carrying the rest; one
        that left the ready set (empty, at its cap) ends its turn, carrying nothing."""
        self.kept.discard(queue)
        quantum = self.limits.get(queue, {}).get("weight", 1) * self.largest_cost
        if not self._turn_counted(queue):
            return
        if queue not in self.due:
            self.turns.pop(queue, None)
            return
        self.turns[queue] = self.turns.get(queue, 0) - cost
        left = self.turns[queue] + quantum
        if self._head_cost(queue) <= left:
            rate = self._due_by_rate(queue, self._head_cost(queue))
            self.due[queue] = rate if rate > self.now else listed
            self.kept.add(queue)
        elif left == 0:
            del self.turns[queue]
        else:
            self.turns[queue] = left

    def _free_slot(self, queue: str) -> None:
        """Called after the job left the active set."""
        cap = self._limits(queue)[2]
        if cap is not None and self._active_count(queue) == cap - 1:
            self._schedule(queue)

    def _forget_if_empty(self, queue: str) -> None:
        if not any(q == queue for q, _ in self.jobs):
            self.interval.pop(queue, None)

    # -- the operations ---------------------------------------------------------------

    def _lapsed(self, key) -> bool:
        deadline = self.jobs[key].get("deadline")
        return deadline is not None and deadline <= self.now

    def _expire(self, key) -> None:
        """A job not handed out by its deadline: a dead letter, counted."""
        self.campaign["expired"] += self.jobs[key]["campaign"]
        del self.jobs[key]
        self.dead.add(key)
        self.expired += 1
        self._forget_if_empty(key[0])

    def _push(self, queue, job, front=False) -> None:
        """Into its queue behind every job of a higher priority, and of its own
        unless `front` (a job coming back goes first among its own). The queue is
        listed anew when it was empty, or when the job overtook every job it held (a
        priority above theirs): its cost, not theirs, says when the queue is due, and
        the listing forgets a quota's hold (the next take finds it again)."""
        fifo = self.fifo.setdefault(queue, deque())
        mine = self.jobs[(queue, job)]["priority"]
        overtook = bool(fifo) and mine > self.jobs[(queue, fifo[0])]["priority"]
        ahead = [other for other in fifo if self.jobs[(queue, other)]["priority"] + (0 if front else 1) > mine]
        fifo.insert(len(ahead), job)
        if len(fifo) == 1 or overtook:
            self._schedule(queue)

    def enqueue(
        self, queue, job, payload, interval, limit, max_length, delay, ttl=None, campaign=False, cost=1, priority=0
    ):
        key = (queue, job)
        if campaign and self.campaign_cancelled:
            return "cancelled"
        if key in self.jobs or key in self.dead or self.now - self.done.get(key, -WINDOW) < WINDOW:
            return "duplicate"
        held = len(self.fifo.get(queue, ())) + sum(1 for q, _ in self.delayed if q == queue)
        if max_length is not None and held >= max_length:
            return "full"
        self.jobs[key] = {
            "payload": payload,
            "remaining": limit,
            "limit": limit,
            "campaign": campaign,
            "cost": cost,
            "priority": priority,
        }
        self.largest_cost = max(self.largest_cost, cost)
        self.least_cost = min(self.least_cost or cost, cost)
        self.campaign["total"] += campaign
        if ttl is not None:
            self.jobs[key]["deadline"] = self.now + ttl
        if self.interval.get(queue) != interval:
            self.interval[queue] = interval
            self._schedule(queue)
        if delay:
            self.delayed[key] = self.now + delay
            return "queued"
        self._push(queue, job)
        return "queued"

    def _promote(self) -> None:
        for (queue, job), _ in sorted(
            ((key, due) for key, due in self.delayed.items() if due <= self.now),
            key=lambda item: (item[1], ":".join(item[0])),
        ):
            del self.delayed[(queue, job)]
            self._push(queue, job)

    def dequeue(self, count):
        self._promote()
        served, expired = [], 0
        while len(served) < count and self.due:
            queue = min(self.due, key=lambda q: (self.due[q], q))
            if self.due[queue] > self.now:
                break
            if self._lapsed((queue, self.fifo[queue][0])):
                # dropped: the queue keeps its place for its next job
                self._expire((queue, self.fifo[queue].popleft()))
                if not self.fifo[queue]:
                    del self.fifo[queue]
                    self._unlist(queue)
                expired += 1
                if expired == MAX_EXPIRED_PER_TAKE:
                    return served, 0  # more may be ready behind them
                continue
            cost = self._head_cost(queue)
            due = self._due_by_rate(queue, cost) if queue in self.last else None
            held = self._quota_held_until(queue, cost)
            if held is not None and (due is None or due < held):
                due = held
            if due is not None and due > self.now:
                self.due[queue] = due  # a costlier job came back to the front, or a quota holds it
                continue
            wait = self._type_wait(cost)
            if wait:
                # the type's rate or quota holds the job that would go next: the take
                # stops there and every queue keeps its place
                return served, (0 if served else wait)
            if not self._turn_covers(queue, cost):
                self.due[queue] = self.now  # to the back: its next turn covers the job
                continue
            self._count(queue, cost)
            self._type_took(cost)
            job = self.fifo[queue].popleft()
            self.active[(queue, job)] = self.now + EXPIRE
            interval = self._limits(queue)[0]
            last = max(self.last[queue] + interval, self.now) if queue in self.last else self.now
            self.last[queue] = last + (cost - 1) * interval
            listed = self.due.pop(queue)  # served: listed anew, no earlier than now
            self._schedule(queue)
            self._take_turn(queue, listed, cost)
            if not self.fifo[queue]:
                del self.fifo[queue]
            record = self.jobs[(queue, job)]
            length = len(self.fifo.get(queue, ()))
            served.append((queue, job, record["payload"], record["remaining"], length, record["cost"]))
        if served:
            return served, 0
        wait = min(self.due.values()) - self.now if self.due else None
        if self.delayed:
            soonest = min(self.delayed.values()) - self.now
            if wait is None or soonest < wait:
                wait = max(soonest, 0)
        return [], wait

    def finish(self, queue, job, real_cost=None):
        key = (queue, job)
        if key not in self.active or key in self.retrying:
            return False
        self.campaign["finished"] += self.jobs[key]["campaign"]
        extra = (real_cost or 0) - self.jobs[key]["cost"]
        if extra > 0:  # charged before the job leaves, as finish.lua does
            if queue in self.last:
                self.last[queue] += extra * self._limits(queue)[0]
            if self.type_rate is not None and self.type_last is not None:
                self.type_last += extra * self.type_rate[0]
            self._count(queue, extra)
            self._count("*", extra)
            self._schedule(queue)
        del self.active[key], self.jobs[key]
        self._free_slot(queue)
        self.done[key] = self.now
        self._forget_if_empty(queue)
        return True

    def _put_back(self, queue, job, counts, dead=False):
        key = (queue, job)
        held_slot = key not in self.retrying
        self.retrying.discard(key)
        if held_slot:
            self._free_slot(queue)
        record = self.jobs[key]
        cancelled = record["campaign"] and self.campaign_cancelled
        if dead or cancelled or (counts and record["remaining"] == 0):
            del self.jobs[key]
            self._forget_if_empty(queue)
            if cancelled and not dead:
                self.campaign["cancelled"] += 1
                return "cancelled"
            self.campaign["dead"] += record["campaign"]
            self.dead.add(key)
            return "dead"
        if self._lapsed(key):
            self._expire(key)
            return "expired"
        if counts and record["remaining"] > 0:
            record["remaining"] -= 1
        self._push(queue, job, front=True)
        return "requeued"

    def fail(self, queue, job, retry_after, throttle):
        key = (queue, job)
        if key not in self.active or key in self.retrying:
            return None
        if throttle:
            end = self.now + retry_after
            if self.paused.get(queue) != -1 and self.paused.get(queue, end - 1) < end:
                self.paused[queue] = end
            retry_after = 0
        if retry_after and self.jobs[key]["remaining"] != 0:
            self.active[key] = self.now + retry_after
            self.retrying.add(key)
            self._free_slot(queue)
            return "retrying"
        del self.active[key]
        state = self._put_back(queue, job, counts=not throttle)
        if state in ("dead", "expired"):
            return state
        if throttle:
            self._schedule(queue)
        return "queued"

    def set_interval(self, queue, interval):
        if queue not in self.interval:
            return False
        if "interval" in self.limits.get(queue, {}):  # an override holding only burst or cap stays
            self.limits[queue]["interval"] = interval
        else:
            self.interval[queue] = interval
        self._schedule(queue)
        return True

    def set_limits(self, queue, interval, burst, cap, weight=None):
        given = (("interval", interval), ("burst", burst), ("cap", cap), ("weight", weight))
        own = {name: value for name, value in given if value and not (name == "weight" and value == 1)}
        if (weight or 1) != self.limits.get(queue, {}).get("weight", 1):
            self.turns.pop(queue, None)  # a new weight starts a new turn; the same one given again does not
        if own:
            self.limits[queue] = own
        else:
            self.limits.pop(queue, None)
        self._schedule(queue)

    def set_quota(self, queue, quota):
        if quota is None:
            self.quotas.pop(queue, None)
        else:
            self.quotas[queue] = quota
        self._schedule(queue)

    def pause(self, queue, for_ms):
        self.paused[queue] = self.now + for_ms if for_ms else -1
        self._schedule(queue)

    def resume(self, queue):
        self.paused.pop(queue, None)
        self.due.pop(queue, None)
        self._schedule(queue)

    def requeue(self):
        expired = sorted(((t, f"{q}:{j}") for (q, j), t in self.active.items() if t <= self.now), reverse=True)
        requeued = dead = 0
        for _, name in expired:
            queue, job = name.split(":")
            del self.active[(queue, job)]
            outcome = self._put_back(queue, job, counts=True)
            dead += outcome in ("dead", "expired")
            requeued += outcome == "requeued"
        # the sweep: jobs still queued or delayed past their deadline expire
        for key in sorted(key for key in self.jobs if key not in self.active and self._lapsed(key)):
            queue, job = key
            if key in self.delayed:
                del self.delayed[key]
            else:
                self.fifo[queue].remove(job)
                if not self.fifo[queue]:
                    del self.fifo[queue]
                self._schedule(queue)
            self._expire(key)
            dead += 1
        self._promote()
        return {"requeued": requeued, "dead": dead}

    def touch(self, queue, job):
        if (queue, job) not in self.active or (queue, job) in self.retrying:
            return None
        self.active[(queue, job)] = self.now + EXPIRE
        return self.now + EXPIRE


def assert_quotas_hold(model: Model, handed: list[tuple[str, int, int]], set_at: dict[str, int]) -> None:
    """Units handed out (`handed`: queue, time, units) in the current window of each
    quota of the model, a queue's or the type's ("*": every queue's units), never
    exceed its limit; `set_at` says where in `handed` each quota was set: what went
    before is not counted, even in the same ms."""
    for owner, (limit, window) in model.quotas.items():
        start = model.now - model.now % window
        units = sum(c for q, t, c in handed[set_at[owner] :] if owner in (q, "*") and t >= start)
        assert units <= limit, (owner, units, limit)


def assert_type_rate_holds(model: Model, since: list[tuple[str, int, int]]) -> None:
    """Over any stretch of T ms under the type-wide rate (interval I, burst B) the
    model has, hand-outs `since` it was set total at most max(B, largest cost) +
    T // I units. Checks every stretch ending at the latest hand-out: called after
    each step, a stretch ending earlier was checked when its end was the latest."""
    if model.type_rate is None:
        return
    interval, burst = model.type_rate
    units, largest = 0, burst
    for _, start, cost in reversed(since):
        units, largest = units + cost, max(largest, cost)
        assert units <= largest + (since[-1][1] - start) // interval, (since, interval, burst)


class EngineVersusModel(RuleBasedStateMachine):
    engine: SharQ
    clock: Clock
    flush: Callable[[], object]
    redis: Redis

    @initialize()
    def start(self) -> None:
        self.flush()
        # each example starts at the same phase of every quota window (the clock only
        # goes forward, and epoch-aligned windows would otherwise make a replay differ)
        self.clock.advance(-self.clock.now % 1_000_000)
        self.model = Model()
        self.model.now = self.clock.now
        self.served_at: dict[str, int] = {}
        self.deadlines: dict[tuple[str, str], int] = {}  # each job's latest, as enqueued
        self.engine.set_on_done("t", "cg", {"queue_type": "report", "queue_id": "ops", "payload": None})
        self.reported = False  # whether a requeue pass has run since the campaign was first done
        self.receipts: dict[tuple[str, str], str] = {}
        self.handed: list[tuple[str, int, int]] = []  # (queue, time, units) of every hand-out
        self.quota_set_at: dict[str, int] = {}  # queue ("*": the type) -> len(self.handed) when its quota was set
        self.type_rate_set_at = 0  # len(self.handed) when the type-wide rate was last set

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
        delay=st.sampled_from([0, 0, 0, 30, 150]),
        ttl=TTLS,
        campaign=st.booleans(),
        cost=COSTS,
        priority=PRIORITIES,
    )
    def enqueue(self, queue, job, payload, interval, limit, max_length, delay, ttl, campaign, cost, priority) -> None:
        expected = self.model.enqueue(
            queue, job, payload, interval, limit, max_length, delay, ttl, campaign, cost, priority
        )
        try:
            self.engine.enqueue(
                payload, interval, job, queue, "t", limit, max_length, delay_ms=delay or None, ttl_ms=ttl,
                campaign="cg" if campaign else None, cost=cost, priority=priority,
            )  # fmt: skip
            self.deadlines.pop((queue, job), None)
            if ttl is not None:
                self.deadlines[(queue, job)] = self.model.now + ttl
            got = "queued"
        except DuplicateJob:
            got = "duplicate"
        except QueueFull:
            got = "full"
        except Conflict:
            got = "cancelled"
        assert got == expected

    @rule()
    def cancel(self) -> None:
        self.model.cancel()
        self.engine.cancel_campaign("t", "cg")

    @rule(count=st.sampled_from([1, 1, 3]))
    def dequeue(self, count: int) -> None:
        expected, wait = self.model.dequeue(count)
        reply = self.engine.dequeue_many("t", count)
        got = [as_served(j) for j in reply["jobs"]]
        assert got == expected
        assert reply.get("retry_after_ms", 0) == wait
        for job in reply["jobs"]:
            self.served_at[job["queue_id"]] = job["dequeued_at"]
            assert job.get("priority", 0) == self.model.jobs[(job["queue_id"], job["job_id"])]["priority"]
            # nothing expired is ever handed out
            deadline = self.deadlines.get((job["queue_id"], job["job_id"]))
            assert deadline is None or job["dequeued_at"] < deadline, (job, deadline)
            self.handed.append((job["queue_id"], job["dequeued_at"], job.get("cost", 1)))
            self.receipts[(job["queue_id"], job["job_id"])] = job["receipt"]

    @rule(queue=QUEUES, job=JOBS, real_cost=st.sampled_from([None, None, 1, 3, 8]))
    def finish(self, queue: str, job: str, real_cost) -> None:
        key = (queue, job)
        if key not in self.model.active or key in self.model.retrying:
            real_cost = None  # a real cost needs the current delivery's receipt
        expected = self.model.finish(queue, job, real_cost)
        receipt = None if real_cost is None else self.receipts[key]
        assert (self.engine.finish(job, queue, "t", receipt, real_cost)["status"] == "success") == expected
        # the done set also expires as a whole a window after the last finish, by
        # Redis's own clock, which the test's clock does not drive (in production the
        # scripts read that clock): on a loaded machine it went before the test's
        # window did. Its scores alone say what the window holds, as they do there.
        self.redis.persist(self.engine.keys.done("t"))

    @rule(queue=QUEUES, job=JOBS, retry_after=st.sampled_from([0, 0, 100]), throttle=st.sampled_from([False, True]))
    def fail(self, queue: str, job: str, retry_after: int, throttle: bool) -> None:
        if throttle and not retry_after:
            retry_after = 30
        expected = self.model.fail(queue, job, retry_after, throttle)
        try:
            got = self.engine.fail("t", queue, job, retry_after_ms=retry_after or None, throttle=throttle)["state"]
        except NotFound:
            got = None
        assert got == expected

    @rule(queue=QUEUES, interval=INTERVALS)
    def set_interval(self, queue: str, interval: int) -> None:
        expected = self.model.set_interval(queue, interval)
        assert (self.engine.interval(interval, queue, "t")["status"] == "success") == expected

    @rule(
        queue=QUEUES,
        interval=st.sampled_from([None, 30, 150]),
        burst=st.sampled_from([None, 2, 3]),
        cap=st.sampled_from([None, 1, 2]),
        weight=st.sampled_from([None, 1, 2, 3, 3, 3]),
    )
    def set_limits(self, queue: str, interval, burst, cap, weight) -> None:
        self.model.set_limits(queue, interval, burst, cap, weight)
        self.engine.set_limits("t", queue, interval=interval, burst=burst, max_active=cap, weight=weight)

    @rule(queue=QUEUES, quota=st.sampled_from([None, (3, 1000), (6, 2000)]))
    def set_quota(self, queue: str, quota) -> None:
        self.model.set_quota(queue, quota)
        self.quota_set_at[queue] = len(self.handed)
        quotas = None if quota is None else [{"limit": quota[0], "window_ms": quota[1]}]
        self.engine.set_limits("t", queue, quotas=quotas)

    @rule(rate=st.sampled_from([None, (30, 1), (30, 3), (150, 2)]))
    def set_type_rate(self, rate) -> None:
        """The type-wide interval and burst (the quota kept); None clears both."""
        self.model.set_type_rate(rate)
        self.type_rate_set_at = len(self.handed)
        interval, burst = rate or (None, None)
        self.engine.set_type_limits("t", interval=interval, burst=None if burst == 1 else burst)

    @rule(quota=st.sampled_from([None, (5, 1000), (8, 2000)]))
    def set_type_quota(self, quota) -> None:
        """The type-wide quota (the rate kept)."""
        self.model.set_type_quota(quota)
        self.quota_set_at["*"] = len(self.handed)
        quotas = None if quota is None else [{"limit": quota[0], "window_ms": quota[1]}]
        self.engine.set_type_limits("t", quotas=quotas)

    @rule(queue=QUEUES, for_ms=st.sampled_from([None, 30, 150]))
    def pause(self, queue: str, for_ms) -> None:
        self.model.pause(queue, for_ms)
        self.engine.pause("t", queue, for_ms)

    @rule(queue=QUEUES)
    def resume(self, queue: str) -> None:
        self.model.resume(queue)
        self.engine.resume("t", queue)

    @rule()
    def requeue(self) -> None:
        assert self.engine.requeue() == self.model.requeue()
        assert self.engine.type_stats("t")["counters"]["expired"] == self.model.expired
        self.reported = self.reported or self.model.campaign_done()

    @rule(queue=QUEUES, job=JOBS)
    def touch(self, queue: str, job: str) -> None:
        expected = self.model.touch(queue, job)
        try:
            got = self.engine.touch(job, queue, "t")["expires_at"]
        except NotFound:
            got = None
        assert got == expected

    @invariant()
    def served_queues_wait_their_turn(self) -> None:
        """Fairness on the engine itself: a queue just served is listed no earlier
        than that service, so queues that were ready before it go first (with
        burst, its rate alone would list it in the past)."""
        if not hasattr(self, "model"):
            return
        for queue, served_at in self.served_at.items():
            if queue in self.model.kept:
                continue  # a queue within its turn keeps its place (weighted_place)
            next_ready = self.engine.queue_info("t", queue)["next_ready_at"]
            assert next_ready is None or next_ready >= served_at, (queue, next_ready, served_at)

    @invariant()
    def campaign_counts_sum_and_match(self) -> None:
        if not hasattr(self, "model"):
            return
        found = self.engine.campaign("t", "cg")
        assert sum(found[state] for state in STATES) == found["total"]
        assert {name: found[name] for name in self.model.campaign_counts()} == self.model.campaign_counts()
        assert found["done"] == self.model.campaign_done()
        assert self.engine.get_queue_length("report", "ops") == (1 if self.reported else 0)

    @invariant()
    def priority_order_holds(self) -> None:
        """Within a queue, no job waits ahead of one of a higher priority; the
        engine hands jobs out in the model's order (`dequeue`), so in this one."""
        if not hasattr(self, "model"):
            return
        for queue, fifo in self.model.fifo.items():
            priorities = [self.model.jobs[(queue, job)]["priority"] for job in fifo]
            assert priorities == sorted(priorities, reverse=True), (queue, list(fifo), priorities)

    @invariant()
    def quotas_hold_on_the_engine(self) -> None:
        """Units the engine handed out in the current window of a queue's quota, or of
        the type's ("*": every queue's units), never exceed its limit (a real cost
        reported later may count beyond it)."""
        if hasattr(self, "model"):
            assert_quotas_hold(self.model, self.handed, self.quota_set_at)

    @invariant()
    def type_rate_holds_on_the_engine(self) -> None:
        """Over any stretch of T ms while the type-wide rate (interval I, burst B)
        stands, the engine hands out at most max(B, largest cost) + T // I units of
        the type (the clock only goes on)."""
        if hasattr(self, "model"):
            assert_type_rate_holds(self.model, self.handed[self.type_rate_set_at :])

    @invariant()
    def same_lengths_and_queues(self) -> None:
        if not hasattr(self, "model"):
            return
        for queue in ("qa", "qb"):
            assert self.engine.get_queue_length("t", queue) == len(self.model.fifo.get(queue, ()))
        assert self.engine.metrics("t")["queue_ids"] == sorted(self.model.interval)


@pytest.fixture
def machine(config: Config, redis_client) -> Iterator[type[EngineVersusModel]]:
    """The state machine's class, wired to the test Redis and a fresh engine."""
    EngineVersusModel.flush = redis_client.flushall
    EngineVersusModel.redis = redis_client
    EngineVersusModel.clock = Clock()
    EngineVersusModel.engine = SharQ(
        dataclasses.replace(config, job_expire_interval=EXPIRE, dedupe_window_ms=WINDOW),
        clock=EngineVersusModel.clock,
    )
    yield EngineVersusModel
    EngineVersusModel.engine.close()


@pytest.mark.timeout(300)
def test_engine_matches_model(machine: type[EngineVersusModel]) -> None:
    machine.TestCase.settings = settings(max_examples=300, stateful_step_count=50, deadline=None, derandomize=True)
    machine.TestCase().runTest()


# what a replayed step leaves out (the steps found before a rule had the argument)
REPLAY_DEFAULTS = {
    "enqueue": {
        "payload": 0,
        "limit": -1,
        "max_length": None,
        "delay": 0,
        "ttl": None,
        "campaign": False,
        "cost": 1,
        "priority": 0,
    },
    "set_limits": {"weight": None},
}


def replay(machine: type[EngineVersusModel], *steps: tuple[str, dict], state=None) -> EngineVersusModel:
    """Run steps the random search once found (on `state`, or a machine started
    anew), checking every invariant after each, as the search does."""
    if state is None:
        state = machine()
        state.start()
    for name, arguments in steps:
        getattr(state, name)(**(REPLAY_DEFAULTS.get(name, {}) | arguments))
        state.served_queues_wait_their_turn()
        state.campaign_counts_sum_and_match()
        state.priority_order_holds()
        state.quotas_hold_on_the_engine()
        state.type_rate_holds_on_the_engine()
        state.same_lengths_and_queues()
    return state


def test_model_interval_change_under_a_cap_only_override(machine: type[EngineVersusModel]) -> None:
    """POST /interval on a queue whose own limits hold only max_active (or burst)
    changes the interval enqueues give, which the next enqueue's replaces: a job
    costing 5 then waits a whole interval of 30 ms after the last (the model once
    changed the override and handed it out at once)."""
    replay(
        machine,
        ("set_limits", {"queue": "qa", "interval": None, "burst": None, "cap": 1}),
        ("enqueue", {"queue": "qa", "job": "j1", "interval": 0, "cost": 2}),
        ("advance", {"ms": 100}),
        ("set_interval", {"queue": "qa", "interval": 0}),
        ("dequeue", {"count": 1}),
        ("finish", {"queue": "qa", "job": "j1", "real_cost": 1}),
        ("enqueue", {"queue": "qa", "job": "j3", "interval": 30, "cost": 5, "limit": 0, "max_length": 2}),
        ("dequeue", {"count": 1}),
    )


def test_model_cap_lifted_after_an_interval_change(machine: type[EngineVersusModel]) -> None:
    """The same, seen from the wait: j1 (cost 2) went out under the enqueue's 30 ms,
    so once the cap is lifted j3 is due 2 x 30 ms later, as retry_after_ms says."""
    replay(
        machine,
        ("set_limits", {"queue": "qa", "interval": None, "burst": None, "cap": 1}),
        ("enqueue", {"queue": "qa", "job": "j1", "interval": 0, "cost": 2}),
        ("set_interval", {"queue": "qa", "interval": 0}),
        ("enqueue", {"queue": "qa", "job": "j3", "interval": 30, "cost": 1}),
        ("dequeue", {"count": 1}),
        ("set_limits", {"queue": "qa", "interval": None, "burst": None, "cap": None}),
        ("dequeue", {"count": 1}),
    )


def test_model_weights_share_units(machine: type[EngineVersusModel]) -> None:
    """Turns count units: beside a queue of 2-unit jobs, a queue of 1-unit jobs of
    the same weight keeps its place for a second job (its turn holds the largest
    cost queued, 2), so both get 2 units a turn (turns once counted jobs, and the
    second take went to qb)."""
    replay(
        machine,
        *(("enqueue", {"queue": "qa", "job": job, "interval": 0}) for job in ("j1", "j2")),
        *(("enqueue", {"queue": "qb", "job": job, "interval": 0, "cost": 2}) for job in ("j3", "j4")),
        ("advance", {"ms": 10}),
        ("dequeue", {"count": 1}),
        ("advance", {"ms": 10}),
        ("dequeue", {"count": 1}),
        ("advance", {"ms": 10}),
        ("dequeue", {"count": 3}),
    )


def test_model_quota_set_in_the_ms_of_a_hand_out(machine: type[EngineVersusModel]) -> None:
    """Units handed out before a quota was set do not count against it, even in the
    same ms (the invariant once counted them by time alone)."""
    replay(
        machine,
        ("enqueue", {"queue": "qb", "job": "j1", "interval": 0, "cost": 5}),
        ("dequeue", {"count": 1}),
        ("set_quota", {"queue": "qb", "quota": (3, 1000)}),
    )


def test_model_quota_window_changed(machine: type[EngineVersusModel]) -> None:
    """Each quota window counts its own units: one set with another window_ms starts
    from 0, though both windows began at the same ms (the model once carried the
    2 units of the 1 s window into the 2 s one and held the cost-5 job)."""
    replay(
        machine,
        ("set_quota", {"queue": "qa", "quota": (3, 1000)}),
        ("enqueue", {"queue": "qa", "job": "j1", "interval": 0, "cost": 2}),
        ("dequeue", {"count": 1}),
        ("set_quota", {"queue": "qa", "quota": (6, 2000)}),
        ("enqueue", {"queue": "qa", "job": "j2", "interval": 0, "cost": 5}),
        ("dequeue", {"count": 1}),
    )


def test_model_dedupe_window_outlasts_real_time(machine: type[EngineVersusModel]) -> None:
    """A job finished moments ago on the test's clock is refused, however long the
    machine took meanwhile: the done set's own expiry runs on Redis's clock, so the
    machine lifts it (a loaded machine once let it lapse and the engine took the job)."""
    state = replay(
        machine,
        ("enqueue", {"queue": "qa", "job": "j1", "interval": 0, "cost": 1}),
        ("dequeue", {"count": 1}),
        ("finish", {"queue": "qa", "job": "j1", "real_cost": None}),
    )
    finished = time.monotonic()
    wait_for(lambda: time.monotonic() > finished + 2 * WINDOW / 1000, what="two dedupe windows of real time")
    replay(machine, ("enqueue", {"queue": "qa", "job": "j1", "interval": 0, "cost": 1}), state=state)


def test_model_type_quota_judges_the_job_that_goes(machine: type[EngineVersusModel]) -> None:
    """The type's quota judges the job a take would hand out, not the head of a queue
    its own quota holds: qa's 3 units are used, so its j3 (cost 5, more than the 2
    the type has left) leaves the ready set and qb's j1 goes (the engine once
    stopped the take at qa's j3, holding the whole type until the window reset)."""
    replay(
        machine,
        ("set_quota", {"queue": "qa", "quota": (3, 1000)}),
        ("set_type_quota", {"quota": (5, 1000)}),
        ("enqueue", {"queue": "qa", "job": "j1", "interval": 0, "cost": 2}),
        ("enqueue", {"queue": "qa", "job": "j2", "interval": 0, "cost": 1}),
        ("enqueue", {"queue": "qa", "job": "j3", "interval": 0, "cost": 5}),
        ("enqueue", {"queue": "qb", "job": "j1", "interval": 0, "cost": 1}),
        ("dequeue", {"count": 3}),
        ("dequeue", {"count": 3}),
    )


@pytest.mark.parametrize("seed", [25, 26])
def test_type_limits_match_the_model(sq: SharQ, clock: Clock, seed: int) -> None:
    """Type-wide rates and quotas (issue 25) where the machine above rarely meets
    them (a hold needs several hand-outs in one window): three queues of mixed
    costs, mostly backlogged, with the type's rate and quota, the queues' own
    quotas and bursts changed as they run, deadlines, priorities and real costs
    reported on finish. Every take must match the model's, and in every window of
    the type and of each queue, units handed out stay within the rate and quotas."""
    model = Model()
    model.now = clock.now
    rng = random.Random(seed)
    queues = ["qa", "qb", "qc"]
    handed: list[tuple[str, int, int]] = []
    quota_set_at: dict[str, int] = {}
    rate_set_at = 0
    for step in range(500):
        action, queue = rng.random(), rng.choice(queues)
        if action < 0.35:
            interval, cost = rng.choice([0, 0, 0, 30]), rng.choice([1, 1, 2, 5])
            ttl, priority = rng.choice([None, None, None, 30]), rng.choice([0, 0, 0, 1])
            expected = model.enqueue(queue, f"j{step}", step, interval, -1, None, 0, ttl, False, cost, priority)
            assert expected == "queued"
            sq.enqueue(step, interval, f"j{step}", queue, "t", ttl_ms=ttl, cost=cost, priority=priority)
        elif action < 0.65:
            count = rng.choice([1, 1, 3])
            expected, wait = model.dequeue(count)
            reply = sq.dequeue_many("t", count)
            assert ([as_served(j) for j in reply["jobs"]], reply.get("retry_after_ms", 0)) == (expected, wait), step
            for job in reply["jobs"]:  # done at once, now and then reporting a higher real cost
                handed.append((job["queue_id"], job["dequeued_at"], job.get("cost", 1)))
                real_cost = rng.choice([None, None, None, 8])
                assert model.finish(job["queue_id"], job["job_id"], real_cost)
                sq.finish(job["job_id"], job["queue_id"], "t", job["receipt"], real_cost)
        elif action < 0.7:
            rate = rng.choice([None, (30, 1), (30, 3), (100, 4)])
            model.set_type_rate(rate)
            rate_set_at = len(handed)
            interval, burst = rate or (None, None)
            sq.set_type_limits("t", interval=interval, burst=None if burst == 1 else burst)
        elif action < 0.75:
            quota = rng.choice([None, (5, 1000), (12, 1000), (20, 2000)])
            model.set_type_quota(quota)
            quota_set_at["*"] = len(handed)
            sq.set_type_limits("t", quotas=None if quota is None else [{"limit": quota[0], "window_ms": quota[1]}])
        elif action < 0.8:
            quota, burst = rng.choice([None, None, (6, 1000), (10, 2000)]), rng.choice([None, 3])
            model.set_limits(queue, None, burst, None)
            model.set_quota(queue, quota)
            quota_set_at[queue] = len(handed)
            quotas = None if quota is None else [{"limit": quota[0], "window_ms": quota[1]}]
            sq.set_limits("t", queue, interval=None, burst=burst, max_active=None, quotas=quotas)
        else:
            ms = rng.choice([1, 5, 30, 100, 400])
            clock.advance(ms)
            model.now += ms
        assert_quotas_hold(model, handed, quota_set_at)
        assert_type_rate_holds(model, handed[rate_set_at:])


@pytest.mark.parametrize("burst", [1, 2, 4])
def test_burst_window_bound(sq: SharQ, clock: Clock, burst: int) -> None:
    """Over any window of T ms a queue serves at most burst + T // interval jobs, and
    an idle queue serves `burst` back to back."""
    interval = 100
    sq.set_limits("t", "q", interval=interval, burst=burst)
    for n in range(60):
        sq.enqueue(n, 0, f"j{n}", "q", "t")
    times: list[int] = []
    steps = [0, 7, 33, 50, 99, 100, 1, 250, 13, 400, 0, 61]
    for step in steps * 3:
        clock.advance(step)
        times += [job["dequeued_at"] for job in sq.dequeue_many("t", 10)["jobs"]]
    assert times[:burst] == [times[0]] * burst
    for i, start in enumerate(times):
        for end in times[i:]:
            inside = sum(1 for t in times if start <= t <= end)
            assert inside <= burst + (end - start) // interval, (start, end, inside)


@pytest.mark.parametrize("burst", [1, 3])
def test_units_window_bound(sq: SharQ, clock: Clock, burst: int) -> None:
    """With jobs of several costs (one above the burst), over any window of T ms a
    queue hands out at most max(burst, largest cost) + T // interval units."""
    interval, costs = 100, [1, 2, 5, 1, 3, 1, 1, 4, 2, 1] * 3
    sq.set_limits("t", "q", interval=interval, burst=burst)
    for n, cost in enumerate(costs):
        sq.enqueue(n, 0, f"j{n}", "q", "t", cost=cost)
    handed: list[tuple[int, int]] = []  # (time, units)
    for step in [0, 7, 33, 50, 99, 100, 1, 250, 13, 400, 0, 61] * 6:
        clock.advance(step)
        handed += [(job["dequeued_at"], job.get("cost", 1)) for job in sq.dequeue_many("t", 10)["jobs"]]
    assert len(handed) >= 15  # every cost, the one above the burst too, went out
    bound = max(burst, max(costs))
    for start, _ in handed:
        for end, _ in handed:
            if end >= start:
                units = sum(c for t, c in handed if start <= t <= end)
                assert units <= bound + (end - start) // interval, (start, end, units)


@pytest.mark.parametrize("seed", [26, 27])
def test_weighted_rounds_match_the_model(sq: SharQ, clock: Clock, seed: int) -> None:
    """Weights (issue 26) on the model's rounds, where the machine above rarely meets
    them: three queues, mostly backlogged, with weights and caps changed as they
    run, intervals now and then and jobs of 1 to 3 units; every take must match
    the model's."""
    model = Model()
    model.now = clock.now
    rng = random.Random(seed)
    queues = ["qa", "qb", "qc"]
    for step in range(600):
        action = rng.random()
        queue = rng.choice(queues)
        if action < 0.45:
            interval, cost = rng.choice([0, 0, 0, 0, 5]), rng.choice([1, 1, 1, 2, 3])
            assert model.enqueue(queue, f"j{step}", step, interval, -1, None, 0, cost=cost) == "queued"
            sq.enqueue(step, interval, f"j{step}", queue, "t", cost=cost)
        elif action < 0.5:
            weight, cap = rng.choice([None, 1, 2, 3, 4]), rng.choice([None, None, None, 2])
            model.set_limits(queue, None, None, cap, weight)
            sq.set_limits("t", queue, interval=None, burst=None, max_active=cap, weight=weight)
        elif action < 0.9:
            count = rng.choice([1, 1, 1, 3])
            expected, _ = model.dequeue(count)
            got = [as_served(j) for j in sq.dequeue_many("t", count)["jobs"]]
            assert got == expected, step
            for queue_id, job_id, *_ in got:  # done at once: only a cap or an empty queue holds one back
                model.finish(queue_id, job_id)
                sq.finish(job_id, queue_id, "t")
        else:
            ms = rng.choice([1, 1, 2, 5])
            clock.advance(ms)
            model.now += ms
