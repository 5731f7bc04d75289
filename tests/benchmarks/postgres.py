"""PostgreSQL benchmark: ``PostgresStorage`` against raw asyncpg, and FSM / rate limits on
PostgreSQL against SQLite and Redis, all in one run on servers this script starts itself.

Run: ``python -m tests.benchmarks.postgres [--seconds 1] [--rounds 3] [--json out.json]``.

Baseline: raw asyncpg running the very statements ``PostgresStorage`` runs (same SQL, values
already encoded), one ``pool.fetch*`` call per operation, on a pool of the same size (10) against
the same throwaway PostgreSQL cluster (``fsync=off``); measured interleaved round by round with
statekit, best round of each reported. asyncpg's pool sends a reset query on every release (a
second round trip per call); statekit's own pool skips it, so a third row shows raw asyncpg with
that reset turned off too (the fairer per-statement ceiling). ``cas`` is a successful create (``expected=None``) followed
by a delete of the same key, counted as one operation on both sides.
Targets (issue 17): >= 1x raw with 1 task, >= 2x raw with 100 tasks.
FSM: ``FSMContext.update_data`` on distinct conversations; rate limits: ``RateLimiter.hit``
(fixed window, ``Rate(1000, 1)`` over 1,000 keys) on PostgreSQL, a SQLite file and a real
redis-server, same run. Sessions: a Pyrogram-family client's durable peer save
(``update_peers`` + ``update_usernames`` + ``save()`` of N peers, as in
``tests.benchmarks.session``) through ``PyrogramStorage`` on PostgreSQL vs kurigram's own
``SQLiteStorage`` on a file (``--peers 10000,100000``, best of ``--session-rounds``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from middleware import Rate, RateLimiter
from statekit import BaseStorage, RedisStorage, SQLiteStorage
from statekit.codec import MsgpackCodec
from statekit.fsm import FSMContext, StorageKey
from statekit.storage.postgres import PostgresStorage
from statekit.testing import RedisServer
from statekit.testing.postgres_server import PostgresServer
from tests.benchmarks._harness import Result, best_of, measure, print_table, write_json

VALUE = {"state": "Form:name", "data": {"name": "Ada", "age": 36, "tags": ["a", "b"]}}
BLOB = MsgpackCodec().encode(VALUE)
TASKS = (1, 100)
POOL = 10
KEYS = [f"k{i}" for i in range(1024)]
BKEYS = [k.encode() for k in KEYS]
Op = Callable[[int], Awaitable[Any]]


async def _no_reset(conn: asyncpg.Connection) -> None:
    """A pool reset hook that sends nothing (what PostgresStorage's own pool uses)."""


def statekit_ops(s: BaseStorage) -> dict[str, Op]:
    async def cas(i: int) -> None:
        key = f"c{i & 1023}"
        await s.compare_and_set(key, VALUE, expected=None)
        await s.delete_state(key)

    return {
        "get": lambda i: s.get_state(KEYS[i & 1023]),
        "set": lambda i: s.set_state(KEYS[i & 1023], VALUE),
        "cas": cas,
        "increment": lambda i: s.increment(f"n{i & 1023}"),
    }


def raw_ops(pool: asyncpg.Pool, s: PostgresStorage) -> dict[str, Op]:
    sql, ns = s._sql, s.namespace.encode()

    async def get(i: int) -> Any:
        row = await pool.fetchrow(sql.get, None, ns, BKEYS[i & 1023])
        return None if row is None else MsgpackCodec().decode(row[0])

    async def cas(i: int) -> None:
        key = f"c{i & 1023}".encode()
        await pool.fetchval(sql.insert_if_absent, None, ns, key, BLOB, None, None)
        await pool.fetchval(sql.delete, None, ns, key)

    return {
        "get": get,
        "set": lambda i: pool.execute(sql.set, None, ns, BKEYS[i & 1023], MsgpackCodec().encode(VALUE), None, None),
        "cas": cas,
        "increment": lambda i: pool.fetchrow(sql.increment, None, ns, f"n{i & 1023}".encode(), 1, None),
    }


def fsm_op(s: BaseStorage) -> Op:
    turn = itertools.count()

    async def update(i: int) -> Any:
        conv = next(turn) % 1000
        return await FSMContext(s, StorageKey(1, conv, conv)).update_data({"n": i})

    return update


def hit_op(s: BaseStorage) -> Op:
    limiter = RateLimiter(s, Rate(1000, 1), strategy="fixed", prefix="bench")
    keys = [f"user:{i}" for i in range(1000)]
    turn = itertools.count()
    return lambda i: limiter.hit(keys[next(turn) % 1000])


async def main_async(
    seconds: float, rounds: int, peer_counts: list[int], session_rounds: int, parts: set[str]
) -> list[Result]:
    rows: list[Result] = []
    tmp = Path(tempfile.mkdtemp(prefix="statekit-bench-pg-"))
    with PostgresServer() as pg, RedisServer() as rs:
        url = pg.create_database("bench")
        storage = PostgresStorage(url, namespace="bench", max_size=POOL)
        pool = await asyncpg.create_pool(url, min_size=POOL, max_size=POOL)
        lean = await asyncpg.create_pool(url, min_size=POOL, max_size=POOL, reset=_no_reset)
        await storage.start()
        await storage.set_many({k: VALUE for k in KEYS})
        mine, raw, raw_lean = statekit_ops(storage), raw_ops(pool, storage), raw_ops(lean, storage)
        for op in mine:
            for tasks in TASKS if "ops" in parts else ():
                sk, base, base_lean = await best_of(
                    rounds,
                    lambda op=op, tasks=tasks: measure(mine[op], concurrency=tasks, seconds=seconds),
                    lambda op=op, tasks=tasks: measure(raw[op], concurrency=tasks, seconds=seconds),
                    lambda op=op, tasks=tasks: measure(raw_lean[op], concurrency=tasks, seconds=seconds),
                )
                rows.append(Result("storage", "raw asyncpg", op, tasks, base))
                rows.append(Result("storage", "raw asyncpg, pool without reset query", op, tasks,
                                   base_lean, "raw asyncpg", base_lean / base))
                target = 1.0 if tasks == 1 else 2.0
                rows.append(Result("storage", "statekit PostgresStorage", op, tasks, sk, "raw asyncpg",
                                   sk / base, f"target >= {target:g}; {sk / base_lean:.2f}x without reset"))
        await pool.close()
        await lean.close()

        others: dict[str, BaseStorage] = {
            "PostgreSQL": PostgresStorage(url, namespace="bench-app", max_size=POOL),
            "SQLite (file)": SQLiteStorage(tmp / "bench.db", namespace="bench-app"),
            "Redis": RedisStorage(rs.url, namespace="bench-app"),
        }
        for s in others.values():
            await s.start()
        for group, make in (("FSM update_data", fsm_op), ("rate limit hit", hit_op)) if "apps" in parts else ():
            ops = {name: make(s) for name, s in others.items()}
            for tasks in TASKS:
                best = await best_of(
                    rounds,
                    *(lambda op=op, tasks=tasks: measure(op, concurrency=tasks, seconds=seconds)
                      for op in ops.values()),
                )
                result = dict(zip(ops, best, strict=True))
                for name, ops_s in result.items():
                    if name == "PostgreSQL":
                        rows.append(Result(group, name, group.split()[-1], tasks, ops_s))
                    else:
                        rows.append(Result(group, name, group.split()[-1], tasks, ops_s, "PostgreSQL",
                                           ops_s / result["PostgreSQL"]))
        for s in others.values():
            await s.clear_namespace()
            await s.stop()
        await storage.clear_namespace()
        await storage.stop()
        if "sessions" in parts:
            rows += await sessions(url, tmp, peer_counts, session_rounds)
    return rows


async def sessions(url: str, tmp: Path, peer_counts: list[int], rounds: int) -> list[Result]:
    """Durable peer saves: statekit PyrogramStorage on PostgreSQL vs kurigram SQLiteStorage."""
    from tests.benchmarks.session import make_batch, run_kurigram, run_statekit

    rows: list[Result] = []
    storage = PostgresStorage(url, namespace="bench-sessions", max_size=POOL)
    await storage.start()
    for peers in peer_counts:
        batch = make_batch(peers)
        kuri, mine = [], []
        for n in range(rounds):
            kuri.append(await run_kurigram(tmp, f"k{peers}-{n}", batch))
            mine.append(await run_statekit(storage, f"p{peers}-{n}", batch))
        op = f"update_peers+update_usernames+save() ×{peers:,}"
        base = max(r["write_new"] for r in kuri)
        best_pg = max(r["write_new"] for r in mine)
        lag = min(r["lag_new"] for r in mine) * 1000
        rows.append(Result("session save", "kurigram SQLiteStorage (file)", op, 1, base,
                           note=f"max loop lag {min(r['lag_new'] for r in kuri) * 1000:.0f} ms"))
        rows.append(Result("session save", "statekit PyrogramStorage on PostgreSQL", op, 1, best_pg,
                           "kurigram", best_pg / base, f"max loop lag {lag:.0f} ms"))
    await storage.clear_namespace()
    await storage.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", default="10000,100000", help="session sizes, comma-separated")
    parser.add_argument("--session-rounds", type=int, default=2)
    parser.add_argument("--parts", default="ops,apps,sessions",
                        help="what to measure: ops (vs raw asyncpg), apps (FSM, rate limits), sessions")
    parser.add_argument("--json")
    args = parser.parse_args()
    peers = [int(p) for p in args.peers.split(",") if p]
    parts = set(args.parts.split(","))
    rows = asyncio.run(main_async(args.seconds, args.rounds, peers, args.session_rounds, parts))
    print_table("PostgreSQL: statekit vs raw asyncpg; FSM and rate limits vs SQLite and Redis", rows)
    write_json(args.json, "postgres", rows)


if __name__ == "__main__":
    main()
