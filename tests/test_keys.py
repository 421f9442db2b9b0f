"""Key layout: Lua and Python name the same keys, and one type lives in one slot."""

from __future__ import annotations

from redis.crc import key_slot

from sharq_core import SharQ
from tests.support import Clock


def exercise(sq: SharQ, clock: Clock, queue_type: str) -> None:
    """Run every script once for `queue_type`, leaving every kind of key behind."""
    for job in ("a", "b", "c"):
        sq.enqueue({"n": job}, 10, job, "q1", queue_type, requeue_limit=0)
    sq.enqueue_many(queue_type, [{"queue_id": "q2", "job_id": "x", "payload": 1, "interval": 0}])
    sq.dequeue_many(queue_type, 2)
    sq.finish("x", "q2", queue_type)
    sq.touch("a", "q1", queue_type)
    sq.interval(20, "q1", queue_type)
    sq.job_status(queue_type, "q1", "a")
    clock.advance(5000)
    sq.requeue()
    sq.retry_dead_letter(queue_type, "q1", "a")
    clock.advance(100)
    sq.dequeue(queue_type)
    clock.advance(5000)
    sq.requeue()
    sq.delete_dead_letter(queue_type, "q1", "b")
    sq.enqueue(1, 10, "z", "q3", queue_type)
    sq.metrics(queue_type, "q1")
    sq.enqueue(1, 10, "w", "q3", queue_type, campaign="c")
    sq.enqueue(1, 10, "v", "q3", queue_type, campaign="c")
    sq.set_on_done(queue_type, "c", {"queue_type": queue_type, "queue_id": "q3", "payload": 1})
    sq.cancel_campaign(queue_type, "c")


def test_every_key_of_a_type_shares_its_slot(sq: SharQ, clock: Clock, redis_client) -> None:
    for queue_type in ("sms", "email"):
        exercise(sq, clock, queue_type)
    by_type: dict[str, set[int]] = {"sms": set(), "email": set()}
    for key in redis_client.keys("*"):
        name = key.decode()
        if name == sq.keys.queue_types():
            continue
        queue_type = name.split("{")[1].split("}")[0]
        by_type[queue_type].add(key_slot(key))
    assert by_type["sms"] == {key_slot(b"{sms}")}
    assert by_type["email"] == {key_slot(b"{email}")}


def test_lua_derives_the_keys_python_names(sq: SharQ, clock: Clock, redis_client) -> None:
    exercise(sq, clock, "sms")
    keys, minute = sq.keys, clock.now - clock.now % 60_000
    named = {
        keys.queue_types(),
        keys.ready("sms"),
        keys.active("sms"),
        keys.queues("sms"),
        keys.dead("sms"),
        keys.dead_index("sms"),
        keys.done("sms"),
        keys.receipts("sms"),
        keys.errors("sms"),
        keys.nactive("sms"),
        keys.known("sms"),
        keys.limits("sms"),
        keys.paused("sms"),
        keys.scheduled("sms"),
        keys.nsched("sms"),
        keys.totals("sms"),
        keys.heads("sms"),
        keys.settings("sms"),
        keys.demand("sms"),
        keys.campaign("sms", "c"),
        keys.campaign_members("sms", "c"),
        keys.campaigns("sms"),
        keys.campaigns_ended("sms"),
        keys.campaigns_notify("sms"),
        keys.campaigns_sent("sms"),
        keys.cancelled("sms"),
        keys.campaign_totals("sms"),
        *(keys.queue("sms", q) for q in ("q1", "q3")),
        *(keys.jobs("sms", q) for q in ("q1", "q3")),
        *(keys.last("sms", q) for q in ("q1", "q2")),
        *(keys.stats("sms", minute - n * 60_000) for n in range(2)),
        *(keys.rates("sms", minute - n * 60_000) for n in range(2)),
    }
    assert {key.decode() for key in redis_client.keys("*")} <= named
    assert redis_client.exists(keys.last("sms", "q1"), keys.jobs("sms", "q1"), keys.ready("sms")) == 3


def test_scripts_reload_after_script_flush(sq: SharQ, redis_client) -> None:
    sq.enqueue(1, 0, "a", "q")
    redis_client.script_flush()
    sq.enqueue(2, 0, "b", "q")
    assert sq.dequeue()["job_id"] == "a"
