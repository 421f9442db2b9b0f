"""Start a server for the bench and wait until it answers."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator

from tests.support import http, wait_for


@contextlib.contextmanager
def serving(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """Run a server until the block ends; yields its base URL once it answers."""
    with server_process(command, env, port) as (url, _):
        yield url


@contextlib.contextmanager
def server_process(command: list[str], env: dict[str, str], port: int) -> Iterator[tuple[str, int]]:
    """The same, yielding its base URL and pid."""
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(url), timeout=30, what=url)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(30)


def _answers(url: str) -> bool:
    try:
        return http("GET", url + "/", timeout=1)[0] == 200
    except OSError:
        return False
