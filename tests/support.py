"""Helpers shared by the tests (and bench/): free ports, deadlines, a clock tests can
step, real HTTP calls, and the real servers and Redis Cluster they run.

Every process the tests start is stopped, even when a test fails: fixtures stop
theirs on teardown, `ServerProcess` is a context manager, and conftest.py ends
whatever is still running after each test (`stop_leftovers` on the processes
naming the test's tmp_path) and after the session (those naming its basetemp).
Should pytest itself be killed, the kernel sends SIGTERM to each sharq-server
it started (as to each embedded Redis)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import TypeVar

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from sharq_server.embedded import EmbeddedRedis, _term_on_parent_death

T = TypeVar("T")


def free_port(below: int = 65536) -> int:
    """A port free on 127.0.0.1 now, smaller than `below`."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < below:
            return port


def refuses_connections(port: int) -> bool:
    """Nothing accepts connections on 127.0.0.1:`port` (a server stopped listening)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def _free_cluster_port() -> int:
    """A port whose cluster-bus twin (port + 10000, as Redis 6.2 fixes it) is free too."""
    while True:
        port = free_port(below=55536)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                continue


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def primaries(client: redis.Redis | RedisCluster) -> list[redis.Redis]:
    """The test Redis itself, or a plain client of each primary of a test cluster
    (for the per-node commands: INFO, CLIENT LIST, SCRIPT FLUSH)."""
    if isinstance(client, RedisCluster):
        return [client.get_redis_connection(node) for node in client.get_primaries()]
    return [client]


def commands_of(client: redis.Redis, calls: Callable[[], object]) -> list[str]:
    """Every command a single Redis ran while `calls` ran, the scripts' own included
    (MONITOR), less SCRIPT LOAD and the marker that ends the watch."""
    with client.monitor() as monitor:
        calls()
        client.echo("calls done")
        seen = []
        while "calls done" not in (command := monitor.next_command()["command"]):
            seen.append(command)
    return [command for command in seen if not command.startswith("SCRIPT")]


class Clock:
    """A manual clock in ms, passed to SharQ(clock=...) so tests step time exactly."""

    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def http(method: str, url: str, body: object = None, headers: dict | None = None, timeout: float = 10.0):
    """One real HTTP request; returns (status, parsed JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


# every sharq-server started and not yet seen to exit: a test that fails with
# one running does not leave its Popen to the garbage collector (a ResourceWarning)
_SERVERS: list[subprocess.Popen[bytes]] = []


class ServerProcess:
    """The real `sharq-server` CLI as a subprocess on a free port, in a process
    group of its own (its gunicorn workers with it); `with` it to have it
    stopped however the block ends."""

    def __init__(self, data_dir: str, workers: int = 2, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.workers = workers
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir + "-server.log"

    def start(self, timeout: float = 30) -> ServerProcess:
        """Start it and wait until it answers; one that does not in time is stopped
        (no fixture holds it yet to stop it after the failed test)."""
        command = [os.path.join(os.path.dirname(sys.executable), "sharq-server")]
        command += ["--port", str(self.port), "--workers", str(self.workers), "--data-dir", self.data_dir]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_term_on_parent_death,
            )
        _SERVERS.append(self.process)
        try:
            wait_for(self._answers, timeout=timeout, what=f"sharq-server on {self.url}")
        except BaseException:
            self.stop(timeout=10)  # a server that never answered is not left behind
            raise
        return self

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log()
        try:
            return http("GET", self.url + "/", timeout=1)[0] == 200
        except OSError:
            return False

    def call(self, method: str, path: str, body: object = None, **kwargs):
        return http(method, self.url + path, body, **kwargs)

    def scrape(self) -> str:
        """The Prometheus exposition of /metrics/, as text."""
        with urllib.request.urlopen(self.url + "/metrics/?format=prometheus", timeout=10) as response:
            return response.read().decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send `sig` and wait for the exit code; a server still running after
        `timeout` is killed with its whole process group (and the wait raises)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # still our group: its leader is not reaped yet
            self.process.wait()
            raise

    def log(self) -> str:
        with open(self.log_path, errors="replace") as log:
            return log.read()


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (to find a leftover redis-server),
    this process and its ancestors aside (a pytest run with --basetemp names it)."""
    found = []
    ours = _ancestry()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in ours:
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if text.encode() in cmdline.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def _ancestry() -> set[int]:
    """This process and every process above it."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as stat:
                pid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
    return pids


def stop_leftovers(folder: str, grace: float = 5.0) -> list[int]:
    """End every process still running whose command line names `folder`, or that
    runs in it (the tests start every server with its data in a tmp_path, every
    worker in one): resumed should a test have frozen it, SIGTERM, then SIGKILL
    after `grace` s. Returns their PIDs."""
    pids = sorted(set(processes_mentioning(folder.rstrip(os.sep) + os.sep)) | set(_working_in(folder)))
    for sig, wait_s in ((signal.SIGCONT, 0), (signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in pids:
            if _running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
    _SERVERS[:] = [process for process in _SERVERS if process.poll() is None]  # reaps the ones that exited
    return pids


def _working_in(folder: str) -> list[int]:
    """PIDs whose working directory is `folder` or below it (a sharq-worker a test
    started in its tmp_path), this process and its ancestors aside."""
    found, ours = [], _ancestry()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in ours:
            with contextlib.suppress(OSError):
                cwd = os.readlink(f"/proc/{entry}/cwd")
                if cwd == folder or cwd.startswith(folder.rstrip(os.sep) + os.sep):
                    found.append(int(entry))
    return found


def _running(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class LocalCluster:
    """A Redis Cluster on loopback: 3 primaries, slots split evenly, and with
    `replicas` one replica of each (nodes 3, 4, 5 replicate 0, 1, 2)."""

    BOUNDS = (0, 5461, 10923, 16384)

    def __init__(
        self, data_dir: str, executable: str, replicas: bool = False, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.nodes = [
            EmbeddedRedis(
                os.path.join(data_dir, f"node{n}"),
                port=_free_cluster_port(),
                executable=executable,
                persistent=False,
                extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", *extra_args),
            )
            for n in range(6 if replicas else 3)
        ]
        self.url = f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> LocalCluster:
        """Start the nodes and join them; a cluster that cannot form is stopped."""
        try:
            self._form()
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self) -> None:
        for node in self.nodes:
            _start_on_a_free_port(node)
        self.url = f"redis://127.0.0.1:{self.nodes[0].port}/0"
        clients = [redis.Redis(port=node.port) for node in self.nodes]
        # Distinct config epochs before the nodes meet, as redis-cli --cluster create
        # gives them. Left to gossip, a replica could keep the same epoch as its
        # primary; a CLUSTER FAILOVER TAKEOVER then claims the slots without a higher
        # epoch than the dead primary, and the other primaries never accept it.
        for n, client in enumerate(clients):
            client.execute_command("CLUSTER SET-CONFIG-EPOCH", n + 1)
        for n, client in enumerate(clients[:3]):
            client.execute_command("CLUSTER ADDSLOTS", *range(self.BOUNDS[n], self.BOUNDS[n + 1]))
        for client in clients:
            client.execute_command("CLUSTER MEET", "127.0.0.1", self.nodes[0].port)
        for primary, replica in zip(clients, clients[3:], strict=False):
            primary_id = primary.execute_command("CLUSTER MYID").decode()
            wait_for(lambda r=replica, i=primary_id: _knows(r, i), timeout=20, what="the replica to meet its primary")
            replica.execute_command("CLUSTER REPLICATE", primary_id)
        for client in clients:
            wait_for(lambda c=client: c.cluster("info")["cluster_state"] == "ok", timeout=20, what="the cluster")
        for primary, replica in zip(clients, clients[3:], strict=False):
            wait_for(lambda p=primary, r=replica: in_sync(p, [r]), timeout=20, what="the replicas to sync")
        for client in clients:
            client.close()

    def replace_as_replica(self, index: int, primary: EmbeddedRedis) -> None:
        """Start node `index` again as a new, empty node replicating `primary`, as an
        operator replaces a dead one; returns once it is in sync."""
        node = self.nodes[index]
        os.remove(os.path.join(node.data_dir, "nodes.conf"))
        node.start()
        with redis.Redis(port=node.port) as client, redis.Redis(port=primary.port) as leader:
            client.execute_command("CLUSTER MEET", "127.0.0.1", primary.port)
            leader_id = leader.execute_command("CLUSTER MYID").decode()
            wait_for(lambda: _knows(client, leader_id), timeout=10, what="the new node to meet the cluster")
            client.execute_command("CLUSTER REPLICATE", leader_id)
            wait_for(lambda: in_sync(leader, [client]), timeout=10, what="the new replica to sync")

    def shard_of(self, key: str) -> int:
        """Which primary (0, 1, 2) held `key`'s slot at the start."""
        slot = key_slot(key.encode())
        return next(n for n in range(3) if slot < self.BOUNDS[n + 1])

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                os.kill(node.process.pid, signal.SIGCONT)  # a test may have frozen it
            node.stop()


def sample(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus exposition (labels in the order given)."""
    selector = name + ("{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}" if labels else "")
    line = next(line for line in exposition.splitlines() if line.startswith(selector + " "))
    return float(line.split()[-1])


def _start_on_a_free_port(node: EmbeddedRedis, attempts: int = 3) -> None:
    """Start a cluster node; when another process took its port or its bus port
    between the choice and the start, choose another and start again."""
    for attempt in range(attempts):
        try:
            node.start()
            return
        except RuntimeError:
            with open(os.path.join(node.data_dir, "redis.log"), errors="replace") as log:
                taken = "Address already in use" in log.read()
            if not taken or attempt == attempts - 1:
                raise
            node.port = _free_cluster_port()


def _knows(client: redis.Redis, node_id: str) -> bool:
    return any(node["node_id"] == node_id for node in client.cluster("nodes").values())


def in_sync(primary: redis.Redis, replicas: list[redis.Redis]) -> bool:
    """True once every replica is online at the primary and has loaded its data (so
    WAIT counts it; offsets are not compared, as they keep moving under load)."""
    info = primary.info("replication")
    links = [info[f"slave{n}"] for n in range(info.get("connected_slaves", 0))]
    online = [link for link in links if link["state"] == "online"]
    if len(online) < len(replicas):
        return False
    for replica in replicas:
        state = replica.info("replication")
        if (
            state.get("master_link_status") != "up"
            or state.get("master_sync_in_progress")
            or replica.info("persistence")["loading"]
        ):
            return False
    return True


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP) for the block: it holds its sockets but answers nothing."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
