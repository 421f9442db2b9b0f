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
        self._type_keys: dict[str, list[str]] = {}

    def queue_types(self) -> str:
        """SET of every queue type ever enqueued to (written by Python, not Lua)."""
        return f"{self.prefix}:queue_types"

    def drained_types(self) -> str:
        """ZSET type -> ms it left the registry (drained): the views keep listing it
        for ``idle_type_retention_ms`` after (written by Python, not Lua)."""
        return f"{self.prefix}:drained_types"

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

    def limits(self, queue_type: str) -> str:
        """HASH Q -> "<interval>|<burst>|<max_active>": a queue's own limits."""
        return f"{self.base(queue_type)}:limits"

    def quotas(self, queue_type: str) -> str:
        """HASH Q -> a queue's own quotas, "<limit>/<window_ms>/<offset_ms>;..."."""
        return f"{self.base(queue_type)}:quotas"

    def quota_use(self, queue_type: str) -> str:
        """HASH "<queue_id or *>/<window_ms>/<offset_ms>@<window start>" -> units used,
        and "<queue_id or *>/<window_ms>/<offset_ms>" -> the start of the window counted last."""
        return f"{self.base(queue_type)}:used"

    def nactive(self, queue_type: str) -> str:
        """HASH Q -> how many of its jobs hold a concurrency slot (are active)."""
        return f"{self.base(queue_type)}:nactive"

    def paused(self, queue_type: str) -> str:
        """HASH Q -> ms its pause ends (-1: until resumed)."""
        return f"{self.base(queue_type)}:paused"

    def type_paused(self, queue_type: str) -> str:
        """STRING ms the whole type's pause ends (-1: until resumed)."""
        return f"{self.base(queue_type)}:type_paused"

    def scheduled(self, queue_type: str) -> str:
        """ZSET ``Q:J`` -> ms a delayed job is due."""
        return f"{self.base(queue_type)}:scheduled"

    def nsched(self, queue_type: str) -> str:
        """HASH Q -> how many delayed jobs it holds."""
        return f"{self.base(queue_type)}:nsched"

    def known(self, queue_type: str) -> str:
        """ZSET Q -> 0: the queues holding jobs or limits of their own, in id order."""
        return f"{self.base(queue_type)}:known"

    def type_keys(self, queue_type: str) -> list[str]:
        """The 19 keys every script of a type takes first, in _helpers.lua's order."""
        keys = self._type_keys.get(queue_type)
        if keys is None:
            names = (
                self.ready, self.active, self.queues, self.receipts, self.errors, self.dead, self.dead_index,
                self.done, self.limits, self.nactive, self.paused, self.type_paused, self.scheduled, self.nsched,
                self.known, self.totals, self.heads, self.settings, self.demand,
            )  # fmt: skip
            keys = self._type_keys[queue_type] = [name(queue_type) for name in names]
            if len(self._type_keys) > 10_000:  # clients choose type names: keep the cache bounded
                self._type_keys.clear()
        return list(keys)

    def live_keys(self, queue_type: str) -> list[str]:
        """The keys whose existence keeps a type in the registry: queued or active
        jobs, dead letters, queue limits or quotas, or a pause. The one list both
        the requeue script and the engine's forgetting of a drained type read (and
        layout.lua's seal: a queue's quotas and units used live on its shard)."""
        return [self.queues(queue_type), self.dead(queue_type), self.limits(queue_type),
                self.paused(queue_type), self.type_paused(queue_type), self.campaigns(queue_type),
                self.quotas(queue_type)]  # fmt: skip

    def totals(self, queue_type: str) -> str:
        """HASH counters since the type began (enqueued, dequeued, finished, failed,
        requeued, dead) and the jobs in its lists now (queued)."""
        return f"{self.base(queue_type)}:totals"

    def heads(self, queue_type: str) -> str:
        """ZSET Q -> ms its head (oldest) queued job was enqueued."""
        return f"{self.base(queue_type)}:heads"

    def settings(self, queue_type: str) -> str:
        """HASH the type's own settings: `shards` (how many shards the type is spread
        over; absent: 1), its type-wide `interval`, `burst`, `max_active`, and the
        state they keep: `last` (the type's rate state) and `active` (slots held);
        `duration` (ms, the measured job duration), the ``demand:*`` sums, and `prio`
        once a job above priority 0 was queued (the calls' settings reads tell a type
        without priorities so, at no cost), and `cost`: the largest cost of a job
        ever queued, the unit of a weighted turn (absent: 1)."""
        return f"{self.base(queue_type)}:settings"

    def change_lease(self, queue_type: str) -> str:
        """STRING token of the process changing the type's shard count (SET NX PX,
        renewed while it works): a change whose lease ran out was abandoned."""
        return f"{self.base(queue_type)}:change_lease"

    def demand(self, queue_type: str) -> str:
        """HASH Q -> what the backlogged queue adds to the type's demand sums (the
        settings hash's ``demand:*`` fields; see count_demand in _helpers.lua)."""
        return f"{self.base(queue_type)}:demand"

    def campaign(self, queue_type: str, campaign_id: str) -> str:
        """HASH a campaign's counts on this shard (total, queued, scheduled, active,
        finished, dead, cancelled), `started`, `ended` (while nothing of it is live
        here), `cancel` (ms it was cancelled); on the type's first shard also
        `on_done` (JSON) and `notified` (ms its on_done job was enqueued)."""
        return f"{self.base(queue_type)}:cg:{campaign_id}"

    def campaign_members(self, queue_type: str, campaign_id: str) -> str:
        """SET ``Q:J`` of the campaign's jobs on this shard, which a cancel walks."""
        return f"{self.base(queue_type)}:cgm:{campaign_id}"

    def campaigns(self, queue_type: str) -> str:
        """ZSET campaign id -> ms it started: the type's campaigns, newest last."""
        return f"{self.base(queue_type)}:campaigns"

    def campaigns_ended(self, queue_type: str) -> str:
        """ZSET campaign id -> ms nothing of it was live any more on this shard."""
        return f"{self.base(queue_type)}:cg_ended"

    def campaigns_notify(self, queue_type: str) -> str:
        """ZSET campaign id -> ms its on_done was set, until its job is enqueued
        (on the type's first shard)."""
        return f"{self.base(queue_type)}:cg_notify"

    def campaigns_sent(self, queue_type: str) -> str:
        """HASH "<type>/<campaign id>" -> ms the campaign's on_done job was enqueued
        into a queue of this shard, until the campaign is forgotten: the record that
        keeps it from being enqueued twice whatever became of the job."""
        return f"{self.base(queue_type)}:cg_sent"

    def campaign_totals(self, queue_type: str) -> str:
        """HASH state -> jobs of the type's campaigns in it (total too), on this shard."""
        return f"{self.base(queue_type)}:cg_totals"

    def cancelled(self, queue_type: str) -> str:
        """ZSET ``Q:J`` -> ms its campaign's cancel removed it (dedupe window)."""
        return f"{self.base(queue_type)}:cancelled"

    def ready_channel(self) -> str:
        """Pub/sub channel: the message is a queue type that may have a job ready."""
        return f"{self.prefix}:ready"

    def queue(self, queue_type: str, queue_id: str, priority: int = 0) -> str:
        """LIST the queue's queued job ids of `priority`, head first (see queue_list in _helpers.lua)."""
        if priority:
            return f"{self.base(queue_type)}:q{priority}:{queue_id}"
        return f"{self.base(queue_type)}:q:{queue_id}"

    def priorities(self, queue_type: str) -> str:
        """HASH Q -> the priorities above 0 it holds queued jobs of, highest first ("95")."""
        return f"{self.base(queue_type)}:prio"

    def jobs(self, queue_type: str, queue_id: str) -> str:
        return f"{self.base(queue_type)}:j:{queue_id}"

    def last(self, queue_type: str, queue_id: str) -> str:
        return f"{self.base(queue_type)}:last:{queue_id}"

    def stats(self, queue_type: str, minute_ms: int) -> str:
        return f"{self.base(queue_type)}:stats:{minute_ms}"

    def rates(self, queue_type: str, minute_ms: int) -> str:
        return f"{self.base(queue_type)}:rates:{minute_ms}"


def glob_escape(text: str) -> str:
    """`text` matched literally in a SCAN MATCH pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def member(queue_id: str, job_id: str) -> str:
    """How a job is named in the per-type active and dead-letter sets."""
    return f"{queue_id}:{job_id}"
