"""``Rate`` (how many hits per how long) and ``RateLimitResult`` (what one hit was told)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

__all__ = ["Rate", "RateLimitResult"]


@dataclass(frozen=True, slots=True, init=False)
class Rate:
    """At most ``limit`` hits per ``period`` seconds.

    ``period`` is seconds (``int``/``float``) or a ``datetime.timedelta``; it is kept as float
    seconds (millisecond precision, like storage TTLs). Raises ``ValueError`` for a limit that is
    not a positive int or a period that is not a finite positive duration, ``TypeError`` for
    other types.
    """

    limit: int
    period: float

    def __init__(self, limit: int, period: float | int | timedelta) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"Rate limit must be an int, not {type(limit).__name__}")
        if limit < 1:
            raise ValueError(f"Rate limit must be a positive int, got limit={limit!r}")
        if isinstance(period, timedelta):
            seconds = period.total_seconds()
        elif isinstance(period, int | float) and not isinstance(period, bool):
            seconds = float(period)
        else:
            raise TypeError(
                f"Rate period must be seconds (int or float) or a timedelta, "
                f"not {type(period).__name__}"
            )
        if not (math.isfinite(seconds) and seconds >= 0.001):
            raise ValueError(
                f"Rate period must be a finite duration of at least 1 ms, got period={period!r}"
            )
        object.__setattr__(self, "limit", limit)
        object.__setattr__(self, "period", round(seconds * 1000) / 1000)

    @property
    def period_ms(self) -> int:
        """The period in whole milliseconds."""
        return round(self.period * 1000)

    @property
    def slug(self) -> str:
        """A short stable text form used in storage keys, e.g. ``5/10000ms``."""
        return f"{self.limit}/{self.period_ms}ms"

    def __str__(self) -> str:
        return f"{self.limit} per {self.period:g} s"

    def __repr__(self) -> str:
        return f"Rate({self.limit}, {self.period:g})"


class RateLimitResult(NamedTuple):
    """What one ``hit`` (or ``peek``) was told.

    ``allowed``: the hit passed. ``remaining``: hits of cost 1 still allowed right after this one
    (the smallest over all rates). ``reset_after``: seconds until every rate is back to its full
    quota if nothing else hits. ``retry_after``: seconds to wait before this hit would pass
    (``0.0`` when allowed). ``unavailable``: the storage could not be reached and the hit was
    refused for that reason (only set by ``RateLimitMiddleware`` with ``fail_open=False``).
    """

    allowed: bool
    remaining: int
    reset_after: float
    retry_after: float
    unavailable: bool = False
