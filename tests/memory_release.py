"""How memory is let go of while an awaitable runs: turn by turn of the event loop."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Awaitable
from itertools import pairwise


async def largest_release(action: Awaitable[object]) -> tuple[int, int]:
    """Await ``action`` (tracemalloc must be tracing since what it frees was made) and return
    (the most bytes freed between two turns of the event loop, the bytes freed in all): the
    first is the whole second when everything goes in one piece. Garbage left by what ran before
    is collected first, so that a collection freeing it cannot land in one of the turns."""
    gc.collect()
    sizes: list[int] = []

    async def ticker() -> None:
        while True:
            sizes.append(tracemalloc.get_traced_memory()[0])
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await action
    await asyncio.sleep(0)
    ticking.cancel()
    return max(before - after for before, after in pairwise(sizes)), sizes[0] - sizes[-1]
