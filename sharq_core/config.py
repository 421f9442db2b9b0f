"""Typed configuration, parsed once: defaults < INI file < ``SHARQ_*`` environment.

The INI file is the seed library's format (sections ``[sharq]``, ``[sharq-server]``,
``[redis]``; ``key : value ; comment``). Every option can also come from the
environment: ``[sharq]`` and ``[sharq-server]`` options as ``SHARQ_<OPTION>``,
``[redis]`` options as ``SHARQ_REDIS_<OPTION>`` (``SHARQ_REDIS_URL`` takes a
``redis://`` or ``unix://`` URL). Everything downstream receives the `Config`
object, never a path.
"""

from __future__ import annotations

import configparser
import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .tokens import Token, TokenError, parse_tokens


class ConfigError(ValueError):
    """A configuration value is missing its file, malformed or out of range."""


@dataclass(frozen=True)
class RedisSettings:
    """Where Redis is and how to talk to it; `embedded` when none was configured."""

    url: str = ""
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str = ""
    password: str = ""
    conn_type: str = "tcp_sock"
    unix_socket_path: str = ""
    key_prefix: str = "sharq"
    clustered: bool = False
    socket_timeout: float = 2.0
    appendfsync: str = "everysec"
    autopipeline: bool = True
    # a write is answered only once this many replicas hold it (WAIT), within wait_timeout_ms
    wait_replicas: int = 0
    wait_timeout_ms: int = 100
    embedded: bool = True


def cores(cgroup: str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may use: `sharq-server`'s default worker count.

    A gevent worker runs its requests' Python one at a time on one core, and
    producers' batches and workers' ack-and-take calls queue behind each other
    in its loop; with one worker per core they spread over the cores (issue 29).
    The CPUs it may run on, capped by a container's CPU quota (`docker run
    --cpus`, a Kubernetes CPU limit: cgroup v2 `cpu.max`, or v1's
    `cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded up: on a 32-core host a
    container limited to 1.5 CPUs starts 2 workers, not 32.
    """
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        allowed = os.cpu_count() or 1
    quota = _cpu_quota(cgroup)
    return max(1, min(allowed, math.ceil(quota))) if quota else allowed


def _cpu_quota(cgroup: str) -> float | None:
    """The CPUs a cgroup's quota allows (None: no quota, or no cgroup to read)."""
    v2 = _first_line(os.path.join(cgroup, "cpu.max"))
    if v2:
        quota, _, period = v2.partition(" ")
    else:
        quota = _first_line(os.path.join(cgroup, "cpu", "cpu.cfs_quota_us"))
        period = _first_line(os.path.join(cgroup, "cpu", "cpu.cfs_period_us"))
    try:
        return int(quota) / int(period) if int(quota) > 0 else None
    except ValueError:  # "max": no quota; or nothing to read
        return None


def _first_line(path: str) -> str:
    try:
        with open(path) as file:
            return file.readline().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class ServerSettings:
    """The HTTP server's own settings (``[sharq-server]``)."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = field(default_factory=cores)  # gunicorn gevent workers: one per core
    accesslog: str = "off"  # opt-in, as gunicorn's: "-" (stdout) or a file
    log_format: str = "text"
    auth_tokens: tuple[Token, ...] = ()  # see tokens.py
    max_body_size: int = 1024 * 1024
    data_dir: str = "./sharq-data"
    graceful_timeout: int = 10
    # connections one gunicorn worker serves at once; long polls may hold 90% of them
    worker_connections: int = 1000


@dataclass(frozen=True)
class Config:
    """Queue semantics (``[sharq]``) plus the server and Redis sections."""

    job_expire_interval: int = 30_000
    job_requeue_interval: int = 1000
    default_job_requeue_limit: int = -1
    dedupe_window_ms: int = 300_000
    # how long a drained type stays in /metrics/ and the Prometheus exposition (zeros, counters kept)
    idle_type_retention_ms: int = 3_600_000
    # the job duration autoscaling assumes for a type until one of its jobs is finished
    default_job_duration_ms: int = 1000
    # how long a campaign's record stays readable after it is done, then it is forgotten
    campaign_retention_ms: int = 7 * 86_400_000
    server: ServerSettings = field(default_factory=ServerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)


# Options whose presence means "use this Redis" rather than the embedded one.
_EXTERNAL_REDIS = {"url", "host", "port", "unix_socket_path", "conn_type", "clustered"}
_SECTIONS = (("sharq", "SHARQ_"), ("sharq-server", "SHARQ_"), ("redis", "SHARQ_REDIS_"))


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the `Config` from an optional INI file and the environment."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("SHARQ_CONFIG") or None
    parser = _read_ini(path)
    _refuse_unknown_options(parser, path)
    _refuse_empty_auth_tokens(environ)
    values = {name: _section_values(name, prefix, parser, environ) for name, prefix in _SECTIONS}
    redis_values = values["redis"]
    redis_values["embedded"] = not (_EXTERNAL_REDIS & redis_values.keys())
    config = Config(
        **_typed(Config, values["sharq"]),
        server=ServerSettings(**_typed(ServerSettings, values["sharq-server"])),
        redis=RedisSettings(**_typed(RedisSettings, redis_values)),
    )
    check_config(config)
    return config


def _read_ini(path: str | None) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None)
    if path is not None:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        try:
            parser.read(path)
        except configparser.Error as exc:
            raise ConfigError(f"cannot parse {path}: {exc}") from exc
    return parser


# What each section of the file may set (`embedded` is derived, never set).
_SECTION_FIELDS = {
    "sharq": Config,
    "sharq-server": ServerSettings,
    "redis": RedisSettings,
}


def _refuse_unknown_options(parser: configparser.ConfigParser, path: str | None) -> None:
    """A misspelt option (``job_expire_intervall``) must stop the start, not be ignored."""
    for section, cls in _SECTION_FIELDS.items():
        if not parser.has_section(section):
            continue
        known = {f.name for f in dataclasses.fields(cls) if f.type in _CONVERTERS and f.name != "embedded"}
        for option in parser.options(section):
            if option.replace("-", "_") not in known:
                raise ConfigError(
                    f"{path}: unknown option {option!r} in [{section}] (known: {', '.join(sorted(known))})"
                )


def _refuse_empty_auth_tokens(environ: Mapping[str, str]) -> None:
    """``SHARQ_AUTH_TOKENS=${TOKENS}`` with TOKENS unset gives an empty value, which
    must not turn access control off without a word: only an unset variable means
    "no auth"."""
    value = environ.get("SHARQ_AUTH_TOKENS")
    if value is not None and not value.strip():
        raise ConfigError(
            "SHARQ_AUTH_TOKENS (auth_tokens) is set but empty: give the tokens, or unset it to turn access control off"
        )


def _section_values(
    section: str, prefix: str, parser: configparser.ConfigParser, environ: Mapping[str, str]
) -> dict[str, str]:
    """Raw strings for one section: the file's options, overridden by the environment."""
    found = dict(parser.items(section)) if parser.has_section(section) else {}
    found = {key.replace("-", "_"): value for key, value in found.items() if value != ""}
    for key, value in environ.items():
        if key.startswith(prefix) and value != "":
            name = key[len(prefix) :].lower()
            if section == "redis" or not name.startswith("redis_"):
                found[name] = value
    return found


def _typed(cls: type, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Convert the raw strings of the fields `cls` declares; unknown names are ignored."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.type in _CONVERTERS}
    out = {}
    for name, value in raw.items():
        if name in fields:
            try:
                out[name] = _CONVERTERS[fields[name].type](value)
            except TokenError as exc:  # its message names the entry; the value may hold secrets
                raise ConfigError(str(exc)) from None
            except ValueError as exc:
                raise ConfigError(f"invalid value for {name}: {value!r}") from exc
    return out


def _to_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


_CONVERTERS = {
    "int": int,
    "float": float,
    "str": str,
    "bool": _to_bool,
    "tuple[Token, ...]": parse_tokens,
}


def check_config(config: Config) -> None:
    """Reject values the engine cannot honour, at start-up rather than at first use
    (load_config, and sharq-server once its command line is applied)."""
    if config.job_expire_interval <= 0 or config.job_requeue_interval <= 0:
        raise ConfigError("job_expire_interval and job_requeue_interval must be > 0 ms")
    if not 0 <= config.dedupe_window_ms <= 86_400_000:
        raise ConfigError("dedupe_window_ms must be from 0 (off) to 86400000 (a day)")
    if not 0 <= config.idle_type_retention_ms <= 30 * 86_400_000:
        raise ConfigError("idle_type_retention_ms must be from 0 (drop at once) to 2592000000 (30 days)")
    if not 1 <= config.default_job_duration_ms <= 86_400_000:
        raise ConfigError("default_job_duration_ms must be from 1 to 86400000 (a day)")
    if not 0 <= config.campaign_retention_ms <= 366 * 86_400_000:
        raise ConfigError("campaign_retention_ms must be from 0 (drop at once) to 31622400000 (366 days)")
    if config.default_job_requeue_limit < -1:
        raise ConfigError("default_job_requeue_limit must be -1 (forever) or more")
    redis = config.redis
    if redis.conn_type not in ("tcp_sock", "unix_sock"):
        raise ConfigError("conn_type must be tcp_sock or unix_sock")
    if redis.conn_type == "unix_sock" and not (redis.unix_socket_path or redis.url):
        raise ConfigError("conn_type unix_sock needs unix_socket_path")
    if any(c in redis.key_prefix for c in "{}") or not redis.key_prefix:
        raise ConfigError("key_prefix must be non-empty and hold no { or }")
    if redis.socket_timeout <= 0:
        raise ConfigError("socket_timeout must be > 0 seconds")
    if redis.wait_replicas < 0 or redis.wait_timeout_ms <= 0:
        raise ConfigError("wait_replicas must be >= 0 and wait_timeout_ms > 0 (WAIT 0 would block for ever)")
    if 2 * redis.wait_timeout_ms >= redis.socket_timeout * 1000:
        # a write may wait for the WAIT already out, then its own: 503 within socket_timeout
        raise ConfigError("wait_timeout_ms must be under half of socket_timeout, or writes could time out")
    if redis.wait_replicas and redis.embedded:
        raise ConfigError("wait_replicas needs a Redis with replicas (url, host or clustered), not the embedded one")
    if redis.appendfsync not in ("always", "everysec", "no"):
        raise ConfigError("appendfsync must be always, everysec or no")
    if config.server.log_format not in ("text", "json"):
        raise ConfigError("log_format must be text or json")
    if config.server.workers < 1:
        raise ConfigError(f"workers must be 1 or more (gunicorn worker processes), not {config.server.workers}")
    if config.server.max_body_size <= 0 or config.server.worker_connections < 10:
        raise ConfigError("max_body_size must be > 0, worker_connections at least 10")
