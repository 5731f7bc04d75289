"""Large batch writes: the event loop's longest stall during one ``set_many`` of a session's
worth of buckets, with statements of about 1 MiB against one statement.

Run: ``python -m tests.benchmarks.big_batches [--values 700] [--size 12000] [--rounds 7]
[--json out.json]``.

Each round writes ``--values`` values of about ``--size`` bytes (~8 MB by default: a 100,000-peer
session's buckets) with one ``set_many`` into statekit SQLite (a file) and statekit PostgreSQL (a
cluster started for the run on a loopback port), under a ticker task sleeping 1 ms that records
the longest gap between its wake-ups. Two variants per backend, interleaved (the order alternates
from round to round): what ships (``statement_parts``: statements of about 1 MiB of values, one
transaction) and the baseline, one statement for the whole batch (the code before d63919f and
40f9779), by giving the backend a ``statement_parts`` whose budget has no limit. The table gives
the best and median rate of values written per second and the worst and median stall; the
ratio is against the one-statement variant of the same backend, measured in the same rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import statekit.storage.postgres as postgres_module
import statekit.storage.sqlite as sqlite_module
from statekit import open_storage
from statekit.storage._statements import statement_parts
from statekit.testing.postgres_server import PostgresServer
from tests.benchmarks._harness import LoopLag, batch_parser, print_table, rounds_result, write_json

ONE_STATEMENT = "one statement (before)"
SPLIT = "statements of ~1 MiB (shipped)"


def one_statement(values: Any, *, most_rows: int | None = None, budget: int = 0) -> list[tuple[int, int]]:
    """``statement_parts`` with no byte budget (only SQLite's row limit): the old behaviour."""
    return statement_parts(values, most_rows=most_rows, budget=1 << 62)


async def timed_batch(storage: Any, batch: dict[str, bytes], parts: Callable[..., Any]) -> tuple[float, float]:
    """(values/s, longest stall in seconds) of ``storage.set_many(batch)`` with ``parts`` as the
    backends' ``statement_parts``."""
    sqlite_module.statement_parts = parts  # type: ignore[attr-defined]
    postgres_module.statement_parts = parts  # type: ignore[attr-defined]
    try:
        async with LoopLag() as lag:
            start = time.perf_counter()
            await storage.set_many(batch)
            took = time.perf_counter() - start
    finally:
        sqlite_module.statement_parts = statement_parts  # type: ignore[attr-defined]
        postgres_module.statement_parts = statement_parts  # type: ignore[attr-defined]
    return len(batch) / took, lag.worst


async def run(args: argparse.Namespace) -> None:
    workdir = Path(os.environ.get("TMPDIR", "/tmp"))
    with PostgresServer() as pg:
        urls = {
            "SQLite (file)": f"sqlite:///{workdir / f'statekit-big-batches-{os.getpid()}.db'}?namespace=big",
            "PostgreSQL": f"{pg.url()}?namespace=big",
        }
        storages = {name: open_storage(url) for name, url in urls.items()}
        for storage in storages.values():
            await storage.start()
        variants = {ONE_STATEMENT: one_statement, SPLIT: statement_parts}
        rates: dict[tuple[str, str], list[float]] = {}
        stalls: dict[tuple[str, str], list[float]] = {}
        try:
            for r in range(args.rounds + 1):  # round 0: warm-up, not counted
                batch = {f"bucket:{i}": os.urandom(args.size + (i % 7) * 64) for i in range(args.values)}
                order = list(variants.items()) if r % 2 else list(variants.items())[::-1]
                for backend, storage in storages.items():
                    for label, parts in order:
                        rate, stall = await timed_batch(storage, batch, parts)
                        if r:
                            rates.setdefault((backend, label), []).append(rate)
                            stalls.setdefault((backend, label), []).append(stall)
        finally:
            for storage in storages.values():
                await storage.clear_namespace()
                await storage.stop()
            Path(urls["SQLite (file)"].split("sqlite:///")[1].split("?")[0]).unlink(missing_ok=True)
    megabytes = args.values * args.size / 1e6
    rows = []
    for backend in storages:
        base = rates[(backend, ONE_STATEMENT)]
        for label in variants:
            rows.append(rounds_result(
                backend, label, f"set_many of {args.values} values (~{megabytes:.1f} MB)",
                rates[(backend, label)], base=None if label == ONE_STATEMENT else base,
                baseline=ONE_STATEMENT, stalls=stalls[(backend, label)],
            ))
    print_table(f"Large batch writes ({args.rounds} interleaved rounds, best and median)", rows)
    write_json(args.json, "big_batches", rows)


def main(argv: list[str] | None = None) -> None:
    parser = batch_parser(__doc__, values=700, size=12_000, rounds=7)
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
