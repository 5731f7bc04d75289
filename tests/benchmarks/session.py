"""Session benchmark: a Pyrogram-family client's peer cache on statekit vs kurigram's own storage.

Run: ``python -m tests.benchmarks.session [--peers 10000] [--by-id 10000] [--by-username 2000]
[--rounds 15] [--json out.json]``.

Each subject goes through the same interface a kurigram ``Client`` uses: ``update_peers`` of
N peers as ``(id, access_hash, type, phone)`` tuples followed by ``update_usernames`` (what
``Client.fetch_peers`` does) and a commit (``save()``), then ``get_peer_by_id`` / ``get_peer_by_username``
returning ``InputPeer`` objects. Subjects: kurigram's ``SQLiteStorage`` on a file (the baseline),
``PyrogramStorage`` over statekit SQLite (file) and real Redis (a ``redis-server`` started for the
run) holding the ownership lease (hot lookups served from memory), and the same data read by a
``PyrogramStorage`` that does not hold the lease (every lookup reads the storage; on Redis the
commands per lookup are counted on the server). Rounds are interleaved; the best round is kept.

Event-loop blocking: a ticker task sleeping 1 ms records the longest gap between its wake-ups
while the peers are written; kurigram calls sqlite3 synchronously inside its coroutines, so its
whole write blocks the loop. Goal (issue 4): statekit >= 1x kurigram on SQLite without blocking.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio
from pyrogram.storage import SQLiteStorage as KurigramSQLiteStorage

from statekit import BaseStorage, RedisStorage, SQLiteStorage
from statekit.adapters.pyrogram import PyrogramStorage
from statekit.testing import RedisServer
from tests.benchmarks._harness import Result, print_table, write_json

AUTH_KEY = bytes(range(256))


def make_peers(n: int) -> tuple[list[tuple[int, int, str, str | None]], list[tuple[int, list[str | None]]]]:
    """What ``Client.fetch_peers`` hands the storage for ``n`` users, each with a username."""
    peers = [(100_000 + i, 7_000_000_000 + i, "user", None) for i in range(n)]
    names: list[tuple[int, list[str | None]]] = [(100_000 + i, [f"user{i}"]) for i in range(n)]
    return peers, names


class LoopLag:
    """Longest gap (seconds) between the wake-ups of a task that sleeps 1 ms at a time."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - 0.001)
            last = now

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0.005)
        self.worst = 0.0
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0.005)  # let it notice the end of a blocking stretch
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


async def timed_write(storage: Any, peers: list[Any], names: list[Any]) -> tuple[float, float, float]:
    """(seconds to stage, seconds until durable, worst loop lag in seconds) of what
    ``Client.fetch_peers`` does (update_peers then update_usernames) followed by ``save()``.

    A full garbage collection runs first, so each subject starts from the same collector state
    and a full collection that earlier rounds' garbage made due does not land in one subject's
    timing (collections its own allocations cause are still timed)."""
    gc.collect()
    async with LoopLag() as lag:
        start = time.perf_counter()
        await storage.update_peers(peers)
        await storage.update_usernames(names)
        staged = time.perf_counter() - start
        await storage.save()
        durable = time.perf_counter() - start
    return staged, durable, lag.worst


async def lookups(storage: Any, n_id: int, n_name: int, n_peers: int) -> tuple[float, float]:
    """(by-id ops/s, by-username ops/s) on ``storage``; every lookup must hit."""
    gc.collect()
    start = time.perf_counter()
    for i in range(n_id):
        await storage.get_peer_by_id(100_000 + (i * 7919) % n_peers)
    by_id = n_id / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(n_name):
        await storage.get_peer_by_username(f"user{(i * 7919) % n_peers}")
    by_name = n_name / (time.perf_counter() - start)
    return by_id, by_name


async def run_kurigram(workdir: Path, tag: str, args: argparse.Namespace) -> dict[str, float]:
    peers, names = make_peers(args.peers)
    storage = KurigramSQLiteStorage(f"bench-{tag}", workdir=workdir)
    await storage.open()
    staged, durable, lag = await timed_write(storage, peers, names)
    by_id, by_name = await lookups(storage, args.by_id, args.by_username, args.peers)
    await storage.close()
    return {
        "stage": args.peers / staged,
        "write": args.peers / durable,
        "lag": lag,
        "by_id": by_id,
        "by_name": by_name,
    }


async def run_statekit(
    storage: BaseStorage, tag: str, args: argparse.Namespace, count_commands: Any = None
) -> dict[str, float]:
    peers, names = make_peers(args.peers)
    leased = PyrogramStorage(storage, f"bench-{tag}")
    await leased.open()
    staged, durable, lag = await timed_write(leased, peers, names)
    by_id, by_name = await lookups(leased, args.by_id, args.by_username, args.peers)
    reader = PyrogramStorage(storage, f"bench-{tag}")  # no lease: reads the storage every time
    n_id, n_name = max(1, args.by_id // 5), max(1, args.by_username // 2)
    before = await count_commands() if count_commands else 0
    cold_id, cold_name = await lookups(reader, n_id, n_name, args.peers)
    per_lookup = ((await count_commands() - before - 1) / (n_id + n_name)) if count_commands else 0.0
    await leased.delete()
    await leased.close()
    return {
        "stage": args.peers / staged,
        "write": args.peers / durable,
        "lag": lag,
        "by_id": by_id,
        "by_name": by_name,
        "cold_by_id": cold_id,
        "cold_by_name": cold_name,
        "commands_per_lookup": per_lookup,
    }


def best(runs: list[dict[str, float]], key: str, low: bool = False) -> float:
    values = [r[key] for r in runs]
    return min(values) if low else max(values)


async def main_async(args: argparse.Namespace) -> list[Result]:
    workdir = Path(tempfile.mkdtemp(prefix="statekit-session-bench-"))
    server = RedisServer()
    server.start()
    sqlite = SQLiteStorage(workdir / "statekit.db", namespace="bench")
    rstore = RedisStorage(server.url, namespace="bench")
    probe = redis.asyncio.Redis.from_url(server.url)

    async def commands() -> int:
        return int((await probe.info("stats"))["total_commands_processed"])

    runs: dict[str, list[dict[str, float]]] = {"kurigram": [], "sqlite": [], "redis": []}
    try:
        for n in range(args.rounds):
            runs["kurigram"].append(await run_kurigram(workdir, f"k{n}", args))
            runs["sqlite"].append(await run_statekit(sqlite, f"s{n}", args))
            runs["redis"].append(await run_statekit(rstore, f"r{n}", args, commands))
    finally:
        await probe.aclose()
        await sqlite.stop()
        await rstore.stop()
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)

    k = runs["kurigram"]
    base = {key: best(k, key) for key in ("stage", "write", "by_id", "by_name")}
    rows: list[Result] = []
    kurigram = "kurigram SQLiteStorage (file)"
    subjects = (("sqlite", "statekit SQLite (file)"), ("redis", "statekit Redis"))
    stage_op = f"update_peers+update_usernames ×{args.peers} (staged)"
    write_op = f"… + save() (durable) ×{args.peers}"
    rows.append(Result("write", kurigram, stage_op, 1, base["stage"], note="uncommitted until save()"))
    for name, label in subjects:
        value = best(runs[name], "stage")
        rows.append(Result("write", label, stage_op, 1, value, "kurigram", value / base["stage"]))
    lag = best(k, "lag", low=True) * 1000
    rows.append(Result("write", kurigram, write_op, 1, base["write"], note=f"max loop lag {lag:.1f} ms"))
    for name, label in subjects:
        value, lag = best(runs[name], "write"), best(runs[name], "lag", low=True) * 1000
        rows.append(Result("write", label, write_op, 1, value, "kurigram", value / base["write"],
                           f"max loop lag {lag:.1f} ms"))
    for op, key, count in (("get_peer_by_id", "by_id", args.by_id), ("get_peer_by_username", "by_name", args.by_username)):
        rows.append(Result("lookup", kurigram, f"{op} ×{count}", 1, base[key]))
        for name, label in subjects:
            r = runs[name]
            rows.append(Result("lookup", f"{label}, lease held (cached)", f"{op} ×{count}", 1,
                               best(r, key), "kurigram", best(r, key) / base[key]))
            cold = best(r, f"cold_{key}")
            note = ""
            if name == "redis":
                note = f"{best(r, 'commands_per_lookup', low=True):.2f} Redis commands per lookup"
            rows.append(Result("lookup", f"{label}, no lease (uncached)", f"{op}", 1,
                               cold, "kurigram", cold / base[key], note))
    print_table(f"Session peer cache: statekit vs kurigram ({args.peers:,} peers, best of {args.rounds})", rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--peers", type=int, default=10_000)
    parser.add_argument("--by-id", type=int, default=10_000)
    parser.add_argument("--by-username", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", help="write the results as JSON to this path")
    args = parser.parse_args(argv)
    rows = asyncio.run(main_async(args))
    write_json(args.json, "session", rows)


if __name__ == "__main__":
    main()
