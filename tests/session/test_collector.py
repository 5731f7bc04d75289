"""YoungCollector: the young-generation collections CPython's allocation count misses while an
adapter replaces rows it holds one by one."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from statekit import MemoryStorage
from statekit.session import Peer, SessionStore
from statekit.session._buckets import PEER_BUCKETS, PeerBucket
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


async def test_a_large_write_ages_the_buckets_it_loaded_before_filling_them() -> None:
    """A new session's 100,000-peer write filled 1,024 fresh buckets while they were young, and
    the next generation-1 collection traced every row in them in one 5-11 ms pause. With
    automatic collection held off (a huge threshold), the buckets of a 10,000-peer write are old
    when it ends (they stay young without the store's own collection); a small write collects
    nothing."""
    thresholds = gc.get_threshold()
    gc.set_threshold(10**9)  # only explicit collections from here on
    try:
        async with SessionStore(MemoryStorage(), "big") as store:
            await store.update_peers(Peer(i, i, "user", (f"u{i}",)) for i in range(1, 10_001))
            young = {id(o) for o in gc.get_objects(0)} | {id(o) for o in gc.get_objects(1)}
            buckets = [b for b in store._cache._buckets.values() if isinstance(b, PeerBucket)]  # noqa: SLF001
            assert len(buckets) == PEER_BUCKETS
            assert not [b for b in buckets if id(b) in young]
            gc.collect(0)
            before = gc.get_count()
            await store.update_peers(Peer(i, 7, "user", (f"v{i}",)) for i in range(1, 101))
            assert gc.get_count()[1] == before[1]  # no collection of generation 0 or 1 ran
    finally:
        gc.set_threshold(*thresholds)
