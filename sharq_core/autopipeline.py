"""Auto-pipelining: one Redis connection per process, shared by all its greenlets.

Under gevent, many requests wait on Redis at once. Instead of one connection,
one write and one read per command, every command issued during one turn of the
event loop goes out in a single write, and one reader greenlet hands the replies
back in order. One round trip per request stays the rule; the system calls and
greenlet switches are shared, which is what lifts SharQ above the one-round-trip
floor of a client that takes a pooled connection per command.

Only for a single Redis (not Cluster, not TLS) and only where gevent has patched
the process; everywhere else the engine uses redis-py as it is.
"""

from __future__ import annotations

import socket
from collections import deque
from typing import Any
from urllib.parse import unquote, urlparse

import gevent
import gevent.event
import hiredis
import redis

from .config import RedisSettings
from .replication import Wait


class AutoPipeline:
    """`call(*args)` sends one command and returns its reply, batching with others."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.timeout = settings.socket_timeout
        self._sock: socket.socket | None = None
        self._outbox: list[bytes] = []
        self._waiters: deque[gevent.event.AsyncResult] = deque()
        self._wake_writer = gevent.event.Event()
        self._attempt: gevent.event.AsyncResult | None = None
        # the WAIT still to send, when a command sent asked for one, and the one in
        # flight: one at a time, as Redis runs nothing after a WAIT until it returns
        self._batch_wait: gevent.event.AsyncResult | None = None
        self._wait_sent: gevent.event.AsyncResult | None = None
        self._wait_command = hiredis.pack_command(("WAIT", settings.wait_replicas, settings.wait_timeout_ms))
        self._greenlets: list[gevent.Greenlet] = []

    def call(self, *args: Any, wait: Wait | None = None) -> Any:
        """One command; raises redis-py's ConnectionError, TimeoutError or ResponseError.

        With a `wait`: answer once the replicas hold the change (or `wait` has
        judged their shortfall). One WAIT covers every write sent before it on the
        connection, so the writer keeps one in flight and sends the next after
        the batches that asked meanwhile: those writes share its wait (a group
        commit), and a slow replica costs a batch one `wait_timeout_ms`, not each write.
        """
        (reply,) = self.call_many([args], wait)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def call_many(self, commands: list[tuple[Any, ...]], wait: Wait | None = None) -> list[Any]:
        """Several commands sent together, as `call` sends one: each one's reply, or
        the ResponseError Redis answered it with; a lost connection or a timeout raises."""
        if self._sock is None:
            self._connect()
        waiters = []
        for args in commands:
            waiter = gevent.event.AsyncResult()
            self._outbox.append(hiredis.pack_command(args))
            self._waiters.append(waiter)
            waiters.append(waiter)
        acked = None
        if wait is not None:
            acked = self._batch_wait = self._batch_wait or gevent.event.AsyncResult()
        self._wake_writer.set()
        replies: list[Any] = []
        for waiter in waiters:
            try:
                replies.append(self._reply(waiter))
            except redis.ResponseError as error:
                replies.append(error)
        if wait is not None and acked is not None and not all(isinstance(reply, Exception) for reply in replies):
            wait.check(self._reply(acked))  # a refused command wrote nothing
        return replies

    def close(self) -> None:
        """Drop the connection; commands still waiting fail, the next one connects again."""
        self._reset(redis.ConnectionError("the connection was closed"))

    def _reply(self, waiter: gevent.event.AsyncResult) -> Any:
        try:
            reply = waiter.get(timeout=self.timeout)
        except gevent.Timeout:
            # replies can no longer be matched to waiters: start over
            self._reset(redis.TimeoutError("Redis did not answer in time"))
            raise redis.TimeoutError("Redis did not answer in time") from None
        if isinstance(reply, _Failure):
            raise reply.error
        if isinstance(reply, hiredis.ReplyError):
            raise _response_error(str(reply))
        return reply

    # -- connection ----------------------------------------------------------

    def _connect(self) -> None:
        """Connect, or share the attempt already under way.

        Callers arriving while one attempt runs wait for that attempt and get its
        outcome: with Redis unreachable, every one of them fails after one
        connect timeout, instead of each trying in turn (k x the timeout).
        """
        if self._attempt is not None:
            self._attempt.get()
            if self._sock is None:
                raise redis.ConnectionError("Redis connection lost")
            return
        attempt = self._attempt = gevent.event.AsyncResult()
        try:
            sock = self._open()
        except BaseException as error:  # a killed greenlet too: its waiters must not wait for ever
            interrupted = redis.ConnectionError("cannot connect to Redis: the connect attempt was interrupted")
            attempt.set_exception(error if isinstance(error, redis.RedisError) else interrupted)
            raise
        finally:
            self._attempt = None
        self._sock = sock
        self._greenlets = [
            gevent.spawn(self._write_loop, sock),
            gevent.spawn(self._read_loop, sock, self._waiters),
        ]
        attempt.set(True)

    def _open(self) -> socket.socket:
        """A connected, authenticated socket on the right db."""
        try:
            sock = _open_socket(self.settings)
        except OSError as error:
            raise redis.ConnectionError(f"cannot connect to Redis: {error}") from None
        try:
            _handshake(sock, self.settings)
        except OSError as error:
            sock.close()
            raise redis.ConnectionError(f"cannot connect to Redis: {error}") from None
        except redis.RedisError:
            sock.close()
            raise
        return sock

    def _reset(self, error: Exception, only: socket.socket | None = None) -> None:
        """Drop the connection and fail every command still waiting for a reply.

        A loop passes its own socket as `only`, so a loop of a connection already
        replaced can never tear down the new one."""
        if only is not None and only is not self._sock:
            return
        sock, self._sock = self._sock, None
        greenlets, self._greenlets = self._greenlets, []
        waiters, self._waiters = self._waiters, deque()
        self._outbox = []
        if self._batch_wait is not None:
            waiters.append(self._batch_wait)
        self._batch_wait = self._wait_sent = None
        for waiter in waiters:
            waiter.set(_Failure(error))
        if sock is not None:
            sock.close()
        current = gevent.getcurrent()
        gevent.killall([g for g in greenlets if g is not current], block=False)

    # -- the two loops -------------------------------------------------------

    def _write_loop(self, sock: socket.socket) -> None:
        """Send everything queued since the last write in one sendall (then a WAIT
        when a command asked for one and none is in flight)."""
        while self._sock is sock:
            self._wake_writer.wait()
            self._wake_writer.clear()
            if self._sock is not sock:
                return
            batch, self._outbox = self._outbox, []
            if self._batch_wait is not None and self._wait_sent is None:  # covers every write sent so far
                batch.append(self._wait_command)
                self._waiters.append(self._batch_wait)
                self._wait_sent, self._batch_wait = self._batch_wait, None
            if batch:
                try:
                    sock.sendall(b"".join(batch))
                except OSError as error:
                    self._reset(redis.ConnectionError(f"Redis connection lost: {error}"), sock)
                    return

    def _read_loop(self, sock: socket.socket, waiters: deque[gevent.event.AsyncResult]) -> None:
        """Hand each reply to the oldest waiter: Redis answers in order.

        `waiters` is this connection's own queue: after a reset, a reader still
        unwinding can never hand an old reply to a new command."""
        reader = hiredis.Reader()
        while self._sock is sock:
            try:
                data = sock.recv(65536)
            except OSError as error:
                data, lost = b"", error
            else:
                lost = "closed by the server"
            if not data:
                self._reset(redis.ConnectionError(f"Redis connection lost: {lost}"), sock)
                return
            reader.feed(data)
            reply = reader.gets()
            while reply is not False:
                if not waiters:
                    self._reset(redis.ConnectionError("Redis sent a reply nobody asked for"), sock)
                    return
                waiter = waiters.popleft()
                waiter.set(reply)
                if waiter is self._wait_sent:  # the next WAIT may go now
                    self._wait_sent = None
                    if self._batch_wait is not None:
                        self._wake_writer.set()
                reply = reader.gets()


class _Failure(hiredis.ReplyError):
    """Set on a waiter when the connection failed: `call` re-raises the error."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _response_error(message: str) -> Exception:
    if message.startswith("NOSCRIPT"):
        return redis.exceptions.NoScriptError(message)
    return redis.ResponseError(message)


def _open_socket(settings: RedisSettings) -> socket.socket:
    """A connected socket to the Redis `settings` name (URL, unix socket or host/port)."""
    if settings.url:
        url = urlparse(settings.url)
        if url.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: Any = url.path
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (url.hostname or "127.0.0.1", url.port or 6379)
    elif settings.conn_type == "unix_sock":
        sock, address = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), settings.unix_socket_path
    else:
        sock, address = socket.socket(socket.AF_INET, socket.SOCK_STREAM), (settings.host, settings.port)
    sock.settimeout(settings.socket_timeout)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    if sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)  # the waiters time out, not the loops
    return sock


def _handshake(sock: socket.socket, settings: RedisSettings) -> None:
    """AUTH (with the ACL user when one is named) and SELECT, before the loops
    start, as redis-py does."""
    username, password, db = settings.username, settings.password, settings.db
    if settings.url:
        url = urlparse(settings.url)
        username = unquote(url.username) if url.username else username
        password = unquote(url.password) if url.password else password
        query = dict(part.split("=", 1) for part in url.query.split("&") if "=" in part)
        path_db = url.path.strip("/") if url.scheme != "unix" else ""
        db = int(query.get("db") or path_db or 0)
    auth = [("AUTH", username, password)] if username and password else [("AUTH", password)] if password else []
    commands = auth + ([("SELECT", db)] if db else [])
    if not commands:
        return
    sock.settimeout(settings.socket_timeout)
    sock.sendall(b"".join(hiredis.pack_command(command) for command in commands))
    reader, replies = hiredis.Reader(), []
    while len(replies) < len(commands):
        data = sock.recv(4096)
        if not data:
            raise OSError("connection closed during AUTH/SELECT")
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            replies.append(reply)
    sock.settimeout(None)
    for reply in replies:
        if isinstance(reply, hiredis.ReplyError):
            raise redis.AuthenticationError(str(reply))
