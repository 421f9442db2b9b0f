"""Kubernetes' probes: token-free, and saying nothing but whether to send traffic.

`/livez` answers while the process serves (a restart mends nothing else);
`/readyz` answers 200 only while Redis answers a PING within `socket_timeout`,
else 503 (from `errors.py`, as every Redis failure). Neither names a version, a
setting or an address: anyone who reaches the port may call them.
`/deepstatus/` (a token, a write) stays the deeper check.
"""

from __future__ import annotations

from flask import current_app

from .routes import serves


@serves("livez")
def livez() -> dict:
    return {"status": "success"}


@serves("readyz")
def readyz() -> dict:
    """The engine's client PINGs (every primary, on a cluster); its socket_timeout
    bounds the wait, so a hung Redis is a quick 503, never a hung probe."""
    current_app.extensions["sharq"].redis.ping()
    return {"status": "success"}
