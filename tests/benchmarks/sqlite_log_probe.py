"""Issue 16, SQLite `set` at a million keys: what a write log in front of the table would give,
measured on raw ``sqlite3`` beside today's statement, and checked against ``SQLiteStorage``.

Run by hand: ``python -m tests.benchmarks.sqlite_log_probe [--rounds 3] [--sizes 1000,1000000] [--slices 10]
[--commits 2000] [--merge-at 100000] [--json out.json]``.

Issue 16 asks ``SQLiteStorage.set_state`` with 100 tasks to keep >= 0.7x of its 1k-key rate at
1M keys. Through the storage a set at 1M costs ~2.5x what it costs at 1k, because each set
changes a leaf page of the table that no other set of its commit touches (random keys), and every
changed page is a WAL frame and later a checkpoint write. This probe measures, on the storage's
own schema and pragmas (WAL, ``synchronous=NORMAL``) with raw ``sqlite3`` (no event loop, no
thread hop), the cost per set of commits of 100 sets of changing values into a file of N keys:

- ``table``: today's upsert into the ``(namespace, key)`` table (``SQLiteStorage``'s statement).
- ``log``: each set appended to a log table keyed by a sequence number (its pages are written in
  order: ~2 frames a commit), merged into the table once it holds ``--merge-at`` sets: the last
  write of each key copied in key order to a temporary table (a read), then written to the table
  in ``--slices`` transactions of neighbouring keys, then the merged log rows deleted. Merge time
  counts in the cost; "longest merge" is the longest of those transactions, the time the write
  lock is held (every writer waits that long).
  A reader would have to look in the log first: without an index on it, only a process that
  keeps what it has read of the log in memory can (it reads the rows added since, before each
  read: the "tail" below).
- ``log_indexed``: the same log with an index on ``(namespace, key)``, so that any process can
  look a key up in it with one query (the index's pages are written at random again).

Beside them, ``SQLiteStorage`` itself (100 tasks of ``set_state`` of changing values, in the same
process) at both sizes: what today's design gives through the storage, and the per-set cost of
the event loop and thread hop (the storage's cost at 1k minus the raw ``table`` cost at 1k), from
which the table's last column predicts each design's ratio through the storage.

Reads: the cost per get of 100 gets by key in one read transaction, without and with the
``tail`` query (``SELECT … FROM log WHERE seq > ?`` finding nothing) at the start.

Rounds run every subject once, in an order rotated from round to round; the tables give medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgpack

from statekit.storage.sqlite import _WRITE_ONE, SQLiteStorage
from tests.benchmarks._harness import Result, count, machine, print_table, sizes, write_json
from tests.benchmarks.million import changing_put, fill, key, rate

NAMESPACE = "statekit"
PER_COMMIT = 100
DESIGNS = ("table", "log", "log_indexed")
# the log's statements, shared with the prototype through the storage (sqlite_1m_ab's _WriteLog)
LOG_DDL = (
    "CREATE TABLE IF NOT EXISTS statekit_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB, expires_at INTEGER)"
)
APPEND = "INSERT INTO statekit_log (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)"
TAIL = "SELECT seq, key, value, expires_at FROM statekit_log WHERE seq > ? AND namespace = ?"
MAX_SEQ = "SELECT max(seq) FROM statekit_log"
# the last write of each key up to a sequence number, in key order (temp rowids follow it)
SNAPSHOT = (
    "CREATE TEMP TABLE merging AS SELECT namespace, key, value, expires_at FROM statekit_log "
    "WHERE seq IN (SELECT max(seq) FROM statekit_log WHERE seq <= ? GROUP BY namespace, key) "
    "ORDER BY namespace, key"
)
MERGE_SLICE = (
    "INSERT INTO statekit_kv (namespace, key, value, expires_at) "
    "SELECT namespace, key, value, expires_at FROM temp.merging WHERE rowid BETWEEN ? AND ? ORDER BY rowid"
    " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)
DELETE_MERGED = "DELETE FROM statekit_log WHERE seq <= ?"
DROP_SNAPSHOT = "DROP TABLE IF EXISTS temp.merging"
_GET = "SELECT value, expires_at FROM statekit_kv WHERE namespace = ? AND key = ?"


def _value(i: int) -> bytes:
    return msgpack.packb(f"w{i}")  # type: ignore[no-any-return]


async def _prepared_file(path: Path, n: int) -> None:
    """A file with the storage's schema and pragmas holding ``n`` keys (the million benchmark's)."""
    store = SQLiteStorage(str(path), namespace=NAMESPACE)
    await store.start()
    try:
        await fill(store, 0, n)
    finally:
        await store.stop()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA temp_store = MEMORY")  # the merge's sorted copy
    return db


def _merge(db: sqlite3.Connection, slices: int) -> float:
    """Merge the log into the table; return the longest time the write lock was held. The last
    write of each key is copied to a temporary table in key order (a read: it does not hold the
    write lock), then merged in ``slices`` transactions of neighbouring keys (each slice changes
    its own share of the table's pages, so slicing keeps the saving), then the log rows merged
    are deleted by sequence number. A key written again meanwhile keeps its newer log row, which
    a reader finds first."""
    start = time.perf_counter()
    db.execute("BEGIN")
    upto = db.execute(MAX_SEQ).fetchone()[0] or 0
    db.execute(SNAPSHOT, (upto,))
    count = db.execute("SELECT count(*) FROM temp.merging").fetchone()[0]
    db.execute("COMMIT")
    longest = 0.0
    step = -(-count // slices) or 1
    for first in range(1, count + 1, step):
        begin = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute(MERGE_SLICE, (first, first + step - 1))
        db.execute("COMMIT")
        longest = max(longest, time.perf_counter() - begin)
    begin = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    db.execute(DELETE_MERGED, (upto,))
    db.execute("COMMIT")
    db.execute(DROP_SNAPSHOT)
    longest = max(longest, time.perf_counter() - begin)
    return longest if slices > 1 else time.perf_counter() - start


def raw_sets(path: Path, design: str, n: int, commits: int, merge_at: int, slices: int) -> dict[str, float]:
    """µs per set and the longest merge (s) of ``commits`` commits of ``PER_COMMIT`` sets of
    changing values to random keys of ``n`` into the file at ``path`` under ``design``."""
    db = _connect(path)
    try:
        if design != "table":
            db.execute(LOG_DDL)
            if design == "log_indexed":
                db.execute("CREATE INDEX statekit_log_key ON statekit_log (namespace, key)")
        rng = random.Random(16)
        sets = commits * PER_COMMIT
        rows = [(NAMESPACE, key(rng.randrange(n)), _value(i), None) for i in range(sets)]
        statement = _WRITE_ONE if design == "table" else APPEND
        logged, longest = 0, 0.0
        start = time.perf_counter()
        for c in range(0, sets, PER_COMMIT):
            db.execute("BEGIN IMMEDIATE")
            db.executemany(statement, rows[c : c + PER_COMMIT])
            db.execute("COMMIT")
            if design != "table":
                logged += PER_COMMIT
                if logged >= merge_at:
                    longest = max(longest, _merge(db, slices))
                    logged = 0
        if logged:
            longest = max(longest, _merge(db, slices))
        elapsed = time.perf_counter() - start
        return {"us_per_set": elapsed / sets * 1e6, "longest_merge": longest}
    finally:
        db.close()


def raw_gets(path: Path, n: int, batches: int = 200) -> dict[str, float]:
    """µs per get of batches of ``PER_COMMIT`` gets in one read transaction, without and with a
    tail of an (empty) log first."""
    db = _connect(path)
    try:
        db.execute(LOG_DDL)
        rng = random.Random(61)
        keys = [(NAMESPACE, key(rng.randrange(n))) for _ in range(batches * PER_COMMIT)]
        found: dict[str, float] = {}
        for with_tail in (False, True):
            start = time.perf_counter()
            for b in range(0, len(keys), PER_COMMIT):
                db.execute("BEGIN")
                if with_tail:
                    db.execute(TAIL, (0, NAMESPACE)).fetchall()
                for k in keys[b : b + PER_COMMIT]:
                    db.execute(_GET, k).fetchone()
                db.execute("COMMIT")
            found["tail" if with_tail else "plain"] = (time.perf_counter() - start) / len(keys) * 1e6
        return found
    finally:
        db.close()


async def storage_sets(path: Path, n: int, seconds: float) -> float:
    """``SQLiteStorage.set_state`` per second with 100 tasks, changing values, random keys of a
    file of ``n`` keys (the million benchmark's 100-task set, ``--values changing``)."""
    store = SQLiteStorage(str(path), namespace=NAMESPACE)
    await store.start()
    try:
        return await rate(changing_put(store, n), seconds)
    finally:
        await store.stop()


async def one_round(r: int, sizes: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    subjects = [*DESIGNS, "storage"]
    k = r % len(subjects)
    rows: list[dict[str, Any]] = []
    for subject in subjects[k:] + subjects[:k]:
        for n in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp, "probe.db")
                await _prepared_file(path, n)
                row: dict[str, Any] = {"round": r, "subject": subject, "keys": n}
                if subject == "storage":
                    row["us_per_set"] = 1e6 / await storage_sets(path, n, args.seconds)
                else:
                    row |= raw_sets(path, subject, n, args.commits, args.merge_at, args.slices)
                    if subject == "log" and r == 0:
                        row |= raw_gets(path, n)
                rows.append(row)
                print(f"{datetime.now(timezone.utc):%H:%M:%S} round {r} {subject} {n:,}: "
                      f"{row['us_per_set']:.1f} µs/set", flush=True)
    return rows


def summarize(rows: list[dict[str, Any]], sizes: list[int]) -> tuple[list[Result], str]:
    lo, hi = sizes[0], sizes[-1]

    def med(subject: str, n: int, field: str = "us_per_set") -> float:
        return statistics.median(x[field] for x in rows if x["subject"] == subject and x["keys"] == n)

    overhead = med("storage", lo) - med("table", lo)
    # the model (overhead + raw cost) against what the storage measured with today's table
    scale = (med("storage", lo) / med("storage", hi)) / ((overhead + med("table", lo)) / (overhead + med("table", hi)))
    lines = [
        "",
        f"| design | µs/set {lo:,} keys | µs/set {hi:,} keys | rate {hi:,} / {lo:,} (raw) | "
        f"longest merge at {hi:,} | predicted through the storage, {hi:,} / {lo:,} | "
        "the same, scaled by the storage's measured / predicted |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    results: list[Result] = []
    for subject in (*DESIGNS, "storage"):
        a, b = med(subject, lo), med(subject, hi)
        if subject == "storage":
            lines.append(f"| SQLiteStorage (measured) | {a:.1f} | {b:.1f} | {a / b:.2f} | — | {a / b:.2f} (measured) | — |")
        else:
            merge = med(subject, hi, "longest_merge")
            predicted = (overhead + a) / (overhead + b)
            lines.append(
                f"| {subject} | {a:.1f} | {b:.1f} | {a / b:.2f} | "
                f"{'—' if subject == 'table' else f'{merge * 1000:.0f} ms'} | {predicted:.2f} | {predicted * scale:.2f} |"
            )
        for n, us in ((lo, a), (hi, b)):
            results.append(Result(
                f"set, {n:,} keys", subject if subject != "storage" else "SQLiteStorage, 100 tasks",
                "set (changing values, 100 per commit)", 1, 1e6 / us,
                baseline="table", ratio=med("table", n) / us,
            ))
    lines.append(
        f"\nEvent loop and thread hop per set (storage minus raw table at {lo:,}): {overhead:.1f} µs."
    )
    gets = [x for x in rows if "plain" in x]
    for n in sizes:
        mine = [x for x in gets if x["keys"] == n]
        if mine:
            lines.append(
                f"Get at {n:,} keys, 100 per read transaction: {mine[0]['plain']:.2f} µs plain, "
                f"{mine[0]['tail']:.2f} µs with a tail of the log first."
            )
    return results, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=count, default=3)
    parser.add_argument("--sizes", type=sizes, default=[1000, 1_000_000])
    parser.add_argument("--commits", type=count, default=2000)
    parser.add_argument("--merge-at", type=count, default=100_000)
    parser.add_argument("--slices", type=count, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if not args.seconds > 0:
        parser.error(f"--seconds must be > 0, got {args.seconds}")
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}, SQLite {sqlite3.sqlite_version}, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    rows: list[dict[str, Any]] = []
    for r in range(args.rounds):
        rows += asyncio.run(one_round(r, args.sizes, args))
    results, text = summarize(rows, args.sizes)
    print_table("SQLite set at a million keys: a write log (raw sqlite3) beside the table", results)
    print(text)
    print(f"# end {datetime.now(timezone.utc):%H:%M} UTC, load {os.getloadavg()[0]:.2f}")
    write_json(args.json, "sqlite_log_probe", results)


if __name__ == "__main__":
    main()
