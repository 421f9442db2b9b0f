"""Prometheus exposition of the queue figures, read from Redis at scrape time.

`GET /metrics/` answers this when the scrape asks for it (Accept prefers
``text/plain`` or ``application/openmetrics-text``, or ``?format=prometheus``);
everything else keeps the seed's JSON. Produced with prometheus_client through a
custom collector: two Redis round trips per listed queue type (``stats.lua`` and
``autoscale.lua``), never one per queue. Labelled by ``queue_type`` only: per-tenant detail lives in the
JSON views (``/queue/``, ``/queues/``), as cardinality advice asks. A type that
drained stays listed, its figures zero and its counters kept, for
``idle_type_retention_ms`` (an hour by default), so a rate() over it holds.

While Redis cannot answer, the scrape still answers 200 within one
``socket_timeout``: ``sharq_redis_up 0`` and the process figures, no queue figures.

The figures come from Redis, so every instance reports the same cluster-wide
values: when several instances are scraped, aggregate with ``max by
(queue_type, state)`` (or scrape one instance), not ``sum``.

The process figures (HTTP requests and their durations per route and status,
requeue passes) are counted in each gunicorn worker; `sharq-server` and
``wsgi.py`` set ``PROMETHEUS_MULTIPROC_DIR`` (`process_metrics.py`) so a scrape
of any worker sums them over all of an instance's workers (prometheus_client's
multiprocess mode). Sum those across instances.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import redis
from flask import Flask, Request, Response, request
from prometheus_client import Counter, Histogram, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from sharq_core import SharQ
from sharq_core.engine import COUNTERS
from sharq_core.replication import REDELIVERABLE

from .errors import unavailable_reason
from .logs import LOG_AS

log = logging.getLogger(__name__)

_COUNTER_HELP = {
    "enqueued": "Jobs enqueued (delayed ones included)",
    "dequeued": "Deliveries handed to workers",
    "finished": "Jobs finished (acknowledged)",
    "failed": "Failures workers reported",
    "requeued": "Jobs put back after their delivery expired",
    "dead": "Jobs moved to the dead letters",
    "expired": "Jobs never handed out by their deadline (expire_at, ttl_ms): dead letters with reason expired",
}
ACCEPTED = ("application/openmetrics-text", "text/plain")

# process figures: with PROMETHEUS_MULTIPROC_DIR set (sharq-server does) they are
# files shared by the instance's workers
HTTP_REQUESTS = Counter("sharq_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=None)
HTTP_DURATION = Histogram(
    "sharq_http_request_duration_seconds",
    "Time to answer an HTTP request (a long poll's wait included)",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None,
)
REQUEUE_PASSES = Counter("sharq_requeue_passes", "Requeue passes this instance ran", registry=None)
REQUEUE_FAILURES = Counter("sharq_requeue_failures", "Requeue passes that failed (Redis trouble)", registry=None)
REPLICA_SHORTFALL = Counter(
    "sharq_replica_shortfall",
    "Takes and acknowledgements answered though fewer replicas than wait_replicas confirmed them"
    " (a failover may deliver their jobs again)",
    ["call"],
    registry=None,
)
PROCESS_METRICS = (HTTP_REQUESTS, HTTP_DURATION, REQUEUE_PASSES, REQUEUE_FAILURES, REPLICA_SHORTFALL)


class QueueCollector(Collector):
    """Every listed queue type's figures, read when Prometheus scrapes, and
    `sharq_redis_up`: while Redis cannot answer, the scrape still succeeds with
    `sharq_redis_up 0` and the process figures (the 503s counted among them), so
    the series do not vanish with the store and an alert can fire on it."""

    def __init__(self, engine: SharQ) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("sharq_redis_up", "1 when this scrape could read the queue figures from Redis, else 0")
        try:
            figures = self._queue_figures()  # all or none: a scrape never shows half the types
        except redis.RedisError as error:
            reason = unavailable_reason(error)
            if reason is None:
                raise
            log.warning("Redis unavailable (%s) for a scrape: sharq_redis_up 0, process figures only", reason)
            figures = None
        up.add_metric([], 0 if figures is None else 1)
        yield up
        yield from figures or ()

    def _queue_figures(self) -> list[Metric]:
        """Every queue figure family; the first Redis error (one socket_timeout at
        most, as no call is retried) ends the read."""
        jobs = GaugeMetricFamily("sharq_jobs", "Jobs by state", labels=["queue_type", "state"])
        queues = GaugeMetricFamily(
            "sharq_queues",
            "Queues by state: ready (due now), waiting (for their rate), paused, capped (at max_active)",
            labels=["queue_type", "state"],
        )
        paused = GaugeMetricFamily("sharq_queue_type_paused", "1 while the whole type is paused", labels=["queue_type"])
        oldest = GaugeMetricFamily(
            "sharq_oldest_queued_job_age_seconds",
            "Age of the type's oldest queued job (0 when none is queued)",
            labels=["queue_type"],
        )
        counters = {
            name: CounterMetricFamily(f"sharq_jobs_{name}", _COUNTER_HELP[name], labels=["queue_type"])
            for name in COUNTERS
        }
        type_limit = GaugeMetricFamily(
            "sharq_type_limit",
            "The type-wide limits set (PUT /limits/<type>/): interval_ms, burst, max_active",
            labels=["queue_type", "limit"],
        )
        type_active = GaugeMetricFamily(
            "sharq_type_active_slots", "Slots the type-wide max_active counts as held", labels=["queue_type"]
        )
        shards = GaugeMetricFamily("sharq_type_shards", "Hash tags the type is spread over", labels=["queue_type"])
        wanted = GaugeMetricFamily(
            "sharq_type_wanted_concurrency",
            "Jobs of the type that could usefully run at once now (GET /autoscale/<type>/): scale workers on it",
            labels=["queue_type"],
        )
        duration = GaugeMetricFamily(
            "sharq_type_job_duration_seconds",
            "The type's job duration, hand-out to finish (a moving average; the configured default until measured)",
            labels=["queue_type"],
        )
        campaigns = GaugeMetricFamily(
            "sharq_campaigns_running", "Campaigns with a job queued, scheduled or active", labels=["queue_type"]
        )
        campaign_jobs = GaugeMetricFamily(
            "sharq_campaign_jobs",
            "Jobs of the type's kept campaigns by state (total too)",
            labels=["queue_type", "state"],
        )
        quota_remaining = GaugeMetricFamily(
            "sharq_type_quota_remaining",
            "Units left in the current window of each type-wide quota (on a sharded type, the first shard's share)",
            labels=["queue_type", "window_ms"],
        )
        for queue_type in self.engine.listed_types():
            stats = self.engine.type_stats(queue_type)
            for state, value in stats["jobs"].items():
                jobs.add_metric([queue_type, state], value)
            for state, value in stats["queues"].items():
                queues.add_metric([queue_type, state], value)
            paused.add_metric([queue_type], int(stats["type_paused"]))
            oldest.add_metric([queue_type], (stats["oldest_queued_age_ms"] or 0) / 1000)
            for name, value in stats["counters"].items():
                counters[name].add_metric([queue_type], value)
            limits = stats["type_limits"]
            for name, label in (("interval", "interval_ms"), ("burst", "burst"), ("max_active", "max_active")):
                if limits[name] is not None:
                    type_limit.add_metric([queue_type, label], limits[name])
            if limits["active"] is not None:
                type_active.add_metric([queue_type], limits["active"])
            shards.add_metric([queue_type], stats["shards"])
            autoscale = self.engine.autoscale(queue_type)
            wanted.add_metric([queue_type], autoscale["wanted_concurrency"])
            duration.add_metric([queue_type], autoscale["job_duration_seconds"])
            figures = self.engine.campaign_figures(queue_type)
            campaigns.add_metric([queue_type], figures["running"])
            for state, value in figures["jobs"].items():
                campaign_jobs.add_metric([queue_type, state], value)
            for quota in self.engine.type_limits(queue_type)["limits"].get("quotas") or ():
                quota_remaining.add_metric([queue_type, str(quota["window_ms"])], quota["remaining"])
        return [
            jobs, queues, paused, oldest, *counters.values(), type_limit, type_active, shards, wanted, duration,
            campaigns, campaign_jobs, quota_remaining,
        ]  # fmt: skip


def registry_for(engine: SharQ) -> CollectorRegistry:
    """The queue figures, plus the process figures of every worker of this instance
    (or of this process alone when no multiprocess directory is set)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(engine))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        for metric in PROCESS_METRICS:
            registry.register(metric)
    return registry


def count_shortfalls(engine: SharQ) -> None:
    """Count, per call, the takes and acknowledgements `engine` answers short of
    replicas; with `wait_replicas` set, each call's series is there from the start
    (at 0), so a rate() over it works before the first shortfall."""
    if engine.config.redis.wait_replicas:
        for call in sorted(REDELIVERABLE):
            REPLICA_SHORTFALL.labels(call)
    engine.shortfalls.listener = lambda call: REPLICA_SHORTFALL.labels(call).inc()


def count_requests(app: Flask) -> None:
    """Count every answer and its duration, per method, route (the URL rule, so
    queue ids do not make labels) and status; labels take bounded values only.

    The labelled children are looked up once per label set and kept, and the
    request is read through one proxy lookup: this runs on every request."""
    children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    @app.before_request
    def started() -> None:
        request.environ[_STARTED] = time.perf_counter()

    @app.after_request
    def answered(response: Response) -> Response:
        current = request._get_current_object()  # type: ignore[attr-defined]
        environ = current.environ
        labels = (*request_labels(current), str(response.status_code))
        child = children.get(labels)
        if child is None:
            child = children[labels] = (HTTP_REQUESTS.labels(*labels), HTTP_DURATION.labels(*labels))
        now = time.perf_counter()
        child[0].inc()
        child[1].observe(now - environ.get(_STARTED, now))
        if response.status_code in (401, 403):  # the access log tells a refusal by these alone
            environ[LOG_AS] = labels[:2]
        return response


_STARTED = "sharq.started"  # WSGI environ key: perf_counter() when the request began

# Methods counted by name; any other (a client can send made-up ones) is "other",
# as a path no route matched is "unmatched": the series never grow with requests.
KNOWN_METHODS = frozenset(("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"))


def request_labels(current: Request) -> tuple[str, str]:
    """The request's method and route template, each one of a fixed set of values."""
    method = current.method if current.method in KNOWN_METHODS else "other"
    rule = current.url_rule
    return method, rule.rule if rule is not None else "unmatched"


def exposition(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The scrape's body and Content-Type, in the format its Accept header prefers."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
