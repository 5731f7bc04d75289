"""``DictStorage``: a whole statekit backend over a dict, using only statekit's public API (the
example of docs/writing-a-backend.md). URL: ``dict://?namespace=...`` once registered."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from statekit import BaseStorage
from statekit.storage.base import Stored, same_stored
from statekit.storage.url import StorageURL

Row = tuple[Stored, float | None]  # (stored value, expiry on the clock or None)


class DictStorage(BaseStorage):
    """Keys live in ``rows`` (shared between storages to model one server), by namespace."""

    backend_name = "dict"

    def __init__(self, *, rows: dict[tuple[str, str], Row] | None = None,
                 clock: Callable[[], float] = time.monotonic, **options: Any) -> None:
        super().__init__(**options)
        self.rows = {} if rows is None else rows
        self.clock = clock

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DictStorage:
        common, _ = StorageURL.parse(url).storage_options()
        return cls(**{**common, **options})

    def _live(self, key: str) -> Row | None:
        row = self.rows.get((self.namespace, key))
        if row is not None and row[1] is not None and row[1] <= self.clock():
            del self.rows[(self.namespace, key)]
            return None
        return row

    def _put(self, key: str, stored: Stored, ttl_ms: int | None, keep_ttl: bool = False) -> None:
        row = self._live(key)
        if keep_ttl and row is not None:
            at = row[1]
        else:
            at = None if ttl_ms is None else self.clock() + ttl_ms / 1000
        self.rows[(self.namespace, key)] = (stored, at)

    async def _open(self) -> None: ...
    async def _close(self) -> None: ...
    async def _ping(self) -> None: ...

    async def _get(self, key: str) -> Stored | None:
        row = self._live(key)
        return None if row is None else row[0]

    async def _set(self, key: str, stored: Stored, ttl_ms: int | None, keep_ttl: bool) -> None:
        self._put(key, stored, ttl_ms, keep_ttl)

    async def _delete(self, key: str) -> bool:
        return self._live(key) is not None and self.rows.pop((self.namespace, key)) is not None

    async def _compare_and_set(self, key: str, expected: Stored | None, new: Stored | None,
                               ttl_ms: int | None, keep_ttl: bool) -> bool:
        if not same_stored(await self._get(key), expected):
            return False
        if new is None:
            await self._delete(key)
        else:
            self._put(key, new, ttl_ms, keep_ttl)
        return True

    async def _increment(self, key: str, amount: int, ttl_ms: int | None) -> int:
        current = await self._get(key)
        result = self.incremented(key, current, amount)
        self._put(key, result, ttl_ms, keep_ttl=current is not None)
        return result

    async def _get_ttl(self, key: str) -> float | None:
        row = self._live(key)
        return None if row is None or row[1] is None else max(0.0, row[1] - self.clock())

    async def _expire(self, key: str, ttl_ms: int | None) -> bool:
        row = self._live(key)
        if row is not None:
            self._put(key, row[0], ttl_ms)
        return row is not None

    async def _get_many(self, keys: list[str]) -> dict[str, Stored]:
        return {k: v for k in keys if (v := await self._get(k)) is not None}

    async def _set_many(self, items: list[tuple[str, Stored]], ttl_ms: int | None) -> None:
        for key, stored in items:
            self._put(key, stored, ttl_ms)

    async def _delete_many(self, keys: list[str]) -> int:
        return sum([await self._delete(k) for k in keys])

    async def _scan(self, pattern: str) -> AsyncIterator[str]:
        matches = self.glob_matcher(pattern)
        for ns, key in list(self.rows):
            if ns == self.namespace and self._live(key) is not None and matches(key):
                yield key

    async def _clear(self) -> int:
        keys = [k for ns, k in list(self.rows) if ns == self.namespace and self._live(k)]
        for key in keys:
            del self.rows[(self.namespace, key)]
        return len(keys)
