"""Fixtures of the rate-limit tests: a limiter factory on the backend under test and its clock."""

from __future__ import annotations

import time
from collections.abc import Callable
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
