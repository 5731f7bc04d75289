"""Bad input to the FSM: typed errors that name the conversation, and nothing stored changes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest

from statekit import BaseStorage, CorruptValueError, SerializationError, StorageClosedError
from statekit.fsm import FSMContext, FSMRecord, State, StatesGroup, StorageKey

KEY = StorageKey(bot_id=3, chat_id=-200, user_id=9)
NAMED = re.escape(KEY.storage_key)
BEFORE = {"state": "Form:name", "data": {"a": 1}}


class Form(StatesGroup):
    name = State()


@pytest.fixture
async def ctx(storage: BaseStorage) -> FSMContext:
    context = FSMContext(storage, KEY)
    await context.set_state(Form.name)
    await context.update_data(a=1)
    return context


async def _unchanged(storage: BaseStorage) -> None:
    assert await storage.get_state(KEY.storage_key) == BEFORE


@pytest.mark.parametrize(
    ("state", "error"),
    [(123, TypeError), (Form, TypeError), (State(), ValueError), ("", ValueError), ("*", ValueError), (object(), TypeError)],
)
async def test_unknown_state_objects_are_refused(
    ctx: FSMContext, storage: BaseStorage, state: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=NAMED):
        await ctx.set_state(state)
    with pytest.raises(error, match=NAMED):
        await ctx.transition(Form.name, state)
    with pytest.raises(error, match=NAMED):
        await ctx.transition(state, None)
    await _unchanged(storage)


@pytest.mark.parametrize("data", [[("a", 1)], "abc", 5, None, {1: "x"}, {b"k": 1}])
async def test_data_that_is_not_a_str_keyed_dict_is_refused(
    ctx: FSMContext, storage: BaseStorage, data: Any
) -> None:
    with pytest.raises(TypeError, match=NAMED):
        await ctx.set_data(data)
    if data is not None:
        with pytest.raises(TypeError, match=NAMED):
            await ctx.update_data(data)
    await _unchanged(storage)


@pytest.mark.parametrize("value", [object(), {1.5: "float key"}, 2**70, {"s": {1, 2}}])
async def test_values_the_codec_cannot_encode_are_refused(
    ctx: FSMContext, storage: BaseStorage, value: Any
) -> None:
    with pytest.raises(SerializationError, match=NAMED):
        await ctx.update_data(bad=value)
    with pytest.raises(SerializationError, match=NAMED):
        await ctx.set_data({"bad": value})
    await _unchanged(storage)
    assert await ctx.update_data(good=2) == {"a": 1, "good": 2}  # the conversation still works


async def test_a_record_over_the_size_limit_is_refused(make_storage: Callable[..., BaseStorage]) -> None:
    storage = make_storage(max_value_bytes=200)
    ctx = FSMContext(storage, KEY)
    await ctx.update_data(a=1)
    with pytest.raises(SerializationError, match=NAMED):
        await ctx.update_data(big="x" * 500)
    assert await ctx.get_data() == {"a": 1}


async def test_one_bad_update_among_concurrent_ones_fails_alone(ctx: FSMContext) -> None:
    calls = [ctx.update_data({f"k{i}": i}) for i in range(20)]
    calls.insert(7, ctx.update_data(bad=object()))
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[7], SerializationError)
    assert all(not isinstance(o, BaseException) for i, o in enumerate(outcomes) if i != 7)
    assert await ctx.get_data() == {"a": 1, **{f"k{i}": i for i in range(20)}}


async def test_update_function_errors_change_nothing(ctx: FSMContext, storage: BaseStorage) -> None:
    def boom(record: FSMRecord) -> FSMRecord:
        record.data["half"] = "written"
        raise RuntimeError("handler bug")

    with pytest.raises(RuntimeError, match="handler bug"):
        await ctx.update(boom)
    with pytest.raises(TypeError, match=NAMED):
        await ctx.update(lambda r: {"state": None, "data": {}})  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match=NAMED):
        await ctx.update(lambda r: FSMRecord(42, r.data))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=NAMED):
        await ctx.update(lambda r: FSMRecord(None, [1]))  # type: ignore[arg-type]
    await _unchanged(storage)


@pytest.mark.parametrize(
    "stored",
    [
        "just a string",
        {"state": "S"},
        {"state": 5, "data": {}},
        {"state": "S", "data": [1]},
        {"state": "S", "data": {}, "extra": 1},
        {"state": "", "data": {}},
    ],
)
async def test_a_corrupt_record_raises_and_is_left_alone(storage: BaseStorage, stored: Any) -> None:
    await storage.set_state(KEY.storage_key, stored)
    ctx = FSMContext(storage, KEY)
    for call in (ctx.get_state, ctx.get_data, ctx.get_record):
        with pytest.raises(CorruptValueError, match=NAMED):
            await call()
    for write in (ctx.update_data(x=1), ctx.set_state("S"), ctx.set_data({}), ctx.transition("S", "T")):
        with pytest.raises(CorruptValueError, match=NAMED):
            await write
    assert await storage.get_state(KEY.storage_key) == stored
    await ctx.clear()  # the way out
    assert await ctx.get_record() == FSMRecord(None, {})


async def test_undecodable_bytes_raise_corrupt_and_are_left_alone(storage: BaseStorage) -> None:
    from statekit.testing.raw import plant_raw

    await plant_raw(storage, KEY.storage_key, b"\xc1\xc1 not msgpack")
    ctx = FSMContext(storage, KEY)
    with pytest.raises(CorruptValueError, match=NAMED):
        await ctx.update_data(x=1)
    with pytest.raises(CorruptValueError):
        await storage.get_state(KEY.storage_key)  # still the planted bytes: nothing was written
    await ctx.clear()
    assert await ctx.update_data(x=1) == {"x": 1}


async def test_a_stopped_storage_raises_storage_closed(backend: str, storage: BaseStorage) -> None:
    ctx = FSMContext(storage, KEY)
    await ctx.update_data(a=1)
    await storage.stop()
    with pytest.raises(StorageClosedError):
        await ctx.update_data(b=2)
    with pytest.raises(StorageClosedError):
        await ctx.get_data()
    await storage.start()
    kept = {} if backend == "sqlite-memory" else {"a": 1}  # an in-memory database ends with stop()
    assert await ctx.update_data(b=2) == {**kept, "b": 2}
