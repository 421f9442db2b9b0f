"""Optional bearer-token access control by role (``[sharq-server] auth_tokens``).

Every endpoint is one action (its `action` in `routes.ROUTES`, gathered in
`ACTIONS` by Flask endpoint name); every role may take some actions
(`ROLE_ACTIONS`); a token limited to some queue types may act on those types
only. An endpoint missing from the table needs admin.

Views without a queue type: a type-limited token may read `/deepstatus/` (whose
count of parked long polls then covers its own types only), `/openapi.json` and
`/whoami/`, but not the overall `/metrics/` (JSON or Prometheus), which covers
every type.
"""

from __future__ import annotations

import hmac

from flask import Flask, current_app, g, request

from sharq_core import SharqError
from sharq_core.tokens import Token, digest_of

from .routes import ANY_TOKEN, OPEN, ROUTES

ACTIONS = {route.endpoint: route.action for route in ROUTES.values()}
ROLE_ACTIONS = {
    "producer": {"enqueue", "status"},
    "worker": {"work", "status"},
    "viewer": {"read", "status"},
    "admin": {"enqueue", "work", "status", "read", "admin"},
}
WHAT = {
    "enqueue": "enqueue jobs",
    "work": "take, finish, fail or touch jobs",
    "status": "read a job's status",
    "read": "read queues and figures",
    "admin": "change queues, limits, pauses or dead letters",
}
TYPELESS_READS = {route.endpoint for route in ROUTES.values() if route.typeless}


class Unauthorized(SharqError):
    """No token, or not one of the configured ones."""

    status = 401
    headers = {"WWW-Authenticate": "Bearer"}  # noqa: RUF012 - read-only


class Forbidden(SharqError):
    """A valid token whose role or queue types do not cover this request."""

    status = 403


def install_auth(app: Flask, tokens: tuple[Token, ...]) -> None:
    """With tokens configured, every route but the open ones needs
    ``Authorization: Bearer <token>`` whose role allows it."""
    if not tokens:
        return
    app.config["SHARQ_AUTH"] = True
    app.extensions["sharq_tokens"] = tokens
    app.before_request(check_token)


def whoami() -> dict:
    """The token's role and queue types, so a page shows only what it may do."""
    token = g.get("sharq_token")
    if token is None:
        return {"status": "success", "auth": "off", "role": "admin", "types": None}
    return {"status": "success", "auth": "required", **token.describe()}


def token_types() -> frozenset[str] | None:
    """The queue types the request's token is limited to; None: every type."""
    token = g.get("sharq_token")
    return None if token is None else token.types


def check_token() -> None:
    """401 without a known token, 403 when its role or types do not cover the request."""
    endpoint = request.endpoint
    action = ACTIONS.get(endpoint or "", "admin")
    if action == OPEN:
        return
    g.sharq_token = token = bearer(current_app.extensions["sharq_tokens"])
    if endpoint is None or action == ANY_TOKEN:
        return  # no route matched: the 404 or 405 follows
    permit(token, action, endpoint, (request.view_args or {}).get("queue_type"))


def bearer(tokens: tuple[Token, ...]) -> Token:
    """The configured token the request carries; hashed once, then compared with
    every entry (all of them, so the time taken does not tell which matched)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    digest = digest_of(given.strip().encode("latin-1", "replace"))  # back to the header's bytes
    found = None
    for token in tokens:
        if hmac.compare_digest(digest, token.digest):
            found = token
    if scheme.lower() != "bearer" or not given.strip() or found is None:
        raise Unauthorized("missing or wrong bearer token")
    return found


def permit(token: Token, action: str, endpoint: str, queue_type: str | None) -> None:
    if action not in ROLE_ACTIONS[token.role]:
        raise Forbidden(f"this token's role ({token.role}) may not {WHAT[action]}", role=token.role)
    if token.types is None or (queue_type is None and endpoint in TYPELESS_READS):
        return
    limited = f"this token ({token.role}) is limited to queue types {', '.join(sorted(token.types))}"
    if queue_type is None:
        raise Forbidden(f"{limited}; this view covers every type: use the per-type views", role=token.role)
    if queue_type not in token.types:
        raise Forbidden(f"{limited}, not {queue_type[:100]!r}", role=token.role, queue_type=queue_type[:100])
