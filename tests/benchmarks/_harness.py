"""Shared pieces of the benchmark scripts: timing loops, a table printer, JSON output, and the
interleaved-rounds protocol of the session scripts (stores, loop-stall ticker, best and median)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "LoopLag",
    "Result",
    "batch_parser",
    "RoundsResult",
    "best_of",
    "compare_in_rounds",
    "compare_rows",
    "count",
    "interleaved",
    "machine",
    "measure",
    "print_table",
    "rounds_parser",
    "rounds_result",
    "sizes",
    "sqlite_and_redis",
    "timed_save",
    "write_json",
]


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


@dataclass
class RoundsResult(Result):
    """A ``Result`` measured once per interleaved round: ``ops_per_s`` and ``ratio`` are the best
    rounds' (best against best); also the median, the median and range of the round-by-round
    ratios against the baseline measured in the same rounds, and the event-loop stalls."""

    median: float | None = None
    median_ratio: float | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None
    stall_ms: float | None = None
    """The longest event-loop stall over all rounds."""
    median_stall_ms: float | None = None
    """The median over the rounds of each round's longest stall."""


def rounds_result(
    group: str,
    subject: str,
    operation: str,
    values: Sequence[float],
    *,
    base: Sequence[float] | None = None,
    baseline: str | None = None,
    stalls: Sequence[float] | None = None,
) -> RoundsResult:
    """Summarise ops/s measured once a round (``values``) against ``base`` (the baseline's ops/s
    in the same rounds, same order), with each round's longest loop stall in seconds
    (``stalls``); the note gives the medians for the table."""
    best = max(values)
    median = statistics.median(values)
    result = RoundsResult(group, subject, operation, 1, best, median=median)
    note = f"median {median:,.0f}/s"
    if base:
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        result.baseline = baseline
        result.ratio = best / max(base)
        result.median_ratio = statistics.median(ratios)
        result.ratio_low, result.ratio_high = min(ratios), max(ratios)
        note += f", {result.median_ratio:.2f}× [{min(ratios):.2f}–{max(ratios):.2f}] round by round"
    if stalls:
        result.stall_ms = max(stalls) * 1000
        result.median_stall_ms = statistics.median(stalls) * 1000
        note += f"; loop stall worst {result.stall_ms:.1f} ms, median {result.median_stall_ms:.1f} ms"
    result.note = note
    return result


def compare_rows(
    runs: Mapping[str, Sequence[Mapping[str, float]]],
    labels: Mapping[str, str],
    baseline: str,
    group: str,
    operation: str,
    key: str,
    *,
    stall: str | None = None,
) -> list[RoundsResult]:
    """One ``rounds_result`` row per subject of ``labels`` (the first one is the baseline, named
    ``baseline`` in the other rows) for measure ``key`` of ``runs`` (subject -> one dict per
    round); ``stall``: the measure holding each round's longest loop stall."""
    first = next(iter(labels))
    base = [r[key] for r in runs[first]]
    return [
        rounds_result(
            group, label, operation, [r[key] for r in runs[subject]],
            base=None if subject == first else base, baseline=baseline,
            stalls=[r[stall] for r in runs[subject]] if stall else None,
        )
        for subject, label in labels.items()
    ]


Run = Callable[[int, int], Awaitable[dict[str, float]]]
"""One subject's measurement: ``run(size, round)`` -> measure name -> value."""


async def interleaved(
    rounds: int, counts: Sequence[int], subjects: Sequence[tuple[str, Run]]
) -> dict[int, dict[str, list[dict[str, float]]]]:
    """Run ``run(size, round)`` of every subject ``(name, run)`` once per size of ``counts`` in
    every round, the subjects' order rotating from round to round (each takes each place in
    turn); return size -> subject name -> the dicts of the rounds. A warm-up round at the
    smallest size runs first and is not counted (first calls import and allocate what later ones
    reuse)."""
    runs: dict[int, dict[str, list[dict[str, float]]]] = {
        n: {name: [] for name, _ in subjects} for n in counts
    }
    for _, run in subjects:
        await run(min(counts), -1)
    for r in range(rounds):
        shift = r % len(subjects)
        for n in counts:
            for name, run in [*subjects[shift:], *subjects[:shift]]:
                runs[n][name].append(await run(n, r))
    return runs


async def compare_in_rounds(
    args: argparse.Namespace,
    counts: Sequence[int],
    subjects: Callable[[Stores], Sequence[tuple[str, Run]]],
    rows_of: Callable[[dict[str, list[dict[str, float]]], int], list[Result]],
    title: str,
) -> list[Result]:
    """The protocol of the session scripts: ``sqlite_and_redis`` set up, ``interleaved`` rounds
    (``args.rounds``) of ``subjects(stores)`` at each size of ``counts``, ``rows_of(runs, size)``
    printed under ``title`` (the sizes and rounds added), written to ``args.json`` if given (as
    benchmark ``args.name``), and returned. ``args`` comes from a ``rounds_parser``."""
    async with sqlite_and_redis(f"statekit-{args.name}-bench-", postgres=args.postgres) as stores:
        runs = await interleaved(args.rounds, counts, subjects(stores))
    rows = [row for n in counts for row in rows_of(runs[n], n)]
    shown = ", ".join(f"{n:,}" for n in counts)
    print_table(f"{title} ({shown} {args.unit}; {args.rounds} interleaved rounds, best and median)", rows)
    write_json(args.json, args.name, rows)
    return rows


def rounds_parser(name: str, doc: str | None, unit: str) -> argparse.ArgumentParser:
    """The command line of benchmark ``name`` run by ``compare_in_rounds``: ``--{unit}`` (the
    sizes, default 10000,100000), ``--rounds`` (7), ``--json`` and ``--postgres``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.set_defaults(name=name, unit=unit)
    parser.add_argument(f"--{unit}", type=sizes, default=[10_000, 100_000],
                        help=f"{unit} per write, comma-separated (default 10000,100000)")
    parser.add_argument("--rounds", type=int, default=7,
                        help="interleaved rounds, after an uncounted warm-up round (default 7)")
    parser.add_argument("--json", help="write the results as JSON to this path")
    parser.add_argument("--postgres", action="store_true",
                        help="also statekit over PostgreSQL (a cluster of its own, initdb/pg_ctl)")
    return parser


def batch_parser(doc: str | None, *, values: int, size: int, rounds: int) -> argparse.ArgumentParser:
    """The command line of a large-batch benchmark: ``--values`` (how many in a batch),
    ``--size`` (bytes of a value), ``--rounds`` and ``--json``, with these defaults."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--values", type=count, default=values)
    parser.add_argument("--size", type=count, default=size, help="bytes of a value (about)")
    parser.add_argument("--rounds", type=count, default=rounds)
    parser.add_argument("--json", help="write the results as JSON to this path")
    return parser


def sizes(text: str) -> list[int]:
    """``"10000,100000"`` as ``[10000, 100000]`` (an argparse ``type``)."""
    try:
        found = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not found or min(found) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be integers >= 1: {text!r}")
    return found


def count(text: str) -> int:
    """An integer >= 1 (an argparse ``type``)."""
    try:
        found = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if found < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return found


class LoopLag:
    """Longest gap (seconds) between the wake-ups of a task that sleeps 1 ms at a time, beyond
    the 1 ms it asked for: the event loop's longest stall while the ``async with`` body runs."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - 0.001)
            last = now

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0.005)
        self.worst = 0.0
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0.005)  # let it notice the end of a blocking stretch
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


async def timed_save(stage: Callable[[], Any], save: Callable[[], Any]) -> tuple[float, float, float]:
    """(seconds of ``stage()``, seconds until ``save()`` is done, the longest event-loop stall in
    seconds over both); either may return an awaitable, which is awaited (as Telethon awaits a
    session's ``save()``).

    A full garbage collection runs first, so each subject starts from the same collector state
    and a full collection that earlier rounds' garbage made due does not land in one subject's
    timing (collections its own allocations cause are still timed)."""
    gc.collect()
    async with LoopLag() as lag:
        start = time.perf_counter()
        staged = stage()
        if inspect.isawaitable(staged):
            await staged
        staged_s = time.perf_counter() - start
        saved = save()
        if inspect.isawaitable(saved):
            await saved
        durable_s = time.perf_counter() - start
    return staged_s, durable_s, lag.worst


async def timed(name: str, n: int, step: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """What ``step()`` returns (awaited if it returns an awaitable), and ``{name: n per second of
    it, "lag_" + name: the longest event-loop stall while it ran, seconds}``. A full garbage
    collection runs first (see ``timed_save``)."""
    gc.collect()
    async with LoopLag() as lag:
        start = time.perf_counter()
        result = step()
        if inspect.isawaitable(result):
            result = await result
        took = time.perf_counter() - start
    return result, {name: n / took, f"lag_{name}": lag.worst}


async def timed_close(held: list[Any], close: str, n: int) -> dict[str, float]:
    """``timed`` ``close``: calling method ``close`` of ``held``'s one item (awaited if it returns
    an awaitable), then dropping it (``held`` ends empty; the caller holds no other reference):
    what closing a session costs a program, the memory it lets go of included."""

    async def close_and_drop() -> None:
        done = getattr(held[0], close)()
        if inspect.isawaitable(done):
            await done
        held.clear()

    return (await timed("close", n, close_and_drop))[1]


@dataclass
class Stores:
    """What ``sqlite_and_redis`` set up: its temporary directory, the redis-server's own URL, and
    per backend (``"sqlite"``, ``"redis"``) a started statekit storage and the URL it was opened
    from (a second process opens the same store from it)."""

    workdir: Path
    redis_url: str
    urls: dict[str, str] = field(default_factory=dict)
    storages: dict[str, Any] = field(default_factory=dict)


@asynccontextmanager
async def sqlite_and_redis(prefix: str, *, postgres: bool = False) -> AsyncIterator[Stores]:
    """A temporary directory, a ``redis-server`` on a free loopback port (no persistence), and a
    statekit SQLite storage (a file in that directory) and Redis storage on it, both started, in
    namespace ``bench``; with ``postgres``, also a PostgreSQL cluster of its own on a free loopback
    port and a statekit PostgreSQL storage on it (``"postgres"``); all stopped and removed at the
    end."""
    from statekit import open_storage
    from statekit.testing import RedisServer
    from statekit.testing.postgres_server import PostgresServer

    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    server = RedisServer()
    server.start()
    cluster = PostgresServer() if postgres else None
    stores = Stores(workdir, server.url)
    try:
        stores.urls = {
            "sqlite": f"sqlite:///{workdir / 'statekit.db'}?namespace=bench",
            "redis": f"{server.url}?namespace=bench",
        }
        if cluster is not None:
            cluster.start()
            stores.urls["postgres"] = f"{cluster.url()}?namespace=bench"
        for name, url in stores.urls.items():
            stores.storages[name] = open_storage(url)
            await stores.storages[name].start()
        yield stores
    finally:
        for storage in stores.storages.values():
            await storage.stop()
        server.cleanup()
        if cluster is not None:
            cluster.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


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
