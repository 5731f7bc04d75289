"""Conversation-timeout benchmark (issue 18): what arming costs an FSM write, how fast one process
fires due timeouts with 100,000 others pending, what an idle poll costs, and how late a timeout
fires at idle. Memory, SQLite (file) and Redis (a throwaway redis-server), in one run.

Run: ``python -m tests.benchmarks.timeouts [--pending 100000] [--due 5000] [--seconds 1]
[--rounds 3] [--json out.json]``.

* ``write`` rows: ``FSMContext.set_state`` on 1,000 conversations, by 1 and by 100 tasks, on a
  storage where a timeout is declared for that state (every write re-arms it) against the same
  backend without timeouts (the baseline), interleaved rounds, best of each; plus the storage
  operations one write costs, counted (the two index writes are issued together: one round trip
  on Redis, whose connection lanes pipeline them).
* ``fire`` rows: ``--pending`` conversations armed an hour ahead, then ``--due`` armed to fall due;
  one started ``Timeouts`` fires them (handler does nothing): fired/s from start to the last one.
* ``idle poll`` rows: polls/s with nothing due, with ``--pending`` deadlines pending against a
  store with none (the same cost is the goal: no scans), and the round trips of one poll; best
  of 7 rounds of 100 polls, the two alternating.
* ``latency`` rows: at idle (default poll_interval 0.25 s), deadlines falling due at random times;
  how late they fire (goal: <= poll_interval + 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from statekit import BaseStorage, MemoryStorage, RedisStorage, SQLiteStorage
from statekit.fsm import FSMContext, StorageKey, TimeoutEvent, Timeouts
from statekit.fsm._timers import SETTLE_MS
from statekit.testing import RedisServer
from tests.benchmarks._harness import Result, best_of, machine, measure, print_table, write_json

PENDING, DUE, IDLE = "Bench:pending", "Bench:due", "Bench:idle"
IDLE_ROUNDS, IDLE_POLLS = 7, 100


def key(n: int) -> StorageKey:
    return StorageKey(1, n, n)


async def _noop(event: TimeoutEvent) -> None:
    return None


def _counting(storage: BaseStorage) -> dict[str, int]:
    """Count the public operations called on ``storage`` (each is one round trip)."""
    counts: dict[str, int] = {}
    for name in ("get_state", "set_state", "compare_and_set", "compare_and_set_encoded",
                 "get_many", "set_many", "increment", "delete_state", "delete_many"):
        original = getattr(storage, name)

        def wrap(original: Callable[..., Awaitable[Any]], name: str) -> Callable[..., Awaitable[Any]]:
            async def counted(*args: Any, **kwargs: Any) -> Any:
                counts[name] = counts.get(name, 0) + 1
                return await original(*args, **kwargs)

            return counted

        setattr(storage, name, wrap(original, name))
    return counts


async def bench_writes(
    label: str, make: Callable[[str], BaseStorage], seconds: float, rounds: int
) -> list[Result]:
    plain, armed = make(f"w{uuid.uuid4().hex[:6]}"), make(f"a{uuid.uuid4().hex[:6]}")
    await plain.start()
    await armed.start()
    Timeouts(armed).on(IDLE, after=3600)(_noop)
    rows: list[Result] = []
    try:
        for tasks in (1, 100):
            def op(storage: BaseStorage) -> Callable[[int], Awaitable[None]]:
                contexts = [FSMContext(storage, key(n)) for n in range(1000)]

                async def write(i: int) -> None:
                    await contexts[i % 1000].set_state(IDLE)

                return write

            base, mine = await best_of(
                rounds,
                lambda tasks=tasks: measure(op(plain), concurrency=tasks, seconds=seconds),  # type: ignore[misc]
                lambda tasks=tasks: measure(op(armed), concurrency=tasks, seconds=seconds),  # type: ignore[misc]
            )
            rows.append(Result("write", f"{label}, no timeouts", "set_state", tasks, base))
            rows.append(Result("write", f"{label}, timeout armed", "set_state", tasks, mine,
                               f"{label}, no timeouts", mine / base))
        for storage, what in ((plain, "no timeouts"), (armed, "timeout armed")):
            contexts = [FSMContext(storage, key(n)) for n in range(200)]
            for ctx in contexts:  # warm the writer's memory of each record (as a running bot)
                await ctx.set_state(IDLE)
            counts = _counting(storage)
            for ctx in contexts:
                await ctx.set_state(IDLE)
            per = sum(counts.values()) / len(contexts)
            detail = ", ".join(f"{k} {v / len(contexts):g}" for k, v in sorted(counts.items()))
            if counts.get("set_state"):
                detail += "; the two index set_state calls are issued together"
            rows.append(Result("write", f"{label}, {what}", "storage operations per write (1 task)",
                               1, per, note=detail))
    finally:
        for storage in (plain, armed):
            await storage.clear_namespace()
            await storage.stop()
    return rows


async def bench_fire(label: str, make: Callable[[str], BaseStorage], pending: int, due: int) -> list[Result]:
    storage = make(f"f{uuid.uuid4().hex[:6]}")
    empty = make(f"e{uuid.uuid4().hex[:6]}")
    await storage.start()
    await empty.start()
    timeouts = Timeouts(storage)
    fired: list[float] = []

    async def count(event: TimeoutEvent) -> None:
        fired.append(event.late)

    timeouts.on(PENDING, after=3600)(_noop)
    timeouts.on(DUE, after=0.5)(count)
    idle = Timeouts(empty)
    idle.on(IDLE, after=3600)(_noop)
    rows: list[Result] = []
    try:
        t0 = time.perf_counter()
        for i in range(0, pending, 500):
            await asyncio.gather(*(FSMContext(storage, key(n)).set_state(PENDING)
                                   for n in range(i, min(pending, i + 500))))
        arm_s = time.perf_counter() - t0
        rows.append(Result("fire", label, f"arm {pending:,} pending (500 tasks)", 500, pending / arm_s))
        for i in range(0, due, 500):
            await asyncio.gather(*(FSMContext(storage, key(pending + n)).set_state(DUE)
                                   for n in range(i, min(due, i + 500))))
        await asyncio.sleep(0.6)
        t0 = time.perf_counter()
        await timeouts.start()
        while len(fired) < due:
            await asyncio.sleep(0.01)
        fire_s = time.perf_counter() - t0
        rows.append(Result("fire", label, f"fire {due:,} due, {pending:,} pending", 1, due / fire_s,
                           note=f"{fire_s:.1f} s for all"))
        # idle polls: with everything pending, and on an empty store (once the buckets just
        # fired have settled, so both read only the seconds around now); both started, so their
        # own polls (4 a second) run alongside the measured ones
        await FSMContext(empty, key(0)).set_state(IDLE)  # registers a writer, like the other
        await idle.start()
        await asyncio.sleep(SETTLE_MS / 1000 + 1.5)
        # best of IDLE_ROUNDS rounds of IDLE_POLLS polls, the two pollers alternating round by
        # round (50 polls timed once spread 0.6-1.2x from run to run)
        best = [0.0, 0.0]
        trips = [0.0, 0.0]
        counted = [_counting(poller.storage) for poller in (idle, timeouts)]
        for _ in range(IDLE_ROUNDS):
            for i, poller in enumerate((idle, timeouts)):
                await poller._poll()
                counts = counted[i]
                counts.clear()
                t0 = time.perf_counter()
                for _ in range(IDLE_POLLS):
                    await poller._poll()
                best[i] = max(best[i], IDLE_POLLS / (time.perf_counter() - t0))
                trips[i] = sum(counts.values()) / IDLE_POLLS
        rates = list(zip(best, trips, strict=True))
        await idle.stop()
        await timeouts.stop()
        (empty_rate, empty_ops), (busy_rate, busy_ops) = rates
        rows.append(Result("idle poll", f"{label}, nothing pending", "polls/s", 1, empty_rate,
                           note=f"{empty_ops:g} round trips per poll"))
        rows.append(Result("idle poll", f"{label}, {pending + due:,} armed", "polls/s", 1, busy_rate,
                           f"{label}, nothing pending", busy_rate / empty_rate,
                           note=f"{busy_ops:g} round trips per poll"))
    finally:
        for s in (storage, empty):
            await s.clear_namespace()
            await s.stop()
    return rows


async def bench_latency(label: str, make: Callable[[str], BaseStorage], samples: int) -> list[Result]:
    storage = make(f"l{uuid.uuid4().hex[:6]}")
    await storage.start()
    timeouts = Timeouts(storage)
    late: list[float] = []

    async def record(event: TimeoutEvent) -> None:
        late.append(event.late)

    timeouts.on(DUE, after=0.3)(record)
    try:
        async with timeouts:
            for n in range(samples):
                await FSMContext(storage, key(n)).set_state(DUE)
                await asyncio.sleep(0.05 + (n * 0.037) % 0.25)
            while len(late) < samples:
                await asyncio.sleep(0.05)
    finally:
        await storage.clear_namespace()
        await storage.stop()
    ms = sorted(x * 1000 for x in late)
    return [Result("latency", label, "due -> fired (ms): median / p95 / max", 1,
                   statistics.median(ms),
                   note=f"p95 {ms[int(len(ms) * 0.95) - 1]:.0f} ms, max {ms[-1]:.0f} ms "
                        f"(poll_interval 250 ms; goal <= 300 ms)")]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=5_000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    parser.add_argument("--only", choices=["memory", "sqlite", "redis"], action="append")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="statekit-bench-timeouts-"))
    server = RedisServer()
    server.start()
    backends: dict[str, Callable[[str], BaseStorage]] = {
        "memory": lambda ns: MemoryStorage(namespace=ns),
        "sqlite": lambda ns: SQLiteStorage(tmp / "bench.db", namespace=ns),
        "redis": lambda ns: RedisStorage(server.url, namespace=ns),
    }
    rows: list[Result] = []
    try:
        for label, make in backends.items():
            if args.only and label not in args.only:
                continue
            print(f"# {label}", flush=True)
            rows += await bench_writes(label, make, args.seconds, args.rounds)
            rows += await bench_fire(label, make, args.pending, args.due)
            rows += await bench_latency(label, make, args.samples)
    finally:
        server.cleanup()
    print(f"\n{machine()}\n")
    print_table("Conversation timeouts", rows)
    if args.json:
        write_json(args.json, "timeouts", rows)


if __name__ == "__main__":
    asyncio.run(main())
