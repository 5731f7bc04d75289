"""A form bot on kurigram (the Pyrogram family) whose unfinished forms expire: "your form expired,
/start to begin again".

Run it::

    API_ID=12345 API_HASH=0123abcd BOT_TOKEN=123:abc python examples/kurigram_timeout_bot.py

``STATEKIT_URL`` is any statekit URL (default ``sqlite:///timeout-bot.db``); ``FORM_TIMEOUT`` the
seconds a user may stay silent inside the form (default 300). The deadline is stored with the
conversation, so a restart does not lose it. ``register(app, fsm, after=...)`` adds the handlers
and returns the ``Timeouts`` to start with the client, so tests drive it offline.
"""

from __future__ import annotations

import asyncio
import os

from pyrogram import Client, filters, idle
from pyrogram.handlers import MessageHandler
from pyrogram.types import Message

from statekit import open_storage
from statekit.adapters.client_timeouts import setup_timeouts
from statekit.adapters.pyrogram import PyrogramFSM
from statekit.fsm import FSMContext, State, StatesGroup, TimeoutEvent, Timeouts

EXPIRED = "Your form expired. Send /start to begin again."


class Form(StatesGroup):
    name = State()
    age = State()


async def start(client: Client, message: Message, state: FSMContext) -> None:
    await state.clear()
    await state.set_state(Form.name)
    await message.reply_text("Hi! What is your name?")


async def got_name(client: Client, message: Message, state: FSMContext) -> None:
    await state.update_data(name=message.text)
    await state.set_state(Form.age)
    await message.reply_text(f"Nice to meet you, {message.text}. How old are you?")


async def got_age(client: Client, message: Message, state: FSMContext) -> None:
    data = await state.get_data()
    await state.clear()
    await message.reply_text(f"Saved: {data['name']}, {message.text}.")


async def expired(event: TimeoutEvent, client: Client) -> None:
    # clear() applies only if the user has not written since: a late answer wins the race
    if await event.clear():
        await client.send_message(event.key.chat_id, EXPIRED)


def register(app: Client, fsm: PyrogramFSM, *, after: float = 300.0) -> Timeouts:
    """Add the form's handlers to ``app``; return its ``Timeouts`` (start it with the client)."""
    text = filters.text & ~filters.command(["start"])
    app.add_handler(MessageHandler(fsm.inject(start), filters.command("start")))
    app.add_handler(MessageHandler(fsm.inject(got_name), text & fsm.in_state(Form.name)))
    app.add_handler(
        MessageHandler(fsm.inject(got_age), text & filters.regex(r"^\d{1,3}$") & fsm.in_state(Form.age))
    )
    timeouts = Timeouts(fsm.storage)
    for state in (Form.name, Form.age):
        timeouts.on(state, after=after)(expired)
    setup_timeouts(timeouts, app)
    return timeouts


async def main() -> None:
    try:
        api_id, api_hash, token = (os.environ[n] for n in ("API_ID", "API_HASH", "BOT_TOKEN"))
    except KeyError as missing:
        raise SystemExit(f"set {missing.args[0]} (API_ID, API_HASH and BOT_TOKEN are needed)") from None
    storage = open_storage(os.environ.get("STATEKIT_URL", "sqlite:///timeout-bot.db"))
    app = Client("timeout-bot", api_id=int(api_id), api_hash=api_hash, bot_token=token, in_memory=True)
    timeouts = register(app, PyrogramFSM(storage), after=float(os.environ.get("FORM_TIMEOUT", "300")))
    async with storage, app, timeouts:
        await idle()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    asyncio.run(main())
