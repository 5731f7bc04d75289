"""Outbound side: honour Telegram's ``retry_after`` exactly, per chat and globally, across
processes.

When Telegram answers a call with "retry after N seconds" (aiogram ``TelegramRetryAfter``,
Pyrogram-family ``FloodWait``/``SlowmodeWait``, Telethon ``FloodWaitError``/``SlowModeWaitError``),
``RetryAfterGate`` records the moment calls may resume in the storage, so that every process
sharing it waits until exactly that moment before its next call for that chat (or for any chat,
for a global wait) instead of hitting the same wall.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from statekit import BaseStorage, RateLimitedError

__all__ = ["RetryAfterGate", "retry_after_of"]

T = TypeVar("T")

_MAX_CAS_TRIES = 50


def _flood_types() -> list[tuple[type[BaseException], str]]:
    """(exception type, attribute holding the seconds) for every framework imported so far.

    A framework that was never imported cannot have raised, so none is imported here.
    """
    found: list[tuple[type[BaseException], str]] = [(RateLimitedError, "retry_after")]
    if "aiogram" in sys.modules:
        from aiogram.exceptions import TelegramRetryAfter

        found.append((TelegramRetryAfter, "retry_after"))
    if "pyrogram" in sys.modules:
        from pyrogram.errors import FloodPremiumWait, FloodWait, SlowmodeWait

        found += [(FloodWait, "value"), (SlowmodeWait, "value"), (FloodPremiumWait, "value")]
    if "telethon" in sys.modules:
        from telethon.errors import FloodWaitError, SlowModeWaitError

        found += [(FloodWaitError, "seconds"), (SlowModeWaitError, "seconds")]
    return found


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds a flood-wait error asks to wait, or ``None`` if ``exc`` is not one."""
    for kind, attr in _flood_types():
        if isinstance(exc, kind):
            value = getattr(exc, attr, None)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return float(value)
    return None


class RetryAfterGate:
    """Shared "do not call before" moments, per chat and global, kept in ``storage``.

    ``clock`` returns wall-clock seconds shared by the processes; ``sleep`` waits (replaceable in
    tests). ``max_wait``: a wait longer than this raises ``RateLimitedError`` (with
    ``retry_after``) instead of sleeping; ``None`` waits as long as Telegram asks.
    """

    def __init__(
        self,
        storage: BaseStorage,
        *,
        prefix: str = "ratelimit:outbound",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        max_wait: float | None = None,
    ) -> None:
        if max_wait is not None and not max_wait >= 0:
            raise ValueError(f"max_wait must be >= 0 seconds or None, got {max_wait!r}")
        self.storage = storage
        self.prefix = prefix
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep

    def _key(self, chat_id: int | str | None) -> str:
        return f"{self.prefix}:global" if chat_id is None else f"{self.prefix}:chat:{chat_id}"

    async def blocked_for(self, chat_id: int | str | None = None) -> float:
        """Seconds before a call for ``chat_id`` (``None``: any call) may go; 0.0 if it may now.
        One round trip: the chat's wait and the global wait are read together."""
        keys = [self._key(None)] if chat_id is None else [self._key(None), self._key(chat_id)]
        found = await self.storage.get_many(keys)
        until = max(
            (v for v in found.values() if isinstance(v, float | int) and not isinstance(v, bool)),
            default=0.0,
        )
        return max(0.0, float(until) - self._clock())

    async def wait(self, chat_id: int | str | None = None) -> float:
        """Sleep until calls for ``chat_id`` may go; return the seconds slept.

        Raises ``RateLimitedError`` when the wait would exceed ``max_wait``.
        """
        slept = 0.0
        while True:
            left = await self.blocked_for(chat_id)
            if left <= 0:
                return slept
            if self.max_wait is not None and slept + left > self.max_wait:
                where = "any chat" if chat_id is None else f"chat {chat_id}"
                raise RateLimitedError(
                    f"Telegram asked to wait {left:.3f} s more for {where}; max_wait is "
                    f"{self.max_wait} s",
                    retry_after=left,
                )
            await self._sleep(left)
            slept += left

    async def block(self, retry_after: float, chat_id: int | str | None = None) -> None:
        """Record that calls for ``chat_id`` (``None``: every call) must wait ``retry_after``
        seconds from now. A later moment already recorded is kept."""
        if not retry_after > 0:
            return
        until = self._clock() + retry_after
        key = self._key(chat_id)
        for _ in range(_MAX_CAS_TRIES):
            current = await self.storage.get_state(key)
            if isinstance(current, float | int) and not isinstance(current, bool) and current >= until:
                return
            ttl = max(0.001, until - self._clock())
            if await self.storage.compare_and_set(key, until, expected=current, ttl=ttl):
                return
        raise RateLimitedError(f"could not record a wait on {key!r}", retry_after=retry_after)

    async def call(
        self,
        func: Callable[[], Awaitable[T]],
        *,
        chat_id: int | str | None = None,
        scope: Literal["chat", "global"] | None = None,
        retries: int = 3,
    ) -> T:
        """Await ``func()`` once every wait for ``chat_id`` is over; on a flood-wait error record
        the wait (for ``chat_id``, or for every call if ``scope="global"`` or no chat is given)
        and try again, up to ``retries`` times. Other errors, and the flood error after the last
        try (its wait still recorded for everyone), propagate."""
        if scope not in (None, "chat", "global"):
            raise ValueError(f"scope must be 'chat' or 'global', got {scope!r}")
        target = None if scope == "global" else chat_id
        attempt = 0
        while True:
            await self.wait(chat_id)
            try:
                return await func()
            except Exception as exc:
                seconds = retry_after_of(exc)
                if seconds is None:
                    raise
                await self.block(seconds, target)  # recorded even when giving up: others wait
                if attempt >= retries:
                    raise
                attempt += 1
