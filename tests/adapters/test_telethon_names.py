"""Telethon's display names (``entities.name``) are carried: stored by ``TelethonSession`` on every
backend (a lookup by name works after a restart, as with Telethon's SQLite session), through
statekit strings, and to and from Telethon session files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from telethon import types
from telethon.crypto import AuthKey
from telethon.sessions import SQLiteSession

from statekit import BaseStorage
from statekit.adapters.telethon import TelethonSession
from statekit.session import (
    SessionStore,
    export_file,
    export_string,
    import_file,
    import_string,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using async sessions support:UserWarning")

AUTH_KEY = bytes(range(256))


def entities() -> Any:
    users = [types.User(id=101, access_hash=1001, first_name="Ann", last_name="Lee", username="ann")]
    chats = [
        types.Channel(
            id=301, title="Daily News", photo=types.ChatPhotoEmpty(), date=None, access_hash=3001,
            broadcast=True,
        ),
        types.Chat(id=201, title="Family", photo=types.ChatPhotoEmpty(), participants_count=2, date=None, version=1),
    ]
    return types.contacts.ResolvedPeer(peer=types.PeerUser(101), users=users, chats=chats)


EXPECTED = {
    "Ann Lee": types.InputPeerUser(101, 1001),
    "Daily News": types.InputPeerChannel(301, 3001),
    "Family": types.InputPeerChat(201),
}


async def test_names_survive_a_restart_strings_and_files(
    make_storage: Callable[..., BaseStorage], tmp_path: Path
) -> None:
    storage = make_storage()
    async with TelethonSession(storage, "me") as ours:
        ours.set_dc(2, "149.154.167.51", 443)
        ours.auth_key = AuthKey(AUTH_KEY)
        ours.process_entities(entities())
        await ours.save()
    async with TelethonSession(storage, "me") as again:
        for name, peer in EXPECTED.items():
            assert again.get_input_entity(name) == peer, name
        snap = await again.store.snapshot()
    assert {p.id: p.name for p in snap.peers} == {
        101: "Ann Lee",
        -1000000000301: "Daily News",
        -201: "Family",
    }
    assert import_string(export_string(snap, "statekit")).peers == snap.peers
    path = export_file(snap, tmp_path / "out.session", "telethon")
    theirs = SQLiteSession(str(path))
    try:
        for name, peer in EXPECTED.items():
            assert theirs.get_input_entity(name) == peer, name
    finally:
        theirs.close()
    assert import_file(path).peers == snap.peers


async def test_a_renamed_entity_resolves_by_its_new_name_only(
    make_storage: Callable[..., BaseStorage],
) -> None:
    storage = make_storage()
    async with TelethonSession(storage, "me") as ours:
        ours.process_entities(entities())
        await ours.save()
        renamed = types.User(id=101, access_hash=1001, first_name="Annie", username="ann")
        ours.process_entities([renamed])
        await ours.save()
    async with TelethonSession(storage, "me") as again:
        assert again.get_input_entity("Annie") == types.InputPeerUser(101, 1001)
        with pytest.raises(ValueError):
            again.get_input_entity("Ann Lee")


async def test_a_telethon_file_brings_its_names_into_the_store(
    make_storage: Callable[..., BaseStorage], tmp_path: Path
) -> None:
    theirs = SQLiteSession(str(tmp_path / "orig"))
    theirs.set_dc(2, "149.154.167.51", 443)
    theirs.auth_key = AuthKey(AUTH_KEY)
    theirs.process_entities(entities())
    theirs.save()
    theirs.close()
    storage = make_storage()
    await SessionStore(storage, "me").restore(import_file(tmp_path / "orig.session"))
    async with TelethonSession(storage, "me") as ours:
        for name, peer in EXPECTED.items():
            assert ours.get_input_entity(name) == peer, name
