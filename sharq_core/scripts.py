"""The Lua scripts, one file per operation, registered once per Redis client.

Each text is read once, behind the shared ``_helpers.lua``, and never changes after.
redis-py's `Script` sends EVALSHA and reloads the text itself after a NOSCRIPT
(a Redis restart or SCRIPT FLUSH), so nothing here runs per call.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.commands.core import Script

NAMES = (
    "enqueue",
    "dequeue",
    "finish",
    "touch",
    "interval",
    "requeue",
    "status",
    "clear",
    "dead_retry",
    "dead_delete",
    "fail",
    "limits",
    "pause",
    "view",
    "stats",
    "lock",
    "unlock",
    "type_limits",
    "layout",
    "autoscale",
    "campaign_cancel",
    "campaign_forget",
    "campaign_on_done",
    "campaign_notified",
    "campaign_done_send",
)


def source(name: str) -> str:
    """``lua/<name>.lua`` after ``lua/_helpers.lua``, the functions scripts share."""
    folder = resources.files(__package__) / "lua"
    return (folder / "_helpers.lua").read_text(encoding="utf-8") + (folder / f"{name}.lua").read_text(encoding="utf-8")


def load_scripts(client: Any) -> dict[str, Script]:
    """Register every script with `client` (a Redis or RedisCluster)."""
    return {name: client.register_script(source(name)) for name in NAMES}
