"""Rate limits in a real kurigram Client's dispatcher, fed raw updates offline (SPEC 7).

The client is never connected: raw updates go into its own dispatcher, which parses them into
real Message / CallbackQuery objects; what the handlers send goes through kurigram's real
``reply_text`` / ``send_message`` / ``answer`` down to ``Client.invoke``, which records the raw
request instead of sending it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import pytest
from offline_bots import load_example
from pyrogram import Client, filters, raw
from pyrogram.errors import FloodWait
from pyrogram.handlers import MessageHandler
from pyrogram.types import Message, User

from middleware import Rate, RateLimitMiddleware, RateLimitResult
from middleware.pyrogram import PyrogramRateLimit
from statekit import BaseStorage, MemoryStorage, RedisStorage
from statekit.testing import RedisServer

BOT_ID = 777001
NOTICE = "Too many requests"


def raw_user(user_id: int) -> Any:
    return raw.types.User(
        id=user_id, first_name=f"user{user_id}", access_hash=user_id, bot=user_id == BOT_ID
    )


class OfflineClient(Client):
    """A kurigram Client whose ``invoke`` records raw requests instead of sending them."""

    def __init__(self) -> None:
        super().__init__("offline-rl", api_id=1, api_hash="0" * 32, in_memory=True, workers=1)
        self.requests: list[Any] = []
        self.flood: list[int] = []  # FloodWait seconds for the next sendMessage calls
        self._ids = itertools.count(5000)

    async def invoke(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        self.requests.append(query)
        if isinstance(query, raw.functions.messages.SendMessage):
            if self.flood:
                raise FloodWait(value=self.flood.pop(0))
            return raw.types.UpdateShortSentMessage(
                id=next(self._ids), pts=1, pts_count=1, date=int(time.time()), out=True
            )
        if isinstance(query, raw.functions.messages.SetBotCallbackAnswer):
            return True
        if isinstance(query, raw.functions.messages.GetMessages):
            ids = [i.id for i in query.id]
            return raw.types.messages.Messages(
                messages=[
                    raw.types.Message(
                        id=i, peer_id=raw.types.PeerUser(user_id=self.last_user),
                        date=int(time.time()), message="Press the button.", out=True,
                        from_id=raw.types.PeerUser(user_id=BOT_ID), restriction_reason=[],
                    )
                    for i in ids
                ],
                chats=[],
                users=[raw_user(BOT_ID), raw_user(self.last_user)],
                topics=[],
            )
        if isinstance(query, raw.functions.users.GetUsers):
            return [raw_user(peer.user_id) for peer in query.id]
        raise AssertionError(f"offline client: unexpected request {query!r}")

    last_user = 0

    def texts(self, user_id: int) -> list[str]:
        return [
            q.message for q in self.requests
            if isinstance(q, raw.functions.messages.SendMessage) and getattr(q.peer, "user_id", None) == user_id
        ]

    def toasts(self) -> list[str]:
        return [
            q.message for q in self.requests if isinstance(q, raw.functions.messages.SetBotCallbackAnswer)
        ]


class Feeder:
    """Puts raw updates into the client's dispatcher (one worker: handled in order)."""

    def __init__(self, app: OfflineClient) -> None:
        self.app = app
        self._ids = itertools.count(1)

    async def start(self) -> None:
        self.app.me = User(id=BOT_ID, is_bot=True, first_name="Throttle", username="throttlebot")
        await self.app.storage.open()
        await self.app.fetch_peers([raw_user(BOT_ID)])
        self.app.is_connected = True  # resolve_peer() insists; nothing is ever sent
        await asyncio.sleep(0)  # add_handler() registers from a task
        await self.app.dispatcher.start()

    async def stop(self) -> None:
        await self.app.dispatcher.stop()
        self.app.is_connected = False
        await self.app.storage.close()

    async def message(self, text: str, *, user_id: int) -> None:
        n = next(self._ids)
        users = {user_id: raw_user(user_id)}
        await self.app.fetch_peers(list(users.values()))
        message = raw.types.Message(
            id=n, peer_id=raw.types.PeerUser(user_id=user_id), date=int(time.time()),
            message=text, from_id=raw.types.PeerUser(user_id=user_id), restriction_reason=[],
        )
        update = raw.types.UpdateNewMessage(message=message, pts=n, pts_count=1)
        await self.app.dispatcher.updates_queue.put((update, users, {}))

    async def press(self, data: bytes, *, user_id: int) -> None:
        n = next(self._ids)
        users = {user_id: raw_user(user_id)}
        await self.app.fetch_peers(list(users.values()))
        self.app.last_user = user_id
        update = raw.types.UpdateBotCallbackQuery(
            query_id=n, user_id=user_id, peer=raw.types.PeerUser(user_id=user_id),
            msg_id=1, chat_instance=1, data=data,
        )
        await self.app.dispatcher.updates_queue.put((update, users, {}))

    async def settle(self, user_id: int = 999) -> None:
        """Feed a message from a user nobody limits and wait for its echo: everything fed
        before it has been handled (one worker, in order)."""
        seen = len(self.app.texts(user_id))
        await self.message("sync", user_id=user_id)
        for _ in range(500):
            if len(self.app.texts(user_id)) > seen:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the dispatcher did not handle the updates")


@pytest.fixture
async def feeder() -> AsyncIterator[Feeder]:
    feeder = Feeder(OfflineClient())
    yield feeder
    await feeder.stop()


@pytest.fixture(scope="module")
def throttle_bot() -> ModuleType:
    return load_example("kurigram_throttle_bot")


async def test_sixth_message_in_a_second_is_dropped_and_the_user_told_once(
    storage: BaseStorage, feeder: Feeder, throttle_bot: ModuleType
) -> None:
    throttle_bot.register(feeder.app, storage)
    await feeder.start()
    for i in range(8):
        await feeder.message(f"m{i}", user_id=1)
    await feeder.message("hello", user_id=2)
    await feeder.settle()
    alice = feeder.app.texts(1)
    assert alice[:5] == ["m0", "m1", "m2", "m3", "m4"]  # the handler saw five
    assert len(alice) == 6 and alice[5].startswith(NOTICE)  # and the user was told once
    assert feeder.app.texts(2) == ["hello"]  # another user is not affected


async def test_per_handler_limit_and_callback_toasts(
    storage: BaseStorage, feeder: Feeder, throttle_bot: ModuleType
) -> None:
    throttle_bot.register(feeder.app, storage)
    await feeder.start()
    await feeder.message("/report", user_id=3)
    await feeder.message("/report", user_id=3)
    await feeder.message("fine", user_id=3)
    for _ in range(7):
        await feeder.press(b"ping", user_id=4)
    await feeder.settle()
    texts = feeder.app.texts(3)
    assert texts[0] == "Report queued."
    assert texts[1].startswith(NOTICE) and "30 s" in texts[1]
    assert texts[2:] == ["fine"]
    toasts = feeder.app.toasts()
    assert toasts[:5] == ["pong"] * 5
    assert len(toasts) == 6 and toasts[5].startswith(NOTICE)


async def test_flood_wait_on_a_reply_is_waited_out(feeder: Feeder, throttle_bot: ModuleType) -> None:
    throttle_bot.register(feeder.app, MemoryStorage())
    await feeder.start()
    feeder.app.flood = [1]
    started = time.monotonic()
    await feeder.message("late", user_id=5)
    await feeder.settle()
    assert feeder.app.texts(5) == ["late", "late"]  # refused with FLOOD_WAIT_1, then sent
    assert time.monotonic() - started >= 0.95


async def test_decorator_guards_one_handler(feeder: Feeder) -> None:
    limits = RateLimitMiddleware(MemoryStorage(), Rate(2, 60))
    throttle = PyrogramRateLimit(limits, notify=False)
    seen: list[str] = []

    @throttle
    async def counted(client: Client, message: Message) -> None:
        seen.append(message.text)
        await message.reply_text(message.text)

    feeder.app.add_handler(MessageHandler(counted, filters.text))
    await feeder.start()
    for i in range(4):
        await feeder.message(f"d{i}", user_id=6)
    await feeder.settle()
    assert seen == ["d0", "d1", "sync"]
    assert feeder.app.texts(6) == ["d0", "d1"]  # notify=False: dropped silently


def make_gated(feeder: Feeder, limits: RateLimitMiddleware, handled: list[str]) -> None:
    async def echo(client: Client, message: Message) -> None:
        handled.append(message.text)
        await message.reply_text(message.text)

    PyrogramRateLimit(limits).install(feeder.app)
    feeder.app.add_handler(MessageHandler(echo, filters.text))


@pytest.mark.redis
async def test_redis_stopped_fail_open_runs_handlers_and_warns(
    fresh_redis_server: RedisServer, feeder: Feeder, caplog: pytest.LogCaptureFixture
) -> None:
    storage = RedisStorage(fresh_redis_server.url, namespace="pyro-down")
    handled: list[str] = []
    make_gated(feeder, RateLimitMiddleware(storage, Rate(5, 1), scope="chat"), handled)
    await feeder.start()
    try:
        await feeder.message("up", user_id=7)
        await feeder.settle()
        fresh_redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="middleware.ratelimit"):
            for i in range(3):
                await feeder.message(f"down{i}", user_id=7)
            await feeder.settle()
        assert [t for t in handled if t != "sync"] == ["up", "down0", "down1", "down2"]
        assert "StorageUnavailableError" in caplog.text
    finally:
        await storage.stop()


@pytest.mark.redis
async def test_redis_stopped_fail_closed_drops_with_on_limited(
    fresh_redis_server: RedisServer, feeder: Feeder
) -> None:
    storage = RedisStorage(fresh_redis_server.url, namespace="pyro-down")
    handled: list[str] = []
    limited: list[RateLimitResult] = []
    limits = RateLimitMiddleware(
        storage, Rate(5, 1), fail_open=False, key=lambda m: m.from_user.id if m.from_user.id != 999 else None,
        on_limited=lambda event, result: limited.append(result),
    )
    make_gated(feeder, limits, handled)
    await feeder.start()
    try:
        await feeder.message("up", user_id=8)
        await feeder.settle()
        fresh_redis_server.stop()
        for i in range(3):
            await feeder.message(f"down{i}", user_id=8)
        await feeder.settle()  # the dispatcher is alive and still handles updates
        assert [t for t in handled if t != "sync"] == ["up"]
        assert len(limited) == 3 and all(r.unavailable for r in limited)
    finally:
        await storage.stop()


def test_bad_arguments() -> None:
    limits = RateLimitMiddleware(MemoryStorage(), Rate(1, 1))
    with pytest.raises(TypeError, match="RateLimitMiddleware"):
        PyrogramRateLimit(Rate(1, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown update kind 'messages'"):
        PyrogramRateLimit(limits).install(OfflineClient(), updates=("messages",))
    with pytest.raises(ValueError, match="at least one Rate"):
        PyrogramRateLimit(limits).limit()
