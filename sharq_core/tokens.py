"""Bearer tokens and what each may do, parsed once from ``[sharq-server] auth_tokens``.

An entry is ``<token>`` (admin, as before roles existed), ``<token>=<role>`` or
``<token>=<role>:<type>+<type>`` (limited to those queue types). The token may be
given as ``sha256:<64 hex digits>``, its digest, so a file need not hold it in
clear. Only digests are kept; error messages name an entry by its position, never
by its text, which may hold a secret.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

ROLES = ("producer", "worker", "viewer", "admin")
_DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})\Z")
_QUEUE_TYPE = re.compile(r"[A-Za-z0-9_-]{1,100}\Z")


class TokenError(ValueError):
    """An ``auth_tokens`` entry that cannot be read; the message names its position."""


@dataclass(frozen=True)
class Token:
    """One configured token: its sha256 digest, its role and the queue types it
    is limited to (None: every type)."""

    digest: bytes = field(repr=False)
    role: str = "admin"
    types: frozenset[str] | None = None

    def describe(self) -> dict[str, object]:
        """What the token may do, as the API tells it (never its digest)."""
        return {"role": self.role, "types": None if self.types is None else sorted(self.types)}


def digest_of(secret: bytes) -> bytes:
    """The sha256 of a token's bytes (a configured one is UTF-8)."""
    return hashlib.sha256(secret).digest()


def parse_tokens(value: str) -> tuple[Token, ...]:
    """Every comma-separated entry of `value`, in order; empty entries are skipped,
    but a value given with no entry at all is refused: "$A,$B" with both unset
    must not quietly turn access control off."""
    entries = [entry.strip() for entry in value.split(",")]
    if value.strip() and not any(entries):
        raise TokenError("auth_tokens is set but holds no token (unset it to turn access control off)")
    tokens = tuple(_entry(n, entry) for n, entry in enumerate(filter(None, entries), 1))
    for n, token in enumerate(tokens, 1):
        if any(token.digest == earlier.digest for earlier in tokens[: n - 1]):
            raise TokenError(f"auth_tokens entry {n} repeats the token of an earlier entry")
    return tokens


def _entry(n: int, entry: str) -> Token:
    """One entry; a trailing ``=`` (base64 padding) keeps the whole entry a bare token."""
    secret, equals, grant = entry.rpartition("=")
    if not equals or not grant.strip():
        return Token(_digest(n, entry))
    if not secret.strip():
        raise TokenError(f"auth_tokens entry {n}: no token before its '='")
    role, colon, types = grant.strip().partition(":")
    if role not in ROLES:
        raise TokenError(
            f"auth_tokens entry {n}: the text after its last '=' is not a role ({', '.join(ROLES)});"
            " a token that holds '=' takes an explicit role, as <token>=admin"
        )
    return Token(_digest(n, secret.strip()), role, _types(n, types) if colon else None)


def _digest(n: int, secret: str) -> bytes:
    if not secret.startswith("sha256:"):
        return digest_of(secret.encode("utf-8", "surrogateescape"))
    match = _DIGEST.match(secret)
    if match is None:
        raise TokenError(f"auth_tokens entry {n}: sha256: must be followed by 64 hex digits")
    return bytes.fromhex(match.group(1))


def _types(n: int, text: str) -> frozenset[str]:
    names = [name.strip() for name in text.split("+")]
    if not all(names):
        raise TokenError(f"auth_tokens entry {n}: the queue type list after ':' has an empty name")
    for name in names:
        if not _QUEUE_TYPE.match(name):
            raise TokenError(f"auth_tokens entry {n}: queue types are 1-100 characters of A-Z a-z 0-9 _ -")
    return frozenset(names)
