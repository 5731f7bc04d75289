"""Fault injection (SPEC section 1 promises under crashes): a SQLite writer SIGKILLed at random
points, and a Redis server killed and restarted with append-only persistence."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from statekit import SQLiteStorage, StorageUnavailableError, open_storage
from statekit.testing import RedisServer, RedisServerUnavailable

CHILD = Path(__file__).with_name("_sqlite_child.py")
KILLS = 20


async def _spawn(path: Path, tag: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(path), tag,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


class Acked:
    """What the children reported acknowledged, across every run."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.at_least: dict[str, int] = {}

    def add(self, line: str) -> None:
        op, key, number = line.split(" ")
        n = int(number)
        if op == "set":
            self.values[key] = {"w": int(key.split("-")[1]), "i": n, "pad": "x" * (n % 50)}
        elif op == "many":
            self.values[key + "a"] = n
            self.values[key + "b"] = [n]
        else:  # incr / cas: later unreported writes may only have moved them further up
            self.at_least[key] = max(self.at_least.get(key, 0), n)


async def _run_and_kill(
    proc: asyncio.subprocess.Process, delay: float, acked: Acked
) -> int:
    """Start ``proc``, SIGKILL it ``delay`` s after its first acknowledgement; return lines seen."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"go\n")
    await proc.stdin.drain()
    first = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert first.endswith(b"\n"), (first, await proc.stderr.read() if proc.stderr else b"")
    lines = [first]

    async def read_rest() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            lines.append(line)

    reader = asyncio.create_task(read_rest())
    await asyncio.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    await reader
    assert proc.returncode == -signal.SIGKILL
    for line in lines:
        if line.endswith(b"\n"):  # a line cut by the kill was never fully reported
            acked.add(line.decode().strip())
    return len(lines)


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


async def _check(path: Path, acked: Acked) -> None:
    async with SQLiteStorage(path, namespace="crash") as storage:
        found = await storage.get_many(list(acked.values))
        lost = [k for k, v in acked.values.items() if found.get(k) != v]
        assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:5]}"
        counters = await storage.get_many(list(acked.at_least))
        behind = {k: (counters.get(k), n) for k, n in acked.at_least.items() if (counters.get(k) or 0) < n}
        assert not behind, f"counters behind their acknowledged value: {behind}"


@pytest.mark.slow
async def test_sqlite_writer_killed_at_random_points_loses_no_acknowledged_write(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    acked = Acked()
    total_lines = 0
    nxt: asyncio.subprocess.Process | None = await _spawn(path, "r0")
    for run in range(KILLS):
        proc = nxt
        assert proc is not None
        # the next child imports while this one runs; it touches the file only after "go"
        nxt = await _spawn(path, f"r{run + 1}") if run + 1 < KILLS else None
        total_lines += await _run_and_kill(proc, rng.uniform(0.0, 0.25), acked)
        assert _integrity(path) == "ok", f"run {run}, seed {seed}"
        await _check(path, acked)
    assert nxt is None
    assert total_lines > KILLS * 5, "the children must have written something before each kill"
    assert len(acked.values) > 100


def _server(tmp: Path) -> RedisServer:
    try:
        server = RedisServer(appendonly=True)
        server.start()
    except RedisServerUnavailable as exc:
        if os.environ.get("STATEKIT_REQUIRE_REDIS") == "1":
            pytest.fail(f"STATEKIT_REQUIRE_REDIS=1 but {exc}")
        pytest.skip(str(exc))
    return server


@pytest.mark.parametrize("how", ["kill", "stop"])
async def test_redis_restart_with_appendonly_keeps_acked_writes_and_reconnects(tmp_path: Path, how: str) -> None:
    server = _server(tmp_path)
    try:
        storage = open_storage(server.url + "?namespace=restart")
        await storage.start()
        acked: dict[str, int] = {}
        for i in range(200):
            await storage.set_state(f"k{i}", i)
            acked[f"k{i}"] = i
        await storage.set_many({f"m{i}": [i] for i in range(50)}, ttl=300)
        assert await storage.increment("hits", 41) == 41
        assert await storage.compare_and_set("record", {"v": 1}, expected=None)

        server.kill() if how == "kill" else server.stop()
        for call in (storage.get_state("k1"), storage.set_state("x", 1), storage.increment("hits")):
            with pytest.raises(StorageUnavailableError, match=f"127.0.0.1:{server.port}"):
                await call
        assert await storage.health() is False

        server.start()
        # the same storage object reconnects by itself
        assert await storage.health() is True
        assert await storage.get_many(list(acked)) == acked
        assert await storage.get_many([f"m{i}" for i in range(50)]) == {f"m{i}": [i] for i in range(50)}
        ttl = await storage.get_ttl("m3")
        assert ttl is not None and 250 < ttl <= 300
        assert await storage.increment("hits") == 42
        assert await storage.get_state("record") == {"v": 1}
        await storage.clear_namespace()
        await storage.stop()
    finally:
        server.cleanup()
