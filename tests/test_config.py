"""Configuration: defaults < INI file < environment, parsed once into typed objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharq_core import ConfigError, load_config

SEED = str(Path(__file__).parent / "data" / "seed-sharq.conf")


def test_defaults_mean_embedded_redis() -> None:
    config = load_config(None, environ={})
    assert (config.job_expire_interval, config.job_requeue_interval, config.default_job_requeue_limit) == (
        1000,
        1000,
        -1,
    )
    assert config.redis.embedded is True
    assert (config.server.host, config.server.port, config.server.max_body_size) == ("127.0.0.1", 8080, 1048576)


def test_seed_file_then_environment() -> None:
    config = load_config(SEED, environ={"SHARQ_JOB_EXPIRE_INTERVAL": "5000", "SHARQ_REDIS_PORT": "6390"})
    assert config.job_expire_interval == 5000
    assert config.redis.port == 6390
    assert config.redis.key_prefix == "sharq_server"
    assert config.redis.embedded is False


def test_environment_alone() -> None:
    config = load_config(
        None,
        environ={
            "SHARQ_REDIS_URL": "unix:///tmp/r.sock?db=2",
            "SHARQ_AUTH_TOKENS": "a, b,,c",
            "SHARQ_WORKERS": "4",
            "SHARQ_REDIS_CLUSTERED": "no",
        },
    )
    assert config.redis.url == "unix:///tmp/r.sock?db=2" and config.redis.embedded is False
    assert config.server.auth_tokens == ("a", "b", "c")
    assert config.server.workers == 4


def test_config_path_from_environment() -> None:
    assert load_config(None, environ={"SHARQ_CONFIG": SEED}).redis.key_prefix == "sharq_server"


@pytest.mark.parametrize(
    "environ",
    [
        {"SHARQ_JOB_EXPIRE_INTERVAL": "soon"},
        {"SHARQ_JOB_EXPIRE_INTERVAL": "0"},
        {"SHARQ_DEFAULT_JOB_REQUEUE_LIMIT": "-2"},
        {"SHARQ_REDIS_CONN_TYPE": "pigeon"},
        {"SHARQ_REDIS_CONN_TYPE": "unix_sock"},
        {"SHARQ_REDIS_KEY_PREFIX": "a{b}"},
        {"SHARQ_REDIS_CLUSTERED": "maybe"},
        {"SHARQ_REDIS_APPENDFSYNC": "sometimes"},
        {"SHARQ_CONFIG": "/nonexistent/sharq.conf"},
    ],
)
def test_bad_values_are_refused_at_start(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_config(None, environ=environ)
