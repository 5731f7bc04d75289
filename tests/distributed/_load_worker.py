"""Worker of test_load.py (run in a spawned process): a fixed number of mixed operations.

``run(url, index, ops, tasks, go, results)`` waits for ``go``, runs ``ops`` logical operations over
``tasks`` coroutines against ``open_storage(url)`` and puts a report dict on ``results``.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from statekit import SerializationError, StatekitError, WrongTypeError, open_storage

COUNTERS = [f"ctr:{i}" for i in range(8)]
CAS_KEYS = [f"cas:{i}" for i in range(32)]


async def _work(url: str, index: int, ops: int, tasks: int) -> dict[str, Any]:
    increments: Counter[str] = Counter()
    cas_adds: Counter[str] = Counter()
    expected_errors: Counter[str] = Counter()
    unexpected: list[str] = []
    finals: dict[str, int] = {}
    retries = 0
    done = 0
    async with open_storage(url, max_value_bytes=4096) as storage:
        await storage.set_state(f"text:{index}", "not a number")

        async def one(rng: random.Random, task: int) -> None:
            nonlocal retries, done
            op = rng.randrange(100)
            mine = f"p{index}:t{task}:{rng.randrange(20)}"
            try:
                if op < 30:
                    key = rng.choice(COUNTERS)
                    await storage.increment(key, 1, ttl=600)
                    increments[key] += 1
                elif op < 45:
                    key = rng.choice(CAS_KEYS)
                    while True:
                        current = await storage.get_state(key)
                        new = {"n": (current or {"n": 0})["n"] + 1, "by": index}
                        if await storage.compare_and_set(key, new, expected=current):
                            cas_adds[key] += 1
                            break
                        retries += 1
                elif op < 60:
                    value = rng.randrange(1_000_000)
                    await storage.set_state(mine, {"v": value}, ttl=600)
                    finals[mine] = value
                elif op < 75:
                    got = await storage.get_state(mine)
                    if mine in finals and got != {"v": finals[mine]}:
                        unexpected.append(f"read {mine}: {got!r} != {finals[mine]!r}")
                elif op < 82:
                    batch = {f"{mine}:{j}": j for j in range(5)}
                    await storage.set_many(batch, ttl=600)
                    got_many = await storage.get_many(list(batch))
                    if got_many != batch:
                        unexpected.append(f"get_many {mine}: {got_many!r}")
                elif op < 88:
                    await storage.expire(mine, 300)
                    await storage.get_ttl(mine)
                elif op < 93:
                    if await storage.delete_state(mine):
                        finals.pop(mine, None)
                elif op < 97:
                    # expected: a counter increment of a text value
                    try:
                        await storage.increment(f"text:{index}")
                        unexpected.append("increment of text succeeded")
                    except WrongTypeError:
                        expected_errors["WrongTypeError"] += 1
                else:
                    # expected: a value over max_value_bytes
                    try:
                        await storage.set_state(mine + ":big", "x" * 5000)
                        unexpected.append("oversized value accepted")
                    except SerializationError:
                        expected_errors["SerializationError"] += 1
            except (StatekitError, OSError) as exc:
                unexpected.append(f"{type(exc).__name__}: {exc}")
            done += 1

        async def loop(task: int, count: int) -> None:
            rng = random.Random(index * 1000 + task)
            for _ in range(count):
                await one(rng, task)

        share, extra = divmod(ops, tasks)
        await asyncio.gather(*(loop(t, share + (t < extra)) for t in range(tasks)))
        # the last value this process wrote to each of its own keys is what it reads back now
        check = await storage.get_many(list(finals))
        for key, value in finals.items():
            if check.get(key) != {"v": value}:
                unexpected.append(f"final {key}: {check.get(key)!r} != {value}")
    return {
        "ops": done,
        "increments": dict(increments),
        "cas": dict(cas_adds),
        "retries": retries,
        "expected_errors": dict(expected_errors),
        "unexpected": unexpected[:20],
        "unexpected_count": len(unexpected),
    }


def run(url: str, index: int, ops: int, tasks: int, go: Any, results: Any) -> None:
    """Process entry point (see the module docstring)."""
    go.wait(60)
    try:
        report = asyncio.run(_work(url, index, ops, tasks))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        report = {"crash": f"{type(exc).__name__}: {exc}"}
    report["index"] = index
    results.put(report)
