"""Priorities within a queue (issue 26.2): a job enqueued with `priority` 0-9 is
handed out before every job of a lower priority queued in its queue, first in
first out within one priority, whichever way it came to be queued (enqueued,
due after a delay, back from a delivery, retried from the dead letters)."""

from __future__ import annotations

import asyncio

import pytest

from sharq_client import AsyncClient, Client
from sharq_core import BadArgumentException, SharQ
from tests.support import Clock, ServerProcess, commands_of


def take_ids(sq: SharQ, queue_type: str, n: int) -> list[str]:
    return [sq.dequeue(queue_type)["job_id"] for _ in range(n)]


def test_higher_priority_first_fifo_within_one(sq: SharQ) -> None:
    for job_id, priority in [("n1", 0), ("n2", None), ("r1", 9), ("m1", 5), ("r2", 9), ("m2", 5), ("n3", 0)]:
        sq.enqueue(job_id, 0, job_id, "tenant", "mail", priority=priority)
    assert take_ids(sq, "mail", 7) == ["r1", "r2", "m1", "m2", "n1", "n2", "n3"]
    assert sq.dequeue("mail")["status"] == "failure"


def test_a_batch_carries_priorities(sq: SharQ) -> None:
    jobs = [{"queue_id": "t", "job_id": f"j{i}", "payload": i, "interval": 0, "priority": i % 3} for i in range(6)]
    assert {r["status"] for r in sq.enqueue_many("mail", jobs)} == {"queued"}
    assert take_ids(sq, "mail", 6) == ["j2", "j5", "j1", "j4", "j0", "j3"]


def test_priority_shows_in_the_job_and_the_queue(sq: SharQ) -> None:
    sq.enqueue("news", 0, "news", "t", "mail")
    sq.enqueue("news", 0, "news2", "t", "mail")
    assert "priorities" not in sq.queue_info("mail", "t")  # none above 0: as before
    sq.enqueue("reset", 0, "reset", "t", "mail", priority=9)
    view = sq.queue_info("mail", "t")
    assert (view["queue_length"], view["priorities"]) == (3, {"9": 1, "0": 2})
    assert sq.get_queue_length("mail", "t") == 3
    assert sq.job_status("mail", "t", "reset")["priority"] == 9
    assert "priority" not in sq.job_status("mail", "t", "news")
    job = sq.dequeue("mail")
    assert (job["job_id"], job["priority"]) == ("reset", 9)
    assert sq.job_status("mail", "t", "reset")["priority"] == 9  # active
    assert "priority" not in sq.dequeue("mail")
    assert "priorities" not in sq.queue_info("mail", "t")


def test_a_delayed_job_joins_its_priority_when_due(sq: SharQ, clock: Clock) -> None:
    sq.enqueue(1, 0, "first-low", "t", "mail")
    sq.enqueue(1, 0, "first-high", "t", "mail", priority=2, delay_ms=10)  # the first of a priority in the type
    clock.advance(10)
    assert take_ids(sq, "mail", 2) == ["first-high", "first-low"]
    sq.enqueue(1, 0, "low", "t", "mail")
    sq.enqueue(1, 0, "high", "t", "mail", priority=7)
    sq.enqueue(1, 0, "late-high", "t", "mail", priority=7, delay_ms=100)
    sq.enqueue(1, 0, "late-top", "t", "mail", priority=8, delay_ms=100)
    assert sq.job_status("mail", "t", "late-top")["priority"] == 8  # scheduled
    clock.advance(100)
    assert take_ids(sq, "mail", 4) == ["late-top", "high", "late-high", "low"]


def test_a_requeued_job_goes_to_the_front_of_its_priority(sq: SharQ, clock: Clock) -> None:
    """Back from an expired delivery, a failure or a release: in front of its own
    priority, behind every higher one."""
    sq.enqueue(1, 0, "low1", "t", "mail")
    sq.enqueue(1, 0, "low2", "t", "mail")
    assert sq.dequeue("mail")["job_id"] == "low1"
    sq.enqueue(1, 0, "top", "t", "mail", priority=9)
    clock.advance(1000)  # low1's delivery expires
    assert sq.requeue()["requeued"] == 1
    sq.enqueue(1, 0, "a", "t", "mail", priority=5)
    sq.enqueue(1, 0, "b", "t", "mail", priority=5)
    assert take_ids(sq, "mail", 2) == ["top", "a"]
    sq.fail("mail", "t", "a", error="boom")  # back, not dead
    assert sq.dequeue("mail")["job_id"] == "a"
    sq.fail("mail", "t", "a", release=True)
    sq.release("mail", sq.take("mail", 1)[0])  # handed back unseen
    assert take_ids(sq, "mail", 4) == ["a", "b", "low1", "low2"]


def test_a_retried_dead_letter_keeps_its_priority(sq: SharQ) -> None:
    sq.enqueue(1, 0, "urgent", "t", "mail", priority=3, requeue_limit=0)
    job = sq.dequeue("mail")
    sq.fail("mail", "t", "urgent", job["receipt"], dead=True)
    assert sq.dead_letters("mail")["jobs"][0]["priority"] == 3
    sq.enqueue(1, 0, "plain", "t", "mail")
    sq.retry_dead_letter("mail", "t", "urgent")
    assert take_ids(sq, "mail", 2) == ["urgent", "plain"]


def test_fairness_and_limits_between_queues_are_unchanged(sq: SharQ, clock: Clock) -> None:
    """Priority orders jobs inside a queue, never one tenant over another, and a
    queue's rate counts the same whatever the priority."""
    sq.enqueue(1, 1000, "a-low", "a", "mail")
    sq.enqueue(1, 1000, "b-low", "b", "mail")
    sq.enqueue(1, 1000, "a-top", "a", "mail", priority=9)
    jobs = [sq.dequeue("mail") for _ in range(2)]
    assert [(j["queue_id"], j["job_id"]) for j in jobs] == [("a", "a-top"), ("b", "b-low")]
    assert sq.dequeue("mail")["status"] == "failure"  # a's rate holds its next job
    clock.advance(1000)
    assert sq.dequeue("mail")["job_id"] == "a-low"


def test_clearing_a_queue_clears_every_priority(sq: SharQ) -> None:
    for i in range(5):
        sq.enqueue(i, 0, f"j{i}", "t", "mail", priority=i)
    sq.clear_queue("mail", "t")
    assert sq.get_queue_length("mail", "t") == 0
    assert sq.dequeue("mail")["status"] == "failure"
    sq.enqueue(1, 0, "again", "t", "mail", priority=2)
    assert sq.dequeue("mail")["job_id"] == "again"


def test_an_expired_job_leaves_its_priority(sq: SharQ, clock: Clock) -> None:
    """The requeue pass takes a lapsed job out of its priority's list."""
    sq.enqueue(1, 0, "otp", "t", "mail", priority=9, ttl_ms=100)
    sq.enqueue(1, 0, "news", "t", "mail")
    sq.pause("mail", "t")
    clock.advance(100)
    sq.requeue()
    assert sq.job_status("mail", "t", "otp")["state"] == "expired"
    view = sq.queue_info("mail", "t")
    assert (view["queue_length"], "priorities" in view) == (1, False)
    sq.resume("mail", "t")
    assert take_ids(sq, "mail", 1) == ["news"]


def test_a_cancelled_campaign_leaves_every_priority(sq: SharQ) -> None:
    sq.enqueue(1, 0, "promo-top", "t", "mail", priority=4, campaign="spring")
    sq.enqueue(1, 0, "promo", "t", "mail", campaign="spring")
    sq.enqueue(1, 0, "reset", "t", "mail", priority=4)
    sq.cancel_campaign("mail", "spring")
    view = sq.queue_info("mail", "t")
    assert (view["queue_length"], view["priorities"]) == (1, {"4": 1})
    assert take_ids(sq, "mail", 1) == ["reset"]
    assert sq.dequeue("mail")["status"] == "failure"


def test_a_burst_lists_a_queue_by_the_cost_of_its_highest_prioritys_head(sq: SharQ, clock: Clock) -> None:
    """With costs (issue 25): the job a take would hand out next is the head of the
    highest priority, so its cost says when the queue is due (not the head of the
    priority 0 list, empty here: it read 1 unit and listed the queue at once)."""
    sq.set_limits("mail", "t", interval=100, burst=3)
    sq.enqueue(1, 100, "a", "t", "mail")
    assert take_ids(sq, "mail", 1) == ["a"]
    sq.enqueue(1, 100, "big", "t", "mail", cost=3, priority=9)
    assert sq.queue_info("mail", "t")["next_ready_at"] == clock.now + 100  # 3 units: the state fully idle
    assert sq.dequeue("mail") == {"status": "failure", "retry_after_ms": 100}


def test_a_costly_job_the_rate_holds_stays_first_of_its_priority(sq: SharQ, clock: Clock) -> None:
    """A take that finds the head of the highest priority costlier than the rate
    allows yet puts it back in front of its own priority's list (it went to the
    priority 0 list, and the next job of its priority overtook it)."""
    sq.set_limits("mail", "t", interval=100, burst=3)
    sq.enqueue(1, 100, "a", "t", "mail")
    sq.enqueue(1, 100, "low", "t", "mail")
    assert take_ids(sq, "mail", 1) == ["a"]  # listed again by low's 1 unit: due now
    sq.enqueue(1, 100, "big", "t", "mail", cost=3, priority=9)
    sq.enqueue(1, 100, "next", "t", "mail", priority=9)
    assert sq.dequeue("mail") == {"status": "failure", "retry_after_ms": 100}  # big needs 3 units
    clock.advance(100)
    assert [job["job_id"] for job in sq.dequeue_many("mail", 10)["jobs"]] == ["big"]
    clock.advance(1000)
    assert [job["job_id"] for job in sq.dequeue_many("mail", 10)["jobs"]] == ["next", "low"]


def test_a_cheaper_job_of_a_higher_priority_goes_as_soon_as_the_rate_allows_it(sq: SharQ, clock: Clock) -> None:
    """A job that overtakes a costlier head of a lower priority (enqueued, or due
    after a delay) lists the queue anew by its own cost: the burst left holds it,
    so it goes now (the queue stayed listed by the costly head's time, and the
    overtaking job waited for it)."""
    sq.set_limits("mail", "t", interval=100, burst=4)
    sq.enqueue(1, 100, "first", "t", "mail")
    assert take_ids(sq, "mail", 1) == ["first"]  # 3 of the 4 units left
    sq.enqueue(1, 100, "big", "t", "mail", cost=4)
    assert sq.dequeue("mail") == {"status": "failure", "retry_after_ms": 100}
    sq.enqueue(1, 100, "small", "t", "mail", priority=9)
    assert sq.queue_info("mail", "t")["next_ready_at"] == clock.now
    assert take_ids(sq, "mail", 1) == ["small"]
    sq.enqueue(1, 100, "late", "t", "mail", priority=5, delay_ms=10)
    clock.advance(10)
    assert take_ids(sq, "mail", 1) == ["late"]
    assert sq.dequeue("mail")["status"] == "failure"  # big: its 4 units later


def test_a_job_back_above_a_costlier_head_goes_as_soon_as_the_rate_allows_it(sq: SharQ) -> None:
    """The same for a job back from a delivery or retried from the dead letters."""
    sq.set_limits("mail", "t", interval=100, burst=4)
    sq.enqueue(1, 100, "h", "t", "mail", priority=9)
    job = sq.dequeue("mail")
    sq.enqueue(1, 100, "big", "t", "mail", cost=4)
    assert sq.fail("mail", "t", "h", job["receipt"])["state"] == "queued"
    job = sq.dequeue("mail")
    assert job["job_id"] == "h"
    sq.fail("mail", "t", "h", job["receipt"], dead=True)
    sq.retry_dead_letter("mail", "t", "h")
    assert take_ids(sq, "mail", 1) == ["h"]


def test_a_job_of_a_higher_priority_the_quota_lets_go_is_not_held_by_a_costlier_one(sq: SharQ) -> None:
    """A quota holding a costly head until its window ends holds not a cheaper job
    that overtakes it: that one goes now, the costly one still waits."""
    sq.set_limits("mail", "t", quotas=[{"limit": 5, "window_ms": 60000}])
    sq.enqueue(1, 0, "first", "t", "mail", cost=2)
    assert take_ids(sq, "mail", 1) == ["first"]  # 3 units of the window left
    sq.enqueue(1, 0, "big", "t", "mail", cost=4)
    assert sq.dequeue("mail")["status"] == "failure"
    sq.enqueue(1, 0, "small", "t", "mail", priority=9)
    assert take_ids(sq, "mail", 1) == ["small"]
    assert sq.dequeue("mail")["status"] == "failure"


def test_an_on_done_job_keeps_the_queues_oldest_head(sq: SharQ, clock: Clock) -> None:
    """A campaign's on_done job (enqueue_done_job) joins priority 0 of a queue that
    holds jobs of a higher priority: the queue's oldest queued job stays the older
    one (it was taken for empty and its head time moved to the on_done job's)."""
    sq.enqueue(1, 0, "urgent", "reports", "sms", priority=9)
    sq.enqueue(1, 0, "a", "q1", "sms", campaign="spring")
    sq.set_on_done("sms", "spring", {"queue_type": "sms", "queue_id": "reports", "payload": None})
    job = sq.dequeue("sms")
    assert job["job_id"] == "a"
    clock.advance(500)
    sq.finish("a", "q1", "sms", job["receipt"])  # the finish that ends it enqueues the on_done job
    view = sq.queue_info("sms", "reports")
    assert (view["priorities"], view["oldest_queued_age_ms"]) == ({"9": 1, "0": 1}, 500)
    assert take_ids(sq, "sms", 2) == ["urgent", "campaign-done.spring"]


def test_a_job_back_from_a_delivery_keeps_the_queues_oldest_head(sq: SharQ, clock: Clock) -> None:
    """A job of priority 9 back in front of its priority (failed, released, or its
    delivery expired) does not hide an older job of another priority still queued:
    the queue's oldest queued job stays the older one (it was taken for the head,
    its enqueue time written over the older one's)."""
    sq.enqueue(1, 0, "old", "t", "mail")
    clock.advance(500)
    sq.enqueue(1, 0, "top", "t", "mail", priority=9)
    job = sq.dequeue("mail")
    assert sq.fail("mail", "t", "top", job["receipt"])["state"] == "queued"
    assert sq.queue_info("mail", "t")["oldest_queued_age_ms"] == 500
    assert sq.type_stats("mail")["oldest_queued_age_ms"] == 500
    sq.release("mail", sq.take("mail", 1)[0])
    assert sq.queue_info("mail", "t")["oldest_queued_age_ms"] == 500
    sq.take("mail", 1)
    clock.advance(1000)  # top's delivery expires
    assert sq.requeue()["requeued"] == 1
    assert sq.queue_info("mail", "t")["oldest_queued_age_ms"] == 1500
    assert take_ids(sq, "mail", 2) == ["top", "old"]


def test_a_type_without_priorities_pays_nothing_for_them(sq: SharQ, redis_client, single_redis) -> None:
    """A shard that never queued a job above priority 0 learns so from the settings
    read every enqueue and take makes anyway: no EXISTS of the priorities hash (one
    command more per call, measured by bench/single_calls.py), and once one is
    queued, the jobs above 0 are still found first."""

    def calls() -> None:
        sq.enqueue(1, 0, "a", "q", "plain")
        job = sq.dequeue("plain")
        sq.finish(job["job_id"], "q", "plain", job["receipt"])

    seen = commands_of(redis_client, calls)
    assert [command for command in seen if ":prio" in command] == []
    assert any("EVALSHA" in command for command in seen)
    sq.enqueue(1, 0, "b", "q", "plain")
    sq.enqueue(1, 0, "c", "q", "plain", priority=3)
    assert [sq.dequeue("plain")["job_id"] for _ in range(2)] == ["c", "b"]


def test_cost_and_priority_ride_together(sq: SharQ) -> None:
    """Both options in one record ("<limit>|c=3|p=7", see job_option): each is
    shown wherever the job is, and the job keeps its place by priority."""
    sq.enqueue(1, 0, "plain", "t", "mail")
    sq.enqueue(1, 0, "both", "t", "mail", cost=3, priority=7, campaign="spring")
    record = sq.redis.hget(sq.keys.jobs("mail", "t"), "both")
    assert record.split(b":")[1] == b"-1|c=3|p=7|g=spring"
    status = sq.job_status("mail", "t", "both")
    assert (status["state"], status["cost"], status["priority"], status["campaign"]) == ("queued", 3, 7, "spring")
    job = sq.dequeue("mail")
    assert (job["job_id"], job["cost"], job["priority"]) == ("both", 3, 7)
    status = sq.job_status("mail", "t", "both")
    assert (status["state"], status["cost"], status["priority"]) == ("active", 3, 7)


@pytest.mark.parametrize("priority", [10, -1, 1.5, "3", True])
def test_bad_priorities_are_refused_and_change_nothing(sq: SharQ, priority: object) -> None:
    with pytest.raises(BadArgumentException, match="priority"):
        sq.enqueue(1, 0, "j", "t", "mail", priority=priority)  # type: ignore[arg-type]
    jobs = [{"queue_id": "t", "job_id": "ok", "payload": 1, "interval": 0},
            {"queue_id": "t", "job_id": "bad", "payload": 1, "interval": 0, "priority": priority}]  # fmt: skip
    with pytest.raises(BadArgumentException, match=r"jobs\[1\]: priority"):
        sq.enqueue_many("mail", jobs)
    assert sq.get_queue_length("mail", "t") == 0


# -- over real HTTP: a sharq-server process on each Redis setup (6.2, 7, cluster) -------


@pytest.fixture
def server(server_on_setup: ServerProcess) -> ServerProcess:
    return server_on_setup


@pytest.mark.parametrize("shards", [1, 2])
def test_a_password_reset_overtakes_the_newsletter_over_http(server: ServerProcess, shards: int) -> None:
    if shards > 1:
        assert server.call("PUT", "/types/mail/", {"shards": shards})[0] == 200
    for i in range(3):
        body = {"job_id": f"news{i}", "payload": {"newsletter": i}, "interval": 0}
        assert server.call("POST", "/enqueue/mail/acme/", body)[0] == 201
    body = {"job_id": "reset", "payload": {"reset": "ann"}, "interval": 0, "priority": 9}
    assert server.call("POST", "/enqueue/mail/acme/", body)[0] == 201
    jobs = [{"queue_id": "acme", "job_id": f"receipt{i}", "payload": i, "interval": 0, "priority": 5} for i in range(2)]
    assert server.call("POST", "/enqueue/mail/", {"jobs": jobs})[0] == 200
    assert server.call("GET", "/job/mail/acme/reset/")[1]["priority"] == 9
    queue = server.call("GET", "/queue/mail/acme/")[1]
    assert (queue["queue_length"], queue["priorities"]) == (6, {"9": 1, "5": 2, "0": 3})
    status, body = server.call("GET", "/dequeue/mail/?count=6")
    assert status == 200, body
    taken = [(job["job_id"], job.get("priority", 0)) for job in body["jobs"]]
    expected = [("reset", 9), ("receipt0", 5), ("receipt1", 5), ("news0", 0), ("news1", 0), ("news2", 0)]
    assert taken == expected


BAD_OVER_HTTP = [10, -1, 1.5, "3", True]


def test_bad_priorities_get_a_400_over_http(server: ServerProcess) -> None:
    for priority in BAD_OVER_HTTP:
        body = {"job_id": "j", "payload": 1, "interval": 0, "priority": priority}
        status, answer = server.call("POST", "/enqueue/mail/t/", body)
        assert status == 400 and "priority" in answer["message"], (priority, answer)
        batch = {"jobs": [{**body, "queue_id": "t"}]}
        status, answer = server.call("POST", "/enqueue/mail/", batch)
        assert status == 400 and "priority" in answer["message"], (priority, answer)
        assert server.call("GET", "/job/mail/t/j/")[0] == 404  # nothing was stored


def test_the_python_client_gives_priorities(server: ServerProcess) -> None:
    client = Client(server.url)
    try:
        client.enqueue("mail", "t", "news", {"n": 1}, 0)
        client.enqueue("mail", "t", "reset", {"r": 1}, 0, priority=9)
        assert client.queue_info("mail", "t")["priorities"] == {"9": 1, "0": 1}
        assert [(job.job_id, job.priority) for job in client.dequeue("mail", count=2)] == [("reset", 9), ("news", 0)]
    finally:
        client.close()


def test_the_async_client_gives_priorities(server: ServerProcess) -> None:
    async def scenario() -> list[tuple[str, int]]:
        async with AsyncClient(server.url) as aclient:
            await aclient.enqueue("mail", "u", "news", 1, 0)
            await aclient.enqueue("mail", "u", "reset", 1, 0, priority=4)
            return [(job.job_id, job.priority) for job in await aclient.dequeue("mail", count=2)]

    assert asyncio.run(scenario()) == [("reset", 4), ("news", 0)]
