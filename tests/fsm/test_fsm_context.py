"""FSMContext on every backend: one record per conversation, reads and writes, TTL, isolation."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from statekit import BaseStorage
from statekit.fsm import FSMContext, FSMRecord, State, StatesGroup, StorageKey


class Form(StatesGroup):
    name = State()
    age = State()


KEY = StorageKey(bot_id=1, chat_id=-1001, user_id=42)


async def test_empty_conversation_reads_as_nothing_and_stores_nothing(storage: BaseStorage) -> None:
    ctx = FSMContext(storage, KEY)
    assert await ctx.get_state() is None
    assert await ctx.get_data() == {}
    assert await ctx.get_record() == FSMRecord(None, {})
    assert await ctx.get_value("x", "dflt") == "dflt"
    assert await storage.list_keys() == []


async def test_state_and_data_are_one_record_under_one_key(storage: BaseStorage) -> None:
    ctx = FSMContext(storage, KEY)
    await ctx.set_state(Form.name)
    await ctx.update_data(name="Ann")
    assert await storage.list_keys() == [KEY.storage_key]
    assert await storage.get_state(KEY.storage_key) == {"state": "Form:name", "data": {"name": "Ann"}}


async def test_set_state_keeps_data_and_set_data_keeps_state(storage: BaseStorage) -> None:
    ctx = FSMContext(storage, KEY)
    await ctx.set_data({"a": 1, "nested": {"l": [1, 2]}})
    await ctx.set_state(Form.age)
    assert await ctx.get_record() == FSMRecord("Form:age", {"a": 1, "nested": {"l": [1, 2]}})
    await ctx.set_data({"b": 2})
    assert await ctx.get_record() == FSMRecord("Form:age", {"b": 2})
    await ctx.set_state("custom:state")
    assert await ctx.get_state() == "custom:state"
    await ctx.set_state(None)
    assert await ctx.get_record() == FSMRecord(None, {"b": 2})
    await ctx.set_data({})
    assert await storage.list_keys() == []  # nothing left to store


async def test_update_data_merges_like_dict_update(storage: BaseStorage) -> None:
    ctx = FSMContext(storage, KEY)
    assert await ctx.update_data({"a": 1, "b": 1}) == {"a": 1, "b": 1}
    assert await ctx.update_data({"b": 2, "c": 2}, c=3, d=(1, 2)) == {"a": 1, "b": 2, "c": 3, "d": [1, 2]}
    assert await ctx.get_data() == {"a": 1, "b": 2, "c": 3, "d": [1, 2]}
    assert await ctx.update_data(mapping=5) == {"a": 1, "b": 2, "c": 3, "d": [1, 2], "mapping": 5}


async def test_results_are_fresh_copies(storage: BaseStorage) -> None:
    ctx = FSMContext(storage, KEY)
    out = await ctx.update_data(items=[1, 2], sub={"k": "v"})
    out["items"].append(3)
    out["sub"]["k"] = "changed"
    out["new"] = True
    read = await ctx.get_data()
    assert read == {"items": [1, 2], "sub": {"k": "v"}}
    read["items"].clear()
    assert await ctx.get_data() == {"items": [1, 2], "sub": {"k": "v"}}
    assert await ctx.update_data(x=1) == {"items": [1, 2], "sub": {"k": "v"}, "x": 1}


async def test_update_applies_a_function_to_the_record(storage: BaseStorage) -> None:
    ctx = FSMContext(storage, KEY)
    await ctx.update_data(count=1)

    def bump(record: FSMRecord) -> FSMRecord:
        record.data["count"] += 1  # the function gets a copy it may mutate
        return FSMRecord(Form.age.name, record.data)

    assert await ctx.update(bump) == FSMRecord("Form:age", {"count": 2})
    assert await ctx.get_record() == FSMRecord("Form:age", {"count": 2})


async def test_transition_is_a_compare_and_set_on_the_state(storage: BaseStorage) -> None:
    ctx = FSMContext(storage, KEY)
    await ctx.update_data(keep="me")
    assert await ctx.transition(Form.name, Form.age) is False  # no state yet
    assert await ctx.transition(None, Form.name) is True
    assert await ctx.transition("Form:name", Form.age) is True
    assert await ctx.transition(Form.name, None) is False
    assert await ctx.get_record() == FSMRecord("Form:age", {"keep": "me"})


async def test_transition_checks_the_store_not_a_stale_memory(storage: BaseStorage) -> None:
    ctx = FSMContext(storage, KEY)
    await ctx.set_state("A")
    # another process moves the conversation on; this context still remembers "A"
    await storage.set_state(KEY.storage_key, {"state": "B", "data": {}})
    assert await ctx.transition("A", "C") is False
    assert await ctx.transition("B", "C") is True
    assert await ctx.get_state() == "C"


async def test_a_stale_memory_costs_a_retry_never_an_update(storage: BaseStorage) -> None:
    ctx = FSMContext(storage, KEY)
    await ctx.update_data(mine=1)
    await storage.set_state(KEY.storage_key, {"state": "X", "data": {"theirs": 2}})
    assert await ctx.update_data(mine=3) == {"theirs": 2, "mine": 3}
    assert await ctx.get_record() == FSMRecord("X", {"theirs": 2, "mine": 3})


async def test_clear_deletes_the_record(storage: BaseStorage) -> None:
    ctx = FSMContext(storage, KEY)
    await ctx.set_state(Form.name)
    await ctx.update_data(a=1)
    await ctx.clear()
    assert await ctx.get_record() == FSMRecord(None, {})
    assert await storage.list_keys() == []
    await ctx.update_data(b=2)  # usable after clear
    assert await ctx.get_record() == FSMRecord(None, {"b": 2})


async def test_two_users_in_one_group_chat_are_separate(storage: BaseStorage) -> None:
    alice = FSMContext(storage, StorageKey(1, -500, 10))
    bob = FSMContext(storage, StorageKey(1, -500, 11))
    await alice.set_state(Form.name)
    await alice.update_data(name="Alice")
    assert await bob.get_record() == FSMRecord(None, {})
    await bob.set_state(Form.age)
    await bob.update_data(age=30)
    assert await alice.get_record() == FSMRecord("Form:name", {"name": "Alice"})
    assert await bob.get_record() == FSMRecord("Form:age", {"age": 30})
    await alice.clear()
    assert await bob.get_record() == FSMRecord("Form:age", {"age": 30})


async def test_thread_business_and_destiny_separate_conversations(storage: BaseStorage) -> None:
    keys = [
        StorageKey(1, -500, 10),
        StorageKey(1, -500, 10, thread_id=3),
        StorageKey(1, -500, 10, business_connection_id="biz"),
        StorageKey(1, -500, 10, destiny="quiz"),
        StorageKey(2, -500, 10),
    ]
    for i, key in enumerate(keys):
        await FSMContext(storage, key).update_data(i=i)
    for i, key in enumerate(keys):
        assert await FSMContext(storage, key).get_data() == {"i": i}


async def test_ttl_slides_on_every_write(make_storage: Callable[..., BaseStorage], clock: Any) -> None:
    """On Redis time really passes: a run in which one step (0.25 s of waiting, then a write or a
    read) took 0.1 s longer than it should (a stall of the machine) proves nothing about the TTL
    and is made again on a conversation of its own."""
    storage = make_storage()
    for user_id in (42, 43, 44):
        if await _ttl_slides(storage, StorageKey(bot_id=1, chat_id=-1001, user_id=user_id), clock):
            break
    else:
        raise AssertionError("the machine stalled through three tries; timing never held")
    assert await storage.list_keys() == []


async def _ttl_slides(storage: BaseStorage, key: StorageKey, clock: Any) -> bool:
    """The TTL scenario on ``key``; False if a step outlasted its margin on real time."""
    ctx = FSMContext(storage, key, ttl=0.4)

    def stalled(step_started: float) -> bool:
        return clock.fake is None and time.monotonic() - step_started >= 0.35

    first = time.monotonic()
    await ctx.set_state(Form.name)
    ttl = await storage.get_ttl(key.storage_key)
    if clock.fake is None and time.monotonic() - first >= 0.2:
        return False  # the machine stalled between the write and the read: try again
    assert ttl is not None and 0.2 < ttl <= 0.4
    for write in (ctx.update_data(a=1), ctx.set_state(Form.age), ctx.set_data({"b": 2})):
        step = time.monotonic()
        await clock.advance(0.25)
        await write  # each write is 0.25 s after the last: 0.5 s after the first by the end
        ttl = await storage.get_ttl(key.storage_key)
        if stalled(step):
            return False
        assert ttl is not None and ttl > 0.25
    step = time.monotonic()
    assert await ctx.transition(Form.age, Form.name)
    assert await ctx.get_record() == FSMRecord("Form:name", {"b": 2})
    await clock.advance(0.25)
    state = await ctx.get_state()
    if stalled(step):
        return False
    assert state == "Form:name"  # reads do not refresh
    await clock.advance(0.25)
    assert await ctx.get_record() == FSMRecord(None, {})
    return True


async def test_without_ttl_the_storage_default_applies(make_storage: Callable[..., BaseStorage]) -> None:
    plain = make_storage()
    await FSMContext(plain, KEY).update_data(a=1)
    assert await plain.get_ttl(KEY.storage_key) is None
    with_default = make_storage(namespace=f"{plain.namespace}-d", default_ttl=60)
    await FSMContext(with_default, KEY).update_data(a=1)
    ttl = await with_default.get_ttl(KEY.storage_key)
    assert ttl is not None and 59 < ttl <= 60


def test_constructor_checks_its_arguments(storage: BaseStorage) -> None:
    with pytest.raises(TypeError, match="StorageKey"):
        FSMContext(storage, "fsm:1:2:3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="BaseStorage"):
        FSMContext({}, KEY)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FSMContext(storage, KEY, ttl=0)
    with pytest.raises(ValueError):
        FSMContext(storage, KEY, max_tries=0)


async def test_str_subclasses_are_stored_as_plain_str(storage: BaseStorage) -> None:
    class Text(str):  # Pyrogram's message.text is such a subclass
        pass

    ctx = FSMContext(storage, KEY)
    out = await ctx.update_data(name=Text("Ann"))
    await ctx.update_data({Text("tags"): [Text("a"), {Text("k"): Text("v")}]})
    assert type(out["name"]) is str
    data = await ctx.get_data()
    assert data == {"name": "Ann", "tags": ["a", {"k": "v"}]}
    assert type(data["name"]) is str and type(data["tags"][1]["k"]) is str


def test_a_storage_is_freed_once_nothing_uses_it() -> None:
    import asyncio
    import gc
    import weakref

    from statekit import MemoryStorage

    async def use_and_drop() -> weakref.ref[MemoryStorage]:
        storage = MemoryStorage()
        await FSMContext(storage, StorageKey(1, 2, 3)).update_data(a=1)
        assert await FSMContext(storage, StorageKey(1, 2, 3)).get_data() == {"a": 1}
        await storage.stop()
        return weakref.ref(storage)

    freed = asyncio.run(use_and_drop())
    gc.collect()
    assert freed() is None, "the FSM write path must not keep a storage alive"
