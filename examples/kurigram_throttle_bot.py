"""A throttled echo bot on kurigram (the Pyrogram family): rate limits and Telegram's flood waits
kept in statekit.

Run it::

    API_ID=12345 API_HASH=0123abcd BOT_TOKEN=123:abc python examples/kurigram_throttle_bot.py

``STATEKIT_URL`` is any statekit URL (default ``sqlite:///throttle-bot.db``); point several bot
processes at one Redis and they share every limit. Each user may send 5 messages per second and
60 per minute (a group-level gate that runs before every handler); a user who floods is told once
per window and the rest is dropped. ``/report`` has a limit of its own (1 per 30 s, GCRA).
Replies go through a ``RetryAfterGate``, so a ``FloodWait`` is honoured by every process.
``register(app, storage)`` adds everything to a client, so tests feed it updates offline through
the client's dispatcher.
"""

from __future__ import annotations

import asyncio
import os

from pyrogram import Client, filters, idle
from pyrogram.handlers import CallbackQueryHandler, MessageHandler
from pyrogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from middleware import Rate, RateLimitMiddleware, RetryAfterGate
from middleware.pyrogram import PyrogramRateLimit
from statekit import BaseStorage, open_storage

PER_USER = (Rate(5, 1), Rate(60, 60))
REPORT = Rate(1, 30)


def register(app: Client, storage: BaseStorage) -> PyrogramRateLimit:
    """Add the bot's gate and handlers to ``app``; return the gate."""
    limits = RateLimitMiddleware(storage, *PER_USER, strategy="sliding", name="throttle-bot")
    throttle = PyrogramRateLimit(limits)
    gate = RetryAfterGate(storage, prefix="throttle-bot:outbound", max_wait=60)
    throttle.install(app, group=-1)  # every message and callback query, before the handlers

    @throttle.limit(REPORT, strategy="gcra")
    async def report(client: Client, message: Message) -> None:
        await gate.call(lambda: message.reply_text("Report queued."), chat_id=message.chat.id)

    async def menu(client: Client, message: Message) -> None:
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Ping", callback_data="ping")]])
        await gate.call(
            lambda: message.reply_text("Press the button.", reply_markup=keyboard),
            chat_id=message.chat.id,
        )

    async def ping(client: Client, query: CallbackQuery) -> None:
        await query.answer("pong")

    async def echo(client: Client, message: Message) -> None:
        text = message.text or ""
        await gate.call(lambda: message.reply_text(text), chat_id=message.chat.id)

    app.add_handler(MessageHandler(report, filters.command("report")))
    app.add_handler(MessageHandler(menu, filters.command("menu")))
    app.add_handler(CallbackQueryHandler(ping, filters.regex("^ping$")))
    app.add_handler(MessageHandler(echo, filters.text))
    return throttle


async def main() -> None:
    try:
        api_id, api_hash, token = (os.environ[n] for n in ("API_ID", "API_HASH", "BOT_TOKEN"))
    except KeyError as missing:
        raise SystemExit(
            f"set {missing.args[0]} (API_ID, API_HASH and BOT_TOKEN are needed)"
        ) from None
    storage = open_storage(os.environ.get("STATEKIT_URL", "sqlite:///throttle-bot.db"))
    app = Client(
        "throttle-bot", api_id=int(api_id), api_hash=api_hash, bot_token=token, in_memory=True
    )
    register(app, storage)
    async with storage, app:
        await idle()


if __name__ == "__main__":
    asyncio.run(main())
