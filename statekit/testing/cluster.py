"""Throwaway Redis Cluster and Redis Sentinel setups on loopback, for tests and benchmarks.

``RedisClusterSetup``: N primaries started with ``--cluster-enabled yes`` and joined by
``redis-cli --cluster create``. ``RedisSentinelSetup``: one primary, one replica and three
sentinels (``redis-server sentinel.conf --sentinel``). Both bind 127.0.0.1 on free ports and
remove every process and temporary directory on ``cleanup()``.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import redis

from statekit.testing.servers import (
    RedisServer,
    RedisServerUnavailable,
    _answers,
    free_port,
    stop_process,
)

__all__ = ["RedisClusterSetup", "RedisSentinelSetup", "SentinelProcess", "cluster_node_port"]

_HOST = "127.0.0.1"


def _wait(what: str, check: object, timeout: float) -> None:
    """Poll ``check()`` until it returns True; raise ``RedisServerUnavailable`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.exceptions.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise RedisServerUnavailable(f"{what} not reached in {timeout}s (last error: {last!r})")


def _client(port: int, password: str | None = None) -> redis.Redis:
    return redis.Redis(
        host=_HOST, port=port, password=password, socket_timeout=2, decode_responses=True
    )


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def cluster_node_port() -> int:
    """A free port for a cluster node: at most 55535, with its bus port (port + 10000) free too."""
    while True:
        port = free_port()
        if port <= 55535 and _bindable(port + 10000):
            return port


def _start_with_retry(server: RedisServer, attempts: int = 3, cluster: bool = False) -> None:
    """Start ``server``, moving it to another free port if its port was taken meanwhile."""
    for attempt in range(attempts):
        try:
            server.start()
            return
        except RedisServerUnavailable:
            if attempt == attempts - 1:
                raise
            server.port = cluster_node_port() if cluster else free_port()


class RedisClusterSetup:
    """A Redis Cluster of ``primaries`` masters (no replicas) on 127.0.0.1.

    ``appendonly=True`` keeps each node's data across ``stop()`` / ``start()`` of that node
    (``nodes[i]``, a ``RedisServer``). ``start()`` launches the nodes, creates the cluster and waits for ``cluster_state:ok``;
    ``url`` is its ``redis+cluster://`` URL. Raises ``RedisServerUnavailable`` when
    ``redis-server`` or ``redis-cli`` is missing or the cluster does not form.
    """

    def __init__(
        self, *, primaries: int = 3, password: str | None = None, appendonly: bool = False
    ) -> None:
        if primaries < 3:
            raise ValueError(f"a Redis Cluster needs at least 3 primaries, got {primaries}")
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RedisServerUnavailable("no redis-cli binary on PATH (needed to create a cluster)")
        self.cli = cli
        self.password = password
        extra: tuple[str, ...] = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000",
        )
        if password:
            extra += ("--masterauth", password)
        self.nodes = [
            RedisServer(
                port=cluster_node_port(), password=password, appendonly=appendonly, extra=extra
            )
            for _ in range(primaries)
        ]

    @property
    def ports(self) -> list[int]:
        """The port of every node."""
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://[:password@]host:port,...`` naming every node."""
        auth = f":{self.password}@" if self.password else ""
        return "redis+cluster://" + auth + ",".join(f"{_HOST}:{p}" for p in self.ports)

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, create the cluster and wait until all nodes report it ok."""
        try:
            for node in self.nodes:
                _start_with_retry(node, cluster=True)
            self._create(timeout)
        except BaseException:
            self.cleanup()
            raise

    def _create(self, timeout: float) -> None:
        probe = _client(self.ports[0], self.password)
        try:
            if probe.cluster("INFO").get("cluster_state") == "ok":
                return  # already formed (a restart keeps nodes.conf)
        finally:
            probe.close()
        args = [self.cli, "--cluster", "create", *(f"{_HOST}:{p}" for p in self.ports),
                "--cluster-replicas", "0", "--cluster-yes"]
        if self.password:
            args += ["-a", self.password, "--no-auth-warning"]
        done = subprocess.run(args, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RedisServerUnavailable(
                f"redis-cli --cluster create failed ({done.returncode}): "
                f"{done.stdout.decode(errors='replace')[-500:]}"
            )
        for port in self.ports:
            client = _client(port, self.password)
            try:
                _wait(
                    f"cluster_state:ok on node {port}",
                    lambda c=client: c.cluster("INFO").get("cluster_state") == "ok",
                    timeout,
                )
            finally:
                client.close()

    def stop(self) -> None:
        """Stop every node (their data directories are kept)."""
        for node in self.nodes:
            node.stop()

    def cleanup(self) -> None:
        """Stop every node and delete its directory."""
        for node in self.nodes:
            node.cleanup()

    def __enter__(self) -> RedisClusterSetup:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


class SentinelProcess:
    """One ``redis-server --sentinel`` watching ``service`` on a free loopback port."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.myid = secrets.token_hex(20)
        self.dir = Path(tempfile.mkdtemp(prefix="statekit-sentinel-"))
        self.config = self.dir / "sentinel.conf"
        self._proc: subprocess.Popen[bytes] | None = None

    def configure(
        self,
        service: str,
        primary_port: int,
        *,
        quorum: int,
        down_after_ms: int,
        replica_ports: Sequence[int] = (),
        peers: Sequence[SentinelProcess] = (),
    ) -> None:
        """Write the configuration; known replicas and peers skip the discovery delay."""
        known = "".join(f"sentinel known-replica {service} {_HOST} {p}\n" for p in replica_ports)
        known += "".join(
            f"sentinel known-sentinel {service} {_HOST} {peer.port} {peer.myid}\n"
            for peer in peers
            if peer is not self
        )
        self.config.write_text(
            f"port {self.port}\n"
            f"bind {_HOST}\n"
            "daemonize no\n"
            f'dir "{self.dir}"\n'
            f'logfile "{self.dir / "sentinel.log"}"\n'
            f"sentinel monitor {service} {_HOST} {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
            f"sentinel failover-timeout {service} 10000\n"
            f"sentinel parallel-syncs {service} 1\n"
            f"sentinel myid {self.myid}\n" + known
        )

    def start(self, timeout: float = 10.0) -> None:
        """Start the sentinel and wait until it answers PING."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self._proc = subprocess.Popen(
            [self.binary, str(self.config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proc = self._proc
        deadline = time.monotonic() + timeout
        while not _answers(self.port):
            if proc.poll() is not None:
                self._proc = None
                raise RedisServerUnavailable(
                    f"sentinel exited with {proc.returncode}; see {self.dir / 'sentinel.log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RedisServerUnavailable(f"sentinel on port {self.port} did not answer")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the sentinel (SIGTERM, then SIGKILL) and wait until it is gone."""
        proc, self._proc = self._proc, None
        stop_process(proc)

    def cleanup(self) -> None:
        """Stop the sentinel and delete its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisSentinelSetup:
    """One primary, one replica and ``sentinels`` sentinels monitoring ``service`` on 127.0.0.1.

    ``start()`` returns once the replica is in sync and every sentinel knows the replica and the
    other sentinels, so a failover can happen. ``url`` is the ``redis+sentinel://`` URL.
    ``down_after_ms`` is how long the primary must be silent before the sentinels fail over.
    Raises ``RedisServerUnavailable`` when ``redis-server`` is missing or the setup does not form.
    """

    def __init__(
        self,
        *,
        service: str = "mymaster",
        sentinels: int = 3,
        down_after_ms: int = 1000,
        appendonly: bool = False,
    ) -> None:
        self.service = service
        self._fast_sync = ("--repl-diskless-sync-delay", "0")
        self._quorum = sentinels // 2 + 1
        self._down_after_ms = down_after_ms
        self.primary = RedisServer(appendonly=appendonly, extra=self._fast_sync)
        self.replica = RedisServer(appendonly=appendonly)
        self.sentinels = [SentinelProcess(self.primary.binary) for _ in range(sentinels)]

    @property
    def sentinel_ports(self) -> list[int]:
        """The port of every sentinel."""
        return [s.port for s in self.sentinels]

    @property
    def url(self) -> str:
        """``redis+sentinel://host:port,.../service``."""
        return (
            "redis+sentinel://"
            + ",".join(f"{_HOST}:{p}" for p in self.sentinel_ports)
            + f"/{self.service}"
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start the servers and sentinels and wait until a failover would be possible."""
        try:
            _start_with_retry(self.primary)
            self.replica.extra = (*self._fast_sync, "--replicaof", _HOST, str(self.primary.port))
            _start_with_retry(self.replica)
            self._start_sentinels()
            self._wait_ready(timeout)
        except BaseException:
            self.cleanup()
            raise

    def _start_sentinels(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            for sentinel in self.sentinels:
                sentinel.configure(
                    self.service,
                    self.primary.port,
                    quorum=self._quorum,
                    down_after_ms=self._down_after_ms,
                    replica_ports=[self.replica.port],
                    peers=self.sentinels,
                )
            try:
                for sentinel in self.sentinels:
                    sentinel.start()
                return
            except RedisServerUnavailable:
                for sentinel in self.sentinels:
                    sentinel.stop()
                    sentinel.port = free_port()
                if attempt == attempts - 1:
                    raise

    def _wait_ready(self, timeout: float) -> None:
        replica = _client(self.replica.port)
        try:
            _wait(
                "replica in sync",
                lambda: replica.info("replication").get("master_link_status") == "up",
                timeout,
            )
        finally:
            replica.close()
        others = len(self.sentinels) - 1
        for sentinel in self.sentinels:
            client = _client(sentinel.port)
            try:
                def ready(c: redis.Redis = client) -> bool:
                    info: Any = c.sentinel_master(self.service)
                    return int(info["num-slaves"]) >= 1 and int(info["num-other-sentinels"]) >= others

                _wait(f"sentinel {sentinel.port} sees the replica and its peers", ready, timeout)
            finally:
                client.close()

    def primary_port(self) -> int:
        """The port of the server the sentinels currently name as primary."""
        client = _client(self.sentinels[0].port)
        try:
            _host, port = cast(tuple[str, int], client.sentinel_get_master_addr_by_name(self.service))
            return int(port)
        finally:
            client.close()

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until every sentinel names a primary other than ``old_port`` that accepts writes.

        Returns the new primary's port.
        """

        def switched() -> bool:
            for sentinel in self.sentinels:
                client = _client(sentinel.port)
                try:
                    _host, port = cast(tuple[str, int], client.sentinel_get_master_addr_by_name(self.service))
                finally:
                    client.close()
                if int(port) == old_port:
                    return False
            new = _client(self.primary_port())
            try:
                return new.info("replication").get("role") == "master"
            finally:
                new.close()

        _wait("sentinel failover", switched, timeout)
        return self.primary_port()

    def cleanup(self) -> None:
        """Stop every sentinel and server and delete their directories."""
        for sentinel in self.sentinels:
            sentinel.cleanup()
        self.replica.cleanup()
        self.primary.cleanup()

    def __enter__(self) -> RedisSentinelSetup:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
