"""Campaigns: a fan-out of jobs followed as one thing (progress, cancel, one "done").

A job enqueued with ``campaign`` counts in campaign ``<type>/<id>`` from the
moment it is stored. Its counts live in one hash per shard of the type, moved by
the very scripts that move its jobs (enqueue, take, finish, fail, requeue,
dead-letter retry, clear, cancel: see campaign_move in _helpers.lua), so they
always sum to `total`; reading a campaign sums its shards' hashes, O(shards).
It is `done` once it has jobs (or was cancelled) and none is queued, scheduled or
active. Its `on_done` job is enqueued by the script that made it done when its
queue is of the same unsharded type (one slot: campaign_done_job in _helpers.lua);
else by the requeue pass, noted as enqueued only after: the shard it went to
remembers it sent (campaign_done_send), so a pass that died in between, or one
that overtook it (passes may overlap), does not enqueue it again, whether or not
the job was finished meanwhile. A done campaign is forgotten
campaign_retention_ms after it ended.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import ujson

from . import validation as check
from .base import REQUEUE_BATCH, EngineBase
from .exceptions import BadArgumentException, Conflict, NotFound
from .shards import Layout

STATES = ("queued", "scheduled", "active", "finished", "dead", "expired", "cancelled")
LIVE = ("queued", "scheduled", "active")
DONE_JOB = "campaign-done.{}"  # the on_done job's id: validation.identifier accepts it as a job_id
MAX_CAMPAIGN_PAGE = 1000
_ON_DONE_FIELDS = frozenset(("queue_type", "queue_id", "payload"))
_ID = re.compile(r"[A-Za-z0-9_-]{1,100}\Z")  # as validation.identifier, naming on_done's field


class CampaignCommands(EngineBase):
    """The engine's campaign, campaigns, cancel_campaign, set_on_done and the
    requeue pass's part (finish_campaigns)."""

    def campaign(self, queue_type: str, campaign_id: str) -> dict[str, Any]:
        """A campaign's counts, when it started and (once done) ended; NotFound
        when no shard knows it (never enqueued to, or forgotten)."""
        check.identifier("queue_type", queue_type)
        check.identifier("campaign", campaign_id)
        found = self._campaign(self._layout(queue_type), campaign_id)
        if found is None:
            raise NotFound("no such campaign (never enqueued to, or forgotten after campaign_retention_ms)")
        return {"status": "success", **found}

    def _campaign(self, layout: Layout, campaign_id: str) -> dict[str, Any] | None:
        with self.redis.pipeline(transaction=False) as pipe:
            for shard in layout.names():
                pipe.hgetall(self.keys.campaign(shard, campaign_id))
            parts = [part for part in pipe.execute() if part]
        if not parts:
            return None
        counts = {state: sum(int(part.get(state.encode(), 0)) for part in parts) for state in STATES}
        total = sum(int(part.get(b"total", 0)) for part in parts)
        live = sum(counts[state] for state in LIVE)
        cancelled_at = min((int(part[b"cancel"]) for part in parts if b"cancel" in part), default=None)
        done = live == 0 and (total > 0 or cancelled_at is not None)
        first = parts[0] if layout.count == 1 else (self._first_part(layout, campaign_id) or {})
        on_done = first.get(b"on_done")
        return {
            "queue_type": layout.queue_type,
            "campaign": campaign_id,
            "total": total,
            **counts,
            "done": done,
            "started_at": min(int(part[b"started"]) for part in parts if b"started" in part),
            "ended_at": max((int(part.get(b"ended", 0)) for part in parts), default=None) if done else None,
            "cancelled_at": cancelled_at,
            "on_done": ujson.loads(on_done) if on_done else None,
            "on_done_enqueued_at": int(first[b"notified"]) if b"notified" in first else None,
        }

    def _first_part(self, layout: Layout, campaign_id: str) -> dict[bytes, bytes]:
        return self.redis.hgetall(self.keys.campaign(layout.name(0), campaign_id))

    def campaigns(self, queue_type: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """A page of the type's campaigns, newest start first: each shard's first
        offset + limit ids, merged, then each one read (a cost that grows with the page)."""
        check.identifier("queue_type", queue_type)
        check.integer("limit", limit, 1, MAX_CAMPAIGN_PAGE)
        check.integer("offset", offset, 0, check.MAX_OFFSET)
        layout = self._layout(queue_type)
        with self.redis.pipeline(transaction=False) as pipe:
            for shard in layout.names():
                pipe.zrevrange(self.keys.campaigns(shard), 0, offset + limit - 1, withscores=True)
                pipe.zcard(self.keys.campaigns(shard))
            replies = pipe.execute()
        started: dict[str, float] = {}
        for page in replies[::2]:
            for name, score in page:
                started[name.decode()] = min(score, started.get(name.decode(), score))
        newest = sorted(started, key=lambda name: (-started[name], name))[offset : offset + limit]
        pages = [self._campaign(layout, name) for name in newest]
        return {
            "status": "success",
            "total": max(replies[1::2], default=0),
            "campaigns": [page for page in pages if page is not None],
        }

    def campaign_figures(self, queue_type: str) -> dict[str, Any]:
        """For the metrics, O(shards): `running`, the campaigns with a job queued,
        scheduled or active (or none yet), and `jobs`, their jobs by state (total too)
        over every campaign still kept. On a type spread over shards, `running` is
        the most of any one shard (a campaign live on several counts once there)."""
        layout = self._layout(queue_type)
        with self.redis.pipeline(transaction=False) as pipe:
            for shard in layout.names():
                pipe.zcard(self.keys.campaigns(shard))
                pipe.zcard(self.keys.campaigns_ended(shard))
                pipe.hgetall(self.keys.campaign_totals(shard))
            replies = pipe.execute()
        running = max(opened - ended for opened, ended in zip(replies[::3], replies[1::3], strict=True))
        jobs = {state: 0 for state in ("total", *STATES)}
        for part in replies[2::3]:
            for state, n in part.items():
                if state.decode() in jobs:
                    jobs[state.decode()] += int(n)
        return {"running": running, "jobs": jobs}

    def cancel_campaign(self, queue_type: str, campaign_id: str) -> dict[str, Any]:
        """Cancel: enqueues naming it are refused from now on, and its queued and
        scheduled jobs are removed (counted cancelled), REQUEUE_BATCH members per
        script call; active ones end as they would. Answers the counts."""
        check.identifier("queue_type", queue_type)
        check.identifier("campaign", campaign_id)
        layout = self._layout(queue_type)
        if self._campaign(layout, campaign_id) is None:
            raise NotFound("no such campaign (never enqueued to, or forgotten after campaign_retention_ms)")
        for shard in layout.names():
            keys = [
                *self.keys.type_keys(shard), self.keys.campaign(shard, campaign_id),
                self.keys.campaign_members(shard, campaign_id), self.keys.campaigns(shard), self.keys.cancelled(shard),
            ]  # fmt: skip
            cursor: Any = "start"
            while cursor not in (b"0", "0"):
                args = [self._now(), self.keys.base(shard), campaign_id, REQUEUE_BATCH, cursor]
                _, cursor = self._script("campaign_cancel", keys, args)
        self.redis.sadd(self.keys.queue_types(), *layout.names())  # its on_done may be due with no job left
        return self.campaign(queue_type, campaign_id)

    def set_on_done(self, queue_type: str, campaign_id: str, on_done: Any) -> dict[str, Any]:
        """What to enqueue once the campaign is done: one job `campaign-done.<id>`
        into on_done's queue_type/queue_id, its payload holding on_done's payload
        and the final counts. Conflict once that job was enqueued."""
        check.identifier("queue_type", queue_type)
        check.identifier("campaign", campaign_id)
        if not isinstance(on_done, Mapping):
            raise BadArgumentException("on_done must be an object with queue_type, queue_id and payload")
        check.known_fields(on_done, _ON_DONE_FIELDS, "on_done: ")
        if "payload" not in on_done:
            raise BadArgumentException("on_done.payload is required (null is a payload)")
        payload = check.payload_text(on_done.get("payload"))
        target = {
            "queue_type": _on_done_identifier("queue_type", on_done.get("queue_type")),
            "queue_id": _on_done_identifier("queue_id", on_done.get("queue_id")),
            "payload": ujson.loads(payload),
        }
        shard = self._layout(queue_type).name(0)
        keys = [self.keys.campaign(shard, campaign_id), self.keys.campaigns(shard), self.keys.campaigns_notify(shard)]
        args = [self._now(), campaign_id, ujson.dumps(target), payload, self.config.default_job_requeue_limit]
        if not self._script("campaign_on_done", keys, args):
            raise Conflict("the campaign's on_done job was enqueued already: it happens once")
        self.redis.sadd(self.keys.queue_types(), shard)  # the requeue pass visits it, jobs or none
        return self.campaign(queue_type, campaign_id)

    def finish_campaigns(self, shard: str) -> int:
        """The requeue pass's part, on one shard: enqueue the on_done job of each
        campaign that is done (on the type's first shard), and forget campaigns
        over for campaign_retention_ms. Returns how many on_done jobs it enqueued."""
        queue_type = shard.split("#", 1)[0]
        layout = self._layout(queue_type)
        enqueued = 0
        if shard == layout.name(0):
            for name in self.redis.zrange(self.keys.campaigns_notify(shard), 0, REQUEUE_BATCH - 1):
                enqueued += self._notify(layout, name.decode())
        now = int(self._now() or self._redis_time())
        cutoff = now - self.config.campaign_retention_ms - 1  # kept for the whole retention
        for name in self.redis.zrangebyscore(self.keys.campaigns_ended(shard), "-inf", cutoff, 0, REQUEUE_BATCH):
            self._forget(layout, name.decode(), cutoff)
        return enqueued

    def _notify(self, layout: Layout, campaign_id: str) -> int:
        """Enqueue a done campaign's on_done job, then note it enqueued."""
        found = self._campaign(layout, campaign_id)
        first = layout.name(0)
        if found is None or not found["done"] or found["on_done_enqueued_at"] is not None or not found["on_done"]:
            return 0
        target = found["on_done"]
        counts = {name: found[name] for name in ("total", *STATES)}
        body = {"campaign": campaign_id, "queue_type": layout.queue_type, "payload": target["payload"], **counts}
        job = [target["queue_id"], DONE_JOB.format(campaign_id), check.payload_text(body)]
        code = self._send_done_job(target["queue_type"], f"{layout.queue_type}/{campaign_id}", job)
        if code < 0:
            return 0  # the on_done type is being resharded: the next pass tries again
        keys = [self.keys.campaign(first, campaign_id), self.keys.campaigns_notify(first)]
        self._script("campaign_notified", keys, [self._now(), campaign_id])
        return code

    def _send_done_job(self, queue_type: str, sender: str, job: list[str]) -> int:
        """campaign_done_send on the shard of `queue_type` that job's queue maps to:
        1 enqueued, 0 enqueued before, -1 the shard count changed twice meanwhile."""
        for fresh in (False, True):
            layout = self._layout(queue_type, fresh=fresh)
            shard = layout.of(job[0])
            keys = [*self.keys.type_keys(shard), self.keys.campaigns_sent(shard)]
            args = [self._now(), self.keys.base(shard), layout.count, sender, *job]
            code = int(self._script("campaign_done_send", keys, [*args, self.config.default_job_requeue_limit]))
            if code >= 0:
                self.redis.sadd(self.keys.queue_types(), shard)  # its requeue pass and views see the job
                return code
        return -1

    def _forget(self, layout: Layout, campaign_id: str, cutoff: int) -> None:
        """Forget a campaign on every shard once all of it ended by `cutoff` and its
        on_done job (if any) was enqueued."""
        found = self._campaign(layout, campaign_id)
        if found and (not found["done"] or (found["on_done"] and found["on_done_enqueued_at"] is None)):
            return
        if found and (found["ended_at"] or 0) > cutoff:
            return
        if found and found["on_done"]:
            target = self._layout(found["on_done"]["queue_type"])
            for shard in target.names():
                self.redis.hdel(self.keys.campaigns_sent(shard), f"{layout.queue_type}/{campaign_id}")
        for shard in layout.names():
            keys = [
                self.keys.campaign(shard, campaign_id), self.keys.campaign_members(shard, campaign_id),
                self.keys.campaigns(shard), self.keys.campaigns_ended(shard), self.keys.campaigns_notify(shard),
                self.keys.campaign_totals(shard),
            ]  # fmt: skip
            self._script("campaign_forget", keys, [campaign_id, cutoff])


def _on_done_identifier(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise BadArgumentException(f"on_done.{name} must be 1-100 characters of A-Z a-z 0-9 _ -")
    return value
