"""Throwaway PostgreSQL clusters on free loopback ports, for tests and benchmarks.

``initdb`` into a temporary directory and ``pg_ctl start`` listening on 127.0.0.1 only (its unix
socket inside that directory), ``fsync=off`` for speed (a stopped or killed server still keeps
every committed write; only an operating-system crash could lose some). ``initdb`` refuses to run as
root: as root the binaries run as the ``postgres`` system user (``runuser -u postgres --``) in a
directory that user owns. Binaries are looked up in ``/usr/lib/postgresql/*/bin`` (Debian's
``postgresql`` package), then on ``PATH``.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from statekit.testing.servers import free_port

__all__ = ["PostgresServer", "PostgresServerUnavailable", "find_postgres_bin"]


class PostgresServerUnavailable(RuntimeError):
    """No PostgreSQL server binaries, or the cluster did not come up."""


def find_postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (the newest Debian version first), or None."""

    def version(path: str) -> int:
        found = re.search(r"/postgresql/(\d+)/", path)
        return int(found.group(1)) if found else 0

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True):
        folder = Path(initdb).parent
        if (folder / "pg_ctl").exists():
            return folder
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    return None


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1 with its own port and data directory.

    The superuser is ``postgres`` with a random ``password`` (SCRAM over TCP, so wrong passwords
    are refused). ``start()`` / ``stop(mode)`` may be called repeatedly; data survives a restart.
    ``create_database(name)`` makes a database; ``url(dbname)`` is its ``postgresql://`` URL.
    """

    def __init__(self, *, port: int | None = None, bindir: Path | None = None) -> None:
        found = bindir or find_postgres_bin()
        if found is None:
            raise PostgresServerUnavailable(
                "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on "
                "PATH; install Debian's postgresql package"
            )
        self.bindir = found
        self.port = port or free_port()
        self.password = secrets.token_hex(12)
        self.dir = Path(tempfile.mkdtemp(prefix="statekit-pg-"))
        self.data = self.dir / "data"
        self._as_user: list[str] = []
        self._uid: int | None = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise PostgresServerUnavailable(
                    "running as root, and initdb refuses root, but there is no 'postgres' user"
                ) from None
            self._uid = user.pw_uid
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            self._as_user = [runuser, "-u", "postgres", "--"]
        self._initialised = False

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*self._as_user, *args], capture_output=True, check=check, timeout=120
        )

    def _init(self) -> None:
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._uid is not None:
            os.chown(pwfile, self._uid, -1)
        pwfile.chmod(0o600)
        try:
            self._run(
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8",
                "--locale=C",
            )
        except subprocess.CalledProcessError as exc:
            raise PostgresServerUnavailable(
                f"initdb failed: {exc.stderr.decode(errors='replace')[-500:]}"
            ) from None
        finally:
            pwfile.unlink(missing_ok=True)
        self._initialised = True

    def url(self, dbname: str = "postgres") -> str:
        """``postgresql://`` URL of database ``dbname`` on this server, as the superuser."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the server (initialising the cluster the first time) and wait until it accepts
        connections. Raises ``PostgresServerUnavailable`` if it does not."""
        if not self._initialised:
            self._init()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.dir} "
            "-c fsync=off -c full_page_writes=off -c max_connections=300 "
            "-c shared_buffers=32MB -c log_min_messages=warning"
        )
        result = self._run(
            str(self.bindir / "pg_ctl"), "start", "-D", str(self.data), "-w",
            "-t", str(int(timeout)), "-l", str(self.dir / "server.log"), "-o", options,
            check=False,
        )
        if result.returncode != 0:
            log = self.dir / "server.log"
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise PostgresServerUnavailable(
                f"pg_ctl start failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace')[-300:]} {tail}"
            )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: ``smart``, ``fast`` or ``immediate``) and wait for it."""
        if not self._initialised or not (self.data / "postmaster.pid").exists():
            return
        self._run(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", mode, "-w",
                  check=False)

    @property
    def running(self) -> bool:
        """True while the cluster's postmaster answers ``pg_ctl status``."""
        if not self._initialised:
            return False
        return self._run(str(self.bindir / "pg_ctl"), "status", "-D", str(self.data),
                         check=False).returncode == 0

    def create_database(self, name: str) -> str:
        """Create database ``name`` (lower-case letters, digits, ``_``) and return its URL.

        Raises ``ValueError`` for another name and ``PostgresServerUnavailable`` if it fails."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"database name must be a lower-case identifier, got {name!r}")
        result = subprocess.run(
            [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
             "postgres", name],
            capture_output=True, timeout=60, env={**os.environ, "PGPASSWORD": self.password},
        )
        if result.returncode != 0:
            raise PostgresServerUnavailable(
                f"createdb {name} failed: {result.stderr.decode(errors='replace')[-300:]}"
            )
        return self.url(name)

    def cleanup(self) -> None:
        """Stop the server (immediately) and delete its directory."""
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
