"""A request's body and query arguments, read as its route declares them (`routes.py`).

Only the fields a body declares are let through and query arguments are checked
against their declared bounds, before anything changes; the values themselves are
checked by the engine, as for any caller of its library API.
"""

from __future__ import annotations

import re
from typing import Any

import ujson
from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from sharq_core import BadArgumentException
from sharq_core import validation as check

from .contract import fields_of
from .routes import BY_ENDPOINT, Route

_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}\Z")  # ASCII digits only: str.isdigit() takes "²"


def route() -> Route:
    """The current request's declaration."""
    return BY_ENDPOINT[request.endpoint or ""]


def json_body() -> dict[str, Any]:
    """The request body as a JSON object, whatever its Content-Type says; a field
    the route's body does not declare is refused."""
    declared = route()
    raw = _raw_body()
    if not raw and not declared.body_required:
        return {}
    try:
        body = ujson.loads(raw)
    except ValueError:
        raise BadArgumentException("request body must be valid JSON (UTF-8)") from None
    if not isinstance(body, dict):
        raise BadArgumentException("request body must be a JSON object")
    if declared.body is not None:
        check.known_fields(body, fields_of(declared.body))
    return body


def _raw_body() -> bytes:
    """The body bytes, read straight from the WSGI input, 413 past max_body_size.

    That skips werkzeug's stream wrappers, a measurable share of an enqueue's CPU.
    A chunked body carries no length: it is read up to one byte past the limit,
    so a longer one is refused whole rather than cut at the limit.
    """
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    stream = request.environ["wsgi.input"]
    if length is not None:
        return stream.read(length)
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise _too_large(limit)
    return b"".join(chunks)


def _too_large(limit: int) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(
        f"request body is larger than {limit} bytes; raise [sharq-server] max_body_size"
        " (SHARQ_MAX_BODY_SIZE) to accept more"
    )


def query(name: str) -> int | None:
    """A query argument as the route declares it: its default when absent, else a
    whole number within its bounds, checked before anything changes."""
    declared = route().argument(name)
    given = request.args.getlist(name)
    if not given:
        return declared.default
    if len(given) > 1:  # refused, not half-read: the log and the handler must agree
        raise BadArgumentException(f"{name} is given more than once")
    raw = given[0]
    if not _WHOLE_NUMBER.match(raw):
        raise BadArgumentException(f"{name} must be a whole number of at most 9 digits")
    return check.integer(name, int(raw), declared.minimum, declared.maximum)


def queries() -> dict[str, int | None]:
    """Every query argument the route declares, by name."""
    return {declared.name: query(declared.name) for declared in route().query if not declared.choices}
