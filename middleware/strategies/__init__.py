"""Rate-limiting strategies over any statekit storage: fixed window, sliding window and GCRA.

A strategy enforces a tuple of ``Rate`` s together for one key. ``acquire(key, costs)`` decides a
batch of hits with exactly the outcome they would have one after the other; the limiter batches
concurrent hits of one key so that a batch costs the same round trips as one hit.

- ``fixed`` (``FixedWindow``): one counter per rate, ``increment`` with a TTL: one round trip. A
  window starts at its key's first hit and lasts ``period``; any one window allows at most
  ``limit``, but a burst straddling the end of one window and the start of the next can pass up
  to ``2 * limit`` within a short time.
- ``sliding`` (``SlidingWindow``): a sliding-window counter over clock-aligned windows; a hit
  counts ``prev * (1 - elapsed / period) + current``. Across a window edge at most ``limit`` plus
  ``limit * gap / period`` pass in a burst spanning ``gap`` seconds (no double burst).
- ``gcra`` (``GCRA``): the generic cell rate algorithm; one theoretical arrival time per rate.
  Bursts of up to ``limit``, then one hit every ``period / limit``.

The sliding window and GCRA keep all the rates of a key in one record written by
compare-and-set, and remember the record they last read or wrote: the steady state is one round
trip per hit, and a stale memory costs one more round trip (a failed compare-and-set, or a
re-read before refusing), never a wrong answer.

Refused hits consume nothing: the fixed window gives back what it counted (one more
``increment`` with a negative amount); the others write nothing for a refused hit.
"""

from middleware.strategies._base import Strategy
from middleware.strategies.fixed import FixedWindow
from middleware.strategies.gcra import GCRA
from middleware.strategies.sliding import SlidingWindow

__all__ = ["FixedWindow", "GCRA", "STRATEGIES", "SlidingWindow", "Strategy"]

STRATEGIES: dict[str, type[Strategy]] = {
    FixedWindow.name: FixedWindow,
    SlidingWindow.name: SlidingWindow,
    GCRA.name: GCRA,
}
"""Strategy classes by the name ``RateLimiter(strategy=...)`` takes."""
