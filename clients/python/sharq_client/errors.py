"""The server's JSON errors as exceptions, one class per status.

Every failure answer is ``{"status": "failure", "message": ...}``; the class says
what happened, `message` says why, `body` holds the whole answer (a duplicate's
`state`, say).
"""

from __future__ import annotations

from typing import Any

_CLASS_STATUS: Any = object()  # a status not given: the class's own


class SharqClientError(Exception):
    """Base of every error the client raises; `status` is the HTTP status (None
    when no answer came at all)."""

    status: int | None = None

    def __init__(self, message: str, status: Any = _CLASS_STATUS, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        # None when no answer came at all (an Unavailable raised before any status)
        self.status = type(self).status if status is _CLASS_STATUS else status
        self.body = body or {}


class BadRequest(SharqClientError):
    """400: an argument is missing, of the wrong type, unknown or out of range."""

    status = 400


class Unauthorized(SharqClientError):
    """401: no token, or not one the server accepts."""

    status = 401


class Forbidden(SharqClientError):
    """403: the token is known but may not do this (as a proxy in front may say)."""

    status = 403


class NotFound(SharqClientError):
    """404: no such job or queue in the state the call needs (or no job ready)."""

    status = 404


class Conflict(SharqClientError):
    """409: the call cannot be honoured in the state things are in now (a reshard
    of a type that holds jobs, say); nothing changed. Its subclasses DuplicateJob
    and StaleReceipt are the 409s of an enqueue and of a receipt."""

    status = 409


class DuplicateJob(Conflict):
    """409 on enqueue: the job_id is known in that queue; `state` says how."""

    @property
    def state(self) -> str | None:
        return self.body.get("state")


class StaleReceipt(Conflict):
    """409 on finish, touch or fail: the receipt names an earlier delivery."""


class PayloadTooLarge(SharqClientError):
    """413: the request body is larger than the server's max_body_size."""

    status = 413


class QueueFull(SharqClientError):
    """429: the queue already holds max_queued_length jobs."""

    status = 429


class TooManyWaiting(SharqClientError):
    """429 to a long poll: the server process holds all the parked polls it may;
    ask again after a second (sharq-worker backs off)."""

    status = 429


class Unavailable(SharqClientError):
    """503 (Redis trouble; the outcome is unknown and a retry is safe), the server
    could not be reached at all (`status` None), or what answered was not SharQ
    (a proxy's redirect or page: `status` is its HTTP status)."""

    status = 503


_BY_STATUS: dict[int, type[SharqClientError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: QueueFull,
    503: Unavailable,
}


def error_for(status: int, body: dict[str, Any], conflict: type[Conflict] = Conflict) -> SharqClientError:
    """The exception for one failure answer; a 409 without a duplicate's `state`
    raises `conflict` (StaleReceipt from a call that carries a receipt)."""
    message = str(body.get("message") or f"HTTP {status}")
    if status == 429 and body.get("reason") == "long_polls_full":
        return TooManyWaiting(message, status, body)
    if status == 409:
        return DuplicateJob(message, status, body) if "state" in body else conflict(message, status, body)
    return _BY_STATUS.get(status, SharqClientError)(message, status, body)
