"""PyrogramStorage driven by a real kurigram ``Client``, offline, over every backend: the
client's own code paths that touch storage behave exactly as with kurigram's own storage."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyrogram import Client, raw
from pyrogram.storage.storage import UpdateState as ClientUpdateState

from statekit import BaseStorage
from statekit.adapters.pyrogram import PyrogramStorage
from statekit.errors import SessionLockedError
from statekit.session import Peer, SessionData, SessionStore, UpdateState, import_string

AUTH_KEY = bytes(range(256))
API_HASH = "0123456789abcdef0123456789abcdef"
SESSION = SessionData(dc_id=2, auth_key=AUTH_KEY, api_id=12345, user_id=777, is_bot=True, date=0)
SESSION_STRING = (
    base64.urlsafe_b64encode(struct.pack(">BI?256sQ?", 2, 12345, False, AUTH_KEY, 777, True))
    .decode()
    .rstrip("=")
)


def users_and_chats() -> tuple[list[Any], list[Any]]:
    users = [
        raw.types.User(id=101, access_hash=1001, username="Alice", phone="15550101", first_name="A"),
        raw.types.User(id=102, access_hash=1002, first_name="B", bot=True, username="helper_bot"),
        raw.types.User(
            id=103,
            access_hash=1003,
            first_name="C",
            usernames=[
                raw.types.Username(username="Collect", active=True),
                raw.types.Username(username="Second", active=True),
            ],
        ),
    ]
    chats = [
        raw.types.Chat(id=201, title="group", photo=raw.types.ChatPhotoEmpty(), participants_count=2, date=0, version=1),
        raw.types.Channel(
            id=301, title="news", photo=raw.types.ChatPhotoEmpty(), date=0, access_hash=3001,
            username="NewsChan", broadcast=True,
        ),
        raw.types.Channel(
            id=302, title="talk", photo=raw.types.ChatPhotoEmpty(), date=0, access_hash=3002, megagroup=True,
        ),
    ]
    return users, chats


LOOKUPS: list[int | str] = [
    101, 102, 103, -201, -1000000000301, -1000000000302,
    "alice", "@ALICE", "helper_bot", "collect", "second", "newschan", "+1 555 0101", "15550101",
    "https://t.me/c/301/5", "me",
]


@pytest.fixture
async def clients(make_storage: Callable[..., BaseStorage], tmp_path: Path) -> Any:
    """A kurigram client over statekit (session preloaded) and one over kurigram's own storage."""
    storage = make_storage()
    await SessionStore(storage, "bot").save(SESSION)
    ours = Client(
        "bot", api_id=12345, api_hash=API_HASH, workdir=str(tmp_path),
        storage_engine=PyrogramStorage(storage, "bot"),
    )
    theirs = Client("ref", session_string=SESSION_STRING, in_memory=True, workdir=str(tmp_path))
    for client in (ours, theirs):
        await client.load_session()  # the client's own code: opens the storage, reads the session
        client.is_connected = True  # offline: resolve_peer only asks for this flag
    yield ours, theirs, storage
    await ours.storage.close()
    await theirs.storage.close()


async def test_loading_the_session_reads_every_field(clients: Any) -> None:
    ours, theirs, _ = clients
    for getter in ("dc_id", "api_id", "test_mode", "auth_key", "user_id", "is_bot", "date", "server_address", "port"):
        assert await getattr(ours.storage, getter)() == await getattr(theirs.storage, getter)(), getter


async def test_exported_session_string_is_the_one_kurigram_exports(clients: Any) -> None:
    ours, theirs, _ = clients
    exported = await ours.export_session_string()
    assert exported == await theirs.export_session_string() == SESSION_STRING


async def test_cached_peers_resolve_exactly_like_kurigram_own_storage(clients: Any) -> None:
    ours, theirs, _ = clients
    users, chats = users_and_chats()
    for client in (ours, theirs):
        await client.fetch_peers(users)
        await client.fetch_peers(chats)
    for key in LOOKUPS:
        got = await ours.resolve_peer(key)
        assert str(got) == str(await theirs.resolve_peer(key)), key


async def test_a_new_client_over_the_same_storage_resolves_the_cached_peers(
    clients: Any, tmp_path: Path
) -> None:
    ours, theirs, storage = clients
    users, chats = users_and_chats()
    for client in (ours, theirs):
        await client.fetch_peers(users + chats)
    await ours.storage.close()  # the first client stops (releases the session)
    again = Client(
        "bot", api_id=12345, api_hash=API_HASH, workdir=str(tmp_path),
        storage_engine=PyrogramStorage(storage, "bot"),
    )
    await again.load_session()
    again.is_connected = True
    for key in LOOKUPS:
        assert str(await again.resolve_peer(key)) == str(await theirs.resolve_peer(key)), key
    await again.storage.close()


async def test_a_session_string_restored_into_the_store_runs_the_client(
    make_storage: Callable[..., BaseStorage], tmp_path: Path
) -> None:
    storage = make_storage()
    await SessionStore(storage, "imported").restore(import_string(SESSION_STRING))
    client = Client(
        "imported", api_id=12345, api_hash=API_HASH, workdir=str(tmp_path),
        storage_engine=PyrogramStorage(storage, "imported"),
    )
    await client.load_session()  # not empty: no new authorization is attempted
    assert await client.storage.auth_key() == AUTH_KEY
    assert await client.export_session_string() == SESSION_STRING
    await client.storage.close()


async def test_old_usernames_and_unknown_peers_raise_key_error(clients: Any) -> None:
    ours, theirs, _ = clients
    users, _ = users_and_chats()
    renamed = raw.types.User(id=101, access_hash=1001, username="Alicia", first_name="A")
    for client in (ours, theirs):
        await client.fetch_peers(users)
        await client.fetch_peers([renamed])
        with pytest.raises(KeyError, match="Username not found"):
            await client.storage.get_peer_by_username("alice")
        assert str(await client.storage.get_peer_by_username("alicia")) == str(
            raw.types.InputPeerUser(user_id=101, access_hash=1001)
        )
        with pytest.raises(KeyError, match="ID not found"):
            await client.storage.get_peer_by_id(999)
        with pytest.raises(KeyError, match="Phone number not found"):
            await client.storage.get_peer_by_phone_number("000")


async def test_peers_staged_by_the_client_reach_the_storage_on_their_own(
    clients: Any,
) -> None:
    ours, _, storage = clients
    users, chats = users_and_chats()
    await ours.fetch_peers(users + chats)  # returns once staged, like kurigram's uncommitted write
    outsider = SessionStore(storage, "bot")  # another reader: sees only what reached the storage
    for _ in range(1500):  # up to 30 s on a busy machine; as soon as they arrive otherwise
        if await outsider.get_peer_by_username("alice") is not None:
            break
        await asyncio.sleep(0.02)
    alice = await outsider.get_peer_by_username("alice")
    assert alice is not None and (alice.id, alice.access_hash, alice.phone_number) == (101, 1001, "15550101")
    collector = await outsider.get_peer_by_id(103)
    assert collector is not None and collector.usernames == ("collect", "second")


async def test_usernames_expire_like_kurigram(make_storage: Callable[..., BaseStorage]) -> None:
    storage = PyrogramStorage(make_storage(), "bot", username_ttl=3600)
    await storage.open()
    await storage.store.update_peers([Peer(5, 6, "user", ("old",), last_update_on=int(time.time()) - 7200)])
    with pytest.raises(KeyError, match="Username expired"):
        await storage.get_peer_by_username("old")
    storage.username_ttl = None
    assert await storage.get_peer_by_username("old") is not None
    await storage.close()


async def test_update_states_written_by_the_client_read_back(clients: Any) -> None:
    ours, theirs, _ = clients
    sender = raw.types.User(id=5, access_hash=6, first_name="S")
    message = raw.types.Message(
        id=1, peer_id=raw.types.PeerUser(user_id=5), date=100, message="hi",
        from_id=raw.types.PeerUser(user_id=5),
    )
    updates = raw.types.Updates(
        updates=[raw.types.UpdateNewMessage(message=message, pts=10, pts_count=1)],
        users=[sender], chats=[], date=100, seq=3,
    )
    for client in (ours, theirs):
        await client.handle_updates(updates)  # the client's own update bookkeeping
        await client.storage.set_update_state(
            [ClientUpdateState(-1000000000301, 50, None, 90, None), ClientUpdateState(0, 11, 4, None, None)]
        )
    assert await ours.storage.get_update_states() == await theirs.storage.get_update_states()
    assert await ours.storage.get_update_states() == [
        ClientUpdateState(-1000000000301, 50, None, 90, None),
        ClientUpdateState(0, 11, 4, 100, 3),
    ]
    assert await ours.storage.get_update_states(0) == await theirs.storage.get_update_states(0)
    for client in (ours, theirs):
        await client.storage.delete_update_state([-1000000000301])
    assert await ours.storage.get_update_states() == await theirs.storage.get_update_states()
    assert await ours.storage.store.get_update_states() == [UpdateState(0, 11, 4, 100, 3)]


async def test_second_client_on_the_same_session_gets_session_locked(
    clients: Any, tmp_path: Path
) -> None:
    _, _, storage = clients
    intruder = Client(
        "bot", api_id=12345, api_hash=API_HASH, workdir=str(tmp_path),
        storage_engine=PyrogramStorage(storage, "bot"),
    )
    with pytest.raises(SessionLockedError, match="in use by pid"):
        await intruder.load_session()


async def test_setters_getters_save_and_delete(make_storage: Callable[..., BaseStorage]) -> None:
    storage = PyrogramStorage(make_storage(), "fresh")
    await storage.open()
    # a session that never logged in reads like kurigram's freshly created one
    assert [await storage.dc_id(), await storage.auth_key(), await storage.user_id(), await storage.date()] == [
        2, None, None, 0,
    ]
    assert await storage.server_address() == "149.154.167.51" and await storage.port() == 443
    await storage.dc_id(4)
    assert await storage.server_address() == "149.154.167.91"  # derived from the data centre
    await storage.test_mode(True)
    await storage.dc_id(2)
    assert (await storage.server_address(), await storage.port()) == ("149.154.167.40", 80)
    await storage.server_address("10.0.0.1")
    assert await storage.server_address() == "10.0.0.1"
    await storage.dc_id(4)
    await storage.auth_key(AUTH_KEY)
    await storage.user_id(None)  # None is a real value
    await storage.is_bot(False)
    await storage.save()
    assert abs(await storage.date() - time.time()) < 5
    assert (await storage.store.load()) == SessionData(
        dc_id=4, auth_key=AUTH_KEY, test_mode=True, date=await storage.date(),
        server_address="10.0.0.1",
    )
    with pytest.raises(ValueError, match="256 bytes"):
        await storage.auth_key(b"short")
    await storage.delete()
    assert await storage.store.load() is None
    await storage.close()


async def test_pyrogram_2_peer_tuples_carry_their_username(make_storage: Callable[..., BaseStorage]) -> None:
    storage = PyrogramStorage(make_storage(), "old")
    await storage.open()
    await storage.update_peers([(7, 70, "user", "Seven", "15557"), (-8, 0, "group", None, None)])
    assert str(await storage.get_peer_by_username("seven")) == str(raw.types.InputPeerUser(user_id=7, access_hash=70))
    assert str(await storage.get_peer_by_id(-8)) == str(raw.types.InputPeerChat(chat_id=8))
    await storage.update_peers([(7, 70, "user", None, "15557")])
    with pytest.raises(KeyError):
        await storage.get_peer_by_username("seven")
    with pytest.raises(ValueError, match="4 or 5 items, got tuple of 2 items"):
        await storage.update_peers([(1, 2)])
    with pytest.raises(ValueError, match="4 or 5 items, got int$"):
        await storage.update_peers([7])  # type: ignore[list-item]
    # a malformed peer is described, never shown: it may hold an access hash and a phone number
    with pytest.raises(ValueError, match="got tuple of 6 items") as caught:
        await storage.update_peers([(7, 987654321987, "user", "Seven", "15559876543", 1)])  # type: ignore[list-item]
    assert "987654321987" not in str(caught.value) and "15559876543" not in str(caught.value)
    await storage.close()


async def test_staged_usernames_are_cleaned_and_checked(make_storage: Callable[..., BaseStorage]) -> None:
    storage = PyrogramStorage(make_storage(), "staged")
    await storage.open()
    await storage.update_peers([(9, 90, "user", None)])  # kurigram: usernames come separately
    await storage.update_usernames([(9, ["@", "@Nine", None])])
    assert str(await storage.get_peer_by_username("NINE")) == str(raw.types.InputPeerUser(user_id=9, access_hash=90))
    stored = await storage.store.get_peer_by_id(9)
    assert stored is not None and stored.usernames == ("Nine",)
    keys = await storage.store.storage.list_keys()
    assert not [k for k in keys if k.endswith(":un:")]  # "@" alone is no username: no index entry
    with pytest.raises(TypeError, match="usernames must be str"):
        await storage.update_usernames([(9, ["ok", 5])])  # type: ignore[list-item]
    await storage.update_peers([(10, 100, "user", None)])
    for bad, message in (
        ([(10, ["ten"]), (10, "alice")], "usernames must be a list of str, not str"),
        ([(10, ["ten"]), 10], r"\(peer_id, usernames\) pairs, got 10"),
        ([(10, ["ten"]), ([10], ["x"])], "peer id must be an int"),
    ):
        with pytest.raises(TypeError, match=message):
            await storage.update_usernames(bad)  # type: ignore[arg-type]
    with pytest.raises(KeyError):  # the good pair before the bad one was not merged either
        await storage.get_peer_by_username("ten")
    assert str(await storage.get_peer_by_id(10)) == str(raw.types.InputPeerUser(user_id=10, access_hash=100))
    await storage.close()


@pytest.mark.parametrize(
    ("names", "stored"),
    [
        (["Solo"], ("Solo",)),
        (["@Solo"], ("Solo",)),
        ([""], ()),
        ([None], ()),
        (["Solo", None], ("Solo",)),
        (("Solo",), ("Solo",)),
    ],
)
@pytest.mark.parametrize("as_list", [False, True])
async def test_staged_usernames_of_every_shape_are_stored_clean(
    make_storage: Callable[..., BaseStorage], names: Any, stored: tuple[str, ...], as_list: bool
) -> None:
    storage = PyrogramStorage(make_storage(), "shapes")
    await storage.open()
    await storage.update_peers([(12, 120, "user", None)])
    pair: Any = [12, names] if as_list else (12, names)
    await storage.update_usernames([pair])
    await storage.save()
    peer = await storage.store.get_peer_by_id(12)
    assert peer is not None and peer.usernames == stored
    if stored:
        assert str(await storage.get_peer_by_username("solo")) == str(raw.types.InputPeerUser(user_id=12, access_hash=120))
    else:
        with pytest.raises(KeyError):
            await storage.get_peer_by_username("solo")
    await storage.close()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ((2**63, 1, "user", None), "peer id must be a 64-bit int"),
        ((5, -(2**63) - 1, "user", None), "access_hash must be a 64-bit int, not an int out of range$"),
        ((5, "4711", "user", None), "access_hash must be a 64-bit int, not str$"),  # the hash not shown
        ((5, 1, 3, None), "type must be a str"),
        ((5, 1, "user", 15557), "phone_number must be a str"),
        (("5", 1, "user", None), "peer id must be a 64-bit int"),
    ],
)
async def test_a_bad_staged_peer_names_its_field_and_stages_nothing(
    make_storage: Callable[..., BaseStorage], bad: tuple[Any, ...], message: str
) -> None:
    storage = PyrogramStorage(make_storage(), "bad-peer")
    await storage.open()
    with pytest.raises(TypeError, match=message):
        await storage.update_peers([(4, 40, "user", "+1 555-7"), bad])
    with pytest.raises(KeyError):
        await storage.get_peer_by_id(4)  # the good peer before it was not staged either
    await storage.update_peers([(4, 40, "user", "+1 555-7")])
    assert str(await storage.get_peer_by_phone_number("15557")) == str(
        raw.types.InputPeerUser(user_id=4, access_hash=40)
    )
    await storage.close()


def _batch(first: int, n: int, access_hash: int) -> list[tuple[int, int, str, None]]:
    return [(peer_id, access_hash + peer_id, "user", None) for peer_id in range(first, first + n)]


async def test_a_large_batch_staged_while_a_flush_runs_is_written_whole(
    make_storage: Callable[..., BaseStorage],
) -> None:
    """A batch larger than one turn of the event loop, merged into peers already staged while the
    background flush takes them: every peer reaches the storage, none is left behind in the
    staging map that flush took."""
    backing = make_storage()
    storage = PyrogramStorage(backing, "bot")
    await storage.open()
    big = _batch(2, 40_000, 10)  # 20 turns of the loop: the flush takes the map in between
    try:
        await storage.update_peers(_batch(1, 1, 10))  # staged; its background flush is queued
        lock = storage._flush_lock  # noqa: SLF001 - held here so that the batch merges into it
        await lock.acquire()
        try:
            staging = asyncio.ensure_future(storage.update_peers(big))
            for _ in range(10_000):  # turns of the loop, not time: the merge begins within a few
                if len(storage._pending) >= 2:  # noqa: SLF001 - the merge has begun, and yields
                    break
                await asyncio.sleep(0)
            else:
                pytest.fail("the batch was never merged into the staged peers")
        finally:
            lock.release()  # the queued flush takes the staged map while the merge goes on
        await staging
        await storage.save()
    finally:
        await storage.close()
    stored = {peer.id: peer.access_hash async for peer in SessionStore(backing, "bot").iter_peers()}
    assert stored == {peer_id: access_hash for peer_id, access_hash, _, _ in [*_batch(1, 1, 10), *big]}


async def test_lookups_during_a_large_username_update_see_all_of_it_or_none(
    make_storage: Callable[..., BaseStorage],
) -> None:
    """``update_usernames`` of staged peers, a batch larger than one turn of the event loop, is
    applied in slices holding the flush lock (as ``Client.fetch_peers`` stages, then names): a
    lookup meanwhile waits and sees all of it; a bad pair applies none of it."""
    storage = PyrogramStorage(make_storage(), "bot")
    await storage.open()
    try:
        names = [(peer_id, [f"Name{peer_id}"]) for peer_id in range(1, 6001)]

        async def fetch_peers() -> None:
            await storage.update_peers(_batch(1, 6000, 10))
            await storage.update_usernames(names)  # takes the lock before the background flush

        fetching = asyncio.ensure_future(fetch_peers())
        for _ in range(10_000):  # turns of the loop, not time
            if storage._flush_lock.locked():  # noqa: SLF001 - update_usernames holds it
                break
            await asyncio.sleep(0)
        else:
            pytest.fail("update_usernames never took the flush lock")
        found = await asyncio.gather(
            *(storage.get_peer_by_username(f"name{peer_id}") for peer_id in (1, 3000, 6000))
        )
        await fetching
        assert [peer.user_id for peer in found] == [1, 3000, 6000]
        await storage.update_peers(_batch(1, 6000, 20))  # staged again
        with pytest.raises(TypeError, match="must be a list of str"):  # a bad pair: none applied
            await storage.update_usernames([*((i, [f"Other{i}"]) for i in range(1, 6001)), (1, "x")])
        assert (await storage.get_peer_by_username("name5999")).access_hash == 20 + 5999
        with pytest.raises(KeyError):
            await storage.get_peer_by_username("other5999")
    finally:
        await storage.close()
