"""Long-poll dequeue (issue 9): wake-ups, deadlines, order, hand-out on time,
shutdown and vanished clients, on real Redis and real servers."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from sharq_client import Client, TooManyWaiting
from sharq_core import Config, RedisSettings, SharQ
from sharq_server.embedded import EmbeddedRedis, redis_executable
from sharq_server.longpoll import LongPoll
from tests.support import ServerProcess, free_port, http, wait_for

JOB = {"payload": 1, "interval": 0}


@pytest.fixture
def longpoll(config: Config, redis_client):
    poll = LongPoll(SharQ(config))
    yield poll
    poll.close()


def park(poll: LongPoll, results: list, count: int = 1, wait: int = 10) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.append(poll.take("t", count, wait)), daemon=True)
    thread.start()
    return thread


def parked(poll: LongPoll, n: int) -> None:
    wait_for(lambda: len(poll._lines.get("t", ())) == n, what=f"{n} parked request(s)")


def test_an_enqueue_wakes_a_parked_request(longpoll: LongPoll) -> None:
    got: list = []
    thread = park(longpoll, got)
    parked(longpoll, 1)
    started = time.monotonic()
    longpoll.engine.enqueue(1, 0, "a", "q", "t")
    thread.join(5)
    assert [job.job_id for job in got[0][0]] == ["a"]
    assert time.monotonic() - started < 1


def test_waiters_are_served_first_come_first_served(longpoll: LongPoll) -> None:
    results: dict[str, list] = {name: [] for name in "abc"}
    threads = []
    for n, name in enumerate("abc"):
        threads.append(park(longpoll, results[name]))
        parked(longpoll, n + 1)
    for n in range(3):
        longpoll.engine.enqueue(n, 0, f"j{n}", "q", "t")
        threads[n].join(5)
    assert [results[name][0][0][0].job_id for name in "abc"] == ["j0", "j1", "j2"]


def test_the_wait_ends_with_nothing(longpoll: LongPoll) -> None:
    started = time.monotonic()
    assert longpoll.take("t", 1, 1) == ([], None)
    assert 0.9 < time.monotonic() - started < 2


@pytest.mark.parametrize("event", ["requeue", "fail", "dead_retry", "interval"])
def test_every_way_a_job_becomes_ready_wakes(longpoll: LongPoll, event: str) -> None:
    sq = longpoll.engine
    sq.enqueue(1, 0 if event != "interval" else 60_000, "a", "q", "t", requeue_limit=0 if event == "dead_retry" else 5)
    first = sq.dequeue("t")
    if event == "interval":
        sq.enqueue(2, 60_000, "b", "q", "t")
    elif event == "dead_retry":
        sq.fail("t", "q", "a", dead=True)
    got: list = []
    thread = park(longpoll, got)
    parked(longpoll, 1)
    if event == "requeue":
        sq.touch("a", "q", "t")  # still active: only the expiry brings it back
        sq.redis.zadd(sq.keys.active("t"), {"q:a": 0})  # expire it now
        sq.requeue()
    elif event == "fail":
        sq.fail("t", "q", "a", receipt=first["receipt"], error="boom")
    elif event == "dead_retry":
        sq.retry_dead_letter("t", "q", "a")
    else:
        sq.interval(0, "q", "t")
    thread.join(5)
    assert got and got[0][0], f"{event} did not wake the parked request"


@pytest.mark.parametrize("control", ["delayed", "paused", "capped"])
def test_tenant_controls_wake_parked_requests_on_time(longpoll: LongPoll, control: str) -> None:
    """Issue 10: a delayed job coming due, a resumed queue and a freed slot wake a
    parked request (the first two without any other event)."""
    sq = longpoll.engine
    if control == "delayed":
        sq.enqueue(1, 0, "a", "q", "t", delay_ms=300)
    elif control == "paused":
        sq.pause("t", "q", for_ms=300)
        sq.enqueue(1, 0, "a", "q", "t")
    else:
        sq.set_limits("t", "q", max_active=1)
        for job in ("held", "a"):
            sq.enqueue(1, 0, job, "q", "t")
        held = sq.dequeue("t")
    started = time.monotonic()
    got: list = []
    thread = park(longpoll, got, wait=5)
    parked(longpoll, 1)
    if control == "capped":
        sq.finish("held", "q", "t", receipt=held["receipt"])
    thread.join(5)
    assert [job.job_id for job in got[0][0]] == ["a"]
    elapsed = time.monotonic() - started
    assert (0.25 < elapsed < 1.5) if control != "capped" else elapsed < 1.5


def test_a_rate_limited_queue_is_handed_out_at_its_due_time(longpoll: LongPoll) -> None:
    sq = longpoll.engine
    for job in ("a", "b"):
        sq.enqueue(job, 300, job, "q", "t")
    first = sq.dequeue("t")
    jobs, _ = longpoll.take("t", 1, 5)
    gap = jobs[0].dequeued_at - first["dequeued_at"]
    assert 300 <= gap < 400, gap


@pytest.mark.parametrize("hold", ["queue rate", "type rate", "type paused"])
def test_a_hold_longer_than_the_liveness_check_ends_on_time(longpoll: LongPoll, hold: str) -> None:
    """Found by review: a poll naps at most ALIVE_CHECK_S (1 s) between liveness
    checks, and measured each nap against the due time in ms the last take gave,
    never counting down: a job due in over a second (a queue's or the type's rate,
    a type paused for_ms) went out at the poll's deadline, not when due."""
    sq = longpoll.engine
    if hold == "type rate":
        sq.set_type_limits("t", interval=1500)
    for job in ("a", "b"):
        sq.enqueue(job, 1500 if hold == "queue rate" else 0, job, "q" if hold == "queue rate" else "q" + job, "t")
    first = sq.dequeue("t")
    if hold == "type paused":
        sq.pause("t", for_ms=1500)
    jobs, _ = longpoll.take("t", 1, 8)
    gap = jobs[0].dequeued_at - first["dequeued_at"]
    assert 1500 <= gap < 4000, gap  # when due, give or take a loaded machine; at the deadline it was 8,000


def test_a_type_pause_ending_by_itself_lets_a_parked_poll_go(longpoll: LongPoll) -> None:
    """Found in a full-suite run (the test above, "type paused", went out at the
    8 s deadline): the type pause's key expires on Redis's clock, frozen at a
    script's start, while the dequeue script reads `now` with TIME later, so for a
    ms or so the key was there with its end passed. The take then answered no due
    time (-1 ms), and the poll waited for an announcement that a pause ending by
    itself never makes. Here that moment is held: an end just passed, its key
    still there."""
    sq = longpoll.engine
    sq.enqueue(1, 0, "a", "q", "t")
    sq.redis.set(sq.keys.type_paused("t"), sq._redis_time() - 1, px=10_000)
    started = time.monotonic()
    jobs, _ = longpoll.take("t", 1, 3)
    assert [job.job_id for job in jobs] == ["a"]
    assert time.monotonic() - started < 1


def test_a_client_gone_gets_no_job(longpoll: LongPoll) -> None:
    alive = threading.Event()
    alive.set()
    got: list = []
    thread = threading.Thread(target=lambda: got.append(longpoll.take("t", 1, 10, alive.is_set)), daemon=True)
    thread.start()
    parked(longpoll, 1)
    alive.clear()  # the client hangs up
    longpoll.engine.enqueue(1, 0, "a", "q", "t")
    thread.join(5)
    assert got == [([], None)]
    assert longpoll.engine.job_status("t", "q", "a")["state"] == "queued"


def test_close_answers_every_parked_request(longpoll: LongPoll) -> None:
    results: list = []
    threads = [park(longpoll, results, wait=30) for _ in range(5)]
    parked(longpoll, 5)
    started = time.monotonic()
    longpoll.close()
    for thread in threads:
        thread.join(5)
    assert results == [([], None)] * 5
    assert time.monotonic() - started < 1


# -- through real servers -----------------------------------------------------------


@pytest.fixture
def server(tmp_path):
    server = ServerProcess(str(tmp_path / "data"), workers=2).start()
    yield server
    server.stop()


def test_two_hundred_parked_requests_share_two_hundred_jobs(server: ServerProcess) -> None:
    with ThreadPoolExecutor(200) as pool:
        polls = [pool.submit(http, "GET", f"{server.url}/dequeue/t/?wait=20", timeout=30) for _ in range(200)]
        for start in range(0, 200, 100):
            jobs = [{"queue_id": f"q{n % 20}", "job_id": f"j{n}", **JOB} for n in range(start, start + 100)]
            assert server.call("POST", "/enqueue/t/", {"jobs": jobs})[0] == 200
        answers = [poll.result() for poll in polls]
    assert {status for status, _ in answers} == {200}
    taken = sorted(body["job_id"] for _, body in answers)
    assert taken == sorted(f"j{n}" for n in range(200))


def test_wake_up_crosses_workers_and_instances(server: ServerProcess, tmp_path) -> None:
    other = ServerProcess(str(tmp_path / "other"), workers=1, env={"SHARQ_REDIS_URL": _redis_url(server)}).start()
    try:
        with ThreadPoolExecutor(4) as pool:
            polls = [pool.submit(http, "GET", f"{server.url}/dequeue/t/?wait=10", timeout=20) for _ in range(4)]
            for n in range(4):
                started = time.monotonic()
                assert other.call("POST", f"/enqueue/t/q{n}/", {"job_id": f"j{n}", **JOB})[0] == 201
            answers = [poll.result() for poll in polls]
        assert sorted(body["job_id"] for _, body in answers) == ["j0", "j1", "j2", "j3"]
        assert time.monotonic() - started < 5
    finally:
        other.stop()


def _redis_url(server: ServerProcess) -> str:
    return f"unix://{server.data_dir}/redis.sock?db=0"


def test_sigterm_answers_parked_requests_promptly(tmp_path) -> None:
    server = ServerProcess(str(tmp_path / "data"), workers=1).start()
    with ThreadPoolExecutor(10) as pool:
        polls = [pool.submit(http, "GET", f"{server.url}/dequeue/t/?wait=30", timeout=40) for _ in range(10)]
        wait_for(lambda: server.call("GET", "/deepstatus/")[1]["parked"] == 10, what="10 parked requests")
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        answers = [poll.result() for poll in polls]
    answered = time.monotonic() - started
    assert {status for status, _ in answers} == {404}
    assert server.process.wait(20) == 0
    print(f"\n10 parked requests answered {answered * 1000:.0f} ms after SIGTERM")
    assert answered < 2
    assert "Traceback" not in server.log()


def test_a_vanished_long_poll_takes_nothing(server: ServerProcess) -> None:
    """A client gone while parked is handed nothing: the server sees it gone before
    the take, or (the FIN arriving just after) before writing, and then puts the job
    back at once, uncounted. Either way the next poll gets it now, with no requeue
    spent (requeue_limit 0: one spent would have dead-lettered it)."""
    with socket.create_connection(("127.0.0.1", server.port)) as gone:
        gone.sendall(b"GET /dequeue/t/?wait=20 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: any(server.call("GET", "/deepstatus/")[1]["parked"] for _ in range(4)), what="it to park")
    assert server.call("POST", "/enqueue/t/q/", {"job_id": "a", **JOB, "requeue_limit": 0})[0] == 201
    status, job = http("GET", f"{server.url}/dequeue/t/?wait=5")
    assert (status, job["job_id"], job["requeues_remaining"]) == (200, "a", 0)
    counts = server.call("GET", "/metrics/t/q/")[1]["dequeue_counts"]
    assert sum(counts.values()) in (1, 2)  # 2: taken for the gone client, then put back at once


def test_long_polls_beyond_the_cap_are_refused_not_stalling_others(tmp_path) -> None:
    """gunicorn serves worker_connections connections per worker; parked polls may
    hold 90% of them. One more is answered 429 with Retry-After at once (or given
    a job that is ready), and other clients are still served; an ack-and-take
    past the cap answers its acks (they were applied) rather than being refused."""
    env = {"SHARQ_WORKER_CONNECTIONS": "20"}
    server = ServerProcess(str(tmp_path / "data"), workers=1, env=env).start()
    try:
        with ThreadPoolExecutor(18) as pool:
            polls = [pool.submit(http, "GET", f"{server.url}/dequeue/t/?wait=20", timeout=30) for _ in range(18)]
            wait_for(lambda: server.call("GET", "/deepstatus/")[1]["parked"] == 18, what="18 parked polls")
            started = time.monotonic()
            status, body = server.call("GET", "/dequeue/t/?wait=20")
            assert (status, body["reason"]) == (429, "long_polls_full")
            assert body["message"] == "18 long polls already wait in this server process; retry shortly"
            with pytest.raises(TooManyWaiting):
                Client(server.url).dequeue("t", wait=20)
            assert server.call("POST", "/enqueue/u/other/", {"job_id": "x", **JOB})[0] == 201
            job = server.call("GET", "/dequeue/u/")[1]
            ack = {"jobs": [{"queue_id": "other", "job_id": "x", "receipt": job["receipt"]}]}
            status, body = server.call("POST", "/finish/u/?next=1&wait=20", ack)
            assert (status, body["results"][0]["status"], body["jobs"]) == (200, "success", [])
            assert time.monotonic() - started < 2
            assert server.call("GET", "/")[0] == 200
            jobs = [{"queue_id": "q", "job_id": f"j{n}", **JOB} for n in range(19)]
            assert server.call("POST", "/enqueue/t/", {"jobs": jobs})[0] == 200
            assert {poll.result()[0] for poll in polls} == {200}
        status, body = server.call("GET", "/dequeue/t/?wait=20")
        assert (status, body["job_id"]) == (200, "j18")
    finally:
        server.stop()


def test_parked_polls_answer_at_once_when_redis_goes_away(tmp_path) -> None:
    """The listener losing Redis wakes the parked polls: each asks Redis and fails
    now (a 503 over HTTP), instead of sitting out its whole wait."""
    own = EmbeddedRedis(str(tmp_path / "redis"), port=free_port(), executable=redis_executable())
    own.start()
    settings = RedisSettings(url=own.url, socket_timeout=1.0, embedded=False)
    poll = LongPoll(SharQ(Config(redis=settings)))
    errors: list[BaseException] = []

    def park() -> None:
        try:
            poll.take("t", 1, 30)
        except redis.RedisError as error:
            errors.append(error)

    threads = [threading.Thread(target=park, daemon=True) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: poll.parked == 3, what="three parked polls")
        started = time.monotonic()
        own.stop()
        for thread in threads:
            thread.join(10)
        assert len(errors) == 3
        assert time.monotonic() - started < 5  # not the 30 s they asked to wait
    finally:
        poll.close()
        own.stop()


def test_purging_the_job_that_held_the_type_cap_wakes_a_parked_poll(longpoll: LongPoll) -> None:
    """Found by review: a purge that frees a type-wide max_active slot announces it,
    as a finish does; the parked poll used to sit out its whole wait."""
    engine = longpoll.engine
    engine.set_type_limits("t", max_active=1)
    engine.enqueue(1, 0, "a", "qa", "t")
    engine.enqueue(2, 0, "b", "qb", "t")
    assert engine.dequeue("t")["job_id"] == "a"
    got: list = []
    thread = park(longpoll, got, wait=20)
    parked(longpoll, 1)
    started = time.monotonic()
    engine.delete_queue("t", "qa", purge_all=True)
    thread.join(10)
    assert [job.job_id for job in got[0][0]] == ["b"]
    assert time.monotonic() - started < 5


def test_a_client_gone_while_parked_frees_its_place_at_once(tmp_path) -> None:
    """Found by review: a parked poll whose client left kept its place (and a slot of
    the parked cap) until its wait ran out; now it looks every ALIVE_CHECK_S."""
    server = ServerProcess(str(tmp_path / "data"), workers=1).start()  # one process: `parked` counts them all
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as gone:
            gone.sendall(b"GET /dequeue/idle/?wait=30 HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_for(lambda: server.call("GET", "/deepstatus/")[1]["parked"] == 1, what="it to park")
        started = time.monotonic()
        wait_for(lambda: server.call("GET", "/deepstatus/")[1]["parked"] == 0, timeout=10, what="its place freed")
        assert time.monotonic() - started < 5  # not the 30 s it asked to wait
    finally:
        server.stop()


# -- a subscription dropped silently (issue 23, item 10) -----------------------------


class SilentProxy:
    """A TCP proxy in front of Redis (a thread per direction of each connection).
    `silence_subscribers()` makes the connections that subscribed stop forwarding
    without closing, as a NAT or load balancer that forgot them does."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.links: list[dict] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def subscribers(self) -> list[dict]:
        return [link for link in self.links if link["subscriber"] and not link["silent"]]

    def silence_subscribers(self) -> int:
        found = self.subscribers()
        for link in found:
            link["silent"] = True
        return len(found)

    def close(self) -> None:
        self.server.close()
        for link in self.links:
            for sock in link["sockets"]:
                sock.close()

    def _accept(self) -> None:
        host, port = self.target.removeprefix("redis://").split("/")[0].split(":")
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection((host, int(port)))
            link = {"subscriber": False, "silent": False, "sockets": (client, upstream)}
            self.links.append(link)
            threading.Thread(target=self._pipe, args=(client, upstream, link), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, link), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, link: dict) -> None:
        try:
            while data := source.recv(65536):
                if source is link["sockets"][0] and b"SUBSCRIBE" in data:
                    link["subscriber"] = True
                if not link["silent"]:
                    sink.sendall(data)
        except OSError:
            pass
        for sock in link["sockets"]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(redis_url: str, single_redis: None, redis_client):
    proxy = SilentProxy(redis_url)
    yield proxy
    proxy.close()


def test_a_parked_poll_hears_an_enqueue_after_its_subscription_went_silent(proxy: SilentProxy, tmp_path) -> None:
    """The listener PINGs through its subscription; one unanswered within
    socket_timeout means the link is dead: it subscribes again and the parked
    polls ask Redis at once. It used to wait for messages that never came, and the
    poll answered 404 at its deadline with the job queued all along."""
    env = {"SHARQ_REDIS_URL": proxy.url}
    server = ServerProcess(str(tmp_path / "data"), workers=1, env=env).start()
    try:
        with ThreadPoolExecutor(1) as pool:
            poll = pool.submit(http, "GET", f"{server.url}/dequeue/t/?wait=20", timeout=30)
            wait_for(lambda: server.call("GET", "/deepstatus/")[1]["parked"] == 1, what="the poll to park")
            wait_for(proxy.subscribers, what="the listener to subscribe")
            assert proxy.silence_subscribers() == 1
            started = time.monotonic()
            assert server.call("POST", "/enqueue/t/q/", {"job_id": "a", **JOB})[0] == 201
            status, job = poll.result()
        taken = time.monotonic() - started
        print(f"\nthe job announced into a silent subscription was taken after {taken * 1000:.0f} ms")
        assert (status, job.get("job_id")) == (200, "a"), job
        assert taken < 5  # ping every 1 s, answer within socket_timeout (2 s), then a new subscription
        with ThreadPoolExecutor(1) as pool:  # and the new subscription wakes the next one
            poll = pool.submit(http, "GET", f"{server.url}/dequeue/t/?wait=20", timeout=30)
            wait_for(lambda: server.call("GET", "/deepstatus/")[1]["parked"] == 1, what="the next poll to park")
            wait_for(proxy.subscribers, what="the listener to subscribe again")
            started = time.monotonic()
            assert server.call("POST", "/enqueue/t/q/", {"job_id": "b", **JOB})[0] == 201
            assert poll.result()[1]["job_id"] == "b"
        assert time.monotonic() - started < 2
    finally:
        server.stop()


def test_a_poll_takes_once_more_at_its_deadline(proxy: SilentProxy, config: Config, redis_client) -> None:
    """A job queued but never announced (its announcement fell into a subscription
    not yet known dead) is handed out at the poll's deadline, not answered 404."""
    settings = dataclasses.replace(config.redis, url=proxy.url, socket_timeout=5.0)  # no dead link found for 5 s
    poll = LongPoll(SharQ(dataclasses.replace(config, redis=settings)))
    try:
        assert poll.take("t", 1, 1) == ([], None)  # the listener subscribes meanwhile (to t's channel from 7.0)
        wait_for(proxy.subscribers, what="the listener to subscribe")
        proxy.silence_subscribers()
        takes = _scripts_run(redis_client)
        got: list = []
        started = time.monotonic()
        thread = park(poll, got, wait=1)
        wait_for(lambda: _scripts_run(redis_client) > takes, what="the poll's first take")
        poll.engine.enqueue(1, 0, "a", "q", "t")  # announced into the silent link
        thread.join(5)
        assert [job.job_id for job in got[0][0]] == ["a"]
        assert time.monotonic() - started < 3
    finally:
        poll.close()


def _scripts_run(client: redis.Redis) -> int:
    return client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)


def test_a_message_the_listener_cannot_read_does_not_stop_it(longpoll: LongPoll, redis_client) -> None:
    """Anything unexpected in the listener (here a message on the ready channel that
    is not UTF-8) is logged and the listener goes on: a parked poll is still woken
    by the next enqueue, not left to its deadline."""
    got: list = []
    thread = park(longpoll, got, wait=20)
    parked(longpoll, 1)
    if longpoll.engine.config.redis.clustered:
        pytest.skip("the ready channel of a cluster may be a shard channel")
    redis_client.publish(longpoll.engine.keys.ready_channel(), b"\xff")
    longpoll.engine.enqueue(1, 0, "a", "q", "t")
    thread.join(5)
    assert got and [job.job_id for job in got[0][0]] == ["a"]
