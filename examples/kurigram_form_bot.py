"""A form bot on kurigram (the Pyrogram family) whose conversation state lives in statekit.

Run it::

    API_ID=12345 API_HASH=0123abcd BOT_TOKEN=123:abc python examples/kurigram_form_bot.py

``STATEKIT_URL`` is any statekit URL (default ``sqlite:///form-bot.db``). The bot asks for a name,
an age and a confirmation; ``/cancel`` leaves the form at any step. ``register(app, fsm)`` adds the
handlers to a client, so tests feed it updates offline through the client's dispatcher.
"""

from __future__ import annotations

import asyncio
import os

from pyrogram import Client, filters, idle
from pyrogram.handlers import MessageHandler
from pyrogram.types import Message

from statekit import open_storage
from statekit.adapters.pyrogram import PyrogramFSM
from statekit.fsm import FSMContext, State, StatesGroup


class Form(StatesGroup):
    name = State()
    age = State()
    confirm = State()


async def start(client: Client, message: Message, state: FSMContext) -> None:
    await state.clear()
    await state.set_state(Form.name)
    await message.reply_text("Hi! What is your name?")


async def cancel(client: Client, message: Message, state: FSMContext) -> None:
    if await state.get_state() is None:
        await message.reply_text("Nothing to cancel.")
        return
    await state.clear()
    await message.reply_text("Cancelled.")


async def got_name(client: Client, message: Message, state: FSMContext) -> None:
    await state.update_data(name=message.text)
    await state.set_state(Form.age)
    await message.reply_text(f"Nice to meet you, {message.text}. How old are you?")


async def got_age(client: Client, message: Message, state: FSMContext) -> None:
    data = await state.update_data(age=int(message.text or 0))
    await state.set_state(Form.confirm)
    await message.reply_text(f"{data['name']}, {data['age']}. Is that right? (yes/no)")


async def bad_age(client: Client, message: Message, state: FSMContext) -> None:
    await message.reply_text("Please send your age as a number.")


async def confirmed(client: Client, message: Message, state: FSMContext) -> None:
    data = await state.get_data()
    await state.clear()
    await message.reply_text(f"Saved: {data['name']}, {data['age']}.")


async def restart(client: Client, message: Message, state: FSMContext) -> None:
    await state.set_data({})
    await state.set_state(Form.name)
    await message.reply_text("Let's start again. What is your name?")


def register(app: Client, fsm: PyrogramFSM) -> None:
    """Add the form's handlers to ``app`` (in order: the first matching handler wins)."""
    text = filters.text & ~filters.command(["start", "cancel"])
    handlers = [
        (start, filters.command("start")),
        (cancel, filters.command("cancel")),
        (got_name, text & fsm.in_state(Form.name)),
        (got_age, text & filters.regex(r"^\d{1,3}$") & fsm.in_state(Form.age)),
        (bad_age, text & fsm.in_state(Form.age)),
        (confirmed, text & filters.regex(r"(?i)^yes$") & fsm.in_state(Form.confirm)),
        (restart, text & filters.regex(r"(?i)^no$") & fsm.in_state(Form.confirm)),
    ]
    for callback, flt in handlers:
        app.add_handler(MessageHandler(fsm.inject(callback), flt))


async def main() -> None:
    try:
        api_id, api_hash, token = (os.environ[n] for n in ("API_ID", "API_HASH", "BOT_TOKEN"))
    except KeyError as missing:
        raise SystemExit(f"set {missing.args[0]} (API_ID, API_HASH and BOT_TOKEN are needed)") from None
    storage = open_storage(os.environ.get("STATEKIT_URL", "sqlite:///form-bot.db"))
    app = Client("form-bot", api_id=int(api_id), api_hash=api_hash, bot_token=token, in_memory=True)
    register(app, PyrogramFSM(storage, ttl=24 * 3600))
    async with storage, app:
        await idle()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    asyncio.run(main())
