"""The one place where failures become HTTP responses.

Every error body is ``{"status": "failure", "message": ...}``. Client mistakes
are 4xx and never reach Redis; Redis trouble (down, hung, or refusing writes) is
503, and so is a change fewer replicas than ``wait_replicas`` confirmed in time
(`NotReplicated`, reason "replicas"); anything else is a bug, logged with its traceback and answered 500.
"""

from __future__ import annotations

import logging
import re

import redis
from flask import Flask
from redis import exceptions as redis_errors
from werkzeug.exceptions import HTTPException

from sharq_core import NotReplicated, SharqError

log = logging.getLogger(__name__)

# redis-py's classes for "the store cannot serve now", not "the request is wrong",
# with the code each stands for (redis-py strips it from the message); most
# specific first.
_UNAVAILABLE_CLASSES = (
    (redis_errors.BusyLoadingError, "LOADING"),
    (redis_errors.TimeoutError, "timeout"),
    (redis_errors.ConnectionError, "connection"),
    (redis_errors.ReadOnlyError, "READONLY"),
    (redis_errors.OutOfMemoryError, "OOM"),
    (redis_errors.MasterDownError, "MASTERDOWN"),
    (redis_errors.ClusterDownError, "CLUSTERDOWN"),
    (redis_errors.TryAgainError, "TRYAGAIN"),
    (redis_errors.ClusterError, "cluster"),
)
# The same codes as they appear in a plain reply (the auto-pipelined path) or
# inside a script's error ("ERR Error running script ... -READONLY You can't ...");
# UNBLOCKED: a WAIT cut short because its primary became a replica (a failover).
_UNAVAILABLE_CODES = re.compile(
    r"(?:^|[\s:-])(MISCONF|OOM|READONLY|LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|NOREPLICAS|UNBLOCKED)\b"
)

UNKNOWN_OUTCOME = (
    "Redis is unavailable; whether this request took effect is unknown. Retrying is safe:"
    " an enqueue with the same job_id answers 409 if the first one was stored"
)


def failure(status: int, message: str, **extra: object) -> tuple[dict, int]:
    return {"status": "failure", "message": message, **extra}, status


def unavailable_reason(error: redis.RedisError) -> str | None:
    """Why Redis cannot serve now ("connection", "timeout", "READONLY"...), or None
    when the error is not about Redis' availability."""
    for cls, reason in _UNAVAILABLE_CLASSES:
        if isinstance(error, cls):
            return reason
    match = _UNAVAILABLE_CODES.search(str(error))
    return match.group(1) if match else None


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(NotReplicated, _not_replicated)
    app.register_error_handler(SharqError, _sharq_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(redis.RedisError, _redis_error)
    app.register_error_handler(Exception, _bug)


def _sharq_error(error: SharqError) -> tuple[dict, int, dict[str, str]]:
    return (*failure(error.status, error.message, **error.details), getattr(error, "headers", {}))


def _not_replicated(error: NotReplicated) -> tuple[dict, int]:
    """The primary holds the change, its replicas may not: logged, as Redis trouble is."""
    log.warning(
        "Redis replicas did not confirm a change (%s of %s)", error.details["replicas"], error.details["wait_replicas"]
    )
    return failure(error.status, error.message, **error.details)


def _http_error(error: HTTPException) -> tuple[dict, int, list[tuple[str, str]]]:
    """Werkzeug's own errors, as JSON; their headers (405's Allow) are kept."""
    headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
    return (*failure(error.code or 500, error.description or error.name), headers)


def _redis_error(error: redis.RedisError) -> tuple[dict, int]:
    reason = unavailable_reason(error)
    if reason is None:
        return _bug(error)
    log.warning("Redis unavailable (%s): %s", reason, error)
    return failure(503, UNKNOWN_OUTCOME, reason=reason)


def _bug(error: Exception) -> tuple[dict, int]:
    log.error("unhandled error", exc_info=error)
    return failure(500, "internal error")
