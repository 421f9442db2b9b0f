"""Every example of README.md and the docs pages runs, in reading order, against a
fresh `sharq-server` (the real CLI with its embedded Redis), and shows what it
printed; and the docs site builds with `mkdocs build --strict` (no broken link, no
page outside the nav). The collector is tests/doc_examples.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tests.doc_examples import RUNNABLE, Session, blocks
from tests.support import ServerProcess, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _nav_pages(nav: list) -> list[str]:
    pages: list[str] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def documents() -> list[str]:
    """README.md, then the docs pages in nav order."""
    with open(os.path.join(ROOT, "mkdocs.yml")) as config:
        nav = yaml.safe_load(config)["nav"]
    return ["README.md"] + [os.path.join("docs", page) for page in _nav_pages(nav)]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("docs-examples")
    server = ServerProcess(str(folder / "server-data"), workers=1).start()
    bin_dir = os.path.dirname(sys.executable)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONPATH": ROOT,  # this checkout's code; the examples' own files are found in their directory
        "PYTHONUNBUFFERED": "1",
        "SHARQ_EXAMPLES_PYTHON": sys.executable,
        "CURL_HOME": str(folder / "work"),
    }
    env.pop("SHARQ_URL", None)
    env.pop("SHARQ_TOKEN", None)
    (folder / "work").mkdir()
    for shipped in ("config", "deploy"):  # what examples read from the checkout they run in
        (folder / "work" / shipped).symlink_to(os.path.join(ROOT, shipped))
    # curl shows no progress meter on a terminal; its output here is a pipe
    (folder / "work" / ".curlrc").write_text("no-progress-meter\n")
    reader = Session(str(folder / "work"), env, {"8080": str(server.port)}, free_port)
    reader.record = os.environ.get("SHARQ_DOCS_RECORD") == "1"  # see docs/development.md
    yield reader
    reader.stop_background()
    server.stop()


@pytest.mark.e2e
@pytest.mark.parametrize("document", documents())
def test_examples_run_in_order(session: Session, document: str) -> None:
    with open(os.path.join(ROOT, document)) as page:
        found = blocks(os.path.join(ROOT, document), page.read())
    try:
        for block in found:
            assert block.language, f"{block.where}: a fence needs a language (text, json, console...)"
            if block.language in RUNNABLE:
                session.run(block)
    finally:
        session.stop_background()


def test_docs_build_strict(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ROOT, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
