"""Runs the examples of README.md and the docs pages, in the order a reader meets them.

A small collector of our own rather than sybil or pytest-examples: the examples are
mostly shell sessions (``$ curl ...`` followed by what the server answered) that
build on one another across pages, against one server, with receipts handed from
one command's output to the next command; sybil would need the same parser written
as its plugin, and pytest-examples checks Python blocks one at a time. This module
is that parser and runner; tests/test_docs_examples.py drives it.

What a page may hold (see docs/development.md, "Examples"):

- a fenced block in ``console``: ``$ `` lines are commands (a trailing ``\\`` joins
  the next line), the lines after a command are its output, compared after masking
  times, pids and receipts; ``…`` stands for anything; ``$ # ...`` is a comment; a
  ``^C`` line sends SIGINT to the command there and compares the rest after it exits;
- ``bash``/``sh``: a script that must exit 0;
- ``python``: run as a script; the ``# => text`` comments, in order, are its expected
  output lines; a block whose first line is ``# name.py`` is written to that file
  (in the examples' working directory) instead of run;
- an HTML comment on the line before a block changes that: ``<!-- example: skip: why -->``
  (the reason is required), ``<!-- example: background -->`` (a console block of one
  command left running until the end of the page, once its shown output appeared),
  ``<!-- example: eventually -->`` (run again until the output matches, for what
  something running in the background does), ``<!-- example: requires: promtool -->``
  (run only where those programs are on PATH, as in CI).

Any other fence needs a language (``text``, ``json``, ``yaml``, ``ini``...), so a
shell session can never hide in an unlabelled block.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RUNNABLE = {"console", "bash", "sh", "shell", "python"}
_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*example:\s*(.*?)\s*-->\s*$")
_URL_PORT = re.compile(r"((?:127\.0\.0\.1|localhost):)(\d{4,5})\b|(--port[ =])(\d{4,5})\b")
_RECEIPT = re.compile(r"\b[0-9a-f]{16}\.\d+\b")
# What differs from run to run, masked in the expected and the actual text alike.
_MASKS = [
    (re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]"), "[<time>]"),
    (re.compile(r"\[\d+\]"), "[<pid>]"),
    (_RECEIPT, "<receipt>"),
    (re.compile(r"\b1\d{12}\b"), "<epoch-ms>"),
    (re.compile(r'("(?:retry_after_ms|oldest_queued_age_ms)":)\d+'), r"\1<ms>"),
    (re.compile(r"\b\d+(\.\d+)?(ms| ms|s)\b"), "<duration>"),
]
DEADLINE = 20.0


@dataclass
class Block:
    path: str
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    marker: str = ""

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def blocks(path: str, text: str) -> list[Block]:
    """The fenced blocks of a Markdown page, with the marker comment before each."""
    found: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, language = opening.groups()
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else lines[index])
            index += 1
        before = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = _MARKER.match(before.strip())
        found.append(Block(path, start + 1, language, "\n".join(body), marker.group(1) if marker else ""))
        index += 1
    return found


def mask(text: str) -> str:
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def matches(expected: str, actual: str) -> bool:
    """Masked `actual` equals masked `expected`, where ``…`` in `expected` stands for anything."""
    parts = [re.escape(part) for part in mask(expected).split("…")]
    return re.fullmatch(".*?".join(parts), mask(actual), re.DOTALL) is not None


@dataclass
class Session:
    """One reader going through the pages: a working directory, the servers, the
    receipts seen so far, and what each page left running."""

    workdir: str
    env: dict[str, str]
    ports: dict[str, str]  # port in the docs -> port here
    free_port: Callable[[], int]  # a free port for each other port the docs name
    receipts: dict[str, str] = field(default_factory=dict)
    record: bool = False  # a writer's aid: put what the commands printed into the page
    background: list[Running] = field(default_factory=list)

    # -- rewriting between the docs and this run --------------------------------------

    def _port(self, port: str) -> str:
        if port not in self.ports:
            self.ports[port] = str(self.free_port())
        return self.ports[port]

    def to_here(self, command: str) -> str:
        command = _URL_PORT.sub(
            lambda m: (m.group(1) + self._port(m.group(2))) if m.group(1) else (m.group(3) + self._port(m.group(4))),
            command,
        )
        return _RECEIPT.sub(lambda m: self.receipts.get(m.group(0), m.group(0)), command)

    def to_docs(self, output: str) -> str:
        for doc, here in self.ports.items():
            output = re.sub(rf"(127\.0\.0\.1:|localhost:|--port[ =]){here}\b", rf"\g<1>{doc}", output)
        return output

    def learn_receipts(self, expected: str, actual: str) -> None:
        for doc, here in zip(_RECEIPT.findall(expected), _RECEIPT.findall(actual), strict=False):
            self.receipts[doc] = here

    # -- running ----------------------------------------------------------------------

    def run(self, block: Block) -> None:
        if block.marker.startswith("skip"):
            assert block.marker.startswith("skip:") and block.marker[5:].strip(), f"{block.where}: skip needs a reason"
            return
        if block.marker.startswith("requires:"):  # runs where that program is installed (CI installs it)
            if not all(shutil.which(program) for program in block.marker[9:].split()):
                return
            block.marker = ""
        if block.language == "python":
            self._python(block)
        elif block.language == "console":
            self._console(block)
        else:
            result = self._shell(block.text, timeout=DEADLINE)
            assert result.returncode == 0, f"{block.where}: exit {result.returncode}\n{result.stdout}"

    def _shell(self, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        # one stream, in the order a terminal shows them
        return _run(["bash", "-c", self.to_here(command)], self.workdir, self.env, timeout, subprocess.STDOUT)

    def _python(self, block: Block) -> None:
        first = block.text.splitlines()[0] if block.text else ""
        name = re.fullmatch(r"#\s*([\w/]+\.py)\s*", first)
        if name:
            with open(os.path.join(self.workdir, name.group(1)), "w") as out:
                out.write(self.to_here(block.text) + "\n")
            return
        expected = "\n".join(re.findall(r"#\s*=>\s?(.*)$", block.text, re.MULTILINE))
        script = os.path.join(self.workdir, "_example.py")
        with open(script, "w") as out:
            out.write(self.to_here(block.text) + "\n")
        result = _run([self.env["SHARQ_EXAMPLES_PYTHON"], script], self.workdir, self.env, DEADLINE, subprocess.PIPE)
        assert result.returncode == 0, f"{block.where}: exit {result.returncode}\n{result.stdout}{result.stderr}"
        actual = self.to_docs(result.stdout)
        assert matches(expected, actual), f"{block.where}: expected\n{expected}\ngot\n{actual}"

    def _console(self, block: Block) -> None:
        steps = commands(block.text)
        if block.marker == "background":
            assert len(steps) == 1, f"{block.where}: a background block runs one command"
            self._background(block, *steps[0])
            return
        deadline = time.monotonic() + (DEADLINE if block.marker == "eventually" else 0)
        while True:
            try:
                for command, expected in steps:
                    self._step(block, command, expected)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _step(self, block: Block, command: str, expected: str) -> None:
        if "\n^C" in "\n" + expected:
            before, after = re.split(r"^\^C", expected, maxsplit=1, flags=re.MULTILINE)
            running = self._start(command)
            try:
                self._wait_for_output(block, running, before)
            finally:
                running.stop()  # its output never showing must not leave it running
            actual = self.to_docs(running.output)
            assert matches(before + after, actual), f"{block.where}: $ {command}\nexpected\n{expected}\ngot\n{actual}"
            return
        result = self._shell(command, timeout=DEADLINE)
        actual = self.to_docs(result.stdout)
        assert result.returncode == 0, f"{block.where}: $ {command}\nexit {result.returncode}\n{actual}"
        if self.record and not matches(expected, actual):
            self._record(block, command, expected, actual)
            expected = actual
        assert matches(expected, actual), f"{block.where}: $ {command}\nexpected\n{expected}\ngot\n{actual}"
        self.learn_receipts(expected, actual)

    def _record(self, block: Block, command: str, expected: str, actual: str) -> None:
        """Replace the output shown after `command` in the page with `actual`."""
        lines = block.text.splitlines()
        for _, last, shown_command, shown in _steps(lines):
            if shown_command == command and "\n".join(shown).strip() == expected.strip():
                lines[last + 1 : last + 1 + len(shown)] = actual.strip().splitlines()
                break
        else:
            raise AssertionError(f"{block.where}: cannot find $ {command} to record its output")
        new_text = "\n".join(lines)
        with open(block.path) as page:
            text = page.read()
        text = text.replace(block.text, new_text, 1)
        with open(block.path, "w") as page:
            page.write(text)
        block.text = new_text

    def _start(self, command: str) -> Running:
        process = subprocess.Popen(
            ["bash", "-c", self.to_here(command)],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        return Running(process)

    def _wait_for_output(self, block: Block, running: Running, expected: str) -> str:
        """Wait until the process has shown `expected` (masked, ``…`` allowed)."""
        deadline = time.monotonic() + DEADLINE
        while not matches(expected.rstrip() + "…", self.to_docs(running.output)):
            assert time.monotonic() < deadline, f"{block.where}: waited for\n{expected}\ngot\n{running.output}"
            time.sleep(0.05)
        return running.output

    def _background(self, block: Block, command: str, expected: str) -> None:
        running = self._start(command)
        self.background.append(running)
        self._wait_for_output(block, running, expected)

    def stop_background(self) -> None:
        """What the page left running gets SIGINT, as a reader's Ctrl-C."""
        for running in self.background:
            running.stop()
        self.background.clear()


class Running:
    """A command started in its own process group, its output read as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self._chunks: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self._chunks.append(line)

    @property
    def output(self) -> str:
        return "".join(self._chunks)

    def stop(self) -> None:
        """SIGINT, as Ctrl-C; then SIGKILL to whatever of its group is left (it did
        not exit in time, or a background job of its shell, which ignores SIGINT,
        outlived it and would hold its output open: the reader would never end)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(DEADLINE)
        _kill_group(self.process)
        self._reader.join(DEADLINE)
        self.process.stdout.close()  # type: ignore[union-attr]


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL every process left in `process`'s group (it leads one) and reap it."""
    with contextlib.suppress(ProcessLookupError):  # the group is empty: all exited
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _run(
    argv: list[str], cwd: str, env: dict[str, str], timeout: float, stderr: int
) -> subprocess.CompletedProcess[str]:
    """subprocess.run in a process group of its own, every process of which is killed
    when it ends or times out: subprocess.run kills only the process it started, so
    a `sharq-worker` an example started would outlive a failed run, orphaned."""
    with subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True,
        start_new_session=True,
    ) as process:  # fmt: skip
        try:
            stdout, errors = process.communicate(timeout=timeout)
        finally:
            _kill_group(process)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, errors)


def _steps(lines: list[str]) -> list[tuple[int, int, str, list[str]]]:
    """(first line, last line, command, output lines) of each ``$`` command."""
    steps: list[tuple[int, int, str, list[str]]] = []
    index = 0
    while index < len(lines):
        if lines[index].startswith("$ "):
            first, command = index, lines[index][2:]
            while command.endswith("\\") and index + 1 < len(lines):
                index += 1
                command = command[:-1] + " " + lines[index].strip()
            steps.append((first, index, command, []))
        elif steps:
            steps[-1][3].append(lines[index])
        index += 1
    return steps


def commands(text: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a console block; comments dropped."""
    steps = _steps(text.splitlines())
    for _, _, command, out in steps:
        if command.lstrip().startswith("#") and any(line.strip() for line in out):
            raise ValueError(f"a comment shows output, which nothing would check: $ {command}")
    return [(command, "\n".join(out)) for _, _, command, out in steps if not command.lstrip().startswith("#")]
