"""SessionStore over every backend: record, granular updates, peers, update states, listing,
snapshots and deletion (SPEC section 6)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import re
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import msgpack
import pytest
import redis.asyncio

from statekit import BaseStorage, MemoryStorage, RedisStorage
from statekit.codec import MsgpackCodec
from statekit.errors import CorruptValueError, SessionLockedError, StorageUnavailableError
from statekit.session import (
    Peer,
    SessionData,
    SessionSnapshot,
    SessionStore,
    UpdateState,
    list_sessions,
)
from statekit.session import store as store_module
from statekit.session._buckets import (
    PEER_BUCKETS,
    decode_index_bucket,
    decode_peer_bucket,
    index_bucket,
)
from statekit.session._packed import is_packed_index, is_packed_peers
from statekit.session._peers import PeerRow, normalize_phone
from statekit.storage._fastpath import FastPathStorage
from statekit.testing import RedisServer
from tests.memory_release import largest_release

KEY = bytes(range(256))


def data(**over: object) -> SessionData:
    fields: dict[str, object] = {
        "dc_id": 4,
        "auth_key": KEY,
        "server_address": "149.154.167.91",
        "port": 443,
        "api_id": 12345,
        "test_mode": False,
        "date": 1_700_000_000,
        "user_id": 777,
        "is_bot": True,
    }
    fields.update(over)
    return SessionData(**fields)  # type: ignore[arg-type]


async def test_save_then_load_gives_every_field_back(storage: BaseStorage) -> None:
    store = SessionStore(storage, "main")
    assert await store.load() is None
    assert not await store.exists()
    await store.save(data())
    assert await store.load() == data()
    assert await store.exists()
    # a second store (another process, say) reads the same
    assert await SessionStore(storage, "main").load() == data()


async def test_repr_of_store_and_data_never_shows_the_auth_key(storage: BaseStorage) -> None:
    store = SessionStore(storage, "main")
    await store.save(data())
    loaded = await store.load()
    for text in (repr(store), repr(loaded), str(loaded)):
        assert KEY.hex() not in text and repr(KEY) not in text


async def test_update_changes_one_field_and_keeps_the_others(storage: BaseStorage) -> None:
    store = SessionStore(storage, "main")
    await store.save(data())
    fields = await store.update(dc_id=2, server_address="149.154.167.51")
    assert fields["dc_id"] == 2 and fields["user_id"] == 777 and fields["auth_key"] == KEY
    assert await store.load() == data(dc_id=2, server_address="149.154.167.51")
    await store.update(user_id=None)
    assert (await store.get_fields())["user_id"] is None
    assert await store.get_field("api_id") == 12345


async def test_concurrent_updates_of_different_fields_from_two_stores_all_land(
    storage: BaseStorage,
) -> None:
    a, b = SessionStore(storage, "main"), SessionStore(storage, "main")
    await a.save(data())
    await asyncio.gather(
        *(a.update(api_id=1000 + i) for i in range(10)),
        *(b.update(date=2000 + i) for i in range(10)),
        b.update(user_id=5),
        a.update(is_bot=False),
    )
    fields = await SessionStore(storage, "main").get_fields()
    assert fields["api_id"] in range(1000, 1010)
    assert fields["date"] in range(2000, 2010)
    assert fields["user_id"] == 5 and fields["is_bot"] is False and fields["auth_key"] == KEY


async def test_partial_record_before_login_is_kept_and_load_says_none(storage: BaseStorage) -> None:
    store = SessionStore(storage, "fresh")
    await store.update(dc_id=2, api_id=1, test_mode=False)
    assert await store.load() is None  # no auth key yet
    assert (await store.get_fields())["dc_id"] == 2
    await store.update(auth_key=KEY)
    loaded = await store.load()
    assert loaded is not None and loaded.auth_key == KEY and loaded.user_id is None


@pytest.mark.parametrize(
    ("fields", "error", "words"),
    [
        ({"auth_key": b"short"}, ValueError, "256 bytes, got 5"),
        ({"auth_key": "text"}, TypeError, "auth_key must be bytes"),
        ({"dc_id": 0}, ValueError, "dc_id"),
        ({"dc_id": "2"}, TypeError, "dc_id"),
        ({"user_id": 2**70}, TypeError, "user_id"),
        ({"test_mode": "yes"}, TypeError, "test_mode"),
        ({"colour": 1}, ValueError, "unknown session field 'colour'"),
    ],
)
async def test_bad_fields_are_refused_and_nothing_is_written(
    storage: BaseStorage, fields: dict[str, object], error: type[Exception], words: str
) -> None:
    store = SessionStore(storage, "main")
    await store.save(data())
    with pytest.raises(error, match=words):
        await store.update(api_id=1, **fields)
    assert await store.load() == data()


@pytest.mark.parametrize("name", ["", "a{b}", "x}", "tab\there", "n" * 201])
def test_bad_session_names_are_refused(name: str) -> None:
    from statekit import MemoryStorage

    with pytest.raises(ValueError, match="session name"):
        SessionStore(MemoryStorage(), name)


async def test_every_key_of_a_session_shares_one_hash_tag(storage: BaseStorage) -> None:
    store = SessionStore(storage, "tagged")
    await store.open()
    await store.save(data())
    await store.update_peers([Peer(1, 2, "user", ("Name",), "+1 555 0100")])
    await store.set_update_state(UpdateState(0, 1, 2, 3, 4))
    keys = await storage.list_keys()
    assert len(keys) == 7  # data, peer bucket, username and phone index buckets, layout, states, lease
    assert all(k.startswith("session:{tagged}:") for k in keys)
    await store.close()


# ---------------------------------------------------------------------- peers


def peers(n: int) -> list[Peer]:
    return [Peer(i, i * 31, "user", (f"User{i}",), f"+1555{i:04d}") for i in range(1, n + 1)]


async def test_peers_are_found_by_id_username_and_phone(storage: BaseStorage) -> None:
    for leased in (True, False):
        store = SessionStore(storage, f"p{leased}")
        if leased:
            await store.open()
        await store.update_peers(peers(50))
        for reader in (store, SessionStore(storage, f"p{leased}")):
            found = await reader.get_peer_by_id(7)
            assert found is not None
            assert (found.id, found.access_hash, found.type, found.usernames, found.phone_number) == (
                7, 217, "user", ("User7",), "15550007"
            )
            assert isinstance(found.last_update_on, int)
            found = await reader.get_peer_by_username("@uSeR7")
            assert found is not None and found.id == 7
            found = await reader.get_peer_by_phone_number("+1 555-0007")
            assert found is not None and found.id == 7
            assert await reader.get_peer_by_id(999) is None
            assert await reader.get_peer_by_username("nobody") is None
            assert await reader.get_peer_by_phone_number("123") is None
        await store.close()


async def test_peers_stored_a_key_each_by_statekit_0_1_move_into_buckets_on_first_use(
    storage: BaseStorage,
) -> None:
    legacy = msgpack.packb([5, -55, "bot", ["OldBot"], "15550005", 1_700_000_000])  # 0.1: bytes
    as_list = [6, -66, "user", ["Six"], None, 1_700_000_001, "Six Name"]  # later 0.1: a list
    await storage.set_many(
        {
            "session:{old}:peer:5": legacy,
            "session:{old}:un:oldbot": legacy,
            "session:{old}:ph:15550005": legacy,
            "session:{old}:peer:6": as_list,
            "session:{old}:un:six": as_list,
            "session:{other}:peer:7": as_list,  # another session's: left alone
        }
    )
    store = SessionStore(storage, "old")
    for found in (
        await store.get_peer_by_id(5),
        await store.get_peer_by_username("oldbot"),
        await store.get_peer_by_phone_number("15550005"),
    ):
        assert found == Peer(5, -55, "bot", ("OldBot",), "15550005", 1_700_000_000)
    assert await store.get_peer_by_username("SIX") == Peer(
        6, -66, "user", ("Six",), None, 1_700_000_001, "Six Name"
    )
    keys = set(await storage.list_keys())
    assert not {k for k in keys if k.startswith("session:{old}:") and k.split(":")[2] in ("peer", "un", "ph")}
    assert "session:{other}:peer:7" in keys
    assert await storage.get_state("session:{old}:layout") == 2
    await store.update_peers([Peer(5, -56, "bot", ("NewBot",), None, None)])
    assert await store.get_peer_by_username("oldbot") is None, "the old username is retired"
    assert (await store.get_peer_by_username("newbot")) == await store.get_peer_by_id(5)
    assert await SessionStore(storage, "old").get_peer_by_id(6) is not None


@pytest.mark.parametrize("leased", [False, True], ids=["unleased", "leased"])
async def test_unpacked_buckets_still_read_and_are_packed_by_the_next_write(
    storage: BaseStorage, leased: bool
) -> None:
    """Before packing, a peer bucket was an array of rows and an index bucket a map: both still
    answer lookups, and a write of a peer in such a bucket packs it, keeping the others."""
    store = SessionStore(storage, "v2")
    n = PEER_BUCKETS  # ids 3 and 3 + n share a bucket
    peers_key, names_key = store._peers_key(3), store._names_key("ann")  # noqa: SLF001
    await storage.set_many(
        {
            "session:{v2}:layout": 2,
            peers_key: [
                [3, -33, "user", ["Ann"], "15550003", 1_700_000_000, "Ann A"],
                [3 + n, -34, "bot", ["Bee"], None, 1_700_000_001],
            ],
            names_key: {"ann": 3},
            store._names_key("bee"): {"bee": 3 + n},  # noqa: SLF001
            store._phones_key("15550003"): {"15550003": 3},  # noqa: SLF001
        }
    )
    ann = Peer(3, -33, "user", ("Ann",), "15550003", 1_700_000_000, "Ann A")
    if leased:
        await store.open()
    try:
        assert await store.get_peer_by_id(3) == ann
        assert await store.get_peer_by_username("ANN") == ann
        assert await store.get_peer_by_phone_number("+1 555 0003") == ann
        await store.update_peers([Peer(3, -35, "user", ("Ann2",), "15550003", 1_700_000_002)])
    finally:
        await store.close()
    assert type(await storage.get_state(peers_key)) is bytes  # packed now
    for reader in (store, SessionStore(storage, "v2")):
        assert await reader.get_peer_by_username("ann") is None
        found = await reader.get_peer_by_username("ann2")
        assert found is not None and found.access_hash == -35
        assert await reader.get_peer_by_username("bee") == Peer(3 + n, -34, "bot", ("Bee",), None, 1_700_000_001)
        assert await reader.get_peer_by_phone_number("15550003") == found


async def test_looking_up_peers_of_a_session_without_any_writes_nothing(storage: BaseStorage) -> None:
    store = SessionStore(storage, "ghost")
    assert await store.get_peer_by_id(1) is None
    assert await store.get_peer_by_username("x") is None
    assert await store.get_peer_by_phone_number("123") is None
    assert [p async for p in store.iter_peers()] == []
    assert await storage.list_keys() == []
    await store.update_peers([Peer(1, 2, "user")])
    assert await storage.get_state("session:{ghost}:layout") == 2  # the first write marks it
    found = await SessionStore(storage, "ghost").get_peer_by_id(1)
    assert found is not None and (found.id, found.access_hash, found.type) == (1, 2, "user")


async def index_entries(storage: BaseStorage, session: str, kind: str) -> dict[str, int]:
    """Every entry of the username (``names``) or phone (``phones``) index of ``session``."""
    entries: dict[str, int] = {}
    keys = await storage.list_keys(f"session:{{{session}}}:{kind}:*")
    for key, value in (await storage.get_many(keys)).items():
        entries.update(decode_index_bucket(key, value))
    return entries


async def stored_rows(storage: BaseStorage, session: str) -> list[PeerRow]:
    """Every peer row stored for ``session``, decoded from its bucket."""
    keys = await storage.list_keys(f"session:{{{session}}}:peers:*")
    return [
        row
        for key, value in (await storage.get_many(keys)).items()
        for row in decode_peer_bucket(key, value).values()
    ]


async def test_a_stale_username_stops_resolving(storage: BaseStorage) -> None:
    writer = SessionStore(storage, "main")
    await writer.open()
    await writer.update_peers([Peer(1, 10, "user", ("Old", "Second"), "111")])
    assert (await writer.get_peer_by_username("old")) is not None
    await writer.update_peers([Peer(1, 11, "user", ("New",), "222")])
    for reader in (writer, SessionStore(storage, "main")):
        assert await reader.get_peer_by_username("old") is None
        assert await reader.get_peer_by_username("second") is None
        assert await reader.get_peer_by_phone_number("111") is None
        new = await reader.get_peer_by_username("NEW")
        assert new is not None and new.access_hash == 11
        assert (await reader.get_peer_by_phone_number("222")) == new
    # retired index entries are gone from the storage, not just hidden
    assert await index_entries(storage, "main", "names") == {"new": 1}
    assert await index_entries(storage, "main", "phones") == {"222": 1}
    await writer.close()


async def test_a_username_taken_over_by_another_peer_keeps_resolving_to_it(
    storage: BaseStorage,
) -> None:
    store = SessionStore(storage, "main")
    await store.open()
    await store.update_peers([Peer(1, 10, "user", ("shared",))])
    await store.update_peers([Peer(2, 20, "user", ("shared",))])
    await store.update_peers([Peer(1, 10, "user", ("mine",))])  # 1 drops "shared": 2 keeps it
    for reader in (store, SessionStore(storage, "main")):
        found = await reader.get_peer_by_username("shared")
        assert found is not None and found.id == 2
    await store.close()


async def test_usernames_given_separately_like_kurigram(storage: BaseStorage) -> None:
    store = SessionStore(storage, "main")
    await store.update_peers([Peer(1, 10, "user", ("first",))])
    await store.update_peers([Peer(1, 12, "user")], keep_usernames=True)
    kept = await store.get_peer_by_username("first")
    assert kept is not None and kept.access_hash == 12
    await store.update_usernames([(1, ["renamed", None]), (404, ["ghost"])])
    assert await store.get_peer_by_username("first") is None
    assert (await store.get_peer_by_username("renamed")) is not None
    assert await store.get_peer_by_username("ghost") is None  # unknown peers are ignored
    await store.update_peers([Peer(1, 12, "user")])  # without keep_usernames: replaced
    assert await store.get_peer_by_username("renamed") is None
    await store.update_usernames([(1, ["@", "@Again", ""])])  # "@" alone is no username
    again = await store.get_peer_by_id(1)
    assert again is not None and again.usernames == ("Again",)
    assert await index_entries(storage, "main", "names") == {"again": 1}
    await store.update_usernames([[1, ["@Solo"]]])  # one name, "@"-prefixed; a list as the pair
    solo = await store.get_peer_by_username("SOLO")
    assert solo is not None and solo.usernames == ("Solo",)
    await store.update_usernames([(1, ["Again"])])
    with pytest.raises(TypeError, match="usernames must be str"):
        await store.update_usernames([(1, ["ok", 5])])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="usernames must be a list of str, not str"):
        await store.update_usernames([(1, "alice")])  # not ("a", "l", "i", "c", "e")
    with pytest.raises(TypeError, match=r"\(peer_id, usernames\) pairs, got 1"):
        await store.update_usernames([1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="peer id must be an int"):
        await store.update_usernames([("1", ["x"])])  # type: ignore[list-item]
    after = await store.get_peer_by_id(1)
    assert after is not None and after.usernames == ("Again",)  # nothing was written


async def test_update_peers_checks_every_peer_before_writing_and_handles_big_batches(
    storage: BaseStorage,
) -> None:
    store = SessionStore(storage, "main")
    await store.open()
    with pytest.raises(TypeError, match="access_hash"):
        await store.update_peers([Peer(1, 2), Peer(2, "x")])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Peer objects"):
        await store.update_peers([(1, 2, "user")])  # type: ignore[list-item]
    assert [k for k in await storage.list_keys() if not k.endswith(":lease")] == []
    await store.update_peers(peers(2500))
    assert len(await stored_rows(storage, "main")) == 2500
    assert len(await storage.list_keys("*:peers:*")) == PEER_BUCKETS  # every bucket holds some
    streamed = [p async for p in store.iter_peers()]
    assert sorted(p.id for p in streamed) == list(range(1, 2501))
    await store.update_peers(
        [Peer(i, i * 31, "user", (f"New{i}",), f"+1555{i:04d}") for i in range(1, 2501)]
    )
    reader = SessionStore(storage, "main")
    for i in (1, 1000, 1001, 2500):
        assert await reader.get_peer_by_username(f"user{i}") is None
        found = await reader.get_peer_by_username(f"new{i}")
        assert found is not None and found.id == i
    names = await index_entries(storage, "main", "names")
    assert names == {f"new{i}": i for i in range(1, 2501)}  # the old entries were removed
    await store.close()


async def test_writers_without_the_lease_lose_no_peer_of_each_other(storage: BaseStorage) -> None:
    # peers 1..300 and 301..600 share every bucket; four stores write them at once
    stores = [SessionStore(storage, "shared") for _ in range(4)]
    batches = [
        [Peer(i, i, "user", (f"n{i}",), f"{i:05d}") for i in range(k + 1, 601, 4)] for k in range(4)
    ]
    await asyncio.gather(*(s.update_peers(b) for s, b in zip(stores, batches, strict=True)))
    await asyncio.gather(
        *(s.update_usernames([(i, [f"m{i}"]) for i in range(k + 1, 601, 8)]) for k, s in enumerate(stores))
    )
    rows = await stored_rows(storage, "shared")
    assert sorted(row[0] for row in rows) == list(range(1, 601))
    names = await index_entries(storage, "shared", "names")
    renamed = {i for k in range(4) for i in range(k + 1, 601, 8)}
    assert names == {(f"m{i}" if i in renamed else f"n{i}"): i for i in range(1, 601)}
    assert len(await index_entries(storage, "shared", "phones")) == 600
    reader = SessionStore(storage, "shared")
    for i in (1, 300, 301, 600):
        found = await reader.get_peer_by_username(f"m{i}" if i in renamed else f"n{i}")
        assert found is not None and found.id == i


async def test_a_bucket_that_is_not_a_peer_bucket_is_reported_by_key(storage: BaseStorage) -> None:
    store = SessionStore(storage, "main")
    await store.update_peers([Peer(1, 10, "user", ("a",))])
    await storage.set_state("session:{main}:peers:2", {"not": "rows"})
    with pytest.raises(CorruptValueError, match=r"session:\{main\}:peers:2"):
        await store.get_peer_by_id(2)
    await storage.set_state("session:{main}:peers:3", [[3, "hash", "user", [], None, 1], [515, 5, "user", [], None, 1]])
    assert await store.get_peer_by_id(515) is not None  # a bad row is reported when it is read
    with pytest.raises(CorruptValueError, match=r"peers:3.*id, access_hash, type"):
        await store.get_peer_by_id(3)
    assert await store.get_peer_by_id(1) is not None  # the other buckets are untouched


@pytest.mark.parametrize("leased", [False, True], ids=["unleased", "leased"])
async def test_a_bucket_whose_stored_bytes_are_not_msgpack_is_reported_by_key(
    storage: BaseStorage, leased: bool
) -> None:
    """Bytes that no codec wrote (another program, a damaged file) under a bucket key: a lookup
    or a write there fails with the typed error naming that bucket, whether the bucket is read
    ahead, looked up or loaded for the write, and the other buckets still answer."""
    if not isinstance(storage, FastPathStorage):
        pytest.skip("only a storage that takes stored msgpack bytes can hold such a value")
    store = SessionStore(storage, "main")
    await store.update_peers([Peer(1, 10, "user", ("ann",)), Peer(2, 20, "user", ("bob",))])
    key = store._peers_key(3)  # noqa: SLF001
    await storage.set_many_encoded([(key, b"\xc1\xc1 not msgpack")], ttl=None)
    if leased:
        await store.open()
    try:
        with pytest.raises(CorruptValueError, match=re.escape(key)):
            await store.get_peer_by_id(3)
        with pytest.raises(CorruptValueError, match=re.escape(key)):
            await store.update_peers([Peer(515, 5, "user", ())])
        assert (await store.get_peer_by_id(2)).access_hash == 20  # type: ignore[union-attr]
    finally:
        await store.close()
    assert await storage.get_many_stored([key]) == {key: b"\xc1\xc1 not msgpack"}  # not written over


@pytest.mark.parametrize("leased", [False, True], ids=["unleased", "leased"])
async def test_a_write_over_a_malformed_stored_row_reports_it_and_writes_nothing(
    storage: BaseStorage, leased: bool
) -> None:
    """A write checks each stored row it merges into as it reads it (rows are left as read until
    used), so a malformed one (written by another program) fails the write with the error naming
    its bucket; a row the same write set is not checked again."""
    store = SessionStore(storage, "main")
    bad = [[3, "hash", "user", [], None, 1], [515, 5, "user", ["ann"], None, 1]]
    await storage.set_state("session:{main}:peers:3", bad)
    if leased:
        await store.open()
    try:
        await store.update_peers([Peer(1027, 7, "user", ("bob",))])  # same bucket, a new peer
        with pytest.raises(CorruptValueError, match=r"peers:3.*id, access_hash, type"):
            await store.update_peers([Peer(3, 4, "user", ("carl",)), Peer(1539, 8, "user", ())])
        await store.update_peers([Peer(515, 6, "user", ("ann",)), Peer(1027, 9, "user", ("bob",))])
    finally:
        await store.close()
    reader = SessionStore(storage, "main")
    assert await reader.get_peer_by_id(1539) is None  # nothing of the failed write
    assert await reader.get_peer_by_username("carl") is None
    assert [(await reader.get_peer_by_id(i)).access_hash for i in (515, 1027)] == [6, 9]  # type: ignore[union-attr]
    with pytest.raises(CorruptValueError, match=r"peers:3"):
        await reader.get_peer_by_id(3)


@pytest.mark.parametrize("leased", [False, True], ids=["unleased", "leased"])
async def test_an_index_bucket_holding_an_id_beyond_64_bits_is_reported_by_key(
    storage: BaseStorage, leased: bool
) -> None:
    """msgpack can hold an unsigned 64-bit id that no peer has (written by another program):
    writing next to it fails with the typed error naming the bucket, and nothing is written."""
    if not isinstance(storage, FastPathStorage):
        pytest.skip("only a storage that takes stored msgpack bytes can hold such a value")
    store = SessionStore(storage, "main")
    key = store._names_key("bob")  # noqa: SLF001
    await storage.set_many_encoded([(key, msgpack.packb({"other": 2**64 - 1}))], ttl=None)
    if leased:
        await store.open()
    try:
        with pytest.raises(CorruptValueError, match=re.escape(key)):
            await store.update_peers([Peer(3, 4, "user", ("bob",))])
    finally:
        await store.close()
    assert await SessionStore(storage, "main").get_peer_by_id(3) is None


async def test_an_unchanged_peer_is_rewritten_only_to_refresh_an_old_stamp(
    storage: BaseStorage,
) -> None:
    import time

    store = SessionStore(storage, "main")
    now = int(time.time())
    await store.update_peers([Peer(1, 10, "user", ("a",), last_update_on=now - 60)])
    await store.update_peers([Peer(1, 10, "user", ("a",))])  # same peer, stamped a minute ago
    kept = await store.get_peer_by_id(1)
    assert kept is not None and kept.last_update_on == now - 60  # not written again
    await store.update_peers([Peer(1, 10, "user", ("a",), last_update_on=now - 600)])
    await store.update_peers([Peer(1, 10, "user", ("a",))])  # same peer, stamp 10 minutes old
    refreshed = await store.get_peer_by_id(1)
    assert refreshed is not None and refreshed.last_update_on is not None
    assert refreshed.last_update_on >= now
    await store.update_peers([Peer(1, 11, "user", ("a",))])  # a change is always written
    changed = await store.get_peer_by_id(1)
    assert changed is not None and changed.access_hash == 11


async def test_cached_lookups_see_every_write_of_the_lease_holder(storage: BaseStorage) -> None:
    store = SessionStore(storage, "main", peer_cache=10)
    await store.open()
    await store.update_peers(peers(30))  # more than the cache holds
    for i in range(1, 31):
        found = await store.get_peer_by_username(f"user{i}")
        assert found is not None and found.id == i
    await store.update_peers([Peer(5, 1, "channel", ("Renamed",))])
    changed = await store.get_peer_by_id(5)
    assert changed is not None and changed.type == "channel" and changed.access_hash == 1
    assert await store.get_peer_by_username("user5") is None
    await store.close()


# ---------------------------------------------------------------------- update states


async def test_update_states_per_box_with_none_fields_tolerated(storage: BaseStorage) -> None:
    store = SessionStore(storage, "main")
    assert await store.get_update_states() == []
    await store.set_update_state(UpdateState(0, pts=10, qts=5, date=100, seq=3))
    await store.set_update_state(
        [UpdateState(-1001234567890, pts=7), UpdateState(0, pts=11, qts=None, date=None, seq=None)]
    )
    assert await store.get_update_state(0) == UpdateState(0, 11, 5, 100, 3)
    assert await store.get_update_state(-1001234567890) == UpdateState(-1001234567890, 7)
    assert [s.id for s in await store.get_update_states()] == [-1001234567890, 0]  # by date
    assert await store.get_update_states(0) == [UpdateState(0, 11, 5, 100, 3)]
    assert await store.get_update_states([42]) == []
    await store.delete_update_state(0)
    assert await SessionStore(storage, "main").get_update_states() == [
        UpdateState(-1001234567890, 7)
    ]
    with pytest.raises(TypeError, match="pts"):
        await store.set_update_state(UpdateState(0, pts="1"))  # type: ignore[arg-type]


# ---------------------------------------------------------------------- whole sessions


async def test_listing_snapshot_restore_and_delete(storage: BaseStorage) -> None:
    first = SessionStore(storage, "first")
    await first.save(data())
    await first.update_peers(peers(3))
    await first.set_update_state(UpdateState(0, 1, 2, 3, 4))
    second = SessionStore(storage, "second:with:colons")
    await second.save(data(dc_id=1))
    await second.update_peers([Peer(99, 1, "user", ("zz",))])
    assert await list_sessions(storage) == ["first", "second:with:colons"]
    assert await SessionStore.list_sessions(storage) == ["first", "second:with:colons"]

    snap = await first.snapshot()
    assert snap.data == data() and [p.id for p in snap.peers] == [1, 2, 3]
    assert snap.update_states == [UpdateState(0, 1, 2, 3, 4)]

    await second.restore(snap)  # replaces everything the second session had
    again = await SessionStore(storage, "second:with:colons").snapshot()
    assert again == snap
    assert await second.get_peer_by_username("zz") is None

    removed = await first.delete()
    # record, a peer bucket and a username and a phone index bucket for each of the 3 peers,
    # the layout marker and the update states
    assert removed == 1 + 3 * 3 + 1 + 1
    assert await list_sessions(storage) == ["second:with:colons"]
    assert all("{second:with:colons}" in k for k in await storage.list_keys())
    with pytest.raises(KeyError, match="no complete record"):
        await first.snapshot()


async def test_streaming_a_large_session_lets_the_event_loop_run(storage: BaseStorage) -> None:
    """iter_peer_rows / iter_peers give every stored peer, checked, and let other tasks run
    between every ``_YIELD_ROWS`` (500) rows plus the rest of a bucket: a client loading 100,000
    peers held the loop for 200 ms when a whole read of 64 buckets was decoded in one step."""
    store = SessionStore(storage, "stream")
    await store.update_peers(peers(5000))
    received: list[PeerRow] = []
    gaps: list[int] = []  # rows received between two turns of the loop

    async def ticker() -> None:
        seen = 0
        while True:
            await asyncio.sleep(0)
            gaps.append(len(received) - seen)
            seen = len(received)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    async for row in SessionStore(storage, "stream").iter_peer_rows():
        received.append(row)
    ticking.cancel()
    largest_bucket = max(Counter(row[0] % PEER_BUCKETS for row in received).values())
    assert max(gaps) <= store_module._YIELD_ROWS + largest_bucket, max(gaps)  # noqa: SLF001
    assert sorted(received) == sorted(
        (p.id, p.access_hash, p.type, p.usernames, p.phone_number, p.last_update_on, p.name)
        for p in [peer async for peer in store.iter_peers()]
    )
    assert sorted(row[:4] for row in received) == [
        (p.id, p.access_hash, p.type, p.usernames) for p in peers(5000)
    ]


async def test_closing_a_large_session_lets_the_event_loop_run(storage: BaseStorage) -> None:
    """close() lets go of the cached buckets ``_YIELD_ROWS`` (500) entries at a time, the event
    loop running between: all at once, a 100,000-peer session's rows held it for 30 ms (a kurigram
    client's ``stop()`` closes its storage)."""
    store = SessionStore(storage, "closing")
    await store.open()
    tracemalloc.start()
    try:
        await store.update_peers(peers(10_000))
        assert len(store._cache) >= 20_000  # noqa: SLF001 - peers and index entries, cached
        largest, freed = await largest_release(store.close())
    finally:
        tracemalloc.stop()
    assert len(store._cache) == 0  # noqa: SLF001
    assert freed > 1_000_000  # the rows went (some 10,000 tuples, strings and ints)
    # in slices, not in one piece (on SQLite one turn also frees the last write's packed buckets,
    # about an eighth of it all, which aiosqlite's worker holds until its next statement)
    assert largest < freed // 4, (largest, freed)
    found = await SessionStore(storage, "closing").get_peer_by_id(9_999)
    assert found is not None and (found.access_hash, found.usernames) == (9_999 * 31, ("User9999",))


async def test_a_write_after_streaming_the_peers_with_the_lease_reads_no_peer_bucket_again(
    storage: BaseStorage,
) -> None:
    """An adapter that loads every peer at open (Telethon's) and then meets them all again:
    the buckets iter_peer_rows read are kept for that write (a restarted 100,000-entity client
    re-read and re-decoded every one of them), and the write lands as any other."""
    async with leased_reader(storage, 3000) as reader:
        loaded = [row async for row in reader.iter_peer_rows()]
        assert len(loaded) == 3000
        read = spy_reads(reader)
        await reader.update_peers(Peer(i, 7, "user", (f"New{i}",)) for i in range(1, 3001))
        assert not [key for keys in read for key in keys if key.startswith(reader._peers_prefix)]  # noqa: SLF001
        fresh = SessionStore(storage, "main")  # another process reads what was written
        for i in (1, 1500, 3000):
            assert (await fresh.get_peer_by_id(i)).access_hash == 7  # type: ignore[union-attr]
            assert (await fresh.get_peer_by_username(f"new{i}")).id == i  # type: ignore[union-attr]
            assert await fresh.get_peer_by_username(f"user{i}") is None


async def test_streaming_the_peers_with_the_lease_takes_the_cached_buckets_without_reading_them(
    storage: BaseStorage
) -> None:
    """With the lease held, iter_peer_rows and snapshot() take the rows of the buckets the cache
    holds (packed by the read-ahead, or decoded by a write) instead of reading them again, and
    give what a reader of the storage gets. (A snapshot of 100,000 peers re-read and re-decoded
    every bucket its writes had just cached.)"""
    async with SessionStore(storage, "main") as writer:
        await writer.save(data())
        await writer.update_peers(peers(3000))
    async with SessionStore(storage, "main", lease_ttl=3600) as reader:
        assert await reader.get_peer_by_id(1) is not None  # the read-ahead caches every bucket
        await asyncio.gather(*reader._warmers.values())  # noqa: SLF001
        await reader.update_peers(Peer(i, 9, "bot", (f"Moved{i}",)) for i in range(1, 3001, 7))
        read = spy_calls(storage, "get_many")
        streamed = [row async for row in reader.iter_peer_rows()]
        taken = await reader.snapshot()
        assert not [key for keys in read for key in keys if key.startswith(reader._peers_prefix)], read  # noqa: SLF001
    stored = SessionStore(storage, "main")  # another process, reading the storage
    assert sorted(streamed) == sorted([row async for row in stored.iter_peer_rows()])
    assert len(streamed) == 3000 and taken == await stored.snapshot()
    assert taken.peers[7] == Peer(8, 9, "bot", ("Moved8",), None, taken.peers[7].last_update_on)


async def test_a_stream_while_a_write_merges_gives_what_is_stored_not_what_the_write_merged(
    storage: BaseStorage,
) -> None:
    """A write merges into the cached buckets before it stores them, and may yet fail: rows
    streamed meanwhile (with the lease held) are the stored ones, and after the write failed
    too."""
    async with SessionStore(storage, "main", lease_ttl=3600) as store:
        await store.update_peers(peers(3000))  # every bucket cached as it was written
        merged, release = asyncio.Event(), asyncio.Event()
        put = store._put_buckets  # noqa: SLF001

        async def put_after_a_pause(keys: list[str], buckets: dict[str, dict[object, object]]) -> None:
            merged.set()
            await release.wait()
            raise StorageUnavailableError("connection lost")  # nothing of the write is stored

        store._put_buckets = put_after_a_pause  # type: ignore[assignment,method-assign]  # noqa: SLF001
        writing = asyncio.create_task(
            store.update_peers(Peer(i, 9, "bot", (f"Moved{i}",)) for i in range(1, 3001))
        )
        await merged.wait()
        during = [row async for row in store.iter_peer_rows()]
        release.set()
        with pytest.raises(StorageUnavailableError):
            await writing
        store._put_buckets = put  # type: ignore[method-assign]  # noqa: SLF001
        after = [row async for row in store.iter_peer_rows()]
    stored = [(p.id, p.access_hash, p.type, p.usernames) for p in peers(3000)]
    assert sorted(row[:4] for row in during) == stored
    assert sorted(row[:4] for row in after) == stored


def spy_calls(target: object, name: str) -> list[list[str]]:
    """The keys of every call of ``target``'s async method ``name`` (which takes a list of keys)
    from now on, a list a call; the method is replaced on this object only."""
    calls: list[list[str]] = []
    original = getattr(target, name)

    async def spy(keys: list[str]) -> object:
        calls.append(list(keys))
        return await original(keys)

    setattr(target, name, spy)
    return calls


def spy_reads(store: SessionStore) -> list[list[str]]:
    """The bucket keys ``store`` reads from now on, a list a call (every bucket read goes
    through ``_read``)."""
    return spy_calls(store, "_read")


async def test_the_first_write_of_a_new_session_with_the_lease_reads_no_bucket(
    storage: BaseStorage,
) -> None:
    """A new session has no buckets; the lease holder learns that from the one scan a session
    without the layout marker gets, and neither its first write nor its lookups read the 1,536
    bucket keys (a new 10,000-peer write spent a quarter of its time reading nothing)."""
    async with SessionStore(storage, "fresh", lease_ttl=3600) as store:
        read = spy_reads(store)
        assert await store.get_peer_by_id(5) is None
        assert await store.get_peer_by_username("user5") is None
        await store.update_peers(peers(2000))
        await store.update_peers(Peer(i, 5, "user", (f"Again{i}",)) for i in range(1, 2001, 2))
        assert read == []
        assert (await store.get_peer_by_phone_number("+15550008")).id == 8  # type: ignore[union-attr]
    other = SessionStore(storage, "fresh")  # another process reads what was written
    assert (await other.get_peer_by_id(3)).access_hash == 5  # type: ignore[union-attr]
    assert (await other.get_peer_by_username("again3")).id == 3  # type: ignore[union-attr]
    assert await other.get_peer_by_username("user3") is None
    assert (await other.get_peer_by_username("user4")).id == 4  # type: ignore[union-attr]
    assert (await other.get_peer_by_phone_number("+15552000")).id == 2000  # type: ignore[union-attr]


async def test_buckets_stored_without_the_layout_marker_are_read_and_kept(storage: BaseStorage) -> None:
    """Buckets can outlive the layout marker (a delete() that stopped part-way removes keys in
    scan order): a missing marker does not mean an empty session, so a write keeps those peers."""
    await SessionStore(storage, "left").update_peers(peers(600))
    assert await storage.delete_state("session:{left}:layout")
    async with SessionStore(storage, "left", lease_ttl=3600) as store:
        read = spy_reads(store)
        await store.update_peers(Peer(i, 9, "user", (f"Late{i}",)) for i in range(601, 1201))
        assert read  # the buckets that exist are read
    other = SessionStore(storage, "left")
    for i in (1, 88, 600):
        assert (await other.get_peer_by_id(i)).access_hash == i * 31  # type: ignore[union-attr]
        assert (await other.get_peer_by_username(f"user{i}")).id == i  # type: ignore[union-attr]
    assert (await other.get_peer_by_username("late1200")).id == 1200  # type: ignore[union-attr]


async def test_a_store_without_the_lease_trusts_no_scan_for_absent_buckets(storage: BaseStorage) -> None:
    """Without the lease another process may write between a store's scan and its write: the
    peers it wrote into the same buckets meanwhile are kept."""
    first = SessionStore(storage, "shared")
    assert await first.get_peer_by_id(1) is None  # its scan: the session has no key yet
    await SessionStore(storage, "shared").update_peers(peers(300))  # buckets 1..300
    await first.update_peers(Peer(i + PEER_BUCKETS, 3, "user", (f"Two{i}",)) for i in range(1, 301))
    other = SessionStore(storage, "shared")
    for i in (1, 150, 300):
        assert (await other.get_peer_by_id(i)).access_hash == i * 31  # type: ignore[union-attr]
        assert (await other.get_peer_by_id(i + PEER_BUCKETS)).access_hash == 3  # type: ignore[union-attr]
        assert (await other.get_peer_by_username(f"user{i}")).id == i  # type: ignore[union-attr]


async def test_a_write_while_a_late_renewal_leaves_the_lease_unsure_is_not_undone(
    storage: BaseStorage,
) -> None:
    """Between 0.9 and 1 x lease_ttl after a renewal the lease is ours but not certainly held, so
    a write goes by compare-and-set, around the cache. If the renewal then succeeds (no gap),
    the cached buckets and the buckets known absent must not outlive that write: the next batch
    write would put the old buckets back (peer 1's new hash and username lost) and take a
    bucket it wrote as empty (peer 700 lost)."""
    async with SessionStore(storage, "late", lease_ttl=3600) as store:
        await store.update_peers(peers(100))  # buckets 1..100 cached, the other ones absent
        lease = store.lease
        assert lease is not None
        valid_until = lease._valid_until  # noqa: SLF001 - the renewal's clock, set back and forth
        lease._valid_until = 0.0  # noqa: SLF001 - a late renewal: held is False, no gap
        await store.update_peers([Peer(1, 5, "user", ("Late1",)), Peer(700, 6, "user", ("Late700",))])
        lease._valid_until = valid_until  # noqa: SLF001 - the renewal lands: held again
        await store.update_peers(
            [Peer(1 + PEER_BUCKETS, 7, "user", ("Other",)), Peer(700 + PEER_BUCKETS, 8, "user", ("Next",))]
        )
    other = SessionStore(storage, "late")
    assert (await other.get_peer_by_id(1)).access_hash == 5  # type: ignore[union-attr]
    assert (await other.get_peer_by_username("late1")).id == 1  # type: ignore[union-attr]
    assert await other.get_peer_by_username("user1") is None
    assert (await other.get_peer_by_id(700)).access_hash == 6  # type: ignore[union-attr]
    assert (await other.get_peer_by_username("late700")).id == 700  # type: ignore[union-attr]
    for peer_id in (1 + PEER_BUCKETS, 700 + PEER_BUCKETS, 2, 100):
        assert await other.get_peer_by_id(peer_id) is not None


async def test_a_record_written_while_the_lease_is_unsure_is_what_is_read_after(storage: BaseStorage) -> None:
    """The record (and the update states) written by compare-and-set during a late renewal: the
    value remembered before it is not served once the renewal lands without a gap."""
    async with SessionStore(storage, "late-record", lease_ttl=3600) as store:
        await store.save(data())
        await store.set_update_state(UpdateState(0, 1, 2, 3, 4))
        assert (await store.get_fields())["dc_id"] == 4  # remembered
        lease = store.lease
        assert lease is not None
        valid_until = lease._valid_until  # noqa: SLF001 - a late renewal, then it lands
        lease._valid_until = 0.0  # noqa: SLF001
        await store.update(dc_id=2)
        await store.set_update_state(UpdateState(0, 9, 2, 3, 4))
        lease._valid_until = valid_until  # noqa: SLF001
        assert (await store.get_fields())["dc_id"] == 2
        assert (await store.get_update_states())[0].pts == 9


async def test_streaming_the_peers_without_the_lease_keeps_nothing(storage: BaseStorage) -> None:
    await SessionStore(storage, "open").update_peers(peers(300))
    unleased = SessionStore(storage, "open")
    assert len([row async for row in unleased.iter_peer_rows()]) == 300
    assert len(unleased._cache) == 0  # noqa: SLF001 - another process may write meanwhile
    await unleased.update_peers([Peer(5, 9, "user", ("Other",))])
    assert (await SessionStore(storage, "open").get_peer_by_id(5)).access_hash == 9  # type: ignore[union-attr]


async def test_a_write_while_the_peers_are_streamed_is_what_later_lookups_see(
    storage: BaseStorage,
) -> None:
    """Buckets read before a write that lands while the stream is consumed are not kept as they
    were read (a small cache: the write's own buckets do not stay cached)."""
    async with SessionStore(storage, "main") as writer:
        await writer.update_peers(peers(3000))
    async with SessionStore(storage, "main", lease_ttl=3600, peer_cache=400) as reader:
        streamed = 0
        async for _ in reader.iter_peer_rows():
            streamed += 1
            if streamed == 1:  # the first chunk of buckets is read: they change now
                await reader.update_peers(Peer(i, 11, "user", (f"Mid{i}",)) for i in range(1, 3001))
        assert streamed >= 3000
        for i in range(1, 3001, 7):
            assert (await reader.get_peer_by_id(i)).access_hash == 11  # type: ignore[union-attr]


async def test_update_peers_snapshot_and_restore_work_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """update_peers, snapshot and restore of a large session make their rows, their Peers and
    their packed buckets ``_YIELD_ROWS`` / ``_YIELD_PACKED`` (500) at a time, the event loop
    running between: restore() of 100,000 peers held it for 250 ms in one piece. (Store logic,
    the same on every backend: memory only.)"""
    counts = {"rows": 0, "peers": 0, "packed": 0}
    peer_row, row_peer = store_module.peer_row, store_module.row_peer
    packed_bucket = store_module.packed_bucket

    def counting_peer_row(peer: Peer, now: int) -> PeerRow:
        counts["rows"] += 1
        return peer_row(peer, now)

    def counting_row_peer(row: PeerRow) -> Peer:
        counts["peers"] += 1
        return row_peer(row)

    def counting_packed_bucket(key: str, bucket: dict[object, object], *, peers: bool) -> bytes:
        counts["packed"] += len(bucket)
        return packed_bucket(key, bucket, peers=peers)

    monkeypatch.setattr(store_module, "peer_row", counting_peer_row)
    monkeypatch.setattr(store_module, "row_peer", counting_row_peer)
    monkeypatch.setattr(store_module, "packed_bucket", counting_packed_bucket)
    seen: list[dict[str, int]] = []

    async def ticker() -> None:
        while True:
            seen.append(dict(counts))
            await asyncio.sleep(0)

    storage = MemoryStorage()
    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    store = SessionStore(storage, "big")
    await store.save(data())
    await store.update_peers(peers(5000))
    snap = await store.snapshot()
    await SessionStore(storage, "copy").restore(snap)
    seen.append(dict(counts))
    ticking.cancel()
    assert counts["rows"] == 2 * 5000 and counts["peers"] == 5000 and counts["packed"] > 3 * 5000
    most = {name: max(b[name] - a[name] for a, b in itertools.pairwise(seen)) for name in counts}
    largest_bucket = max(  # of the peers, usernames and phones: a turn packs on to its end
        max(Counter(p.id % PEER_BUCKETS for p in peers(5000)).values()),
        max(Counter(index_bucket(p.usernames[0].lower()) for p in peers(5000)).values()),
        max(Counter(index_bucket(normalize_phone(p.phone_number or "")) for p in peers(5000)).values()),
    )
    assert most["rows"] <= store_module._YIELD_ROWS, most  # noqa: SLF001
    assert most["peers"] <= store_module._YIELD_ROWS, most  # noqa: SLF001
    assert most["packed"] <= store_module._YIELD_PACKED + largest_bucket, (most, largest_bucket)  # noqa: SLF001
    assert snap.peers == sorted(snap.peers, key=lambda p: p.id)
    assert await SessionStore(storage, "copy").snapshot() == snap


async def test_restore_hands_a_fast_path_storage_its_buckets_already_packed(
    storage: BaseStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a storage that takes stored msgpack bytes, restore() writes the buckets it packed in
    slices as they are: its codec encodes the record and the update states, never a bucket (a
    codec encoding every bucket of 100,000 peers, ~10 MB, in one call held the event loop ~4 ms
    longer than anything else in a restore). What was restored reads back the same."""
    if not isinstance(storage, FastPathStorage) or type(storage.codec) is not MsgpackCodec:
        pytest.skip("only a storage with the msgpack fast path takes buckets in stored form")
    store = SessionStore(storage, "big")
    await store.save(data())
    await store.set_update_state(UpdateState(0, 5, 6, 7, 8))
    await store.update_peers(peers(3000))
    snap = await store.snapshot()
    encoded: list[object] = []
    encode = MsgpackCodec.encode

    def watched_encode(codec: MsgpackCodec, value: object) -> bytes:
        encoded.append(value)
        return encode(codec, value)

    monkeypatch.setattr(MsgpackCodec, "encode", watched_encode)
    await SessionStore(storage, "copy").restore(snap)
    monkeypatch.undo()
    packed = [v for v in encoded if isinstance(v, bytes) and (is_packed_peers(v) or is_packed_index(v))]
    assert encoded and not packed, f"{len(packed)} of {len(encoded)} values the codec encoded were buckets"
    assert await SessionStore(storage, "copy").snapshot() == snap


async def test_a_large_restore_fills_peer_buckets_that_are_already_old(monkeypatch: pytest.MonkeyPatch) -> None:
    """restore() of ``_AGE_BEFORE_ROWS`` peers or more makes its peer buckets old before it fills
    them: filling allocates nothing the collector counts, so buckets made as the rows come would
    still be young when packed, and the next young collection would trace every row (3.5-5 ms
    at 100,000 peers). (Store logic, the same on every backend: memory only.)"""
    if not gc.isenabled() or gc.get_threshold()[0] == 0:
        pytest.skip("the garbage collector is disabled")
    young_at_packing: list[int] = []
    packed = SessionStore._packed

    async def watched_packed(
        self: SessionStore, keys: Iterable[str], buckets: dict[str, dict[Any, Any]], **options: bool
    ) -> list[Any]:
        young = {id(o) for o in gc.get_objects(0)}
        young_at_packing.append(sum(1 for bucket in buckets.values() if bucket and id(bucket) in young))
        return await packed(self, keys, buckets, **options)

    storage = MemoryStorage()
    store = SessionStore(storage, "big")
    await store.save(data())
    # peers in the lower half of the peer buckets only: the buckets made for the others stay
    # empty, and a peer the copy held in one of those is gone after the restore
    many = store_module._AGE_BEFORE_ROWS + 2000  # noqa: SLF001
    half = PEER_BUCKETS // 2
    await store.update_peers(
        [Peer(n // half * PEER_BUCKETS + n % half + 1, n + 1, "user", (f"u{n}",)) for n in range(many)]
    )
    snap = await store.snapshot()
    copy = SessionStore(storage, "copy")
    await copy.update_peers([Peer(PEER_BUCKETS - 1, 7, "bot", ("gone",))])
    monkeypatch.setattr(SessionStore, "_packed", watched_packed)
    await copy.restore(snap)
    monkeypatch.undo()
    assert young_at_packing == [0], f"peer buckets still young when packed: {young_at_packing}"
    reader = SessionStore(storage, "copy")
    assert await reader.snapshot() == snap
    assert await reader.get_peer_by_id(PEER_BUCKETS - 1) is None
    assert await reader.get_peer_by_username("gone") is None
    assert not await storage.get_many([copy._peers_key(PEER_BUCKETS - 1)])  # noqa: SLF001 - not written empty


class WatchedRow(tuple):  # type: ignore[type-arg]
    """A peer row that counts itself out when it is freed (a tuple takes no weak reference)."""

    __slots__ = ()
    made = 0
    freed = 0

    def __new__(cls, row: tuple[object, ...]) -> WatchedRow:
        WatchedRow.made += 1
        return super().__new__(cls, row)

    def __del__(self) -> None:
        WatchedRow.freed += 1


async def rows_freed_at_each_turn(work: Awaitable[object]) -> list[int]:
    """How many ``WatchedRow`` were freed at each turn of the event loop while ``work`` ran, and
    in the turn it returned."""
    task = asyncio.ensure_future(work)
    counts = [WatchedRow.freed]
    while not task.done():
        await asyncio.sleep(0)
        counts.append(WatchedRow.freed)
    await task
    counts.append(WatchedRow.freed)
    return [after - before for before, after in itertools.pairwise(counts)]


async def test_snapshot_and_restore_let_go_of_their_rows_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows snapshot() reads and restore() builds are freed ``_YIELD_ROWS`` (500) at a time,
    the event loop running between, not all at once when they return: at 100,000 peers that
    held the loop for 10 ms (snapshot) and 20 ms (restore). (Store logic, the same on every
    backend: memory only.)"""
    storage = MemoryStorage()
    source = SessionStore(storage, "source")
    await source.save(data())
    await source.update_peers(peers(5000))
    read_rows = source.iter_peer_rows

    async def watched_rows() -> AsyncIterator[PeerRow]:
        async for row in read_rows():
            yield WatchedRow(row)

    monkeypatch.setattr(source, "iter_peer_rows", watched_rows)
    peer_row = store_module.peer_row
    monkeypatch.setattr(store_module, "peer_row", lambda peer, now: WatchedRow(peer_row(peer, now)))
    taken: list[SessionSnapshot] = []

    async def take() -> None:
        taken.append(await source.snapshot())

    steps: list[Callable[[], Awaitable[object]]] = [take, lambda: SessionStore(storage, "copy").restore(taken[0])]
    for step in steps:  # the snapshot's rows, then the restore's
        WatchedRow.made = WatchedRow.freed = 0
        freed = await rows_freed_at_each_turn(step())
        assert WatchedRow.made == WatchedRow.freed == 5000, (WatchedRow.made, WatchedRow.freed)
        # a slice a turn, and the one row a loop variable held to the end
        assert max(freed) <= store_module._YIELD_ROWS + 1, max(freed)  # noqa: SLF001
    assert await SessionStore(storage, "copy").snapshot() == taken[0]


async def test_restore_refuses_what_is_not_a_snapshot(storage: BaseStorage) -> None:
    with pytest.raises(TypeError, match="SessionSnapshot"):
        await SessionStore(storage, "x").restore(data())  # type: ignore[arg-type]
    snap = SessionSnapshot(data(), [Peer(1, "bad")])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="access_hash"):
        await SessionStore(storage, "x").restore(snap)
    assert await storage.list_keys() == []


async def test_delete_is_refused_while_another_process_holds_the_session(
    make_storage: Callable[..., BaseStorage],
) -> None:
    storage = make_storage()
    holder = SessionStore(storage, "busy")
    await holder.open()
    await holder.save(data())
    with pytest.raises(SessionLockedError, match="in use by pid"):
        await SessionStore(storage, "busy").delete()
    assert await holder.load() == data()
    await holder.delete()  # the holder itself may
    assert await holder.load() is None
    assert (await holder.holder()) == holder.lease.holder  # type: ignore[union-attr]
    await holder.close()
    assert await storage.list_keys() == []


@contextlib.asynccontextmanager
async def counting(
    server: RedisServer, namespace: str
) -> AsyncIterator[tuple[RedisStorage, Callable[[], Awaitable[int]]]]:
    """A ``RedisStorage`` on ``server`` and an async function giving the number of commands the
    server has processed (each call counts itself once); the namespace is cleared at the end."""
    storage = RedisStorage(server.url, namespace=namespace)
    probe = redis.asyncio.Redis.from_url(server.url)

    async def commands() -> int:
        return int((await probe.info("stats"))["total_commands_processed"])

    try:
        yield storage, commands
    finally:
        await probe.aclose()
        await storage.clear_namespace()
        await storage.stop()


@contextlib.asynccontextmanager
async def leased_reader(storage: BaseStorage, n: int) -> AsyncIterator[SessionStore]:
    """A store holding the lease of session "main" as a freshly started client would, after
    another store wrote ``n`` peers to it (a long lease: no renewal during the test)."""
    async with SessionStore(storage, "main") as writer:
        await writer.update_peers(peers(n))
    async with SessionStore(storage, "main", lease_ttl=3600) as reader:
        yield reader


async def test_lookups_during_the_read_ahead_and_a_write_meanwhile_answer_right(
    storage: BaseStorage,
) -> None:
    async with leased_reader(storage, 3000) as reader:
        assert await reader.get_peer_by_id(1) is not None  # the first miss starts the read-ahead
        wanted = range(2, 3001, 3)
        renamed = [Peer(i, 7, "user", (f"New{i}",)) for i in range(2, 3001, 10)]
        found, _ = await asyncio.gather(
            asyncio.gather(*(reader.get_peer_by_id(i) for i in wanted)),
            reader.update_peers(renamed),  # a write while lookups wait for the read-ahead
        )
        assert [p.id if p else None for p in found] == list(wanted)
        for peer in renamed:  # afterwards every lookup sees the write
            assert (await reader.get_peer_by_id(peer.id)) == await reader.get_peer_by_username(f"new{peer.id}")
            assert (await reader.get_peer_by_id(peer.id)).access_hash == 7  # type: ignore[union-attr]
            assert await reader.get_peer_by_username(f"user{peer.id}") is None
        assert (await reader.get_peer_by_id(4)).access_hash == 4 * 31  # type: ignore[union-attr]


async def test_the_read_ahead_asks_for_its_buckets_as_one_range_of_keys(
    storage: BaseStorage
) -> None:
    """A storage that keeps its keys in order (SQLite) reads every bucket of a session as one
    scan of their range, ~1.5 times as fast as looking each key up: the read-ahead asks for the
    buckets it lacks in string order, with none of the session's own left out in between (but
    the one it holds already), and takes each in its stored form."""
    assert isinstance(storage, FastPathStorage)
    async with leased_reader(storage, 3000) as reader:
        asked = spy_calls(storage, "get_range_stored")
        assert await reader.get_peer_by_id(1) is not None  # the first miss starts the read-ahead
        await asyncio.gather(*reader._warmers.values())  # noqa: SLF001
        first = reader._peers_key(1)  # noqa: SLF001
        assert asked == [sorted(key for key in reader._peer_keys if key != first)]  # noqa: SLF001
        for i in range(2, 3001, 11):
            assert (await reader.get_peer_by_id(i)).access_hash == i * 31  # type: ignore[union-attr]


async def test_a_read_ahead_in_several_calls_reads_each_its_own_range(
    storage: BaseStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session too large for one read is read ahead in several calls (issued together), each a
    run of the keys in string order that no other call reads (here ~8 buckets a call), and every
    lookup waiting meanwhile gets its peer."""
    assert isinstance(storage, FastPathStorage)
    monkeypatch.setattr(store_module, "_WARM_PACKED_ENTRIES", 48)  # ~6 peers a bucket: 8 a call
    async with leased_reader(storage, 3000) as reader:
        asked = spy_calls(storage, "get_range_stored")
        assert await reader.get_peer_by_id(1) is not None
        wanted = range(2, 3001, 5)
        found = await asyncio.gather(*(reader.get_peer_by_id(i) for i in wanted))
        await asyncio.gather(*reader._warmers.values())  # noqa: SLF001
        assert [p.access_hash if p else None for p in found] == [i * 31 for i in wanted]
        assert len(asked) == 64 and all(len(keys) == 8 for keys in asked[:-1])
        flat = [key for keys in asked for key in keys]
        first = reader._peers_key(1)  # noqa: SLF001
        assert flat == sorted(key for key in reader._peer_keys if key != first)  # noqa: SLF001


async def test_lookups_waiting_for_a_read_ahead_dropped_before_it_began_still_answer(
    storage: BaseStorage,
) -> None:
    """The lease lapsing drops the cache and stops the read-ahead (even one queued but not yet
    begun): lookups waiting for it are woken and read for themselves."""
    async with leased_reader(storage, 3000) as reader:
        assert await reader.get_peer_by_id(1) is not None  # the read-ahead is queued, not begun
        assert reader._arriving  # noqa: SLF001 - the buckets it is to read
        waiting = asyncio.gather(*(reader.get_peer_by_id(i) for i in range(2, 3001, 5)))
        await asyncio.sleep(0)  # the lookups begin, and wait for the read-ahead
        reader._drop_cache()  # noqa: SLF001 - what the lease does on a gap
        found = await asyncio.wait_for(waiting, 30)
        assert [p.id if p else None for p in found] == list(range(2, 3001, 5))


async def test_uncached_lookups_cost_one_redis_command_by_id_two_by_username_or_phone(
    redis_server: RedisServer,
) -> None:
    async with counting(redis_server, "roundtrips") as (storage, commands):
        store = SessionStore(storage, "main")  # no lease: every lookup reads the storage
        await store.update_peers(peers(20))
        before = await commands()
        for i in range(1, 21):
            assert await store.get_peer_by_id(i) is not None
            assert await store.get_peer_by_username(f"user{i}") is not None
            assert await store.get_peer_by_phone_number(f"1555{i:04d}") is not None
        spent = await commands() - before - 1  # the INFO call itself
        assert spent == 20 + 2 * 20 + 2 * 20  # by username / phone: the index, then the peer


async def test_lookups_of_buckets_being_read_ahead_wait_for_that_read(
    redis_server: RedisServer,
) -> None:
    async with counting(redis_server, "readahead-wait") as (storage, commands):
        async with leased_reader(storage, 3000) as reader:
            before = await commands()
            assert await reader.get_peer_by_id(1) is not None  # the first miss starts the read-ahead
            wanted = range(2, 3001, 3)  # ~1,000 lookups at once, over every peer bucket
            found = await asyncio.gather(*(reader.get_peer_by_id(i) for i in wanted))
            assert [p.id if p else None for p in found] == list(wanted)
            # the layout marker, the first bucket, then the other 511 in one read (3,000 peers:
            # ~6 rows a bucket), which the lookups wait for instead of each reading its bucket
            assert await commands() - before - 1 == 3


async def test_the_lease_holder_reads_the_peers_ahead_after_its_first_miss(
    redis_server: RedisServer,
) -> None:
    async with counting(redis_server, "readahead") as (storage, commands):
        async with leased_reader(storage, 3000) as reader:  # as a fresh process would start
            assert await reader.get_peer_by_id(1) is not None
            assert list(reader._warmers) == [reader._peers_prefix]  # by id: no username index read
            assert await reader.get_peer_by_username("user2") is not None
            warmers = list(reader._warmers.values())
            assert len(warmers) == 2
            await asyncio.wait_for(asyncio.gather(*warmers), 30)  # the read-ahead, in the background
            before = await commands()
            for i in range(1, 3001, 7):
                found = await reader.get_peer_by_username(f"USER{i}")
                assert found is not None and found.id == i
                assert await reader.get_peer_by_id(i) == found
            assert await commands() - before - 1 == 0  # all served from memory
            await reader.update_peers([Peer(8, 1, "user", ("Renamed",))])
            assert await reader.get_peer_by_username("user8") is None
            assert (await SessionStore(storage, "main").get_peer_by_username("renamed")) is not None
