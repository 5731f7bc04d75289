"""AiogramStorage behaves as aiogram's own storages where aiogram's code and tests rely on it:
the exception for non-mapping data, a Dispatcher shut down and started again, and aiogram's
attribute names on statekit's ``State`` / ``StatesGroup``."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.storage.base import StorageKey as AiogramKey
from aiogram.fsm.storage.memory import MemoryStorage as AiogramMemoryStorage
from offline_bots import Feeder, load_example

from statekit import BaseStorage, StorageClosedError
from statekit.adapters.aiogram import AiogramStorage
from statekit.fsm import ANY_STATE, State, StatesGroup

KEY = AiogramKey(bot_id=1, chat_id=2, user_id=3)


@pytest.fixture(scope="module")
def form_bot() -> ModuleType:
    return load_example("aiogram_form_bot")


@pytest.mark.parametrize("bad", [(), [("a", 1)], "ab", 42, None])
async def test_non_mapping_data_raises_aiogram_error(storage: BaseStorage, bad: object) -> None:
    adapter = AiogramStorage(storage, close_storage=False)
    reference = AiogramMemoryStorage()
    for target in (reference, adapter):
        with pytest.raises(DataNotDictLikeError):
            await target.set_data(KEY, bad)  # type: ignore[arg-type]
    with pytest.raises(DataNotDictLikeError, match=r"fsm:\{1:2:3:::default\}.*not tuple"):
        await adapter.update_data(KEY, ())  # type: ignore[arg-type]
    assert await adapter.get_data(KEY) == {} and await storage.list_keys() == []
    with pytest.raises(TypeError, match="keys must be str"):  # statekit's own, stricter check
        await adapter.set_data(KEY, {1: "x"})  # type: ignore[dict-item]


async def test_dispatcher_started_again_keeps_working(
    make_storage: Callable[..., BaseStorage], backend: str, form_bot: ModuleType
) -> None:
    storage = make_storage()
    feeder = Feeder(form_bot.build_dispatcher(storage))
    dispatcher, bot = feeder.dispatcher, feeder.bot
    await dispatcher.emit_startup(bot=bot)
    assert await feeder.send("/start", user_id=7) == "Hi! What is your name?"
    assert await feeder.send("Ann", user_id=7) == "Nice to meet you, Ann. How old are you?"
    await dispatcher.emit_shutdown(bot=bot)  # what the end of start_polling does
    assert not storage.started  # the adapter released the storage
    with pytest.raises(StorageClosedError):  # the storage itself stays stopped ...
        await storage.get_state("anything")
    await dispatcher.emit_startup(bot=bot)  # ... a second start_polling
    if backend == "sqlite-memory":  # an in-memory SQLite database ends with its connection
        assert await feeder.send("/start", user_id=7) == "Hi! What is your name?"
        assert await feeder.send("Ann", user_id=7) == "Nice to meet you, Ann. How old are you?"
    else:
        assert await feeder.send("31", user_id=7) == "Ann, 31. Is that right? (yes/no)"
    assert storage.started
    await dispatcher.emit_shutdown(bot=bot)
    await dispatcher.emit_shutdown(bot=bot)  # closing twice is harmless
    adapter = dispatcher.fsm.storage
    assert isinstance(adapter, AiogramStorage)
    for call in (
        adapter.get_state(KEY),
        adapter.get_data(KEY),
        adapter.get_value(KEY, "x"),
        adapter.set_state(KEY, "S"),
        adapter.set_data(KEY, {"a": 1}),
        adapter.update_data(KEY, {"b": 2}),
    ):
        await call  # every operation starts the storage the adapter closed
    assert await adapter.get_data(KEY) == {"a": 1, "b": 2}
    await adapter.close()


async def test_storage_stopped_by_its_owner_stays_stopped(storage: BaseStorage) -> None:
    adapter = AiogramStorage(storage)
    await storage.stop()  # not the adapter's doing: no silent restart
    with pytest.raises(StorageClosedError):
        await adapter.get_state(KEY)


class Form(StatesGroup):
    name = State()

    class Address(StatesGroup):
        city = State()

        class Geo(StatesGroup):
            lat = State()

    class Extra(StatesGroup):
        note = State()


def test_state_offers_aiogram_attribute_names() -> None:
    from aiogram.fsm.state import State as AState
    from aiogram.fsm.state import StatesGroup as AGroup

    class AForm(AGroup):
        name = AState()

        class Address(AGroup):
            city = AState()

    assert Form.name.state == "Form:name" == AForm.name.state.replace("AForm", "Form")
    assert Form.Address.city.state == "Form.Address:city"
    assert State().state is None and AState().state is None
    assert ANY_STATE.state == "*"
    assert Form.name.group is Form and Form.Address.city.group is Form.Address
    assert Form.name(None, "Form:name") and not Form.name(None, "Form.Address:city")
    assert AForm.name(None, "AForm:name") and not AForm.name(None, None)
    assert ANY_STATE(None, None) and ANY_STATE(None, "x") and State()(None, None)
    assert not State()(None, "Form:name")
    assert Form.__all_states_names__ == (
        "Form:name",
        "Form.Address:city",
        "Form.Address.Geo:lat",
        "Form.Extra:note",
    )
    assert AForm.__all_states_names__ == ("AForm:name", "AForm.Address:city")
    assert Form.__childs__ == (Form.Address, Form.Extra)
    assert Form.__all_childs__ == (Form.Address, Form.Extra, Form.Address.Geo)
    assert AForm.__all_childs__ == (AForm.Address,)
    assert Form.Address.Geo.get_root() is Form and Form.get_root() is Form
    assert AForm.Address.get_root() is AForm
    assert Form.Address.__full_group_name__ == "Form.Address"


async def test_statekit_states_work_in_aiogram_handlers(storage: BaseStorage) -> None:
    from aiogram import Dispatcher, Router
    from aiogram.filters import CommandStart
    from aiogram.fsm.context import FSMContext as AiogramContext
    from aiogram.types import Message

    router = Router()

    @router.message(CommandStart())
    async def start(message: Message, state: AiogramContext) -> None:
        await state.set_state(Form.name.state)
        await message.answer("name?")

    @router.message(Form.name)  # a statekit State as an aiogram filter
    async def got_name(message: Message, state: AiogramContext) -> None:
        await state.set_state(Form.Address.city)
        await message.answer(f"hi {message.text}")

    dispatcher = Dispatcher(storage=AiogramStorage(storage, close_storage=False))
    dispatcher.include_router(router)
    feeder = Feeder(dispatcher)
    assert await feeder.send("/start", user_id=4) == "name?"
    assert await feeder.send("Bo", user_id=4) == "hi Bo"
    assert await dispatcher.fsm.storage.get_state(AiogramKey(feeder.bot.id, 4, 4)) == "Form.Address:city"
