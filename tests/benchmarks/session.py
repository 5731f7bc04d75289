"""Session benchmark: a Pyrogram-family client's peer cache on statekit vs kurigram's own storage.

Run: ``python -m tests.benchmarks.session [--peers 10000,100000] [--lookups 5000] [--rounds 7]
[--json out.json]``.

Subjects: kurigram's ``SQLiteStorage`` on a file (the baseline) and statekit's
``PyrogramStorage`` over statekit SQLite (a file) and over real Redis (a ``redis-server`` started
for the run on a loopback port, no persistence), each driven through the interface a kurigram
``Client`` uses. For each size N of ``--peers``, in every round, each subject in turn (the order
rotates from round to round; an uncounted warm-up round at the smallest size runs first):

1. Durable write of N NEW peers into a fresh session: ``update_peers`` of N
   ``(id, access_hash, type, phone)`` tuples, then ``update_usernames`` (what
   ``Client.fetch_peers`` does), then ``save()``; timed until ``save()`` returns. "staged" is the
   time until ``update_usernames`` returns (kurigram commits nothing before ``save()``).
2. Durable write of the same N peers UPDATED, into the same open session that holds them: every
   peer with another access_hash and another username, so every row really changes (the old
   usernames must stop resolving).
3. The whole session out and into a new one ("copy"): statekit ``SessionStore.snapshot()`` then
   ``restore()`` into a new session name; kurigram (which has no such call) every row of its
   ``peers`` and ``usernames`` tables read, then ``update_peers`` + ``update_usernames`` +
   ``save()`` of them into a new file. Timed until the copy is durable, with the loop's stall.
4. The session is closed, then dropped ("close and drop"; statekit: the lease released and the
   peer cache let go of), timed with the loop's stall.
5. A NEW PROCESS opens the
   same store as a client would (statekit: ``PyrogramStorage(storage, name)`` + ``open()``, which
   takes the lease; kurigram: ``SQLiteStorage(name, workdir=...)`` + ``open()``) and times
   ``get_peer_by_id`` for ``--lookups`` distinct ids never looked up in that process, then
   ``get_peer_by_username`` for as many distinct usernames of other peers (uncached lookups),
   then the same lookups again (warm: statekit serves them from its peer cache; kurigram runs its
   query again). It checks every answer (the updated access_hash; old usernames raise
   ``KeyError``), counts the Redis commands per uncached lookup on the server, and prints JSON.

Each write runs under a ticker task sleeping 1 ms that records the longest gap between its
wake-ups (the event loop's longest stall); kurigram calls sqlite3 synchronously inside its
coroutines, so its whole write is one stall. The table gives the best round of each subject
(ratio best against best) and, in the note, the median, the median and range of the
round-by-round ratios against kurigram measured in the same round, and the worst and median
stall. Targets (issue 16): durable writes >= 1.5x kurigram at 10k and 100k peers, new and
updated, on SQLite and on Redis; no stall above 20 ms; uncached lookups from a fresh process
>= 1x kurigram on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.asyncio
from pyrogram.storage import SQLiteStorage as KurigramSQLiteStorage

from statekit import BaseStorage, open_storage
from statekit.adapters.pyrogram import PyrogramStorage
from statekit.session import SessionStore
from tests.benchmarks._harness import (
    compare_in_rounds,
    compare_rows,
    rounds_parser,
    timed,
    timed_close,
    timed_save,
)

if TYPE_CHECKING:
    from tests.benchmarks._harness import Result, Run, Stores

ROOT = Path(__file__).resolve().parents[2]
FIRST_ID = 100_000
HASH_NEW = 7_000_000_000
HASH_UPDATED = 8_000_000_000
KURIGRAM = "kurigram SQLiteStorage (file)"
SUBJECTS = {
    "kurigram": KURIGRAM,
    "sqlite": "statekit SQLite (file)",
    "redis": "statekit Redis",
    "postgres": "statekit PostgreSQL",  # with --postgres
}


def username(i: int, *, updated: bool) -> str:
    return f"renamed{i}" if updated else f"user{i}"


@dataclass(frozen=True)
class Batch:
    """What ``Client.fetch_peers`` hands the storage for ``n`` users, each with a username."""

    peers: list[tuple[int, int, str, str | None]]
    names: list[tuple[int, list[str | None]]]


def make_batch(n: int, *, updated: bool = False) -> Batch:
    """``n`` users; ``updated=True``: the same ids with another access_hash and username."""
    first_hash = HASH_UPDATED if updated else HASH_NEW
    return Batch(
        [(FIRST_ID + i, first_hash + i, "user", None) for i in range(n)],
        [(FIRST_ID + i, [username(i, updated=updated)]) for i in range(n)],
    )


async def timed_write(storage: Any, batch: Batch) -> tuple[float, float, float]:
    """(seconds to stage, seconds until durable, longest loop stall in seconds) of what
    ``Client.fetch_peers`` does (update_peers then update_usernames) followed by ``save()``."""

    async def stage() -> None:
        await storage.update_peers(batch.peers)
        await storage.update_usernames(batch.names)

    return await timed_save(stage, storage.save)


async def write_new_then_updated(storage: Any, new: Batch, updated: Batch | None) -> dict[str, float]:
    """Timed writes of ``new`` and then (if given) ``updated`` into the open ``storage``:
    ``stage_new``, ``write_new`` (peers/s), ``lag_new`` (seconds), and the same ``_updated``."""
    result: dict[str, float] = {}
    for kind, batch in (("new", new), ("updated", updated)):
        if batch is None:
            continue
        staged, durable, lag = await timed_write(storage, batch)
        result[f"stage_{kind}"] = len(batch.peers) / staged
        result[f"write_{kind}"] = len(batch.peers) / durable
        result[f"lag_{kind}"] = lag
    return result


async def fresh_process_lookups(spec: dict[str, Any]) -> dict[str, float]:
    """Run ``child_lookups(spec)`` in a new Python process and return what it measured."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.benchmarks.session", "--child", json.dumps(spec),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"lookup process for {spec['name']} failed:\n{err.decode()[-3000:]}")
    result: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def kurigram_copy(storage: KurigramSQLiteStorage, workdir: Path, name: str) -> None:
    """Every peer of ``storage`` into a new kurigram session ``name``, saved (kurigram has no
    snapshot call: its tables read, its write calls fed)."""
    peers = storage.conn.execute("SELECT id, access_hash, type, phone_number FROM peers").fetchall()
    names: dict[int, list[str | None]] = {}
    for peer_id, username in storage.conn.execute("SELECT id, username FROM usernames"):
        names.setdefault(peer_id, []).append(username)
    copy = KurigramSQLiteStorage(name, workdir=workdir)
    await copy.open()
    try:
        await copy.update_peers(peers)
        await copy.update_usernames(list(names.items()))
        await copy.save()
    finally:
        await copy.close()
    (workdir / f"{name}{KurigramSQLiteStorage.FILE_EXTENSION}").unlink()


async def run_kurigram(
    workdir: Path, tag: str, new: Batch, updated: Batch | None = None, lookups: int = 0
) -> dict[str, float]:
    """One round of kurigram's ``SQLiteStorage``: the writes, then (``lookups`` > 0) the lookups
    of a new process; the session file is deleted at the end."""
    name = f"bench-{tag}"
    storage = KurigramSQLiteStorage(name, workdir=workdir)
    await storage.open()
    try:
        result = await write_new_then_updated(storage, new, updated)
        result |= (await timed("copy", len(new.peers), partial(kurigram_copy, storage, workdir, f"{name}-copy")))[1]
    except BaseException:
        await storage.close()
        raise
    held = [storage]
    del storage
    result |= await timed_close(held, "close", len(new.peers))
    if lookups:
        result |= await fresh_process_lookups(
            {"subject": "kurigram", "where": str(workdir), "name": name,
             "peers": len(new.peers), "lookups": lookups, "updated": updated is not None}
        )
    (workdir / f"{name}{KurigramSQLiteStorage.FILE_EXTENSION}").unlink()
    return result


async def run_statekit(
    storage: BaseStorage,
    tag: str,
    new: Batch,
    updated: Batch | None = None,
    lookups: int = 0,
    url: str | None = None,
    probe: str | None = None,
) -> dict[str, float]:
    """One round of ``PyrogramStorage`` over ``storage``: the writes holding the lease, then
    (``lookups`` > 0) the lookups of a new process opening ``url`` (``probe``: the Redis server's
    URL, to count commands); the session is deleted at the end."""
    name = f"bench-{tag}"
    leased = PyrogramStorage(storage, name)
    await leased.open()
    copy = SessionStore(storage, f"{name}-copy")

    async def snapshot_restore() -> None:
        await copy.restore(await leased.store.snapshot())

    try:
        await leased.store.update(dc_id=2, auth_key=bytes(256))  # a snapshot needs a whole record
        result = await write_new_then_updated(leased, new, updated)
        result |= (await timed("copy", len(new.peers), snapshot_restore))[1]
        await copy.delete()
    except BaseException:
        await leased.close()
        raise
    held = [leased]  # the lease released: the new process takes it
    del leased
    result |= await timed_close(held, "close", len(new.peers))
    leased = PyrogramStorage(storage, name)  # to delete the session at the end
    try:
        if lookups:
            assert url is not None, "the lookup process needs the storage URL"
            result |= await fresh_process_lookups(
                {"subject": "statekit", "where": url, "name": name, "peers": len(new.peers),
                 "lookups": lookups, "updated": updated is not None, "probe": probe}
            )
    finally:
        await leased.delete()
    return result


# ---------------------------------------------------------------------- the lookup process


async def _timed_lookups(lookup: Callable[[Any], Awaitable[Any]], keys: list[Any]) -> tuple[float, list[Any]]:
    """(ops/s, answers) of ``lookup`` awaited once per key, one after the other."""
    gc.collect()
    found: list[Any] = []
    add = found.append
    start = time.perf_counter()
    for key in keys:
        add(await lookup(key))
    return len(keys) / (time.perf_counter() - start), found


async def child_lookups(spec: dict[str, Any]) -> dict[str, float]:
    """In a fresh process: open the session as a client would and time uncached, then warm,
    lookups by id and by username (distinct peers for each); check every answer."""
    n, updated = spec["peers"], spec["updated"]
    want = max(1, min(spec["lookups"], n // 2))
    picks = random.Random(n).sample(range(n), 2 * want)
    first_hash = HASH_UPDATED if updated else HASH_NEW
    ids = [FIRST_ID + i for i in picks[:want]]
    names = [username(i, updated=updated) for i in picks[want:]]
    backing: BaseStorage | None = None
    if spec["subject"] == "kurigram":
        storage: Any = KurigramSQLiteStorage(spec["name"], workdir=Path(spec["where"]))
    else:
        backing = open_storage(spec["where"])
        storage = PyrogramStorage(backing, spec["name"])
    probe = redis.asyncio.Redis.from_url(spec["probe"]) if spec.get("probe") else None

    async def commands() -> int:
        return int((await probe.info("stats"))["total_commands_processed"]) if probe else 0

    await storage.open()
    result: dict[str, float] = {}
    wrong = 0
    try:
        for prefix in ("", "warm_"):
            before = await commands()
            result[f"{prefix}by_id"], by_id = await _timed_lookups(storage.get_peer_by_id, ids)
            result[f"{prefix}by_name"], by_name = await _timed_lookups(storage.get_peer_by_username, names)
            if probe and not prefix:
                result["commands_per_lookup"] = (await commands() - before - 1) / (2 * want)
            wrong += sum(p.access_hash != first_hash + i - FIRST_ID for p, i in zip(by_id, ids, strict=True))
            wrong += sum(p.user_id != FIRST_ID + i for p, i in zip(by_name, picks[want:], strict=True))
        if updated:
            for i in picks[:5]:  # an old username must no longer resolve
                try:
                    await storage.get_peer_by_username(username(i, updated=False))
                    wrong += 1
                except KeyError:
                    pass
    finally:
        await storage.close()
        if backing is not None:
            await backing.stop()
        if probe is not None:
            await probe.aclose()
    if wrong:
        raise AssertionError(f"{spec['name']}: {wrong} lookups answered wrong")
    return result


# ---------------------------------------------------------------------- the run


def size_rows(runs: dict[str, list[dict[str, float]]], peers: int, lookups: int) -> list[Result]:
    """The table rows of one size: each measure of each subject against kurigram."""
    rows: list[Result] = []
    labels = {name: label for name, label in SUBJECTS.items() if name in runs}
    for kind in ("new", "updated"):
        if f"write_{kind}" in runs["kurigram"][0]:
            group = f"{kind} peers"
            rows += compare_rows(runs, labels, "kurigram", group,
                                 f"update_peers+update_usernames ×{peers:,} (staged)", f"stage_{kind}")
            rows += compare_rows(runs, labels, "kurigram", group,
                                 f"… + save() (durable) ×{peers:,}", f"write_{kind}", stall=f"lag_{kind}")
    if "copy" in runs["kurigram"][0]:
        rows += compare_rows(runs, labels, "kurigram", "whole session",
                             f"out and into a new session (statekit: snapshot + restore), {peers:,} peers",
                             "copy", stall="lag_copy")
    if "close" in runs["kurigram"][0]:
        rows += compare_rows(runs, labels, "kurigram", "close", f"close() and drop, {peers:,} peers held (peers/s)",
                             "close", stall="lag_close")
    if lookups and "by_id" in runs["kurigram"][0]:
        count = max(1, min(lookups, peers // 2))
        for prefix, group in (("", "lookup, new process (uncached)"), ("warm_", "lookup, again (warm)")):
            for op, key in (("get_peer_by_id", "by_id"), ("get_peer_by_username", "by_name")):
                found = compare_rows(runs, labels, "kurigram", group,
                                     f"{op} ×{count:,} distinct, {peers:,} stored", prefix + key)
                if not prefix:  # commands counted on the server
                    per = min(r["commands_per_lookup"] for r in runs["redis"])
                    redis_row = next(x for x in found if x.subject == SUBJECTS["redis"])
                    redis_row.note += f"; {per:.2f} Redis commands per lookup"
                rows += found
    return rows


def subjects(args: argparse.Namespace, stores: Stores) -> list[tuple[str, Run]]:
    """kurigram, statekit SQLite and statekit Redis, each measuring one round at a size."""
    batches = {n: (make_batch(n), make_batch(n, updated=True)) for n in args.peers}

    async def kurigram(n: int, r: int) -> dict[str, float]:
        return await run_kurigram(stores.workdir, f"k{n}-{r}", *batches[n], args.lookups)

    def statekit(name: str) -> Run:
        probe = stores.redis_url if name == "redis" else None

        async def run(n: int, r: int) -> dict[str, float]:
            return await run_statekit(stores.storages[name], f"{name[0]}{n}-{r}", *batches[n],
                                      args.lookups, stores.urls[name], probe)

        return run

    return [("kurigram", kurigram), *((name, statekit(name)) for name in stores.storages)]


def main(argv: list[str] | None = None) -> None:
    parser = rounds_parser("session", __doc__, "peers")
    parser.add_argument("--lookups", type=int, default=5_000,
                        help="distinct ids, and as many usernames, looked up by the new process (0: none)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the lookup process (JSON spec)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(asyncio.run(child_lookups(json.loads(args.child)))))
        return
    asyncio.run(compare_in_rounds(
        args, args.peers, partial(subjects, args), lambda runs, n: size_rows(runs, n, args.lookups),
        "Session peer cache: statekit vs kurigram",
    ))


if __name__ == "__main__":
    main()
