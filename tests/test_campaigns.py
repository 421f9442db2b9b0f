"""Campaigns: counts moved inside the scripts that move the jobs, cancel, one on_done."""

from __future__ import annotations

import dataclasses

import pytest

from sharq_core import BadArgumentException, SharQ
from sharq_core.campaigns import STATES
from sharq_core.exceptions import Conflict
from tests.support import Clock


def counts(sq: SharQ, campaign: str = "spring", queue_type: str = "sms") -> dict:
    found = sq.campaign(queue_type, campaign)
    assert sum(found[state] for state in STATES) == found["total"], found
    return found


def test_counts_follow_every_move_and_sum_to_total(sq: SharQ, clock: Clock) -> None:
    for n in range(4):
        sq.enqueue({"n": n}, 0, f"j{n}", f"q{n % 2}", "sms", requeue_limit=1, campaign="spring")
    sq.enqueue(1, 0, "later", "q0", "sms", delay_ms=1000, campaign="spring")
    found = counts(sq)
    assert (found["total"], found["queued"], found["scheduled"], found["done"]) == (5, 4, 1, False)
    jobs = sq.take("sms", 3)[0]
    assert counts(sq)["active"] == 3
    sq.enqueue(1, 0, "other", "q0", "sms")  # in no campaign
    first, second, third = jobs
    sq.finish(first.job_id, first.queue_id, "sms", first.receipt)
    sq.fail("sms", second.queue_id, second.job_id, second.receipt, dead=True)
    sq.fail("sms", third.queue_id, third.job_id, third.receipt)
    found = counts(sq)
    assert (found["finished"], found["dead"], found["queued"], found["active"]) == (1, 1, 2, 0)
    clock.advance(1000)
    sq.take("sms", 10)[0]
    found = counts(sq)
    assert (found["active"], found["scheduled"], found["queued"]) == (3, 0, 0)
    clock.advance(31_000)
    sq.requeue()  # deliveries expired: back in their queues, or dead with no requeue left
    found = counts(sq)
    assert found["active"] == 0 and found["queued"] + found["dead"] == 4
    sq.retry_dead_letter("sms", second.queue_id, second.job_id)
    assert counts(sq)["dead"] == found["dead"] - 1
    while jobs := sq.take("sms", 10)[0]:
        sq.finish_many("sms", [{"queue_id": j.queue_id, "job_id": j.job_id} for j in jobs])
        assert counts(sq)["done"] is False or counts(sq)["queued"] == 0
    found = counts(sq)
    assert found["done"] is True and found["ended_at"] == clock.now
    assert found["finished"] + found["dead"] == 5


def test_cancel_removes_queued_and_scheduled_jobs_and_refuses_new_ones(sq: SharQ, clock: Clock) -> None:
    for n in range(5):
        sq.enqueue(n, 0, f"j{n}", "q1", "sms", campaign="spring")
    sq.enqueue(1, 0, "later", "q2", "sms", delay_ms=5000, campaign="spring")
    sq.enqueue(1, 0, "mine", "q1", "sms")
    taken = sq.dequeue("sms")
    found = sq.cancel_campaign("sms", "spring")
    assert (found["cancelled"], found["active"], found["queued"], found["scheduled"]) == (5, 1, 0, 0)
    assert found["done"] is False and found["cancelled_at"] == clock.now
    assert sq.job_status("sms", "q1", "j3")["state"] == "cancelled"
    assert sq.job_status("sms", "q1", "mine")["state"] == "queued"  # not of the campaign
    with pytest.raises(Conflict):
        sq.enqueue(1, 0, "new", "q1", "sms", campaign="spring")
    result = sq.enqueue_many(
        "sms", [{"queue_id": "q1", "job_id": "new", "payload": 1, "interval": 0, "campaign": "spring"}]
    )
    assert result[0]["code"] == 409 and "cancelled" in result[0]["message"]
    sq.fail("sms", taken["queue_id"], taken["job_id"], taken["receipt"])  # comes back: ends as cancelled
    found = counts(sq)
    assert (found["cancelled"], found["active"], found["done"]) == (6, 0, True)
    assert sq.dequeue("sms")["job_id"] == "mine"


def test_a_failed_job_of_a_cancelled_campaign_is_not_said_to_retry(sq: SharQ) -> None:
    """A job with no requeue left whose campaign was cancelled while it was out ends
    when it fails, retry_after_ms or not: it is not retrying (fail once answered
    "retrying" for it, and "queued" without retry_after_ms)."""
    sq.enqueue(1, 0, "last", "q1", "sms", requeue_limit=0, campaign="spring")
    taken = sq.dequeue("sms")
    sq.cancel_campaign("sms", "spring")
    answer = sq.fail("sms", "q1", "last", taken["receipt"], retry_after_ms=100)
    assert answer == {"status": "success", "state": "queued"}
    assert sq.job_status("sms", "q1", "last")["state"] == "cancelled"
    assert (counts(sq)["cancelled"], counts(sq)["done"]) == (1, True)


def test_on_done_is_enqueued_once(sq: SharQ, clock: Clock) -> None:
    sq.set_on_done("sms", "spring", {"queue_type": "reports", "queue_id": "ops", "payload": {"to": "me"}})
    sq.requeue()
    assert sq.dequeue("reports")["status"] == "failure"  # no job yet: not done
    sq.enqueue(1, 0, "a", "q1", "sms", campaign="spring")
    job = sq.dequeue("sms")
    sq.finish(job["job_id"], "q1", "sms", job["receipt"])
    sq.requeue()
    sq.requeue()
    report = sq.dequeue("reports")
    assert report["job_id"] == "campaign-done.spring"
    assert report["payload"]["payload"] == {"to": "me"} and report["payload"]["finished"] == 1
    sq.finish(report["job_id"], "ops", "reports", report["receipt"])
    clock.advance(10_000_000)
    sq.requeue()
    assert sq.dequeue("reports")["status"] == "failure"
    with pytest.raises(Conflict):
        sq.set_on_done("sms", "spring", {"queue_type": "reports", "queue_id": "ops", "payload": 1})


def test_a_sharded_campaign_sums_its_shards(sq: SharQ) -> None:
    sq.set_type_settings("hot", 4)
    sq.enqueue_many("hot", [
        {"queue_id": f"t{n}", "job_id": f"j{n}", "payload": n, "interval": 0, "campaign": "wide"} for n in range(40)
    ])  # fmt: skip
    found = counts(sq, "wide", "hot")
    assert (found["total"], found["queued"]) == (40, 40)
    sq.take("hot", 10)[0]
    assert counts(sq, "wide", "hot")["active"] == 10
    found = sq.cancel_campaign("hot", "wide")
    assert (found["cancelled"], found["active"]) == (30, 10)


def test_campaigns_page_newest_first(sq: SharQ, clock: Clock) -> None:
    for name in ("a", "b", "c"):
        sq.enqueue(1, 0, name, "q", "sms", campaign=name)
        clock.advance(10)
    page = sq.campaigns("sms", limit=2)
    assert [c["campaign"] for c in page["campaigns"]] == ["c", "b"] and page["total"] == 3
    assert [c["campaign"] for c in sq.campaigns("sms", limit=2, offset=2)["campaigns"]] == ["a"]


def test_a_done_campaign_is_forgotten_after_its_retention(sq: SharQ, clock: Clock, redis_client) -> None:
    sq.set_on_done("sms", "spring", {"queue_type": "reports", "queue_id": "ops", "payload": None})
    sq.enqueue(1, 0, "a", "q", "sms", campaign="spring")
    job = sq.dequeue("sms")
    sq.finish("a", "q", "sms", job["receipt"])
    clock.advance(sq.config.campaign_retention_ms)
    sq.requeue()
    assert counts(sq)["done"] is True
    assert redis_client.hkeys(sq.keys.campaigns_sent("reports")) == [b"sms/spring"]  # its on_done job went
    clock.advance(1)
    sq.requeue()
    assert sq.campaigns("sms")["campaigns"] == []
    assert not redis_client.exists(sq.keys.campaigns_sent("reports"))  # and what remembered it, with it


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda sq: sq.enqueue(1, 0, "a", "q", "sms", campaign="bad id"), "campaign"),
        (
            lambda sq: sq.set_on_done("sms", "c", {"queue_type": "b d", "queue_id": "q", "payload": 1}),
            "on_done.queue_type",
        ),
        (lambda sq: sq.set_on_done("sms", "c", {"queue_type": "t", "queue_id": "", "payload": 1}), "on_done.queue_id"),
        (lambda sq: sq.set_on_done("sms", "c", {"queue_type": "t", "queue_id": "q", "x": 1}), "'x'"),
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(sq: SharQ, redis_client, call, field) -> None:
    with pytest.raises(BadArgumentException, match=field):
        call(sq)
    assert redis_client.keys("*") == []


def test_on_done_into_the_same_type_is_enqueued_by_the_finish_that_ends_it(sq: SharQ) -> None:
    sq.enqueue(1, 0, "a", "q1", "sms", campaign="spring")
    sq.set_on_done("sms", "spring", {"queue_type": "sms", "queue_id": "reports", "payload": {"n": 10**15}})
    job = sq.dequeue("sms")
    sq.finish(job["job_id"], "q1", "sms", job["receipt"])  # no requeue pass between
    report = sq.dequeue("sms")
    assert report["job_id"] == "campaign-done.spring" and report["payload"]["payload"] == {"n": 10**15}
    assert report["payload"]["finished"] == 1
    assert sq.campaign("sms", "spring")["on_done_enqueued_at"] is not None
    sq.finish(report["job_id"], "reports", "sms", report["receipt"])
    sq.requeue()
    assert sq.dequeue("sms")["status"] == "failure"  # once


def test_a_type_keeping_campaigns_cannot_change_its_shard_count(sq: SharQ) -> None:
    sq.enqueue(1, 0, "a", "q", "sms", campaign="spring")
    job = sq.dequeue("sms")
    sq.finish("a", "q", "sms", job["receipt"])
    with pytest.raises(Conflict, match="1 campaign"):
        sq.set_type_settings("sms", 2)
    assert sq.campaign("sms", "spring")["finished"] == 1


def test_an_expired_job_counts_expired_in_its_campaign(sq: SharQ, clock: Clock) -> None:
    """Where deadlines expire a job (a take dropping an expired head, the requeue
    pass's sweep, a delivery ending after the deadline), its campaign counts it
    expired; a retry with a new deadline counts it queued again."""
    sq.enqueue(0, 0, "out", "q0", "sms", ttl_ms=1000, campaign="spring")
    out = sq.dequeue("sms")
    assert out["job_id"] == "out"
    sq.enqueue(1, 0, "head", "q1", "sms", ttl_ms=1000, campaign="spring")
    sq.enqueue(2, 0, "later", "q2", "sms", delay_ms=500, ttl_ms=1000, campaign="spring")
    status = sq.job_status("sms", "q1", "head")
    assert (status["campaign"], status["expire_at"]) == ("spring", clock.now + 1000)  # both options recorded
    clock.advance(1000)
    assert sq.take("sms", 1)[0] == []  # the take drops the expired heads
    found = counts(sq)
    assert (found["expired"], found["queued"], found["active"]) == (2, 0, 1)
    # the pass: its sweep expires what the take left, and the delivery of "out",
    # over with its deadline passed, expires instead of going back (put_back)
    sq.requeue()
    found = counts(sq)
    assert (found["expired"], found["scheduled"], found["queued"], found["active"], found["done"]) == (3, 0, 0, 0, True)
    assert sq.job_status("sms", "q0", "out")["state"] == "expired"
    sq.retry_dead_letter("sms", "q0", "out", ttl_ms=1000)
    found = counts(sq)
    assert (found["expired"], found["queued"], found["done"]) == (2, 1, False)


def _send_on_done_as_a_dying_pass_leaves_it(engine: SharQ, redis_client) -> None:
    """Campaign sms/spring of one finished job, its on_done job enqueued into
    reports/ops by a requeue pass, whose note of it is then undone: what a pass
    that died between the two leaves."""
    engine.set_on_done("sms", "spring", {"queue_type": "reports", "queue_id": "ops", "payload": None})
    engine.enqueue(1, 0, "a", "q1", "sms", campaign="spring")
    job = engine.dequeue("sms")
    engine.finish(job["job_id"], "q1", "sms", job["receipt"])
    engine.requeue()
    redis_client.hdel(engine.keys.campaign("sms", "spring"), "notified")
    redis_client.zadd(engine.keys.campaigns_notify("sms"), {"spring": 0})


def test_on_done_stays_once_when_a_pass_died_after_enqueueing_it(config, redis_client) -> None:
    """Found writing the fault scenarios: a requeue pass enqueues the on_done job,
    then notes it enqueued; a pass that dies in between (killed -9, Redis gone, or
    overtaken by another pass once its lock expired) leaves the note unwritten, and
    the next one counts on the job_id being refused as a duplicate. With the dedupe
    window off (0), a report job already taken and finished is not refused: it is
    enqueued a second time. The on_done queue's shard now remembers whose on_done
    job it took until the campaign is forgotten."""
    engine = SharQ(dataclasses.replace(config, dedupe_window_ms=0))
    try:
        _send_on_done_as_a_dying_pass_leaves_it(engine, redis_client)
        report = engine.dequeue("reports")
        engine.finish(report["job_id"], "ops", "reports", report["receipt"])  # the report ran
        engine.requeue()
        assert engine.dequeue("reports")["status"] == "failure"  # and is not enqueued again
    finally:
        engine.close()


def test_on_done_stays_once_when_its_type_was_resharded_after_a_pass_died(config, redis_client) -> None:
    """The record of whose on_done job a shard took lives on the on_done type's
    shard; when that type's shard count changes between a pass that died before
    noting the job sent and the next pass, the next one routes to a new shard,
    which must know it too (the reshard carries it to every new shard)."""
    engine = SharQ(dataclasses.replace(config, dedupe_window_ms=0))
    try:
        _send_on_done_as_a_dying_pass_leaves_it(engine, redis_client)
        report = engine.dequeue("reports")
        engine.finish(report["job_id"], "ops", "reports", report["receipt"])
        assert engine.set_type_settings("reports", 3)["status"] == "success"
        engine.requeue()
        assert engine.dequeue("reports")["status"] == "failure"  # not enqueued again on its new shard
        assert engine.campaign("sms", "spring")["on_done_enqueued_at"] is not None
    finally:
        engine.close()
