"""Fixed window: ``increment(key, cost, ttl=period)``, one round trip per hit.

A window starts at its key's first hit (not at a clock boundary) and lasts ``period``; any one
window allows at most ``limit``. A burst straddling the end of one window and the start of the
next can pass up to ``2 * limit`` within a short time: use ``sliding`` or ``gcra`` when that
matters. Each rate has its own counter; a hit counts on all of them at once, and a refused hit
gives back what it counted (``increment(-cost)``, a second round trip only when refusing).

``reset_after`` and ``retry_after`` come from a per-process memory of when each window ends
(learnt from the hit that opened it, else from one ``get_ttl``), reckoned from the clock read
after the storage replied: the storage started the window (or measured its TTL) no later than
that, so the figures may err on the long side by a round trip (and by the 1 ms a store's TTL may
run over), never on the short side, and a client that waits ``retry_after`` is not refused again
by the same window. After a hit refused by another rate gave a window's count back to zero, that
window may look as if it started later than it did: those two figures may then err on the long
side too, never the decision.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from middleware.rate import Rate, RateLimitResult
from middleware.strategies._base import Clock, Memo, Strategy
from statekit import BaseStorage

__all__ = ["FixedWindow"]

_REFUND_GUARD = 0.01  # seconds: give-backs to a window ending sooner than this are skipped
# Stores count TTLs in whole milliseconds and a key lives through its last one (Redis expires a
# key when its clock is *past* the expiry millisecond): a window may end up to 1 ms after
# "start + period", so the ends reckoned here carry that 1 ms.
_TTL_RESOLUTION = 0.001


class FixedWindow(Strategy):
    """Fixed-window counters, one ``increment`` with a TTL per rate (see module doc)."""

    name = "fixed"

    def __init__(
        self,
        storage: BaseStorage,
        rates: Sequence[Rate],
        prefix: str,
        clock: Clock,
        memo_size: int = 10_000,
    ) -> None:
        super().__init__(storage, rates, prefix, clock, memo_size)
        self._ends: Memo[str, float] = Memo(memo_size)
        self._tags = [f"{prefix}:fw:{rate.slug}:" for rate in self.rates]

    def storage_keys(self, key: str) -> list[str]:
        return [tag + key for tag in self._tags]

    async def acquire(self, key: str, costs: Sequence[int]) -> list[RateLimitResult]:
        if len(costs) == 1 and len(self.rates) == 1:
            return [await self._acquire_one(key, costs[0])]
        total = sum(costs)
        names = self.storage_keys(key)
        if len(names) == 1:
            counts = [await self.storage.increment(names[0], total, ttl=self.rates[0].period)]
        else:
            counts = list(
                await asyncio.gather(
                    *(
                        self.storage.increment(name, total, ttl=rate.period)
                        for name, rate in zip(names, self.rates, strict=True)
                    )
                )
            )
        now = self.clock()  # after the replies: a window these hits opened began before now
        bases = [max(count - total, 0) for count in counts]
        ends = await self._window_ends(names, bases, now)
        now = self.clock()
        budget = min(rate.limit - base for rate, base in zip(self.rates, bases, strict=True))
        used = 0
        outcome: list[tuple[bool, int, int]] = []  # allowed, cost, used after this hit
        for cost in costs:
            allowed = used + cost <= budget
            if allowed:
                used += cost
            outcome.append((allowed, cost, used))
        if used < total:
            await self._give_back(names, ends, total - used)
        return [
            self._result(bases, ends, used_after, cost, allowed, now)
            for allowed, cost, used_after in outcome
        ]

    async def _acquire_one(self, key: str, cost: int) -> RateLimitResult:
        """``acquire`` for one hit on one rate: the same steps without lists."""
        rate = self.rates[0]
        name = self._tags[0] + key
        count = await self.storage.increment(name, cost, ttl=rate.period)
        now = self.clock()  # after the reply: a window this hit opened began before now
        if count <= cost:  # this hit opened the window
            end = now + rate.period + _TTL_RESOLUTION
            self._ends.put(name, end)
        else:
            known = self._ends.get(name)
            if known is None or known <= now:
                known = (await self._window_ends([name], [count - cost], now))[0]
                now = self.clock()
            end = known
        if count <= rate.limit:
            return RateLimitResult(True, rate.limit - count, max(0.0, end - now), 0.0)
        base = count - cost
        if end - now > _REFUND_GUARD:
            await self._give_back_one(name, rate, cost)
        left = max(0.0, end - now)
        return RateLimitResult(False, max(0, rate.limit - base), left if base > 0 else 0.0, left)

    async def _window_ends(self, names: list[str], bases: list[int], now: float) -> list[float]:
        """When each rate's window ends (clock seconds): the hit that opened a window knows;
        otherwise the memory, else the key's TTL."""
        ends = []
        unknown = []
        for i, (name, base) in enumerate(zip(names, bases, strict=True)):
            if base == 0:
                end = now + self.rates[i].period + _TTL_RESOLUTION
                self._ends.put(name, end)
            else:
                known = self._ends.get(name)
                if known is not None and known > now:
                    end = known
                else:
                    end = math.nan
                    unknown.append(i)
            ends.append(end)
        if unknown:
            ttls = await asyncio.gather(*(self.storage.get_ttl(names[i]) for i in unknown))
            read = self.clock()  # after the replies: each TTL was measured before now
            for i, ttl in zip(unknown, ttls, strict=True):
                ends[i] = read + (self.rates[i].period if ttl is None else ttl) + _TTL_RESOLUTION
                self._ends.put(names[i], ends[i])
        return ends

    async def _give_back(self, names: list[str], ends: list[float], amount: int) -> None:
        now = self.clock()
        await asyncio.gather(
            *(
                self._give_back_one(name, rate, amount)
                for name, rate, end in zip(names, self.rates, ends, strict=True)
                if end - now > _REFUND_GUARD
            )
        )

    async def _give_back_one(self, name: str, rate: Rate, amount: int) -> None:
        left = await self.storage.increment(name, -amount, ttl=rate.period)
        if left < 0:
            # The window ended between the count and the give-back, which landed in a new
            # window: take it back out so the new window keeps exactly its own hits.
            await self.storage.increment(name, amount, ttl=rate.period)

    def _result(
        self,
        bases: list[int],
        ends: list[float],
        used: int,
        cost: int,
        allowed: bool,
        now: float,
    ) -> RateLimitResult:
        remaining = math.inf
        reset = 0.0
        retry = 0.0
        for rate, base, end in zip(self.rates, bases, ends, strict=True):
            count = base + used
            remaining = min(remaining, rate.limit - count)
            left = max(0.0, end - now)
            if count > 0:
                reset = max(reset, left)
            if not allowed and count + cost > rate.limit:
                retry = max(retry, left)
        return RateLimitResult(allowed, max(0, int(remaining)), reset, retry)

    async def peek(self, key: str) -> RateLimitResult:
        names = self.storage_keys(key)
        found = await self.storage.get_many(names)
        live = [name for name in names if name in found]
        ttls = dict(
            zip(live, await asyncio.gather(*(self.storage.get_ttl(n) for n in live)), strict=True)
        )
        now = self.clock()
        bases = []
        ends = []
        for name in names:
            count = found.get(name)
            bases.append(count if type(count) is int and count > 0 else 0)
            ttl = ttls.get(name)
            ends.append(now + (ttl + _TTL_RESOLUTION if ttl is not None else 0.0))
        allowed = all(b + 1 <= r.limit for b, r in zip(bases, self.rates, strict=True))
        return self._result(bases, ends, 0, 1, allowed, now)

    async def reset(self, key: str) -> None:
        names = self.storage_keys(key)
        for name in names:
            self._ends.pop(name)
        await self.storage.delete_many(names)
