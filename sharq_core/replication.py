"""Durable writes and a moving cluster: how a script that changes state is run.

With ``wait_replicas = N``, a change is answered only once N replicas hold it.
Redis' WAIT covers every earlier write of the connection it runs on, so it goes
on the connection that ran the script: in one non-transactional pipeline with
the EVALSHA (redis-py on a single Redis, or on the primary of the keys' slot of a
cluster), or once after each batch the auto-pipeline flushes. RedisCluster
cannot do it for us: it sends WAIT to every primary, and its pipeline sends a
keyless WAIT to a random node, neither the connection that wrote.

Not every change needs its replicas to be answered. A take or an acknowledgement
(dequeue, finish, touch, fail, the requeue of expired deliveries) that a failover
loses costs at most a redelivery, which at-least-once delivery allows; refusing
them while replicas are short (after a lossy failover, until a replica joins)
would stop every worker. They still wait, so they are replicated when replicas
are there, but a shortfall is counted and logged (`Shortfalls`), not raised,
and for a second after one the others do not wait (one a second still does).
An enqueue, a limit or any other setting lost is lost for good: those are
refused (NotReplicated, 503) while fewer than `wait_replicas` confirm them.

On a cluster, a command refused because the topology is changing (MOVED, ASK,
READONLY, CLUSTERDOWN, TRYAGAIN, an uncovered slot) did not run, so it is sent
again, against the refreshed slot map, until the request's time is up.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    SlotNotCoveredError,
    TryAgainError,
)

from .config import RedisSettings
from .exceptions import NotReplicated

T = TypeVar("T")

log = logging.getLogger(__name__)

# the scripts that change nothing, so need no WAIT
READ_ONLY = frozenset({"view", "stats", "status", "autoscale"})

# the takes and acknowledgements: a failover that loses one delivers a job again,
# never loses it, so they are answered even when replicas are short
REDELIVERABLE = frozenset({"dequeue", "finish", "touch", "fail", "requeue"})

# at most one log line per this many seconds about changes answered short of replicas
SHORTFALL_LOG_S = 60.0

# after a take or an ack fell short of replicas, the next ones skip their WAIT for this long (s)
PROBE_S = 1.0

# refusals during a failover or a slot migration: the command did not run
TOPOLOGY_ERRORS = (MovedError, AskError, ReadOnlyError, ClusterDownError, TryAgainError, SlotNotCoveredError)

_FIRST_DELAY_S, _MAX_DELAY_S = 0.02, 0.25


class Shortfalls:
    """The takes and acknowledgements answered though fewer replicas than
    `wait_replicas` confirmed them: counted per call in `counts`, told to
    `listener` (the server's Prometheus counter), logged at most once every
    SHORTFALL_LOG_S. Once one falls short, the next ones skip their WAIT for
    PROBE_S (counted all the same), so that workers are not slowed by a whole
    `wait_timeout_ms` per call while no replica is there; one a PROBE_S still
    waits, to see the replicas come back."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.listener: Callable[[str], None] | None = None
        self._unlogged = 0
        self._logged_at: float | None = None
        self._short_at: float | None = None

    def skip_wait(self) -> bool:
        """True while a WAIT fell short in the last PROBE_S."""
        return self._short_at is not None and time.monotonic() - self._short_at < PROBE_S

    def confirmed(self) -> None:
        """A WAIT was answered by enough replicas again."""
        self._short_at = None

    def record(self, call: str, wanted: int, waited: bool = True) -> None:
        """One `call` answered short of replicas (`waited`: its WAIT said so)."""
        self.counts[call] = self.counts.get(call, 0) + 1
        self._unlogged += 1
        if self.listener is not None:
            self.listener(call)
        now = time.monotonic()
        if waited:
            self._short_at = now
        if self._logged_at is None or now - self._logged_at >= SHORTFALL_LOG_S:
            log.warning(
                "%d take(s) or acknowledgement(s) answered with fewer than the %d replica(s) required (the latest:"
                " %s): a failover now may deliver their jobs again; enqueues and settings answer 503 until"
                " replicas are back",
                self._unlogged,
                wanted,
                call,
            )
            self._logged_at, self._unlogged = now, 0


@dataclass(frozen=True)
class Wait:
    """How a change waits for replicas: WAIT `settings.wait_replicas`, then a
    shortfall raises NotReplicated, or, for a change that `shortfalls` tolerates
    (named `call`), is recorded there and the answer stands."""

    settings: RedisSettings
    call: str = ""
    shortfalls: Shortfalls | None = None

    def check(self, acked: int) -> None:
        wanted = self.settings.wait_replicas
        if self.shortfalls is None:
            if acked < wanted:
                raise NotReplicated(acked, wanted, self.settings.wait_timeout_ms)
        elif acked < wanted:
            self.shortfalls.record(self.call, wanted)
        else:
            self.shortfalls.confirmed()


def eval_and_wait(
    client: redis.Redis, script: Script, keys: list[Any], args: list[Any], wait: Wait, asking: bool = False
) -> Any:
    """EVALSHA then WAIT on one connection of `client` (ASKING first after an ASK)."""
    (reply,) = eval_many(client, script, [(keys, args)], wait, asking=asking)
    if isinstance(reply, Exception):
        raise reply
    return reply


def eval_many(
    client: redis.Redis,
    script: Script,
    calls: list[tuple[list[Any], list[Any]]],
    wait: Wait | None,
    asking: bool = False,
) -> list[Any]:
    """Each call's EVALSHA in one non-transactional pipeline on one connection of
    `client`, then, with a `wait`, one WAIT that covers them all. A call Redis
    refused comes back as its error, for the caller to judge; calls refused for a
    flushed script cache are sent again once the script is loaded."""
    replies: list[Any] = [None] * len(calls)
    pending = list(range(len(calls)))
    for attempt in range(2):
        with client.pipeline(transaction=False) as pipe:
            for index in pending:
                keys, args = calls[index]
                if asking:
                    pipe.execute_command("ASKING")
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            if wait is not None:
                pipe.execute_command("WAIT", wait.settings.wait_replicas, wait.settings.wait_timeout_ms)
            out = pipe.execute(raise_on_error=False)
        acked = out.pop() if wait is not None else None
        for index, reply in zip(pending, out[1::2] if asking else out, strict=True):
            replies[index] = reply
        pending = [index for index in pending if isinstance(replies[index], NoScriptError)]
        if pending and attempt == 0:
            client.script_load(script.script)  # Redis restarted or its cache was flushed
            continue
        wrote = not all(isinstance(reply, Exception) for reply in replies)  # a refused call wrote nothing
        if wait is not None and wrote:
            if isinstance(acked, Exception):
                raise acked
            wait.check(int(acked))
        return replies
    raise AssertionError("unreachable")


def cluster_eval_and_wait(cluster: RedisCluster, script: Script, keys: list[Any], args: list[Any], wait: Wait) -> Any:
    """`eval_and_wait` on the primary of the keys' slot; the slot map is refreshed
    when that node has moved, failed or gone."""
    node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(keys[0]))
    try:
        return eval_and_wait(cluster.get_redis_connection(node), script, keys, args, wait)
    except AskError as error:  # the slot is migrating and the keys have left: ask the target
        target = cluster.get_node(host=error.host, port=error.port)
        if target is None:
            refresh_topology(cluster)
            raise
        return eval_and_wait(cluster.get_redis_connection(target), script, keys, args, wait, asking=True)
    except (MovedError, ReadOnlyError, ClusterDownError, redis.ConnectionError, redis.TimeoutError):
        refresh_topology(cluster)
        raise


def cluster_eval_many(
    cluster: RedisCluster,
    script: Script,
    calls: list[tuple[list[Any], list[Any]]],
    wait: Wait | None,
) -> list[Any]:
    """`eval_many` on each node for the calls whose slots it serves: one round trip
    per node, not per call. Every call's node is found before anything is sent:
    when a slot has none, no call is sent and each comes back as that error.
    The nodes are visited in the order of their last call, so the last call (an
    ack-and-take's take) goes out only once every other node has answered: a
    node that fails first fails the batch before anything is taken."""
    groups: dict[str, tuple[Any, list[int]]] = {}
    try:
        for index, (keys, _) in enumerate(calls):
            node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(keys[0]))
            groups.setdefault(node.name, (node, []))[1].append(index)
    except SlotNotCoveredError as error:
        refresh_topology(cluster)
        return [error] * len(calls)
    replies: list[Any] = [None] * len(calls)
    for node, indexes in sorted(groups.values(), key=lambda group: group[1][-1]):
        try:
            out = eval_many(cluster.get_redis_connection(node), script, [calls[i] for i in indexes], wait)
        except (redis.ConnectionError, redis.TimeoutError):
            refresh_topology(cluster)
            raise
        for index, reply in zip(indexes, out, strict=True):
            replies[index] = reply
    if any(isinstance(reply, TOPOLOGY_ERRORS) for reply in replies):
        refresh_topology(cluster)
    return replies


def refresh_topology(client: Any) -> None:
    """On a cluster, read the slot map again (as RedisCluster does after such
    errors); a node that cannot answer leaves the old map, and the caller's error stands."""
    if isinstance(client, RedisCluster):
        with contextlib.suppress(redis.RedisError, OSError):
            client.nodes_manager.initialize()


def follow_topology(call: Callable[[], T], budget_s: float) -> T:
    """`call()`, again after each topology refusal, until `budget_s` is spent."""
    deadline = time.monotonic() + budget_s
    delay = _FIRST_DELAY_S
    while True:
        try:
            return call()
        except TOPOLOGY_ERRORS:
            if time.monotonic() + delay >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, _MAX_DELAY_S)
