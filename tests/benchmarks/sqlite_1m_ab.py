"""Issue 16, SQLite `set` at a million keys: settings and designs tried against today's
SQLiteStorage, side by side (interleaved) on the million benchmark's own curve.

Run by hand: ``python -m tests.benchmarks.sqlite_1m_ab [--variants base,ps1024,...]
[--rounds 5] [--sizes 1000,1000000] [--seconds 1.5] [--out rows.jsonl]``.

Each run of a variant is a fresh child process that does what ``tests.benchmarks.million``
does for SQLite (a new file, fill 1k keys with ``set_many``, 100 tasks of ``get_state`` then
of ``set_state`` of random existing keys, file + WAL bytes per key; fill on to 1M, the same)
and adds a 1-task ``set_state`` after each size's 100-task one. Rounds run every variant once,
in an order rotated each round, so that all meet the same background load; the table gives
medians over rounds and the median (and range) of each run's own 1M/1k set ratio, and the
longest event-loop stall of any run's 100-task set at the largest size (``_harness.LoopLag``).

The variants are subclasses of ``SQLiteStorage`` (nothing in ``statekit`` is changed):

- ``base``: SQLiteStorage as it is (4 KiB pages, SQLite's autocheckpoint at 1000 frames; since
  2026-12-07 16:00 UTC a large batch, a ``set_many`` of more than one statement, is
  acknowledged first and checkpointed after).
- ``inline``: a large batch's checkpoint inside its commit too, as ``base`` was before; every
  variant below builds on it, as they were measured.
- ``ps1024`` / ``ps2048``: ``PRAGMA page_size`` for the new file.
- ``ac10000``: ``wal_autocheckpoint = 10000`` with ``journal_size_limit = 64 MiB``.
- ``cache64m``: ``cache_size = -65536`` (64 MiB).
- ``cohort``: the flusher takes half of the waiting callers when more than 64 wait, so that
  two cohorts alternate (the loop handling one while the worker thread commits the other).
- ``bgf1k`` / ``bgf4k_ps1024``: a thread with its own connection runs ``PRAGMA
  wal_checkpoint(PASSIVE)`` after commits, at most one per 10 ms; the writer keeps SQLite's
  autocheckpoint (1000 frames; 4000 with 1 KiB pages: 4 MiB of WAL either way) for the rest.
- ``bgr4k_ps1024``: the same thread, the writer's autocheckpoint off; once a checkpoint reports
  the WAL at 4000 frames or more, the next write waits for one covering every commit so that it
  starts the WAL over (bounded at ~4 MiB); 1 KiB pages.
- ``nock``: no checkpoint at all while measuring (the WAL grows without bound): what taking
  all checkpoint work off the writer could give at most.
- ``replace``: the write statements before 2026-12-07, ``INSERT OR REPLACE`` (delete the row,
  insert it again) instead of today's upsert (the module's statements swapped in the child).
- ``wlog``: a prototype of a write log in front of the table (``_WriteLog``: get and set only,
  one process; ``tests/benchmarks/sqlite_log_probe.py`` measures the design raw). Sets are
  merged into the table every ``STATEKIT_WLOG_MERGE_AT`` sets (default 100000); give
  ``--seconds`` long enough for several merges to fall in each 1M-key window.

``--values changing`` makes each ``set`` write a value not stored before (the million
benchmark writes the same one every time, which an upsert of unchanged bytes does not even
write to a page).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import statekit.storage.sqlite as sqlite_module
from statekit.storage._aiosqlite import raw_connection, run_in_thread
from statekit.storage.sqlite import SQLiteStorage
from tests.benchmarks._harness import LoopLag
from tests.benchmarks.million import changing_put, fill, random_ops, rate
from tests.benchmarks.sqlite_log_probe import (
    APPEND,
    DELETE_MERGED,
    DROP_SNAPSHOT,
    LOG_DDL,
    MAX_SEQ,
    MERGE_SLICE,
    SNAPSHOT,
    TAIL,
)

ROOT = Path(__file__).resolve().parents[2]
_WRITE, _SINGLE = 1, 2


class _InlineCheckpoints(SQLiteStorage):
    """SQLiteStorage with every checkpoint inside the commit that reaches SQLite's 1000 frames,
    large batches' too: statekit before 2026-12-07 16:00 UTC (it acknowledges a large batch
    first and checkpoints after it). Every variant but ``base`` builds on this, as measured."""

    _defer_large_checkpoints = False


def _pragmas(pre: tuple[str, ...] = (), post: tuple[str, ...] = (), base: type = _InlineCheckpoints) -> type:
    """``pre`` run before the file is switched to WAL (page_size), ``post`` after _prepare."""

    class Variant(base):  # type: ignore[misc,valid-type]
        def _prepare(self, db: sqlite3.Connection) -> None:
            for pragma in pre:
                db.execute("PRAGMA " + pragma)
            super()._prepare(db)
            for pragma in post:
                db.execute("PRAGMA " + pragma)

    return Variant


class _Cohort(_InlineCheckpoints):
    async def _flush(self) -> None:
        while self._pending and self._conn is not None:
            take = len(self._pending)
            if take > 64:
                take = (take + 1) // 2
            batch = [item for item in self._pending[:take] if not item[0].done()]
            del self._pending[:take]
            if not batch:
                continue
            if len(batch) == 1 and batch[0][2] & _SINGLE:
                begin = None
            else:
                begin = "BEGIN IMMEDIATE" if any(f & _WRITE for _, _, f in batch) else "BEGIN"
            conn = self._conn
            self.transactions += 1
            ops = [op for _, op, _ in batch]
            results = await run_in_thread(conn, self._run_batch, raw_connection(conn), ops, begin)
            for (fut, _, _), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)


def _background_checkpoints(
    page_size: int | None, autocheckpoint: int, restart_at: int | None, interval: float = 0.01
) -> type:
    """A thread with a connection of its own runs PASSIVE checkpoints after write commits, at
    most one per ``interval``. ``autocheckpoint``: the writer's own (0: off). ``restart_at``:
    once a checkpoint reports the WAL at that many frames, the next write waits for a
    checkpoint that covers every commit, so that it starts the WAL over."""

    class Variant(_InlineCheckpoints):
        def _prepare(self, db: sqlite3.Connection) -> None:
            if page_size:
                db.execute(f"PRAGMA page_size = {page_size}")
            super()._prepare(db)
            db.execute(f"PRAGMA wal_autocheckpoint = {autocheckpoint}")

        async def _open(self) -> None:
            await super()._open()
            self._cv = threading.Condition()
            self._commits = self._covered = self._wal_frames = 0
            self._wanted = self._urgent = self._stopping = False
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True)
            self._checkpointer.start()

        def _checkpoint_loop(self) -> None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA synchronous = {'FULL' if self.durability == 'full' else 'NORMAL'}")
            cv = self._cv
            try:
                while True:
                    with cv:
                        cv.wait_for(lambda: self._wanted or self._stopping)
                        if self._stopping:
                            return
                        self._wanted = False
                        upto = self._commits
                    busy, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    with cv:
                        self._wal_frames = frames
                        if not busy:
                            self._covered = max(self._covered, upto)
                        cv.notify_all()
                        if not self._urgent:
                            cv.wait_for(lambda: self._urgent or self._stopping, timeout=interval)
            finally:
                db.close()

        def _run_batch(self, db: sqlite3.Connection, ops: list[Any], begin: str | None) -> list[Any]:
            write = begin == "BEGIN IMMEDIATE"
            cv = self._cv
            if write and restart_at is not None and self._wal_frames >= restart_at:
                with cv:
                    self._urgent = self._wanted = True
                    cv.notify_all()
                    cv.wait_for(lambda: self._covered >= self._commits or self._stopping, timeout=5)
                    self._urgent = False
                    self._wal_frames = 0
            results = super()._run_batch(db, ops, begin)
            if write:
                with cv:
                    self._commits += 1
                    self._wanted = True
                    cv.notify_all()
            return results

        async def _close(self) -> None:
            with self._cv:
                self._stopping = True
                self._cv.notify_all()
            await asyncio.to_thread(self._checkpointer.join)
            await super()._close()

    return Variant


class _WriteLog(_InlineCheckpoints):
    """A prototype of the write log measured raw by ``sqlite_log_probe`` (get and set only, one
    process: not a backend). A set appends to an unindexed log and to this process's map of the
    log; a read looks in the map first, then the table; every batch first reads the log rows
    added since (the query every process would run). Once ``merge_at`` sets are logged, a task
    merges them into the table: the last write of each key copied in key order to a temporary
    table, written in ``slices`` write transactions (other batches run between them), then the
    merged log rows deleted and dropped from the map."""

    merge_at = int(os.environ.get("STATEKIT_WLOG_MERGE_AT", "100000"))
    slices = 10
    merges = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._logged: dict[str, tuple[Any, int | None, int]] = {}  # key -> value, expiry, seq
        self._seen = 0
        self._count = 0
        self._merge_task: asyncio.Task[None] | None = None
        self._merge_due = False  # set in the worker thread, cleared when the merge is done

    def _prepare(self, db: sqlite3.Connection) -> None:
        super()._prepare(db)
        db.execute("PRAGMA temp_store = MEMORY")
        db.execute(LOG_DDL)

    def _tail(self, db: sqlite3.Connection) -> None:
        rows = db.execute(TAIL, (self._seen, self.namespace)).fetchall()
        for seq, k, value, expires_at in rows:
            self._logged[k] = (value, expires_at, seq)
            self._seen = seq

    def _run_batch(self, db: sqlite3.Connection, ops: list[Any], begin: str | None) -> list[Any]:
        def tail(db: sqlite3.Connection) -> None:
            self._tail(db)

        return super()._run_batch(db, [tail, *ops], begin or "BEGIN")[1:]

    def _read(self, db: sqlite3.Connection, k: str) -> Any:
        found = self._logged.get(k)
        if found is None:
            return super()._read(db, k)
        value, expires_at, _ = found
        if value is None or (expires_at is not None and expires_at <= self._now_ms()):
            return None
        return value, expires_at

    def _write_row(  # type: ignore[override]
        self, db: sqlite3.Connection, k: str, stored: Any, ttl_ms: int | None, keep_ttl: bool,
        current: Any = None, known: bool = False,
    ) -> None:
        if keep_ttl:
            current = current if known else self._read(db, k)
            expires_at = None if current is None else current[1]
        else:
            expires_at = None if ttl_ms is None else self._now_ms() + ttl_ms
        seq = db.execute(APPEND, (self.namespace, k, stored, expires_at)).lastrowid
        self._logged[k] = (stored, expires_at, seq)
        self._seen = seq
        self._count += 1
        if self._count >= self.merge_at and not self._merge_due:
            self._count = 0
            self._merge_due = True
            asyncio.run_coroutine_threadsafe(self._start_merge(), self._loop)

    async def _open(self) -> None:
        self._loop = asyncio.get_running_loop()
        await super()._open()

    async def _start_merge(self) -> None:
        self._merge_task = asyncio.create_task(self._merge())

    async def _merge(self) -> None:
        def snapshot(db: sqlite3.Connection) -> tuple[int, int]:
            upto = db.execute(MAX_SEQ).fetchone()[0] or 0
            db.execute(DROP_SNAPSHOT)
            db.execute(SNAPSHOT, (upto,))
            return upto, db.execute("SELECT count(*) FROM temp.merging").fetchone()[0]

        def merge_slice(db: sqlite3.Connection, first: int, last: int) -> None:
            db.execute(MERGE_SLICE, (first, last))

        def finish(db: sqlite3.Connection, upto: int) -> None:
            db.execute(DELETE_MERGED, (upto,))
            db.execute(DROP_SNAPSHOT)
            self._logged = {k: v for k, v in self._logged.items() if v[2] > upto}

        try:
            upto, count = await self._submit(snapshot, False)
            step = -(-count // self.slices) or 1
            for first in range(1, count + 1, step):
                await self._submit(functools.partial(merge_slice, first=first, last=first + step - 1), True)
            await self._submit(functools.partial(finish, upto=upto), True)
            type(self).merges += 1
        finally:
            self._merge_task = None
            self._merge_due = False

    async def _close(self) -> None:
        while self._merge_due:
            await asyncio.sleep(0.01)
        await super()._close()


VARIANTS: dict[str, type] = {
    "base": SQLiteStorage,
    "inline": _InlineCheckpoints,
    "ps1024": _pragmas(pre=("page_size = 1024",)),
    "ps2048": _pragmas(pre=("page_size = 2048",)),
    "ac10000": _pragmas(post=("wal_autocheckpoint = 10000", "journal_size_limit = 67108864")),
    "cache64m": _pragmas(post=("cache_size = -65536",)),
    "cohort": _Cohort,
    "bgf1k": _background_checkpoints(None, 1000, None),
    "bgf4k_ps1024": _background_checkpoints(1024, 4000, None),
    "bgr4k_ps1024": _background_checkpoints(1024, 0, 4000),
    "nock": _pragmas(post=("wal_autocheckpoint = 0",)),
    "replace": _InlineCheckpoints,  # with the statements of _use_replace
    "wlog": _WriteLog,
}


def _use_replace() -> None:
    """Swap in the write statements before 2026-12-07 (this process only)."""
    table = sqlite_module._TABLE
    sqlite_module._WRITE_ONE = (
        f"INSERT OR REPLACE INTO {table} (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)"
    )

    def insert_rows(count: int) -> str:
        return (
            f"INSERT OR REPLACE INTO {table} (namespace, key, value, expires_at) "
            "SELECT ?1, column1, column2, ?2 FROM (VALUES " + ",".join(["(?, ?)"] * count) + ")"
        )

    sqlite_module._insert_rows = insert_rows  # type: ignore[assignment]


async def child(variant: str, sizes: list[int], seconds: float, values: str = "same") -> list[dict[str, Any]]:
    """The SQLite path of ``million.child_curve``, step for step (kept a copy on purpose, so
    that the figures are the million benchmark's), plus the 1-task set."""
    if variant == "replace":
        _use_replace()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp, "million.db")
        store = VARIANTS[variant](str(db))
        await store.start()
        try:
            have = 0
            for n in sizes:
                await fill(store, have, n)
                have = n
                get, put = random_ops(store, n)
                if values == "changing":
                    put = changing_put(store, n)
                row: dict[str, Any] = {"variant": variant, "keys": n}
                row["get"] = await rate(get, seconds)
                async with LoopLag() as lag:
                    row["set"] = await rate(put, seconds)
                row["set_stall"] = lag.worst
                row["merges"] = getattr(type(store), "merges", 0)
                row["bytes_per_key"] = sum(
                    p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists()
                ) / n
                row["set1"] = await one_task(put, seconds)
                rows.append(row)
        finally:
            await store.stop()
    return rows


async def one_task(op: Any, seconds: float) -> float:
    deadline = time.perf_counter() + seconds
    done, start = 0, time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(32):
            await op(done)
        done += 32
    return done / (time.perf_counter() - start)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def summarize(rows: list[dict[str, Any]], variants: list[str], sizes: list[int]) -> None:
    lo, hi = sizes[0], sizes[-1]

    def med(v: str, n: int, k: str) -> float:
        return statistics.median(x[k] for x in rows if x["variant"] == v and x["keys"] == n)

    def worst(v: str, n: int) -> float:
        return max(x.get("set_stall", 0.0) for x in rows if x["variant"] == v and x["keys"] == n)

    print(
        f"\n| variant | set/s {lo:,} | set/s {hi:,} | set {hi:,}/{lo:,}: median [range] of runs "
        f"| get/s {lo:,} | get/s {hi:,} | 1-task set/s {lo:,} | 1-task set/s {hi:,} "
        f"| B/key {lo:,} | B/key {hi:,} | worst loop stall in a 100-task set {hi:,}, ms | runs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        ratios = []
        for r in sorted({x["round"] for x in rows if x["variant"] == v}):
            s = {x["keys"]: x["set"] for x in rows if x["variant"] == v and x["round"] == r}
            ratios.append(s[hi] / s[lo])
        print(
            f"| {v} | {med(v, lo, 'set'):,.0f} | {med(v, hi, 'set'):,.0f} | "
            f"{statistics.median(ratios):.2f} [{min(ratios):.2f}–{max(ratios):.2f}] | "
            f"{med(v, lo, 'get'):,.0f} | {med(v, hi, 'get'):,.0f} | {med(v, lo, 'set1'):,.0f} | "
            f"{med(v, hi, 'set1'):,.0f} | {med(v, lo, 'bytes_per_key'):,.0f} | "
            f"{med(v, hi, 'bytes_per_key'):,.0f} | {worst(v, hi) * 1000:.1f} | {len(ratios)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=4)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--sizes", default="1000,1000000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--out", default="")
    parser.add_argument("--values", choices=("same", "changing"), default="same")
    args = parser.parse_args()
    if args.child:
        variant, sizes, seconds, values = args.child
        result = asyncio.run(child(variant, [int(s) for s in sizes.split(",")], float(seconds), values))
        print(json.dumps(result))
        return
    variants = args.variants.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC start, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {args.values} values, "
        f"load {loadavg()}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for r in range(args.rounds):
        for v in variants[r % len(variants):] + variants[: r % len(variants)]:
            proc = subprocess.run(
                [sys.executable, "-m", "tests.benchmarks.sqlite_1m_ab", "--child", v, args.sizes, str(args.seconds), args.values],
                cwd=ROOT, env=env, capture_output=True, text=True, check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"{v} failed:\n{proc.stderr[-3000:]}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            stamp = f"{datetime.now(timezone.utc):%H:%M:%S}"
            for row in got:
                row.update(round=r, load=loadavg(), time=stamp)
            rows += got
            if args.out:
                with open(args.out, "a") as out:
                    out.writelines(json.dumps(row) + "\n" for row in got)
            print(
                f"{stamp} round {r} {v}: "
                + "; ".join(f"{x['keys']:,} set {x['set']:,.0f} get {x['get']:,.0f}" for x in got)
                + f"; ratio {got[-1]['set'] / got[0]['set']:.2f}; load {loadavg()}",
                flush=True,
            )
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC end, load {loadavg()}")
    summarize(rows, variants, sizes)


if __name__ == "__main__":
    main()
