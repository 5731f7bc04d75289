"""Shared by the adapter tests: load an example bot, and drive aiogram offline.

``OfflineSession`` is an aiogram session that never touches the network (it records every API
call and can answer with a real Telegram "429 retry after"); ``Feeder`` builds real ``Update``
objects and feeds them to a ``Dispatcher`` through a ``Bot`` on that session.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import AsyncGenerator
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.base import BaseSession
from aiogram.methods import AnswerCallbackQuery, SendMessage, TelegramMethod
from aiogram.types import CallbackQuery, Chat, Message, Update, User

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOKEN = "424242:TEST-offline-token"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"statekit_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class OfflineSession(BaseSession):
    """An aiogram session that never touches the network: it records every API call and can
    answer the next ones with a real Telegram "429 retry after" response (``flood``)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[TelegramMethod[Any]] = []
        self.flood: list[int] = []  # retry_after of the next calls to refuse
        self._ids = itertools.count(1000)

    async def make_request(
        self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None
    ) -> Any:
        self.calls.append(method)
        if self.flood:
            body = (
                '{"ok": false, "error_code": 429, "description": "Too Many Requests: retry after '
                f'{self.flood[0]}", "parameters": {{"retry_after": {self.flood.pop(0)}}}}}'
            )
            self.check_response(bot, method, 429, body)  # raises aiogram's TelegramRetryAfter
        if isinstance(method, SendMessage):
            chat_type = "private" if int(method.chat_id) > 0 else "group"
            return Message(
                message_id=next(self._ids),
                date=datetime.now(timezone.utc),
                chat=Chat(id=int(method.chat_id), type=chat_type),
                text=method.text,
            )
        return True

    async def stream_content(self, *args: Any, **kwargs: Any) -> AsyncGenerator[bytes, None]:
        raise AssertionError("no downloads offline")
        yield b""  # pragma: no cover

    async def close(self) -> None:
        return None

    def texts(self, chat_id: int) -> list[str]:
        return [m.text for m in self.calls if isinstance(m, SendMessage) and int(m.chat_id) == chat_id]

    def toasts(self) -> list[str | None]:
        return [m.text for m in self.calls if isinstance(m, AnswerCallbackQuery)]


class Feeder:
    """Builds real Update objects and feeds them to a dispatcher."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.session = OfflineSession()
        self.bot = Bot(TOKEN, session=self.session)
        self._ids = itertools.count(1)

    def update(self, text: str, *, user_id: int, chat_id: int | None = None) -> Update:
        """A message update from ``user_id`` in ``chat_id`` (default: their private chat)."""
        chat_id = user_id if chat_id is None else chat_id
        n = next(self._ids)
        return Update(
            update_id=n,
            message=Message(
                message_id=n,
                date=datetime.now(timezone.utc),
                chat=Chat(id=chat_id, type="private" if chat_id > 0 else "supergroup"),
                from_user=User(id=user_id, is_bot=False, first_name=f"user{user_id}"),
                text=text,
            ),
        )

    async def message(self, text: str, *, user_id: int, chat_id: int | None = None) -> Any:
        """Feed one message; return what the dispatcher returned."""
        update = self.update(text, user_id=user_id, chat_id=chat_id)
        return await self.dispatcher.feed_update(self.bot, update)

    async def send(self, text: str, *, user_id: int, chat_id: int | None = None) -> str:
        """Feed one message; return the bot's reply (the last message sent to that chat)."""
        before = len(self.session.calls)
        await self.message(text, user_id=user_id, chat_id=chat_id)
        sent = [m for m in self.session.calls[before:] if isinstance(m, SendMessage)]
        assert sent, f"the bot did not answer {text!r}"
        return sent[-1].text

    async def press(self, data: str, *, user_id: int) -> Any:
        """Feed one callback-query (button press) update."""
        n = next(self._ids)
        update = Update(
            update_id=n,
            callback_query=CallbackQuery(
                id=str(n),
                from_user=User(id=user_id, is_bot=False, first_name=f"user{user_id}"),
                chat_instance="ci",
                data=data,
            ),
        )
        return await self.dispatcher.feed_update(self.bot, update)
