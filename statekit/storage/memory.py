"""In-process storage: a dict of encoded values, for tests, scripts and single-process bots.

URL: ``memory://``. No extra needed. Values are kept encoded, so what you read is always a fresh
object. Expiry is checked on every access; while started, a sweeper task reclaims expired keys.
``max_keys`` bounds memory by evicting the least recently used keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

from statekit.codec import Codec
from statekit.storage._glob import compile_glob
from statekit.storage.base import BaseStorage, Stored, same_stored

__all__ = ["MemoryStorage"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class MemoryStorage(BaseStorage):
    """Storage in this process's memory.

    ``clock`` returns seconds (default ``time.monotonic``) and may be replaced in tests;
    ``sweep_interval`` is how often (seconds) the sweeper reclaims expired keys;
    ``max_keys`` (None: unbounded) evicts least-recently-used keys beyond that count.
    """

    backend_name = "memory"

    def __init__(
        self,
        *,
        namespace: str = "statekit",
        default_ttl: int | float | timedelta | None = None,
        codec: Codec | None = None,
        max_keys: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sweep_interval: float = 1.0,
        max_key_bytes: int = 1024,
        max_value_bytes: int = 1024 * 1024,
    ) -> None:
        super().__init__(
            namespace=namespace,
            default_ttl=default_ttl,
            codec=codec,
            max_key_bytes=max_key_bytes,
            max_value_bytes=max_value_bytes,
        )
        if max_keys is not None and (type(max_keys) is not int or max_keys < 1):
            raise ValueError(f"max_keys must be a positive int or None, got {max_keys!r}")
        if not sweep_interval > 0:
            raise ValueError(f"sweep_interval must be > 0, got {sweep_interval!r}")
        self.max_keys = max_keys
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._data: OrderedDict[str, Stored] = OrderedDict()
        self._expiry: dict[str, int] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def _describe(self) -> str:
        return "memory://"

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ------------------------------------------------------------------ lifecycle

    async def _open(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="statekit-memory-sweeper")

    async def _close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _ping(self) -> None:
        return None

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            self.sweep()

    def sweep(self) -> int:
        """Remove every expired key now; return how many were removed."""
        now = self._now_ms()
        dead = [k for k, at in self._expiry.items() if at <= now]
        for k in dead:
            del self._expiry[k]
            self._data.pop(k, None)
        return len(dead)

    # ------------------------------------------------------------------ helpers

    def _live(self, key: str) -> Stored | None:
        """Return the stored form of a live key, dropping it if it has expired."""
        stored = self._data.get(key)
        if stored is None:
            return None
        at = self._expiry.get(key)
        if at is not None and at <= self._now_ms():
            del self._data[key]
            del self._expiry[key]
            return None
        if self.max_keys is not None:
            self._data.move_to_end(key)
        return stored

    def _write(self, key: str, stored: Stored, ttl_ms: int | None, keep_ttl: bool) -> None:
        existed = self._live(key) is not None
        self._data[key] = stored
        if keep_ttl and existed:
            pass
        elif ttl_ms is None:
            self._expiry.pop(key, None)
        else:
            self._expiry[key] = self._now_ms() + ttl_ms
        if self.max_keys is not None:
            self._data.move_to_end(key)
            while len(self._data) > self.max_keys:
                old, _ = self._data.popitem(last=False)
                self._expiry.pop(old, None)

    def _remove(self, key: str) -> bool:
        if self._live(key) is None:
            return False
        del self._data[key]
        self._expiry.pop(key, None)
        return True

    # ------------------------------------------------------------------ primitives

    async def _get(self, key: str) -> Stored | None:
        stored = self._data.get(key)
        if stored is None:
            return None
        if self._expiry and key in self._expiry or self.max_keys is not None:
            return self._live(key)
        return stored

    async def _set(self, key: str, stored: Stored, ttl_ms: int | None, keep_ttl: bool) -> None:
        self._write(key, stored, ttl_ms, keep_ttl)

    async def _delete(self, key: str) -> bool:
        return self._remove(key)

    async def _compare_and_set(
        self,
        key: str,
        expected: Stored | None,
        new: Stored | None,
        ttl_ms: int | None,
        keep_ttl: bool,
    ) -> bool:
        if not same_stored(self._live(key), expected):
            return False
        if new is None:
            self._remove(key)
        else:
            self._write(key, new, ttl_ms, keep_ttl)
        return True

    async def _increment(self, key: str, amount: int, ttl_ms: int | None) -> int:
        current = self._live(key)
        if current is None:
            self._write(key, amount, ttl_ms, False)
            return amount
        if type(current) is not int:
            raise self.wrong_type_error(key)
        result = current + amount
        if not _INT64_MIN <= result <= _INT64_MAX:
            raise self.overflow_error(key, amount)
        self._data[key] = result
        return result

    async def _get_ttl(self, key: str) -> float | None:
        if self._live(key) is None:
            return None
        at = self._expiry.get(key)
        return None if at is None else max(0.0, (at - self._now_ms()) / 1000)

    async def _expire(self, key: str, ttl_ms: int | None) -> bool:
        if self._live(key) is None:
            return False
        if ttl_ms is None:
            self._expiry.pop(key, None)
        else:
            self._expiry[key] = self._now_ms() + ttl_ms
        return True

    async def _get_many(self, keys: list[str]) -> dict[str, Stored]:
        out: dict[str, Stored] = {}
        for key in keys:
            stored = self._live(key)
            if stored is not None:
                out[key] = stored
        return out

    async def _set_many(self, items: list[tuple[str, Stored]], ttl_ms: int | None) -> None:
        for key, stored in items:
            self._write(key, stored, ttl_ms, False)

    async def _delete_many(self, keys: list[str]) -> int:
        return sum(self._remove(key) for key in keys)

    async def _scan(self, pattern: str) -> AsyncIterator[str]:
        matches = compile_glob(pattern)
        batch = 0
        for key in list(self._data):
            if key in self._data and self._live(key) is not None and matches(key):
                yield key
                batch += 1
                if batch % 1000 == 0:
                    await asyncio.sleep(0)

    async def _clear(self) -> int:
        self.sweep()
        count = len(self._data)
        self._data.clear()
        self._expiry.clear()
        return count
