"""A Pyrogram 2.0 session file (schema 3) that kurigram has opened: kurigram's upgrade adds an empty
``usernames`` table and leaves the old usernames in ``peers.username``; peers it meets afterwards
get rows in ``usernames``. statekit's import reads both places."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pyrogram.storage import SQLiteStorage as KurigramSQLiteStorage

from statekit import BaseStorage
from statekit.adapters.pyrogram import PyrogramStorage
from statekit.session import (
    Peer,
    SessionData,
    SessionSnapshot,
    SessionStore,
    export_file,
    import_file,
)

AUTH_KEY = bytes(range(256))


async def kurigram_opened_file(tmp_path: Path) -> Path:
    now = int(time.time())
    snap = SessionSnapshot(
        SessionData(dc_id=2, auth_key=AUTH_KEY, api_id=12345, user_id=777, date=now),
        [
            Peer(101, 1001, "user", ("alice",), "15550101", now),
            Peer(102, 1002, "bot", ("helper_bot",), None, now),
            Peer(-1000000000301, 3001, "channel", ("newschan",), None, now),
        ],
    )
    path = tmp_path / "old.session"
    export_file(snap, path, "pyrogram")  # schema 3, as Pyrogram 2.0 writes it
    theirs = KurigramSQLiteStorage("old", workdir=tmp_path)
    await theirs.open()  # upgrades the file to schema 7
    await theirs.update_peers([(102, 1002, "bot", None), (103, 1003, "user", None)])
    await theirs.update_usernames([(103, ["carol"])])
    await theirs.save()
    # kurigram itself no longer finds the names it left in peers.username
    with pytest.raises(KeyError):
        await theirs.get_peer_by_username("alice")
    assert (await theirs.get_peer_by_username("carol")).user_id == 103
    await theirs.close()
    return path


async def test_import_reads_usernames_from_both_places(tmp_path: Path) -> None:
    path = await kurigram_opened_file(tmp_path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT number FROM version").fetchone() == (7,)
        assert conn.execute("SELECT id, username FROM usernames").fetchall() == [(103, "carol")]
    conn.close()
    snap = import_file(path)
    names = {p.id: p.usernames for p in snap.peers}
    assert names == {
        101: ("alice",),
        102: (),  # kurigram replaced this row (REPLACE INTO peers): its old username is gone
        103: ("carol",),
        -1000000000301: ("newschan",),
    }


async def test_an_upgraded_file_moved_into_statekit_resolves_its_usernames(
    make_storage: Callable[..., BaseStorage], tmp_path: Path
) -> None:
    snap = import_file(await kurigram_opened_file(tmp_path))
    storage = make_storage()
    await SessionStore(storage, "bot").restore(snap)
    ours = PyrogramStorage(storage, "bot")
    await ours.open()
    try:
        assert (await ours.get_peer_by_username("alice")).user_id == 101
        assert (await ours.get_peer_by_username("carol")).user_id == 103
        assert (await ours.get_peer_by_username("newschan")).channel_id == 301
    finally:
        await ours.close()
