"""Storage benchmark: get/set/CAS/increment ops/s per backend, sequential and 100 tasks.

Run: ``python -m tests.benchmarks.storage [--seconds 0.5] [--rounds 3] [--json out.json]``.
Baselines measured in the same run, interleaved round by round with what they are compared to
(best round of each reported): raw redis-py (hiredis parser) GET/SET/EVALSHA/INCR on the same
redis-server, one client call per command (what an application gets from redis-py without
statekit; statekit's lanes pipeline concurrent commands, so with 100 tasks it passes this),
``redis-benchmark`` (100 clients, no pipelining: what the server does one command per round trip
per client), and a naive
aiosqlite store committing once per operation (a SQLite storage without group commit).
``get`` reads a 60-byte conversation record (a nested dict); ``get-small`` a bare state string.
Targets (issue 2): Redis >= 0.9x raw for get/set/increment and >= 0.85x raw EVALSHA for CAS;
SQLite >= 40,000 set/s with 100 tasks and >= 6,000 sequential; memory >= 800,000 get/s sequential.
CAS is measured as a successful create (expected=None) on a key that a delete then removes; the
delete's own cost is measured separately and subtracted.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import redis.asyncio

from statekit import BaseStorage, MemoryStorage, RedisStorage, SQLiteStorage
from statekit.codec import MsgpackCodec
from statekit.storage.redis._storage import _CAS_LUA
from statekit.testing import RedisServer
from tests.benchmarks._harness import Result, best_of, measure, print_table, write_json

VALUE = {"state": "Form:name", "data": {"name": "Ada", "age": 36, "tags": ["a", "b"]}}
BLOB = MsgpackCodec().encode(VALUE)
SMALL = "Form:name"  # a bare FSM state
TASKS = (1, 100)
OPS = ("get", "get-small", "set", "cas", "increment")
KEYS = [f"k{i}" for i in range(1024)]
CKEYS = [f"c{i}" for i in range(1024)]
NKEYS = [f"n{i}" for i in range(1024)]
Op = Callable[[int], Awaitable[Any]]


def storage_ops(storage: BaseStorage) -> dict[str, tuple[Op, Op | None]]:
    """(operation, cost to subtract) per measured operation of a statekit storage."""

    async def cas(i: int) -> None:
        key = CKEYS[i & 1023]
        await storage.compare_and_set(key, i, expected=None)
        await storage.delete_state(key)

    return {
        "get": (lambda i: storage.get_state(KEYS[i & 1023]), None),
        "get-small": (lambda i: storage.get_state("small"), None),
        "set": (lambda i: storage.set_state(KEYS[i & 1023], VALUE), None),
        "cas": (cas, lambda i: storage.delete_state(CKEYS[i & 1023])),
        "increment": (lambda i: storage.increment(NKEYS[i & 1023]), None),
    }


def raw_ops(client: Any, script: Any) -> dict[str, tuple[Op, Op | None]]:
    """The same operations as raw redis-py commands (the statekit key layout: ``raw:<key>``)."""
    rk = [f"raw:k{i}" for i in range(1024)]
    rc = [f"raw:c{i}" for i in range(1024)]
    rn = [f"raw:n{i}" for i in range(1024)]

    async def cas(i: int) -> None:
        await script(keys=[rc[i & 1023]], args=[b"0", b"", b"1", str(i).encode(), b"", b"0"])
        await client.delete(rc[i & 1023])

    return {
        "get": (lambda i: client.get(rk[i & 1023]), None),
        "get-small": (lambda i: client.get("raw:small"), None),
        "set": (lambda i: client.set(rk[i & 1023], BLOB), None),
        "cas": (cas, lambda i: client.delete(rc[i & 1023])),
        "increment": (lambda i: client.incr(rn[i & 1023]), None),
    }


def runner(pair: tuple[Op, Op | None], tasks: int, seconds: float) -> Callable[[], Awaitable[float]]:
    op, subtract = pair

    async def run() -> float:
        rate = await measure(op, concurrency=tasks, seconds=seconds)
        if subtract is None:
            return rate
        other = await measure(subtract, concurrency=tasks, seconds=seconds)
        return 1 / max(1e-9, 1 / rate - 1 / other)

    return run


async def naive_sqlite_set(path: Path) -> Op:
    """aiosqlite with one INSERT and one COMMIT per set: no group commit."""
    db = await aiosqlite.connect(path)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")
    await db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB)")
    await db.commit()
    lock = asyncio.Lock()

    async def set_one(i: int) -> None:
        async with lock:  # one connection: transactions must not interleave
            await db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (KEYS[i & 1023], BLOB))
            await db.commit()

    set_one.db = db  # type: ignore[attr-defined]
    return set_one


def redis_benchmark(port: int) -> dict[str, float]:
    """``redis-benchmark`` GET/SET/INCR with 100 clients: the server's own ceiling."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {}
    text = subprocess.run(
        [binary, "-p", str(port), "-t", "get,set,incr", "-n", "100000", "-c", "100", "-q"],
        capture_output=True, text=True, timeout=120, check=False,
    ).stdout
    found = re.findall(r"(GET|SET|INCR): ([\d.]+) requests per second", text.replace("\r", "\n"))
    return {name: float(value) for name, value in found}


async def main_async(seconds: float, rounds: int) -> list[Result]:
    rows: list[Result] = []
    tmp = Path(tempfile.mkdtemp(prefix="statekit-bench-"))
    server = RedisServer()
    server.start()
    raw_name = {"get": "GET", "get-small": "GET small", "set": "SET", "cas": "EVALSHA", "increment": "INCR"}
    try:
        client = redis.asyncio.Redis.from_url(server.url, max_connections=200)
        script = client.register_script(_CAS_LUA)
        raw = raw_ops(client, script)
        for key in [f"raw:k{i}" for i in range(1024)]:
            await client.set(key, BLOB)
        await client.set("raw:small", MsgpackCodec().encode(SMALL))
        ours = RedisStorage(server.url, namespace="bench")
        await ours.set_many({**dict.fromkeys(KEYS, VALUE), "small": SMALL})
        mine = storage_ops(ours)
        for tasks in TASKS:
            for op in OPS:
                raw_rate, our_rate = await best_of(
                    rounds, runner(raw[op], tasks, seconds), runner(mine[op], tasks, seconds)
                )
                rows.append(Result("redis", "raw redis-py (hiredis)", raw_name[op], tasks, raw_rate, note="one call per command"))
                rows.append(Result("redis", "statekit RedisStorage", op, tasks, our_rate, f"raw {raw_name[op]}", our_rate / raw_rate))
        # Design choices of RedisStorage, each against the plain call it replaced, in one run:
        # a BlockingConnectionPool (waits when full) vs the plain pool statekit bounds itself,
        # and redis-py's Script.__call__ vs EVALSHA sent directly.
        blocking = redis.asyncio.Redis(
            connection_pool=redis.asyncio.BlockingConnectionPool.from_url(server.url, max_connections=200)
        )

        async def via_script(i: int) -> Any:
            return await script(keys=["raw:small"], args=[b"1", b"x", b"0", b"", b"", b"0"])

        async def direct_evalsha(i: int) -> Any:
            return await client.execute_command(
                "EVALSHA", script.sha, 1, "raw:small", b"1", b"x", b"0", b"", b"", b"0"
            )

        for tasks in TASKS:
            plain, waiting = await best_of(
                rounds, runner(raw["get"], tasks, seconds),
                runner((lambda i: blocking.get(f"raw:k{i & 1023}"), None), tasks, seconds),
            )
            rows.append(Result("redis choices", "redis-py BlockingConnectionPool", "GET", tasks, waiting,
                               "plain pool", waiting / plain))
            direct, wrapped = await best_of(
                rounds, runner((direct_evalsha, None), tasks, seconds), runner((via_script, None), tasks, seconds)
            )
            rows.append(Result("redis choices", "EVALSHA sent directly", "EVALSHA (failing CAS)", tasks, direct))
            rows.append(Result("redis choices", "redis-py Script.__call__", "EVALSHA (failing CAS)", tasks, wrapped,
                               "direct EVALSHA", wrapped / direct))
        await blocking.aclose()
        await ours.clear_namespace()
        await ours.stop()
        await client.flushdb()
        await client.aclose()
        for name, value in redis_benchmark(server.port).items():
            rows.append(Result("redis", "redis-benchmark", name, 100, value, note="100 clients, unpipelined"))

        memory = MemoryStorage()
        await memory.set_many({**dict.fromkeys(KEYS, VALUE), "small": SMALL})
        mem_ops = storage_ops(memory)
        for tasks in TASKS:
            for op in OPS:
                (rate,) = await best_of(rounds, runner(mem_ops[op], tasks, seconds))
                rows.append(Result("memory", "statekit MemoryStorage", op, tasks, rate))
        await memory.stop()

        sqlite = SQLiteStorage(tmp / "bench.db")
        await sqlite.set_many({**dict.fromkeys(KEYS, VALUE), "small": SMALL})
        sql_ops = storage_ops(sqlite)
        naive = await naive_sqlite_set(tmp / "naive.db")
        for tasks in TASKS:
            for op in OPS:
                if op == "set":
                    base, rate = await best_of(
                        rounds, runner((naive, None), tasks, seconds), runner(sql_ops[op], tasks, seconds)
                    )
                    rows.append(Result("sqlite", "aiosqlite, commit per op", "set", tasks, base, note="naive baseline"))
                    rows.append(Result("sqlite", "statekit SQLiteStorage", op, tasks, rate, "commit per op", rate / base))
                else:
                    (rate,) = await best_of(rounds, runner(sql_ops[op], tasks, seconds))
                    rows.append(Result("sqlite", "statekit SQLiteStorage", op, tasks, rate))
        await naive.db.close()  # type: ignore[attr-defined]
        await sqlite.stop()
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best is kept")
    parser.add_argument("--json", help="write the results as JSON to this path")
    args = parser.parse_args(argv)
    rows = asyncio.run(main_async(args.seconds, args.rounds))
    print()
    print_table("Storage: ops/s per backend (tests/benchmarks/storage.py)", rows)
    write_json(args.json, "storage", rows)


if __name__ == "__main__":
    main()
