"""One log format for gunicorn's lines and SharQ's: time, pid, level, logger, message.

`sharq-server` gives gunicorn `SharqLogger`, which re-dresses gunicorn's own
handlers (error and access log) with the same formatter as the root logger's,
plain text or one JSON object a line (``--log-format json``) for log shippers.
Access lines carry method, path, status and the duration in ms; an idle long
poll's 404 is logged only at DEBUG, so parked workers do not flood the log. A
refused request (401, 403) is logged with its method and route template only (as
the app marks it), never the path or query a client chose.

An access line costs the request little: the request only builds the few atoms
the format uses and queues the record; a listener (a greenlet under gevent)
formats and writes it (`AccessWriter`), and drains what is left when the worker
exits.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import sys
import time
from typing import Any
from urllib.parse import parse_qsl

from gunicorn.glogging import Logger

TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
# gunicorn's access atoms: remote address, request line, status, bytes, duration (ms)
ACCESS_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
LOG_AS = "sharq.log_as"  # WSGI environ key: the (method, route) a refused request is logged as


class SecondFormatter(logging.Formatter):
    """logging's Formatter with the time text made once a second: it is the
    costliest part of a line."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if self._second[0] != second:
            self._second = (second, time.strftime(self.default_time_format, self.converter(record.created)))
        return self.default_msec_format % (self._second[1], record.msecs)


class JsonFormatter(SecondFormatter):
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
    return JsonFormatter() if kind == "json" else SecondFormatter(TEXT_FORMAT)


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


class QueuedRecords(logging.handlers.QueueHandler):
    """Queues a record as it is: the listener formats it, off the request path."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class AccessWriter:
    """The access log's real handlers behind a queue, served by a listener that each
    worker process starts on its first access line (a thread does not survive the fork).

    The handlers stay on a logger of their own, so gunicorn's USR1 still reopens
    an access log file."""

    def __init__(self, access_log: logging.Logger) -> None:
        self.writer = logging.getLogger(access_log.name + ".writer")
        self.writer.propagate = False
        self.writer.handlers[:] = access_log.handlers
        self.queued = QueuedRecords(queue.SimpleQueue())
        access_log.handlers[:] = [self.queued]
        self.listener: logging.handlers.QueueListener | None = None
        self.pid = 0

    def ensure_started(self) -> None:
        """Start this process's listener, on a queue made here: after gevent's
        patching, so that waiting on it parks a greenlet, not the worker."""
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self.queued.queue = queue.SimpleQueue()
            self.listener = logging.handlers.QueueListener(self.queued.queue, *self.writer.handlers)
            self.listener.start()

    def put(self, record: logging.LogRecord) -> None:
        self.ensure_started()
        self.queued.queue.put_nowait(record)

    def stop(self) -> None:
        """Write every queued line (the worker is exiting)."""
        if self.listener is not None and self.pid == os.getpid():
            self.listener.stop()
            self.listener = None
            self.pid = 0


class SharqLogger(Logger):
    """gunicorn's logger, its handlers in SharQ's format (see the module doc)."""

    log_format = "text"
    access_writer: AccessWriter | None = None

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in (*self.error_log.handlers, *self.access_log.handlers):
            handler.setFormatter(formatter(self.log_format))
        for handler in self.access_log.handlers:
            handler.addFilter(QuietLongPolls())
        # a record's thread and process names: SharQ's lines show neither, and
        # finding them is a measurable share of an access line's cost
        logging.logThreads = logging.logMultiprocessing = False
        if self.access_writer is not None:
            self.access_writer.stop()
        self.access_writer = AccessWriter(self.access_log) if self.access_log.handlers else None

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        """Queue the access line (gunicorn's own way when it logs elsewhere, e.g. syslog)."""
        if self.access_writer is None:
            super().access(resp, req, environ, request_time)
            return
        log = self.access_log
        if log.isEnabledFor(logging.INFO):
            atoms = self.atoms(resp, req, environ, request_time)
            record = log.makeRecord(log.name, logging.INFO, __file__, 0, self.cfg.access_log_format, atoms, None)
            self.access_writer.put(record)

    def stop_access_writer(self) -> None:
        """Flush the queued access lines; the worker exits."""
        if self.access_writer is not None:
            self.access_writer.stop()

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        """The atoms ACCESS_FORMAT and JsonFormatter use (gunicorn's has every header
        and environ entry besides); for a refused request, the bounded method and
        route the app put in `LOG_AS` instead of what the client sent."""
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        method, protocol = environ["REQUEST_METHOD"], environ["SERVER_PROTOCOL"]
        sent = getattr(resp, "sent", None)
        atoms = {
            "h": environ.get("REMOTE_ADDR", "-"),
            "r": f"{method} {environ['RAW_URI']} {protocol}".replace('"', '\\"'),  # as gunicorn escapes it
            "s": str(status),
            "m": method,
            "U": environ.get("PATH_INFO"),
            "q": environ.get("QUERY_STRING"),
            "H": protocol,
            "b": "-" if sent is None else str(sent),
            "M": request_time.seconds * 1000 + request_time.microseconds // 1000,
        }
        if LOG_AS in environ:
            method, route = environ[LOG_AS]
            atoms.update(r=f"{method} {route} {protocol}", m=method, U=route, q="")
        return atoms
