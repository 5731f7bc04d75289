"""``statekit bench URL``: operations per second of each storage operation against one store.

Keys are written under ``statekit-bench:<random>:`` in the URL's namespace and deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from statekit._cli._common import (
    CLIError,
    add_json,
    describe_store,
    format_table,
    human_count,
    opened,
    print_json,
    run_async,
)
from statekit.storage.base import BaseStorage

__all__ = ["add_parser"]

VALUE = {"state": "Form:age", "data": {"name": "Ada", "age": 36, "tags": ["a", "b"]}}
BATCH = 100
POOL = 1024
SCAN_PATTERN = "{prefix}k1*"  # k1, k10-k19, k100-k199, k1000-k1023: 135 of the POOL keys
OPERATIONS = (
    "get",
    "set",
    "set+ttl",
    "compare_and_set",
    "increment",
    "get_ttl",
    "delete",
    "get_many",
    "set_many",
    "scan",
)

Op = Callable[[int], Awaitable[Any]]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bench``."""
    p = sub.add_parser(
        "bench",
        help="measure ops/s of each operation against a store",
        description="Measure how many operations per second a store answers, operation by "
        "operation (get, set, compare_and_set, increment, get_ttl, delete, get_many and set_many of "
        f"{BATCH} keys, a scan matching 135 keys), with one task and with --concurrency tasks at once. "
        "The bench WRITES to the store: its keys live under 'statekit-bench:<random>:' in the "
        "URL's namespace (?namespace=NAME, default statekit) and are deleted at the end.",
        epilog="examples:\n"
        "  statekit bench sqlite:///bench.db\n"
        "  statekit bench 'redis://127.0.0.1:6379/0?namespace=bench' --concurrency 1 100 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", metavar="URL", help="storage URL")
    p.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 50],
        metavar="N",
        help="task counts to measure with (default: 1 50)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=0.5,
        help="seconds per measurement (default: 0.5)",
    )
    p.add_argument(
        "--operations",
        nargs="+",
        choices=OPERATIONS,
        default=list(OPERATIONS),
        metavar="OP",
        help=f"operations to measure (default: all of {', '.join(OPERATIONS)})",
    )
    add_json(p)
    p.set_defaults(func=run)


def _ops(storage: BaseStorage, prefix: str) -> dict[str, Op]:
    keys = [f"{prefix}k{i}" for i in range(POOL)]
    counters = [f"{prefix}n{i}" for i in range(POOL)]
    doomed = [f"{prefix}d{i}" for i in range(POOL)]
    batches = [
        [f"{prefix}k{(j * BATCH + i) % POOL}" for i in range(BATCH)] for j in range(POOL // BATCH)
    ]
    cas_state: dict[int, Any] = {}

    async def cas(i: int) -> None:
        key = keys[i % POOL]
        current = cas_state.get(i % POOL, VALUE)
        new = {"v": i}
        if not await storage.compare_and_set(key, new, expected=current):
            new = await storage.get_state(key)
        cas_state[i % POOL] = new

    async def delete(i: int) -> None:
        if not await storage.delete_state(doomed[i % POOL]):
            await storage.set_state(doomed[i % POOL], 1)

    async def scan(_: int) -> None:
        async for _key in storage.scan_keys(SCAN_PATTERN.format(prefix=prefix)):
            pass

    return {
        "get": lambda i: storage.get_state(keys[i % POOL]),
        "set": lambda i: storage.set_state(keys[i % POOL], VALUE, ttl=None),
        "set+ttl": lambda i: storage.set_state(keys[i % POOL], VALUE, ttl=3600),
        "compare_and_set": cas,
        "increment": lambda i: storage.increment(counters[i % POOL]),
        "get_ttl": lambda i: storage.get_ttl(keys[i % POOL]),
        "delete": delete,
        "get_many": lambda i: storage.get_many(batches[i % len(batches)]),
        "set_many": lambda i: storage.set_many(
            {k: VALUE for k in batches[i % len(batches)]}, ttl=None
        ),
        "scan": scan,
    }


async def _measure(op: Op, tasks: int, seconds: float) -> float:
    """Operations per second of ``op`` run by ``tasks`` tasks for about ``seconds``."""
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> int:
        done = 0
        i = w
        while True:
            await op(i)
            i += tasks
            done += 1
            if done % 16 == 0 and time.perf_counter() >= deadline:
                return done

    start = time.perf_counter()
    counts = await asyncio.gather(*(worker(w) for w in range(tasks)))
    return sum(counts) / (time.perf_counter() - start)


async def _bench(args: argparse.Namespace) -> tuple[str, list[dict[str, Any]]]:
    prefix = f"statekit-bench:{secrets.token_hex(4)}:"
    rows: list[dict[str, Any]] = []
    async with opened(args.url) as storage:
        where = describe_store(storage)
        try:
            await storage.set_many({f"{prefix}k{i}": VALUE for i in range(POOL)}, ttl=None)
            ops = _ops(storage, prefix)
            scanned = len(await storage.list_keys(SCAN_PATTERN.format(prefix=prefix)))
            for name in args.operations:
                for tasks in args.concurrency:
                    await _measure(ops[name], min(tasks, 8), 0.02)  # warm-up
                    rate = await _measure(ops[name], tasks, args.seconds)
                    rows.append(
                        {
                            "operation": name,
                            "concurrency": tasks,
                            "ops_per_s": round(rate, 1),
                            "keys_per_op": (
                                scanned
                                if name == "scan"
                                else BATCH
                                if name.endswith("_many")
                                else 1
                            ),
                        }
                    )
        finally:
            doomed = await storage.list_keys(prefix + "*")
            for start in range(0, len(doomed), 1000):
                await storage.delete_many(doomed[start : start + 1000])
    return where, rows


def run(args: argparse.Namespace) -> int:
    """Measure and print a table (or ``--json``)."""
    if any(n < 1 for n in args.concurrency):
        raise CLIError("--concurrency values must be >= 1", 2)
    if not args.seconds > 0:
        raise CLIError("--seconds must be > 0", 2)
    where, rows = run_async(_bench(args))
    if args.json:
        print_json({"store": where, "seconds": args.seconds, "results": rows})
        return 0
    print(f"statekit bench: {where}, {args.seconds:g} s per measurement")
    table = [
        (
            r["operation"] + (f" ({r['keys_per_op']} keys)" if r["keys_per_op"] > 1 else ""),
            str(r["concurrency"]),
            human_count(r["ops_per_s"]),
            human_count(r["ops_per_s"] * r["keys_per_op"]),
        )
        for r in rows
    ]
    print(format_table(("operation", "tasks", "ops/s", "keys/s"), table))
    return 0
