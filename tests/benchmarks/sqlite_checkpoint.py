"""SQLite checkpoints after the acknowledgement: a ``set_many`` whose values fill 1,000 pages
(~4 MiB; SQLite would checkpoint inside its commit) acknowledged before its checkpoint (shipped),
and with the checkpoint inside its commit (SQLite's autocheckpoint: statekit before 2026-12-07
16:00 UTC); every other write keeps SQLite's own in both.

Run: ``python -m tests.benchmarks.sqlite_checkpoint [--values 1400] [--size 3900] [--rounds 9]
[--writers-seconds 5] [--json out.json]``.

Each round writes ``--values`` fresh values of ``--size`` bytes (~5.5 MB by default: about the
WAL frames a 100,000-peer session save adds) with one ``set_many`` into each variant's own file,
the order alternating from round to round, under a ticker task recording the event loop's
longest stall; then, in a second pass of the same round, the same kind of batch followed at once
by one ``set_state``, whose wait for the checkpoint the shipped variant moved there. Between
writes the loop idles 0.2 s (a checkpoint left running finishes meanwhile). The table gives
values per second acknowledged (best and median) and the ratio to the inline variant measured
in the same rounds.

Two processes on one file (``--writers-seconds``, 0 to skip): in each round and for each variant,
two child processes share a new file for that many seconds, each with 100 tasks of ``set_state``
on 1,000 keys of its own namespace ("small writes"), or the same with one task in 5,000 writing
a ``set_many`` of 1,200 values of 3,900 bytes (~4.7 MB) instead ("with large batches"), while
sampling the WAL file's size every 10 ms. A checkpoint lets the WAL start over only if it copies
every frame back, which it cannot while the other process appends: the rows give both
processes' operations per second together and, in the note, the largest WAL seen in any round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from statekit.storage.sqlite import SQLiteStorage
from tests.benchmarks._harness import LoopLag, batch_parser, print_table, rounds_result, write_json
from tests.benchmarks.million import rate
from tests.benchmarks.sqlite_1m_ab import _InlineCheckpoints

SHIPPED = "checkpoint after the acknowledgement (shipped)"
INLINE = "checkpoint inside the commit (before)"
VARIANTS: dict[str, type[SQLiteStorage]] = {SHIPPED: SQLiteStorage, INLINE: _InlineCheckpoints}
MIXES = {"small": "two processes, small writes", "big": "two processes, with large batches"}
WAL_FRAME = 4096 + 24


async def timed_write(storage: Any, batch: dict[str, bytes], then_small: bool) -> tuple[float, float]:
    """(seconds until ``set_many`` (and, if ``then_small``, one ``set_state`` right after it)
    returned, the event loop's longest stall meanwhile in seconds)."""
    async with LoopLag() as lag:
        start = time.perf_counter()
        await storage.set_many(batch)
        if then_small:
            await storage.set_state("after", len(batch))
        took = time.perf_counter() - start
    return took, lag.worst


async def writer(path: str, variant: str, seconds: float, mix: str) -> dict[str, float]:
    """One of the two processes: its operations per second (``million.rate``: 100 tasks) and the
    largest WAL file it saw (frames)."""
    storage = VARIANTS[variant](path, sweep_interval=3600, namespace=f"p{os.getpid()}")
    await storage.start()
    await storage.set_many({f"k{i}": "x" for i in range(1000)})
    largest = 0
    wal = Path(path + "-wal")
    measuring = True

    async def op(_: int) -> None:
        if mix == "big" and random.random() < 0.0002:
            await storage.set_many({f"b{i}": os.urandom(3900) for i in range(1200)})
        else:
            await storage.set_state(f"k{random.randrange(1000)}", os.urandom(40))

    async def watch() -> None:
        nonlocal largest
        while measuring:
            if wal.exists():
                largest = max(largest, wal.stat().st_size // WAL_FRAME)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        ops_per_s = await rate(op, seconds)
    finally:
        measuring = False
        await watcher
        await storage.stop()
    return {"ops_per_s": ops_per_s, "wal_frames": largest}


def two_writers(variant: str, seconds: float, mix: str) -> tuple[float, int]:
    """Both processes' operations per second together, and the largest WAL (frames) either saw."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp, "shared.db"))
        command = [sys.executable, "-m", "tests.benchmarks.sqlite_checkpoint", "--child",
                   path, variant, str(seconds), mix]
        children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        results = [json.loads(child.communicate()[0].strip().splitlines()[-1]) for child in children]
        if any(child.returncode for child in children):
            raise RuntimeError(f"a writer process failed: {[c.returncode for c in children]}")
    return sum(r["ops_per_s"] for r in results), max(int(r["wal_frames"]) for r in results)


def writers_rows(rounds: int, seconds: float) -> list[Any]:
    """The two-process rows: rounds interleaved, the order alternating."""
    rates: dict[tuple[str, str], list[float]] = {}
    largest: dict[tuple[str, str], int] = {}
    for r in range(rounds):
        for mix in MIXES:
            order = list(VARIANTS) if r % 2 else list(VARIANTS)[::-1]
            for variant in order:
                rate, frames = two_writers(variant, seconds, mix)
                rates.setdefault((variant, mix), []).append(rate)
                largest[(variant, mix)] = max(largest.get((variant, mix), 0), frames)
    rows = []
    for mix, group in MIXES.items():
        for variant in VARIANTS:
            row = rounds_result(
                group, variant, "100 tasks a process, ops/s of both", rates[(variant, mix)],
                base=None if variant == INLINE else rates[(INLINE, mix)], baseline=INLINE,
            )
            row.note += f"; WAL at most {largest[(variant, mix)]:,} frames"
            rows.append(row)
    return rows


async def run(args: argparse.Namespace) -> None:
    variants = VARIANTS
    took: dict[tuple[str, bool], list[float]] = {}
    stalls: dict[tuple[str, bool], list[float]] = {}
    checkpoints: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        storages = {
            label: cls(str(Path(tmp, f"v{i}.db")), sweep_interval=3600)
            for i, (label, cls) in enumerate(variants.items())
        }
        for storage in storages.values():
            await storage.start()
        try:
            for r in range(args.rounds + 1):  # round 0: warm-up, not counted
                order = list(storages.items()) if r % 2 else list(storages.items())[::-1]
                for then_small in (False, True):
                    for label, storage in order:
                        batch = {f"blob:{i}": os.urandom(args.size) for i in range(args.values)}
                        seconds, stall = await timed_write(storage, batch, then_small)
                        await asyncio.sleep(0.2)
                        if r:
                            took.setdefault((label, then_small), []).append(seconds)
                            stalls.setdefault((label, then_small), []).append(stall)
            checkpoints = {label: storage.checkpoints for label, storage in storages.items()}
        finally:
            for storage in storages.values():
                await storage.stop()
    megabytes = args.values * args.size / 1e6
    rows = []
    for then_small, operation in (
        (False, f"set_many of {args.values:,} values (~{megabytes:.1f} MB), acknowledged"),
        (True, "the same, then one set_state at once (values/s to its return)"),
    ):
        base = [args.values / t for t in took[(INLINE, then_small)]]
        for label in variants:
            rows.append(rounds_result(
                "SQLite (file)", label, operation,
                [args.values / t for t in took[(label, then_small)]],
                base=None if label == INLINE else base, baseline=INLINE,
                stalls=stalls[(label, then_small)],
            ))
    if args.writers_seconds > 0:
        rows += writers_rows(args.rounds, args.writers_seconds)
    print_table(f"SQLite checkpoints ({args.rounds} interleaved rounds, best and median)", rows)
    print(f"\ncheckpoints run after an acknowledgement: {checkpoints}")
    write_json(args.json, "sqlite_checkpoint", rows)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        path, variant, seconds, mix = argv[1:5]
        print(json.dumps(asyncio.run(writer(path, variant, float(seconds), mix))))
        return
    parser = batch_parser(__doc__, values=1400, size=3900, rounds=9)
    parser.add_argument("--writers-seconds", type=float, default=5.0,
                        help="seconds of each two-process run (0: skip them)")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
