"""Where the gunicorn workers of one instance keep their counters, so that a scrape
of any of them sums them all (prometheus_client's multiprocess mode).

prometheus_client reads ``PROMETHEUS_MULTIPROC_DIR`` when it is first imported, so
this runs before it is: in the `sharq-server` master before the workers fork, and
at the top of ``wsgi.py`` for a gunicorn run directly. An explicit
``PROMETHEUS_MULTIPROC_DIR`` is always used as given.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tempfile
from typing import Any

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_MASTER_FOLDER = re.compile(r"sharq-metrics-([0-9]+)-([0-9]+)")  # pid and start time of a gunicorn master


def share_process_metrics() -> str | None:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` unless the environment names one; returns
    the directory set here (None when the environment named one).

    The directory is the gunicorn master's, the same for its every worker: in a
    worker (``wsgi.py`` loaded after the fork, gunicorn's default) the master is
    its parent; anywhere else (the `sharq-server` master, a ``--preload``
    master) this process is, and the workers forked after this inherit it."""
    if os.environ.get(VARIABLE):
        return None
    worker = _gunicorn_worker()
    folder = _folder_of_master(os.getpid() if worker is None else worker.ppid)
    os.environ[VARIABLE] = folder
    return folder


def _gunicorn_worker() -> Any:
    """The gunicorn worker loading the app in this process, if one is: gunicorn
    tells a worker nothing else, and under ``--preload`` the master loads it."""
    try:
        from gunicorn.workers.base import Worker
    except ImportError:
        return None
    frame = sys._getframe(1)
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), Worker):
            return frame.f_locals["self"]
        frame = frame.f_back
    return None


def _folder_of_master(pid: int) -> str:
    """The master's directory, named by its pid and start time (a pid reused by a
    later master must not inherit old counters); refused unless it is ours alone."""
    _prune_exited_masters()
    folder = os.path.join(tempfile.gettempdir(), f"sharq-metrics-{pid}-{_start_time(pid)}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    found = os.lstat(folder)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise RuntimeError(f"{folder} is not a private directory of this user: set {VARIABLE} to one")
    return folder


def _prune_exited_masters() -> None:
    """Remove this user's directories of masters that have exited: a gunicorn run
    directly has no hook of SharQ's at its exit to do it."""
    for entry in os.scandir(tempfile.gettempdir()):
        found = _MASTER_FOLDER.fullmatch(entry.name)
        if found is None or not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != os.getuid():
            continue
        if _start_time(int(found[1])) != found[2]:
            shutil.rmtree(entry.path, ignore_errors=True)


def _start_time(pid: int) -> str:
    """The process' start time in clock ticks since boot (Linux), or "0"."""
    try:
        with open(f"/proc/{pid}/stat") as status:
            return status.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"
