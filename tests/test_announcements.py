"""Long-poll wake-ups: SPUBLISH on a shard's own channel from Redis 7, PUBLISH before."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from sharq_core import Config, SharQ
from sharq_server.announcements import Announcements, redis_major
from sharq_server.longpoll import LongPoll
from tests.support import LocalCluster, ServerProcess, http, primaries, wait_for


def test_announcements_follow_the_redis_version(sq: SharQ) -> None:
    announcements = Announcements(sq)
    try:
        assert announcements.sharded == (redis_major(sq.redis) >= 7)
        announcements.open()
        assert announcements.follow(["t"]) == (["t"] if announcements.sharded else [])
        assert announcements.follow(["t"]) == []  # followed once
        sq.enqueue(1, 0, "j", "q", "t")
        deadline = time.monotonic() + 10
        heard = None
        while heard is None and time.monotonic() < deadline:
            heard = announcements.next(0.2)
        assert heard == "t"
    finally:
        announcements.close()


def test_shard_channels_no_poll_waits_on_are_dropped(sq: SharQ) -> None:
    """Found by review: the listener kept every shard channel it had followed for
    the life of the process, the types no longer polled and the shards a reshard
    took away included. Now one no parked poll wanted for unfollow_after_s goes."""
    if redis_major(sq.redis) < 7:
        pytest.skip("shard channels come with Redis 7")
    poll = LongPoll(sq, unfollow_after_s=0.3)
    channels = [f"sharq:{{hot#{n}}}:ready" for n in range(4)]
    try:
        for shards in (4, 2):
            assert sq.set_type_settings("hot", shards)["status"] == "success"
            parked = threading.Thread(target=poll.take, args=("hot", 1, 2), daemon=True)
            parked.start()
            expected = [1] * shards + [0] * (4 - shards)  # the old shards dropped while the new ones wait
            wait_for(lambda e=expected: _subscribers(sq, channels) == e, what=f"{shards} shard channels followed")
            parked.join(5)
        wait_for(lambda: _subscribers(sq, channels) == [0] * 4, what="every shard channel dropped")
    finally:
        poll.close()


def _subscribers(sq: SharQ, channels: list[str]) -> list[int]:
    """Each channel's shard subscribers, over every primary."""
    counts = [0] * len(channels)
    for node in primaries(sq.redis):
        for n, count in enumerate(node.execute_command("PUBSUB", "SHARDNUMSUB", *channels)[1::2]):
            counts[n] += int(count)
    return counts


def _redis7() -> str:
    binary = shutil.which("redis-server")
    if not binary:
        pytest.skip("no redis-server on PATH (the Redis 7 cluster needs one)")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    if int(version.split("v=")[1].split(".")[0]) < 7:
        pytest.skip(f"redis-server on PATH is older than 7: {version.strip()}")
    return binary


@pytest.mark.e2e
def test_long_polls_on_a_sharded_type_wake_through_shard_channels(tmp_path) -> None:
    """A type over 6 shards on a Redis 7 cluster: parked polls subscribe to each
    shard's channel (SSUBSCRIBE on the shard's node) and wake on each enqueue."""
    cluster = LocalCluster(str(tmp_path / "cluster"), _redis7()).start()
    env = {"SHARQ_REDIS_URL": cluster.url, "SHARQ_REDIS_CLUSTERED": "1"}
    server = ServerProcess(str(tmp_path / "data"), workers=1, env=env).start()
    try:
        assert server.call("PUT", "/types/hot/", {"shards": 6})[0] == 200
        with ThreadPoolExecutor(6) as pool:
            polls = [pool.submit(http, "GET", f"{server.url}/dequeue/hot/?wait=20", timeout=30) for _ in range(6)]
            wait_for(lambda: server.call("GET", "/deepstatus/")[1]["parked"] == 6, what="6 parked polls")
            wait_for(lambda: _followed(cluster) == 6, what="the 6 shard channels followed")
            started = time.monotonic()
            for n in range(6):
                assert (
                    server.call("POST", f"/enqueue/hot/tenant{n}/", {"job_id": f"j{n}", "payload": n, "interval": 0})[0]
                    == 201
                )
            answers = [poll.result() for poll in polls]
        assert sorted(body["job_id"] for _, body in answers) == [f"j{n}" for n in range(6)]
        assert time.monotonic() - started < 5
    finally:
        server.stop()
        cluster.stop()


def _followed(cluster: LocalCluster) -> int:
    """Subscribers to the 6 shard channels, over every node."""
    channels = [f"sharq:{{hot#{n}}}:ready" for n in range(6)]
    total = 0
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as client:
            total += sum(int(count) for count in client.execute_command("PUBSUB", "SHARDNUMSUB", *channels)[1::2])
    return total


@pytest.mark.e2e
def test_every_node_answers_the_listeners_pings(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    """On a Redis 7 cluster the shard channels sit on one connection per node: each
    is PINGed and answers, so none is taken for dead (and subscribed again) while
    a poll waits out 4 s, past the first PINGs' deadline."""
    cluster = LocalCluster(str(tmp_path / "cluster"), _redis7()).start()
    base = Config()
    settings = dataclasses.replace(base.redis, url=cluster.url, clustered=True, embedded=False)
    poll = LongPoll(SharQ(dataclasses.replace(base, redis=settings)))
    try:
        poll.engine.set_type_settings("hot", 6)
        assert poll.take("hot", 1, 4) == ([], None)
        pings = []
        for node in cluster.nodes:
            with redis.Redis(port=node.port) as client:
                pings.append(client.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))
        assert min(pings) >= 2, pings  # each node holds some of the 6 channels
        assert "long-poll listener lost Redis" not in caplog.text
    finally:
        poll.close()
        cluster.stop()
