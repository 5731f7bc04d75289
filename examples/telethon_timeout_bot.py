"""A form bot on Telethon whose unfinished forms expire: "your form expired, /start to begin again".

Run it::

    API_ID=12345 API_HASH=0123abcd BOT_TOKEN=123:abc python examples/telethon_timeout_bot.py

``STATEKIT_URL`` is any statekit URL (default ``sqlite:///telethon-timeout-bot.db``);
``FORM_TIMEOUT`` the seconds a user may stay silent inside the form (default 300). Telethon has no
FSM of its own: each handler opens the conversation's statekit ``FSMContext`` by its
``StorageKey``. The deadline is stored with the conversation, so a restart does not lose it.
``register(client, storage, bot_id=..., after=...)`` adds the handlers and returns the
``Timeouts`` to start with the client, so tests drive it offline.
"""

from __future__ import annotations

import asyncio
import os

from telethon import TelegramClient, events

from statekit import BaseStorage, open_storage
from statekit.adapters.client_timeouts import setup_timeouts
from statekit.fsm import FSMContext, State, StatesGroup, StorageKey, TimeoutEvent, Timeouts

EXPIRED = "Your form expired. Send /start to begin again."


class Form(StatesGroup):
    name = State()
    age = State()


def conversation(storage: BaseStorage, bot_id: int, event: events.NewMessage.Event) -> FSMContext:
    """The statekit conversation of the message's sender in its chat."""
    return FSMContext(storage, StorageKey(bot_id, event.chat_id, event.sender_id))


async def expired(event: TimeoutEvent, client: TelegramClient) -> None:
    # clear() applies only if the user has not written since: a late answer wins the race
    if await event.clear():
        await client.send_message(event.key.chat_id, EXPIRED)


def register(
    client: TelegramClient, storage: BaseStorage, *, bot_id: int, after: float = 300.0
) -> Timeouts:
    """Add the form's handlers to ``client``; return its ``Timeouts`` (start it with the client)."""

    @client.on(events.NewMessage(pattern=r"^/start$"))  # type: ignore[misc]
    async def start(event: events.NewMessage.Event) -> None:
        state = conversation(storage, bot_id, event)
        await state.clear()
        await state.set_state(Form.name)
        await event.reply("Hi! What is your name?")

    @client.on(events.NewMessage(pattern=r"^(?!/)"))  # type: ignore[misc]
    async def answer(event: events.NewMessage.Event) -> None:
        state = conversation(storage, bot_id, event)
        current = await state.get_state()
        if current == Form.name.state:
            await state.update_data(name=event.raw_text)
            await state.set_state(Form.age)
            await event.reply(f"Nice to meet you, {event.raw_text}. How old are you?")
        elif current == Form.age.state and event.raw_text.isdigit():
            data = await state.get_data()
            await state.clear()
            await event.reply(f"Saved: {data['name']}, {event.raw_text}.")

    timeouts = Timeouts(storage)
    for state in (Form.name, Form.age):
        timeouts.on(state, after=after)(expired)
    setup_timeouts(timeouts, client)
    return timeouts


async def main() -> None:
    try:
        api_id, api_hash, token = (os.environ[n] for n in ("API_ID", "API_HASH", "BOT_TOKEN"))
    except KeyError as missing:
        raise SystemExit(f"set {missing.args[0]} (API_ID, API_HASH and BOT_TOKEN are needed)") from None
    storage = open_storage(os.environ.get("STATEKIT_URL", "sqlite:///telethon-timeout-bot.db"))
    client = TelegramClient("telethon-timeout-bot", int(api_id), api_hash)
    bot_id = int(token.split(":", 1)[0])
    timeouts = register(
        client, storage, bot_id=bot_id, after=float(os.environ.get("FORM_TIMEOUT", "300"))
    )
    async with storage:
        await client.start(bot_token=token)  # type: ignore[misc]
        async with timeouts:
            await client.run_until_disconnected()  # type: ignore[misc]


if __name__ == "__main__":
    asyncio.run(main())
