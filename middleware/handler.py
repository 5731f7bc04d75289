"""``RateLimitMiddleware``: guards bot handlers with a ``RateLimiter``, for any framework.

It turns an update into a key (scope ``user``, ``chat``, ``global`` or a key function), counts a
hit, and either lets the handler run or drops the update: ``on_limited(event, result)`` is called
and, when a ``reply`` function is given, the user is told at most once per window (a marker key
in the storage, shared by every process). Storage failures never reach the dispatcher: with
``fail_open=True`` (default) the handler runs and a warning is logged, with ``fail_open=False``
the update is dropped and ``on_limited`` is called with ``result.unavailable`` set.

Updates the key cannot be built for (no user on a channel post, a key function returning
``None``) pass through unthrottled by default (``missing_key="pass"``) or are dropped without a
call to ``on_limited`` (``missing_key="drop"``); they never raise inside the dispatcher.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, ParamSpec, TypeVar

from middleware.limiter import RateLimiter, StrategyName
from middleware.rate import Rate, RateLimitResult
from statekit import BaseStorage, StatekitError

__all__ = [
    "DEFAULT_MESSAGE",
    "KeyFunction",
    "OnLimited",
    "RateLimitMiddleware",
    "Reply",
    "Scope",
    "chat_id_of",
    "user_id_of",
]

log = logging.getLogger("middleware.ratelimit")

P = ParamSpec("P")
R = TypeVar("R")

Scope = Literal["user", "chat", "global"]
OnLimited = Callable[[Any, RateLimitResult], "Awaitable[object] | object"]
Reply = Callable[[Any, str], Awaitable[object]]
KeyFunction = Callable[[Any], "str | int | None"]

DEFAULT_MESSAGE = "Too many requests: please wait {retry_after} s before trying again."
_WARN_EVERY = 10.0  # seconds between two warnings about an unavailable storage


def _id_of(obj: object) -> int | None:
    value = getattr(obj, "id", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def user_id_of(event: object) -> int | None:
    """The id of the user behind ``event``: ``event.from_user.id`` (aiogram, Pyrogram family),
    else ``event.sender_id`` (Telethon), else ``event.user_id``; ``None`` if there is none."""
    found = _id_of(getattr(event, "from_user", None))
    if found is not None:
        return found
    for attr in ("sender_id", "user_id"):
        value = getattr(event, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def chat_id_of(event: object) -> int | None:
    """The id of the chat of ``event``: ``event.chat.id``, else ``event.message.chat.id``
    (callback queries), else ``event.chat_id``; ``None`` if there is none."""
    found = _id_of(getattr(event, "chat", None))
    if found is not None:
        return found
    found = _id_of(getattr(getattr(event, "message", None), "chat", None))
    if found is not None:
        return found
    value = getattr(event, "chat_id", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class RateLimitMiddleware:
    """Rate limits for bot handlers over any statekit storage.

    ``rates``/``strategy``/``prefix``/``clock`` configure the ``RateLimiter`` (``self.limiter``).
    ``scope``: ``"user"``, ``"chat"`` or ``"global"``; ``key``: a function ``event -> str | int |
    None`` that replaces the scope. ``on_limited(event, result)`` (plain or async) is called for
    every dropped update. ``reply(event, text)`` (async), when given, tells the user ``message``
    (formatted with ``retry_after`` in whole seconds) at most once per window. ``fail_open``:
    whether updates pass while the storage is unavailable. ``name`` separates the counters of
    several middlewares on one storage.

    Raises ``ValueError``/``TypeError`` for bad rates, scope or strategy.
    """

    def __init__(
        self,
        storage: BaseStorage,
        *rates: Rate,
        scope: Scope = "user",
        key: KeyFunction | None = None,
        on_limited: OnLimited | None = None,
        fail_open: bool = True,
        strategy: StrategyName = "fixed",
        reply: Reply | None = None,
        message: str = DEFAULT_MESSAGE,
        missing_key: Literal["pass", "drop"] = "pass",
        prefix: str = "ratelimit",
        name: str = "mw",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if scope not in ("user", "chat", "global"):
            raise ValueError(f"scope must be 'user', 'chat' or 'global', got {scope!r}")
        if key is not None and not callable(key):
            raise TypeError(f"key must be a function of the event, not {type(key).__name__}")
        if missing_key not in ("pass", "drop"):
            raise ValueError(f"missing_key must be 'pass' or 'drop', got {missing_key!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        self.storage = storage
        self.scope: Scope = scope
        self.key = key
        self.on_limited = on_limited
        self.fail_open = bool(fail_open)
        self.strategy: StrategyName = strategy
        self.reply = reply
        self.message = message
        self.missing_key = missing_key
        self.prefix = f"{prefix}:{name}"
        self._clock = clock
        self.limiter = RateLimiter(
            storage, *rates, strategy=strategy, prefix=self.prefix, clock=clock
        )
        self._limiters: dict[tuple[str, tuple[Rate, ...], str], RateLimiter] = {}
        self._last_warning = -math.inf
        self._unwarned = 0

    def __repr__(self) -> str:
        rates = ", ".join(map(repr, self.limiter.rates))
        return f"RateLimitMiddleware({rates}, scope={self.scope!r}, strategy={self.strategy!r})"

    # ------------------------------------------------------------------ keys

    def key_for(
        self, event: object, *, user_id: int | None = None, chat_id: int | None = None
    ) -> str | None:
        """The rate-limit key of ``event`` (ids given here win over ids found on the event);
        ``None`` when it cannot be built. A key function that raises is logged and counts as
        ``None``."""
        if self.key is not None:
            try:
                value = self.key(event)
            except Exception:
                log.exception("rate-limit key function %r failed on %r", self.key, type(event))
                return None
            return None if value is None or value == "" else f"key:{value}"
        if self.scope == "user":
            uid = user_id if user_id is not None else user_id_of(event)
            return None if uid is None else f"user:{uid}"
        if self.scope == "chat":
            cid = chat_id if chat_id is not None else chat_id_of(event)
            return None if cid is None else f"chat:{cid}"
        return "global"

    def limiter_for(
        self, name: str, rates: tuple[Rate, ...], strategy: StrategyName | None = None
    ) -> RateLimiter:
        """The limiter of one handler (its own counters under ``name``), made once and reused."""
        use: StrategyName = strategy or self.strategy
        cache_key = (name, rates, use)
        found = self._limiters.get(cache_key)
        if found is None:
            found = RateLimiter(
                self.storage, *rates, strategy=use, prefix=f"{self.prefix}:h:{name}",
                clock=self._clock,
            )
            self._limiters[cache_key] = found
        return found

    # ------------------------------------------------------------------ the check

    async def allow(
        self,
        event: object,
        *,
        user_id: int | None = None,
        chat_id: int | None = None,
        limiter: RateLimiter | None = None,
        reply: Reply | None = None,
    ) -> bool:
        """Count ``event`` and return True if its handler may run.

        On False the update was dropped and ``on_limited`` (and the once-per-window reply) has
        been dealt with. Never raises for storage failures, missing keys or callback errors.
        ``reply`` is used when the middleware has none of its own (framework mounts pass one).
        """
        key = self.key_for(event, user_id=user_id, chat_id=chat_id)
        if key is None:
            log.debug("no rate-limit key for %s: %s", type(event).__name__, self.missing_key)
            return self.missing_key == "pass"
        limiter = limiter or self.limiter
        try:
            result = await limiter.hit(key)
        except ValueError as exc:  # a key the storage refuses (e.g. too long): a missing key
            log.error("rate-limit key %.60r refused: %s; update %s", key, exc, self.missing_key)
            return self.missing_key == "pass"
        except StatekitError as exc:
            self._warn(exc)
            if self.fail_open:
                return True
            await self._limited(
                event, key, RateLimitResult(False, 0, 0.0, 0.0, True), None, limiter
            )
            return False
        if result.allowed:
            return True
        await self._limited(event, key, result, self.reply or reply, limiter)
        return False

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_warning < _WARN_EVERY:
            self._unwarned += 1
            return
        skipped, self._unwarned, self._last_warning = self._unwarned, 0, now
        log.warning(
            "rate limiting unavailable (%s: %s); updates are %s%s",
            type(exc).__name__,
            exc,
            "let through (fail_open=True)" if self.fail_open else "dropped (fail_open=False)",
            f"; {skipped} more failures since the last warning" if skipped else "",
        )

    async def _limited(
        self,
        event: object,
        key: str,
        result: RateLimitResult,
        reply: Reply | None,
        limiter: RateLimiter,
    ) -> None:
        if self.on_limited is not None:
            try:
                outcome = self.on_limited(event, result)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("on_limited callback %r failed", self.on_limited)
        if reply is None or result.unavailable:
            return
        try:
            if await self.first_notice(key, result, limiter):
                await reply(event, self.message.format(retry_after=math.ceil(result.retry_after)))
        except StatekitError as exc:  # storage trouble: one line, no traceback per update
            log.warning("could not tell a rate-limited user to wait: %s: %s", type(exc).__name__, exc)
        except Exception:
            log.exception("could not tell a rate-limited user to wait")

    async def first_notice(
        self, key: str, result: RateLimitResult, limiter: RateLimiter | None = None
    ) -> bool:
        """True the first time ``key`` is refused by ``limiter`` (default: the middleware's) in
        this window (until ``result.retry_after`` has passed), False after that; shared across
        processes through the storage."""
        ttl = max(result.retry_after, 0.001)
        marker = f"{(limiter or self.limiter).prefix}:notified:{key}"
        return await self.storage.compare_and_set(marker, 1, expected=None, ttl=ttl)

    # ------------------------------------------------------------------ wrapping handlers

    def wrap(
        self, handler: Callable[P, Awaitable[R]]
    ) -> Callable[P, Coroutine[Any, Any, R | None]]:
        """Return ``handler`` guarded by this middleware's rates: ``async def (event, ...)``
        that runs the handler, or returns ``None`` when the update is dropped."""
        return self._guard(handler, None)

    __call__ = wrap

    def limit(
        self, *rates: Rate, strategy: StrategyName | None = None, name: str | None = None
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R | None]]]:
        """Decorator: guard one handler with its own ``rates`` (counters of its own, named
        ``name`` or after the handler), in the middleware's scope."""
        if not rates:
            raise ValueError("limit() needs at least one Rate")

        def decorate(
            handler: Callable[P, Awaitable[R]],
        ) -> Callable[P, Coroutine[Any, Any, R | None]]:
            label = name or f"{handler.__module__}.{handler.__qualname__}"
            return self._guard(handler, self.limiter_for(label, tuple(rates), strategy))

        return decorate

    def _guard(
        self, handler: Callable[P, Awaitable[R]], limiter: RateLimiter | None
    ) -> Callable[P, Coroutine[Any, Any, R | None]]:
        if not callable(handler):
            raise TypeError(f"can only wrap a handler function, not {type(handler).__name__}")

        @functools.wraps(handler)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R | None:
            if not args:
                raise TypeError(f"{handler!r} guarded by a rate limit needs the event first")
            if await self.allow(args[0], limiter=limiter):
                return await handler(*args, **kwargs)
            return None

        return guarded
