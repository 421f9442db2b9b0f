"""``sharq-server``: run SharQ under gunicorn with gevent workers.

    sharq-server [-c CONFIG] [--host H] [--port P] [--workers N] [--data-dir D]
                 [--redis-url URL] [--version]

With no Redis configured, the gunicorn master starts an embedded redis-server
(append-only, on a unix socket in the data directory) before the workers fork,
and stops it after they have exited.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import shutil
import socket
import sys
import textwrap
from typing import Any

from gunicorn.app.base import BaseApplication

from sharq_core import Config, ConfigError, RedisSettings, ServerSettings, __version__, check_config, load_config

from .embedded import EmbeddedRedis
from .logs import ACCESS_FORMAT, SharqLogger
from .logs import configure as configure_logs
from .process_metrics import share_process_metrics

log = logging.getLogger("sharq_server")


class SharqApplication(BaseApplication):
    """gunicorn driven from code: settings from `Config`, the app built per worker."""

    def __init__(self, config: Config, embedded: EmbeddedRedis | None = None) -> None:
        self.config = config
        self.embedded = embedded
        super().__init__()

    def load_config(self) -> None:
        server = self.config.server
        settings: dict[str, Any] = {
            "bind": f"{server.host}:{server.port}",
            "workers": server.workers,
            "worker_class": "gevent",
            "worker_connections": server.worker_connections,
            "accesslog": None if server.accesslog in ("", "off") else server.accesslog,
            "access_log_format": ACCESS_FORMAT,
            "logger_class": _logger_class(server.log_format),
            "graceful_timeout": server.graceful_timeout,
            "timeout": 30,
            "keepalive": 5,
            "proc_name": "sharq-server",
            "when_ready": self._when_ready,
            "post_worker_init": _start_requeue_loop,
            "worker_exit": _stop_requeue_loop,
            "child_exit": _worker_gone,
        }
        if self.embedded is not None:
            settings["on_starting"] = lambda arbiter: self.embedded.start(supervise=True)
            settings["on_exit"] = lambda arbiter: self.embedded.stop()
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn >= 25.1 opens ~/.gunicorn/gunicorn.ctl, which two instances on
            # one host would fight over; SharQ has no use for it
            settings["control_socket_disable"] = True
        for name, value in settings.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        from .app import create_app  # in the worker, after gevent has patched it

        return create_app(self.config)

    def _when_ready(self, arbiter: Any) -> None:
        server = self.config.server
        where = self.embedded.url if self.embedded else "the configured Redis"
        log.info("SharQ %s listening on http://%s:%d (Redis: %s)", __version__, server.host, server.port, where)


def _logger_class(kind: str) -> type:
    """gunicorn's logger in SharQ's format (`kind`: text or json)."""
    return type("SharqLogger", (SharqLogger,), {"log_format": kind})


def _start_requeue_loop(worker: Any) -> None:
    from .requeue import start_requeue_loop

    start_requeue_loop(worker.wsgi)


def _stop_requeue_loop(arbiter: Any, worker: Any) -> None:
    """The worker exits: stop its requeue loop and write its queued access lines."""
    loop = getattr(worker, "wsgi", None) and worker.wsgi.extensions.get("sharq_requeue")
    if loop:
        loop.stop()
    if isinstance(worker.log, SharqLogger):
        worker.log.stop_access_writer()


def _environment_help() -> str:
    """The epilog of --help: every option's environment variable."""
    groups = (
        ("[sharq]", "SHARQ_", Config),
        ("[sharq-server]", "SHARQ_", ServerSettings),
        ("[redis]", "SHARQ_REDIS_", RedisSettings),
    )
    lines = ["environment (over the config file, under the command line):", "  SHARQ_CONFIG  the config file"]
    for section, prefix, cls in groups:
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ("server", "redis", "embedded")]
        variables = " ".join(prefix + name.upper() for name in names)
        lines.append(textwrap.fill(variables, 96, initial_indent=f"  {section:15} ", subsequent_indent=" " * 18))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sharq-server",
        description="Run the SharQ HTTP server (gunicorn + gevent); with no Redis configured it starts its own.",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-c", "--config", help="INI file in the SharQ format (else $SHARQ_CONFIG)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument(
        "--workers", type=_one_or_more, help="gunicorn worker processes (default: one per CPU core it may use)"
    )
    parser.add_argument("--data-dir", help="embedded Redis data directory (default ./sharq-data)")
    parser.add_argument("--log-format", choices=["text", "json"], help="log lines as text (default) or JSON")
    parser.add_argument("--redis-url", help="use this Redis (redis://, rediss://, unix://) instead of an embedded one")
    parser.add_argument("--version", action="version", version=f"sharq-server {__version__}")
    return parser.parse_args(argv)


def _one_or_more(text: str) -> int:
    """A count given on the command line: argparse names the flag with this
    error (gunicorn would start no worker for 0 and serve nothing)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more, not {text!r}")
    return value


def build_config(args: argparse.Namespace) -> Config:
    """The config file and environment, then the command line on top."""
    config = load_config(args.config)
    overrides = {
        name: value
        for name, value in (
            ("host", args.host),
            ("port", args.port),
            ("workers", args.workers),
            ("data_dir", args.data_dir),
            ("log_format", args.log_format),
        )
        if value is not None
    }
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, **overrides))
    if args.redis_url:
        redis = dataclasses.replace(config.redis, url=args.redis_url, embedded=False)
        config = dataclasses.replace(config, redis=redis)
    check_config(config)  # the command line gets the checks the file and environment get
    return config


def _check_port_free(host: str, port: int) -> None:
    """Say plainly that the port is taken (gunicorn would retry, then exit tersely)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            sys.exit(
                f"sharq-server: port {port} on {host} is already in use; pick another with --port"
                f' (make run ARGS="--port 9000")'
            )


def _worker_gone(arbiter: Any, worker: Any) -> None:
    """A dead worker's live gauges must not be summed any more."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        config = build_config(args)
    except ConfigError as error:
        sys.exit(f"sharq-server: {error}")
    configure_logs(config.server.log_format)
    _check_port_free(config.server.host, config.server.port)
    metrics_dir = share_process_metrics()  # before a worker imports prometheus_client
    embedded = None
    if config.redis.embedded:
        try:
            embedded = EmbeddedRedis(config.server.data_dir, appendfsync=config.redis.appendfsync)
        except RuntimeError as error:
            sys.exit(f"sharq-server: {error}")
        redis = dataclasses.replace(config.redis, url=embedded.url)
        config = dataclasses.replace(config, redis=redis)
    try:
        SharqApplication(config, embedded).run()
    finally:
        if embedded is not None:  # on_exit stopped it already unless gunicorn failed
            embedded.stop()
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
