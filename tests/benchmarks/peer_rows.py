"""Peer rows in memory: decoding packed buckets, the memory decoded rows hold, and ``Peer``
objects made from rows.

Run: ``python -m tests.benchmarks.peer_rows [--rows 100000] [--rounds 5] [--json out.json]``.

``--rows`` rows (ids 100,000 on, a 9-byte access hash, type "user", one username, a stamp; every
fourth a phone) are packed into ``PEER_BUCKETS`` buckets once, outside the timing. Then, best of
``--rounds``: every bucket decoded as a write or a read-ahead decodes it (``decode_peer_bucket``,
rows/s); the bytes the decoded rows hold (tracemalloc), as rows per MiB; and a ``Peer`` made from
each decoded row (``row_peer``, as ``snapshot()`` and ``iter_peers`` make them, Peers/s). The
baseline is msgpack itself unpacking the same packed rows (the same code in any tree: what two
runs differ by here is noise). Meant for ``script_ab`` against another tree.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from functools import partial
from typing import Any

from statekit.session._buckets import PEER_BUCKETS, decode_peer_bucket
from statekit.session._packed import PackedPeers, pack_peers
from statekit.session._peers import row_peer
from tests.benchmarks._harness import Result, print_table, write_json

FIRST_ID = 100_000


def packed_buckets(n: int) -> list[tuple[str, bytes]]:
    """``n`` rows packed into their buckets: (key, packed bucket) each."""
    buckets: list[dict[int, Any]] = [{} for _ in range(PEER_BUCKETS)]
    for i in range(n):
        peer_id = FIRST_ID + i
        phone = f"1555{i:07d}" if i % 4 == 0 else None
        buckets[peer_id % PEER_BUCKETS][peer_id] = (
            peer_id, 8_000_000_000 + i, "user", (f"user{i}",), phone, 1_765_000_000, None
        )
    return [(f"peers:{n}", pack_peers(f"peers:{n}", rows)) for n, rows in enumerate(buckets) if rows]


def rate(n: int, step: Any) -> float:
    """``n`` per second of one call of ``step`` (the garbage collector run first, then off)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        step()
        return n / (time.perf_counter() - start)
    finally:
        gc.enable()


def decode_all(stored: list[tuple[str, bytes]], into: list[dict[int, Any]]) -> None:
    """Every bucket of ``stored`` decoded, into ``into``."""
    into.extend(decode_peer_bucket(key, value) for key, value in stored)


def peers_of(decoded: list[dict[int, Any]]) -> list[Any]:
    """A ``Peer`` of each row of ``decoded``."""
    return [row_peer(row) for bucket in decoded for row in bucket.values()]


def held_mib(stored: list[tuple[str, bytes]]) -> float:
    """MiB the decoded rows of ``stored`` hold while alive (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [decode_peer_bucket(key, value) for key, value in stored]
        mib = (tracemalloc.get_traced_memory()[0] - before) / 2**20
        del held
        return mib
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    n = args.rows
    stored = packed_buckets(n)
    views = [PackedPeers(key, value) for key, value in stored]
    best = {"msgpack": 0.0, "decode": 0.0, "peers": 0.0, "per_mib": 0.0}
    for _ in range(args.rounds):
        best["msgpack"] = max(best["msgpack"], rate(n, lambda: [view.decoded() for view in views]))
        decoded: list[dict[int, Any]] = []
        best["decode"] = max(best["decode"], rate(n, partial(decode_all, stored, decoded)))
        best["peers"] = max(best["peers"], rate(n, partial(peers_of, decoded)))
        decoded.clear()
        best["per_mib"] = max(best["per_mib"], n / held_mib(stored))
    group = f"{n:,} rows"
    base = "msgpack"
    rows = [
        Result(group, "msgpack", f"unpack the packed rows of {PEER_BUCKETS} buckets (rows/s)", 1, best["msgpack"]),
        Result(group, "statekit", "decode_peer_bucket: decoded and checked rows (rows/s)", 1, best["decode"],
               base, best["decode"] / best["msgpack"]),
        Result(group, "statekit", "decoded rows held per MiB (tracemalloc)", 1, best["per_mib"],
               note=f"{n / best['per_mib']:.1f} MiB for {n:,} rows"),
        Result(group, "statekit", "row_peer: a Peer made from each decoded row (Peers/s)", 1, best["peers"],
               base, best["peers"] / best["msgpack"]),
    ]
    print_table(f"Peer rows in memory ({n:,} rows, best of {args.rounds})", rows)
    write_json(args.json, "peer_rows", rows)


if __name__ == "__main__":
    main()
