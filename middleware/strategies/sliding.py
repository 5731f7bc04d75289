"""Sliding window: a sliding-window counter over clock-aligned windows of ``period``.

A hit ``elapsed`` seconds into the current window counts ``prev * (1 - elapsed / period) +
current``: the previous window's count weighted by how much of it still overlaps the sliding
window of ``period`` that ends now. Across a window edge at most ``limit + limit * gap / period``
(rounded down) pass in a burst spanning ``gap`` seconds: no double burst. Like every sliding-window
counter it assumes the previous window's hits were spread evenly; in the worst case (all of them
at its very end) up to ``2 * limit`` hits can fall in one span of ``period`` that starts just
before an edge.

Per key, one record holds ``(window, previous count, current count)`` for every rate, written by
compare-and-set with a TTL that ends with the next window (then nothing of it still counts): for
one rate with a limit below 2**23 a single integer (window modulo 2**16 in the high bits), else a
list of integers. A refused hit writes nothing. Processes sharing a storage must agree on the time
to well within a period (a record from a clock one window ahead is adopted, not overwritten).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from middleware.rate import Rate, RateLimitResult
from middleware.strategies._base import CasStrategy, Clock
from statekit import BaseStorage

__all__ = ["SlidingWindow"]

_WRAP = 1 << 16  # window indexes are stored modulo this (a live record is at most 1 window off)
_PREV_MASK = (1 << 23) - 1
_CUR_MASK = (1 << 24) - 1


class SlidingWindow(CasStrategy):
    """Sliding-window counter over one compare-and-set record per key (see module doc)."""

    name = "sliding"
    tag = "sw"

    def __init__(
        self,
        storage: BaseStorage,
        rates: Sequence[Rate],
        prefix: str,
        clock: Clock,
        memo_size: int = 10_000,
    ) -> None:
        super().__init__(storage, rates, prefix, clock, memo_size)
        self._periods_ms = [rate.period_ms for rate in self.rates]
        # one rate with a limit below 2**23: the record is one int (no encoding to compare)
        self._packed = len(self.rates) == 1 and self.rates[0].limit <= _PREV_MASK
        self._p0 = self.rates[0].period_ms
        self._limit0 = self.rates[0].limit

    def _triples(self, record: Any) -> list[tuple[int, int, int]] | None:
        """(window index mod 2**16, previous count, current count) per rate, or ``None``."""
        if self._packed:
            if type(record) is int and record >= 0:
                return [(record >> 47, (record >> 24) & _PREV_MASK, record & _CUR_MASK)]
            return None
        n = len(self._periods_ms)
        if isinstance(record, list) and len(record) == 3 * n and all(type(v) is int for v in record):
            return [(record[3 * i] % _WRAP, record[3 * i + 1], record[3 * i + 2]) for i in range(n)]
        return None

    def _record(self, indexes: list[int], prevs: list[int], curs: list[int]) -> int | list[int]:
        if self._packed:
            return (indexes[0] % _WRAP) << 47 | prevs[0] << 24 | curs[0]
        out: list[int] = []
        for n, prev, cur in zip(indexes, prevs, curs, strict=True):
            out += [n % _WRAP, prev, cur]
        return out

    def _counts(self, record: Any, now_ms: float) -> tuple[list[int], list[int], list[int]]:
        """(window index, previous count, current count) per rate at ``now_ms``."""
        indexes = [math.floor(now_ms / p) for p in self._periods_ms]
        prevs = [0] * len(indexes)
        curs = [0] * len(indexes)
        triples = self._triples(record)
        if triples is not None:
            for i, (n, (stored, prev, cur)) in enumerate(zip(indexes, triples, strict=True)):
                if stored == n % _WRAP:
                    prevs[i], curs[i] = prev, cur
                elif stored == (n - 1) % _WRAP:
                    prevs[i] = cur
                elif stored == (n + 1) % _WRAP:
                    # written by a process whose clock is a little ahead: adopt its window
                    indexes[i], prevs[i], curs[i] = n + 1, prev, cur
        return indexes, prevs, curs

    def _gone(self, record: Any, now: float) -> bool:
        # a live record is in the current window, the previous one, or (clock skew) the next
        if self._packed:
            if type(record) is not int:
                return False
            n = math.floor(now * 1000 / self._p0)
            return (record >> 47) not in (n % _WRAP, (n - 1) % _WRAP, (n + 1) % _WRAP)
        triples = self._triples(record)
        if triples is None:
            return False
        now_ms = now * 1000
        for (stored, _, _), p in zip(triples, self._periods_ms, strict=True):
            n = math.floor(now_ms / p)
            if stored in (n % _WRAP, (n - 1) % _WRAP, (n + 1) % _WRAP):
                return False
        return True

    def _weights(self, indexes: list[int], now_ms: float) -> list[float]:
        return [
            min(1.0, max(0.0, 1.0 - (now_ms - n * p) / p))
            for n, p in zip(indexes, self._periods_ms, strict=True)
        ]

    def _decide(
        self, record: Any, costs: Sequence[int], now: float
    ) -> tuple[list[RateLimitResult], Any, float]:
        now_ms = now * 1000
        if self._packed and len(costs) == 1:
            return self._decide_one(record, costs[0], now_ms)
        indexes, prevs, curs = self._counts(record, now_ms)
        weights = self._weights(indexes, now_ms)
        rates = self.rates
        results = []
        changed = False
        for cost in costs:
            allowed = all(
                prev * w + cur + cost <= rate.limit + 1e-9
                for prev, w, cur, rate in zip(prevs, weights, curs, rates, strict=True)
            )
            if allowed:
                curs = [cur + cost for cur in curs]
                changed = True
            results.append(self._result(indexes, prevs, curs, weights, now_ms, cost, allowed))
        if not changed:
            return results, None, 0.0
        ttl_ms = max((n + 2) * p - now_ms for n, p in zip(indexes, self._periods_ms, strict=True))
        return results, self._record(indexes, prevs, curs), max(1, math.ceil(ttl_ms)) / 1000

    def _decide_one(
        self, record: Any, cost: int, now_ms: float
    ) -> tuple[list[RateLimitResult], Any, float]:
        """``_decide`` for one hit on one packed rate: the same arithmetic without lists."""
        p = self._p0
        n = math.floor(now_ms / p)
        prev = cur = 0
        if type(record) is int and record >= 0:
            stored = record >> 47
            here = n % _WRAP
            if stored == here:
                prev, cur = (record >> 24) & _PREV_MASK, record & _CUR_MASK
            elif stored == (here - 1) % _WRAP:
                prev = record & _CUR_MASK
            elif stored == (here + 1) % _WRAP:
                n, prev, cur = n + 1, (record >> 24) & _PREV_MASK, record & _CUR_MASK
        weight = 1.0 - (now_ms - n * p) / p
        if weight > 1.0:
            weight = 1.0
        elif weight < 0.0:
            weight = 0.0
        load = prev * weight + cur
        limit = self._limit0
        if load + cost > limit + 1e-9:
            return [self._result([n], [prev], [cur], [weight], now_ms, cost, False)], None, 0.0
        cur += cost
        left = (n + 2) * p - now_ms  # until this window's count no longer weighs
        remaining = math.floor(limit - load - cost + 1e-9)
        result = RateLimitResult(True, remaining if remaining > 0 else 0, left / 1000, 0.0)
        ttl_ms = math.ceil(left)
        return [result], (n % _WRAP) << 47 | prev << 24 | cur, (ttl_ms if ttl_ms > 1 else 1) / 1000

    def _result(
        self,
        indexes: list[int],
        prevs: list[int],
        curs: list[int],
        weights: list[float],
        now_ms: float,
        cost: int,
        allowed: bool,
    ) -> RateLimitResult:
        remaining = math.inf
        reset_ms = 0.0
        retry_ms = 0.0
        for n, prev, cur, w, rate in zip(indexes, prevs, curs, weights, self.rates, strict=True):
            p = rate.period_ms
            end = (n + 1) * p
            remaining = min(remaining, rate.limit - (prev * w + cur))
            if cur > 0:
                reset_ms = max(reset_ms, end + p - now_ms)
            elif prev > 0:
                reset_ms = max(reset_ms, end - now_ms)
            if not allowed:
                retry_ms = max(retry_ms, self._wait_ms(rate, end, prev, cur, w, cost, now_ms))
        return RateLimitResult(
            allowed, max(0, math.floor(remaining + 1e-9)), reset_ms / 1000, retry_ms / 1000
        )

    @staticmethod
    def _wait_ms(
        rate: Rate, end: float, prev: int, cur: int, weight: float, cost: int, now_ms: float
    ) -> float:
        """Milliseconds until a hit of ``cost`` would pass this rate."""
        limit, p = rate.limit, rate.period_ms
        if prev * weight + cur + cost <= limit + 1e-9:
            return 0.0
        if cur + cost <= limit:
            # later in this window, once the previous window's weight has decayed enough
            fraction = 1.0 - (limit - cur - cost) / prev
            return max(0.0, end - p + fraction * p - now_ms)
        # in the next window, where this window's count becomes the weighted one
        fraction = 1.0 - (limit - cost) / cur if cur > 0 else 0.0
        return max(0.0, end + fraction * p - now_ms)

    def _peek(self, record: Any, now: float) -> RateLimitResult:
        now_ms = now * 1000
        indexes, prevs, curs = self._counts(record, now_ms)
        weights = self._weights(indexes, now_ms)
        allowed = all(
            prev * w + cur + 1 <= rate.limit + 1e-9
            for prev, w, cur, rate in zip(prevs, weights, curs, self.rates, strict=True)
        )
        return self._result(indexes, prevs, curs, weights, now_ms, 1, allowed)
