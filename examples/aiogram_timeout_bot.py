"""A form bot on aiogram 3 whose unfinished forms expire: "your form expired, /start to begin again".

Run it (several copies may run against one Redis; each expired form is announced once)::

    BOT_TOKEN=123:abc python examples/aiogram_timeout_bot.py
    BOT_TOKEN=123:abc STATEKIT_URL=redis://127.0.0.1:6379/0 python examples/aiogram_timeout_bot.py

``STATEKIT_URL`` is any statekit URL (default ``sqlite:///timeout-bot.db``); ``FORM_TIMEOUT`` the
seconds a user may stay silent inside the form (default 300). The deadline lives in the store with
the conversation: a restart, or a second bot process, does not lose it.
``build_dispatcher(storage, after=...)`` builds the whole bot, so tests drive it offline.
"""

from __future__ import annotations

import asyncio
import logging
import os

from aiogram import Bot, Dispatcher, F, Router
from aiogram.filters import CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message

from statekit import BaseStorage, open_storage
from statekit.adapters.aiogram import AiogramStorage
from statekit.adapters.aiogram_timeouts import setup_timeouts
from statekit.fsm import TimeoutEvent, Timeouts

EXPIRED = "Your form expired. Send /start to begin again."


class Form(StatesGroup):
    name = State()
    age = State()


def make_router() -> Router:
    """The form's handlers (a new router each call: a router joins one dispatcher only)."""
    router = Router(name="timeout-form")

    @router.message(CommandStart())
    async def start(message: Message, state: FSMContext) -> None:
        await state.clear()
        await state.set_state(Form.name)
        await message.answer("Hi! What is your name?")

    @router.message(Form.name, F.text)
    async def got_name(message: Message, state: FSMContext) -> None:
        await state.update_data(name=message.text)
        await state.set_state(Form.age)
        await message.answer(f"Nice to meet you, {message.text}. How old are you?")

    @router.message(Form.age, F.text.regexp(r"^\d{1,3}$"))
    async def got_age(message: Message, state: FSMContext) -> None:
        data = await state.get_data()
        await state.clear()
        await message.answer(f"Saved: {data['name']}, {message.text}.")

    return router


def build_dispatcher(storage: BaseStorage, *, after: float = 300.0) -> Dispatcher:
    """The bot over ``storage``: the form, and its expiry after ``after`` idle seconds."""
    dp = Dispatcher(storage=AiogramStorage(storage))
    dp.include_router(make_router())
    timeouts = Timeouts(storage)

    async def expired(event: TimeoutEvent, bot: Bot) -> None:
        # clear() applies only if the user has not written since: a late answer wins the race
        if await event.clear():
            await bot.send_message(event.key.chat_id, EXPIRED)

    for state in (Form.name, Form.age):  # idle time since the user's last step
        timeouts.on(state, after=after)(expired)
    setup_timeouts(dp, timeouts)  # started and stopped with the dispatcher
    return dp


async def main() -> None:
    logging.basicConfig(level=logging.INFO)
    token = os.environ.get("BOT_TOKEN")
    if not token:
        raise SystemExit("set BOT_TOKEN")
    storage = open_storage(os.environ.get("STATEKIT_URL", "sqlite:///timeout-bot.db"))
    dp = build_dispatcher(storage, after=float(os.environ.get("FORM_TIMEOUT", "300")))
    await dp.start_polling(Bot(token))


if __name__ == "__main__":
    asyncio.run(main())
