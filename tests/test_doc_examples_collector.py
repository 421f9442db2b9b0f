"""The docs-example collector itself (tests/doc_examples.py): what it reads from a page
and what it counts as the same output; and the MkDocs hooks that generate the reference
pages (tools/docs_hooks.py). No server: the examples run in tests/test_docs_examples.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import yaml

from sharq_server.openapi import document
from tests import doc_examples
from tests.doc_examples import Block, Session, blocks, commands, matches
from tests.support import wait_for


def test_blocks_carry_language_line_and_marker() -> None:
    page = (
        "Text\n\n<!-- example: skip: needs docker -->\n```console\n$ docker ps\n```\n\n"
        "```python\nprint(1)  # => 1\n```\n"
    )
    found = blocks("page.md", page)
    assert [(b.language, b.line, b.marker) for b in found] == [("console", 4, "skip: needs docker"), ("python", 8, "")]
    assert found[1].text == "print(1)  # => 1"


def test_commands_join_continuations_and_keep_outputs() -> None:
    text = (
        '$ curl -X POST http://x/ \\\n    -d \'{}\'\n{"status":"queued"}\n'
        "$ # a comment\n$ curl http://x/\nline 1\nline 2"
    )
    assert commands(text) == [
        ("curl -X POST http://x/  -d '{}'", '{"status":"queued"}'),
        ("curl http://x/", "line 1\nline 2"),
    ]


def test_a_comment_with_output_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing would check"):
        commands('$ # the same again\n{"status":"failure"}')


def test_times_receipts_and_pids_are_masked_and_ellipsis_matches_anything() -> None:
    shown = '{"dequeued_at":1795738245219,"receipt":"a2c63aa3dc019680.0","retry_after_ms":59982}'
    printed = '{"dequeued_at":1796240601348,"receipt":"a665ad83681b94e4.1","retry_after_ms":123}'
    assert matches(shown, printed)
    assert matches("[2026-12-02 10:00:00,001] [4242] [INFO] up", "[2026-12-03 11:11:11,111] [7] [INFO] up")
    assert matches('{"a":1,…}', '{"a":1,"b":2,"c":3}')


def test_a_different_answer_does_not_match() -> None:
    assert not matches('{"status":"queued"}', '{"status":"failure","message":"job_id is already queued"}')
    assert not matches('{"active":0}', '{"active":4}')
    assert not matches("sending hello", "sending hello\nsending again")


def test_ports_and_receipts_are_rewritten_both_ways(tmp_path) -> None:
    session = Session(str(tmp_path), {}, {"8080": "51234"}, lambda: 40000)
    assert session.to_here("curl http://127.0.0.1:8080/ && uvicorn app:app --port 8000") == (
        "curl http://127.0.0.1:51234/ && uvicorn app:app --port 40000"
    )
    assert session.to_docs("from http://127.0.0.1:51234 and on http://127.0.0.1:40000") == (
        "from http://127.0.0.1:8080 and on http://127.0.0.1:8000"
    )
    session.learn_receipts('{"receipt":"ebda19659a5f7cec.0"}', '{"receipt":"0123456789abcdef.0"}')
    assert session.to_here('-d \'{"receipt": "ebda19659a5f7cec.0"}\'') == '-d \'{"receipt": "0123456789abcdef.0"}\''


def test_a_skip_needs_a_reason(tmp_path) -> None:
    session = Session(str(tmp_path), {}, {}, lambda: 40000)
    session.run(Block("page.md", 1, "console", "$ make run", "skip: starts a server"))
    with pytest.raises(AssertionError, match="needs a reason"):
        session.run(Block("page.md", 1, "console", "$ make run", "skip"))


def test_a_command_whose_output_differs_fails(tmp_path) -> None:
    session = Session(str(tmp_path), {"PATH": "/usr/bin:/bin"}, {}, lambda: 40000)
    session.run(Block("page.md", 1, "console", "$ echo hello\nhello"))
    with pytest.raises(AssertionError, match="expected"):
        session.run(Block("page.md", 1, "console", "$ echo hello\ngoodbye"))
    with pytest.raises(AssertionError, match="exit 3"):
        session.run(Block("page.md", 1, "console", "$ exit 3"))


def _hooks():
    """tools/docs_hooks.py, which MkDocs loads by its path (tools/ is no package)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "docs_hooks.py")
    spec = importlib.util.spec_from_file_location("docs_hooks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_pages_cover_every_operation_and_option(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """tools/docs_hooks.py: every operationId of the served document is on the HTTP page,
    every option is in the configuration table, and an option described neither in the
    hooks nor in config/sharq.conf stops the build, naming it."""
    docs_hooks = _hooks()

    spec = document()
    page = docs_hooks.http_reference(spec)
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            assert f"### `{method.upper()} {path}`" in page
            assert f"`{operation['operationId']}`" in page
    table = docs_hooks.configuration_table()
    assert "| `worker_connections` | `SHARQ_WORKER_CONNECTIONS` | `1000` |" in table
    monkeypatch.delitem(docs_hooks.DESCRIPTIONS, "wait_timeout_ms")
    from_conf = "| `wait_timeout_ms` | `SHARQ_REDIS_WAIT_TIMEOUT_MS` | `100` | how long to wait"
    assert from_conf in docs_hooks.configuration_table()
    (tmp_path / "sharq.conf").write_text("[redis]\n")
    monkeypatch.setattr(docs_hooks, "_CONF", str(tmp_path / "sharq.conf"))
    with pytest.raises(ValueError, match=r"\[redis\] wait_timeout_ms"):
        docs_hooks.configuration_table()


def test_the_alerts_table_lists_every_shipped_alert() -> None:
    docs_hooks = _hooks()
    table = docs_hooks.alerts_table()
    with open(docs_hooks._RULES) as rules:
        groups = yaml.safe_load(rules)["groups"]
    names = [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]
    assert names and all(f"| `{name}` |" in table for name in names)
    assert "{{" not in table


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone but for its parent's wait(): /proc shows it as state Z
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def _started_child(tmp_path) -> int:
    return int(wait_for(lambda: (tmp_path / "child.pid").exists() and (tmp_path / "child.pid").read_text().strip()))


# a command that starts a long-running child (as `sharq-worker` is) and waits on it
_CHILD = "sleep 300 & echo $! > child.pid; wait"


@pytest.mark.parametrize(
    "block",
    [
        Block("page.md", 1, "console", f"$ {_CHILD}\nready\n^C"),  # its output never shows: no Ctrl-C came
        Block("page.md", 1, "console", f"$ {_CHILD}\nready"),  # it outlives the deadline
        Block("page.md", 1, "bash", _CHILD),
        Block("page.md", 1, "python", f"import subprocess\nsubprocess.run({_CHILD!r}, shell=True)"),
    ],
    ids=["ctrl-c-never-reached", "console-timeout", "bash-timeout", "python-timeout"],
)
def test_a_failed_example_leaves_nothing_running(tmp_path, monkeypatch: pytest.MonkeyPatch, block: Block) -> None:
    """Found by review: an example that failed (its output never showed, or it ran past
    the deadline) left what it started running: a `sharq-worker` of the README's ^C
    block polled on after the test run, orphaned. Every process an example starts is
    stopped however it ends."""
    monkeypatch.setattr(doc_examples, "DEADLINE", 1.0)
    env = {"PATH": "/usr/bin:/bin", "SHARQ_EXAMPLES_PYTHON": sys.executable}
    session = Session(str(tmp_path), env, {}, lambda: 40000)
    with pytest.raises((AssertionError, subprocess.TimeoutExpired)):
        session.run(block)
    child = _started_child(tmp_path)
    session.stop_background()
    wait_for(lambda: not _alive(child), timeout=5, what=f"the example's child {child} to be stopped")


def test_a_background_example_stops_its_whole_group(tmp_path) -> None:
    """stop_background() ends every process a background command started, not just
    the shell: a child that outlived its parent's Ctrl-C was left running, and kept the
    output open, so stop_background() hung until it ended."""
    session = Session(str(tmp_path), {"PATH": "/usr/bin:/bin"}, {}, lambda: 40000)
    # a shell's background job ignores SIGINT: the shell exits on Ctrl-C, its job runs on
    command = "sleep 300 & echo $! > child.pid; echo ready; sleep 300"
    session.run(Block("page.md", 1, "console", f"$ {command}\nready", "background"))
    child = _started_child(tmp_path)
    session.stop_background()
    wait_for(lambda: not _alive(child), timeout=5, what=f"the background child {child} to be stopped")
