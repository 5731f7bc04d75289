"""The strategy contract, and the compare-and-set loop shared by the sliding window and GCRA.

A strategy enforces a tuple of ``Rate`` s together for one key. ``acquire(key, costs)`` decides a
batch of hits with exactly the outcome they would have one after the other; the limiter batches
concurrent hits of one key so that a batch costs the same round trips as one hit. Refused hits
consume nothing.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from middleware.rate import Rate, RateLimitResult
from statekit import BaseStorage, StatekitError

__all__ = ["CasStrategy", "Clock", "Memo", "Strategy"]

Clock = Callable[[], float]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MAX_TRIES = 200


class Memo(Generic[K, V]):
    """A dict bounded to ``size`` entries; the oldest insertion goes first."""

    __slots__ = ("_data", "_size")

    def __init__(self, size: int) -> None:
        self._data: dict[K, V] = {}
        self._size = size

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def put(self, key: K, value: V) -> None:
        data = self._data
        if len(data) >= self._size and key not in data:
            del data[next(iter(data))]
        data[key] = value

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


class Strategy(abc.ABC):
    """Enforces ``rates`` together for any key, with state kept in ``storage``.

    ``prefix`` starts every storage key the strategy writes; ``clock`` returns seconds (wall
    clock by default, so that processes sharing a storage agree); ``memo_size`` bounds the
    per-process memory of what was last read or written.
    """

    name: ClassVar[str]

    def __init__(
        self,
        storage: BaseStorage,
        rates: Sequence[Rate],
        prefix: str,
        clock: Clock,
        memo_size: int = 10_000,
    ) -> None:
        self.storage = storage
        self.rates = tuple(rates)
        self.prefix = prefix
        self.clock = clock
        self.memo_size = memo_size

    @abc.abstractmethod
    async def acquire(self, key: str, costs: Sequence[int]) -> list[RateLimitResult]:
        """Decide ``costs`` (hits in arrival order) as if made one after the other."""

    @abc.abstractmethod
    async def peek(self, key: str) -> RateLimitResult:
        """Return what a hit of cost 1 would be told now, consuming nothing."""

    @abc.abstractmethod
    async def reset(self, key: str) -> None:
        """Forget every hit counted for ``key``."""

    @abc.abstractmethod
    def storage_keys(self, key: str) -> list[str]:
        """The storage keys that hold ``key``'s state right now."""


class CasStrategy(Strategy):
    """A strategy whose whole state for a key (all rates) is one record, written by
    ``compare_and_set`` with a TTL that ends when the record no longer matters.

    The record last read or written is remembered per key, so an allowed hit costs one round
    trip. A stale memory costs a failed compare-and-set and a re-read; a refusal decided from
    memory is checked against a fresh read (the record may have been reset or evicted), so the
    memory never changes an answer.
    """

    tag: ClassVar[str]

    def __init__(
        self,
        storage: BaseStorage,
        rates: Sequence[Rate],
        prefix: str,
        clock: Clock,
        memo_size: int = 10_000,
    ) -> None:
        super().__init__(storage, rates, prefix, clock, memo_size)
        self._last: Memo[str, Any] = Memo(memo_size)
        slugs = ",".join(rate.slug for rate in self.rates)
        self._name = f"{prefix}:{self.tag}:{slugs}:"

    def storage_keys(self, key: str) -> list[str]:
        return [self._name + key]

    async def acquire(self, key: str, costs: Sequence[int]) -> list[RateLimitResult]:
        name = self._name + key
        storage = self.storage
        last = self._last
        remembered = last.get(name)
        for _ in range(_MAX_TRIES):
            now = self.clock()
            if remembered is not None:
                current = None if self._gone(remembered, now) else remembered
            else:
                current = await storage.get_state(name)
            results, new, ttl = self._decide(current, costs, now)
            if new is None:
                if remembered is not None:
                    remembered = None  # refuse only on what the storage holds now
                    continue
                if current is not None:
                    last.put(name, current)
                return results
            if await storage.compare_and_set(name, new, expected=current, ttl=ttl):
                last.put(name, new)
                return results
            remembered = None
            last.pop(name)
        raise StatekitError(
            f"rate limit on {name!r}: the record kept changing under {_MAX_TRIES} "
            "compare-and-set attempts"
        )

    async def peek(self, key: str) -> RateLimitResult:
        current = await self.storage.get_state(self._name + key)
        return self._peek(current, self.clock())

    async def reset(self, key: str) -> None:
        name = self._name + key
        self._last.pop(name)
        await self.storage.delete_state(name)

    @abc.abstractmethod
    def _gone(self, record: Any, now: float) -> bool:
        """True if ``record``'s TTL has certainly run out by ``now`` (the key is absent)."""

    @abc.abstractmethod
    def _decide(
        self, record: Any, costs: Sequence[int], now: float
    ) -> tuple[list[RateLimitResult], Any, float]:
        """Decide ``costs`` against ``record`` (``None``: no hits yet); return the results, the
        record to write (``None`` when nothing passed) and its TTL in seconds."""

    @abc.abstractmethod
    def _peek(self, record: Any, now: float) -> RateLimitResult:
        """What a hit of cost 1 would be told against ``record``, without counting it."""
