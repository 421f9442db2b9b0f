"""The test fixtures stop what they started, even when a test fails: a pytest
session of its own runs tests that leave a real sharq-server behind, and each
server must be gone when the test (or the session, or pytest itself) is over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

from sharq_server.embedded import redis_executable
from tests.support import LocalCluster, processes_mentioning, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent

INNER = """
import os
import pathlib
import time

import pytest

from tests.support import ServerProcess, processes_mentioning

RECORDS = pathlib.Path(os.environ["CLEANUP_RECORDS"])


def started(name, server):
    (RECORDS / name).write_text(server.data_dir)


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    server = ServerProcess(str(tmp_path_factory.mktemp("module") / "data"), workers=1).start()
    started("module", server)
    yield server
    raise RuntimeError("a teardown that fails before it stops its server")


def test_a_failing_test_leaves_its_server(tmp_path):
    started("failing", ServerProcess(str(tmp_path / "data"), workers=1).start())
    raise AssertionError("failed with its server running")


def test_that_server_is_gone_once_that_test_is_over():
    assert processes_mentioning((RECORDS / "failing").read_text()) == []


def test_a_module_fixture_leaves_its_server(module_server):
    assert module_server.call("GET", "/")[0] == 200


def test_killed_with_its_server_running(tmp_path):
    started("killed", ServerProcess(str(tmp_path / "data"), workers=1).start())
    (RECORDS / "ready").touch()
    time.sleep(60)  # killed meanwhile
"""


def run_inner(tmp_path: Path, *selection: str) -> subprocess.Popen[str]:
    """pytest on INNER, with this repository's conftest.py as a plugin, as `make test` runs it."""
    (tmp_path / "records").mkdir(exist_ok=True)
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER))
    command = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p", "tests.conftest"]
    command += ["-p", "no:cacheprovider", "-q", f"--basetemp={tmp_path / 'inner'}"]
    command += [f"{tmp_path / 'test_inner.py'}::{name}" for name in selection]
    env = {**os.environ, "CLEANUP_RECORDS": str(tmp_path / "records"), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def left_running(tmp_path: Path, name: str) -> list[int]:
    return processes_mentioning((tmp_path / "records" / name).read_text())


def test_a_failing_test_or_fixture_leaves_no_server_running(tmp_path) -> None:
    inner = run_inner(
        tmp_path,
        "test_a_failing_test_leaves_its_server",
        "test_that_server_is_gone_once_that_test_is_over",
        "test_a_module_fixture_leaves_its_server",
    )
    try:
        output, _ = inner.communicate(timeout=90)
    finally:
        inner.kill()
        inner.communicate()
    assert inner.returncode == 1, output
    assert "1 failed, 2 passed, 1 error" in output, output  # the inner test saw the first server gone
    assert left_running(tmp_path, "failing") == [] and left_running(tmp_path, "module") == [], output


def test_a_killed_test_run_leaves_no_server_running(tmp_path) -> None:
    """pytest killed by SIGKILL runs no teardown at all: the kernel tells the
    server it started (PR_SET_PDEATHSIG), which stops."""
    inner = run_inner(tmp_path, "test_killed_with_its_server_running")
    try:
        wait_for(lambda: (tmp_path / "records" / "ready").exists(), timeout=60, what="the inner server to start")
        assert left_running(tmp_path, "killed")
    finally:
        inner.send_signal(signal.SIGKILL)
        inner.communicate(timeout=30)
    wait_for(lambda: not left_running(tmp_path, "killed"), timeout=30, what="the server to stop")


def test_a_cluster_node_whose_port_was_taken_starts_on_another(tmp_path) -> None:
    """The fixtures choose a cluster's ports before starting its nodes; a port that
    another process takes meanwhile makes that node start elsewhere, not fail."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cluster = LocalCluster(str(tmp_path / "cluster"), redis_executable())
        cluster.nodes[1].port = taken.getsockname()[1]
        try:
            cluster.start()
            assert cluster.nodes[1].port != taken.getsockname()[1]
            with redis.Redis(port=cluster.nodes[1].port) as node:
                assert node.cluster("info")["cluster_state"] == "ok"
        finally:
            cluster.stop()
