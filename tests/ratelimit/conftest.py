"""Fixtures of the rate-limit tests: a limiter factory on the backend under test and its clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from middleware import Rate, RateLimiter
from statekit import BaseStorage
from statekit.testing import FakeClock

STRATEGIES = ["fixed", "sliding", "gcra"]


@pytest.fixture
def limiter_clock(fake_clock: FakeClock | None) -> Callable[[], float]:
    """The clock the limiter reads: the backend's fake clock, else the wall clock."""
    return fake_clock if fake_clock is not None else time.time


@pytest.fixture
def real_time(fake_clock: FakeClock | None) -> bool:
    """True on backends where time only moves by really waiting (Redis)."""
    return fake_clock is None


@pytest.fixture
def make_limiter(
    storage: BaseStorage, limiter_clock: Callable[[], float]
) -> Callable[..., RateLimiter]:
    """``make_limiter(*rates, strategy=..., **options)`` over the started storage under test."""

    def make(*rates: Rate, **options: Any) -> RateLimiter:
        options.setdefault("clock", limiter_clock)
        return RateLimiter(storage, *rates, **options)

    return make


@dataclass
class Timing:
    """How a test moves time for one strategy on the backend under test.

    Sliding windows and GCRA keep their time in the record, read from the limiter's clock: on
    backends without a fake clock (Redis) they get a ``FakeClock`` of their own, so ``advance`` is
    exact and instant. A fixed window lives in the store's TTL: on Redis time really passes
    (``real`` is True) and a test checks with ``now()`` that a stall of the machine did not move
    its hits into another window (and if so runs its scenario again on a fresh key).
    """

    real: bool
    fake: FakeClock | None
    backend_clock: Any
    options: dict[str, Any] = field(default_factory=dict)

    def now(self) -> float:
        return self.fake() if self.fake is not None else time.time()

    async def advance(self, seconds: float) -> None:
        if self.fake is not None and self.options:
            self.fake.advance(seconds)  # the limiter's own clock
        else:
            await self.backend_clock.advance(seconds)


@pytest.fixture
def timing(clock: Any, fake_clock: FakeClock | None) -> Callable[[str], Timing]:
    """``timing(strategy)``: the ``Timing`` of ``strategy`` on this backend; pass
    ``**timing.options`` to ``make_limiter``."""

    def make(strategy: str) -> Timing:
        if fake_clock is not None:
            return Timing(False, fake_clock, clock)
        if strategy == "fixed":
            return Timing(True, None, clock)
        own = FakeClock()
        return Timing(False, own, clock, {"clock": own})

    return make
