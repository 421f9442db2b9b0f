"""Read-only views: metrics, type figures, queues, job status and dead letters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ujson

from . import validation as check
from .base import COUNTERS, MAX_PAGE, METRIC_MINUTES, RATE_MINUTES, EngineBase, optional_int
from .exceptions import BadArgumentException
from .jobs import option_of
from .keys import member
from .quotas import quota_fields, quota_view
from .shards import type_of


class ViewCommands(EngineBase):
    """The engine's metrics, type_stats, queue_info, queues, job_status, dead_letters."""

    def queue_types(self) -> list[str]:
        """The types holding jobs (the registry lists each shard of a sharded type)."""
        return sorted({type_of(name.decode()) for name in self.redis.smembers(self.keys.queue_types())})

    def listed_types(self) -> list[str]:
        """The types the views list: those holding jobs, and those drained within
        idle_type_retention_ms, so a type's figures do not vanish as it empties."""
        now = int(self._now() or self._redis_time())
        since = now - self.config.idle_type_retention_ms
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(self.keys.queue_types())
            pipe.zrangebyscore(self.keys.drained_types(), f"({since}", "+inf")
            live, drained = pipe.execute()
        return sorted({type_of(name.decode()) for name in (*live, *drained)})

    def _shards_of(self, queue_types: Iterable[str]) -> list[str]:
        return [shard for queue_type in queue_types for shard in self._layout(queue_type).names()]

    def metrics(
        self,
        queue_type: str | None = None,
        queue_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> dict[str, Any]:
        """Global, per-type or per-queue metrics, as in the seed README; the global
        view's `queue_types` are the `listed_types`.

        The per-type view lists the queues holding jobs in id order, `limit` of
        them from `offset` (all by default, as the seed did), with their `total`.
        """
        if queue_id is not None and queue_type is None:
            raise BadArgumentException("queue_id needs a queue_type")
        if queue_type is None:
            types = self.listed_types()
            return {"status": "success", "queue_types": types, **self._counts(self._shards_of(types), "")}
        check.identifier("queue_type", queue_type)
        if queue_id is None:
            check.optional_integer("limit", limit, 1, MAX_PAGE)
            check.integer("offset", offset, 0, check.MAX_OFFSET)
            with self.redis.pipeline(transaction=False) as pipe:
                for shard in self._layout(queue_type).names():
                    pipe.hkeys(self.keys.queues(shard))
                names = sorted(name.decode() for shard_names in pipe.execute() for name in shard_names)
            page = names[offset:] if limit is None else names[offset : offset + limit]
            return {"status": "success", "queue_ids": page, "total": len(names)}
        return {
            "status": "success",
            "queue_length": self.get_queue_length(queue_type, queue_id),
            **self._counts([self._shard(queue_type, queue_id)], f":{queue_id}"),
        }

    def minute_counts(self, queue_type: str) -> dict[str, dict[str, int]]:
        """One type's enqueue and dequeue counts of the last ten minutes."""
        return self._counts(self._shards_of([check.identifier("queue_type", queue_type)]), "")

    def _last_minutes(self, count: int) -> list[int]:
        """The epoch ms the last `count` minutes start at, the current one last."""
        now = int(self._now() or self._redis_time())
        current = now - now % 60_000
        return [current - 60_000 * back for back in range(count - 1, -1, -1)]

    def _counts(self, queue_types: Iterable[str], suffix: str) -> dict[str, dict[str, int]]:
        """Ten per-minute enqueue and dequeue buckets summed over `queue_types`."""
        minutes = self._last_minutes(METRIC_MINUTES)
        fields = ["e" + suffix, "d" + suffix]
        with self.redis.pipeline(transaction=False) as pipe:
            for queue_type in queue_types:
                for minute in minutes:
                    pipe.hmget(self.keys.stats(queue_type, minute), fields)
            replies = pipe.execute()
        enqueued = dict.fromkeys(map(str, minutes), 0)
        dequeued = dict.fromkeys(map(str, minutes), 0)
        for index, (e, d) in enumerate(replies):
            minute = str(minutes[index % METRIC_MINUTES])
            enqueued[minute] += int(e or 0)
            dequeued[minute] += int(d or 0)
        return {"enqueue_counts": enqueued, "dequeue_counts": dequeued}

    def rates(self, queue_type: str) -> dict[str, list[int | None]]:
        """One type's jobs enqueued, handed out, finished and failed in each of the
        last 60 minutes (the current one last, still counting), from `minutes`
        (the epoch ms each starts), and its `queued` jobs at each minute's last
        enqueue or dequeue (carried over minutes without one; None before any)."""
        minutes = self._last_minutes(RATE_MINUTES)
        with self.redis.pipeline(transaction=False) as pipe:
            for shard in self._shards_of([check.identifier("queue_type", queue_type)]):
                for minute in minutes:
                    pipe.hmget(self.keys.rates(shard, minute), [*RATE_FIELDS, "q"])
            replies = pipe.execute()
        series = {name: [0] * RATE_MINUTES for name in RATE_FIELDS.values()}
        queued: list[int | None] = [None] * RATE_MINUTES
        for start in range(0, len(replies), RATE_MINUTES):  # one shard's hour
            last = None
            for minute, (*counts, backlog) in enumerate(replies[start : start + RATE_MINUTES]):
                for name, count in zip(RATE_FIELDS.values(), counts, strict=True):
                    series[name][minute] += int(count or 0)
                last = last if backlog is None else int(backlog)
                queued[minute] = queued[minute] if last is None else (queued[minute] or 0) + last
        return {"minutes": minutes, **series, "queued": queued}

    def type_stats(self, queue_type: str) -> dict[str, Any]:
        """One type's monitoring figures in one round trip: counters since it began
        (enqueued, dequeued, finished, failed, requeued, dead), jobs by state
        (queued, active, scheduled, dead) and queues by state (ready, waiting,
        paused, capped, quota_held: held by a quota of their own, also waiting)."""
        check.identifier("queue_type", queue_type)
        shards = self._shards_of([queue_type])
        stats = [(self.keys.type_keys(shard), [self._now(), self.keys.base(shard)]) for shard in shards]
        replies = self._scripts("stats", stats)
        totals: dict[bytes, int] = {}
        figures = [0] * 8  # active, scheduled, dead, ready, waiting, paused, capped, type_paused
        for reply in replies:
            for name, value in zip(reply[1][::2], reply[1][1::2], strict=True):
                totals[name] = totals.get(name, 0) + int(value)
            figures = [mine + int(value) for mine, value in zip(figures, reply[2:10], strict=True)]
        active, scheduled, dead, ready, waiting, paused, capped, type_paused = figures
        oldest = min((int(reply[10]) for reply in replies if reply[10] is not None), default=None)
        taken = [dict(zip(reply[1][::2], reply[1][1::2], strict=True)).get(b"taken_at") for reply in replies]
        taken_at = max((int(at) for at in taken if at is not None), default=None)
        interval, burst, cap, _ = replies[0][11]
        return {
            "counters": {name: totals.get(name.encode(), 0) for name in COUNTERS},
            "jobs": {"queued": totals.get(b"queued", 0), "active": active, "scheduled": scheduled, "dead": dead},
            "queues": {"ready": ready, "waiting": waiting, "paused": paused, "capped": capped,
                       "quota_held": sum(int(reply[12]) for reply in replies)},
            "type_paused": bool(type_paused),
            "oldest_queued_age_ms": None if oldest is None else max(int(replies[0][0]) - oldest, 0),
            "last_taken_at": taken_at,
            "type_limits": {
                "interval": optional_int(interval), "burst": optional_int(burst), "max_active": optional_int(cap),
                "active": sum(int(reply[11][3]) for reply in replies if reply[11][3] is not None) if cap else None,
            },
            "shards": len(replies),
        }  # fmt: skip

    def queue_info(self, queue_type: str, queue_id: str) -> dict[str, Any]:
        """One queue now: queue_length, active, scheduled, its effective limits,
        paused_until, next_ready_at and the age of its oldest queued job."""
        self._check_queue(queue_type, queue_id)
        _, type_paused, queues = self._on_queue(
            queue_type, queue_id, lambda shard: self._view(shard, ["ids", queue_id]), lambda view: _absent(view[2][0])
        )
        view = queues[0]
        shard = self._shard(queue_type, queue_id)
        quotas = self._quotas(shard, queue_id, self.redis.hget(self.keys.quotas(shard), queue_id))
        if quotas is not None:
            view["limits"]["quotas"] = quotas
        return {"status": "success", **view, **_type_pause(type_paused)}

    def _quotas(self, shard: str, owner: str, spec: bytes | None) -> list[dict[str, Any]] | None:
        """Each quota window of `owner` (a queue_id, or "*" for the type) on one shard, now."""
        if not spec:
            return None
        now = self._now()
        windows = quota_fields(owner, spec, self._redis_time() if now == "" else int(now))
        return quota_view(windows, self.redis.hmget(self.keys.quota_use(shard), [field for field, *_ in windows]))

    def queues(self, queue_type: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """A page of the type's queues (holding jobs or limits of their own) in
        queue_id order, each as `queue_info` describes it; the cost grows with the
        page, not with the number of queues."""
        check.identifier("queue_type", queue_type)
        check.integer("limit", limit, 1, 1000)
        check.integer("offset", offset, 0, check.MAX_OFFSET)
        layout = self._layout(queue_type)
        if layout.count == 1:
            total, type_paused, queues = self._view(queue_type, ["page", offset, limit])
            return {"status": "success", "total": total, **_type_pause(type_paused), "queues": queues}
        # the page of the shards' ids merged in id order, then each shard's queues of it
        with self.redis.pipeline(transaction=False) as pipe:
            for shard in layout.names():
                pipe.zrange(self.keys.known(shard), 0, offset + limit - 1)
                pipe.zcard(self.keys.known(shard))
            replies = pipe.execute()
        ids = sorted(name.decode() for names in replies[::2] for name in names)[offset : offset + limit]
        views: dict[str, dict[str, Any]] = {}
        for shard, positions in layout.group(dict(enumerate(ids))).items():
            _, _, queues = self._view(shard, ["ids", *(ids[position] for position in positions)])
            views.update((queue["queue_id"], queue) for queue in queues)
        type_paused = self.redis.get(self.keys.type_paused(layout.name(0)))  # every shard holds it; a page may be empty
        answer = {"status": "success", "total": sum(replies[1::2]), **_type_pause(type_paused)}
        return {**answer, "queues": [views[queue_id] for queue_id in ids]}

    def _view(self, queue_type: str, args: list[Any]) -> tuple[int, int | None, list[dict[str, Any]]]:
        """view.lua's answer: known queues, the type's pause, and the queues asked."""
        reply = self._script("view", self.keys.type_keys(queue_type), [self.keys.base(queue_type), self._now(), *args])
        now = int(reply[0])
        return int(reply[1]), reply[2], [_queue_view(now, reply[i : i + 18]) for i in range(3, len(reply), 18)]

    def job_status(self, queue_type: str, queue_id: str, job_id: str) -> dict[str, Any]:
        """Where a job is: queued, scheduled (with `due_at`), active (with
        `expires_at`), retrying (with `due_at`), dead, expired (a dead letter that
        was never handed out by its deadline, with `expired_at`), finished (within
        the dedupe window), or unknown; with the last error a worker reported, if any."""
        self._check_job(queue_type, queue_id, job_id)

        def status(shard: str) -> list[Any]:
            keys = [*self.keys.type_keys(shard), self.keys.jobs(shard, queue_id), self.keys.cancelled(shard)]
            return self._script("status", keys, [member(queue_id, job_id), job_id])

        state, detail, last_error, record = self._on_queue(
            queue_type, queue_id, status, lambda reply: reply[0] == b"unknown"
        )
        state = state.decode()
        result: dict[str, Any] = {"status": "success", "state": state}
        # cost and priority shown as the dequeued job shows them: only when not the default
        options = record.split(b":", 3)[1] if record else b""
        cost, priority = option_of(options, b"c", 1), option_of(options, b"p", 0)
        if cost != 1:
            result["cost"] = cost
        if priority:
            result["priority"] = priority
        if last_error:
            result["last_error"] = last_error.decode()
        if state == "active":
            result["expires_at"] = int(float(detail))
        elif state in ("retrying", "scheduled"):
            result["due_at"] = int(float(detail))
        elif state == "queued":
            remaining, limit_field, enqueued, _ = detail.split(b":", 3)
            limit, *options = limit_field.split(b"|")
            result.update(requeues_remaining=int(remaining), requeue_limit=int(limit), enqueued_at=int(enqueued))
            result.update(_options(options))
        elif state == "dead":
            result.update(_dead_record(detail))
            if result["reason"] == "expired":
                result.update(state="expired", expired_at=result["expire_at"])
        elif state == "finished":
            result["finished_at"] = int(float(detail))
        elif state == "cancelled":
            result["cancelled_at"] = int(float(detail))
        return result

    def get_queue_length(self, queue_type: str, queue_id: str) -> int:
        """How many jobs wait in the queue (active ones not counted), all priorities."""
        self._check_queue(queue_type, queue_id)
        length = self._on_queue(
            queue_type, queue_id, lambda shard: self._queue_length(shard, queue_id), lambda n: n == 0
        )
        return int(length)

    def _queue_length(self, shard: str, queue_id: str) -> int:
        """The jobs queued in one queue of a shard: its list of priority 0, and its
        lists of the priorities above 0 it holds (see queue_list in _helpers.lua)."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(self.keys.queue(shard, queue_id))
            pipe.hget(self.keys.priorities(shard), queue_id)
            length, present = pipe.execute()
        return length + sum(
            self.redis.llen(self.keys.queue(shard, queue_id, int(p))) for p in (present or b"").decode()
        )

    def dead_letters(self, queue_type: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """The type's dead-lettered jobs, oldest death first, with payloads and reasons."""
        check.identifier("queue_type", queue_type)
        check.integer("limit", limit, 1, 1000)
        check.integer("offset", offset, 0, check.MAX_OFFSET)
        shards = self._layout(queue_type).names()
        with self.redis.pipeline(transaction=False) as pipe:
            for shard in shards:  # each shard's first offset + limit, merged by death time
                pipe.zrange(self.keys.dead_index(shard), 0 if len(shards) > 1 else offset, offset + limit - 1,
                            withscores=True)  # fmt: skip
                pipe.zcard(self.keys.dead_index(shard))
            replies = pipe.execute()
        pages = zip(shards, replies[::2], strict=True)
        deaths = sorted((died_at, name, shard) for shard, page in pages for name, died_at in page)
        page = deaths[offset : offset + limit] if len(shards) > 1 else deaths
        with self.redis.pipeline(transaction=False) as pipe:
            for _, name, shard in page:
                pipe.hget(self.keys.dead(shard), name)
            records = pipe.execute()
        jobs = []
        for (died_at, name, _), raw in zip(page, records, strict=True):
            if raw is not None:
                queue_id, job_id = name.decode().split(":", 1)
                jobs.append({"queue_id": queue_id, "job_id": job_id, "died_at": int(died_at), **_dead_record(raw)})
        return {"status": "success", "total": sum(replies[1::2]), "jobs": jobs}

    def deep_status(self) -> dict[str, Any]:
        """Prove Redis answers and accepts writes (a full disk refuses them)."""
        self.redis.set(f"{self.keys.prefix}:deep_status", "ok", px=10_000)
        return {"status": "success"}


# the rate buckets' fields and the names rates() gives their series
RATE_FIELDS = {"e": "enqueued", "d": "dequeued", "f": "finished", "x": "failed"}


def _type_pause(until: Any) -> dict[str, Any]:
    return {} if until is None else {"type_paused_until": None if int(until) < 0 else int(until)}


def _absent(view: dict[str, Any]) -> bool:
    """Whether a queue's view finds nothing of it on the shard asked."""
    sources = {limit["source"] for limit in view["limits"].values()}
    return not (view["queue_length"] or view["active"] or view["scheduled"] or view["paused"]) and (
        "override" not in sources
    )


def _queue_view(now: int, values: list[Any]) -> dict[str, Any]:
    """view.lua's 18 values of one queue as the answer's object; `priorities`
    (queued jobs per priority) only once a job of priority above 0 is queued."""
    queue_id, length, active, scheduled, interval, interval_source, burst, burst_source = values[:8]
    max_active, max_active_source, weight, weight_source, paused, next_ready, oldest, _, held, by_priority = values[8:]
    priorities = {"priorities": {str(p): n for p, n in zip(by_priority[::2], by_priority[1::2], strict=True)}}
    return {
        "queue_id": queue_id.decode(),
        "queue_length": length,
        "active": active,
        "scheduled": scheduled,
        "limits": {
            "interval": {"value": interval, "source": interval_source.decode()},
            "burst": {"value": burst, "source": burst_source.decode()},
            "max_active": {"value": max_active, "source": max_active_source.decode()},
            "weight": {"value": weight, "source": weight_source.decode()},
        },
        "paused_until": None if paused is None else (None if paused < 0 else paused),
        "paused": paused is not None,
        "next_ready_at": next_ready,
        "oldest_queued_age_ms": None if oldest is None else max(now - oldest, 0),
        "quota_held_until": held,
        **(priorities if by_priority else {}),
    }


def _dead_record(raw: bytes) -> dict[str, Any]:
    record = ujson.loads(raw)
    dead = {
        "payload": ujson.loads(record["payload"]),
        "requeue_limit": record["requeue_limit"],
        "reason": record["reason"],
        "last_error": record.get("last_error"),
        **({"campaign": record["campaign"]} if "campaign" in record else {}),
        **_priority(record.get("options")),
    }
    if record.get("expire_at") is not None:
        dead["expire_at"] = int(record["expire_at"])
    return dead


def _priority(options: str | None) -> dict[str, int]:
    """A dead letter's priority, from the options its record kept, when above 0."""
    priority = option_of(options.encode(), b"p", 0) if options else 0
    return {"priority": priority} if priority else {}


def _options(options: list[bytes]) -> dict[str, Any]:
    """The queued job's deadline and campaign from its record's options (see
    job_option); job_status shows cost and priority in every state."""
    shown: dict[str, Any] = {}
    for option in options:
        name, _, value = option.partition(b"=")
        if name == b"x":
            shown["expire_at"] = int(value)
        elif name == b"g":
            shown["campaign"] = value.decode()
    return shown
