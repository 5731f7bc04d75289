"""``RateLimiter``: several ``Rate`` s enforced together on keys, over any statekit storage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal

from middleware.rate import Rate, RateLimitResult
from middleware.strategies import STRATEGIES, Strategy
from statekit import BaseStorage

__all__ = ["RateLimiter", "StrategyName"]

StrategyName = Literal["fixed", "sliding", "gcra"]

_Waiter = tuple[int, "asyncio.Future[RateLimitResult]"]


class RateLimiter:
    """Enforces every one of ``rates`` on each key, with counters in ``storage``.

    ``strategy``: ``"fixed"`` (one ``increment`` per hit; windows start at a key's first hit),
    ``"sliding"`` (no double burst at a window edge) or ``"gcra"`` (smooth; one timestamp per key);
    see ``middleware.strategies``. Storage keys start with ``prefix``. ``clock`` returns seconds
    and must agree between processes sharing the storage (the wall clock by default).
    ``memo_size`` bounds what each process remembers per key (window ends, previous windows'
    counts, last timestamps).

    Concurrent hits of one key in one process are decided together, in arrival order, at the cost
    of one hit's round trips; the outcome is the same as if they had come one after the other.

    Raises ``TypeError`` for a storage that is not a ``statekit.BaseStorage`` or rates that are
    not ``Rate``, ``ValueError`` for no rates, an unknown strategy or an empty prefix.
    """

    def __init__(
        self,
        storage: BaseStorage,
        *rates: Rate,
        strategy: StrategyName = "fixed",
        prefix: str = "ratelimit",
        clock: Callable[[], float] = time.time,
        memo_size: int = 10_000,
    ) -> None:
        if not isinstance(storage, BaseStorage):
            raise TypeError(
                f"RateLimiter needs a statekit storage (BaseStorage), not {type(storage).__name__}"
            )
        if not rates:
            raise ValueError("RateLimiter needs at least one Rate, e.g. Rate(5, 10)")
        for rate in rates:
            if not isinstance(rate, Rate):
                raise TypeError(f"rates must be Rate objects, got {rate!r}")
        if strategy not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {strategy!r}; choose one of {', '.join(map(repr, STRATEGIES))}"
            )
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty str, got {prefix!r}")
        if isinstance(memo_size, bool) or not isinstance(memo_size, int) or memo_size < 1:
            raise ValueError(f"memo_size must be a positive int, got {memo_size!r}")
        self.storage = storage
        self.rates: tuple[Rate, ...] = tuple(dict.fromkeys(rates))
        self.strategy: StrategyName = strategy
        self.prefix = prefix
        self._impl: Strategy = STRATEGIES[strategy](
            storage, self.rates, prefix, clock, memo_size
        )
        self._max_cost = min(rate.limit for rate in self.rates)
        self._busy: dict[str, list[_Waiter]] = {}
        self._drains: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        rates = ", ".join(map(repr, self.rates))
        return f"RateLimiter({self.storage!r}, {rates}, strategy={self.strategy!r})"

    def _check(self, key: object, cost: object) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"rate-limit key must be a non-empty str, got {key!r}")
        if isinstance(cost, bool) or not isinstance(cost, int):
            raise TypeError(f"cost must be an int, not {type(cost).__name__}")
        if cost < 1:
            raise ValueError(f"cost must be a positive int, got cost={cost!r}")
        if cost > self._max_cost:
            smallest = min(self.rates, key=lambda r: r.limit)
            raise ValueError(
                f"cost={cost} is larger than the limit of {smallest!r}; such a hit could never pass"
            )

    async def hit(self, key: str, cost: int = 1) -> RateLimitResult:
        """Count a hit of ``cost`` on ``key`` if every rate allows it; say whether it passed.

        A refused hit consumes no quota on any rate. Raises ``ValueError`` for an empty key or a
        cost that is not positive or exceeds a rate's limit; storage errors
        (``StorageUnavailableError``, ...) propagate.
        """
        if not (type(key) is str and key and type(cost) is int and 0 < cost <= self._max_cost):
            self._check(key, cost)
        waiters = self._busy.get(key)
        if waiters is not None:
            future: asyncio.Future[RateLimitResult] = asyncio.get_running_loop().create_future()
            waiters.append((cost, future))
            return await future
        self._busy[key] = waiters = []
        try:
            return (await self._impl.acquire(key, (cost,)))[0]
        finally:
            if waiters:
                task = asyncio.get_running_loop().create_task(self._drain(key, waiters))
                self._drains.add(task)
                task.add_done_callback(self._drains.discard)
            else:
                del self._busy[key]

    async def _drain(self, key: str, waiters: list[_Waiter]) -> None:
        """Decide the hits that queued up behind a running one, batch by batch."""
        try:
            while waiters:
                batch = waiters[:]
                del waiters[:]
                try:
                    results = await self._impl.acquire(key, [cost for cost, _ in batch])
                except Exception as exc:  # noqa: BLE001 - delivered to every waiting caller
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            del self._busy[key]
            for _, future in waiters:
                if not future.done():
                    future.cancel()

    async def peek(self, key: str) -> RateLimitResult:
        """Return what a hit of cost 1 on ``key`` would be told now, without counting it."""
        self._check(key, 1)
        return await self._impl.peek(key)

    async def reset(self, key: str) -> None:
        """Forget every hit counted on ``key`` (all rates)."""
        self._check(key, 1)
        await self._impl.reset(key)

    def storage_keys(self, key: str) -> list[str]:
        """The storage keys that hold ``key``'s counters right now (for inspection and tests)."""
        self._check(key, 1)
        return self._impl.storage_keys(key)
