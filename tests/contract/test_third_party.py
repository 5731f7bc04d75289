"""A backend written outside statekit (tests/thirdparty/dictstore.py, public API only) registered
through ``register_storage``: it passes the whole exported conformance suite, and the FSM and
session layers work over it through the public contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from statekit import FSMContext, SessionStore, StorageKey, open_storage, register_storage
from statekit.session import Peer, SessionData, UpdateState
from statekit.storage import url as url_module
from statekit.storage.base import BaseStorage, Stored
from statekit.testing import FakeClock
from statekit.testing.conformance import RawAccess, StorageConformance
from tests.thirdparty.dictstore import DictStorage, Row


@pytest.fixture(autouse=True)
def dict_scheme() -> Iterator[None]:
    register_storage("dict", DictStorage)
    yield
    url_module._registered.pop("dict", None)


class _Clock:
    def __init__(self) -> None:
        self.fake = FakeClock()

    async def advance(self, seconds: float) -> None:
        self.fake.advance(seconds)


class _DictRaw:
    """The backend's own ``RawAccess``: what its test module provides to the suite."""

    async def plant(self, storage: BaseStorage, key: str, raw: bytes) -> None:
        assert isinstance(storage, DictStorage)
        storage.rows[(storage.namespace, key)] = (raw, None)

    async def read(self, storage: BaseStorage, key: str) -> Stored | None:
        assert isinstance(storage, DictStorage)
        row = storage.rows.get((storage.namespace, key))
        return None if row is None else row[0]


class TestDictStorageConformance(StorageConformance):
    """Every test of the suite, against the third-party backend opened by its URL."""

    @pytest.fixture
    def clock(self) -> _Clock:
        return _Clock()

    @pytest.fixture
    async def make_storage(self, clock: _Clock) -> AsyncIterator[Callable[..., BaseStorage]]:
        rows: dict[tuple[str, str], Row] = {}
        made: list[BaseStorage] = []

        def make(**options: Any) -> BaseStorage:
            options.setdefault("namespace", "third")
            storage = open_storage("dict://", rows=rows, clock=clock.fake, **options)
            made.append(storage)
            return storage

        yield make
        for storage in made:
            await storage.stop()

    @pytest.fixture
    async def storage(self, make_storage: Callable[..., BaseStorage]) -> AsyncIterator[BaseStorage]:
        store = make_storage()
        await store.start()
        yield store

    @pytest.fixture
    def raw_access(self) -> RawAccess:
        return _DictRaw()


def test_the_url_opens_the_registered_class() -> None:
    storage = open_storage("dict://?namespace=bot&default_ttl=5")
    assert isinstance(storage, DictStorage)
    assert (storage.namespace, storage.default_ttl) == ("bot", 5)


async def test_fsm_works_through_the_public_contract() -> None:
    storage = DictStorage()
    key = StorageKey(bot_id=1, chat_id=2, user_id=3)
    contexts = [FSMContext(storage, key) for _ in range(50)]
    await asyncio.gather(*(c.update_data({f"f{i}": i}) for i, c in enumerate(contexts)))
    assert await contexts[0].get_data() == {f"f{i}": i for i in range(50)}
    await contexts[0].set_state("Form:name")
    assert await FSMContext(storage, key).get_state() == "Form:name"


async def test_conversation_timeouts_fire_through_the_public_contract() -> None:
    from statekit.fsm import State, StatesGroup, TimeoutEvent, Timeouts

    class Form(StatesGroup):
        name = State()

    storage = DictStorage()
    timeouts = Timeouts(storage, poll_interval=0.02)
    fired: list[TimeoutEvent] = []
    done = asyncio.Event()

    @timeouts.on(Form.name, after=0.05)
    async def expired(event: TimeoutEvent) -> None:
        fired.append(event)
        assert await event.clear()
        done.set()

    key = StorageKey(bot_id=1, chat_id=2, user_id=3)
    async with timeouts:
        await FSMContext(storage, key).set_state(Form.name)
        await asyncio.wait_for(done.wait(), 30)
    assert [(e.key, e.state) for e in fired] == [(key, "Form:name")]
    assert await FSMContext(storage, key).get_state() is None


@pytest.mark.parametrize("leased", [False, True], ids=["compare-and-set", "leased-batch"])
async def test_session_peers_are_written_through_the_public_contract(leased: bool) -> None:
    """Without the msgpack fast path, peers are written with the public operations: one
    compare-and-set per bucket without the lease, one set_many batch with it."""
    storage = DictStorage()
    store = SessionStore(storage, "acct")
    if leased:
        await store.open()
    try:
        await store.update_peers([Peer(id=10, access_hash=5, type="user", usernames=["Ada"])])
        await store.update_peers([Peer(id=10, access_hash=6, type="user", usernames=["Bea"])])
    finally:
        await store.close()
    reader = SessionStore(storage, "acct")  # reads the storage, nothing cached
    found = await reader.get_peer_by_username("bea")
    assert found is not None and (found.id, found.access_hash) == (10, 6)
    assert await reader.get_peer_by_username("ada") is None


async def test_a_session_is_snapshot_and_restored_through_the_public_contract() -> None:
    """Without the msgpack fast path, restore() hands every bucket to the public set_many: a
    copy of a session with more peers than buckets holds the same record, peers and update
    states, found by username as well, and keys the copy held before that the snapshot lacks are
    gone."""
    storage = DictStorage()
    source = SessionStore(storage, "acct")
    await source.save(SessionData(dc_id=2, auth_key=bytes(range(256))))
    await source.set_update_state(UpdateState(0, 7, 8, 9, 10))
    await source.update_peers(
        [Peer(id=i, access_hash=i * 3, type="user", usernames=[f"U{i}"]) for i in range(1, 1200)]
    )
    snap = await source.snapshot()
    copy = SessionStore(storage, "copy")
    await copy.update_peers([Peer(id=5000, access_hash=1, type="bot", usernames=["gone"])])
    await copy.restore(snap)
    reader = SessionStore(storage, "copy")  # reads the storage, nothing cached
    assert await reader.snapshot() == snap
    found = await reader.get_peer_by_username("u1199")
    assert found is not None and (found.id, found.access_hash) == (1199, 3597)
    assert await reader.get_peer_by_id(5000) is None
    assert await reader.get_peer_by_username("gone") is None


def test_tests_needing_raw_access_skip_with_a_reason_without_the_hook() -> None:
    from statekit.testing import conformance

    with pytest.raises(pytest.skip.Exception, match="needs the raw_access fixture"):
        conformance._need(None)
    needing = [name for name in dir(StorageConformance) if name.startswith("test_")
               and "raw_access" in StorageConformance.__dict__[name].__code__.co_varnames]
    assert sorted(needing) == [
        "test_corrupt_bytes_raise_corrupt_value_error", "test_values_are_stored_as_codec_bytes"
    ]
