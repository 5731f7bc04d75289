"""What only the SQLite backend has: its file, its schema and its group commit."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import sqlite3
import stat
import subprocess
import sys
import tracemalloc
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from statekit import SQLiteStorage, StatekitError, StorageUnavailableError
from statekit.storage.sqlite import SCHEMA_VERSION


async def test_file_is_created_private_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with SQLiteStorage(path) as storage:
        await storage.set_state("k", 1)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_storages_opening_one_new_file_at_once_all_start(tmp_path: Path) -> None:
    # SQLite answers "database is locked" at once, without waiting, to a connection that asks for
    # WAL while another is switching the same new file to WAL; seen in 2 of 30 runs before
    for attempt in range(15):
        path = tmp_path / f"new-{attempt}.db"
        storages = [SQLiteStorage(path, namespace=f"n{i}") for i in range(4)]
        await asyncio.gather(*(s.start() for s in storages))
        await asyncio.gather(*(s.set_state("k", i) for i, s in enumerate(storages)))
        assert [await s.get_state("k") for s in storages] == [0, 1, 2, 3]
        for storage in storages:
            await storage.stop()


async def test_a_second_storage_on_a_file_keeps_the_first_ones_locks(tmp_path: Path) -> None:
    # closing any descriptor of the database file drops every POSIX lock of the process on it,
    # the first storage's too; another process closing its connection then took itself for the
    # file's last user and deleted the WAL and its index under the first storage
    path = tmp_path / "shared.db"
    async with SQLiteStorage(path, namespace="a") as first:
        await first.set_state("k", 1)
        async with SQLiteStorage(path, namespace="b") as second:
            other = (
                "import sqlite3, sys\n"
                "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                "db.execute('CREATE TABLE IF NOT EXISTS other (x)')\n"
                "db.execute('INSERT INTO other VALUES (1)')\n"
                "db.close()\n"
            )
            done = subprocess.run([sys.executable, "-c", other, str(path)], timeout=60)
            assert done.returncode == 0
            assert Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
            await second.set_state("k", 2)
        assert await first.get_state("k") == 1
        await first.set_state("k", 3)
    async with SQLiteStorage(path, namespace="a") as reopened:
        assert await reopened.get_state("k") == 3


async def test_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StatekitError, match="newer"):
        await SQLiteStorage(path).start()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


async def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageUnavailableError, match="junk.db"):
        await SQLiteStorage(path).start()
    assert path.read_bytes() == b"this is not sqlite" * 100


async def test_directory_or_missing_parent_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailableError, match=str(tmp_path)):
        await SQLiteStorage(tmp_path).start()
    with pytest.raises(StorageUnavailableError, match="nowhere"):
        await SQLiteStorage(tmp_path / "nowhere" / "x.db").start()


async def test_concurrent_writes_share_group_commits(tmp_path: Path) -> None:
    async with SQLiteStorage(tmp_path / "g.db") as storage:
        before = storage.transactions
        await asyncio.gather(*(storage.set_state(f"k{i}", i) for i in range(400)))
        used = storage.transactions - before
        assert used <= 20, f"400 concurrent writes took {used} transactions"
        assert await storage.get_many([f"k{i}" for i in range(400)]) == {f"k{i}": i for i in range(400)}


async def test_write_is_committed_when_the_call_returns(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    async with SQLiteStorage(path, namespace="ns") as storage:
        await storage.set_state("k", "v")
        with sqlite3.connect(path) as other:
            rows = other.execute("SELECT key FROM statekit_kv WHERE namespace = 'ns'").fetchall()
        assert rows == [("k",)]


async def test_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    async with SQLiteStorage(path, durability="full") as storage:
        await storage.set_state("k", {"v": 1}, ttl=100)
    async with SQLiteStorage(path) as storage:
        assert await storage.get_state("k") == {"v": 1}
        ttl = await storage.get_ttl("k")
        assert ttl is not None and 90 < ttl <= 100


async def test_sweep_reclaims_expired_rows(tmp_path: Path) -> None:
    from statekit.testing import FakeClock

    clock = FakeClock()
    path = tmp_path / "s.db"
    async with SQLiteStorage(path, clock=clock) as storage:
        await storage.set_many({f"k{i}": i for i in range(10)}, ttl=1)
        await storage.set_state("stay", 1)
        clock.advance(2)
        assert await storage.sweep() == 10
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM statekit_kv").fetchone()[0] == 1


def test_bad_options_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        SQLiteStorage(tmp_path / "x.db", durability="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLiteStorage(tmp_path / "x.db", busy_timeout=0)
    with pytest.raises(ValueError, match="namespace"):
        SQLiteStorage(tmp_path / "x.db", namespace="")


@pytest.mark.parametrize("operation", ["write", "read"])
async def test_a_large_batch_is_not_kept_allocated_after_it_is_done(tmp_path: Path, operation: str) -> None:
    # aiosqlite's worker thread keeps its last call (and what it returned) until the next one
    # arrives: a session write's packed buckets (~8 MB at 100,000 peers) stayed allocated
    keys = [f"k{i}" for i in range(64)]
    async with SQLiteStorage(tmp_path / "big.db") as storage:
        await storage.set_state("warm", 1)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            values = {key: os.urandom(64 * 1024) for key in keys}  # 4 MiB
            await storage.set_many(values)
            del values
            if operation == "read":
                await storage.get_state("warm")  # the worker's last call: no longer the write
                gc.collect()
                before = tracemalloc.get_traced_memory()[0]
                assert len(await storage.get_many(keys)) == 64
            gc.collect()
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert kept < 512 * 1024, f"{kept:,} bytes still allocated after the {operation}"
        assert sorted(await storage.list_keys("k*")) == sorted(keys)  # written, nothing lost


async def test_writing_the_value_a_key_holds_adds_nothing_to_the_wal(tmp_path: Path) -> None:
    # an FSM that sets the state a user is already in: an upsert of unchanged bytes changes no
    # page (INSERT OR REPLACE wrote a 4 KiB page to the WAL every time)
    path = tmp_path / "same.db"
    wal = Path(f"{path}-wal")
    # no sweep may run meanwhile (the first is 60 s after start by default): the WAL is this test's
    async with SQLiteStorage(path, sweep_interval=3600) as storage:
        await storage.set_many({f"user:{i}": "menu" for i in range(200)})
        with closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # not busy
        assert wal.stat().st_size == 0
        for i in range(50):
            await storage.set_state(f"user:{i}", "menu")
        await storage.set_many({f"user:{i}": "menu" for i in range(50, 200)})
        assert wal.stat().st_size == 0
        await storage.set_state("user:7", "checkout")
        assert wal.stat().st_size > 0
        assert await storage.get_state("user:7") == "checkout"
        assert await storage.get_state("user:8") == "menu"


class _RecordingConnection:
    """A ``sqlite3.Connection`` that records the SQL of every ``execute`` (the rest delegated)."""

    def __init__(self, db: sqlite3.Connection, seen: list[str]) -> None:
        self._db, self._seen = db, seen

    def execute(self, sql: str, *params: Any) -> sqlite3.Cursor:
        self._seen.append(sql)
        return self._db.execute(sql, *params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


# ?NNN (Python 3.12.0-3.12.3 took it for a named placeholder: a DeprecationWarning for every
# statement bound by position, "an sqlite3.ProgrammingError from 3.14"), :name, @name, $name
_NOT_POSITIONAL = re.compile(r"\?\d|[:@$][A-Za-z_]")


async def test_every_statement_binds_its_parameters_by_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # statekit binds sequences everywhere: of the placeholder styles, only a bare ``?`` binds a
    # sequence silently on every Python it supports (3.12.0-3.12.3 warn for ``?NNN``, 3.14
    # refuses named ones)
    import statekit.storage.sqlite as sqlite_module

    seen: list[str] = []
    real = sqlite_module.raw_connection
    monkeypatch.setattr(sqlite_module, "raw_connection", lambda conn: _RecordingConnection(real(conn), seen))
    async with SQLiteStorage(tmp_path / "bound.db", sweep_interval=3600) as storage:
        await storage.set_state("a", {"step": 1}, ttl=60)
        await storage.set_many({f"k{i}": i for i in range(40)}, ttl=60)
        await storage.set_many({"x": b"1", "y": "2"})
        await storage.set_many_encoded([("z", 3)])
        await storage.set_state("a", {"step": 2}, keep_ttl=True)
        assert await storage.compare_and_set("a", {"step": 3}, expected={"step": 2})
        assert await storage.compare_and_set("x", None, expected=b"1")
        assert await storage.increment("n", 2, ttl=60) == 2
        assert await storage.increment("n", 1) == 3
        assert await storage.expire("a", 30)
        assert 0 < (await storage.get_ttl("a") or 0) <= 30
        assert await storage.get_state("a") == {"step": 3}
        assert len(await storage.get_many([f"k{i}" for i in range(40)])) == 40
        assert len(await storage.get_range_stored([f"k{i}" for i in range(40)])) == 40
        assert len(await storage.list_keys("k*")) == 40
        assert await storage.delete_many(["k1", "k2"]) == 2
        assert await storage.delete_state("k3")
        assert await storage.sweep() == 0
        await storage.health()
        assert await storage.clear_namespace() == 41  # a, n, y, z and 37 of k0-k39
    assert len(seen) > 15
    positional = [sql for sql in seen if _NOT_POSITIONAL.search(sql)]
    assert not positional, f"statements with placeholders other than a bare '?': {positional}"
