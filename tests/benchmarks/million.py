"""A million keys: event-loop stalls of scan / list / clear / sweep, and the get/set curve.

Run by hand: ``python -m tests.benchmarks.million [--sizes 1000,10000,100000,1000000]
[--backends memory,sqlite,redis,postgres] [--base PATH] [--skip-stall] [--skip-curve]``.

Stall: each measurement runs in a fresh child process that fills one store with N keys (in
``set_many`` batches), starts a ticker task sleeping 1 ms in a loop and reports the longest gap
between two ticks while ``list_keys``, ``scan_keys`` and ``clear_namespace`` run (and, on
memory, while the sweeper reclaims N expired keys). With ``--base PATH`` (a checkout of the
code before the change, e.g. ``git worktree add /tmp/integ-base integ``) the same child runs
against that checkout's ``statekit`` too, side by side.

Curve: per backend, one child fills 1k, then 10k, 100k, 1M keys and at each size measures
``get`` and ``set`` (random existing keys, 100 tasks), and what a key costs: RSS growth
(memory), file size with the WAL (SQLite) or ``used_memory`` growth (Redis) per key.
Redis and PostgreSQL run on their own servers (``statekit.testing``) on free loopback ports.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
FILL_BATCH = 10_000
TASKS = 100


def key(i: int) -> str:
    return f"user:{i}:state"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@asynccontextmanager
async def open_store(backend: str, redis_url: str, tmp: str) -> AsyncIterator[Any]:
    """A started store of ``backend`` (the ``statekit`` first on ``sys.path``)."""
    if backend == "memory":
        from statekit.storage.memory import MemoryStorage

        store: Any = MemoryStorage(sweep_interval=0.25)
    elif backend == "sqlite":
        from statekit.storage.sqlite import SQLiteStorage

        store = SQLiteStorage(os.path.join(tmp, "million.db"))
    elif backend == "postgres":
        from statekit.storage.postgres import PostgresStorage

        store = PostgresStorage(os.environ["STATEKIT_BENCH_PG_URL"])
    else:
        from statekit.storage.redis import RedisStorage

        store = RedisStorage(redis_url)
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


async def fill(store: Any, start: int, stop: int, ttl: float | None = None) -> None:
    for lo in range(start, stop, FILL_BATCH):
        batch = {key(i): "v" for i in range(lo, min(stop, lo + FILL_BATCH))}
        if ttl is None:
            await store.set_many(batch)
        else:
            await store.set_many(batch, ttl=ttl)
        await asyncio.sleep(0)


async def analyze(backend: str) -> None:
    """On PostgreSQL, refresh the planner's statistics after a bulk fill (as autovacuum would
    soon), so that the measurement does not depend on when autovacuum last ran."""
    if backend == "postgres":
        import asyncpg

        pg = await asyncpg.connect(os.environ["STATEKIT_BENCH_PG_URL"])
        try:
            await pg.execute("ANALYZE statekit_kv")
        finally:
            await pg.close()


async def longest_gap(work: Callable[[], Awaitable[Any]]) -> tuple[float, float, float]:
    """Run ``work()`` beside a 1 ms ticker; return (longest gap between ticks in wall time,
    longest gap in the loop thread's CPU time, run time), ms. On a shared machine the wall
    gap also counts time the OS gave the CPU to other processes; the CPU gap does not."""
    worst = worst_cpu = 0.0
    running = True

    async def ticker() -> None:
        nonlocal worst, worst_cpu
        last, last_cpu = time.perf_counter(), time.thread_time()
        while running:
            await asyncio.sleep(0.001)
            now, now_cpu = time.perf_counter(), time.thread_time()
            worst = max(worst, now - last)
            worst_cpu = max(worst_cpu, now_cpu - last_cpu)
            last, last_cpu = now, now_cpu

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    worst = worst_cpu = 0.0
    t0 = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - t0
    running = False
    await tick
    return worst * 1000, worst_cpu * 1000, elapsed * 1000


async def child_stall(backend: str, n: int, redis_url: str) -> dict[str, Any]:
    import statekit

    out: dict[str, Any] = {"statekit": str(Path(statekit.__file__).parent.parent)}
    with tempfile.TemporaryDirectory() as tmp:
        async with open_store(backend, redis_url, tmp) as store:
            await store.clear_namespace()
            await fill(store, 0, n)
            await analyze(backend)

            async def scan() -> None:
                async for _ in store.scan_keys("*"):
                    pass

            listed: list[list[str]] = []

            async def listing() -> None:
                listed.append(await store.list_keys("*"))  # kept: dropping 1M strings is the caller's

            async def clear() -> None:
                assert await store.clear_namespace() == n

            out["list_keys"] = await longest_gap(listing)
            assert len(listed[0]) == n
            listed.clear()
            out["scan_keys"] = await longest_gap(scan)
            out["clear_namespace"] = await longest_gap(clear)
            if backend == "memory":
                await fill(store, 0, n, ttl=3)
                deadline = time.monotonic() + 30

                async def expiry() -> None:
                    while store._data and time.monotonic() < deadline:  # noqa: SLF001
                        await asyncio.sleep(0.05)

                await asyncio.sleep(max(0.0, 3.0 - 0.5))
                out["sweep"] = await longest_gap(expiry)
                out["sweep_left"] = len(store._data)  # noqa: SLF001
    return out


async def child_curve(backend: str, sizes: list[int], redis_url: str, seconds: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with open_store(backend, redis_url, tmp) as store:
            await store.clear_namespace()
            client = getattr(store, "client", None)
            base_mem = (await client.info("memory"))["used_memory"] if backend == "redis" else 0
            if backend == "postgres":
                import asyncpg

                pg = await asyncpg.connect(os.environ["STATEKIT_BENCH_PG_URL"])
                await pg.execute("VACUUM FULL statekit_kv")  # drop what earlier runs left behind
            base_rss = rss_bytes()
            have = 0
            for n in sizes:
                await fill(store, have, n)
                await analyze(backend)
                have = n
                get, put = random_ops(store, n)
                row: dict[str, Any] = {"backend": backend, "keys": n}
                row["get"] = await rate(get, seconds)
                row["set"] = await rate(put, seconds)
                if backend == "memory":
                    row["bytes_per_key"] = (rss_bytes() - base_rss) / n
                    row["cost"] = "RSS"
                elif backend == "postgres":
                    await pg.execute("VACUUM ANALYZE statekit_kv")
                    size = await pg.fetchval("SELECT pg_total_relation_size('statekit_kv')")
                    row["bytes_per_key"] = size / n
                    row["cost"] = "table+indexes"
                elif backend == "sqlite":
                    db = Path(tmp, "million.db")
                    size = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
                    row["bytes_per_key"] = size / n
                    row["cost"] = "file+WAL"
                else:
                    row["bytes_per_key"] = ((await client.info("memory"))["used_memory"] - base_mem) / n
                    row["cost"] = "used_memory"
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
            await store.clear_namespace()
            if backend == "postgres":
                await pg.close()
    return rows


def random_ops(
    store: Any, n: int
) -> tuple[Callable[[int], Awaitable[None]], Callable[[int], Awaitable[None]]]:
    """(get, put) of random existing keys among the first ``n``, seeded by ``n``: what the curve
    times at each size."""
    rng = random.Random(n)

    async def get(i: int) -> None:
        await store.get_state(key(rng.randrange(n)))

    async def put(i: int) -> None:
        await store.set_state(key(rng.randrange(n)), "w")

    return get, put


def changing_put(store: Any, n: int) -> Callable[[int], Awaitable[None]]:
    """``random_ops``' ``put``, each set writing a value not written before (the curve's own
    ``put`` writes the same one every time, which an upsert of unchanged bytes does not even
    write to a page)."""
    rng = random.Random(n)
    written = itertools.count()

    async def put(i: int) -> None:
        await store.set_state(key(rng.randrange(n)), f"w{next(written)}")

    return put


async def rate(op: Callable[[int], Awaitable[None]], seconds: float) -> float:
    """ops/s of ``op`` run by ``TASKS`` tasks for about ``seconds``."""
    await asyncio.gather(*(op(i) for i in range(TASKS)))
    deadline = time.perf_counter() + seconds

    async def worker() -> int:
        done = 0
        while time.perf_counter() < deadline:
            for _ in range(32):
                await op(done)
            done += 32
        return done

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(worker() for _ in range(TASKS)))
    return sum(counts) / (time.perf_counter() - t0)


def run_child(root: Path, *args: str) -> Any:
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run(
        [sys.executable, str(HERE), "--child", *args], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs="*")
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--stall-keys", type=int, default=1_000_000)
    parser.add_argument("--backends", default="memory,sqlite,redis,postgres")
    parser.add_argument("--base", default="/tmp/integ-base")
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--skip-stall", action="store_true")
    parser.add_argument("--skip-curve", action="store_true")
    args = parser.parse_args()
    if args.child is not None:
        kind, backend, arg, url, *rest = args.child
        if kind == "stall":
            print(json.dumps(asyncio.run(child_stall(backend, int(arg), url))))
        else:
            sizes = [int(s) for s in arg.split(",")]
            print(json.dumps(asyncio.run(child_curve(backend, sizes, url, float(rest[0])))))
        return

    from statekit.testing.servers import RedisServer

    backends = args.backends.split(",")
    server = RedisServer(extra=("--save", "", "--appendonly", "no")) if "redis" in backends else None
    if server is not None:
        server.start()
    pg_server = None
    if "postgres" in backends:
        from statekit.testing.postgres_server import PostgresServer

        pg_server = PostgresServer()
        pg_server.start()
        os.environ["STATEKIT_BENCH_PG_URL"] = pg_server.create_database("million")
    url = server.url if server is not None else "-"
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    try:
        if not args.skip_stall:
            roots = [("this", ROOT)]
            if args.base and Path(args.base, "statekit").is_dir():
                roots.append(("base", Path(args.base)))
            n = args.stall_keys
            print(f"\n## longest event-loop gap (1 ms ticker), {n:,} keys: wall ms / loop-thread CPU ms (run time ms)")
            print("| backend | operation | " + " | ".join(name for name, _ in roots) + " |")
            print("|---|---|" + "---|" * len(roots))
            for backend in backends:
                results = [run_child(root, "stall", backend, str(n), url) for _, root in roots]
                for op in ("list_keys", "scan_keys", "clear_namespace", "sweep"):
                    if op not in results[0]:
                        continue
                    cells = [f"{r[op][0]:.1f} / {r[op][1]:.1f} ({r[op][2]:.0f})" for r in results]
                    print(f"| {backend} | {op} | " + " | ".join(cells) + " |", flush=True)
        if not args.skip_curve:
            print(f"\n## get / set at growing key counts ({TASKS} tasks, random existing keys), ops/s")
            print("| backend | keys | get/s | set/s | set vs 1k | bytes/key |")
            print("|---|---|---|---|---|---|")
            for backend in backends:
                rows = run_child(ROOT, "curve", backend, args.sizes, url, str(args.seconds))
                first = rows[0]["set"]
                for r in rows:
                    print(
                        f"| {backend} | {r['keys']:,} | {r['get']:,.0f} | {r['set']:,.0f} | "
                        f"{r['set'] / first:.2f}× | {r['bytes_per_key']:.0f} ({r['cost']}) |",
                        flush=True,
                    )
    finally:
        if server is not None:
            server.stop()
            server.cleanup()
        if pg_server is not None:
            pg_server.stop()
            pg_server.cleanup()


if __name__ == "__main__":
    main()
