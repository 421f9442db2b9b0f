"""One log format for gunicorn's lines and SharQ's: time, pid, level, logger, message.

`sharq-server` gives gunicorn `SharqLogger`, which re-dresses gunicorn's own
handlers (error and access log) with the same formatter as the root logger's,
plain text or one JSON object a line (``--log-format json``) for log shippers.
Access lines carry method, path, status and the duration in ms; an idle long
poll's 404 is logged only at DEBUG, so parked workers do not flood the log. A
refused request (401, 403) is logged with its method and route template only (as
the app marks it), never the path or query a client chose.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any
from urllib.parse import parse_qsl

from gunicorn.glogging import Logger

TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
# gunicorn's access atoms: remote address, request line, status, bytes, duration (ms)
ACCESS_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
LOG_AS = "sharq.log_as"  # WSGI environ key: the (method, route) a refused request is logged as


class JsonFormatter(logging.Formatter):
    """One JSON object a line; access lines also as fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record),
            "pid": record.process,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        atoms = record.args if isinstance(record.args, dict) else None
        if record.name == "gunicorn.access" and atoms:
            line.update(
                method=atoms.get("m"),
                path=atoms.get("U"),
                query=atoms.get("q") or None,
                status=int(atoms["s"]) if str(atoms.get("s", "")).isdigit() else atoms.get("s"),
                duration_ms=atoms.get("M"),
                remote=atoms.get("h"),
            )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def formatter(kind: str) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)


class QuietLongPolls(logging.Filter):
    """Drop the access line of a long poll that ended with nothing (404 after
    ?wait=) unless the access logger is at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args if isinstance(record.args, dict) else {}
        idle = atoms.get("s") == "404" and _waited(atoms.get("q") or "")
        return not idle or logging.getLogger("gunicorn.access").isEnabledFor(logging.DEBUG)


def _waited(query: str) -> bool:
    """Whether the query string asked to wait (?wait=S with S > 0): a plain
    dequeue's 404, ?wait=0 included, is logged as any request is."""
    values = [value for name, value in parse_qsl(query) if name == "wait"]
    return any(value.strip().strip("0") for value in values)


def configure(kind: str, level: int = logging.INFO) -> None:
    """The root logger (SharQ's own lines) in the one format, on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(kind))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class SharqLogger(Logger):
    """gunicorn's logger, its handlers in SharQ's format (see the module doc)."""

    log_format = "text"

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in (*self.error_log.handlers, *self.access_log.handlers):
            handler.setFormatter(formatter(self.log_format))
        for handler in self.access_log.handlers:
            handler.addFilter(QuietLongPolls())

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        """gunicorn's atoms; for a refused request, the bounded method and route
        the app put in `LOG_AS` instead of what the client sent."""
        atoms = super().atoms(resp, req, environ, request_time)
        if LOG_AS in environ:
            method, route = environ[LOG_AS]
            atoms.update(r=f"{method} {route} {atoms['H']}", m=method, U=route, q="")
            atoms.update({key: "-" for key in atoms if key.startswith("{")})  # headers and environ
        return atoms
