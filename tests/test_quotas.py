"""Issue 25.2: quotas over fixed windows, per queue and type-wide, in the take script."""

from __future__ import annotations

import pytest

from sharq_core import BadArgumentException, Conflict, SharQ
from tests.support import Clock, ServerProcess, commands_of

DAY = 86_400_000


def taken(sq: SharQ, count: int = 10) -> list[str]:
    return [job["job_id"] for job in sq.dequeue_many("t", count)["jobs"]]


def test_a_queue_quota_holds_it_until_its_window_resets(sq: SharQ, clock: Clock) -> None:
    sq.set_limits("t", "q", quotas=[{"limit": 5, "window_ms": 1000}])
    for n, cost in enumerate([2, 2, 2]):
        sq.enqueue(n, 0, f"j{n}", "q", "t", cost=cost)
    sq.enqueue(9, 0, "other", "free", "t")
    reset = clock.now - clock.now % 1000 + 1000
    assert sorted(taken(sq)) == ["j0", "j1", "other"]  # 4 of 5 units; j2 needs 2: held, the others still go
    assert sq.dequeue("t") == {"status": "failure", "retry_after_ms": reset - clock.now}
    assert sq.queue_info("t", "q")["next_ready_at"] == reset  # out of the ready set until then
    quota = sq.limits("t", "q")["limits"]["quotas"]
    assert quota == [{"limit": 5, "window_ms": 1000, "offset_ms": 0, "used": 4, "remaining": 1, "resets_at": reset}]
    clock.advance(reset - clock.now - 1)
    assert taken(sq) == []
    clock.advance(1)
    assert taken(sq) == ["j2"]
    assert sq.limits("t", "q")["limits"]["quotas"][0]["used"] == 2


def test_a_take_under_a_quota_counts_each_window_with_one_command(sq: SharQ, redis_client, single_redis) -> None:
    """A take counts a job in each window with one HINCRBY on the window's own field
    and reads nothing first (bench/single_calls.py quota: 31.50 commands a take
    that read and wrote each window, and read it twice at first); the first count
    of a window also notes its start, to drop its field once the next one begins."""
    sq.set_limits("t", "q", quotas=[{"limit": 100, "window_ms": DAY}, {"limit": 50, "window_ms": 1000}])
    sq.enqueue(1, 0, "j1", "q", "t", cost=3)
    sq.enqueue(1, 0, "j2", "q", "t", cost=3)

    def used_calls() -> list[str]:
        calls = commands_of(redis_client, lambda: sq.dequeue("t"))
        return sorted(command.split()[0] for command in calls if ":used" in command)

    assert used_calls() == ["HGET", "HGET", "HINCRBY", "HINCRBY", "HSET", "HSET"]  # the windows' first counts
    assert used_calls() == ["HINCRBY", "HINCRBY"]
    assert [quota["used"] for quota in sq.limits("t", "q")["limits"]["quotas"]] == [6, 6]


def test_a_new_window_drops_the_last_ones_count(sq: SharQ, clock: Clock, redis_client) -> None:
    """Each window's count is a field of its own; the first count of the next
    window drops it, so "<base>:used" holds one window per quota, not one per
    window that ever was."""
    sq.set_limits("t", "q", quotas=[{"limit": 100, "window_ms": 1000}])
    for n in range(3):
        sq.enqueue(1, 0, f"j{n}", "q", "t")
        assert taken(sq) == [f"j{n}"]
        fields = [key for key in redis_client.hkeys(sq.keys.quota_use("t"))]
        assert len(fields) == 2, fields  # the window's count and its start
        clock.advance(1000)
    assert sq.limits("t", "q")["limits"]["quotas"][0]["used"] == 0


def test_a_clock_stepped_back_a_window_keeps_the_current_windows_count(sq: SharQ, clock: Clock) -> None:
    """A count in the window before the last one counted (Redis's clock stepped
    back over a window's start: a failover to a replica whose clock lags) dropped
    the last window's count as if it were over: once the clock was forward again,
    that window handed out its limit anew."""
    clock.advance(-clock.now % 1000)
    sq.set_type_limits("t", quotas=[{"limit": 2, "window_ms": 1000}])
    for queue in ("a", "b"):
        sq.enqueue(0, 0, queue, queue, "t")
    assert taken(sq) == ["a", "b"]
    clock.advance(-1)  # the window before, which counted nothing
    for queue in ("c", "d"):
        sq.enqueue(0, 0, queue, queue, "t")
    assert taken(sq) == ["c", "d"]
    clock.advance(1)
    assert sq.type_limits("t")["limits"]["quotas"][0]["used"] == 2
    sq.enqueue(0, 0, "e", "e", "t")
    assert taken(sq) == []


def test_every_window_must_have_the_cost_left_and_offset_moves_the_reset(sq: SharQ, clock: Clock) -> None:
    quotas = [{"limit": 3, "window_ms": 1000}, {"limit": 4, "window_ms": DAY, "offset_ms": -28_800_000}]
    sq.set_limits("t", "q", quotas=quotas)
    for n in range(6):
        sq.enqueue(n, 0, f"j{n}", "q", "t")
    assert len(taken(sq)) == 3
    clock.advance(1000)
    assert len(taken(sq)) == 1  # the day allows one more
    day = sq.limits("t", "q")["limits"]["quotas"][1]
    assert (day["remaining"], (day["resets_at"] + 28_800_000) % DAY) == (0, 0)  # midnight UTC-8
    assert sq.dequeue("t")["retry_after_ms"] == day["resets_at"] - clock.now


def test_each_window_counts_its_own_units(sq: SharQ, clock: Clock) -> None:
    """A quota set anew with another window_ms counts from 0 (its window counted
    nothing), though it began at the same ms; the same window set again keeps its count."""
    clock.advance(-clock.now % 2000)  # where a 1 s and a 2 s window begin together
    sq.set_limits("t", "q", quotas=[{"limit": 3, "window_ms": 1000}])
    sq.enqueue(0, 0, "a", "q", "t", cost=2)
    sq.enqueue(1, 0, "b", "q", "t", cost=5)
    assert taken(sq) == ["a"]
    sq.set_limits("t", "q", quotas=[{"limit": 6, "window_ms": 2000}])
    assert sq.limits("t", "q")["limits"]["quotas"][0]["used"] == 0
    assert taken(sq) == ["b"]
    sq.set_limits("t", "q", quotas=[{"limit": 3, "window_ms": 1000}])
    assert sq.limits("t", "q")["limits"]["quotas"][0]["used"] == 2


def test_a_type_quota_counts_every_queues_units(sq: SharQ, clock: Clock) -> None:
    sq.set_type_limits("t", quotas=[{"limit": 4, "window_ms": 60_000}])
    sq.enqueue(0, 0, "a", "q1", "t", cost=3)
    sq.enqueue(1, 0, "b", "q2", "t", cost=2)
    assert taken(sq) == ["a"]
    reset = clock.now - clock.now % 60_000 + 60_000
    assert sq.dequeue("t")["retry_after_ms"] == reset - clock.now
    assert sq.type_limits("t")["limits"]["quotas"][0]["used"] == 3
    clock.advance(reset - clock.now)
    assert taken(sq) == ["b"]


def test_the_type_quota_judges_the_job_that_goes_not_a_held_queues_head(sq: SharQ, clock: Clock) -> None:
    """A queue its own quota holds leaves the ready set; its head, costing more than
    the type has left, must not stop the take for a queue whose job fits (the take
    once judged the type's quota on that head first and held every queue to midnight)."""
    sq.set_limits("t", "a", quotas=[{"limit": 3, "window_ms": DAY}])
    sq.set_type_limits("t", quotas=[{"limit": 5, "window_ms": DAY}])
    for n, cost in enumerate([2, 1, 5]):
        sq.enqueue(n, 0, f"a{n}", "a", "t", cost=cost)
    sq.enqueue(9, 0, "b0", "b", "t")
    assert taken(sq) == ["a0", "a1", "b0"]  # a's day is used up; b0 fits the type's 2 units left
    reset = clock.now - clock.now % DAY + DAY
    assert sq.queue_info("t", "a")["quota_held_until"] == reset


def test_an_expired_head_does_not_hold_the_type(sq: SharQ, clock: Clock) -> None:
    """A job past its deadline is dropped by the take that meets it, whatever it
    costs: the type's quota judges the next one (the take once judged the expired
    job's cost first and held the type until midnight, never expiring it)."""
    sq.set_type_limits("t", quotas=[{"limit": 5, "window_ms": DAY}])
    sq.enqueue(0, 0, "first", "a", "t", cost=2)
    assert taken(sq) == ["first"]
    sq.enqueue(1, 0, "late", "a", "t", cost=5, ttl_ms=10)
    sq.enqueue(2, 0, "b0", "b", "t")
    clock.advance(10)
    assert taken(sq) == ["b0"]
    assert sq.type_stats("t")["counters"]["expired"] == 1


def test_a_higher_real_cost_counts_against_the_quota(sq: SharQ) -> None:
    sq.set_limits("t", "q", quotas=[{"limit": 100, "window_ms": 60_000}])
    sq.enqueue(0, 0, "a", "q", "t", cost=10)
    job = sq.dequeue("t")
    sq.finish_job("a", "q", "t", job["receipt"], cost=70)
    assert sq.limits("t", "q")["limits"]["quotas"][0]["remaining"] == 30


def test_null_clears_quotas(sq: SharQ) -> None:
    sq.set_limits("t", "q", quotas=[{"limit": 1, "window_ms": 60_000}])
    for n in range(2):
        sq.enqueue(n, 0, f"j{n}", "q", "t")
    assert taken(sq) == ["j0"]
    assert "quotas" not in sq.set_limits("t", "q", quotas=None)["limits"]
    assert taken(sq) == ["j1"]


@pytest.mark.parametrize(
    ("quotas", "message"),
    [
        ([{"limit": 0, "window_ms": 1000}], "quotas[0]: limit must be an integer from 1"),
        ([{"limit": 1, "window_ms": 999}], "quotas[0]: window_ms must be an integer from 1000 to 2678400000"),
        ([{"limit": 1, "window_ms": 1000}] * 4, "quotas must be a list of 1 to 3 windows"),
        ([{"limit": 1, "window_ms": 1000, "every": 1}], "quotas[0]: unknown field 'every'"),
        ([], "quotas must be a list of 1 to 3 windows"),
        # one count per window_ms and offset_ms: twice, every job counted twice
        (
            [{"limit": 10, "window_ms": DAY}, {"limit": 5, "window_ms": DAY}],
            "quotas[1]: same window_ms and offset_ms as quotas[0]",
        ),
    ],
)
def test_bad_quotas_are_refused_and_change_nothing(sq: SharQ, quotas, message: str) -> None:
    with pytest.raises(BadArgumentException, match=message.replace("[", r"\[").replace("]", r"\]")):
        sq.set_limits("t", "q", quotas=quotas)
    with pytest.raises(BadArgumentException):
        sq.set_type_limits("t", quotas=quotas)
    assert "quotas" not in sq.limits("t", "q")["limits"]
    assert "quotas" not in sq.type_limits("t")["limits"]


def test_quotas_over_http(tmp_path) -> None:
    server = ServerProcess(str(tmp_path / "data"), workers=1).start()
    try:
        status, body = server.call("PUT", "/limits/sms/q/", {"quotas": [{"limit": 0, "window_ms": 1000}]})
        assert status == 400 and "limit" in body["message"]
        status, body = server.call("PUT", "/limits/sms/", {"quotas": [{"limit": 2, "window_ms": 999}]})
        assert status == 400 and "window_ms" in body["message"]
        status, body = server.call("PUT", "/limits/sms/q/", {"quotas": [{"limit": 1, "window_ms": DAY}]})
        assert status == 200 and body["limits"]["quotas"][0]["remaining"] == 1
        assert server.call("PUT", "/limits/sms/", {"quotas": [{"limit": 9, "window_ms": 60_000}]})[0] == 200
        for job_id in ("a", "b"):
            server.call("POST", "/enqueue/sms/q/", {"job_id": job_id, "payload": 1, "interval": 0})
        assert server.call("GET", "/dequeue/sms/")[1]["job_id"] == "a"
        status, body = server.call("GET", "/dequeue/sms/")
        assert status == 404 and 0 < body["retry_after_ms"] <= DAY
        assert server.call("GET", "/limits/sms/")[1]["limits"]["quotas"][0]["used"] == 1
        assert "quotas" not in server.call("PUT", "/limits/sms/q/", {"quotas": None})[1]["limits"]
    finally:
        server.stop()


def test_prometheus_shows_a_types_quota_remaining(sq: SharQ) -> None:
    from sharq_server.prometheus import registry_for

    sq.set_type_limits("t", quotas=[{"limit": 10, "window_ms": 60_000}])
    sq.enqueue(0, 0, "a", "q", "t", cost=4)
    sq.dequeue("t")
    registry = registry_for(sq)
    assert registry.get_sample_value("sharq_type_quota_remaining", {"queue_type": "t", "window_ms": "60000"}) == 6


def test_a_sharded_types_quota_is_split_and_queue_quotas_stay_exact(sq: SharQ) -> None:
    sq.set_type_settings("t", 2)
    sq.set_type_limits("t", quotas=[{"limit": 4, "window_ms": 60_000}])  # 2 per shard
    sq.set_limits("t", "q0", quotas=[{"limit": 1, "window_ms": 60_000}])
    for q in range(8):
        sq.enqueue(0, 0, "a", f"q{q}", "t")
        sq.enqueue(1, 0, "b", f"q{q}", "t")
    got = [job["queue_id"] for job in sq.dequeue_many("t", 100)["jobs"]]
    assert len(got) <= 4 and got.count("q0") <= 1
    assert sq.dequeue("t")["status"] == "failure"


def test_a_queue_with_quotas_alone_keeps_the_type_from_changing_its_shard_count(sq: SharQ) -> None:
    """Its quota and the units it used live on its shard: a change of the count
    would leave them behind, so it is refused (as queue limits are) until cleared."""
    sq.set_limits("t", "q", quotas=[{"limit": 5, "window_ms": 1000}])
    with pytest.raises(Conflict, match="quotas of their own"):
        sq.set_type_settings("t", 2)
    assert sq.limits("t", "q")["limits"]["quotas"][0]["limit"] == 5
    assert sq.type_settings("t")["shards"] == 1
    sq.set_limits("t", "q", quotas=None)
    assert sq.set_type_settings("t", 2)["shards"] == 2


def test_units_a_type_used_stay_counted_when_its_shard_count_changes(sq: SharQ) -> None:
    """The type-wide units used so far move to the new shards, each taking its
    share rounded up: a change never hands out more than the window allows."""
    sq.set_type_limits("t", quotas=[{"limit": 10, "window_ms": DAY}])
    for n in range(6):
        sq.enqueue(n, 0, f"a{n}", f"q{n}", "t")
    for job in sq.dequeue_many("t", 10)["jobs"]:
        sq.finish(job["job_id"], job["queue_id"], "t")
    sq.set_type_settings("t", 2)
    for n in range(10):
        sq.enqueue(n, 0, f"b{n}", f"q{n}", "t")
    assert len(taken(sq, 20)) <= 4  # 10 - 6 left; each shard 5 less its 3 of the 6


def test_a_queues_cleared_quota_use_moves_with_it_when_the_shard_count_changes(sq: SharQ, redis_client) -> None:
    """What a queue used stays counted until its window ends, its quotas cleared and
    set again; across a change of the shard count too: it moves to the queue's new
    shard (it stayed on the old one, read by nobody: the quota set again counted
    from 0, and a shard that went kept its "<base>:used" for good)."""
    sq.set_type_settings("t", 2)
    old = sq._layout("t").names()
    queues = [f"q{n}" for n in range(6)]  # on both shards
    type_quota = [{"limit": 100, "window_ms": DAY}]
    sq.set_type_limits("t", quotas=type_quota)
    for queue in queues:
        sq.set_limits("t", queue, quotas=[{"limit": 1, "window_ms": DAY}])
        sq.enqueue(0, 0, "a", queue, "t")
    for job in sq.dequeue_many("t", 10)["jobs"]:
        sq.finish(job["job_id"], job["queue_id"], "t")
    for queue in queues:
        sq.set_limits("t", queue, quotas=None)
    sq.set_type_limits("t", quotas=None)  # the type's too: it was not carried then
    sq.set_type_settings("t", 1)
    assert [redis_client.exists(sq.keys.quota_use(shard)) for shard in old] == [0, 0]
    assert sq.set_type_limits("t", quotas=type_quota)["limits"]["quotas"][0]["used"] == 6
    for queue in queues:
        sq.set_limits("t", queue, quotas=[{"limit": 1, "window_ms": DAY}])
        assert sq.limits("t", queue)["limits"]["quotas"][0]["used"] == 1
        sq.enqueue(1, 0, "b", queue, "t")
    assert taken(sq) == []  # each queue's day is used up


def test_a_queue_shows_its_quota_use_and_how_many_queues_a_quota_holds(tmp_path) -> None:
    """GET /queue/ and the /queues/ rows say when a queue's own quota lets its next
    job go; /stats/ and Prometheus count the queues a quota holds."""
    with ServerProcess(str(tmp_path / "data"), workers=1).start() as server:
        server.call("PUT", "/limits/sms/q/", {"quotas": [{"limit": 1, "window_ms": DAY}]})
        for queue_id, job_id in (("q", "a"), ("q", "b"), ("free", "c")):
            server.call("POST", f"/enqueue/sms/{queue_id}/", {"job_id": job_id, "payload": 1, "interval": 0})
        assert server.call("GET", "/queue/sms/q/")[1]["quota_held_until"] is None  # 1 unit left: not held
        assert {server.call("GET", "/dequeue/sms/")[1]["job_id"] for _ in range(2)} == {"a", "c"}
        assert server.call("GET", "/dequeue/sms/")[0] == 404  # b: held by the day's quota
        status, queue = server.call("GET", "/queue/sms/q/")
        (quota,) = queue["limits"]["quotas"]
        assert status == 200 and (quota["used"], quota["remaining"]) == (1, 0)
        assert queue["quota_held_until"] == quota["resets_at"] == queue["next_ready_at"]
        rows = {row["queue_id"]: row for row in server.call("GET", "/queues/sms/")[1]["queues"]}
        assert (rows["q"]["quota_held_until"], rows["free"]["quota_held_until"]) == (quota["resets_at"], None)
        assert "quotas" not in rows["free"]["limits"]
        assert server.call("GET", "/stats/sms/")[1]["queues"]["quota_held"] == 1
        assert 'sharq_queues{queue_type="sms",state="quota_held"} 1.0' in server.scrape()
        server.call("PUT", "/limits/sms/q/", {"quotas": None})  # cleared: no longer held
        assert server.call("GET", "/stats/sms/")[1]["queues"]["quota_held"] == 0
        assert server.call("GET", "/queue/sms/q/")[1]["quota_held_until"] is None


def test_a_hold_stops_counting_when_its_window_resets(sq: SharQ, clock: Clock) -> None:
    sq.set_limits("t", "q", quotas=[{"limit": 1, "window_ms": 1000}])
    for job_id in ("a", "b"):
        sq.enqueue(0, 0, job_id, "q", "t")
    assert taken(sq) == ["a"]
    reset = clock.now - clock.now % 1000 + 1000
    assert (sq.type_stats("t")["queues"]["quota_held"], sq.queue_info("t", "q")["quota_held_until"]) == (1, reset)
    clock.advance(reset - clock.now)
    assert (sq.type_stats("t")["queues"]["quota_held"], sq.queue_info("t", "q")["quota_held_until"]) == (0, None)
    assert taken(sq) == ["b"]


def test_a_long_poll_parked_on_a_held_queue_wakes_when_its_window_resets(tmp_path) -> None:
    with ServerProcess(str(tmp_path / "data"), workers=1).start() as server:
        server.call("PUT", "/limits/sms/q/", {"quotas": [{"limit": 1, "window_ms": 1000}]})
        for job_id in ("a", "b"):
            server.call("POST", "/enqueue/sms/q/", {"job_id": job_id, "payload": 1, "interval": 0})
        assert server.call("GET", "/dequeue/sms/")[1]["job_id"] == "a"
        status, job = server.call("GET", "/dequeue/sms/?wait=10", timeout=15)
        assert (status, job["job_id"]) == (200, "b")  # within the second the window had left, not the 10 s
        assert server.call("GET", "/limits/sms/q/")[1]["limits"]["quotas"][0]["used"] == 1


def test_a_cleared_queue_no_longer_counts_as_held(sq: SharQ) -> None:
    sq.set_limits("t", "q", quotas=[{"limit": 1, "window_ms": DAY}])
    for job_id in ("a", "b"):
        sq.enqueue(0, 0, job_id, "q", "t")
    assert taken(sq) == ["a"]
    assert sq.type_stats("t")["queues"]["quota_held"] == 1
    sq.clear_queue("t", "q")
    assert (sq.type_stats("t")["queues"]["quota_held"], sq.queue_info("t", "q")["quota_held_until"]) == (0, None)
