"""Bad input to Rate and RateLimiter: clear, typed errors naming what was wrong."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from middleware import Rate, RateLimiter
from statekit import MemoryStorage


def test_rate_accepts_seconds_and_timedelta() -> None:
    assert Rate(5, 10) == Rate(5, timedelta(seconds=10)) == Rate(5, 10.0)
    assert Rate(1, timedelta(minutes=1)).period == 60.0
    assert str(Rate(20, 60)) == "20 per 60 s"
    assert repr(Rate(3, 0.5)) == "Rate(3, 0.5)"


@pytest.mark.parametrize(
    ("limit", "period", "error", "named"),
    [
        (0, 10, ValueError, "limit=0"),
        (-3, 10, ValueError, "limit=-3"),
        (5, 0, ValueError, "period=0"),
        (5, -1.5, ValueError, "period=-1.5"),
        (5, timedelta(0), ValueError, "period=datetime.timedelta(0)"),
        (5, float("inf"), ValueError, "period=inf"),
        (5, float("nan"), ValueError, "period=nan"),
        (2.5, 10, TypeError, "float"),
        (True, 10, TypeError, "bool"),
        (5, "10s", TypeError, "str"),
    ],
)
def test_rate_rejects_bad_values(
    limit: Any, period: Any, error: type[Exception], named: str
) -> None:
    with pytest.raises(error, match=named.replace("(", r"\(").replace(")", r"\)")):
        Rate(limit, period)


def test_limiter_rejects_bad_arguments() -> None:
    storage = MemoryStorage()
    with pytest.raises(ValueError, match="at least one Rate"):
        RateLimiter(storage)
    with pytest.raises(TypeError, match="Rate objects"):
        RateLimiter(storage, (5, 10))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'fixed', 'sliding', 'gcra'"):
        RateLimiter(storage, Rate(5, 10), strategy="leaky")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="statekit storage"):
        RateLimiter({}, Rate(5, 10))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prefix"):
        RateLimiter(storage, Rate(5, 10), prefix="")


@pytest.mark.parametrize("strategy", ["fixed", "sliding", "gcra"])
async def test_hit_rejects_bad_keys_and_costs(strategy: Any) -> None:
    limiter = RateLimiter(MemoryStorage(), Rate(5, 10), Rate(3, 60), strategy=strategy)
    with pytest.raises(ValueError, match=r"cost=4 is larger than the limit of Rate\(3, 60\)"):
        await limiter.hit("u", cost=4)
    with pytest.raises(ValueError, match="cost=0"):
        await limiter.hit("u", cost=0)
    with pytest.raises(TypeError, match="cost must be an int"):
        await limiter.hit("u", cost=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty str"):
        await limiter.hit("")
    with pytest.raises(ValueError, match="non-empty str"):
        await limiter.peek(42)  # type: ignore[arg-type]
    # nothing was counted by the refused calls
    assert (await limiter.hit("u", cost=3)).allowed
