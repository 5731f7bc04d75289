"""A form bot on aiogram 3 whose conversation state lives in statekit.

Run it::

    BOT_TOKEN=123:abc python examples/aiogram_form_bot.py
    BOT_TOKEN=123:abc STATEKIT_URL=redis://127.0.0.1:6379/0 python examples/aiogram_form_bot.py

``STATEKIT_URL`` is any statekit URL (default ``sqlite:///form-bot.db``). The bot asks for a name,
an age and a confirmation; ``/cancel`` leaves the form at any step. ``build_dispatcher(storage)``
builds the whole bot, so tests drive it offline with ``Dispatcher.feed_update``.
"""

from __future__ import annotations

import asyncio
import logging
import os

from aiogram import Bot, Dispatcher, F, Router
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message

from statekit import BaseStorage, open_storage
from statekit.adapters.aiogram import AiogramStorage


class Form(StatesGroup):
    name = State()
    age = State()
    confirm = State()


def make_router() -> Router:
    """The form's handlers (a new router each call: a router joins one dispatcher only)."""
    router = Router(name="form")

    @router.message(CommandStart())
    async def start(message: Message, state: FSMContext) -> None:
        await state.clear()
        await state.set_state(Form.name)
        await message.answer("Hi! What is your name?")

    @router.message(Command("cancel"))
    async def cancel(message: Message, state: FSMContext) -> None:
        if await state.get_state() is None:
            await message.answer("Nothing to cancel.")
            return
        await state.clear()
        await message.answer("Cancelled.")

    @router.message(Form.name, F.text)
    async def got_name(message: Message, state: FSMContext) -> None:
        await state.update_data(name=message.text)
        await state.set_state(Form.age)
        await message.answer(f"Nice to meet you, {message.text}. How old are you?")

    @router.message(Form.age, F.text.regexp(r"^\d{1,3}$"))
    async def got_age(message: Message, state: FSMContext) -> None:
        data = await state.update_data(age=int(message.text or 0))
        await state.set_state(Form.confirm)
        await message.answer(f"{data['name']}, {data['age']}. Is that right? (yes/no)")

    @router.message(Form.age)
    async def bad_age(message: Message) -> None:
        await message.answer("Please send your age as a number.")

    @router.message(Form.confirm, F.text.lower() == "yes")
    async def confirmed(message: Message, state: FSMContext) -> None:
        data = await state.get_data()
        await state.clear()
        await message.answer(f"Saved: {data['name']}, {data['age']}.")

    @router.message(Form.confirm, F.text.lower() == "no")
    async def restart(message: Message, state: FSMContext) -> None:
        await state.set_data({})
        await state.set_state(Form.name)
        await message.answer("Let's start again. What is your name?")

    return router


def build_dispatcher(storage: BaseStorage, *, ttl: float | None = 24 * 3600) -> Dispatcher:
    """The bot: a dispatcher whose FSM lives in ``storage`` (forms expire a day after their last step)."""
    dispatcher = Dispatcher(storage=AiogramStorage(storage, ttl=ttl))
    dispatcher.include_router(make_router())
    return dispatcher


async def main() -> None:
    token = os.environ.get("BOT_TOKEN")
    if not token:
        raise SystemExit("set BOT_TOKEN to your bot's token")
    storage = open_storage(os.environ.get("STATEKIT_URL", "sqlite:///form-bot.db"))
    dispatcher = build_dispatcher(storage)
    bot = Bot(token)
    try:
        await dispatcher.start_polling(bot)  # closes the storage on shutdown
    finally:
        await bot.session.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
