"""Load: 8 spawned processes x 10,000 mixed operations against one Redis Cluster and one SQLite
file. Counters and compare-and-set counters must be exact, and the only errors the expected ones
(WrongTypeError for a deliberate increment of text, SerializationError for deliberate oversized
values)."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from statekit import open_storage
from statekit.testing import RedisClusterSetup

sys.path.insert(0, str(Path(__file__).parent))
import _load_worker  # noqa: E402

PROCESSES = 8
OPS = 10_000
TASKS = 8


def _run_processes(url: str) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    results: Any = ctx.Queue()
    procs = [
        ctx.Process(target=_load_worker.run, args=(url, i, OPS, TASKS, go, results))
        for i in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    go.set()
    reports = []
    try:
        for _ in procs:
            reports.append(results.get(timeout=240))
    except queue.Empty:
        pytest.fail(f"only {len(reports)} of {PROCESSES} workers reported: {reports}")
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return reports


async def _check(url: str, reports: list[dict[str, Any]]) -> None:
    crashed = [r for r in reports if "crash" in r]
    assert not crashed, crashed
    assert sorted(r["index"] for r in reports) == list(range(PROCESSES))
    assert all(r["ops"] == OPS for r in reports), [r["ops"] for r in reports]
    unexpected = [(r["index"], r["unexpected"]) for r in reports if r["unexpected_count"]]
    assert not unexpected, unexpected
    expected = {k: sum(r["expected_errors"].get(k, 0) for r in reports) for k in ("WrongTypeError", "SerializationError")}
    assert all(n > 0 for n in expected.values()), expected

    async with open_storage(url) as storage:
        counters = await storage.get_many(_load_worker.COUNTERS)
        for key in _load_worker.COUNTERS:
            assert counters.get(key, 0) == sum(r["increments"].get(key, 0) for r in reports), key
        records = await storage.get_many(_load_worker.CAS_KEYS)
        for key in _load_worker.CAS_KEYS:
            added = sum(r["cas"].get(key, 0) for r in reports)
            assert (records.get(key) or {"n": 0})["n"] == added, key
        total_incr = sum(sum(r["increments"].values()) for r in reports)
        assert total_incr > PROCESSES * OPS * 0.2, "the mix must really contain increments"
        await storage.clear_namespace()


@pytest.mark.slow
async def test_load_on_redis_cluster(redis_cluster: RedisClusterSetup) -> None:
    url = f"{redis_cluster.url}?namespace=load-{uuid.uuid4().hex[:6]}"
    reports = await asyncio.to_thread(_run_processes, url)
    await _check(url, reports)


@pytest.mark.slow
async def test_load_on_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'load.db'}?namespace=load"
    reports = await asyncio.to_thread(_run_processes, url)
    await _check(url, reports)
