"""Letting go of large containers a slice at a time (statekit._release): the memory backend's
clear_namespace, a session's close."""

from __future__ import annotations

import asyncio
import weakref
from itertools import pairwise

from statekit._release import drop_in_slices, empty_in_slices


class Row:
    """A stand-in for a peer row that can be watched (tuples take no weak references)."""

    __slots__ = ("__weakref__",)


async def alive_at_each_turn(refs: list[weakref.ref[Row]], work: asyncio.Future[None]) -> list[int]:
    """How many of ``refs`` are alive at each turn of the event loop until ``work`` is done."""
    counts = [sum(ref() is not None for ref in refs)]
    while not work.done():
        await asyncio.sleep(0)
        counts.append(sum(ref() is not None for ref in refs))
    return counts


async def test_dropping_buckets_frees_a_slice_a_turn_and_spares_what_others_hold() -> None:
    sizes = [40, 900, 7, 300, 300, 300, 1, 250]  # one bucket larger than a slice
    buckets: list[dict[int, Row]] = [{i: Row() for i in range(size)} for size in sizes]
    refs = [weakref.ref(row) for bucket in buckets for row in bucket.values()]
    kept = buckets[3]  # somebody else still holds this one
    held: list[dict[int, Row]] = list(buckets)
    del buckets
    work = asyncio.ensure_future(drop_in_slices(held, 500))  # type: ignore[arg-type]
    counts = await alive_at_each_turn(refs, work)
    await work
    assert held == []
    freed = [before - after for before, after in pairwise(counts)]
    assert counts[-1] == len(kept) == 300  # all freed but the bucket held elsewhere, unchanged
    assert max(freed) <= 500 + max(sizes), freed  # a slice, plus the bucket that overran it
    assert len([n for n in freed if n]) >= 3, freed  # not all at once


async def test_emptying_a_map_frees_a_slice_a_turn() -> None:
    mapping = {i: Row() for i in range(2_050)}
    refs = [weakref.ref(row) for row in mapping.values()]
    work = asyncio.ensure_future(empty_in_slices(mapping, 500))
    counts = await alive_at_each_turn(refs, work)
    await work
    assert mapping == {} and counts[-1] == 0
    freed = [before - after for before, after in pairwise(counts)]
    assert max(freed) <= 500 and sum(freed) == 2_050, freed
    assert len([n for n in freed if n]) == 5, freed  # 500 × 4 + 50


async def test_an_empty_map_or_list_needs_no_turn() -> None:
    await asyncio.wait_for(empty_in_slices({}, 1), 5)
    await asyncio.wait_for(drop_in_slices([], 1), 5)
