"""Rate limits in a real aiogram Dispatcher fed real Update objects offline (SPEC 7)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from types import ModuleType
from typing import Any

import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.exceptions import TelegramRetryAfter
from aiogram.types import Chat, Message, Update
from offline_bots import Feeder, OfflineSession, load_example

from middleware import Rate, RateLimitMiddleware, RateLimitResult, RetryAfterGate
from middleware.aiogram import AiogramRateLimit, install
from statekit import BaseStorage, MemoryStorage, RedisStorage
from statekit.testing import RedisServer

TOKEN = "424242:TEST-offline-token"
NOTICE = "Too many requests"


@pytest.fixture(scope="module")
def throttle_bot() -> ModuleType:
    return load_example("aiogram_throttle_bot")


async def test_sixth_message_in_a_second_is_dropped_and_the_user_told_once(
    storage: BaseStorage, throttle_bot: ModuleType
) -> None:
    feeder = Feeder(throttle_bot.build_dispatcher(storage))
    for i in range(8):
        await feeder.message(f"m{i}", user_id=1)
    await feeder.message("hello", user_id=2)
    alice = feeder.session.texts(1)
    assert alice[:5] == ["m0", "m1", "m2", "m3", "m4"]  # the handler saw five
    assert len(alice) == 6 and alice[5].startswith(NOTICE)  # and the user was told once
    assert feeder.session.texts(2) == ["hello"]  # another user is not affected


async def test_handler_flag_gives_a_handler_its_own_limit(
    storage: BaseStorage, throttle_bot: ModuleType
) -> None:
    feeder = Feeder(throttle_bot.build_dispatcher(storage))
    await feeder.message("/report", user_id=1)
    await feeder.message("/report", user_id=1)
    await feeder.message("still here", user_id=1)
    texts = feeder.session.texts(1)
    assert texts[0] == "Report queued."
    assert texts[1].startswith(NOTICE) and "30 s" in texts[1]
    assert texts[2:] == ["still here"]  # only /report is limited that tightly


async def test_callback_queries_are_limited_with_a_toast(
    storage: BaseStorage, throttle_bot: ModuleType
) -> None:
    feeder = Feeder(throttle_bot.build_dispatcher(storage))
    for _ in range(7):
        await feeder.press("ping", user_id=3)
    toasts = feeder.session.toasts()
    assert toasts[:5] == ["pong"] * 5
    assert len(toasts) == 6 and (toasts[5] or "").startswith(NOTICE)


async def test_outbound_flood_wait_is_honoured(throttle_bot: ModuleType) -> None:
    feeder = Feeder(throttle_bot.build_dispatcher(MemoryStorage()))
    feeder.session.flood = [1]  # Telegram answers the next sendMessage with "retry after 1"
    started = datetime.now(timezone.utc)
    await feeder.message("after the wait", user_id=4)
    waited = (datetime.now(timezone.utc) - started).total_seconds()
    assert feeder.session.texts(4) == ["after the wait", "after the wait"]  # refused, then sent
    assert waited >= 0.95


def build(limits: RateLimitMiddleware, handled: list[str]) -> Dispatcher:
    router = Router()

    @router.message(F.text)
    async def record(message: Message) -> None:
        handled.append(message.text or "")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    install(dispatcher, limits, observers=("message",))
    return dispatcher


@pytest.mark.redis
async def test_redis_stopped_fail_open_runs_handlers_and_warns(
    fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    storage = RedisStorage(fresh_redis_server.url, namespace="aiogram-down")
    handled: list[str] = []
    limited: list[RateLimitResult] = []
    limits = RateLimitMiddleware(storage, Rate(5, 1), on_limited=lambda e, r: limited.append(r))
    feeder = Feeder(build(limits, handled))
    try:
        await feeder.message("up", user_id=1)
        fresh_redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="middleware.ratelimit"):
            for i in range(3):
                await feeder.message(f"down{i}", user_id=1)
        assert handled == ["up", "down0", "down1", "down2"]
        assert limited == []
        assert any(
            r.levelno == logging.WARNING and "StorageUnavailableError" in r.getMessage()
            for r in caplog.records
        )
    finally:
        await storage.stop()


@pytest.mark.redis
async def test_redis_stopped_fail_closed_drops_with_on_limited(
    fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    storage = RedisStorage(fresh_redis_server.url, namespace="aiogram-down")
    handled: list[str] = []
    limited: list[RateLimitResult] = []

    async def on_limited(event: Any, result: RateLimitResult) -> None:
        assert isinstance(event, Message)
        limited.append(result)

    limits = RateLimitMiddleware(storage, Rate(5, 1), fail_open=False, on_limited=on_limited)
    feeder = Feeder(build(limits, handled))
    try:
        await feeder.message("up", user_id=1)
        fresh_redis_server.stop()
        for i in range(3):
            await feeder.message(f"down{i}", user_id=1)  # the dispatcher does not crash
        assert handled == ["up"]
        assert len(limited) == 3 and all(r.unavailable for r in limited)
        assert feeder.session.texts(1) == []  # no "wait N s" notice for an outage
    finally:
        await storage.stop()


async def test_updates_without_a_user_pass_through() -> None:
    handled: list[str] = []
    limits = RateLimitMiddleware(MemoryStorage(), Rate(1, 60))
    dispatcher = build(limits, handled)
    feeder = Feeder(dispatcher)
    for n in range(3):  # a channel post has no from_user
        update = Update(
            update_id=100 + n,
            message=Message(
                message_id=100 + n,
                date=datetime.now(timezone.utc),
                chat=Chat(id=-1001, type="channel"),
                text=f"post{n}",
            ),
        )
        await dispatcher.feed_update(feeder.bot, update)
    assert handled == ["post0", "post1", "post2"]


def test_install_names_unknown_observers() -> None:
    limits = RateLimitMiddleware(MemoryStorage(), Rate(1, 60))
    with pytest.raises(ValueError, match="no observer 'mesage'"):
        install(Dispatcher(), limits, observers=("mesage",))
    with pytest.raises(TypeError, match="RateLimitMiddleware"):
        AiogramRateLimit(Rate(1, 60))  # type: ignore[arg-type]


async def test_gate_records_the_wait_of_a_real_429() -> None:
    # aiogram's own TelegramRetryAfter, raised from a real "429 retry after 1" response: the
    # wait is recorded for every gate on the storage (other processes: test_ratelimit_outbound)
    storage = MemoryStorage()
    first, second = RetryAfterGate(storage), RetryAfterGate(storage)
    session = OfflineSession()
    bot = Bot(TOKEN, session=session)
    session.flood = [1]
    with pytest.raises(TelegramRetryAfter):
        await first.call(lambda: bot.send_message(5, "x"), chat_id=5, retries=0)
    assert 0.5 < await second.blocked_for(5) <= 1.0
    assert await second.blocked_for(6) == 0.0  # another chat is free
