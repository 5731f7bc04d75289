"""PostgresStorage through PgBouncer in transaction mode (``statement_cache_size=0``): concurrent
operations, shared round trips, schema creation and scans all work when every transaction may run
on a different server connection. Skips without a ``pgbouncer`` binary (``STATEKIT_PGBOUNCER`` may
name one; ``STATEKIT_PGBOUNCER_LIBS`` a directory of libraries it needs)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from statekit.fsm import FSMContext, StorageKey
from statekit.storage.postgres import PostgresStorage
from statekit.testing import free_port
from statekit.testing.postgres_server import PostgresServer

pytestmark = pytest.mark.postgres


def _binary() -> str | None:
    named = os.environ.get("STATEKIT_PGBOUNCER")
    if named:
        return named
    return shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)


@pytest.fixture(scope="module")
def bouncer_url(postgres_server: PostgresServer, postgres_url: str) -> Iterator[str]:
    binary = _binary()
    if binary is None:
        if os.environ.get("STATEKIT_REQUIRE_POSTGRES") == "1":  # CI installs Debian's pgbouncer
            pytest.fail("STATEKIT_REQUIRE_POSTGRES=1 but no pgbouncer binary (.ci/run installs it)")
        pytest.skip("no pgbouncer binary (set STATEKIT_PGBOUNCER to one)")
    folder = postgres_server.dir / f"pgbouncer-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    port = free_port()
    dbname = postgres_url.rsplit("/", 1)[1]
    (folder / "userlist.txt").write_text(f'"postgres" "{postgres_server.password}"\n')
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n{dbname} = host=127.0.0.1 port={postgres_server.port} dbname={dbname}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = scram-sha-256\nauth_file = {folder / 'userlist.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 3\nmax_client_conn = 200\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
    )
    as_user: list[str] = []
    if os.geteuid() == 0:  # pgbouncer refuses to run as root, like initdb
        import pwd

        user = pwd.getpwnam("postgres")
        for path in (folder, *folder.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
        as_user = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--"]
    libs = os.environ.get("STATEKIT_PGBOUNCER_LIBS")
    env_prefix = ["env", f"LD_LIBRARY_PATH={libs}"] if libs else []
    proc = subprocess.Popen(
        [*as_user, *env_prefix, binary, str(folder / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                pytest.fail(f"pgbouncer did not start: {err[-500:]}")
            time.sleep(0.05)
    yield f"postgresql://postgres:{postgres_server.password}@127.0.0.1:{port}/{dbname}"
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


async def test_storage_works_through_pgbouncer_in_transaction_mode(bouncer_url: str) -> None:
    table = f"kv_{uuid.uuid4().hex[:8]}"  # created through PgBouncer too
    url = f"{bouncer_url}?statement_cache_size=0&max_size=8&table={table}&namespace=bouncer"
    async with PostgresStorage.from_url(url) as storage:
        await storage.set_many({f"k{i}": {"i": i} for i in range(300)}, ttl=100)
        results = await asyncio.gather(
            *(storage.increment(f"n{i % 4}") for i in range(200)),
            *(storage.get_state(f"k{i}") for i in range(200)),
            *(storage.compare_and_set(f"c{i % 10}", i, expected=None) for i in range(100)),
        )
        for key in range(4):
            assert sorted(r for i, r in enumerate(results[:200]) if i % 4 == key) == list(range(1, 51))
        assert results[200:400] == [{"i": i} for i in range(200)]
        assert results[400:].count(True) == 10
        ctx = FSMContext(storage, StorageKey(1, 2, 3))
        await asyncio.gather(*(ctx.update_data({f"f{i}": i}) for i in range(100)))
        assert await ctx.get_data() == {f"f{i}": i for i in range(100)}
        assert len(await storage.list_keys("k*")) == 300
        ttl = await storage.get_ttl("k1")
        assert ttl is not None and 90 < ttl <= 100
        assert await storage.clear_namespace() > 300
    # the schema is there and a second start through PgBouncer only reads it
    async with PostgresStorage.from_url(url) as again:
        assert await again.health() is True

