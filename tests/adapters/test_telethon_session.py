"""TelethonSession driven by a real ``TelegramClient``, offline, over every backend: cached
entities resolve exactly as with Telethon's own session, and survive a restart."""

from __future__ import annotations

import asyncio
import datetime
import gc
import random
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from telethon import TelegramClient, types
from telethon._updates import ChannelState, SessionState
from telethon.crypto import AuthKey
from telethon.sessions import MemorySession

from statekit import BaseStorage, MemoryStorage
from statekit.adapters import telethon as telethon_adapter
from statekit.adapters.telethon import TelethonSession
from statekit.errors import SessionLockedError
from statekit.session import SessionData, UpdateState
from statekit.session import store as store_module
from statekit.session._buckets import PEER_BUCKETS
from tests.memory_release import largest_release

# TelethonSession silences this warning at import, but pytest resets warning filters per test.
pytestmark = pytest.mark.filterwarnings("ignore:Using async sessions support:UserWarning")

API_HASH = "0123456789abcdef0123456789abcdef"
AUTH_KEY = bytes(range(256))


def entities() -> Any:
    users = [
        types.User(id=101, access_hash=1001, username="Alice", phone="15550101", first_name="Alice"),
        types.User(id=102, access_hash=1002, username="helper_bot", bot=True, first_name="Helper"),
    ]
    chats = [
        types.Chat(id=201, title="Group", photo=types.ChatPhotoEmpty(), participants_count=2, date=None, version=1),
        types.Channel(
            id=301, title="News", photo=types.ChatPhotoEmpty(), date=None, access_hash=3001,
            username="NewsChan", broadcast=True,
        ),
        types.Channel(
            id=302, title="Talk", photo=types.ChatPhotoEmpty(), date=None, access_hash=3002, megagroup=True,
        ),
    ]
    return types.contacts.ResolvedPeer(peer=types.PeerUser(101), users=users, chats=chats)


KEYS: list[Any] = [
    101, 102, -201, -1000000000301, -1000000000302, 301,
    "alice", "@ALICE", "helper_bot", "newschan", "+1 555 0101", "t.me/newschan",
    types.PeerUser(101), types.PeerChannel(302), "me",
]


async def test_a_client_cannot_start_on_a_session_that_was_not_opened(
    make_storage: Callable[..., BaseStorage],
) -> None:
    with pytest.raises(RuntimeError, match="await session.open"):
        TelegramClient(TelethonSession(make_storage(), "me"), 12345, API_HASH)


async def test_cached_entities_resolve_like_telethons_own_session(
    make_storage: Callable[..., BaseStorage],
) -> None:
    async with TelethonSession(make_storage(), "me") as ours:
        theirs = MemorySession()
        for session in (ours, theirs):
            session.process_entities(entities())
        ours_client = TelegramClient(ours, 12345, API_HASH)
        theirs_client = TelegramClient(theirs, 12345, API_HASH)
        for key in [*KEYS, "Alice", "News"]:  # display names resolve within the process
            got = await ours_client.get_input_entity(key)
            assert str(got) == str(await theirs_client.get_input_entity(key)), key
        with pytest.raises(ValueError, match="Could not find"):
            ours.get_input_entity(999)  # unknown (the client would ask the network next)


async def test_queued_entities_are_read_by_the_next_lookup_or_save(
    make_storage: Callable[..., BaseStorage],
) -> None:
    # process_entities only queues (a big batch would hold the loop); lookups and save() read
    storage = make_storage()
    users = [types.User(id=1000 + i, access_hash=5000 + i, username=f"q{i}", first_name="Q") for i in range(2500)]
    async with TelethonSession(storage, "queued") as session:
        session.process_entities(types.contacts.Contacts(contacts=[], saved_count=0, users=users))
        assert session.get_entity_rows_by_username("Q7") == (1007, 5007)  # read before answering
        session.process_entities([*users[:10], types.User(id=9999, access_hash=1, username="late")])
        session.process_entities([types.User(id=1000, access_hash=77, username="q0")])  # newer wins
        await session.save()
    async with TelethonSession(storage, "queued") as again:
        assert again.get_entity_rows_by_username("late") == (9999, 1)
        assert again.get_entity_rows_by_id(3499) == (3499, 7499)
        assert again.get_entity_rows_by_id(1000) == (1000, 77)


async def test_a_lookup_while_the_background_reader_is_part_way_sees_every_queued_entity(
    make_storage: Callable[..., BaseStorage],
) -> None:
    users = [types.User(id=1000 + i, access_hash=5000 + i, username=f"p{i}", first_name=f"P{i}") for i in range(3500)]
    async with TelethonSession(make_storage(), "partway") as session:
        session.process_entities(users)
        for _ in range(3):  # the background reader reads 1,000 a turn of the loop
            await asyncio.sleep(0)
        assert session._unread, "the reader should still be part-way for this test to mean anything"
        session.process_entities([types.User(id=9000, access_hash=9, username="after")])
        assert session.get_entity_rows_by_username("p3499") == (4499, 8499)
        assert session.get_entity_rows_by_username("after") == (9000, 9)
        assert session.get_entity_rows_by_name("P1") == (1001, 5001)  # read before the reader
        await session.save()
        assert not session._unread
        stored = [await session.store.get_peer_by_id(pid) for pid in (1000, 2999, 4499, 9000)]
        assert [peer.access_hash if peer else None for peer in stored] == [5000, 6999, 8499, 9]


async def test_aclose_forgets_the_entities_a_slice_a_turn(make_storage: Callable[..., BaseStorage]) -> None:
    """aclose() forgets the loaded session, letting go of its entities ``_READ_EVERY`` at a time
    with the event loop running between (dropping those of 100,000 entities at once held it for
    14-24 ms); open() loads them again."""
    users = [types.User(id=1000 + i, access_hash=5000 + i, username=f"c{i}", first_name="C") for i in range(3000)]
    storage = make_storage()
    session = TelethonSession(storage, "closing")
    await session.open()
    tracemalloc.start()
    try:
        session.process_entities(types.contacts.Contacts(contacts=[], saved_count=0, users=users))
        await session.save()
        assert session.get_entity_rows_by_username("c2999") == (3999, 7999)
        del users
        largest, freed = await largest_release(session.aclose())
    finally:
        tracemalloc.stop()
    assert freed > 500_000, freed  # the entities went (3,000 rows, their strings and ints)
    # in slices, not in one piece; the largest turn (a fifth) is the end, where each map's own
    # table goes: one allocation, no row in it
    assert largest < freed // 3, (largest, freed)
    assert session.get_entity_rows_by_id(1000) is None
    assert session.get_entity_rows_by_username("c0") is None
    await session.open()
    try:
        assert session.get_entity_rows_by_id(1000) == (1000, 5000)
        assert session.get_entity_rows_by_username("c2999") == (3999, 7999)
    finally:
        await session.aclose()


async def test_save_while_the_background_reader_runs_reads_one_slice_a_turn(
    make_storage: Callable[..., BaseStorage],
) -> None:
    """save() waits for the background reader instead of reading beside it (two slices in every
    turn of the event loop: twice the stall), and raises what stopped that reader."""
    users = [types.User(id=1000 + i, access_hash=5000 + i, username=f"s{i}", first_name="S") for i in range(6000)]
    async with TelethonSession(make_storage(), "one-reader") as session:
        turns = 0
        read_at: list[int] = []  # the turn of the loop each slice was read in
        remember = session._remember

        def counting(entities: Any) -> int:
            read_at.append(turns)
            return remember(entities)

        async def ticker() -> None:
            nonlocal turns
            while True:
                await asyncio.sleep(0)
                turns += 1

        session._remember = counting  # type: ignore[method-assign]
        ticking = asyncio.create_task(ticker())
        session.process_entities(users)
        await asyncio.sleep(0)  # the background reader begins
        await session.save()
        ticking.cancel()
        slices = 6000 // telethon_adapter._READ_EVERY  # noqa: SLF001 - the slice size
        assert len(read_at) == slices and len(set(read_at)) == slices, read_at
        assert (await session.store.get_peer_by_id(6999)).access_hash == 10999  # type: ignore[union-attr]

        def failing(entities: Any) -> int:
            raise RuntimeError("a slice could not be read")

        session._remember = failing  # type: ignore[method-assign]
        session.process_entities(users[:10])
        await asyncio.sleep(0)  # the background reader begins, and fails
        with pytest.raises(RuntimeError, match="could not be read"):
            await session.save()
        session._remember = remember  # type: ignore[method-assign]


async def test_a_restarted_client_meeting_its_entities_changed_leaves_no_pile_for_the_collector() -> None:
    """A client restarted on a stored session that meets its entities again with new hashes
    and usernames replaces the rows it loaded one by one. Each replaced row is freed as its
    successor is made, so CPython's allocation count never reaches a collection while every
    new row joins the youngest generation: the first collection then traced them all in one pause (50-110 ms at
    100,000 entities). The adapter runs the collections the count would have run."""
    assert gc.isenabled()
    n = 20_000
    storage = MemoryStorage()

    def users(first_hash: int, prefix: str) -> list[Any]:
        return [types.User(id=i, access_hash=first_hash + i, username=f"{prefix}{i}") for i in range(1, n + 1)]

    async with TelethonSession(storage, "restarted") as first:
        first.process_entities(users(10**9, "u"))
        await first.save()
    async with TelethonSession(storage, "restarted") as again:
        changed = users(2 * 10**9, "v")  # a new hash and username each
        gc.collect()
        again.process_entities(changed)
        for _ in range(n):  # bounded: the background reader reads 1,000 a turn
            if not again._unread:
                break
            await asyncio.sleep(0)
        assert not again._unread and again.get_entity_rows_by_id(n) == (n, 2 * 10**9 + n)

        def rows_in(*generations: int) -> int:
            return sum(
                1 for g in generations for o in gc.get_objects(g) if type(o) is tuple and len(o) == 7
            )

        # without the collections all 20,000 new rows wait in generation 0
        assert rows_in(0) <= 1000 and rows_in(0, 1) <= 10_000, (rows_in(0), rows_in(1))
        await again.save()
    async with TelethonSession(storage, "restarted") as third:
        assert third.get_entity_rows_by_username("v777") == (777, 2 * 10**9 + 777)


async def test_opening_a_large_session_lets_the_event_loop_run(
    make_storage: Callable[..., BaseStorage],
) -> None:
    """open() reads the stored entities ``_YIELD_ROWS`` (500) at a time plus the rest of a bucket,
    the event loop running between: at 100,000 entities it held the loop for 200 ms."""
    storage = make_storage()
    users = [types.User(id=i, access_hash=7 + i, username=f"o{i}") for i in range(1, 4001)]
    async with TelethonSession(storage, "big") as session:
        session.process_entities(users)
        await session.save()
    again = TelethonSession(storage, "big")
    gaps: list[int] = []

    async def ticker() -> None:
        seen = 0
        while True:
            await asyncio.sleep(0)
            gaps.append(len(again._peers) - seen)
            seen = len(again._peers)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    async with again:
        ticking.cancel()
        assert len(again._peers) == 4000 and again.get_entity_rows_by_username("O3999") == (3999, 4006)
        largest_bucket = max(Counter(u.id % PEER_BUCKETS for u in users).values())
        assert max(gaps) <= store_module._YIELD_ROWS + largest_bucket, max(gaps)  # noqa: SLF001


@pytest.mark.parametrize("lookups_every", [1, 5, 1000], ids=["each-batch", "every-5", "at-the-end"])
async def test_usernames_and_phones_resolve_to_their_current_holder_however_rarely_looked_up(
    lookups_every: int,
) -> None:
    # the username / phone index is brought up to date by lookups (replaying what changed, or
    # rebuilding when much changed or went stale): every regime answers as a model that always
    # knows who holds what (usernames and phones held by one entity at a time, as Telegram has it)
    rng = random.Random(lookups_every)
    n = 300
    holder: dict[str, int] = {f"u{i}": 1000 + i for i in range(n)}
    phone_of: dict[int, str | None] = {1000 + i: (f"1555{i:04d}" if i % 3 == 0 else None) for i in range(n)}
    hashes = {1000 + i: 1 for i in range(n)}

    def user(uid: int) -> Any:
        name = next((u for u, h in holder.items() if h == uid), None)
        return types.User(id=uid, access_hash=hashes[uid], username=name, phone=phone_of[uid])

    async with TelethonSession(MemoryStorage(), "names") as session:

        def check() -> None:
            for name in [*holder, "u0", "u150", "gone"]:
                want = holder.get(name)
                got = session.get_entity_rows_by_username(name.upper())
                assert got == (None if want is None else (want, hashes[want])), name
            for uid, phone in phone_of.items():
                if phone is not None:
                    assert session.get_entity_rows_by_phone(phone) == (uid, hashes[uid]), phone

        session.process_entities([user(1000 + i) for i in range(n)])
        for batch in range(12):
            changed: set[int] = set()
            for _ in range(150):
                uid = 1000 + rng.randrange(n)
                hashes[uid] += 1
                move = rng.random()
                if move < 0.4:  # renamed to a new username
                    for name in [u for u, h in holder.items() if h == uid]:
                        del holder[name]
                    holder[f"v{batch}-{uid}"] = uid
                elif move < 0.7 and holder:  # takes over another's username (the other loses it)
                    name = rng.choice(sorted(holder))
                    old = holder[name]
                    for mine in [u for u, h in holder.items() if h == uid]:
                        del holder[mine]
                    holder[name] = uid
                    changed.add(old)
                else:  # the phone moves to a new number
                    phone_of[uid] = f"1777{batch:02d}{uid}"
                changed.add(uid)
            session.process_entities([user(uid) for uid in sorted(changed)])
            if (batch + 1) % lookups_every == 0:
                check()
        check()
        await session.save()
    async with TelethonSession(session.store.storage, "names") as again:  # what was stored
        session = again
        check()


async def test_entities_and_session_survive_a_restart(make_storage: Callable[..., BaseStorage]) -> None:
    storage = make_storage()
    theirs = MemorySession()
    theirs.process_entities(entities())
    async with TelethonSession(storage, "me") as session:
        client = TelegramClient(session, 12345, API_HASH)
        session.set_dc(4, "149.154.167.91", 443)
        session.auth_key = AuthKey(AUTH_KEY)
        session.process_entities(entities())
        await session.save()  # what Telethon awaits after logging in and every minute
        assert client.session is session
    async with TelethonSession(storage, "me") as again:
        assert (again.dc_id, again.server_address, again.port) == (4, "149.154.167.91", 443)
        assert again.auth_key.key == AUTH_KEY
        client = TelegramClient(again, 12345, API_HASH)
        theirs_client = TelegramClient(theirs, 12345, API_HASH)
        for key in KEYS:
            assert str(await client.get_input_entity(key)) == str(await theirs_client.get_input_entity(key)), key
        loaded = await again.store.load()
        assert loaded == SessionData(dc_id=4, auth_key=AUTH_KEY, server_address="149.154.167.91", port=443)
        peer = await again.store.get_peer_by_id(-1000000000301)
        assert peer is not None and peer.type == "channel" and peer.usernames == ("newschan",)
        bot = await again.store.get_peer_by_username("helper_bot")
        assert bot is not None and bot.type == "bot"


async def test_disconnect_writes_update_states_and_self_through_telethons_own_code(
    make_storage: Callable[..., BaseStorage],
) -> None:
    storage = make_storage()
    session = await TelethonSession(storage, "me").open()
    client = TelegramClient(session, 12345, API_HASH)
    client._message_box.load(SessionState(0, 0, False, 10, 3, 100, 7, None), [ChannelState(1234, 55)])
    client._mb_entity_cache.set_self_user(777, False, 999)
    await client.disconnect()  # saves states and entities, then closes the session
    assert await session.store.holder() is None  # close() released the lease
    states = await session.store.get_update_states()
    assert states[0] == UpdateState(0, 10, 3, 100, 7)
    assert (states[1].id, states[1].pts) == (-1000000001234, 55)  # channels in Bot-API form
    async with TelethonSession(storage, "me") as again:
        common = again.get_update_state(0)
        assert (common.pts, common.qts, common.seq) == (10, 3, 7)
        assert common.date == datetime.datetime.fromtimestamp(100, tz=datetime.timezone.utc)
        assert again.get_update_state(1234).pts == 55
        # the "self" hack Telethon relies on when it connects
        assert again.get_input_entity(0).access_hash == 777


async def test_a_new_username_replaces_the_old_one(make_storage: Callable[..., BaseStorage]) -> None:
    storage = make_storage()
    async with TelethonSession(storage, "me") as session:
        session.process_entities(entities())
        renamed = types.User(id=101, access_hash=1001, username="Alicia", first_name="Alice")
        session.process_entities([renamed])
        with pytest.raises(ValueError):
            session.get_input_entity("alice")
        assert session.get_input_entity("alicia").user_id == 101
    async with TelethonSession(storage, "me") as again:
        with pytest.raises(ValueError):
            again.get_input_entity("alice")
        assert again.get_input_entity("alicia").user_id == 101


async def test_a_second_process_gets_session_locked_and_close_flushes(
    make_storage: Callable[..., BaseStorage],
) -> None:
    storage = make_storage()
    session = await TelethonSession(storage, "me").open()
    with pytest.raises(SessionLockedError, match="in use by pid"):
        await TelethonSession(storage, "me").open()
    session.takeout_id = 42
    session.set_update_state(0, types.updates.State(1, 2, datetime.datetime.fromtimestamp(3, tz=datetime.timezone.utc), 4, 0))
    await session.aclose()  # not saved before: closing writes it
    assert (await session.store.get_fields())["takeout_id"] == 42
    assert await session.store.get_update_states() == [UpdateState(0, 1, 2, 3, 4)]
    async with TelethonSession(storage, "me") as again:
        assert again.takeout_id == 42


async def test_log_out_deletes_everything_and_clones_are_throwaway(
    make_storage: Callable[..., BaseStorage],
) -> None:
    storage = make_storage()
    async with TelethonSession(storage, "me") as session:
        session.auth_key = AuthKey(AUTH_KEY)
        session.process_entities(entities())
        await session.save()
        clone = session.clone()
        assert type(clone) is MemorySession
        await session.delete()  # what log_out awaits
        assert session.auth_key is None
        assert [k for k in await storage.list_keys() if not k.endswith(":lease")] == []
    assert await storage.list_keys() == []
