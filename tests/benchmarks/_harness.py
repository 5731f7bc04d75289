"""Shared pieces of the benchmark scripts: timing loops, a table printer, JSON output."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["Result", "best_of", "machine", "measure", "print_table", "write_json"]


@dataclass
class Result:
    """One measured row: ops/s of ``operation`` on ``subject`` at ``concurrency`` tasks."""

    group: str
    subject: str
    operation: str
    concurrency: int
    ops_per_s: float
    baseline: str | None = None
    ratio: float | None = None
    note: str = ""


async def measure(
    op: Callable[[int], Awaitable[Any]], *, concurrency: int = 1, seconds: float = 1.0, min_ops: int = 200
) -> float:
    """Return ops/s of ``op(i)`` run by ``concurrency`` tasks for about ``seconds``.

    The clock is read once per 64 operations so that the loop itself costs little.
    """
    await asyncio.gather(*(op(i) for i in range(min(concurrency, 50))))  # warm-up
    deadline = time.perf_counter() + seconds
    clock = time.perf_counter

    async def worker(wid: int) -> int:
        done = 0
        i = wid
        step = concurrency
        while clock() < deadline or done * concurrency < min_ops:
            for _ in range(64):
                await op(i)
                i += step
            done += 64
        return done

    start = clock()
    counts = await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return sum(counts) / (clock() - start)


async def best_of(rounds: int, *ops: Callable[[], Awaitable[float]]) -> list[float]:
    """Run each measurement ``rounds`` times, interleaved, and return the best of each.

    Interleaving keeps a baseline and its competitor under the same machine load.
    """
    best = [0.0] * len(ops)
    for _ in range(rounds):
        for n, run in enumerate(ops):
            best[n] = max(best[n], await run())
    return best


def machine() -> str:
    """One line naming the machine: cores, Python, platform."""
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"


def print_table(title: str, rows: Sequence[Result]) -> str:
    """Print (and return) a Markdown table of ``rows``."""
    lines = [
        f"### {title}",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {machine()}",
        "",
        "| group | subject | operation | tasks | ops/s | vs baseline |",
        "|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}× {r.baseline}" if r.ratio is not None else (r.note or "—")
        if r.ratio is not None and r.note:
            ratio += f" ({r.note})"
        lines.append(
            f"| {r.group} | {r.subject} | {r.operation} | {r.concurrency} | {r.ops_per_s:,.0f} | {ratio} |"
        )
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(path: str | None, name: str, rows: Sequence[Result]) -> None:
    """Write ``rows`` as JSON to ``path`` (if given), for the plot script."""
    if not path:
        return
    payload = {
        "benchmark": name,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "rows": [asdict(r) for r in rows],
    }
    Path(path).write_text(json.dumps(payload, indent=2))
