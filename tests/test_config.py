"""Configuration: defaults < INI file < environment, parsed once into typed objects."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sharq_core import Config, ConfigError, RedisSettings, ServerSettings, load_config
from sharq_core.config import cores
from sharq_core.tokens import digest_of

SEED = str(Path(__file__).parent / "data" / "seed-sharq.conf")


def test_defaults_mean_embedded_redis() -> None:
    config = load_config(None, environ={})
    assert (config.job_expire_interval, config.job_requeue_interval, config.default_job_requeue_limit) == (
        30_000,
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
    assert [token.digest for token in config.server.auth_tokens] == [digest_of(t) for t in (b"a", b"b", b"c")]
    assert config.server.workers == 4


def test_server_workers_default_to_one_per_core() -> None:
    """Issue 29: one gevent worker runs every request's Python on one core, so a
    default of one left the other cores idle under concurrent producers."""
    cores = len(os.sched_getaffinity(0))
    assert load_config(None, environ={}).server.workers == cores
    assert ServerSettings().workers == cores
    assert load_config(None, environ={"SHARQ_WORKERS": "1"}).server.workers == 1


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, 2),  # docker run --cpus=1.5: rounded up
        ({"cpu.max": "50000 100000\n"}, 1),  # half a CPU still gets a worker
        ({"cpu.max": "max 100000\n"}, None),  # no quota: every core it may run on
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),  # no cgroup files at all
    ],
)
def test_workers_per_core_stay_within_a_containers_cpu_quota(tmp_path: Path, files: dict, expected) -> None:
    """A container limited to some CPUs on a larger host starts one worker per CPU
    it may use, not per host core."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    on_host = len(os.sched_getaffinity(0))
    assert cores(str(tmp_path)) == (on_host if expected is None else min(expected, on_host))


def test_config_path_from_environment() -> None:
    assert load_config(None, environ={"SHARQ_CONFIG": SEED}).redis.key_prefix == "sharq_server"


@pytest.mark.parametrize(
    "environ",
    [
        {"SHARQ_JOB_EXPIRE_INTERVAL": "soon"},
        {"SHARQ_JOB_EXPIRE_INTERVAL": "0"},
        {"SHARQ_DEFAULT_JOB_REQUEUE_LIMIT": "-2"},
        {"SHARQ_DEFAULT_JOB_DURATION_MS": "0"},
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


EXAMPLE = Path(__file__).parent.parent / "config" / "sharq.conf"


def example_options() -> dict[tuple[str, str], str]:
    """(section, option) -> value of every option config/sharq.conf shows, commented or not."""
    shown = {}
    section = ""
    for line in EXAMPLE.read_text().splitlines():
        text = line.lstrip("; ").split(" ;")[0].strip()
        if text.startswith("["):
            section = text.strip("[]")
        elif " : " in text or text.endswith(" :"):
            name, _, value = (part.strip() for part in text.partition(":"))
            if " " not in name:
                shown[(section, name)] = value
    return shown


def test_example_file_shows_the_real_defaults() -> None:
    """config/sharq.conf claims every option with its default: commented or not,
    each shown value must be the default (a wrong key_prefix hid every job)."""
    shown = example_options()
    defaults = load_config(None, environ={})
    objects = {"sharq": defaults, "sharq-server": defaults.server, "redis": defaults.redis}
    checked = 0
    for (section, name), value in shown.items():
        default = getattr(objects[section], name)
        if name in ("url", "unix_socket_path", "conn_type", "host", "port") and section == "redis":
            continue  # examples of where an outside Redis is
        if (section, name) == ("sharq-server", "workers"):
            assert value == "", value  # one per core: the machine's, not a number
            continue
        if isinstance(default, float):
            assert float(value) == default, (section, name, value)
        else:
            expected = ",".join(default) if isinstance(default, tuple) else str(default).lower()
            assert value.lower() == expected or (value == "" and not default), (section, name, value, default)
        checked += 1
    assert checked >= 20
    load_config(str(EXAMPLE), environ={})


def test_example_file_lists_every_option() -> None:
    """Issue 23: config/sharq.conf says it lists every option, and lacked
    worker_connections; every field of the typed config must be in its section."""
    sections = {"sharq": Config, "sharq-server": ServerSettings, "redis": RedisSettings}
    typed = {
        (section, field.name)
        for section, cls in sections.items()
        for field in dataclasses.fields(cls)
        if field.name not in ("server", "redis", "embedded")  # sections, and derived
    }
    assert typed - example_options().keys() == set()
    assert example_options().keys() - typed == set()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sharq]\njob_expire_intervall : 5000\n", "unknown option 'job_expire_intervall' in [sharq]"),
        ("[redis]\nkey_prefx : x\n", "unknown option 'key_prefx' in [redis]"),
        ("[sharq-server]\nworker : 2\n", "unknown option 'worker' in [sharq-server]"),
    ],
)
def test_misspelt_option_stops_the_start(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "sharq.conf"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(str(path), environ={})


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_auth_tokens_variable_stops_the_start(value: str, tmp_path) -> None:
    """Issue 23: SHARQ_AUTH_TOKENS=${TOKENS} with TOKENS unset is set but empty, and
    turned access control off without a word; only an unset variable means no auth."""
    with pytest.raises(ConfigError, match=r"SHARQ_AUTH_TOKENS \(auth_tokens\) is set but empty"):
        load_config(None, environ={"SHARQ_AUTH_TOKENS": value})
    assert load_config(None, environ={}).server.auth_tokens == ()
    with socket.socket() as taken:  # were the config accepted, the start would stop at the port, starting nothing
        taken.bind(("127.0.0.1", 0))
        port = str(taken.getsockname()[1])
        command = [os.path.join(os.path.dirname(sys.executable), "sharq-server"), "--port", port]
        command += ["--data-dir", str(tmp_path / "data")]
        environ = {**os.environ, "SHARQ_AUTH_TOKENS": value}
        done = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "SHARQ_AUTH_TOKENS (auth_tokens) is set but empty" in done.stderr, done.stderr


def test_an_auth_tokens_value_with_no_token_stops_the_start() -> None:
    """Found by review: "$A,$B" with both unset gave " , ", which turned access control
    off without a word."""
    with pytest.raises(ConfigError, match="holds no token"):
        load_config(None, environ={"SHARQ_AUTH_TOKENS": " , "})


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_worker_count_names_the_option_and_stops_the_start(value: str, tmp_path) -> None:
    """Found by review: `--workers 0` started gunicorn with no worker, listening and
    answering nothing, and `--workers -1` stopped with gunicorn's "Value must be
    positive", naming no option: the command line skipped the config's checks."""
    command = [os.path.join(os.path.dirname(sys.executable), "sharq-server"), "--workers", value]
    with socket.socket() as taken:  # were the count accepted, the start would stop at the port, starting nothing
        taken.bind(("127.0.0.1", 0))
        command += ["--port", str(taken.getsockname()[1]), "--data-dir", str(tmp_path / "data")]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert done.returncode != 0 and f"argument --workers: must be a whole number, 1 or more, not '{value}'" in (
            done.stderr
        ), done.stderr
        environ = {**os.environ, "SHARQ_WORKERS": value}
        done = subprocess.run(command[:1] + command[3:], env=environ, capture_output=True, text=True, timeout=30)
    named = "invalid value for workers" if value == "two" else "workers must be 1 or more (gunicorn worker processes)"
    assert done.returncode != 0 and named in done.stderr, done.stderr
