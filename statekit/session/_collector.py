"""Young-generation collections for code that replaces many long-held objects one by one.

CPython starts a collection of its youngest generation when allocations of tracked objects
outnumber deallocations by ``gc.get_threshold()[0]`` (700). Code that replaces objects it already
holds (a session's peer rows met again with a new hash or username) frees one object for each it
makes, so that count stays where it is while every new object joins the youngest generation: after
100,000 replaced Telethon entities, the first collection that does come traces some 200,000 objects
in one pause of 50–110 ms. ``YoungCollector`` runs the collections the count would have run.

``age_young`` is for the opposite case: containers made empty that their maker fills next (a
large write's peer buckets). Filled while young, they are traced whole by the next generation-1
collection (a new session's 1,024 buckets holding 100,000 rows: 5–11 ms in one piece); collected
while still empty, they are old before they hold anything.
"""

from __future__ import annotations

import gc


class YoungCollector:
    """Collects the young generations in step with the objects replaced between two turns of the
    event loop, as CPython's allocation count would have: a generation-0 collection once
    ``gc.get_threshold()[0]`` objects were replaced, and every ``gc.get_threshold()[1]``-th of
    those a generation-1 collection instead (objects that survive one collection are traced by
    the next older one). Does nothing while the collector is disabled (``gc.disable()``, or a
    threshold of 0: ``gc.set_threshold(0)``)."""

    __slots__ = ("_replaced", "_collections")

    def __init__(self) -> None:
        self._replaced = 0
        self._collections = 0

    def replaced(self, count: int) -> None:
        """Record ``count`` objects replaced since the last call; collect if they are due."""
        self._replaced += count
        young, older = _thresholds()
        if young <= 0 or self._replaced < young:
            return
        self._replaced = 0
        self._collections += 1
        gc.collect(1 if older > 0 and self._collections % older == 0 else 0)


def age_young() -> None:
    """Collect the young generations (generation 1) now, so that the containers just made are
    old before they are filled; does nothing while the collector is disabled (``gc.disable()``,
    or a threshold of 0)."""
    if _thresholds()[0] > 0:
        gc.collect(1)


def _thresholds() -> tuple[int, int]:
    """The young and middle collection thresholds, (0, 0) while the collector is disabled."""
    if not gc.isenabled():
        return 0, 0
    young, older = gc.get_threshold()[:2]
    return young, older
