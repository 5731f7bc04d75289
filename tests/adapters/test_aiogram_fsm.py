"""AiogramStorage driven by a real aiogram Dispatcher, fed real Update objects offline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import ModuleType

import pytest
from aiogram import Dispatcher, Router
from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.context import FSMContext as AiogramFSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey as AiogramKey
from aiogram.types import Message
from offline_bots import Feeder, load_example

from statekit import BaseStorage, CorruptValueError, MemoryStorage
from statekit.adapters.aiogram import AiogramStorage
from statekit.fsm import FSMContext, FSMRecord, StorageKey

BOT_ID = 424242


@pytest.fixture(scope="module")
def form_bot() -> ModuleType:
    return load_example("aiogram_form_bot")


async def test_form_bot_walks_a_user_through_the_form(
    storage: BaseStorage, form_bot: ModuleType
) -> None:
    feeder = Feeder(form_bot.build_dispatcher(storage))
    assert await feeder.send("/start", user_id=1) == "Hi! What is your name?"
    assert await feeder.send("Ann", user_id=1) == "Nice to meet you, Ann. How old are you?"
    key = StorageKey(BOT_ID, 1, 1)
    assert await FSMContext(storage, key).get_record() == FSMRecord("Form:age", {"name": "Ann"})
    assert await feeder.send("old", user_id=1) == "Please send your age as a number."
    assert await feeder.send("31", user_id=1) == "Ann, 31. Is that right? (yes/no)"
    assert await storage.get_state(key.storage_key) == {
        "state": "Form:confirm",
        "data": {"name": "Ann", "age": 31},
    }
    assert await feeder.send("no", user_id=1) == "Let's start again. What is your name?"
    assert await feeder.send("Bo", user_id=1) == "Nice to meet you, Bo. How old are you?"
    assert await feeder.send("7", user_id=1) == "Bo, 7. Is that right? (yes/no)"
    assert await feeder.send("YES", user_id=1) == "Saved: Bo, 7."
    assert await FSMContext(storage, key).get_record() == FSMRecord(None, {})
    assert await storage.list_keys() == []
    assert await feeder.send("/cancel", user_id=1) == "Nothing to cancel."


async def test_form_state_survives_a_new_dispatcher(
    make_storage: Callable[..., BaseStorage], backend: str, form_bot: ModuleType
) -> None:
    if backend in ("memory", "sqlite-memory"):
        pytest.skip("a restart of an in-process store starts empty")
    first = make_storage()
    feeder = Feeder(form_bot.build_dispatcher(first))
    await feeder.send("/start", user_id=5)
    await feeder.send("Cy", user_id=5)
    await first.stop()  # the bot process ends
    again = make_storage(namespace=first.namespace)
    feeder2 = Feeder(form_bot.build_dispatcher(again))
    assert await feeder2.send("40", user_id=5) == "Cy, 40. Is that right? (yes/no)"


async def test_users_in_one_group_chat_fill_their_own_forms(
    storage: BaseStorage, form_bot: ModuleType
) -> None:
    feeder = Feeder(form_bot.build_dispatcher(storage))
    group = -100777
    await feeder.send("/start", user_id=10, chat_id=group)
    await feeder.send("/start", user_id=11, chat_id=group)
    assert await feeder.send("Dee", user_id=10, chat_id=group) == "Nice to meet you, Dee. How old are you?"
    assert await feeder.send("Eve", user_id=11, chat_id=group) == "Nice to meet you, Eve. How old are you?"
    assert await feeder.send("20", user_id=11, chat_id=group) == "Eve, 20. Is that right? (yes/no)"
    assert await feeder.send("30", user_id=10, chat_id=group) == "Dee, 30. Is that right? (yes/no)"


async def test_concurrent_handlers_of_one_user_lose_no_update(storage: BaseStorage) -> None:
    class Quiz(StatesGroup):
        answering = State()

    router = Router()

    @router.message(Quiz.answering)
    async def answer(message: Message, state: AiogramFSMContext) -> None:
        await asyncio.sleep(0)
        await state.update_data({f"answer{message.message_id}": message.text})

    dispatcher = Dispatcher(storage=AiogramStorage(storage))
    dispatcher.include_router(router)
    feeder = Feeder(dispatcher)
    aiogram_key = AiogramKey(bot_id=BOT_ID, chat_id=3, user_id=3)
    await dispatcher.storage.set_state(aiogram_key, Quiz.answering)
    updates = [feeder.update(f"text{i}", user_id=3) for i in range(50)]
    await asyncio.gather(*(dispatcher.feed_update(feeder.bot, u) for u in updates))
    data = await dispatcher.storage.get_data(aiogram_key)
    assert data == {f"answer{u.message.message_id}": u.message.text for u in updates if u.message}
    assert await dispatcher.storage.get_state(aiogram_key) == "Quiz:answering"


async def test_storage_methods_match_aiogram_semantics(storage: BaseStorage) -> None:
    class Steps(StatesGroup):
        one = State()

    adapter = AiogramStorage(storage, close_storage=False)
    key = AiogramKey(bot_id=1, chat_id=-5, user_id=6, thread_id=9, business_connection_id="bc", destiny="d")
    assert await adapter.get_state(key) is None and await adapter.get_data(key) == {}
    await adapter.set_state(key, Steps.one)
    assert await adapter.get_state(key) == "Steps:one"
    await adapter.set_data(key, {"a": 1})
    assert await adapter.update_data(key, {"b": 2}) == {"a": 1, "b": 2}
    assert await adapter.get_value(key, "b") == 2
    assert await adapter.get_value(key, "zzz", "dflt") == "dflt"
    ours = StorageKey(1, -5, 6, thread_id=9, business_connection_id="bc", destiny="d")
    assert await FSMContext(storage, ours).get_record() == FSMRecord("Steps:one", {"a": 1, "b": 2})
    ctx = AiogramFSMContext(adapter, key)
    await ctx.clear()
    assert await storage.list_keys() == []
    await adapter.close()
    assert storage.started  # close_storage=False leaves it running


async def test_close_stops_the_statekit_storage() -> None:
    storage = MemoryStorage()
    adapter = AiogramStorage(storage)
    await adapter.set_state(AiogramKey(1, 2, 3), "S")
    await adapter.close()
    assert not storage.started


async def test_errors_name_the_conversation(storage: BaseStorage) -> None:
    adapter = AiogramStorage(storage)
    key = AiogramKey(bot_id=1, chat_id=2, user_id=3)
    with pytest.raises(TypeError, match=r"fsm:\{1:2:3:::default\}"):
        await adapter.set_state(key, 42)  # type: ignore[arg-type]
    with pytest.raises(DataNotDictLikeError, match=r"fsm:\{1:2:3:::default\}"):
        await adapter.set_data(key, [1, 2])  # type: ignore[arg-type]
    await storage.set_state(StorageKey(1, 2, 3).storage_key, ["not", "a", "record"])
    with pytest.raises(CorruptValueError, match=r"fsm:\{1:2:3:::default\}"):
        await adapter.update_data(key, {"a": 1})
    with pytest.raises(TypeError):
        AiogramStorage(object())  # type: ignore[arg-type]
