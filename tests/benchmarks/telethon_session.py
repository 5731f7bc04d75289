"""Telethon session benchmark: Telethon's own SQLiteSession vs statekit's TelethonSession.

Run: ``python -m tests.benchmarks.telethon_session [--entities 10000,100000] [--rounds 7]
[--json out.json]``.

Subjects: Telethon's ``telethon.sessions.SQLiteSession`` on a file in a temporary directory (the
baseline) and ``statekit.adapters.telethon.TelethonSession`` over statekit SQLite (a file) and
over real Redis (a ``redis-server`` started for the run on a loopback port, no persistence), with
``--postgres`` also over PostgreSQL (a cluster started for the run). Each
goes through what a ``TelegramClient`` does with the entities of a response:
``process_entities(tlo)``, ``tlo`` a ``contacts.Contacts`` holding N real ``types.User`` objects
(id, access_hash, username, first_name, a phone for every fourth; built once, outside the
timing), then ``save()``, timed until the data is durable: Telethon's ``save()`` commits;
statekit's returns an awaitable that writes the pending changes to the store, awaited here as
Telethon awaits it ("staged" is the time of ``process_entities`` alone). For each size of
``--entities``, in every round, each subject in turn (the order rotates from round to round; an
uncounted warm-up round at the smallest size runs first):
N NEW entities into a fresh session, then the same N entities UPDATED (another access_hash and
another username each) into the same open session; then the session is closed and a RESTARTED
client opens it again (timed: entities loaded per second, and the loop stall while it opens;
Telethon's ``SQLiteSession`` reads nothing at open, statekit's loads every entity, its lookups
being synchronous) and writes the same N entities changed once more (a third access_hash and
username: every row it loaded is replaced). A few entities are read back from the store after
each round (outside the timing) to check that the last writes landed.

Each write runs under a ticker task sleeping 1 ms that records the longest gap between its
wake-ups (the event loop's longest stall; Telethon's session is synchronous, so its whole write
is one stall). The table gives the best round of each subject (ratio best against best) and, in
the note, the median, the median and range of the round-by-round ratios against Telethon in the
same round, and the worst and median stall. Target (issue 16): >= 1.5x Telethon's SQLiteSession
at 10k and 100k entities, new and updated, with no stall above 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telethon.sessions import SQLiteSession
from telethon.tl import types

from statekit import BaseStorage
from statekit.adapters.telethon import TelethonSession
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

FIRST_ID = 100_000
HASH_NEW = 7_000_000_000
HASH_UPDATED = 8_000_000_000
HASH_RESTARTED = 9_000_000_000
SUBJECTS = {
    "telethon": "Telethon SQLiteSession (file)",
    "sqlite": "statekit TelethonSession, SQLite (file)",
    "redis": "statekit TelethonSession, Redis",
    "postgres": "statekit TelethonSession, PostgreSQL",  # with --postgres
}
CHECKED = (0, 1, 3)  # entities read back after each round


def make_users(n: int, *, updated: bool = False, restarted: bool = False) -> Any:
    """A ``contacts.Contacts`` of ``n`` users; ``updated=True``: the same users with another
    access_hash and username; ``restarted=True``: with a third access_hash and username."""
    first_hash, prefix = (
        (HASH_RESTARTED, "again") if restarted else (HASH_UPDATED, "renamed") if updated else (HASH_NEW, "user")
    )
    users = [
        types.User(
            id=FIRST_ID + i,
            access_hash=first_hash + i,
            first_name=f"User {i}",
            username=f"{prefix}{i}",
            phone=f"1555{i:07d}" if i % 4 == 0 else None,
        )
        for i in range(n)
    ]
    return types.contacts.Contacts(contacts=[], saved_count=0, users=users)


async def timed_write(session: Any, tlo: Any, kind: str) -> dict[str, float]:
    """``stage_<kind>``, ``write_<kind>`` (entities/s) and ``lag_<kind>`` (seconds) of
    ``process_entities(tlo)`` + ``save()`` on ``session``."""
    staged, durable, lag = await timed_save(partial(session.process_entities, tlo), session.save)
    n = len(tlo.users)
    return {f"stage_{kind}": n / staged, f"write_{kind}": n / durable, f"lag_{kind}": lag}


async def write_new_then_updated(session: Any, new: Any, updated: Any) -> dict[str, float]:
    """The timed writes of ``new`` and then ``updated`` into ``session`` (``timed_write``)."""
    return await timed_write(session, new, "new") | await timed_write(session, updated, "updated")


async def timed_open(open_session: Callable[[], Any], n: int) -> tuple[Any, dict[str, float]]:
    """The session ``open_session()`` opens (awaited if it returns an awaitable), with
    ``open`` (stored entities per second of the open) and ``lag_open`` (seconds)."""
    return await timed("open", n, open_session)


def check(name: str, hashes: dict[int, int | None]) -> None:
    """Raise unless the stored access_hash of each checked entity is the last one written."""
    wrong = {i: h for i, h in hashes.items() if h != HASH_RESTARTED + i}
    if wrong:
        raise AssertionError(f"{name}: entities not updated in the store: {wrong}")


async def run_telethon(workdir: Path, tag: str, new: Any, updated: Any, again: Any) -> dict[str, float]:
    """One round of Telethon's ``SQLiteSession`` on a new file (deleted at the end)."""
    path = str(workdir / f"bench-{tag}")
    session = SQLiteSession(path)
    try:
        result = await write_new_then_updated(session, new, updated)
    finally:
        session.close()
    restarted, opened = await timed_open(partial(SQLiteSession, path), len(new.users))
    try:
        result |= opened | await timed_write(restarted, again, "restarted")
    except BaseException:
        restarted.close()
        raise
    held = [restarted]
    del restarted
    result |= await timed_close(held, "close", len(new.users))
    reader = SQLiteSession(path)  # what a restarted client reads
    try:
        check(tag, {i: (reader.get_entity_rows_by_id(FIRST_ID + i) or (0, None))[1] for i in CHECKED})
    finally:
        reader.close()
        reader.delete()
    return result


async def run_statekit(
    storage: BaseStorage, tag: str, new: Any, updated: Any, again: Any
) -> dict[str, float]:
    """One round of ``TelethonSession`` over ``storage`` holding the lease (the session is
    deleted at the end)."""
    session = TelethonSession(storage, f"bench-{tag}")
    await session.open()
    try:
        result = await write_new_then_updated(session, new, updated)
    finally:
        await session.aclose()
    restarted, opened = await timed_open(TelethonSession(storage, f"bench-{tag}").open, len(new.users))
    try:
        result |= opened | await timed_write(restarted, again, "restarted")
    except BaseException:
        await restarted.aclose()
        raise
    held = [restarted]
    del restarted
    result |= await timed_close(held, "aclose", len(new.users))
    try:
        hashes = {}
        for i in CHECKED:  # read from the storage, not from the closed session's memory
            peer = await session.store.get_peer_by_id(FIRST_ID + i)
            hashes[i] = None if peer is None else peer.access_hash
        check(tag, hashes)
    finally:
        await session.delete()
    return result


def size_rows(runs: dict[str, list[dict[str, float]]], entities: int) -> list[Result]:
    """The table rows of one size: each measure of each subject against Telethon."""
    rows: list[Result] = []
    labels = {name: label for name, label in SUBJECTS.items() if name in runs}
    for kind in ("new", "updated", "restarted"):
        group = f"{kind} entities" if kind != "restarted" else "restarted client, entities changed"
        if kind == "restarted":
            rows += compare_rows(runs, labels, "Telethon", group,
                                 f"open() of {entities:,} stored (entities/s)", "open", stall="lag_open")
        rows += compare_rows(runs, labels, "Telethon", group,
                             f"process_entities ×{entities:,} (staged)", f"stage_{kind}")
        rows += compare_rows(runs, labels, "Telethon", group,
                             f"… + save() (durable) ×{entities:,}", f"write_{kind}", stall=f"lag_{kind}")
    if "close" in runs["telethon"][0]:
        rows += compare_rows(runs, labels, "Telethon", "restarted client, entities changed",
                             f"close (statekit: aclose) and drop, {entities:,} loaded (entities/s)",
                             "close", stall="lag_close")
    return rows


def subjects(args: argparse.Namespace, stores: Stores) -> list[tuple[str, Run]]:
    """Telethon, statekit SQLite and statekit Redis, each measuring one round at a size."""
    tlos = {
        n: (make_users(n), make_users(n, updated=True), make_users(n, restarted=True))
        for n in args.entities
    }

    async def telethon(n: int, r: int) -> dict[str, float]:
        return await run_telethon(stores.workdir, f"t{n}-{r}", *tlos[n])

    def on(name: str) -> Run:
        storage = stores.storages[name]
        return lambda n, r: run_statekit(storage, f"{name[0]}{n}-{r}", *tlos[n])

    return [("telethon", telethon), *((name, on(name)) for name in stores.storages)]


def main(argv: list[str] | None = None) -> None:
    args = rounds_parser("telethon_session", __doc__, "entities").parse_args(argv)
    asyncio.run(compare_in_rounds(
        args, args.entities, partial(subjects, args), size_rows,
        "Telethon session entities: statekit vs Telethon",
    ))


if __name__ == "__main__":
    main()
