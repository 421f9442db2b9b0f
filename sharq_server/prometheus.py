"""Prometheus exposition of the queue figures, read from Redis at scrape time.

`GET /metrics/` answers this when the scrape asks for it (Accept prefers
``text/plain`` or ``application/openmetrics-text``, or ``?format=prometheus``);
everything else keeps the seed's JSON. Produced with prometheus_client through a
custom collector: one Redis round trip per live queue type (``stats.lua``), never
one per queue. Labelled by ``queue_type`` only: per-tenant detail lives in the
JSON views (``/queue/``, ``/queues/``), as cardinality advice asks.

The figures come from Redis, so every instance reports the same cluster-wide
values: when several instances are scraped, aggregate with ``max by
(queue_type, state)`` (or scrape one instance), not ``sum``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from sharq_core import SharQ
from sharq_core.engine import COUNTERS

_COUNTER_HELP = {
    "enqueued": "Jobs enqueued (delayed ones included)",
    "dequeued": "Deliveries handed to workers",
    "finished": "Jobs finished (acknowledged)",
    "failed": "Failures workers reported",
    "requeued": "Jobs put back after their delivery expired",
    "dead": "Jobs moved to the dead letters",
}
ACCEPTED = ("application/openmetrics-text", "text/plain")


class QueueCollector(Collector):
    """Every live queue type's figures, read when Prometheus scrapes."""

    def __init__(self, engine: SharQ) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("sharq_jobs", "Jobs by state", labels=["queue_type", "state"])
        queues = GaugeMetricFamily(
            "sharq_queues",
            "Queues by state: ready (due now), waiting (for their rate), paused, capped (at max_active)",
            labels=["queue_type", "state"],
        )
        paused = GaugeMetricFamily("sharq_queue_type_paused", "1 while the whole type is paused", labels=["queue_type"])
        counters = {
            name: CounterMetricFamily(f"sharq_jobs_{name}", _COUNTER_HELP[name], labels=["queue_type"])
            for name in COUNTERS
        }
        for queue_type in self.engine.queue_types():
            stats = self.engine.type_stats(queue_type)
            for state, value in stats["jobs"].items():
                jobs.add_metric([queue_type, state], value)
            for state, value in stats["queues"].items():
                queues.add_metric([queue_type, state], value)
            paused.add_metric([queue_type], int(stats["type_paused"]))
            for name, value in stats["counters"].items():
                counters[name].add_metric([queue_type], value)
        yield from (jobs, queues, paused, *counters.values())


def registry_for(engine: SharQ) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(engine))
    return registry


def exposition(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The scrape's body and Content-Type, in the format its Accept header prefers."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
