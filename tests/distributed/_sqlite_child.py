"""Child process of test_faults.py: writes to a SQLite file until it is killed.

``python _sqlite_child.py PATH TAG``: waits for one line on stdin, then runs 8 concurrent writers
and prints one line per write *after* the write's coroutine returned (= acknowledged):
``set KEY I``, ``many KEY I``, ``incr KEY VALUE`` or ``cas KEY VALUE``.
"""

from __future__ import annotations

import asyncio
import sys

from statekit.storage.sqlite import SQLiteStorage


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def writer(storage: SQLiteStorage, tag: str, w: int) -> None:
    i = 0
    while True:
        i += 1
        key = f"{tag}-{w}-{i}"
        op = i % 4
        if op == 0:
            await storage.set_state(key, {"w": w, "i": i, "pad": "x" * (i % 50)})
            emit(f"set {key} {i}")
        elif op == 1:
            value = await storage.increment(f"counter-{w}")
            emit(f"incr counter-{w} {value}")
        elif op == 2:
            await storage.set_many({f"{key}a": i, f"{key}b": [i]})
            emit(f"many {key} {i}")
        else:
            cas_key = f"cas-{w}"
            current = await storage.get_state(cas_key)
            new = (current or 0) + 1
            if await storage.compare_and_set(cas_key, new, expected=current):
                emit(f"cas {cas_key} {new}")


async def main(path: str, tag: str) -> None:
    async with SQLiteStorage(path, namespace="crash") as storage:
        await asyncio.gather(*(writer(storage, tag, w) for w in range(8)))


if __name__ == "__main__":
    sys.stdin.readline()
    asyncio.run(main(sys.argv[1], sys.argv[2]))
