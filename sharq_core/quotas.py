"""Quotas over fixed windows (issue 25.2): the spec the scripts store, and what GET shows.

A queue's (or a type's) quotas are up to three windows, each `limit` units per
`window_ms`, aligned to the epoch plus `offset_ms` (a day window with offset_ms
-28,800,000 resets at midnight UTC-8). Units are counted at hand-out by the take
script (quota_take and quota_count in _helpers.lua), as units under
"<owner>/<window_ms>/<offset_ms>@<window start>" in "<base>:used".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import validation as check
from .base import KEEP, MAX_LIMIT
from .exceptions import BadArgumentException

MAX_QUOTAS = 3
MIN_WINDOW = 1000
MAX_WINDOW = 31 * 86_400_000
_FIELDS = frozenset(("limit", "window_ms", "offset_ms"))


def quota_spec(value: Any) -> str:
    """`quotas` as limits.lua and type_limits.lua take it: a spec, "-" to clear, "" to keep."""
    if value is KEEP:
        return ""
    if value is None:
        return "-"
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_QUOTAS:
        raise BadArgumentException(f"quotas must be a list of 1 to {MAX_QUOTAS} windows, or null to clear them")
    parts, seen = [], {}
    for index, quota in enumerate(value):
        where = f"quotas[{index}]: "
        if not isinstance(quota, Mapping):
            raise BadArgumentException(f"{where}must be an object")
        check.known_fields(quota, _FIELDS, where)
        try:
            limit = check.integer("limit", quota.get("limit"), 1, MAX_LIMIT)
            window = check.integer("window_ms", quota.get("window_ms"), MIN_WINDOW, MAX_WINDOW)
            offset = check.integer("offset_ms", quota.get("offset_ms", 0), -window, window)
        except BadArgumentException as exc:
            raise BadArgumentException(where + exc.message) from None
        # the units a window counts are stored by window_ms and offset_ms: a second
        # window alike would count every job twice in the one count
        if (window, offset) in seen:
            raise BadArgumentException(f"{where}same window_ms and offset_ms as quotas[{seen[window, offset]}]")
        seen[window, offset] = index
        parts.append(f"{limit}/{window}/{offset}")
    return ";".join(parts)


def quota_fields(owner: str, spec: bytes | None, now: int) -> list[tuple[str, int, int, int, int]]:
    """(used field, limit, window_ms, offset_ms, window start) of each window of a
    stored spec, in the window holding `now` (epoch ms)."""
    windows = []
    for part in (spec or b"").decode().split(";"):
        if part:
            limit, window, offset = (int(n) for n in part.split("/"))
            start = now - (now - offset) % window
            windows.append((f"{owner}/{window}/{offset}@{start}", limit, window, offset, start))
    return windows


def quota_view(windows: list[tuple[str, int, int, int, int]], used: list[bytes | None]) -> list[dict[str, Any]]:
    """Each window's limit, used, remaining and resets_at (epoch ms)."""
    views = []
    for (_, limit, window, offset, start), stored in zip(windows, used, strict=True):
        spent = int(stored or 0)
        views.append({
            "limit": limit, "window_ms": window, "offset_ms": offset, "used": spent,
            "remaining": max(limit - spent, 0), "resets_at": start + window,
        })  # fmt: skip
    return views
