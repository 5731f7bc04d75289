"""RetryAfterGate: Telegram's retry_after honoured exactly, per chat and globally, shared by every
process using the storage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pyrogram.errors import FloodWait
from telethon.errors import FloodWaitError

from middleware import RetryAfterGate, retry_after_of
from statekit import BaseStorage, MemoryStorage, RateLimitedError
from statekit.testing import FakeClock


class Sleeper:
    """A fake ``sleep`` that moves a fake clock and records every wait."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def fake() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gate_storage(fake: FakeClock) -> MemoryStorage:
    return MemoryStorage(clock=fake)


def make_gate(storage: BaseStorage, fake: FakeClock, **options: Any) -> tuple[RetryAfterGate, Sleeper]:
    sleeper = Sleeper(fake)
    return RetryAfterGate(storage, clock=fake, sleep=sleeper, **options), sleeper


def test_flood_errors_of_every_framework_are_recognised() -> None:
    from aiogram.exceptions import TelegramRetryAfter
    from aiogram.methods import SendMessage

    assert retry_after_of(TelegramRetryAfter(SendMessage(chat_id=1, text="x"), "flood", 7)) == 7.0
    assert retry_after_of(FloodWait(value=3)) == 3.0
    assert retry_after_of(FloodWaitError(None, capture=4)) == 4.0
    assert retry_after_of(RateLimitedError("slow down", retry_after=1.5)) == 1.5
    assert retry_after_of(ConnectionError("nope")) is None


async def test_call_waits_exactly_what_telegram_asked_then_retries(
    gate_storage: MemoryStorage, fake: FakeClock
) -> None:
    gate, sleeper = make_gate(gate_storage, fake)
    outcomes: list[Exception | str] = [FloodWait(value=3), FloodWaitError(None, capture=2), "sent"]
    calls: list[float] = []

    async def send() -> str:
        calls.append(fake())
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    start = fake()
    assert await gate.call(send, chat_id=42) == "sent"
    assert sleeper.slept == pytest.approx([3.0, 2.0], abs=0.002)
    assert [round(t - start, 3) for t in calls] == pytest.approx([0, 3, 5], abs=0.002)


async def test_waits_are_per_chat_unless_global(gate_storage: MemoryStorage, fake: FakeClock) -> None:
    gate, sleeper = make_gate(gate_storage, fake)
    await gate.block(10, chat_id=1)
    assert await gate.blocked_for(1) == pytest.approx(10, abs=0.002)
    assert await gate.blocked_for(2) == 0.0
    assert await gate.wait(2) == 0.0 and sleeper.slept == []
    await gate.block(4)  # global: every chat waits
    assert await gate.blocked_for(2) == pytest.approx(4, abs=0.002)
    assert await gate.blocked_for(1) == pytest.approx(10, abs=0.002)  # the longer wait wins
    assert await gate.wait(2) == pytest.approx(4, abs=0.002)
    await gate.block(2, chat_id=1)  # a shorter wait never shortens a longer one
    assert await gate.blocked_for(1) == pytest.approx(6, abs=0.002)

    async def refused() -> None:
        raise FloodWait(value=5)

    with pytest.raises(FloodWait):
        await gate.call(refused, chat_id=3, scope="global", retries=0)
    assert await gate.blocked_for(99) == pytest.approx(5, abs=0.002)


async def test_max_wait_raises_instead_of_sleeping(gate_storage: MemoryStorage, fake: FakeClock) -> None:
    gate, sleeper = make_gate(gate_storage, fake, max_wait=30)
    await gate.block(120, chat_id=7)
    with pytest.raises(RateLimitedError, match="chat 7") as caught:
        await gate.wait(7)
    assert caught.value.retry_after == pytest.approx(120, abs=0.002)
    assert sleeper.slept == []
    with pytest.raises(ValueError, match="max_wait"):
        RetryAfterGate(gate_storage, max_wait=-1)


async def test_other_errors_are_not_retried(gate_storage: MemoryStorage, fake: FakeClock) -> None:
    gate, _ = make_gate(gate_storage, fake)
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("network")

    with pytest.raises(ConnectionError):
        await gate.call(broken, chat_id=1)
    assert calls == 1


async def test_a_wait_recorded_by_one_process_holds_back_another(
    make_storage: Callable[..., BaseStorage],
    backend: str,
    clock: Any,
    limiter_clock: Callable[[], float],
) -> None:
    # two storages of one backend stand for two processes sharing it (in-process backends:
    # one storage, two gates)
    first = make_storage()
    shared = backend in ("memory", "sqlite-memory")
    one = RetryAfterGate(first, clock=limiter_clock)
    two = RetryAfterGate(first if shared else make_storage(), clock=limiter_clock)
    assert await two.blocked_for(5) == 0.0  # (connections are up before timing anything)
    before = limiter_clock()
    await one.block(0.5, chat_id=5)
    left = await two.blocked_for(5)
    took = limiter_clock() - before
    assert 0.5 - took - 0.002 <= left <= 0.5  # exactly what is left of the wait
    assert await two.blocked_for(6) == 0.0
    await clock.advance(0.51)
    assert await two.blocked_for(5) == 0.0
