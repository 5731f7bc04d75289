"""SQLite: a session's buckets read as one range of keys (``get_range_stored``) against the same
keys looked up in an ``IN`` list (``get_many_stored``), as the session read-ahead reads them.

Run: ``python -m tests.benchmarks.range_read [--peers 100000] [--rounds 9] [--json out.json]``.

One SQLite file (a temporary directory) holds three sessions' peer buckets (``--peers`` peers
each, packed in ``PEER_BUCKETS`` buckets, as ``SessionStore`` stores them) under neighbouring
names, so a range is one session's keys among others. For 16, 64 and all 512 keys of the middle
session (the first ones in string order, as the read-ahead asks for them), in every round, both
reads run one after the other, the order alternating from round to round:
"first read" opens a new ``SQLiteStorage`` (an empty page cache, as a freshly started client
has) and times its first read; "again" times the read once more on that storage. The table gives
buckets read per second, the best round of each, and the ratio to the ``IN`` list of the same
round (median and range over the rounds in the note).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from statekit import SQLiteStorage
from statekit.session._buckets import PEER_BUCKETS, pack_bucket
from statekit.session._packed import pack_peers
from tests.benchmarks._harness import Result, print_table, write_json

FIRST_ID = 100_000
SESSIONS = ("reader", "session", "sessions")  # neighbours in string order
SIZES = (16, 64, PEER_BUCKETS)


def bucket_values(peers: int) -> list[bytes]:
    """The stored form of every peer bucket of ``peers`` peers, by bucket number."""
    rows: list[dict[int, Any]] = [{} for _ in range(PEER_BUCKETS)]
    for i in range(peers):
        peer_id = FIRST_ID + i
        rows[peer_id % PEER_BUCKETS][peer_id] = (
            peer_id, 8_000_000_000 + i, "user", (f"user{i}",), None, 1_765_000_000, None
        )
    return [pack_bucket(pack_peers(f"peers:{n}", bucket)) for n, bucket in enumerate(rows)]


def keys_of(session: str) -> list[str]:
    """The peer bucket keys of ``session`` in string order (how the read-ahead asks for them)."""
    return sorted(f"session:{{{session}}}:peers:{n}" for n in range(PEER_BUCKETS))


async def timed_read(path: Path, keys: list[str], ranged: bool) -> tuple[float, float]:
    """(seconds of the first read of ``keys`` on a new storage, seconds of a second read)."""
    storage = SQLiteStorage(path)
    await storage.start()
    try:
        read = storage.get_range_stored if ranged else storage.get_many_stored
        took = []
        for _ in range(2):
            start = time.perf_counter()
            found = await read(keys)
            took.append(time.perf_counter() - start)
            assert len(found) == len(keys), "every bucket is stored"
        return took[0], took[1]
    finally:
        await storage.stop()


async def run(peers: int, rounds: int) -> list[Result]:
    values = bucket_values(peers)
    with tempfile.TemporaryDirectory(prefix="statekit-range-") as workdir:
        path = Path(workdir) / "sessions.db"
        storage = SQLiteStorage(path)
        await storage.start()
        for session in SESSIONS:
            keys = [f"session:{{{session}}}:peers:{n}" for n in range(PEER_BUCKETS)]
            await storage.set_many_encoded(list(zip(keys, values, strict=True)), ttl=None)
        await storage.stop()
        wanted = keys_of(SESSIONS[1])
        # seconds[size][kind][ranged]: one entry per round
        seconds: dict[int, dict[str, dict[bool, list[float]]]] = {
            size: {kind: {False: [], True: []} for kind in ("first", "again")} for size in SIZES
        }
        await timed_read(path, wanted, True)  # uncounted warm-up: the file in the OS cache
        for r in range(rounds):
            for size in SIZES:
                for ranged in (r % 2 == 0, r % 2 == 1):
                    first, again = await timed_read(path, wanted[:size], ranged)
                    seconds[size]["first"][ranged].append(first)
                    seconds[size]["again"][ranged].append(again)
    rows: list[Result] = []
    for size in SIZES:
        group = f"{size} of {PEER_BUCKETS} buckets, {peers:,} peers"
        for kind, label in (("first", "first read of a new storage"), ("again", "the same read again")):
            by_in, by_range = seconds[size][kind][False], seconds[size][kind][True]
            ratios = [a / b for a, b in zip(by_in, by_range, strict=True)]
            rows.append(Result(group, "get_many_stored (IN list)", label, 1, size / min(by_in),
                               note=f"median {size / statistics.median(by_in):,.0f}/s"))
            rows.append(Result(
                group, "get_range_stored (range scan)", label, 1, size / min(by_range),
                "IN list", min(by_in) / min(by_range),
                note=f"median {statistics.median(ratios):.2f}× [{min(ratios):.2f}–{max(ratios):.2f}] round by round",
            ))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.peers, args.rounds))
    print_table(f"SQLite: buckets read as a range vs an IN list (best of {args.rounds} rounds, buckets/s)", rows)
    write_json(args.json, "range_read", rows)


if __name__ == "__main__":
    main()
