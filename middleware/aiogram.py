"""aiogram 3 mount of ``RateLimitMiddleware``: an outer or inner middleware (extra ``aiogram``).

::

    limits = RateLimitMiddleware(storage, Rate(5, 1))
    dp.message.outer_middleware(AiogramRateLimit(limits))        # every message, before filters
    dp.callback_query.middleware(AiogramRateLimit(limits))        # matched handlers only

The user and chat come from aiogram's context (``event_from_user``, ``event_chat``). As an inner
middleware it also reads the handler flag ``rate_limit``: a ``Rate`` or a list of them gives
that handler counters of its own (``@router.message(flags={"rate_limit": Rate(1, 10)})``), and
``False`` exempts it; the flag ``rate_limit_strategy`` picks that handler's strategy; with ``only_flagged=True`` handlers without the flag are not limited (so an
inner mount for per-handler limits can sit behind an outer mount of the same middleware without
counting updates twice). A dropped update returns ``None`` to aiogram. Unless the middleware has a
``reply`` function, the user is told once per window with ``message.answer`` (messages) or
``callback_query.answer`` (callback queries).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.types import CallbackQuery, Message, TelegramObject, Update

from middleware.handler import RateLimitMiddleware
from middleware.rate import Rate

__all__ = ["AiogramRateLimit", "answer", "install"]

_Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


async def answer(event: object, text: str) -> None:
    """Tell the user behind an aiogram event ``text``: a message in the chat for a
    ``Message``, a toast for a ``CallbackQuery``; nothing for other events."""
    if isinstance(event, Update):
        event = event.event
    if isinstance(event, Message):
        await event.answer(text)
    elif isinstance(event, CallbackQuery):
        await event.answer(text)


class AiogramRateLimit(BaseMiddleware):
    """aiogram middleware guarding updates with ``limits`` (a ``RateLimitMiddleware``).

    ``notify``: tell limited users with ``answer`` when ``limits`` has no ``reply`` of its own.
    ``flag``: the handler flag read for per-handler rates (inner middlewares only);
    ``only_flagged``: limit only handlers that carry the flag.
    """

    def __init__(
        self,
        limits: RateLimitMiddleware,
        *,
        notify: bool = True,
        flag: str = "rate_limit",
        only_flagged: bool = False,
    ) -> None:
        if not isinstance(limits, RateLimitMiddleware):
            raise TypeError(
                f"AiogramRateLimit takes a RateLimitMiddleware, not {type(limits).__name__}"
            )
        self.limits = limits
        self.notify = notify
        self.flag = flag
        self.only_flagged = only_flagged

    async def __call__(
        self, handler: _Handler, event: TelegramObject, data: dict[str, Any]
    ) -> Any:
        limiter = None
        if "handler" in data:  # inner middleware: the matched handler is known
            wanted = get_flag(data, self.flag)
            if wanted is False or (wanted is None and self.only_flagged):
                return await handler(event, data)
            if wanted is not None:
                rates = _rates(wanted, self.flag)
                strategy = get_flag(data, f"{self.flag}_strategy")
                callback = data["handler"].callback
                name = f"{callback.__module__}.{callback.__qualname__}"
                limiter = self.limits.limiter_for(name, rates, strategy)
        user = data.get("event_from_user")
        chat = data.get("event_chat")
        allowed = await self.limits.allow(
            event,
            user_id=getattr(user, "id", None),
            chat_id=getattr(chat, "id", None),
            limiter=limiter,
            reply=answer if self.notify else None,
        )
        if allowed:
            return await handler(event, data)
        return None


def _rates(wanted: object, flag: str) -> tuple[Rate, ...]:
    if isinstance(wanted, Rate):
        return (wanted,)
    if isinstance(wanted, Iterable) and not isinstance(wanted, str | bytes):
        rates = tuple(wanted)
        if rates and all(isinstance(r, Rate) for r in rates):
            return rates
    raise TypeError(f"handler flag {flag!r} must be a Rate, a list of Rate or False, got {wanted!r}")


def install(
    router: Any,
    limits: RateLimitMiddleware,
    *,
    observers: Iterable[str] = ("message", "callback_query"),
    outer: bool = True,
    notify: bool = True,
) -> AiogramRateLimit:
    """Register one ``AiogramRateLimit`` on ``router``'s (a ``Router`` or ``Dispatcher``)
    ``observers``, as outer (before filters) or inner (matched handlers, flags honoured)
    middleware; return it. Raises ``ValueError`` for an observer the router does not have."""
    mount = AiogramRateLimit(limits, notify=notify)
    for name in observers:
        observer = router.observers.get(name)
        if observer is None:
            raise ValueError(
                f"{type(router).__name__} has no observer {name!r}; "
                f"choose among {', '.join(sorted(router.observers))}"
            )
        if outer:
            observer.outer_middleware(mount)
        else:
            observer.middleware(mount)
    return mount
