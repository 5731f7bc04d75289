"""GCRA, the generic cell rate algorithm: one timestamp per rate and key, by compare-and-set.

Each rate keeps a theoretical arrival time (TAT, integer microseconds of the limiter's clock);
all rates of a key share one record (an int for one rate, a list for several). A hit of cost
``c`` passes when, for every rate, ``max(TAT, now) + c * period / limit - now <= period``; it
then advances every TAT. Bursts of up to ``limit``, then one hit every ``period / limit``; no
window edges at all. The record expires when its last TAT is reached (the quota is full again).
A refused hit writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from middleware.rate import Rate, RateLimitResult
from middleware.strategies._base import CasStrategy, Clock
from statekit import BaseStorage

__all__ = ["GCRA"]


def _is_int(value: object) -> bool:
    return type(value) is int


class GCRA(CasStrategy):
    """Generic cell rate algorithm over one compare-and-set record per key (see module doc)."""

    name = "gcra"
    tag = "gcra"

    def __init__(
        self,
        storage: BaseStorage,
        rates: Sequence[Rate],
        prefix: str,
        clock: Clock,
        memo_size: int = 10_000,
    ) -> None:
        super().__init__(storage, rates, prefix, clock, memo_size)
        self._steps = [rate.period_ms * 1000 / rate.limit for rate in self.rates]
        self._periods = [rate.period_ms * 1000 for rate in self.rates]

    def _tats(self, record: Any, now: int) -> list[int]:
        """The TATs in ``record``, none earlier than ``now`` (absent or of another shape: the
        quota is full)."""
        n = len(self._steps)
        if n == 1 and _is_int(record):
            return [max(record, now)]
        if isinstance(record, list) and len(record) == n and all(map(_is_int, record)):
            return [max(t, now) for t in record]
        return [now] * n

    def _gone(self, record: Any, now: float) -> bool:
        now_us = int(now * 1_000_000)
        if _is_int(record):
            return bool(record + 2000 < now_us)
        return isinstance(record, list) and all(_is_int(t) and t + 2000 < now_us for t in record)

    def _decide(
        self, record: Any, costs: Sequence[int], now: float
    ) -> tuple[list[RateLimitResult], Any, float]:
        now_us = int(now * 1_000_000)
        if len(costs) == 1 and len(self._steps) == 1:
            return self._decide_one(record, costs[0], now_us)
        tats = self._tats(record, now_us)
        steps, periods = self._steps, self._periods
        results = []
        changed = False
        for cost in costs:
            wanted = [round(t + cost * s) for t, s in zip(tats, steps, strict=True)]
            if all(w - now_us <= p for w, p in zip(wanted, periods, strict=True)):
                tats = wanted
                changed = True
                results.append(self._result(tats, None, now_us))
            else:
                results.append(self._result(tats, wanted, now_us))
        if not changed:
            return results, None, 0.0
        last = max(tats)
        ttl = max(1, math.ceil((last - now_us) / 1000)) / 1000
        return results, (tats[0] if len(tats) == 1 else tats), ttl

    def _decide_one(
        self, record: Any, cost: int, now: int
    ) -> tuple[list[RateLimitResult], Any, float]:
        """``_decide`` for one hit on one rate: the same arithmetic without lists."""
        tat = record if type(record) is int and record > now else now
        step, period = self._steps[0], self._periods[0]
        wanted = round(tat + cost * step)
        if wanted - now <= period:
            left = wanted - now
            remaining = max(0, math.floor((period - left) / step + 1e-9))
            result = RateLimitResult(True, remaining, left / 1e6, 0.0)
            return [result], wanted, max(1, math.ceil(left / 1000)) / 1000
        remaining = max(0, math.floor((period - (tat - now)) / step + 1e-9))
        retry = (wanted - period - now) / 1e6
        return [RateLimitResult(False, remaining, (tat - now) / 1e6, retry)], None, 0.0

    def _result(self, tats: list[int], refused: list[int] | None, now: int) -> RateLimitResult:
        """The result after ``tats``; ``refused`` holds the TATs a refused hit would have
        needed."""
        remaining = min(
            math.floor((p - (t - now)) / s + 1e-9)
            for t, s, p in zip(tats, self._steps, self._periods, strict=True)
        )
        retry = 0.0
        if refused is not None:
            retry = max(0, max(w - p - now for w, p in zip(refused, self._periods, strict=True)))
            retry /= 1e6
        return RateLimitResult(
            refused is None, max(0, remaining), max(0, max(tats) - now) / 1e6, retry
        )

    def _peek(self, record: Any, now: float) -> RateLimitResult:
        now_us = int(now * 1_000_000)
        tats = self._tats(record, now_us)
        wanted = [round(t + s) for t, s in zip(tats, self._steps, strict=True)]
        allowed = all(w - now_us <= p for w, p in zip(wanted, self._periods, strict=True))
        return self._result(tats, None if allowed else wanted, now_us)
