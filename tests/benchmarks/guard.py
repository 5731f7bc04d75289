"""The cost of ``BaseStorage._guard`` (the one opening of every one-key operation) against the
two inline lines it replaced, in one process, interleaved round by round, on MemoryStorage (the
backend where it weighs most: an operation is about a microsecond).

Run: ``python -m tests.benchmarks.guard [--rounds 15] [--n 200000]``. Prints ns per
``get_state`` and ``delete_state`` of each variant (best and median of the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from statekit import MemoryStorage
from statekit.codec import decode_stored
from statekit.storage import base


class InlineGuard(MemoryStorage):
    """MemoryStorage with the opening lines written inline, as before the guard helper."""

    async def get_state(self, key: str) -> Any:
        if self._lifecycle is not base._STARTED:
            await self._ensure_started()
        if type(key) is not str or not key or len(key) > self._max_key_chars or not key.isascii():
            self._check_key(key)
        stored = await self._get(key)
        if stored is None or isinstance(stored, int):
            return stored
        if stored and stored[0] >= 0x80:
            try:
                return self._fast_decode(stored)
            except Exception:  # noqa: BLE001 - as in BaseStorage.get_state
                pass
        return decode_stored(self.codec, key, stored)

    async def delete_state(self, key: str) -> bool:
        if self._lifecycle is not base._STARTED:
            await self._ensure_started()
        if type(key) is not str or not key or len(key) > self._max_key_chars or not key.isascii():
            self._check_key(key)
        return await self._delete(key)


async def _ns_per_op(storage: MemoryStorage, op: str, n: int) -> float:
    call = getattr(storage, op)
    keys = [f"k{i & 1023}" for i in range(n)]
    start = time.perf_counter()
    for key in keys:
        await call(key)
    return (time.perf_counter() - start) / n * 1e9


async def main_async(rounds: int, n: int) -> None:
    guarded, inline = MemoryStorage(), InlineGuard()
    value = {"state": "Form:name", "data": {"name": "Ada"}}
    for storage in (guarded, inline):
        await storage.set_many({f"k{i}": value for i in range(1024)})
    results: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        pair = [("guard helper", guarded), ("inline lines", inline)]
        for name, storage in pair if r % 2 == 0 else pair[::-1]:
            for op in ("get_state", "delete_state"):
                results.setdefault((op, name), []).append(await _ns_per_op(storage, op, n))
    print(f"{'operation':13} {'variant':13} {'best ns':>8} {'median ns':>10}")
    for op in ("get_state", "delete_state"):
        for name in ("inline lines", "guard helper"):
            got = results[(op, name)]
            print(f"{op:13} {name:13} {min(got):>8.0f} {statistics.median(got):>10.0f}")
        ratio = statistics.median(results[(op, "guard helper")]) / statistics.median(results[(op, "inline lines")])
        print(f"{op:13} guard/inline median time ratio: {ratio:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.rounds, args.n))


if __name__ == "__main__":
    main()
