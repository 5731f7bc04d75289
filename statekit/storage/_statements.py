"""How a backend splits a large batch write into statements of one transaction.

A driver that copies or encodes every value of a statement in one call (Python's ``sqlite3``
binding holding the GIL, asyncpg encoding in the event loop's thread) may hold the event loop for
as long: asyncpg held it 20-27 ms for a 100,000-peer session's ~8 MB of buckets in one statement,
3-4 ms in statements of about ``BYTES_PER_STATEMENT`` (tests/benchmarks/big_batches.py).
"""

from __future__ import annotations

from collections.abc import Sequence

BYTES_PER_STATEMENT = 1 << 20


class Parts(list[tuple[int, int]]):
    """The ``(start, end)`` ranges of ``statement_parts``, with the bytes they cover in all."""

    total_bytes = 0


def statement_parts(
    values: Sequence[object], *, most_rows: int | None = None, budget: int = BYTES_PER_STATEMENT
) -> Parts:
    """``(start, end)`` ranges covering ``values`` in order, each of at most ``most_rows`` values
    and about ``budget`` bytes (a ``bytes`` value counts its length, anything else 8; a value
    larger than ``budget`` makes a part of its own). At least one range, ``(0, 0)`` if empty.
    ``total_bytes`` of the result counts all values the same way."""
    parts = Parts()
    start = size = total = 0
    for i, value in enumerate(values):
        length = len(value) if type(value) is bytes else 8
        if i > start and (size + length > budget or (most_rows is not None and i - start >= most_rows)):
            parts.append((start, i))
            total += size
            start, size = i, 0
        size += length
    parts.append((start, len(values)))
    parts.total_bytes = total + size
    return parts
