"""SQLite storage: one file (or ``:memory:``) shared by coroutines and by processes.

URLs: ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://:memory:``. No extra needed
(aiosqlite is a runtime dependency). One table keyed by (namespace, key) holds the value (an INTEGER
for integers, a BLOB otherwise) and the expiry in Unix milliseconds. WAL journal, a busy timeout,
schema version in ``PRAGMA user_version``. Concurrent operations of one process are coalesced into
group commits: one transaction and one thread hop for all callers waiting at that moment, and each
caller returns only after its write is committed. A batch large enough to take the WAL past
SQLite's autocheckpoint by itself (a ``set_many`` of ``CHECKPOINT_AT`` pages of values or more)
is acknowledged first and checkpointed afterwards, on the same worker thread: SQLite's own
checkpoint would run inside that commit and make it wait for the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import aiosqlite

from statekit.codec import Codec
from statekit.errors import StatekitError, StorageClosedError, StorageUnavailableError
from statekit.storage._aiosqlite import daemon_worker, raw_connection, run_in_thread
from statekit.storage._fastpath import FastPathStorage
from statekit.storage._glob import compile_glob, literal_prefix
from statekit.storage._statements import statement_parts
from statekit.storage.base import Stored, same_stored
from statekit.storage.url import StorageURL, seconds_param, url_error

__all__ = ["CHECKPOINT_AT", "SCHEMA_VERSION", "SQLiteStorage"]

log = logging.getLogger("statekit.storage.sqlite")

_TABLE = "statekit_kv"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"

_SCAN_PAGE = 1000
"""Keys per scan page: one read in the worker thread, then this many keys filtered on the loop
(well under a millisecond) before the next page is awaited."""

_MIGRATIONS: tuple[str, ...] = (
    # version 1
    f"""
    CREATE TABLE IF NOT EXISTS {_TABLE} (
        namespace  TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      BLOB NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (namespace, key)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS {_TABLE}_expires ON {_TABLE} (expires_at)
        WHERE expires_at IS NOT NULL;
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)

_Op = Callable[[sqlite3.Connection], Any]


_WRITE, _SINGLE = 1, 2  # flags of a pending operation: it writes / it is a lone read

CHECKPOINT_AT = 1000
"""WAL frames (pages) after which SQLite checkpoints inside the commit that reached them: its
default ``wal_autocheckpoint``, which every commit keeps but a large batch's (``_set_many``)."""
_LARGE_CHECKPOINT_AT = 10 * CHECKPOINT_AT
"""``wal_autocheckpoint`` during a large batch's commit, whose checkpoint runs after it is
acknowledged: only a WAL that grew this long meanwhile is still checkpointed inside it."""
_ROWS_PER_INSERT = 2000


# A write replaces a row's value and expiry in place (an upsert) rather than deleting the row and
# inserting it again (INSERT OR REPLACE): a write of the value and expiry a key already has then
# changes no page, so its commit adds nothing to the WAL (a replace wrote a 4 KiB page each
# time), and the rows end up the same either way (docs/benchmarks.md, "2026-12-07 03:00").
_UPSERT = (
    " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
    "expires_at = excluded.expires_at"
)
_WRITE_ONE = f"INSERT INTO {_TABLE} (namespace, key, value, expires_at) VALUES (?, ?, ?, ?){_UPSERT}"


@functools.lru_cache(maxsize=16)
def _insert_rows(count: int) -> str:
    """An upsert of ``count`` rows in one statement; parameters: namespace, expires_at, then key
    and value of each row (binding the shared two once per statement instead of once per row:
    half the parameters of a per-row ``VALUES (?, ?, ?, ?)``). Of a key given twice, the last
    value wins.

    Every placeholder is a bare ``?`` (numbered in order of appearance), never ``?1``: Python
    3.12.0-3.12.3 took ``?NNN`` for a named placeholder and warned (DeprecationWarning, "an
    sqlite3.ProgrammingError will be raised" from 3.14) on every batch bound by position."""
    return (
        f"INSERT INTO {_TABLE} (namespace, key, value, expires_at) "
        "SELECT ?, column1, column2, ? FROM (VALUES " + ",".join(["(?, ?)"] * count) + ")"
        " WHERE true" + _UPSERT  # WHERE: SQLite's rule for an upsert of a SELECT
    )


_KEYS_PER_STATEMENT = 500
# keys from which get_range_stored scans their range: 16, 64 or 512 neighbouring session buckets
# read 1.4-1.6x as fast as by an IN list (medians, tests/benchmarks/range_read.py, docs/benchmarks.md)
_RANGE_READ_MIN = 16


def _key_chunks(keys: list[str]) -> Iterator[tuple[list[str], str]]:
    """``keys`` in chunks of ``_KEYS_PER_STATEMENT``, each with its ``?,?,…`` placeholder list
    for an ``IN (…)`` clause."""
    for start in range(0, len(keys), _KEYS_PER_STATEMENT):
        chunk = keys[start : start + _KEYS_PER_STATEMENT]
        yield chunk, ",".join("?" * len(chunk))


def _durability_param(name: str, text: str) -> str:
    if text not in ("normal", "full"):
        raise ValueError(f"{name} must be normal or full, got {text[:40]!r}")
    return text


class _Failed:
    """An operation's own error, delivered to its caller only (the batch still commits)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class SQLiteStorage(FastPathStorage):
    """Storage in one SQLite file (or ``":memory:"``).

    ``durability``: ``"normal"`` (WAL, ``synchronous=NORMAL``: a commit survives a process crash,
    the last commits may be lost on power loss) or ``"full"`` (``synchronous=FULL``).
    ``busy_timeout``: seconds to wait for another process's write lock.
    ``clock`` returns Unix seconds (shared by every process using the file); tests may replace it.
    """

    backend_name = "sqlite"
    _defer_large_checkpoints = True
    """False: a large batch's checkpoint runs inside its commit too, as SQLite's own (what the
    benchmarks compare with)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        namespace: str = "statekit",
        default_ttl: int | float | timedelta | None = None,
        codec: Codec | None = None,
        durability: Literal["normal", "full"] = "normal",
        busy_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        sweep_interval: float = 60.0,
        max_batch: int = 512,
        max_key_bytes: int = 1024,
        max_value_bytes: int = 1024 * 1024,
    ) -> None:
        super().__init__(
            namespace=namespace,
            default_ttl=default_ttl,
            codec=codec,
            max_key_bytes=max_key_bytes,
            max_value_bytes=max_value_bytes,
        )
        if durability not in ("normal", "full"):
            raise ValueError(f"durability must be 'normal' or 'full', got {durability!r}")
        if not busy_timeout > 0:
            raise ValueError(f"busy_timeout must be > 0 seconds, got {busy_timeout!r}")
        self.path = os.fspath(path)
        if not self.path:
            raise ValueError("path must name a file or ':memory:'")
        self.durability = durability
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._max_batch = max_batch
        self._conn: aiosqlite.Connection | None = None
        self._pending: list[tuple[asyncio.Future[Any], _Op, int]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._leading = False
        self._sweeper: asyncio.Task[None] | None = None
        self._large_commit = False  # set by a large batch's operation, in the worker thread
        self._large_bytes = CHECKPOINT_AT * 4096  # CHECKPOINT_AT pages: set when opened
        self._checkpoint_due = False
        self._checkpointer: asyncio.Task[None] | None = None
        self.transactions = 0
        """How many transactions (group commits) this storage has run; for tests and tuning."""
        self.checkpoints = 0
        """How many checkpoints this storage has run after acknowledging a commit."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStorage:
        """A ``SQLiteStorage`` for ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or
        ``sqlite://:memory:``, with parameters ``namespace``, ``default_ttl``, ``durability``
        (``normal`` / ``full``) and ``busy_timeout`` (seconds); keyword ``options`` win.
        Raises ``ValueError`` naming a malformed part."""
        parsed = StorageURL.parse(url)
        if parsed.scheme != "sqlite":
            raise url_error(parsed.scheme, "SQLiteStorage opens only sqlite:// URLs")
        if parsed.userinfo is None and parsed.host == ":memory:" and not parsed.path:
            path = ":memory:"
        elif parsed.userinfo is None and not parsed.host and parsed.path not in ("", "/"):
            path = unquote(parsed.path[1:])
            if path == ":memory:":
                path = ":memory:"
        else:
            raise url_error(
                "sqlite", "SQLite URLs are sqlite:///relative.db, sqlite:////absolute.db or "
                "sqlite://:memory:"
            )
        common, extra = parsed.storage_options(
            {"durability": _durability_param, "busy_timeout": seconds_param}
        )
        return cls(path, **{**common, **extra, **options})

    def describe(self) -> str:
        return f"sqlite:///{self.path}" if self.path != ":memory:" else "sqlite://:memory:"

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _unavailable(self, exc: BaseException) -> StorageUnavailableError:
        return StorageUnavailableError(
            f"SQLite database {self.path!r} failed: {type(exc).__name__}: {exc}"
        )

    # ------------------------------------------------------------------ lifecycle

    async def _open(self) -> None:
        if self.path != ":memory:":
            # a new file is created here, private; an existing one is never opened outside SQLite:
            # closing any descriptor of a file drops every POSIX lock this process holds on it,
            # those of its other SQLite connections too, and another process could then take
            # itself for the file's last user and delete the WAL under them
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            except OSError as exc:
                raise StorageUnavailableError(
                    f"SQLite database {self.path!r} cannot be opened: {exc.strerror}"
                ) from exc
            else:
                os.close(fd)
            if Path(self.path).is_dir():
                raise StorageUnavailableError(f"SQLite database {self.path!r} is a directory")
        try:
            pending = aiosqlite.connect(self.path, isolation_level=None, timeout=self._busy_timeout)
            daemon_worker(pending)  # a storage never stopped must not keep a program alive
            conn = await pending
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        try:
            await run_in_thread(conn, self._prepare, raw_connection(conn))
        except sqlite3.Error as exc:
            await conn.close()
            raise self._unavailable(exc) from exc
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="statekit-sqlite-sweeper")

    def _prepare(self, db: sqlite3.Connection) -> None:
        db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        self._enable_wal(db)
        db.execute(f"PRAGMA synchronous = {'FULL' if self.durability == 'full' else 'NORMAL'}")
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StatekitError(
                    f"SQLite database {self.path!r} has statekit schema version {version}, newer "
                    f"than this statekit ({SCHEMA_VERSION}); upgrade statekit to open it"
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
            if version != SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_AT}")
        self._large_bytes = CHECKPOINT_AT * db.execute("PRAGMA page_size").fetchone()[0]

    def _enable_wal(self, db: sqlite3.Connection) -> None:
        """Switch the file to WAL, retrying within ``busy_timeout``: SQLite answers "database is
        locked" at once, without waiting, when another connection is switching a new file to WAL
        at the same moment (two processes or storages opening one new file together)."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() >= deadline:
                    raise
            time.sleep(0.005)  # this runs on the connection's worker thread, not the event loop

    async def _close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        # let every operation already submitted commit before the connection closes
        while self._leading or self._pending or (self._flusher is not None and not self._flusher.done()):
            if self._flusher is not None and not self._flusher.done():
                await asyncio.shield(self._flusher)
            else:
                await asyncio.sleep(0.001)
        if self._checkpointer is not None:
            await asyncio.shield(self._checkpointer)  # logs its own failure, raises nothing
            self._checkpointer = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(sqlite3.Error, ValueError):
                await conn.close()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            with contextlib.suppress(StorageUnavailableError):
                await self.sweep()

    async def sweep(self) -> int:
        """Delete expired rows now (space reclaim only; expired keys are already invisible)."""

        def op(db: sqlite3.Connection) -> int:
            cur = db.execute(f"DELETE FROM {_TABLE} WHERE expires_at <= ?", (self._now_ms(),))
            return cur.rowcount

        return int(await self._submit(op, True))

    async def _ping(self) -> None:
        await self._submit(lambda db: db.execute("SELECT 1").fetchone(), False)

    # ------------------------------------------------------------------ group commit

    async def _submit(self, op: _Op, write: bool) -> Any:
        """Run ``op`` in the next group commit and return its result.

        A batch that writes runs in ``BEGIN IMMEDIATE`` (the write lock is taken first, waiting up
        to ``busy_timeout`` for other processes); even a single write statement does, because an
        autocommit write that finds another process's newer commit fails at once with "database is
        locked" (SQLITE_BUSY_SNAPSHOT) instead of waiting. A lone read runs without a transaction.
        """
        conn = self._conn
        if conn is None:
            raise self._unavailable(RuntimeError("connection is not open"))
        flags = _WRITE if write else _SINGLE
        if not self._leading and not self._pending and (self._flusher is None or self._flusher.done()):
            # Idle: this caller runs its own batch (saves a task and a loop turn); callers that
            # arrive meanwhile queue up and are committed together once it is done.
            self._leading = True
            self.transactions += 1
            try:
                begin = None if flags & _SINGLE else "BEGIN IMMEDIATE"
                results = await run_in_thread(conn, self._run_batch, raw_connection(conn), [op], begin)
            except (sqlite3.Error, ValueError) as exc:
                raise self._unavailable(exc) from exc
            finally:
                self._leading = False
                if self._pending:
                    self._flusher = asyncio.create_task(self._flush(), name="statekit-sqlite-commit")
                self._checkpoint_if_due()
            result = results[0]
        else:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._pending.append((fut, op, flags))
            if not self._leading and (self._flusher is None or self._flusher.done()):
                self._flusher = asyncio.create_task(self._flush(), name="statekit-sqlite-commit")
            result = await fut
        if type(result) is _Failed:
            raise result.error
        return result

    async def _flush(self) -> None:
        if self._conn is None:  # closed under queued callers: fail them rather than leave them
            pending, self._pending = self._pending, []
            for fut, _, _ in pending:
                if not fut.done():
                    fut.set_exception(StorageClosedError(f"{self!r} was stopped"))
            return
        while self._pending and self._conn is not None:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            batch = [item for item in batch if not item[0].done()]
            if not batch:
                continue
            ops = [op for _, op, _ in batch]
            if len(batch) == 1 and batch[0][2] & _SINGLE:
                begin = None  # one statement: autocommit is atomic and saves BEGIN/COMMIT
            else:
                begin = "BEGIN IMMEDIATE" if any(f & _WRITE for _, _, f in batch) else "BEGIN"
            conn = self._conn
            self.transactions += 1
            try:
                results = await run_in_thread(conn, self._run_batch, raw_connection(conn), ops, begin)
            except (sqlite3.Error, ValueError) as exc:
                error = self._unavailable(exc)
                for fut, _, _ in batch:
                    if not fut.done():
                        fut.set_exception(error)
                continue
            except BaseException as exc:  # cancelled or worse: fail the batch, then propagate
                for fut, _, _ in batch:
                    if not fut.done():
                        fut.set_exception(self._unavailable(exc))
                raise
            for (fut, _, _), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
            self._checkpoint_if_due()

    def _run_batch(self, db: sqlite3.Connection, ops: list[_Op], begin: str | None) -> list[Any]:
        if begin is None:
            try:
                return [ops[0](db)]
            except (StatekitError, OverflowError) as exc:
                return [_Failed(exc)]
        db.execute(begin)
        results: list[Any] = []
        self._large_commit = False
        try:
            for op in ops:
                try:
                    results.append(op(db))
                except (StatekitError, OverflowError) as exc:
                    results.append(_Failed(exc))
            if self._large_commit and self._defer_large_checkpoints and self.path != ":memory:":
                # its checkpoint after the acknowledgement (_checkpoint_if_due), not inside it
                db.execute(f"PRAGMA wal_autocheckpoint = {_LARGE_CHECKPOINT_AT}")
                try:
                    db.execute("COMMIT")
                finally:
                    db.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_AT}")
                self._checkpoint_due = True
            else:
                db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return results

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint_if_due(self) -> None:
        """Start the checkpoint a commit found due (its callers have their results by now)."""
        if self._checkpoint_due and (self._checkpointer is None or self._checkpointer.done()):
            self._checkpointer = asyncio.get_running_loop().create_task(
                self._checkpoint(), name="statekit-sqlite-checkpoint"
            )

    async def _checkpoint(self) -> None:
        """Copy the WAL back into the database (``PRAGMA wal_checkpoint(PASSIVE)``: it never
        waits for readers or writers, in this process or another). A failure is logged and
        left to the next commit's checkpoint, or SQLite's backstop; no data depends on it."""
        conn = self._conn
        if conn is None:
            return
        try:
            await run_in_thread(conn, self._copy_back, raw_connection(conn))
        except (sqlite3.Error, ValueError) as exc:
            log.warning("checkpoint after a commit: %s", self._unavailable(exc))

    def _copy_back(self, db: sqlite3.Connection) -> None:
        self._checkpoint_due = False
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1

    # ------------------------------------------------------------------ row helpers (worker thread)

    def _read(self, db: sqlite3.Connection, key: str) -> tuple[Stored, int | None] | None:
        row = db.execute(
            f"SELECT value, expires_at FROM {_TABLE} WHERE namespace = ? AND key = ? AND {_LIVE}",
            (self.namespace, key, self._now_ms()),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def _write_row(
        self,
        db: sqlite3.Connection,
        key: str,
        stored: Stored,
        ttl_ms: int | None,
        keep_ttl: bool,
        current: tuple[Stored, int | None] | None = None,
        known: bool = False,
    ) -> None:
        if keep_ttl:
            if not known:
                current = self._read(db, key)
            if current is not None:
                db.execute(
                    f"UPDATE {_TABLE} SET value = ? WHERE namespace = ? AND key = ?",
                    (stored, self.namespace, key),
                )
                return
        expires_at = None if ttl_ms is None else self._now_ms() + ttl_ms
        db.execute(_WRITE_ONE, (self.namespace, key, stored, expires_at))

    def _delete_rows(self, db: sqlite3.Connection, keys: list[str]) -> int:
        """Delete ``keys``; return how many of them were live (expired rows go too, uncounted)."""
        now = self._now_ms()
        removed = 0
        for chunk, marks in _key_chunks(keys):
            gone = db.execute(
                f"DELETE FROM {_TABLE} WHERE namespace = ? AND key IN ({marks}) "
                "RETURNING expires_at",
                (self.namespace, *chunk),
            ).fetchall()
            removed += sum(1 for (expires_at,) in gone if expires_at is None or expires_at > now)
        return removed

    # ------------------------------------------------------------------ primitives

    async def _get(self, key: str) -> Stored | None:
        def op(db: sqlite3.Connection) -> Stored | None:
            row = self._read(db, key)
            return None if row is None else row[0]

        return await self._submit(op, False)  # type: ignore[no-any-return]

    async def _set(self, key: str, stored: Stored, ttl_ms: int | None, keep_ttl: bool) -> None:
        await self._submit(
            lambda db: self._write_row(db, key, stored, ttl_ms, keep_ttl), True
        )

    async def _delete(self, key: str) -> bool:
        return bool(await self._submit(lambda db: self._delete_rows(db, [key]), True))

    async def _compare_and_set(
        self,
        key: str,
        expected: Stored | None,
        new: Stored | None,
        ttl_ms: int | None,
        keep_ttl: bool,
    ) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            current = self._read(db, key)
            if not same_stored(None if current is None else current[0], expected):
                return False
            if new is None:
                self._delete_rows(db, [key])
            else:
                self._write_row(db, key, new, ttl_ms, keep_ttl, current, True)
            return True

        return bool(await self._submit(op, True))

    async def _increment(self, key: str, amount: int, ttl_ms: int | None) -> int:
        def op(db: sqlite3.Connection) -> int:
            current = self._read(db, key)
            result = self.incremented(key, None if current is None else current[0], amount)
            if current is None:
                self._write_row(db, key, result, ttl_ms, False)
                return result
            db.execute(
                f"UPDATE {_TABLE} SET value = ? WHERE namespace = ? AND key = ?",
                (result, self.namespace, key),
            )
            return result

        return int(await self._submit(op, True))

    async def _get_ttl(self, key: str) -> float | None:
        def op(db: sqlite3.Connection) -> float | None:
            row = self._read(db, key)
            if row is None or row[1] is None:
                return None
            return max(0.0, (row[1] - self._now_ms()) / 1000)

        return await self._submit(op, False)  # type: ignore[no-any-return]

    async def _expire(self, key: str, ttl_ms: int | None) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            now = self._now_ms()
            cur = db.execute(
                f"UPDATE {_TABLE} SET expires_at = ? WHERE namespace = ? AND key = ? AND {_LIVE}",
                (None if ttl_ms is None else now + ttl_ms, self.namespace, key, now),
            )
            return cur.rowcount > 0

        return bool(await self._submit(op, True))

    async def _get_many(self, keys: list[str]) -> dict[str, Stored]:
        def op(db: sqlite3.Connection) -> dict[str, Stored]:
            now = self._now_ms()
            out: dict[str, Stored] = {}
            for chunk, marks in _key_chunks(keys):
                rows = db.execute(
                    f"SELECT key, value FROM {_TABLE} WHERE namespace = ? AND key IN ({marks}) "
                    f"AND {_LIVE}",
                    (self.namespace, *chunk, now),
                )
                out.update(rows.fetchall())
            return {k: out[k] for k in keys if k in out}

        return await self._submit(op, False)  # type: ignore[no-any-return]

    async def _get_range(self, keys: list[str]) -> dict[str, Stored]:
        """``get_range_stored``: one scan of the primary key from the least of ``keys`` to the
        greatest; a few keys are looked up as ``get_many_stored`` looks them up."""
        if len(keys) < _RANGE_READ_MIN:
            return await self._get_many(keys)
        wanted = set(keys)

        def op(db: sqlite3.Connection) -> dict[str, Stored]:
            rows = db.execute(
                f"SELECT key, value FROM {_TABLE} WHERE namespace = ? AND key BETWEEN ? AND ? "
                f"AND {_LIVE}",
                (self.namespace, min(wanted), max(wanted), self._now_ms()),
            )
            out = {key: value for key, value in rows if key in wanted}
            return {k: out[k] for k in keys if k in out}

        return await self._submit(op, False)  # type: ignore[no-any-return]

    async def _set_many(self, items: list[tuple[str, Stored]], ttl_ms: int | None) -> None:
        def op(db: sqlite3.Connection) -> None:
            expires_at = None if ttl_ms is None else self._now_ms() + ttl_ms
            ns = self.namespace
            # multi-row INSERTs (about half the cost of executemany) of up to _ROWS_PER_INSERT
            # rows and about a mebibyte of values (sqlite3 binds them holding the GIL)
            values = [value for _, value in items]
            parts = statement_parts(values, most_rows=_ROWS_PER_INSERT)
            # its values alone fill CHECKPOINT_AT pages: SQLite would checkpoint in its commit
            self._large_commit |= parts.total_bytes >= self._large_bytes
            for start, end in parts:
                chunk = items[start:end]
                params: list[object] = [ns, expires_at]
                for key, value in chunk:
                    params += (key, value)
                db.execute(_insert_rows(len(chunk)), params)

        await self._submit(op, True)

    async def _delete_many(self, keys: list[str]) -> int:
        return int(await self._submit(lambda db: self._delete_rows(db, keys), True))

    _scan_may_repeat = False  # keyset pagination: each page starts strictly after the last key

    async def _scan(self, pattern: str) -> AsyncIterator[str]:
        matches = compile_glob(pattern)
        prefix = literal_prefix(pattern)
        after: str | None = None

        def page(db: sqlite3.Connection, after: str | None) -> list[str]:
            bound, op = (prefix, ">=") if after is None else (after, ">")
            rows = db.execute(
                f"SELECT key FROM {_TABLE} WHERE namespace = ? AND key {op} ? AND {_LIVE} "
                "ORDER BY key LIMIT ?",
                (self.namespace, bound, self._now_ms(), _SCAN_PAGE),
            ).fetchall()
            return [r[0] for r in rows]

        while True:
            keys = await self._submit(functools.partial(page, after=after), False)
            for key in keys:
                if not key.startswith(prefix):
                    return
                if matches(key):
                    yield key
            if len(keys) < _SCAN_PAGE:
                return
            after = keys[-1]

    async def _plant(self, key: str, raw: bytes) -> None:
        """Store ``raw`` under ``key`` without the codec (the test hook of ``statekit.testing``)."""

        def op(db: sqlite3.Connection) -> None:
            db.execute(_WRITE_ONE, (self.namespace, key, raw, None))

        await self._submit(op, True)

    async def _raw(self, key: str) -> bytes | int | None:
        """What is physically stored under ``key`` (the test hook of ``statekit.testing``)."""

        def op(db: sqlite3.Connection) -> Any:
            row = db.execute(
                f"SELECT value FROM {_TABLE} WHERE namespace = ? AND key = ?", (self.namespace, key)
            ).fetchone()
            return None if row is None else row[0]

        return await self._submit(op, False)  # type: ignore[no-any-return]

    async def _clear(self) -> int:
        def op(db: sqlite3.Connection) -> int:
            live = db.execute(
                f"SELECT count(*) FROM {_TABLE} WHERE namespace = ? AND {_LIVE}",
                (self.namespace, self._now_ms()),
            ).fetchone()[0]
            db.execute(f"DELETE FROM {_TABLE} WHERE namespace = ?", (self.namespace,))
            return int(live)

        return int(await self._submit(op, True))
