"""sharq_core: a rate-limited, multi-tenant job queue engine over Redis.

    from sharq_core import SharQ
    sq = SharQ('/path/to/sharq.conf')

Every state change is one Lua script (``lua/*.lua``), so each is atomic. Every key
of one queue type ``T`` carries the hash tag ``{T}`` and so lives in one Redis
Cluster slot; only the list of queue types is global, and Python alone writes it.

Key layout (``P`` is ``[redis] key_prefix``, ``T`` the queue type, ``Q`` the queue id,
``J`` the job id):

=========================  =======  ===========================================  ==================================
key                        type     holds                                        lifetime
=========================  =======  ===========================================  ==================================
``P:queue_types``          set      queue types holding queued, active or        while they do
                                    dead jobs
``P:{T}:ready``            zset     Q -> ms its next job may be dequeued         while Q has queued jobs
``P:{T}:active``           zset     ``Q:J`` -> ms the dequeued job expires       until finished or requeued
``P:{T}:queues``           hash     Q -> interval (ms)                           while Q has queued or active jobs
``P:{T}:q:Q``              list     queued job ids of priority 0, head first     while non-empty
``P:{T}:qN:Q``             list     those of priority N (1-9), head first        while non-empty
``P:{T}:prio``             hash     Q -> its priorities above 0 holding queued   while Q holds such jobs
                                    jobs, highest first (``95``)
``P:{T}:j:Q``              hash     J -> ``remaining:limit:enqueued:payload``    queued, delayed and active jobs
``P:{T}:last:Q``           string   Q's rate state: its last dequeue (GCRA:     while Q holds jobs, then
                                    the theoretical arrival less one interval)   max(interval, 10 min)
``P:{T}:stats:M``          hash     ``e``/``d`` and ``e:Q``/``d:Q`` counts for   11 minutes after minute M starts
                                    the minute starting at M (epoch ms)
``P:{T}:rates:M``          hash     ``e``/``d``/``f``/``x``: enqueued, handed    61 minutes after minute M starts
                                    out, finished, failed in minute M; ``q``
                                    jobs queued at its last enqueue or dequeue
``P:{T}:dead``             hash     ``Q:J`` -> JSON {payload, requeue_limit,     until retried or deleted
                                    interval, reason}
``P:{T}:dead_at``          zset     ``Q:J`` -> ms the job died                   as ``P:{T}:dead``
``P:{T}:done``             zset     ``Q:J`` -> ms the job was finished           ``dedupe_window_ms``
``P:{T}:receipts``         hash     ``Q:J`` -> receipt of its current delivery   while active
                                    (``retry``: failed, waiting to be retried)
``P:{T}:errors``           hash     ``Q:J`` -> last error a worker reported      until finished or dead-lettered
``P:{T}:limits``           hash     Q -> ``interval|burst|max_active[|weight]``  until cleared
                                    override
``P:{T}:turns``            hash     Q -> units left of its turn less a quantum   until its turn ends
                                    (deficit round robin, see weighted_place)
``P:{T}:nactive``          hash     Q -> its jobs holding a concurrency slot     while Q holds jobs
``P:{T}:paused``           hash     Q -> ms its pause ends (-1: until resumed)   until resumed or over
``P:{T}:type_paused``      string   ms the type's pause ends (-1: until resumed) until resumed or over
``P:{T}:scheduled``        zset     ``Q:J`` -> ms a delayed job is due            until due
``P:{T}:nsched``           hash     Q -> how many delayed jobs it holds          while it holds some
``P:{T}:known``            zset     Q -> 0, queues with jobs or limits (id order) while they have them
``P:{T}:change_lease``     string   token of the process changing T's shards     while it renews it (5 s)
``P:{T}:demand``           hash     Q -> what the backlogged, unpaused queue      while Q holds queued jobs
                                    adds to the autoscale sums (``demand:*`` in
                                    the type's settings hash)
``P:ready``                channel  a queue type whose jobs may be ready now     (pub/sub)
``P:drained_types``        zset     T -> ms T left the registry, drained: the    ``idle_type_retention_ms``
                                    views keep listing it (zeros, counters)
``P:requeue_lock``         string   token of the process running requeue         a few requeue intervals
``P:deep_status``          string   write probe of ``deep_status()``             10 s
=========================  =======  ===========================================  ==================================
"""

from typing import TYPE_CHECKING, Any

from .config import Config, ConfigError, RedisSettings, ServerSettings, check_config, load_config
from .exceptions import (
    BackendUnavailable,
    BadArgument,
    BadArgumentException,
    Conflict,
    DuplicateJob,
    NotFound,
    NotReplicated,
    QueueFull,
    ShardsChanged,
    SharqError,
    StaleReceipt,
)

if TYPE_CHECKING:
    from .engine import SharQ

__version__ = "1.0.0"


def __getattr__(name: str) -> Any:
    """Import the engine (and so redis-py) on first use only: the gunicorn master
    reads the config without it, so gevent patches ssl in the workers cleanly."""
    if name == "SharQ":
        from .engine import SharQ

        return SharQ
    raise AttributeError(name)


__all__ = [
    "BackendUnavailable",
    "BadArgument",
    "BadArgumentException",
    "Config",
    "ConfigError",
    "Conflict",
    "DuplicateJob",
    "NotFound",
    "NotReplicated",
    "QueueFull",
    "RedisSettings",
    "ServerSettings",
    "SharQ",
    "ShardsChanged",
    "SharqError",
    "StaleReceipt",
    "check_config",
    "load_config",
]
