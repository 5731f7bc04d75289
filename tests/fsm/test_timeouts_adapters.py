"""Timeouts in the frameworks: the aiogram and kurigram example bots tell a silent user their form
expired, through the framework glue (lifecycle, ``bot`` / ``state`` / ``client`` for handlers)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))

from aiogram import Bot, Dispatcher  # noqa: E402
from aiogram.fsm.context import FSMContext as AiogramFSMContext  # noqa: E402
from offline_bots import Feeder, load_example  # noqa: E402
from pyrogram import Client  # noqa: E402
from pyrogram.types import User  # noqa: E402

from statekit import MemoryStorage  # noqa: E402
from statekit.adapters.aiogram import AiogramStorage  # noqa: E402
from statekit.adapters.aiogram_timeouts import setup_timeouts  # noqa: E402
from statekit.adapters.pyrogram import PyrogramFSM  # noqa: E402
from statekit.fsm import FSMContext, State, StatesGroup, StorageKey, TimeoutEvent, Timeouts  # noqa: E402

WAIT = 30.0


@pytest.fixture
async def memory() -> AsyncIterator[MemoryStorage]:
    async with MemoryStorage() as storage:
        yield storage


async def eventually(cond: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + WAIT
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_aiogram_example_expires_a_silent_form_once(memory: MemoryStorage) -> None:
    bot_module = load_example("aiogram_timeout_bot")
    dp = bot_module.build_dispatcher(memory, after=0.2)
    feeder = Feeder(dp)
    await dp.emit_startup(bot=feeder.bot)  # what start_polling does: the timeouts start
    try:
        assert await feeder.send("/start", user_id=1) == "Hi! What is your name?"
        assert await feeder.send("/start", user_id=2) == "Hi! What is your name?"
        assert await feeder.send("Bo", user_id=2) == "Nice to meet you, Bo. How old are you?"
        assert await feeder.send("7", user_id=2) == "Saved: Bo, 7."  # finished: nothing to expire
        await eventually(lambda: bot_module.EXPIRED in feeder.session.texts(1), "the expiry")
        await asyncio.sleep(0.5)
    finally:
        await dp.emit_shutdown(bot=feeder.bot)
    assert feeder.session.texts(1).count(bot_module.EXPIRED) == 1
    assert bot_module.EXPIRED not in feeder.session.texts(2)
    assert not memory.started  # the dispatcher's shutdown closed the storage, after the timeouts
    async with memory:
        assert await FSMContext(memory, StorageKey(feeder.bot.id, 1, 1)).get_state() is None


class Quiz(StatesGroup):
    question = State()


async def test_aiogram_handlers_get_bot_and_aiogram_state(memory: MemoryStorage) -> None:
    dp = Dispatcher(storage=AiogramStorage(memory))
    timeouts = Timeouts(memory, poll_interval=0.05)
    got: list[tuple[Any, Any]] = []

    @timeouts.on(Quiz.question, after=0.05)
    async def next_question(event: TimeoutEvent, bot: Bot, state: AiogramFSMContext) -> None:
        await state.update_data(skipped=True)
        await state.set_state(None)
        got.append((bot, await state.get_data()))

    setup_timeouts(dp, timeouts)
    feeder = Feeder(dp)
    await dp.emit_startup(bot=feeder.bot)
    assert timeouts.started
    try:
        await FSMContext(memory, StorageKey(feeder.bot.id, 5, 5)).set_state(Quiz.question)
        await eventually(lambda: len(got) == 1, "the quiz timeout")
    finally:
        await dp.emit_shutdown(bot=feeder.bot)
    assert not timeouts.started and not memory.started
    assert got == [(feeder.bot, {"skipped": True})]


def test_setup_refuses_timeouts_on_another_storage(memory: MemoryStorage) -> None:
    dp = Dispatcher(storage=AiogramStorage(memory))
    with pytest.raises(ValueError, match="different statekit storages"):
        setup_timeouts(dp, Timeouts(MemoryStorage()))


async def test_kurigram_example_expires_a_silent_form_once(memory: MemoryStorage) -> None:
    bot_module = load_example("kurigram_timeout_bot")
    app = Client("offline-timeouts", api_id=1, api_hash="0" * 32, in_memory=True)
    app.me = User(id=777, is_bot=True, first_name="Form")
    sent: list[tuple[int, str]] = []

    async def send_message(chat_id: int, text: str, **_: Any) -> None:
        sent.append((chat_id, text))

    app.send_message = send_message  # type: ignore[method-assign]
    fsm = PyrogramFSM(memory, bot_id=777)
    timeouts = bot_module.register(app, fsm, after=0.2)
    timeouts.poll_interval = 0.05
    async with timeouts:
        await fsm.context_for(StorageKey(777, 3, 3)).set_state(bot_module.Form.name)  # a /start
        await fsm.context_for(StorageKey(777, 4, 4)).set_state(bot_module.Form.age)
        await fsm.context_for(StorageKey(777, 4, 4)).clear()  # finished in time
        await eventually(lambda: (3, bot_module.EXPIRED) in sent, "the expiry")
        await asyncio.sleep(0.5)
    assert sent == [(3, bot_module.EXPIRED)]
    assert await fsm.context_for(StorageKey(777, 3, 3)).get_state() is None


async def test_telethon_example_expires_a_silent_form_once(memory: MemoryStorage) -> None:
    from telethon import TelegramClient
    from telethon.sessions import MemorySession

    bot_module = load_example("telethon_timeout_bot")
    client = TelegramClient(MemorySession(), api_id=1, api_hash="0" * 32)  # never connected
    sent: list[tuple[int, str]] = []

    async def send_message(chat_id: int, text: str, **_: Any) -> None:
        sent.append((chat_id, text))

    client.send_message = send_message  # type: ignore[method-assign]
    timeouts = bot_module.register(client, memory, bot_id=777, after=0.2)
    timeouts.poll_interval = 0.05
    assert len(client.list_event_handlers()) == 2  # /start and the answers
    async with timeouts:
        await FSMContext(memory, StorageKey(777, 5, 5)).set_state(bot_module.Form.name)  # a /start
        await FSMContext(memory, StorageKey(777, 6, 6)).set_state(bot_module.Form.age)
        await FSMContext(memory, StorageKey(777, 6, 6)).clear()  # finished in time
        await eventually(lambda: (5, bot_module.EXPIRED) in sent, "the expiry")
        await asyncio.sleep(0.5)
    assert sent == [(5, bot_module.EXPIRED)]
    assert await FSMContext(memory, StorageKey(777, 5, 5)).get_state() is None
