"""The one place where failures become HTTP responses.

Every error body is ``{"status": "failure", "message": ...}``. Client mistakes
are 4xx and never reach Redis; Redis trouble is 503; anything else is a bug,
logged with its traceback and answered 500.
"""

from __future__ import annotations

import logging

import redis
from flask import Flask
from werkzeug.exceptions import HTTPException

from sharq_core import SharqError

log = logging.getLogger(__name__)

# Redis replies that mean "the store cannot serve now", not "the request is wrong".
_UNAVAILABLE_REPLIES = (
    "MISCONF",
    "OOM",
    "READONLY",
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
)


def failure(status: int, message: str, **extra: object) -> tuple[dict, int]:
    return {"status": "failure", "message": message, **extra}, status


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(SharqError, _sharq_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(redis.ConnectionError, _redis_unavailable)
    app.register_error_handler(redis.TimeoutError, _redis_unavailable)
    app.register_error_handler(redis.ResponseError, _redis_reply)
    app.register_error_handler(Exception, _bug)


def _sharq_error(error: SharqError) -> tuple[dict, int, dict[str, str]]:
    return (*failure(error.status, error.message), getattr(error, "headers", {}))


def _http_error(error: HTTPException) -> tuple[dict, int, list[tuple[str, str]]]:
    """Werkzeug's own errors, as JSON; their headers (405's Allow) are kept."""
    headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
    return (*failure(error.code or 500, error.description or error.name), headers)


def _redis_unavailable(error: Exception) -> tuple[dict, int]:
    log.warning("Redis unavailable: %s", error)
    return failure(503, "Redis is unavailable; try again shortly")


def _redis_reply(error: redis.ResponseError) -> tuple[dict, int]:
    if str(error).startswith(_UNAVAILABLE_REPLIES):
        return _redis_unavailable(error)
    return _bug(error)


def _bug(error: Exception) -> tuple[dict, int]:
    log.error("unhandled error", exc_info=error)
    return failure(500, "internal error")
