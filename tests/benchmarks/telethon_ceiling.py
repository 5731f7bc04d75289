"""Issue 16, Telethon target: how fast a Telethon save would be if packing the buckets, and then
also the username and phone index, cost nothing (a ceiling for compiling those steps).

Run by hand: ``python -m tests.benchmarks.telethon_ceiling [--entities 10000] [--rounds 9]
[--json out.json]``.

Subjects, each on a file of its own in a temporary directory, in an order rotated from round to
round (after an uncounted warm-up round), writing ``--entities`` NEW entities into a fresh session
and then the same entities UPDATED (``tests.benchmarks.telethon_session``'s users and timing,
``_harness.timed_save``: a full collection first, then ``process_entities`` + ``save()`` until
durable, with the event loop's longest stall):

- ``Telethon SQLiteSession``: the baseline.
- ``statekit``: ``TelethonSession`` over ``SQLiteStorage`` as it is.
- ``statekit, packing free``: the same, with every bucket's packed bytes taken from a first
  (untimed) run instead of being packed; the last byte is changed on every save, so SQLite still
  writes every bucket, of its real size.
- ``statekit, packing and index free``: also no username and phone index merge (nothing read,
  merged or written for it).

The last two are not statekit: they patch ``SessionStore`` in this process to show how much of
a save the rest (reading the TL objects, merging rows into their buckets, SQLite) takes. The
table gives medians over rounds, the median and range of the round-by-round ratios against
Telethon, and the time per entity, which moves less than the ratios: Telethon's write waits on
its fsyncs, whose speed changes from phase to phase on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from telethon.sessions import SQLiteSession

from statekit.adapters.telethon import TelethonSession
from statekit.session.store import SessionStore
from statekit.storage.sqlite import SQLiteStorage
from tests.benchmarks._harness import (
    RoundsResult,
    count,
    print_table,
    rounds_result,
    timed_save,
    write_json,
)
from tests.benchmarks.telethon_session import make_users

SUBJECTS = {
    "telethon": "Telethon SQLiteSession (file)",
    "full": "statekit TelethonSession, SQLite",
    "nopack": "statekit, packing free (not statekit)",
    "nopack_noindex": "statekit, packing and index free (not statekit)",
}


class _Patches:
    """Stand-ins for ``SessionStore._stored_bucket`` and ``_merge_index`` (see the module doc)."""

    def __init__(self) -> None:
        self.packed: dict[str, bytes] = {}
        self.saves = 0
        self.real_stored = SessionStore._stored_bucket

    def stored(self) -> Callable[..., bytes]:
        def stored_bucket(store: SessionStore, key: str, bucket: Any) -> bytes:
            found = self.packed.get(key)
            if found is None:
                found = self.packed[key] = self.real_stored(store, key, bucket)
            return found[:-1] + bytes((self.saves % 256,))

        return stored_bucket

    @staticmethod
    async def no_index(*args: Any, **kwargs: Any) -> None:
        return None

    @contextmanager
    def applied(self, subject: str) -> Iterator[None]:
        stored, merge_index = SessionStore._stored_bucket, SessionStore._merge_index
        try:
            if subject in ("nopack", "nopack_noindex"):
                SessionStore._stored_bucket = self.stored()  # type: ignore[method-assign]
            if subject == "nopack_noindex":
                SessionStore._merge_index = self.no_index  # type: ignore[method-assign,assignment]
            yield
        finally:
            SessionStore._stored_bucket = stored  # type: ignore[method-assign]
            SessionStore._merge_index = merge_index  # type: ignore[method-assign]


def _timed(kind: str, n: int, timing: tuple[float, float, float]) -> dict[str, float]:
    """Entities per second until durable, and the longest loop stall, of ``timed_save``'s timing."""
    _, durable, stall = timing
    return {kind: n / durable, f"stall_{kind}": stall}


async def statekit_round(workdir: Path, tag: str, n: int, tlos: list[Any], patches: _Patches) -> dict[str, float]:
    storage = SQLiteStorage(str(workdir / f"{tag}.db"))
    await storage.start()
    try:
        session = TelethonSession(storage, "ceiling")
        await session.open()
        result: dict[str, float] = {}
        for tlo, kind in zip(tlos, ("new", "updated"), strict=True):
            patches.saves += 1
            result |= _timed(kind, n, await timed_save(partial(session.process_entities, tlo), session.save))
        await session.aclose()
        await session.delete()
        return result
    finally:
        await storage.stop()


async def telethon_round(workdir: Path, n: int, tlos: list[Any]) -> dict[str, float]:
    session = SQLiteSession(str(workdir / "telethon"))
    result: dict[str, float] = {}
    try:
        for tlo, kind in zip(tlos, ("new", "updated"), strict=True):
            result |= _timed(kind, n, await timed_save(partial(session.process_entities, tlo), session.save))
    finally:
        session.close()
        session.delete()
    return result


async def run(n: int, rounds: int) -> dict[str, list[dict[str, float]]]:
    tlos = [make_users(n), make_users(n, updated=True)]
    patches = _Patches()
    names = list(SUBJECTS)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with patches.applied("nopack"):  # the packed bytes the patched subjects write
            await statekit_round(workdir, "warm", n, tlos, patches)
        for r in range(rounds + 1):
            for name in names[r % len(names):] + names[: r % len(names)]:
                if name == "telethon":
                    got = await telethon_round(workdir, n, tlos)
                else:
                    with patches.applied(name):
                        got = await statekit_round(workdir, name, n, tlos, patches)
                if r:  # round 0 warms up
                    runs[name].append(got)
    return runs


def rows(runs: dict[str, list[dict[str, float]]], n: int) -> list[RoundsResult]:
    results = []
    for kind in ("new", "updated"):
        base = [r[kind] for r in runs["telethon"]]
        for name, label in SUBJECTS.items():
            values = [r[kind] for r in runs[name]]
            result = rounds_result(
                f"{kind} entities", label, f"process_entities + save() ×{n:,}", values,
                base=None if name == "telethon" else base, baseline="Telethon",
                stalls=[r[f"stall_{kind}"] for r in runs[name]],
            )
            result.note += f"; {1e6 / statistics.median(values):.2f} µs per entity (median)"
            results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entities", type=count, default=10_000)
    parser.add_argument("--rounds", type=count, default=9)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    runs = asyncio.run(run(args.entities, args.rounds))
    results = rows(runs, args.entities)
    print_table(f"Telethon saves with packing and the index made free, {args.entities:,} entities", results)
    write_json(args.json, "telethon_ceiling", results)


if __name__ == "__main__":
    main()
