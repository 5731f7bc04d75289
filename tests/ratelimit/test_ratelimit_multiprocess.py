"""Eight processes hammering one key allow exactly ``limit`` in total (SPEC 7), over one real
Redis and one SQLite file. Processes are started with ``spawn``."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from pathlib import Path
from typing import Any

import pytest

from middleware import Rate, RateLimiter
from statekit import open_storage
from statekit.testing import RedisServer

PROCESSES = 8
HITS = 30
LIMIT = 20
# long enough that no run ever crosses a sliding-window edge or refills a GCRA slot
PERIOD = 1_000_000.0
STRATEGIES = ("fixed", "sliding", "gcra")


async def _hammer(url: str, barrier: Any) -> dict[str, int]:
    allowed: dict[str, int] = {}
    async with open_storage(url) as storage:
        for strategy in STRATEGIES:
            limiter = RateLimiter(storage, Rate(LIMIT, PERIOD), strategy=strategy)  # type: ignore[arg-type]
            await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
            # half the hits one after the other, half as concurrent tasks
            count = sum([(await limiter.hit("hot")).allowed for _ in range(HITS // 2)])
            results = await asyncio.gather(*(limiter.hit("hot") for _ in range(HITS // 2)))
            allowed[strategy] = count + sum(r.allowed for r in results)
    return allowed


def _worker(url: str, barrier: Any, out: Any) -> None:
    out.put(asyncio.run(_hammer(url, barrier)))


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    namespace = f"mp-{uuid.uuid4().hex[:8]}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'limits.db'}?namespace={namespace}"
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_url')}?namespace={namespace}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return f"{server.url}?namespace={namespace}"


@pytest.mark.slow
async def test_eight_processes_on_one_key_allow_exactly_the_limit(shared_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES, timeout=120)
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(shared_url, barrier, out)) for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    loop = asyncio.get_running_loop()
    try:
        reports = [await loop.run_in_executor(None, out.get, True, 180) for _ in procs]
    finally:
        for proc in procs:
            await loop.run_in_executor(None, proc.join, 30)
            if proc.is_alive():  # pragma: no cover - only after a failure
                proc.kill()
    assert all(proc.exitcode == 0 for proc in procs)
    for strategy in STRATEGIES:
        assert sum(report[strategy] for report in reports) == LIMIT, strategy
        assert sum(report[strategy] for report in reports) < PROCESSES * HITS
    async with open_storage(shared_url) as storage:
        for strategy in STRATEGIES:
            peeked = await RateLimiter(storage, Rate(LIMIT, PERIOD), strategy=strategy).peek("hot")  # type: ignore[arg-type]
            assert not peeked.allowed and peeked.remaining == 0
        await storage.clear_namespace()
