"""Atomicity across processes sharing one SQLite file, one Redis or one PostgreSQL database (SPEC
section 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from statekit import open_storage
from statekit.testing import RedisServer

PROCESSES = 4


def _run_workers(job: str, url: str, key: str, count: int, go: Path) -> list[str]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "statekit.testing.workers", job, url, key, str(count), "--go", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    return outputs


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}?namespace=mp"
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_url')}?namespace=mp-{tmp_path.name}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return f"{server.url}?namespace=mp-{tmp_path.name}"


@pytest.mark.slow
async def test_increments_from_four_processes_are_exact(shared_url: str, tmp_path: Path) -> None:
    outputs = _run_workers("increment", shared_url, "hits", 2000, tmp_path / "go-incr")
    assert all(o.startswith("done") for o in outputs)
    async with open_storage(shared_url) as storage:
        assert await storage.get_state("hits") == PROCESSES * 2000
        await storage.clear_namespace()


@pytest.mark.slow
async def test_cas_retry_counters_from_four_processes_are_exact(shared_url: str, tmp_path: Path) -> None:
    outputs = _run_workers("cas", shared_url, "record", 300, tmp_path / "go-cas")
    assert all(o.startswith("done") for o in outputs)
    async with open_storage(shared_url) as storage:
        assert await storage.get_state("record") == {"n": PROCESSES * 300}
        await storage.clear_namespace()
