"""Argument checks, run before any Redis call so a bad call changes nothing."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

import ujson

from .exceptions import BadArgumentException

_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,100}\Z")
_DONE_JOB = re.compile(r"campaign-done\.[A-Za-z0-9_-]{1,100}\Z")  # a campaign's on_done job (campaigns.py)
_RECEIPT = re.compile(r"[0-9a-f]{16}\.[0-9]{1,3}\Z")

# Bounds keep every time sum exact in Lua's doubles and in 14-digit score strings.
MAX_INTERVAL = 10**12
MAX_REQUEUE_LIMIT = 10**9
MAX_QUEUED_LENGTH = 10**12
MAX_OFFSET = 10**9
MAX_TIME = 10**13  # epoch ms, until the year 2286
MAX_WEIGHT = 100  # a queue's share beside others (PUT /limits): 1 to 100 turns a round
MAX_COST = 10_000  # units one job may cost (issue 25)
MAX_PRIORITY = 9  # one digit: a queue holds a list per priority (see queue_list in _helpers.lua)


def identifier(name: str, value: Any) -> str:
    """A queue_type, queue_id or job_id: 1-100 of ``[A-Za-z0-9_-]``; a job_id may
    also be ``campaign-done.<campaign>``, the job a campaign enqueues when done."""
    if type(value) is str and _IDENTIFIER.match(value):  # the usual case first: twice per job
        return value
    required(name, value)
    if name == "job_id" and isinstance(value, str) and _DONE_JOB.match(value):
        return value
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise BadArgumentException(f"{name} must be 1-100 characters of A-Z a-z 0-9 _ -")
    return value


def receipt(value: Any) -> str:
    """A receipt as dequeue hands them out."""
    if not isinstance(value, str) or not _RECEIPT.match(value):
        raise BadArgumentException("receipt must be a receipt a dequeue handed out")
    return value


def text(name: str, value: str) -> str:
    """A string Redis can store: valid UTF-8 (no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadArgumentException(f"{name} holds a lone UTF-16 surrogate: not valid text") from None
    return value


def required(name: str, value: Any) -> None:
    if value is None:
        raise BadArgumentException(f"{name} is required")


def known_fields(mapping: Mapping[str, Any], allowed: Collection[str], where: str = "") -> None:
    """Refuse a field SharQ does not know: a misspelt option must not pass silently."""
    allowed = allowed if isinstance(allowed, frozenset) else frozenset(allowed)
    if allowed.issuperset(mapping):  # the usual case, checked once per job of a batch
        return
    unknown = sorted(set(mapping) - allowed)
    raise BadArgumentException(f"{where}unknown field {unknown[0]!r} (known: {', '.join(sorted(allowed))})")


def integer(name: str, value: Any, minimum: int, maximum: int) -> int:
    """A true int (not bool, float or string) within [minimum, maximum]."""
    required(name, value)
    if type(value) is not int or not minimum <= value <= maximum:
        raise BadArgumentException(f"{name} must be an integer from {minimum} to {maximum}")
    return value


def optional_integer(name: str, value: Any, minimum: int, maximum: int) -> int | None:
    return None if value is None else integer(name, value, minimum, maximum)


def deadline(expire_at: Any, ttl_ms: Any) -> str | None:
    """A job's deadline as enqueue.lua and dead_retry.lua take it: epoch ms, or
    "+<ms>" from now (Redis clock); None for none. Whether expire_at is still in
    the future is checked in Lua, on the Redis clock."""
    if expire_at is not None and ttl_ms is not None:
        raise BadArgumentException("give expire_at or ttl_ms, not both")
    if ttl_ms is not None:
        return f"+{integer('ttl_ms', ttl_ms, 1, MAX_INTERVAL)}"
    return None if expire_at is None else str(integer("expire_at", expire_at, 0, MAX_TIME))


def cost(name: str, value: Any) -> int | None:
    """A job's cost in units, 1 to MAX_COST; None when not given."""
    return optional_integer(name, value, 1, MAX_COST)


def payload_text(payload: Any) -> str:
    """The payload as JSON text; NaN, infinities and non-JSON objects are refused."""
    try:
        text = ujson.dumps(payload, ensure_ascii=False, escape_forward_slashes=False, allow_nan=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadArgumentException(f"payload is not JSON-serialisable: {exc}") from None
    if text.isascii():  # no surrogate possible: spares an encode per job
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadArgumentException("payload holds a lone UTF-16 surrogate (such as \\ud800): not valid text") from None
    return text
