"""Throwaway ``redis-server`` processes on free loopback ports, for tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "RedisServerUnavailable", "free_port", "stop_process"]


class RedisServerUnavailable(RuntimeError):
    """No ``redis-server`` binary, or it did not come up."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop ``proc`` (SIGTERM, then SIGKILL after 5 s) and wait until it is gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` on 127.0.0.1 with its own port and data directory.

    ``start()`` / ``stop()`` may be called repeatedly (the port and directory are kept, so a
    restart with ``appendonly=True`` brings the data back). ``extra`` adds server arguments.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        appendonly: bool = False,
        extra: tuple[str, ...] = (),
        binary: str | None = None,
    ) -> None:
        found = binary or shutil.which("redis-server") or (
            "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
        )
        if found is None:
            raise RedisServerUnavailable("no redis-server binary on PATH")
        self.binary = found
        self.port = port or free_port()
        self.password = password
        self.appendonly = appendonly
        self.extra = extra
        self.dir = Path(tempfile.mkdtemp(prefix="statekit-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of this server (with the password, if any)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        if self._proc is not None and self._proc.poll() is None:
            return
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
            *self.extra,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RedisServerUnavailable(
                    f"redis-server exited with {self._proc.returncode}; see {self.dir / 'redis.log'}"
                )
            if _answers(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise RedisServerUnavailable(f"redis-server on port {self.port} did not answer in {timeout}s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait until it is gone."""
        proc, self._proc = self._proc, None
        stop_process(proc)

    def kill(self) -> None:
        """Kill the server with SIGKILL (no shutdown save)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def cleanup(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
