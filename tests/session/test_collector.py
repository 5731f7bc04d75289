"""YoungCollector: the young-generation collections CPython's allocation count misses while an
adapter replaces rows it holds one by one."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from statekit.session.support import YoungCollector


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of every collection that ends while the test runs."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            seen.append(info["generation"])

    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)


def last_collection(collector: YoungCollector, replaced: int, seen: list[int]) -> int | None:
    """The generation of the collection ``collector.replaced(replaced)`` ran last, if any (an
    automatic collection may come before it, never after)."""
    seen.clear()
    collector.replaced(replaced)
    return seen[-1] if seen else None


def test_collects_generation_0_per_threshold_replaced_and_generation_1_every_tenth(
    collections: list[int],
) -> None:
    young, older = gc.get_threshold()[:2]
    assert gc.isenabled()
    collector = YoungCollector()
    assert last_collection(collector, young - 1, collections) is None  # not due yet
    ran = [last_collection(collector, young, collections) for _ in range(2 * older)]
    assert ran == ([0] * (older - 1) + [1]) * 2


def test_does_nothing_while_the_collector_is_disabled(collections: list[int]) -> None:
    collector = YoungCollector()
    gc.disable()
    try:
        ran = [last_collection(collector, 10_000, collections) for _ in range(20)]
    finally:
        gc.enable()
    assert ran == [None] * 20
    thresholds = gc.get_threshold()
    gc.set_threshold(0)  # CPython's other way of turning automatic collection off
    try:
        ran = [last_collection(collector, 10_000, collections) for _ in range(20)]
    finally:
        gc.set_threshold(*thresholds)
    assert ran == [None] * 20
