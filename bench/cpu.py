"""How much CPU a process has used: what every bench divides by its jobs."""

from __future__ import annotations

import os

import psutil


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far, in the kernel's 10 ms
    ticks, counting threads that have ended (the Python processes start and end
    threads as they go)."""
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def run_time(pid: int) -> float:
    """Seconds a process's live threads have run, in ns (/proc/<pid>/task/*/schedstat),
    where a short run of a Redis would be a few ticks; else `cpu_seconds`."""
    try:
        return _schedstat_seconds(pid, 0)
    except OSError:
        return cpu_seconds([pid])


def wait_time(pid: int) -> float | None:
    """Seconds a process's live threads have waited, ready to run, for a core
    (schedstat's second figure): a serial stage such as Redis waiting there while
    other processes hold both cores slows everything behind it. None where the
    kernel does not say."""
    try:
        return _schedstat_seconds(pid, 1)
    except OSError:
        return None


def _schedstat_seconds(pid: int, field: int) -> float:
    """One figure of schedstat (ns), summed over the process's live threads."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
            total += int(stat.read().split()[field])
    return total / 1e9
