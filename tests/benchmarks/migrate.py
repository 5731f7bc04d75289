"""Migrate and demo benchmark: ``statekit migrate`` of 100,000 keys SQLite -> Redis, and the
default ``statekit demo`` on SQLite.

Run: ``python -m tests.benchmarks.migrate [--keys 100000] [--json out.json] [--skip-demo]``.

The source is a SQLite file holding ``--keys`` keys: 70 % FSM records without expiry and 30 %
counters, each with a TTL of its own (so no two expire in the same 10 ms and the migration cannot
batch their writes by TTL: the worst case). Every ``statekit`` run is the command line as a user
runs it (a subprocess, interpreter start-up included), timed by wall clock, against a real
redis-server started for the run. Baselines measured in the same run:

* raw redis-py, pipelined ``SET`` / ``SET PX`` of the same keys and bytes, 1,000 per pipeline:
  the cost of the writes alone (the ceiling a migration can approach);
* a naive copy with statekit's public API, one key at a time (``get_state``, ``get_ttl``,
  ``set_state``), measured on the first 5,000 keys.

Targets (issue 6): migrate of 100,000 keys in < 30 s; the default demo (1,000 users) in < 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio

from statekit import BaseStorage, open_storage
from statekit.codec import MsgpackCodec
from statekit.testing import RedisServer
from tests.benchmarks._harness import Result, print_table, write_json

TTL_SHARE = 0.3
NAIVE_KEYS = 5000


def _record(i: int) -> dict[str, Any]:
    return {"state": "Form:age", "data": {"name": f"user{i}", "age": 18 + i % 60, "tags": ["a"]}}


def _ttl(i: int) -> float:
    return 600 + (i * 7919) % 3000 + (i % 997) / 1000


async def fill(url: str, keys: int) -> tuple[list[str], list[str]]:
    """Write the source keys; return (keys without TTL, keys with TTL)."""
    timed_count = int(keys * TTL_SHARE)
    plain = [f"fsm:{{1:{i}:{i}:::default}}" for i in range(keys - timed_count)]
    timed = [f"ratelimit:user:{i}" for i in range(timed_count)]
    async with open_storage(url) as storage:
        for start in range(0, len(plain), 1000):
            await storage.set_many(
                {k: _record(start + n) for n, k in enumerate(plain[start : start + 1000])}, ttl=None
            )
        for start in range(0, len(timed), 1000):
            await asyncio.gather(
                *(
                    storage.set_state(k, start + n, ttl=_ttl(start + n))
                    for n, k in enumerate(timed[start : start + 1000])
                )
            )
    return plain, timed


def statekit(*args: str, cwd: Path) -> tuple[float, dict[str, Any]]:
    """Run ``statekit ARGS --json``; return (wall seconds, its JSON document)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "statekit.cli", *args, "--json"],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"statekit {' '.join(args)} failed: {proc.stderr.strip()}")
    return seconds, json.loads(proc.stdout)


async def raw_ceiling(server: RedisServer, plain: list[str], timed: list[str]) -> float:
    """Seconds for redis-py to pipeline SET / SET PX of the same keys and bytes."""
    codec = MsgpackCodec()
    client = redis.asyncio.Redis.from_url(server.url)
    try:
        items: list[tuple[str, bytes, int | None]] = [
            (f"raw:{k}", codec.encode(_record(i)), None) for i, k in enumerate(plain)
        ]
        items += [(f"raw:{k}", str(i).encode(), int(_ttl(i) * 1000)) for i, k in enumerate(timed)]
        started = time.perf_counter()
        for start in range(0, len(items), 1000):
            pipe = client.pipeline(transaction=False)
            for key, value, px in items[start : start + 1000]:
                pipe.set(key, value, px=px)
            await pipe.execute()
        seconds = time.perf_counter() - started
        await client.flushdb()
        return seconds
    finally:
        await client.aclose()


async def naive_copy(src_url: str, dst_url: str, keys: list[str]) -> float:
    """Seconds for a one-key-at-a-time copy with statekit's public API."""
    src: BaseStorage
    async with open_storage(src_url) as src, open_storage(dst_url) as dst:
        started = time.perf_counter()
        for key in keys:
            value = await src.get_state(key)
            ttl = await src.get_ttl(key)
            if value is not None:
                await dst.set_state(key, value, ttl=ttl)
        seconds = time.perf_counter() - started
        await dst.clear_namespace()
    return seconds


async def count(url: str) -> int:
    async with open_storage(url) as storage:
        return len(await storage.list_keys())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()

    rows: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="statekit-bench-migrate-") as tmp:
        work = Path(tmp)
        src = f"sqlite:///{work / 'src.db'}"
        back = f"sqlite:///{work / 'back.db'}"
        server = RedisServer()
        server.start()
        try:
            dst = f"{server.url}?namespace=migrated"
            print(f"filling {args.keys:,} keys ...", file=sys.stderr, flush=True)
            plain, timed = asyncio.run(fill(src, args.keys))
            label = f"{args.keys:,} keys ({TTL_SHARE:.0%} with TTLs)"

            ceiling = asyncio.run(raw_ceiling(server, plain, timed))
            rows.append(
                Result(
                    "migrate",
                    "raw redis-py pipelined SET/SET PX (writes only)",
                    label,
                    1,
                    args.keys / ceiling,
                    note=f"{ceiling:.1f} s",
                )
            )
            sample = (plain[: NAIVE_KEYS // 2] + timed[: NAIVE_KEYS // 2])[:NAIVE_KEYS]
            naive = asyncio.run(naive_copy(src, f"{server.url}?namespace=naive", sample))
            naive_rate = len(sample) / naive
            rows.append(
                Result(
                    "migrate",
                    "naive copy, one key at a time (statekit API)",
                    f"first {len(sample):,} keys",
                    1,
                    naive_rate,
                    note=f"≈{args.keys / naive_rate:.0f} s for {args.keys:,}",
                )
            )

            seconds, doc = statekit("migrate", src, dst, cwd=work)
            assert doc["copied"] == args.keys, doc
            assert asyncio.run(count(dst)) == args.keys
            rate = args.keys / seconds
            rows.append(
                Result(
                    "migrate",
                    "statekit migrate SQLite → Redis (CLI)",
                    label,
                    1,
                    rate,
                    "raw redis-py writes",
                    rate / (args.keys / ceiling),
                    f"{seconds:.1f} s, target < 30 s; {rate / naive_rate:.1f}× naive",
                )
            )

            seconds, doc = statekit("migrate", src, dst, cwd=work)
            assert doc["unchanged"] == args.keys and doc["copied"] == 0, doc
            rows.append(
                Result(
                    "migrate",
                    "statekit migrate, re-run (all keys already there)",
                    label,
                    1,
                    args.keys / seconds,
                    note=f"{seconds:.1f} s",
                )
            )

            seconds, doc = statekit("migrate", dst, back, cwd=work)
            assert doc["copied"] == args.keys, doc
            rows.append(
                Result(
                    "migrate",
                    "statekit migrate Redis → SQLite (CLI)",
                    label,
                    1,
                    args.keys / seconds,
                    note=f"{seconds:.1f} s",
                )
            )
        finally:
            server.cleanup()

        if not args.skip_demo:
            demo_dir = work / "demo"
            demo_dir.mkdir()
            seconds, doc = statekit("demo", cwd=demo_dir)
            assert doc["completed"] == 1000, doc
            rows.append(
                Result(
                    "demo",
                    "statekit demo (defaults: 1,000 users, SQLite)",
                    f"{doc['updates_sent']:,} updates",
                    100,
                    doc["updates_per_s"],
                    note=f"{seconds:.1f} s wall, target < 60 s; p50 {doc['latency_ms']['p50']:.1f} ms, p99 {doc['latency_ms']['p99']:.1f} ms",
                )
            )

    print_table(f"statekit migrate and demo (nproc {os.cpu_count()})", rows)
    write_json(args.json, "migrate", rows)


if __name__ == "__main__":
    main()
