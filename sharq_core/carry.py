"""What drained queues leave behind, moved when a type's shard count changes.

Finished job_ids within the dedupe window, the queues' rate states, the units
used in the quotas' windows (type-wide and the queues'), the counters since the type began and
whose campaign on_done jobs it took go to where the new count puts them. Every shard
is sealed meanwhile (layouts.py): nothing else writes them, so reading a batch
and writing it in the next round trip is safe. Each step works in pipelined
batches of CARRY_BATCH, so the calls grow with the batches, not with the ids:
100,000 finished ids over 1,000 queues moved from 1 shard to 4 in 2.9 s and back
in 2.6 s, where one round trip per id took 45 s and 81 s (bench/reshard.py, a
2-core machine at load average 7, 2026-12-02). A batch is idempotent (the newer
of two states wins), so a change completed after its process died may repeat one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .keys import Keys, glob_escape
from .shards import Layout

CARRY_BATCH = 5_000


def carry(redis: Any, keys: Keys, shards: list[str], new: Layout, window_ms: int, renew: Callable[[], None]) -> None:
    """Move what `shards` remember of drained queues to their shards under `new`;
    `renew` keeps the change's lease between batches."""
    for shard in sorted(shards, key=lambda name: name not in new.names()):  # those that receive first: read once
        _carry_finished(redis, keys, shard, new, window_ms, renew)
    _carry_rates(redis, keys, shards, new, renew)
    _carry_quota_use(redis, keys, shards, new)
    _carry_campaigns_sent(redis, keys, shards, new)
    for shard in shards:
        if shard not in new.names():
            _carry_totals(redis, keys, shard, new)


def _carry_finished(redis: Any, keys: Keys, shard: str, new: Layout, window_ms: int, renew: Callable[[], None]) -> None:
    """Finished job_ids go to their queue's new shard, the later finish time
    winning should it know the id already; CARRY_BATCH ids a round trip. A
    shard the new count drops gives all of them: copied, then dropped at once."""
    start, targets, dropped = 0, {}, shard not in new.names()
    while True:
        renew()
        # the scores as Redis wrote them: moved as they are, not parsed
        batch = redis.zrange(keys.done(shard), start, start + CARRY_BATCH - 1, withscores=True, score_cast_func=_same)
        moves: dict[str, dict[bytes, bytes]] = {}
        for member, finished_at in batch:
            queue_id = member[: member.index(b":")]
            target = targets.get(queue_id) or targets.setdefault(queue_id, new.of(queue_id.decode()))
            if target != shard:
                moves.setdefault(target, {})[member] = finished_at
        if moves:
            with redis.pipeline(transaction=False) as pipe:
                for target, members in moves.items():
                    pipe.zadd(keys.done(target), members, gt=True)
                    pipe.pexpire(keys.done(target), window_ms or 1)
                if not dropped:
                    pipe.zrem(keys.done(shard), *(member for members in moves.values() for member in members))
                pipe.execute()
        if len(batch) < CARRY_BATCH:
            break
        start += CARRY_BATCH if dropped else CARRY_BATCH - sum(map(len, moves.values()))  # moved: left the ranks
    if dropped:
        redis.delete(keys.done(shard))


def _same(score: bytes) -> bytes:
    return score


def _carry_rates(redis: Any, keys: Keys, shards: list[str], new: Layout, renew: Callable[[], None]) -> None:
    """The queues' rate states (":last:" keys) go to their new shard with the time
    they had left, so a refill still waits for the rate limit. One SCAN for all
    the shards; the newer state wins over one the target already holds."""
    pattern = f"{glob_escape(keys.prefix)}:{{{glob_escape(new.queue_type)}[#}}]*:last:*"
    skip, batch = len(keys.prefix) + 2, []
    for key in redis.scan_iter(match=pattern, count=1000):
        shard, queue_id = key.decode()[skip:].split("}:last:", 1)
        if shard in shards and new.of(queue_id) != shard:
            batch.append((key, keys.last(new.of(queue_id), queue_id)))
        if len(batch) == CARRY_BATCH:
            renew()
            _move_rates(redis, batch)
            batch = []
    if batch:
        renew()
        _move_rates(redis, batch)


def _move_rates(redis: Any, moves: list[tuple[bytes, str]]) -> None:
    """Each (source, target) rate state key: the newer state and the longer life
    of the two on the target, the source dropped. Two round trips."""
    with redis.pipeline(transaction=False) as pipe:
        for source, target in moves:
            pipe.get(source)
            pipe.pttl(source)
            pipe.get(target)
            pipe.pttl(target)
        replies = pipe.execute()
    with redis.pipeline(transaction=False) as pipe:
        for index, (source, target) in enumerate(moves):
            source_value, source_ttl, target_value, target_ttl = replies[4 * index : 4 * index + 4]
            states = [(v, t) for v, t in ((source_value, source_ttl), (target_value, target_ttl)) if v is not None]
            if states:
                value = max((value for value, _ in states), key=float)
                ttls = [ttl for _, ttl in states]
                pipe.set(target, value, px=None if -1 in ttls else max(*ttls, 1))
            pipe.delete(source)
        pipe.execute()


def _carry_totals(redis: Any, keys: Keys, shard: str, new: Layout) -> None:
    """A shard the new count drops hands its counters to the new first shard."""
    target = keys.totals(new.name(0))
    with redis.pipeline(transaction=True) as pipe:  # read and drop at once: counted once
        pipe.hgetall(keys.totals(shard))
        pipe.delete(keys.totals(shard))
        totals, _ = pipe.execute()
    if totals:
        taken_at = redis.hget(target, "taken_at") if b"taken_at" in totals else None
        with redis.pipeline(transaction=False) as pipe:
            for name, value in totals.items():
                if name == b"taken_at":  # a time, not a count: the latest one stands, never their sum
                    pipe.hset(target, "taken_at", max(int(value), int(taken_at or 0)))
                else:
                    pipe.hincrby(target, name.decode(), int(value))
            pipe.execute()


def _carry_quota_use(redis: Any, keys: Keys, shards: list[str], new: Layout) -> None:
    """The units the type used in each window of its type-wide quotas (field
    "*/<window_ms>/<offset_ms>@<window start>" of "<base>:used" -> units, and
    "*/<window_ms>/<offset_ms>" -> the start of the window counted last, see
    quota_windows) go to the new shards, each taking its share rounded up: every
    shard's quota is its share of the limit, so the type never hands out more in
    a window than it allows. A queue's own use goes to the queue's new shard: a
    queue with quotas keeps the count from changing, but one whose quotas were
    cleared still counts what it used should they be set again within the window,
    and a shard that goes leaves nothing behind. One pipeline over every shard
    (a round trip per node of a cluster)."""
    with redis.pipeline(transaction=False) as pipe:
        for shard in shards:
            pipe.hgetall(keys.quota_use(shard))
        stored = pipe.execute()
    latest: dict[bytes, tuple[int, int]] = {}  # window -> (its latest start, units in it)
    fields: set[bytes] = set()  # every type-wide field seen, to drop where a shard goes
    moves: dict[str, dict[str, dict[bytes, bytes]]] = {}  # shard -> target -> a queue's fields
    for shard, shard_fields in zip(shards, stored, strict=True):
        for field, value in shard_fields.items():
            if not field.startswith(b"*/"):
                target = new.of(field.rsplit(b"/", 2)[0].decode())
                if target != shard:
                    moves.setdefault(shard, {}).setdefault(target, {})[field] = value
                continue
            fields.add(field)
            window, at, start_text = field.partition(b"@")
            if at:
                start = int(start_text)
                began, counted = latest.get(window, (start, 0))
                if start >= began:
                    latest[window] = (start, int(value) + (counted if start == began else 0))
    counts = {}
    for window, (start, units) in latest.items():
        counts[window], counts[window + b"@" + str(start).encode()] = start, -(-units // new.count)
    stale = fields - counts.keys()  # windows over, and where a shard goes, all of them
    with redis.pipeline(transaction=False) as pipe:
        for shard in shards:
            for target, moved in moves.get(shard, {}).items():
                pipe.hset(keys.quota_use(target), mapping=moved)
                pipe.hdel(keys.quota_use(shard), *moved)
            if shard in new.names():
                if counts:
                    pipe.hset(keys.quota_use(shard), mapping=counts)
                if stale:
                    pipe.hdel(keys.quota_use(shard), *stale)
            elif fields:
                pipe.hdel(keys.quota_use(shard), *fields)
        pipe.execute()


def _carry_campaigns_sent(redis: Any, keys: Keys, shards: list[str], new: Layout) -> None:
    """Whose campaign on_done jobs the type took ("<base>:cg_sent") go to every new
    shard: the record holds no queue id to route by, and the next requeue pass may
    send the same on_done job to any of them (one whose pass died before noting it
    sent). A few fields per campaign with an on_done job into this type, kept until
    the campaign is forgotten (which clears them on every shard)."""
    with redis.pipeline(transaction=False) as pipe:
        for shard in shards:
            pipe.hgetall(keys.campaigns_sent(shard))
        stored = pipe.execute()
    sent: dict[bytes, bytes] = {}
    for fields in stored:
        for sender, at in fields.items():
            sent[sender] = min(at, sent.get(sender, at), key=int)
    if not sent:
        return
    with redis.pipeline(transaction=False) as pipe:
        for shard in shards:
            if shard in new.names():
                for sender, at in sent.items():
                    pipe.hsetnx(keys.campaigns_sent(shard), sender, at)
            else:
                pipe.delete(keys.campaigns_sent(shard))
        pipe.execute()
