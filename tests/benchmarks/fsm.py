"""FSM benchmark: statekit ``update_data`` against aiogram's own ``RedisStorage.update_data`` on the
same redis-server, in the same run.

Run: ``python -m tests.benchmarks.fsm [--seconds 1] [--rounds 3] [--json out.json]``.

Scenarios (each update merges one field into one conversation's data):

* ``sequential``: one task, one conversation, fields cycling ``f0..f7``.
* ``100 users``: 100 tasks, each writing its own conversation (no contention).
* ``1 user x100``: 100 tasks writing the same conversation, 1,000 updates each adding its own
  key; lost updates = keys missing at the end.
* ``50 writers``: 50 concurrent updates of one user, each adding its own key: wall time until all
  50 returned, and lost updates. aiogram is measured without and with its Redis lock
  (``RedisEventIsolation``, the lock aiogram's dispatcher takes around each update).

Subjects: ``statekit`` (``FSMContext`` over ``RedisStorage``), ``statekit/aiogram`` (the
``AiogramStorage`` adapter, what an aiogram bot calls), ``statekit cas-only`` (``coalesce=False``:
every call its own compare-and-set), ``statekit 4 processes`` (four real worker processes sharing
the conversation, each coalescing its own writes: the cross-process compare-and-set path; wall time
from a common start instant, process start-up excluded) and ``aiogram`` (``aiogram.fsm.storage.redis.RedisStorage``,
the baseline). Rates are the best of ``--rounds`` interleaved rounds. Goals (issue 3): >= 2x
aiogram's throughput with no lost update; all 50 writers done in < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from aiogram.fsm.storage.base import StorageKey as AiogramKey
from aiogram.fsm.storage.redis import RedisEventIsolation
from aiogram.fsm.storage.redis import RedisStorage as AiogramRedisStorage

from statekit import RedisStorage
from statekit.adapters.aiogram import AiogramStorage
from statekit.fsm import FSMContext, StorageKey
from statekit.testing import RedisServer
from tests.benchmarks._harness import Result, best_of, machine, measure, write_json

BOT = 42
UpdateFn = Callable[[int, dict[str, Any]], Awaitable[Any]]  # (conversation, fields)


@dataclass
class Row:
    scenario: str
    subject: str
    tasks: int
    ops_per_s: float
    lost: str = "—"
    wall_ms: float | None = None
    ratio: float | None = None


class Subjects:
    """The update functions under test, each over the same redis-server."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statekit = RedisStorage(url, namespace="bench-sk")
        self.adapter_storage = RedisStorage(url, namespace="bench-ad")
        self.adapter = AiogramStorage(self.adapter_storage)
        self.casonly = RedisStorage(url, namespace="bench-cas")
        self.shared = RedisStorage(url, namespace="bench-mp")  # written by the worker processes
        self.aiogram_redis = redis.asyncio.Redis.from_url(url, max_connections=200)
        self.aiogram = AiogramRedisStorage(self.aiogram_redis)
        self.isolation = RedisEventIsolation(redis=self.aiogram_redis)

    async def start(self) -> None:
        for storage in (self.statekit, self.adapter_storage, self.casonly, self.shared):
            await storage.start()
        await self.aiogram_redis.ping()

    async def stop(self) -> None:
        for storage in (self.statekit, self.adapter_storage, self.casonly, self.shared):
            await storage.stop()
        await self.aiogram_redis.aclose()

    async def flush(self) -> None:
        await self.aiogram_redis.flushdb()

    # update functions ------------------------------------------------------------------------

    def updates(self) -> dict[str, UpdateFn]:
        sk, cas, adapter, aiogram = self.statekit, self.casonly, self.adapter, self.aiogram
        isolation = self.isolation

        async def statekit(conv: int, fields: dict[str, Any]) -> Any:
            return await FSMContext(sk, StorageKey(BOT, conv, conv)).update_data(fields)

        async def statekit_adapter(conv: int, fields: dict[str, Any]) -> Any:
            return await adapter.update_data(AiogramKey(BOT, conv, conv), fields)

        async def statekit_casonly(conv: int, fields: dict[str, Any]) -> Any:
            return await FSMContext(cas, StorageKey(BOT, conv, conv), coalesce=False).update_data(fields)

        async def aiogram_plain(conv: int, fields: dict[str, Any]) -> Any:
            return await aiogram.update_data(AiogramKey(BOT, conv, conv), fields)

        async def aiogram_locked(conv: int, fields: dict[str, Any]) -> Any:
            key = AiogramKey(BOT, conv, conv)
            async with isolation.lock(key):
                return await aiogram.update_data(key, fields)

        return {
            "statekit": statekit,
            "statekit/aiogram": statekit_adapter,
            "statekit cas-only": statekit_casonly,
            "aiogram": aiogram_plain,
            "aiogram + lock": aiogram_locked,
        }

    async def data_of(self, subject: str, conv: int) -> dict[str, Any]:
        if subject.startswith("aiogram"):
            return await self.aiogram.get_data(AiogramKey(BOT, conv, conv))
        storage = {"statekit": self.statekit, "statekit/aiogram": self.adapter_storage,
                   "statekit cas-only": self.casonly, "statekit 4 processes": self.shared}[subject]
        return await FSMContext(storage, StorageKey(BOT, conv, conv)).get_data()


_CHILD = """
import asyncio, sys, time
from statekit import RedisStorage
from statekit.fsm import FSMContext, StorageKey

async def main(url, conv, start_at, tasks, indices):
    conv, start_at, tasks = int(conv), float(start_at), int(tasks)
    indices = [int(i) for i in indices.split(",")]
    async with RedisStorage(url, namespace="bench-mp") as storage:
        await asyncio.gather(*(storage.health() for _ in range(tasks)))  # open the connections

        async def worker(mine):
            for i in mine:
                await FSMContext(storage, StorageKey(42, conv, conv)).update_data({f"k{i}": i})

        await asyncio.sleep(start_at - time.time())
        late = time.time() - start_at
        await asyncio.gather(*(worker(indices[t::tasks]) for t in range(tasks)))
        print(time.time(), late)

asyncio.run(main(*sys.argv[1:]))
"""


async def in_processes(url: str, conv: int, total: int, tasks: int, processes: int = 4) -> float:
    """Run ``total`` updates of one conversation from ``processes`` bot processes of ``tasks``
    tasks each (update ``i`` in process ``i % processes``); return the wall time in seconds."""
    start_at = time.time() + 3.0
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, url, str(conv), repr(start_at), str(tasks),
            ",".join(str(i) for i in range(p, total, processes)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for p in range(processes)
    ]
    ends = []
    for child in children:
        out, err = await child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"worker process failed: {err.decode()[-2000:]}")
        end, late = (float(x) for x in out.split())
        if late > 0.05:
            raise RuntimeError(f"a worker process started {late:.2f} s late; the machine is too busy")
        ends.append(end)
    return max(ends) - start_at


async def throughput(subjects: Subjects, seconds: float, rounds: int) -> list[Row]:
    """Sequential and 100-users rates, interleaved round by round."""
    updates = subjects.updates()
    names = ["statekit", "statekit/aiogram", "aiogram"]
    rows: list[Row] = []
    for scenario, tasks in (("sequential", 1), ("100 users", 100)):
        def runner(name: str, tasks: int = tasks) -> Callable[[], Awaitable[float]]:
            update = updates[name]

            async def run() -> float:
                # worker w of ``tasks`` handles i = w, w + tasks, ...: conversation i % tasks is its own
                return await measure(
                    lambda i: update(1000 + i % tasks, {f"f{i // tasks % 8}": i}),
                    concurrency=tasks,
                    seconds=seconds,
                )

            return run

        rates = await best_of(rounds, *(runner(n) for n in names))
        lost = []
        for name in names:  # one writer per conversation: nothing can be lost; check the last writes
            data = await subjects.data_of(name, 1000)
            lost.append("0" if len(data) == 8 else f"{8 - len(data)} fields missing")
        base = rates[names.index("aiogram")]
        for name, rate, gone in zip(names, rates, lost, strict=True):
            rows.append(Row(scenario, name, tasks, rate, gone, ratio=rate / base))
        await subjects.flush()
    return rows


async def contended(subjects: Subjects, rounds: int, total: int = 1000, tasks: int = 100) -> list[Row]:
    """100 tasks on one conversation, ``total`` updates each adding its own key."""
    updates = subjects.updates()
    names = ["statekit", "statekit/aiogram", "statekit 4 processes", "aiogram"]
    best: dict[str, tuple[float, int]] = {}
    for r in range(rounds):
        for name in names:
            conv = 2000 + r
            if name == "statekit 4 processes":
                if r > 0:
                    continue  # a few seconds of process start-up per round: once is enough
                elapsed = await in_processes(subjects.url, conv, total, tasks // 4)
            else:
                update = updates[name]

                async def worker(w: int, update: UpdateFn = update, conv: int = conv) -> None:
                    for i in range(w, total, tasks):
                        await update(conv, {f"k{i}": i})

                start = time.perf_counter()
                await asyncio.gather(*(worker(w) for w in range(tasks)))
                elapsed = time.perf_counter() - start
            lost = total - len(await subjects.data_of(name, conv))
            rate = total / elapsed
            if name not in best or rate > best[name][0]:
                best[name] = (rate, lost if name not in best else max(lost, best[name][1]))
            else:
                best[name] = (best[name][0], max(lost, best[name][1]))
    await subjects.flush()
    base = best["aiogram"][0]
    return [
        Row("1 user x100", name, tasks, rate, f"{lost}/{total}", ratio=rate / base)
        for name, (rate, lost) in best.items()
    ]


async def fifty_writers(subjects: Subjects, rounds: int, writers: int = 50) -> list[Row]:
    """50 concurrent updates of one user: wall time until all returned, and lost updates."""
    updates = subjects.updates()
    names = ["statekit", "statekit/aiogram", "statekit 4 processes", "statekit cas-only", "aiogram",
             "aiogram + lock"]
    best: dict[str, tuple[float, int]] = {}
    for r in range(rounds):
        for name in names:
            if name in ("aiogram + lock", "statekit 4 processes") and r > 0:
                continue  # seconds per round: once is enough
            conv = 3000 + r
            if name == "statekit 4 processes":
                elapsed = await in_processes(subjects.url, conv, writers, writers // 4 + 1)
            else:
                update = updates[name]
                start = time.perf_counter()
                await asyncio.gather(*(update(conv, {f"k{i}": i}) for i in range(writers)))
                elapsed = time.perf_counter() - start
            lost = writers - len(await subjects.data_of(name, conv))
            prev = best.get(name)
            worst_lost = lost if prev is None else max(lost, prev[1])
            best[name] = (min(elapsed, prev[0]) if prev else elapsed, worst_lost)
    await subjects.flush()
    base = best["aiogram"][0]
    return [
        Row(f"{writers} writers", name, writers, writers / wall, f"{lost}/{writers}", wall * 1000,
            ratio=base / wall)
        for name, (wall, lost) in best.items()
    ]


def table(rows: list[Row]) -> str:
    lines = [
        "### FSM update_data: statekit vs aiogram RedisStorage (same redis-server)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC · {machine()}",
        "",
        "| scenario | subject | tasks | updates/s | vs aiogram | lost updates | wall time |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratio = f"{row.ratio:.2f}×" if row.ratio is not None else "—"
        wall = f"{row.wall_ms:,.1f} ms" if row.wall_ms is not None else "—"
        lines.append(
            f"| {row.scenario} | {row.subject} | {row.tasks} | {row.ops_per_s:,.0f} | {ratio} | {row.lost} | {wall} |"
        )
    return "\n".join(lines)


async def main(seconds: float, rounds: int, json_path: str | None) -> None:
    server = RedisServer()
    server.start()
    subjects = Subjects(server.url)
    try:
        await subjects.start()
        rows = await throughput(subjects, seconds, rounds)
        rows += await contended(subjects, rounds)
        rows += await fifty_writers(subjects, rounds)
    finally:
        await subjects.stop()
        server.cleanup()
    print(table(rows), flush=True)
    write_json(
        json_path,
        "fsm",
        [
            Result(
                group=row.scenario,
                subject=row.subject,
                operation="update_data",
                concurrency=row.tasks,
                ops_per_s=row.ops_per_s,
                baseline=None if row.subject == "aiogram" else "aiogram",
                ratio=None if row.subject == "aiogram" else row.ratio,
                note=f"lost {row.lost}" + (f", wall {row.wall_ms:.1f} ms" if row.wall_ms is not None else ""),
            )
            for row in rows
        ],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per throughput measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best is kept)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write results as JSON here")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds, args.json_path))
