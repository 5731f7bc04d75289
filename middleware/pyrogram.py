"""Pyrogram-family (kurigram, pyrofork, Pyrogram 2) mount of ``RateLimitMiddleware``
(extra ``pyrogram``).

::

    limits = RateLimitMiddleware(storage, Rate(5, 1))
    throttle = PyrogramRateLimit(limits)
    throttle.install(app)                      # group-level: every message and callback query
                                               # is checked before the handlers of later groups

    @app.on_message(filters.command("report"))
    @throttle.limit(Rate(1, 30))               # a handler's own limit
    async def report(client, message): ...

    @app.on_message(filters.private)
    @throttle                                  # the middleware's limits on one handler
    async def echo(client, message): ...

A dropped update stops there (the group-level handler raises ``StopPropagation``; a decorated
handler returns without running). The user is told once per window with ``message.reply_text``
or ``callback_query.answer`` unless the middleware has a ``reply`` of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import pyrogram
from pyrogram.handlers import (
    CallbackQueryHandler,
    EditedMessageHandler,
    InlineQueryHandler,
    MessageHandler,
)
from pyrogram.handlers.handler import Handler
from pyrogram.types import CallbackQuery, Message

from middleware.handler import RateLimitMiddleware
from middleware.limiter import RateLimiter, StrategyName
from middleware.rate import Rate

__all__ = ["PyrogramRateLimit", "answer"]

R = TypeVar("R")
_PyroHandler = Callable[..., Awaitable[R]]

_KINDS: dict[str, type[Handler]] = {
    "message": MessageHandler,
    "edited_message": EditedMessageHandler,
    "callback_query": CallbackQueryHandler,
    "inline_query": InlineQueryHandler,
}


async def answer(update: object, text: str) -> None:
    """Tell the user behind a Pyrogram update ``text``: a reply for a ``Message``, a toast for a
    ``CallbackQuery``; nothing for other updates."""
    if isinstance(update, Message):
        await update.reply_text(text)
    elif isinstance(update, CallbackQuery):
        await update.answer(text)


class PyrogramRateLimit:
    """Pyrogram-family glue for ``limits`` (a ``RateLimitMiddleware``).

    Use an instance as a decorator of ``async def handler(client, update)``, ``limit(*rates)``
    for a handler's own limits, or ``install(client)`` for a group-level gate. ``notify``: tell
    limited users with ``answer`` when ``limits`` has no ``reply`` of its own.
    """

    def __init__(self, limits: RateLimitMiddleware, *, notify: bool = True) -> None:
        if not isinstance(limits, RateLimitMiddleware):
            raise TypeError(
                f"PyrogramRateLimit takes a RateLimitMiddleware, not {type(limits).__name__}"
            )
        self.limits = limits
        self.notify = notify

    async def allow(self, update: object, limiter: RateLimiter | None = None) -> bool:
        """Count ``update``; True if its handler may run (see ``RateLimitMiddleware.allow``)."""
        return await self.limits.allow(
            update, limiter=limiter, reply=answer if self.notify else None
        )

    def __call__(self, handler: _PyroHandler[R]) -> Callable[..., Coroutine[Any, Any, R | None]]:
        """Guard ``async def handler(client, update, ...)`` with the middleware's rates."""
        return self._guard(handler, None)

    def limit(
        self, *rates: Rate, strategy: StrategyName | None = None, name: str | None = None
    ) -> Callable[[_PyroHandler[R]], Callable[..., Coroutine[Any, Any, R | None]]]:
        """Decorator: guard one handler with its own ``rates`` (counters named ``name`` or after
        the handler)."""
        if not rates:
            raise ValueError("limit() needs at least one Rate")

        def decorate(handler: _PyroHandler[R]) -> Callable[..., Coroutine[Any, Any, R | None]]:
            label = name or f"{handler.__module__}.{handler.__qualname__}"
            return self._guard(handler, self.limits.limiter_for(label, tuple(rates), strategy))

        return decorate

    def _guard(
        self, handler: _PyroHandler[R], limiter: RateLimiter | None
    ) -> Callable[..., Coroutine[Any, Any, R | None]]:
        if not callable(handler):
            raise TypeError(f"can only wrap a handler function, not {type(handler).__name__}")

        @functools.wraps(handler)
        async def guarded(client: Any, update: Any, *args: Any, **kwargs: Any) -> R | None:
            if await self.allow(update, limiter):
                return await handler(client, update, *args, **kwargs)
            return None

        return guarded

    async def _gate(self, client: Any, update: Any) -> None:
        if not await self.allow(update):
            raise pyrogram.StopPropagation

    def install(
        self,
        client: pyrogram.Client,
        *,
        group: int = -1000,
        updates: Iterable[str] = ("message", "callback_query"),
    ) -> list[Handler]:
        """Add a gate for ``updates`` (``message``, ``edited_message``, ``callback_query``,
        ``inline_query``) in ``group``, which must run before the groups of the handlers it
        guards (lower numbers run first). Return the handlers added (for
        ``client.remove_handler``). Raises ``ValueError`` for an unknown update kind."""
        added: list[Handler] = []
        for kind in updates:
            handler_type = _KINDS.get(kind)
            if handler_type is None:
                raise ValueError(
                    f"unknown update kind {kind!r}; choose among {', '.join(sorted(_KINDS))}"
                )
            handler = handler_type(self._gate)
            client.add_handler(handler, group)
            added.append(handler)
        return added
