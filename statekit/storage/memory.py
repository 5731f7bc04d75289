"""In-process storage: a dict of encoded values, for tests, scripts and single-process bots.

URL: ``memory://`` with optional ``max_keys`` / ``max_bytes`` parameters. No extra needed.
Values are kept encoded, so what you read is always a fresh object. Expiry is checked on every
access; while started, a sweeper task reclaims expired keys. ``max_keys`` and ``max_bytes`` bound
memory by evicting the least recently used keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

from statekit._release import empty_in_slices
from statekit.codec import Codec
from statekit.storage._fastpath import FastPathStorage
from statekit.storage._glob import compile_glob
from statekit.storage.base import Stored, same_stored
from statekit.storage.url import StorageURL, int_param, url_error

__all__ = ["MemoryStorage"]

_INT_BYTES = 8  # what a native integer counts towards max_bytes
_BUCKET_SHIFT = 6  # expiry buckets of 64 ms: what the sweeper may leave behind
_CHUNK = 2000
"""Keys a scan, sweep or clear handles between two yields to the event loop (about a
millisecond of work), so a million keys never hold the loop in one piece."""


class MemoryStorage(FastPathStorage):
    """Storage in this process's memory.

    ``clock`` returns seconds (default ``time.monotonic``) and may be replaced in tests;
    ``sweep_interval`` is how often (seconds) the sweeper reclaims expired keys;
    ``max_keys`` (None: unbounded) evicts least-recently-used keys beyond that count;
    ``max_bytes`` (None: unbounded) evicts least-recently-used keys while the keys' characters
    plus the stored values' bytes (8 for a counter) exceed it. It must be at least
    ``max_key_bytes + max_value_bytes``, so that any one value fits. Raises ``ValueError`` for a
    bad bound.
    """

    backend_name = "memory"

    def __init__(
        self,
        *,
        namespace: str = "statekit",
        default_ttl: int | float | timedelta | None = None,
        codec: Codec | None = None,
        max_keys: int | None = None,
        max_bytes: int | None = None,
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
        if max_bytes is not None and (
            type(max_bytes) is not int or max_bytes < max_key_bytes + max_value_bytes
        ):
            raise ValueError(
                f"max_bytes must be an int of at least max_key_bytes + max_value_bytes "
                f"({max_key_bytes + max_value_bytes}) or None, got {max_bytes!r}"
            )
        if not sweep_interval > 0:
            raise ValueError(f"sweep_interval must be > 0, got {sweep_interval!r}")
        self.max_keys = max_keys
        self.max_bytes = max_bytes
        self._bounded = max_keys is not None or max_bytes is not None
        self._sized = max_bytes is not None
        self._size = 0
        """Bytes of keys and values held (kept only with ``max_bytes``)."""
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._data: OrderedDict[str, Stored] = OrderedDict()
        self._expiry: dict[str, int] = {}
        self._due: dict[int, set[str]] = {}
        """Keys with an expiry by ``at >> _BUCKET_SHIFT`` (64 ms buckets): the sweeper walks
        only the buckets that are due, never every key with an expiry."""
        self._due_order: list[int] = []
        """A heap of the bucket numbers in ``_due`` (possibly some already taken)."""
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryStorage:
        """A ``MemoryStorage`` for ``memory://[?namespace=&default_ttl=&max_keys=&max_bytes=]``;
        keyword ``options`` win. Raises ``ValueError`` naming a malformed part."""
        parsed = StorageURL.parse(url)
        if parsed.scheme != "memory":
            raise url_error(parsed.scheme, "MemoryStorage opens only memory:// URLs")
        if parsed.userinfo is not None or parsed.host or parsed.path not in ("", "/"):
            raise url_error("memory", "a memory:// URL has no host or path, only parameters")
        common, extra = parsed.storage_options({"max_keys": int_param(1), "max_bytes": int_param(1)})
        return cls(**{**common, **extra, **options})

    def describe(self) -> str:
        return "memory://"

    @staticmethod
    def _cost(key: str, stored: Stored) -> int:
        return len(key) + (_INT_BYTES if type(stored) is int else len(stored))  # type: ignore[arg-type]

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
            await self._sweep_in_chunks()

    async def _sweep_in_chunks(self) -> int:
        """Remove the keys of every expiry bucket wholly in the past (so every key expired at
        least one bucket, 64 ms, ago), ``_CHUNK`` keys at a time with a yield to the loop
        between chunks; return how many keys were removed.

        Only due buckets are visited (never every key with an expiry). A bucket is taken out of
        ``_due`` before it is walked, so it is private to this sweep; a key whose expiry moved
        meanwhile is checked against its current expiry and kept if that is still ahead."""
        removed = 0
        now = self._now_ms()
        limit = now >> _BUCKET_SHIFT
        heap = self._due_order
        while heap and heap[0] < limit:
            keys = self._due.pop(heapq.heappop(heap), None)
            if not keys:
                continue
            while keys:
                expiry, data = self._expiry, self._data
                # popped, not iterated: the bucket may hold the last reference to a million
                # keys, and freeing them all at once would hold the loop
                for k in [keys.pop() for _ in range(min(_CHUNK, len(keys)))]:
                    at = expiry.get(k)
                    if at is not None and at <= now:
                        del expiry[k]
                        stored = data.pop(k, None)
                        removed += 1
                        if stored is not None and self._sized:
                            self._size -= self._cost(k, stored)
                await asyncio.sleep(0)
        return removed

    def sweep(self) -> int:
        """Remove every expired key now; return how many were removed."""
        now = self._now_ms()
        dead = [k for k, at in self._expiry.items() if at <= now]
        for k in dead:
            self._drop_expiry(k)
            stored = self._data.pop(k, None)
            if stored is not None and self._sized:
                self._size -= self._cost(k, stored)
        return len(dead)

    def _set_expiry(self, key: str, at: int) -> None:
        """Make ``key`` expire at ``at`` (ms), moving it to the expiry bucket of ``at``."""
        old = self._expiry.get(key)
        self._expiry[key] = at
        b = at >> _BUCKET_SHIFT
        if old is not None:
            if old >> _BUCKET_SHIFT == b:
                return
            self._undue(key, old)
        bucket = self._due.get(b)
        if bucket is None:
            self._due[b] = {key}
            heapq.heappush(self._due_order, b)
        else:
            bucket.add(key)

    def _undue(self, key: str, at: int) -> None:
        """Take ``key`` out of the expiry bucket of ``at`` (unless a sweep has taken the bucket)."""
        bucket = self._due.get(at >> _BUCKET_SHIFT)
        if bucket is not None:
            bucket.discard(key)

    def _drop_expiry(self, key: str) -> None:
        """Remove the expiry of ``key``, if any."""
        at = self._expiry.pop(key, None)
        if at is not None:
            self._undue(key, at)

    # ------------------------------------------------------------------ helpers

    def _live(self, key: str) -> Stored | None:
        """Return the stored form of a live key, dropping it if it has expired."""
        stored = self._data.get(key)
        if stored is None:
            return None
        at = self._expiry.get(key)
        if at is not None and at <= self._now_ms():
            del self._data[key]
            self._drop_expiry(key)
            if self._sized:
                self._size -= self._cost(key, stored)
            return None
        if self._bounded:
            self._data.move_to_end(key)
        return stored

    def _write(self, key: str, stored: Stored, ttl_ms: int | None, keep_ttl: bool) -> None:
        old = self._live(key)
        self._data[key] = stored
        if keep_ttl and old is not None:
            pass
        elif ttl_ms is None:
            if self._expiry:
                self._drop_expiry(key)
        else:
            self._set_expiry(key, self._now_ms() + ttl_ms)
        if self._sized:
            self._size += self._cost(key, stored) - (0 if old is None else self._cost(key, old))
        if self._bounded:
            self._data.move_to_end(key)
            self._evict()

    def _evict(self) -> None:
        """Drop least recently used keys until ``max_keys`` and ``max_bytes`` hold."""
        most_keys = self.max_keys if self.max_keys is not None else len(self._data)
        most_bytes = self.max_bytes if self.max_bytes is not None else self._size
        while len(self._data) > most_keys or self._size > most_bytes:
            old, stored = self._data.popitem(last=False)
            self._drop_expiry(old)
            if self._sized:
                self._size -= self._cost(old, stored)

    def _remove(self, key: str) -> bool:
        stored = self._live(key)
        if stored is None:
            return False
        del self._data[key]
        self._drop_expiry(key)
        if self._sized:
            self._size -= self._cost(key, stored)
        return True

    def _plant(self, key: str, raw: bytes) -> None:
        """Store ``raw`` under ``key`` without the codec (the test hook of ``statekit.testing``)."""
        self._remove(key)
        self._data[key] = raw
        if self._sized:
            self._size += self._cost(key, raw)

    # ------------------------------------------------------------------ primitives

    async def _get(self, key: str) -> Stored | None:
        stored = self._data.get(key)
        if stored is None:
            return None
        if self._expiry and key in self._expiry or self._bounded:
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
        result = self.incremented(key, current, amount)
        if current is None:
            self._write(key, result, ttl_ms, False)
        else:
            self._data[key] = result  # an int replaces an int: the size does not change
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
            self._drop_expiry(key)
        else:
            self._set_expiry(key, self._now_ms() + ttl_ms)
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

    _scan_may_repeat = False  # a scan walks a snapshot of the keys: each comes at most once

    async def _scan(self, pattern: str) -> AsyncIterator[str]:
        matches = compile_glob(pattern)
        # The snapshot is a plain-dict copy of the keys (~15 ms per million; iterating the
        # OrderedDict itself costs 15x that). Keys are then checked and yielded in chunks,
        # with a yield to the loop after each, whether or not anything matched.
        keys = list(dict.keys(self._data))
        for start in range(0, len(keys), _CHUNK):
            for key in keys[start : start + _CHUNK]:
                if key in self._data and self._live(key) is not None and matches(key):
                    yield key
            await asyncio.sleep(0)

    async def _clear(self) -> int:
        # Swap in empty maps at once (so the namespace is empty from this instant: every key
        # present now is deleted, keys set from now on survive), then count and free the old
        # ones in chunks: freeing a million values in one piece holds the loop ~50 ms.
        data, expiry = self._data, self._expiry
        self._data, self._expiry, self._size = OrderedDict(), {}, 0
        self._due, self._due_order = {}, []
        now = self._now_ms()
        count = len(data)
        pending = iter(expiry.items())  # the old maps are private now: no one mutates them
        while chunk := list(itertools.islice(pending, _CHUNK)):
            count -= sum(1 for k, at in chunk if at <= now and k in data)
            await asyncio.sleep(0)
        for old in (data, expiry):
            await empty_in_slices(old, _CHUNK)
        return count
