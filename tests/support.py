"""Helpers shared by the tests (and bench/): free ports, deadlines, a clock tests can
step, real HTTP calls, and the real servers and Redis Cluster they run."""

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

from sharq_server.embedded import EmbeddedRedis

T = TypeVar("T")


def free_port(below: int = 65536) -> int:
    """A port free on 127.0.0.1 now, smaller than `below`."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < below:
            return port


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


class ServerProcess:
    """The real `sharq-server` CLI as a subprocess on a free port."""

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
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(self._answers, timeout=timeout, what=f"sharq-server on {self.url}")
        except BaseException:
            self.stop(timeout=10)
            raise
        return self

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log()
        try:
            return http("GET", self.url + "/", timeout=1)[0] == 200
        except OSError:
            return False

    def call(self, method: str, path: str, body: object = None, **kwargs):
        return http(method, self.url + path, body, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send `sig` and wait for the exit; one not done within `timeout` is killed
        (its workers and embedded Redis follow their master) before TimeoutExpired."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def log(self) -> str:
        with open(self.log_path, errors="replace") as log:
            return log.read()


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (to find a leftover redis-server)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if text.encode() in cmdline.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


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
        for node in self.nodes:
            node.start()
        clients = [redis.Redis(port=node.port) for node in self.nodes]
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
        return self

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
