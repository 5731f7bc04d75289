"""Telethon's record of the signed-in user (entity 0, the user's id in the hash column): it sets the
session's ``user_id``, is never a peer, answers ``get_input_entity(0)`` as Telethon's own sessions
do, and survives a restart and conversion to Telethon and kurigram files, both ways."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from telethon import TelegramClient, types
from telethon.crypto import AuthKey
from telethon.sessions import MemorySession, SQLiteSession

from statekit import BaseStorage
from statekit.adapters.telethon import TelethonSession
from statekit.session import (
    Peer,
    SessionData,
    SessionSnapshot,
    SessionStore,
    export_file,
    import_file,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using async sessions support:UserWarning")

API_HASH = "0123456789abcdef0123456789abcdef"
AUTH_KEY = bytes(range(256))
ME = 777


def marker() -> Any:
    """Exactly what Telethon's ``_save_states_and_entities`` hands the session."""
    return types.contacts.ResolvedPeer(None, [types.InputPeerUser(0, ME)], [])


def me() -> Any:
    return types.User(id=ME, access_hash=5, first_name="Me", username="me_myself")


async def test_the_marker_sets_user_id_and_is_no_peer(make_storage: Callable[..., BaseStorage]) -> None:
    storage = make_storage()
    reference = MemorySession()
    async with TelethonSession(storage, "me") as ours:
        ours.auth_key = AuthKey(AUTH_KEY)
        ours.set_dc(2, "149.154.167.51", 443)
        for session in (ours, reference):
            session.process_entities([me()])
            session.process_entities(marker())
        assert ours.user_id == ME
        assert ours.get_input_entity(0) == reference.get_input_entity(0) == types.InputPeerUser(0, ME)
        await ours.save()
        snap = await ours.store.snapshot()
        assert snap.data.user_id == ME
        assert [p.id for p in snap.peers] == [ME]  # no peer 0
    async with TelethonSession(storage, "me") as again:
        assert again.user_id == ME
        assert again.get_input_entity(0) == types.InputPeerUser(0, ME)
        client = TelegramClient(again, 12345, API_HASH)
        assert await client.get_input_entity(0) == types.InputPeerUser(0, ME)
        assert again.get_input_entity(ME) == types.InputPeerUser(ME, 5)
        await again.delete()
        assert again.user_id is None
        with pytest.raises(ValueError):
            again.get_input_entity(0)


async def test_no_marker_no_self(make_storage: Callable[..., BaseStorage]) -> None:
    async with TelethonSession(make_storage(), "me") as ours:
        ours.process_entities([me()])
        assert ours.user_id is None
        with pytest.raises(ValueError, match="Could not find"):
            ours.get_input_entity(0)  # as MemorySession / SQLiteSession without the marker


async def test_export_keeps_the_marker_for_telethon_and_sets_user_id_for_kurigram(
    make_storage: Callable[..., BaseStorage], tmp_path: Path
) -> None:
    storage = make_storage()
    async with TelethonSession(storage, "me") as ours:
        ours.auth_key = AuthKey(AUTH_KEY)
        ours.set_dc(2, "149.154.167.51", 443)
        ours.process_entities([me()])
        ours.process_entities(marker())
        await ours.save()
        snap = await ours.store.snapshot()
    export_file(snap, tmp_path / "t.session", "telethon")
    theirs = SQLiteSession(str(tmp_path / "t"))
    try:
        assert theirs.get_input_entity(0) == types.InputPeerUser(0, ME)
        assert theirs.get_input_entity(ME) == types.InputPeerUser(ME, 5)
    finally:
        theirs.close()
    export_file(snap, tmp_path / "k.session", "kurigram", api_id=12345)
    with sqlite3.connect(tmp_path / "k.session") as conn:
        assert conn.execute("SELECT user_id FROM sessions").fetchall() == [(ME,)]
        assert conn.execute("SELECT id FROM peers").fetchall() == [(ME,)]
    conn.close()


async def test_a_telethon_file_moved_in_answers_get_input_entity_0(
    make_storage: Callable[..., BaseStorage], tmp_path: Path
) -> None:
    theirs = SQLiteSession(str(tmp_path / "orig"))
    theirs.set_dc(2, "149.154.167.51", 443)
    theirs.auth_key = AuthKey(AUTH_KEY)
    theirs.process_entities([me()])
    theirs.process_entities(marker())
    theirs.save()
    expected = theirs.get_input_entity(0)
    theirs.close()
    snap = import_file(tmp_path / "orig.session")
    assert snap.data.user_id == ME and 0 not in [p.id for p in snap.peers]
    storage = make_storage()
    await SessionStore(storage, "me").restore(snap)
    async with TelethonSession(storage, "me") as ours:
        assert ours.get_input_entity(0) == expected == types.InputPeerUser(0, ME)


async def test_a_marker_stored_as_a_peer_by_an_older_statekit_is_read_as_user_id(
    make_storage: Callable[..., BaseStorage],
) -> None:
    storage = make_storage()
    data = SessionData(dc_id=2, auth_key=AUTH_KEY)
    await SessionStore(storage, "me").restore(
        SessionSnapshot(data, [Peer(0, ME, "user"), Peer(ME, 5, "user")])
    )
    async with TelethonSession(storage, "me") as ours:
        assert ours.user_id == ME
        assert ours.get_input_entity(0) == types.InputPeerUser(0, ME)
