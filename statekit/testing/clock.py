"""A controllable clock for backends that take ``clock=`` (memory, SQLite)."""

from __future__ import annotations

import time

__all__ = ["FakeClock"]


class FakeClock:
    """Returns a time that moves only when ``advance()`` is called."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds
