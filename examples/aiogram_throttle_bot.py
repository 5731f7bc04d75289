"""A throttled echo bot on aiogram 3: rate limits and Telegram's flood waits kept in statekit.

Run it::

    BOT_TOKEN=123:abc python examples/aiogram_throttle_bot.py
    BOT_TOKEN=123:abc STATEKIT_URL=redis://127.0.0.1:6379/0 python examples/aiogram_throttle_bot.py

``STATEKIT_URL`` is any statekit URL (default ``sqlite:///throttle-bot.db``); point several bot
processes at one Redis and they share every limit. Each user may send 5 messages per second and
60 per minute (sliding window); a user who floods is told once per window and the rest is
dropped. ``/report`` has a limit of its own (1 per 30 s, GCRA), set by a handler flag. Replies go
through a ``RetryAfterGate``, so a flood wait Telegram asks for is honoured by every process.
``build_dispatcher(storage)`` builds the whole bot, so tests drive it offline with
``Dispatcher.feed_update``.
"""

from __future__ import annotations

import asyncio
import logging
import os

from aiogram import Bot, Dispatcher, F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from middleware import Rate, RateLimitMiddleware, RetryAfterGate
from middleware.aiogram import AiogramRateLimit
from statekit import BaseStorage, open_storage

PER_USER = (Rate(5, 1), Rate(60, 60))
REPORT = Rate(1, 30)


def make_router(gate: RetryAfterGate) -> Router:
    """The bot's handlers (a new router each call: a router joins one dispatcher only)."""
    router = Router(name="throttle")

    @router.message(Command("report"), flags={"rate_limit": REPORT, "rate_limit_strategy": "gcra"})
    async def report(message: Message) -> None:
        await gate.call(lambda: message.answer("Report queued."), chat_id=message.chat.id)

    @router.message(Command("menu"))
    async def menu(message: Message) -> None:
        keyboard = InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="Ping", callback_data="ping")]]
        )
        await gate.call(
            lambda: message.answer("Press the button.", reply_markup=keyboard),
            chat_id=message.chat.id,
        )

    @router.callback_query(F.data == "ping")
    async def ping(query: CallbackQuery) -> None:
        await query.answer("pong")

    @router.message(F.text)
    async def echo(message: Message) -> None:
        text = message.text or ""
        await gate.call(lambda: message.answer(text), chat_id=message.chat.id)

    return router


def build_dispatcher(storage: BaseStorage) -> Dispatcher:
    """The whole bot over ``storage``: limits on every message and callback query, per user."""
    limits = RateLimitMiddleware(storage, *PER_USER, strategy="sliding", name="throttle-bot")
    gate = RetryAfterGate(storage, prefix="throttle-bot:outbound", max_wait=60)
    router = make_router(gate)
    # per-handler limits (the "rate_limit" flag) need the matched handler: an inner middleware
    router.message.middleware(AiogramRateLimit(limits, only_flagged=True))
    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    # the per-user limits, before any filter runs
    dispatcher.message.outer_middleware(AiogramRateLimit(limits))
    dispatcher.callback_query.outer_middleware(AiogramRateLimit(limits))
    return dispatcher


async def main() -> None:
    logging.basicConfig(level=logging.INFO)
    token = os.environ.get("BOT_TOKEN")
    if not token:
        raise SystemExit("set BOT_TOKEN to your bot's token (from @BotFather)")
    url = os.environ.get("STATEKIT_URL", "sqlite:///throttle-bot.db")
    async with open_storage(url) as storage:
        bot = Bot(token)
        try:
            await build_dispatcher(storage).start_polling(bot)
        finally:
            await bot.session.close()


if __name__ == "__main__":
    asyncio.run(main())
