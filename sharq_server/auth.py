"""Optional bearer-token access control (``[sharq-server] auth_tokens``)."""

from __future__ import annotations

import hmac

from flask import Flask, request

from sharq_core import SharqError


class Unauthorized(SharqError):
    """No token, or not one of the configured ones."""

    status = 401
    headers = {"WWW-Authenticate": "Bearer"}  # noqa: RUF012 - read-only


def require_tokens(app: Flask, tokens: tuple[str, ...]) -> None:
    """Every route but ``GET /`` and the dashboard's static page needs
    ``Authorization: Bearer <token>``."""
    expected = [token.encode() for token in tokens]

    @app.before_request
    def check_token() -> None:
        if request.path == "/" or request.path.startswith("/dashboard/"):
            return  # the page asks for the token and sends it with its API calls
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        given_bytes = given.strip().encode("utf-8", "surrogateescape")
        # compare against every token so the time taken does not tell which matched
        matched = [hmac.compare_digest(given_bytes, token) for token in expected]
        if scheme.lower() != "bearer" or not any(matched):
            raise Unauthorized("missing or wrong bearer token")
