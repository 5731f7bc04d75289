"""SQLite checkpoints: a batch whose values fill ``CHECKPOINT_AT`` pages is acknowledged first and
checkpointed afterwards; every other write keeps SQLite's own checkpoints; the WAL stays bounded,
with one writer or several."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from statekit import SQLiteStorage
from statekit.storage.sqlite import CHECKPOINT_AT

PAGE = 4096
WAL_FRAME = PAGE + 24


def pages_of_values(count: int, tag: str) -> dict[str, bytes]:
    """``count`` values of about a page each (each write dirties at least one page)."""
    return {f"blob:{i}": tag.encode() + os.urandom(PAGE - 200) for i in range(count)}


def wal_file_frames(path: Path) -> int:
    """The WAL file's length in frames: the most frames the WAL has held since it was created."""
    wal = Path(f"{path}-wal")
    return max(0, wal.stat().st_size - 32) // WAL_FRAME if wal.exists() else 0


def wal_frames(path: Path) -> int:
    """The frames the WAL holds now, as a PASSIVE checkpoint by another connection reports them."""
    with closing(sqlite3.connect(path)) as db:
        busy, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0
    return int(frames)


async def test_a_commit_is_acknowledged_before_its_checkpoint_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = threading.Event(), threading.Event()
    copy_back = SQLiteStorage._copy_back

    def held_copy_back(self: SQLiteStorage, db: sqlite3.Connection) -> None:
        started.set()
        release.wait(60)
        copy_back(self, db)

    monkeypatch.setattr(SQLiteStorage, "_copy_back", held_copy_back)
    path = tmp_path / "ack.db"
    async with SQLiteStorage(path, sweep_interval=3600) as storage:
        await storage.set_many(pages_of_values(CHECKPOINT_AT + 100, "a"))  # returns, not held
        assert await asyncio.to_thread(started.wait, 60), "no checkpoint followed the commit"
        assert storage.checkpoints == 0
        assert wal_file_frames(path) >= CHECKPOINT_AT  # committed to the WAL
        release.set()
        assert await storage.get_state("blob:7") is not None  # queued behind the checkpoint
        assert storage.checkpoints == 1
        await storage.set_state("small", 1)  # every frame was copied back: the WAL starts over
        assert wal_frames(path) < 10


async def test_small_writes_keep_sqlites_own_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "small.db"
    async with SQLiteStorage(path, sweep_interval=3600) as storage:
        for round_ in range(6):  # ~5,400 frames: past CHECKPOINT_AT, in commits of ~100 keys
            await asyncio.gather(*(
                storage.set_state(f"user:{i}", os.urandom(PAGE - 200)) for i in range(300)
            ))
            await storage.set_many(pages_of_values(CHECKPOINT_AT * 6 // 10, str(round_)))  # ~2.4 MB
        assert storage.checkpoints == 0  # none deferred: SQLite checkpointed in the commits
        assert wal_file_frames(path) < 2 * CHECKPOINT_AT
        assert storage.transactions < 6 * 301
        assert (await storage.get_state("blob:0") or b"")[:1] == b"5"


async def test_the_wal_stays_bounded_under_steady_writes(tmp_path: Path) -> None:
    path = tmp_path / "steady.db"
    batch = CHECKPOINT_AT + 100  # each checkpointed after its acknowledgement
    async with SQLiteStorage(path, sweep_interval=3600) as storage:
        for round_ in range(12):  # ~13 times CHECKPOINT_AT frames in all
            await storage.set_many(pages_of_values(batch, str(round_)))
            # without the checkpoints the WAL would hold every frame (SQLite's backstop is 10x later)
            assert wal_file_frames(path) < 3 * CHECKPOINT_AT
        assert storage.checkpoints >= 3
        assert (await storage.get_state("blob:0") or b"")[:2] == b"11"


async def after_its_checkpoint(storage: SQLiteStorage) -> None:
    """Return once the checkpoint the storage's last commit asked for has run: a read issued at
    once reaches the worker thread before that checkpoint does, a second one after it."""
    await storage.get_state("none")
    await storage.get_state("none")


async def test_two_storages_on_one_file_lose_nothing_and_share_its_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    batch = CHECKPOINT_AT + 100
    async with SQLiteStorage(path, sweep_interval=3600, namespace="a") as first, SQLiteStorage(
        path, sweep_interval=3600, namespace="b"
    ) as second:
        # at once: how far the WAL grows then depends on how the two threads interleave (a
        # checkpoint lets it start over only if no other connection appended meanwhile), so
        # only what is stored is asserted
        for round_ in range(4):
            await asyncio.gather(
                first.set_many(pages_of_values(batch, f"a{round_}")),
                second.set_many(pages_of_values(batch, f"b{round_}")),
            )
        assert (await first.get_state("blob:9") or b"")[:2] == b"a3"
        assert (await second.get_state("blob:9") or b"")[:2] == b"b3"
        await after_its_checkpoint(first)
        await after_its_checkpoint(second)
        # in turn: each one's checkpoint copies the other's frames back too, and the WAL starts
        # over at the next batch instead of growing by each
        longest_before = wal_file_frames(path)
        for round_ in range(4, 8):
            for storage, tag in ((first, "a"), (second, "b")):
                await storage.set_many(pages_of_values(batch, f"{tag}{round_}"))
                await after_its_checkpoint(storage)
        assert wal_file_frames(path) <= max(longest_before, 2 * batch)
        assert wal_frames(path) < 2 * batch  # the last batch's frames alone
        assert first.checkpoints >= 4 and second.checkpoints >= 4
        assert (await first.get_state("blob:9") or b"")[:2] == b"a7"
        assert (await second.get_state("blob:9") or b"")[:2] == b"b7"


async def test_a_failed_checkpoint_is_logged_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def failing_copy_back(self: SQLiteStorage, db: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(SQLiteStorage, "_copy_back", failing_copy_back)
    path = tmp_path / "failing.db"
    values = pages_of_values(CHECKPOINT_AT + 100, "a")
    with caplog.at_level(logging.WARNING, logger="statekit.storage.sqlite"):
        async with SQLiteStorage(path, sweep_interval=3600) as storage:
            await storage.set_many(values)
            assert await storage.get_state("blob:5") == values["blob:5"]
    assert any(
        "checkpoint" in r.getMessage() and str(path) in r.getMessage() and "disk I/O" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    async with SQLiteStorage(path) as reopened:
        assert await reopened.get_many(list(values)) == values


async def test_memory_databases_have_no_wal_to_checkpoint() -> None:
    async with SQLiteStorage(":memory:") as storage:
        await storage.set_many(pages_of_values(CHECKPOINT_AT + 100, "a"))
        assert storage.checkpoints == 0
        assert len(await storage.list_keys("blob:*")) == CHECKPOINT_AT + 100
