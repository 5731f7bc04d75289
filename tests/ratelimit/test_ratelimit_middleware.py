"""RateLimitMiddleware around any ``async def handler(event)``: scopes, per-handler limits,
on_limited, the once-per-window reply, missing keys and storage failures."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from middleware import Rate, RateLimitMiddleware, RateLimitResult
from statekit import MemoryStorage, RedisStorage
from statekit.testing import FakeClock, RedisServer


@dataclass
class User:
    id: int


@dataclass
class Chat:
    id: int


@dataclass
class Event:
    from_user: User | None
    chat: Chat | None = None
    text: str = "hi"
    replies: list[str] = field(default_factory=list)


def event(user: int | None, chat: int | None = None) -> Event:
    return Event(None if user is None else User(user), None if chat is None else Chat(chat))


class Recorder:
    def __init__(self) -> None:
        self.handled: list[Any] = []
        self.limited: list[tuple[Any, RateLimitResult]] = []
        self.told: list[tuple[Any, str]] = []

    async def handler(self, ev: Any, *extra: Any, **kw: Any) -> str:
        self.handled.append(ev)
        return "done"

    async def on_limited(self, ev: Any, result: RateLimitResult) -> None:
        self.limited.append((ev, result))

    async def reply(self, ev: Any, text: str) -> None:
        self.told.append((ev, text))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def storage(clock: FakeClock) -> MemoryStorage:
    return MemoryStorage(clock=clock)


@pytest.mark.parametrize("strategy", ["fixed", "sliding", "gcra"])
async def test_sixth_update_in_a_second_is_dropped_and_the_user_told_once(
    storage: MemoryStorage, clock: FakeClock, strategy: Any
) -> None:
    rec = Recorder()
    mw = RateLimitMiddleware(
        storage, Rate(5, 1), strategy=strategy, on_limited=rec.on_limited, reply=rec.reply,
        clock=clock,
    )
    guarded = mw.wrap(rec.handler)
    alice = [event(1) for _ in range(8)]
    results = [await guarded(ev, "extra", flag=True) for ev in alice]
    assert results == ["done"] * 5 + [None] * 3
    assert rec.handled == alice[:5]
    assert [ev for ev, _ in rec.limited] == alice[5:]
    assert all(not r.allowed and r.retry_after > 0 for _, r in rec.limited)
    # another user is not affected
    bob = event(2)
    assert await guarded(bob) == "done"
    # told once, with how long to wait, although three updates were dropped
    assert len(rec.told) == 1
    assert rec.told[0][0] is alice[5]
    wait = rec.limited[0][1].retry_after
    assert rec.told[0][1] == (
        f"Too many requests: please wait {math.ceil(wait)} s before trying again."
    )
    # once the wait is over the user gets through again
    clock.advance(max(r.retry_after for _, r in rec.limited) + 0.01)
    assert await guarded(event(1)) == "done"
    assert len(rec.handled) == 7


async def test_scopes_chat_global_and_key_function(storage: MemoryStorage, clock: FakeClock) -> None:
    rec = Recorder()
    by_chat = RateLimitMiddleware(storage, Rate(2, 60), scope="chat", name="c", clock=clock)
    handler = by_chat.wrap(rec.handler)
    outcomes = [await handler(event(u, chat=10)) for u in (1, 2, 3)]
    assert outcomes == ["done", "done", None]  # three users, one chat
    assert await handler(event(1, chat=11)) == "done"

    everyone = RateLimitMiddleware(storage, Rate(3, 60), scope="global", name="g", clock=clock)
    handler = everyone.wrap(rec.handler)
    assert [await handler(event(u)) for u in range(5)] == ["done"] * 3 + [None] * 2

    by_text = RateLimitMiddleware(
        storage, Rate(1, 60), key=lambda ev: ev.text, name="k", clock=clock
    )
    handler = by_text.wrap(rec.handler)
    assert await handler(Event(User(1), text="a")) == "done"
    assert await handler(Event(User(2), text="a")) is None
    assert await handler(Event(User(1), text="b")) == "done"


async def test_per_handler_limits_have_their_own_counters(
    storage: MemoryStorage, clock: FakeClock
) -> None:
    rec = Recorder()
    mw = RateLimitMiddleware(storage, Rate(100, 60), clock=clock)

    @mw.limit(Rate(1, 10))
    async def expensive(ev: Any) -> str:
        rec.handled.append(ev)
        return "expensive"

    cheap = mw.limit(Rate(3, 10), strategy="gcra")(rec.handler)
    assert expensive.__name__ == "expensive"
    assert [await expensive(event(1)) for _ in range(2)] == ["expensive", None]
    assert [await cheap(event(1)) for _ in range(4)] == ["done"] * 3 + [None]
    assert await expensive(event(2)) == "expensive"
    # stacked: the middleware's own rate applies on top of the handler's
    both = mw.wrap(mw.limit(Rate(2, 10), name="both")(rec.handler))
    assert [await both(event(3)) for _ in range(3)] == ["done", "done", None]


async def test_updates_without_a_key_pass_or_drop_as_configured(
    storage: MemoryStorage, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    passing = RateLimitMiddleware(storage, Rate(1, 60), on_limited=rec.on_limited)
    handler = passing.wrap(rec.handler)
    channel_post = event(None, chat=-100)
    assert [await handler(channel_post) for _ in range(3)] == ["done"] * 3
    dropping = RateLimitMiddleware(
        storage, Rate(1, 60), missing_key="drop", on_limited=rec.on_limited, name="d"
    )
    assert await dropping.wrap(rec.handler)(channel_post) is None
    assert rec.limited == []  # nothing was limited: there was no one to limit

    def broken_key(ev: Any) -> str:
        raise KeyError("no such field")

    careful = RateLimitMiddleware(storage, Rate(1, 60), key=broken_key, name="b")
    with caplog.at_level(logging.ERROR, logger="middleware.ratelimit"):
        assert await careful.wrap(rec.handler)(event(1)) == "done"
    assert "key function" in caplog.text

    too_long = RateLimitMiddleware(storage, Rate(1, 60), key=lambda ev: "x" * 5000, name="l")
    with caplog.at_level(logging.ERROR, logger="middleware.ratelimit"):
        assert await too_long.wrap(rec.handler)(event(1)) == "done"
    assert "refused" in caplog.text


async def test_callbacks_that_fail_never_reach_the_dispatcher(
    storage: MemoryStorage, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def on_limited(ev: Any, result: RateLimitResult) -> None:  # a plain function works too
        calls.append("limited")
        raise RuntimeError("callback bug")

    async def reply(ev: Any, text: str) -> None:
        calls.append("reply")
        raise ConnectionError("telegram down")

    mw = RateLimitMiddleware(storage, Rate(1, 60), on_limited=on_limited, reply=reply)
    handler = mw.wrap(Recorder().handler)
    with caplog.at_level(logging.ERROR, logger="middleware.ratelimit"):
        assert [await handler(event(1)) for _ in range(3)] == ["done", None, None]
    assert calls == ["limited", "reply", "limited"]
    assert "callback bug" in caplog.text and "telegram down" in caplog.text


def test_bad_arguments_are_refused_clearly(storage: MemoryStorage) -> None:
    with pytest.raises(ValueError, match="scope"):
        RateLimitMiddleware(storage, Rate(1, 1), scope="planet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one Rate"):
        RateLimitMiddleware(storage)
    with pytest.raises(ValueError, match="missing_key"):
        RateLimitMiddleware(storage, Rate(1, 1), missing_key="ignore")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be a function"):
        RateLimitMiddleware(storage, Rate(1, 1), key="user")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one Rate"):
        RateLimitMiddleware(storage, Rate(1, 1)).limit()


@pytest.mark.redis
async def test_storage_down_fail_open_runs_handlers_and_warns(
    fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    storage = RedisStorage(fresh_redis_server.url, namespace="down")
    await storage.start()
    try:
        mw = RateLimitMiddleware(storage, Rate(2, 60), on_limited=rec.on_limited, reply=rec.reply)
        handler = mw.wrap(rec.handler)
        assert await handler(event(1)) == "done"
        fresh_redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="middleware.ratelimit"):
            assert [await handler(event(1)) for _ in range(4)] == ["done"] * 4
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # throttled: one warning, not one per update
        assert "fail_open=True" in warnings[0].getMessage()
        assert "StorageUnavailableError" in warnings[0].getMessage()
        assert rec.limited == [] and rec.told == []
        fresh_redis_server.start()
        # back to counting once the server is back (the earlier hit was lost with the server)
        assert [await handler(event(1)) for _ in range(3)] == ["done", "done", None]
    finally:
        await storage.stop()


@pytest.mark.redis
async def test_storage_down_fail_closed_drops_and_calls_on_limited(
    fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    storage = RedisStorage(fresh_redis_server.url, namespace="down")
    await storage.start()
    try:
        mw = RateLimitMiddleware(
            storage, Rate(2, 60), fail_open=False, on_limited=rec.on_limited, reply=rec.reply,
            strategy="gcra",
        )
        handler = mw.wrap(rec.handler)
        fresh_redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="middleware.ratelimit"):
            assert [await handler(event(1)) for _ in range(3)] == [None] * 3
        assert rec.handled == []
        assert len(rec.limited) == 3
        assert all(r.unavailable and not r.allowed for _, r in rec.limited)
        assert rec.told == []  # no "wait N s" for an outage
        assert "fail_open=False" in caplog.text
    finally:
        await storage.stop()


async def test_the_user_is_told_once_across_processes(storage: MemoryStorage, clock: FakeClock) -> None:
    # two middlewares on one storage stand for two bot processes behind one webhook balancer
    rec = Recorder()
    one, two = (
        RateLimitMiddleware(storage, Rate(2, 10), reply=rec.reply, clock=clock) for _ in range(2)
    )
    handlers = [one.wrap(rec.handler), two.wrap(rec.handler)]
    outcomes = [await handlers[i % 2](event(1)) for i in range(6)]
    assert outcomes == ["done", "done", None, None, None, None]
    assert len(rec.told) == 1
