"""ferogram session saves: ferogram's own FileSession and SqliteSession against statekit's
FerogramSession (a CustomSession) on memory, SQLite and Redis, side by side in one run.

    python -m tests.benchmarks.ferogram_session [--peers 1000] [--rounds 3] [--json out.json]

Each save is what ferogram's autosave does: a new update state (one changed channel pts) pushed
into the connection, then ``save_session()``; the session holds ``--peers`` peers. ferogram runs
offline (its data centre is a TCP listener on 127.0.0.1; a saved key is resumed without a
handshake). Note: ferogram's SqliteSession writes from a background task, so its figure is the
time to hand the save over, not to commit it; FileSession and statekit's adapter return once the
data is written.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ferogram._ferogram import CustomSession, DcConnection, FileSession, SqliteSession

from statekit import MemoryStorage, RedisStorage, SQLiteStorage
from statekit.adapters.ferogram import FerogramSession
from statekit.session import _ferogram as fero
from statekit.testing import RedisServer, RedisServerUnavailable
from tests.benchmarks._harness import Result, machine, print_table, write_json
from tests.ferogram_tools import Listener

KEY = bytes((i * 13 + 1) % 256 for i in range(256))


def session_blob(dc: Listener, peers: int) -> bytes:
    s = fero.FerogramSession(
        home_dc_id=2,
        dcs=[fero.FerogramDc(2, dc.addr, KEY)],
        pts=100,
        qts=1,
        date=1_700_000_000,
        seq=1,
        channels=[(1_000_000_000 + i, 1) for i in range(20)],
        peers=[fero.FerogramPeer(100_000 + i, i * 7 + 1, 0) for i in range(peers)],
    )
    return fero.build_blob(s)


async def saves_per_s(session: Any, dc: Listener, n: int) -> float:
    conn = await asyncio.wait_for(
        DcConnection.connect(session, 1, "0" * 32, 0, dc_addr=dc.addr), 30
    )
    channels = [(1_000_000_000 + i, 1) for i in range(20)]
    await conn.save_session()  # warm-up (the first save writes every peer)
    start = time.perf_counter()
    for i in range(n):
        channels[i % 20] = (1_000_000_000 + i % 20, 2 + i)
        await conn.sync_persisted_update_state(101 + i, 1, 1_700_000_000 + i, 1, channels)
        await conn.save_session()
    return n / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", dest="json_path", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    dc = Listener()
    blob = session_blob(dc, args.peers)
    redis: RedisServer | None = None
    try:
        redis = RedisServer()
        redis.start()
    except RedisServerUnavailable:
        redis = None
    with tempfile.TemporaryDirectory(prefix="statekit-fero-bench-") as tmp:
        work = Path(tmp)
        counter = iter(range(1_000_000))

        async def ferogram_file() -> float:
            path = work / f"f{next(counter)}.session"
            path.write_bytes(blob)
            return await saves_per_s(FileSession(str(path)), dc, args.saves)

        async def ferogram_sqlite() -> float:
            path = work / f"s{next(counter)}.db"
            # seed through statekit's writer (ferogram's own schema and rows)
            from statekit.session._ferogram_sqlite import export_ferogram_file

            export_ferogram_file(fero.to_snapshot(fero.parse_blob(blob)), path, "ferogram-sqlite")
            return await saves_per_s(SqliteSession(str(path)), dc, args.saves)

        def statekit_on(make: Callable[[], Any]) -> Callable[[], Awaitable[float]]:
            async def run() -> float:
                session = FerogramSession(make(), f"b{next(counter)}")
                await session.aopen()
                try:
                    await asyncio.to_thread(session.save, blob)
                    return await saves_per_s(CustomSession(session), dc, args.saves)
                finally:
                    await session.aclose()

            return run

        subjects: list[tuple[str, Callable[[], Awaitable[float]]]] = [
            ("ferogram FileSession", ferogram_file),
            ("ferogram SqliteSession", ferogram_sqlite),
            ("statekit FerogramSession, memory", statekit_on(MemoryStorage)),
            (
                "statekit FerogramSession, SQLite",
                statekit_on(lambda: SQLiteStorage(work / f"st{next(counter)}.db")),
            ),
        ]
        if redis is not None:
            url = redis.url
            subjects.append(
                ("statekit FerogramSession, Redis", statekit_on(lambda: RedisStorage(url)))
            )
        best = [0.0] * len(subjects)
        for _ in range(args.rounds):
            for i, (_, run) in enumerate(subjects):
                best[i] = max(best[i], await run())
    if redis is not None:
        redis.cleanup()
    dc.close()
    base = best[0]
    rows = [
        Result(
            "ferogram save_session",
            name,
            f"save, {args.peers} peers",
            1,
            ops,
            baseline=subjects[0][0],
            ratio=ops / base if base else None,
        )
        for (name, _), ops in zip(subjects, best, strict=True)
    ]
    print(f"machine: {machine()}")
    print_table(f"ferogram session saves (best of {args.rounds})", rows)
    write_json(args.json_path, "ferogram_session", rows)


if __name__ == "__main__":
    asyncio.run(main())
