"""FSM helpers for Pyrogram-family clients (kurigram, irenogram, pyrofork, pyrogram 2.0).

``fsm = PyrogramFSM(storage)``; ``fsm.in_state(Form.name)`` is a filter that passes when the sender
of the update is in that state, and ``@fsm.inject`` hands a handler the ``FSMContext`` of the sender
as a third argument::

    @app.on_message(filters.private & fsm.in_state(Form.name))
    @fsm.inject
    async def got_name(client, message, state): ...

A user in a group chat has a conversation of their own (the key holds chat and user).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import pyrogram
from pyrogram.filters import Filter
from pyrogram.types import CallbackQuery, Message

from statekit.fsm.context import FSMContext
from statekit.fsm.key import DEFAULT_DESTINY, StorageKey
from statekit.fsm.state import State, StatesGroupMeta
from statekit.storage.base import BaseStorage

__all__ = ["FSMStateFilter", "PyrogramFSM"]

R = TypeVar("R")
Handler = Callable[[Any, Any, FSMContext], Awaitable[R]]


def _topic_thread(message: Message) -> int | None:
    """The forum topic of a message (None outside forum topics); field names vary by fork."""
    in_topic = getattr(message, "topic_message", None) or getattr(message, "is_topic_message", None)
    thread = getattr(message, "message_thread_id", None)
    return thread if in_topic and type(thread) is int else None


class PyrogramFSM:
    """The FSM of a Pyrogram-family bot over any statekit ``storage``.

    ``ttl`` / ``max_tries`` as in ``FSMContext``; ``bot_id`` defaults to ``client.me.id`` (set when
    the client starts); ``destiny`` separates independent FSMs of one bot.
    """

    def __init__(
        self,
        storage: BaseStorage,
        *,
        ttl: int | float | timedelta | None = None,
        max_tries: int = 50,
        bot_id: int | None = None,
        destiny: str = DEFAULT_DESTINY,
    ) -> None:
        if not isinstance(storage, BaseStorage):
            raise TypeError(f"PyrogramFSM needs a statekit storage, not {type(storage).__name__}")
        self.storage = storage
        self.bot_id = bot_id
        self.destiny = destiny
        self._ttl = ttl
        self._max_tries = max_tries
        FSMContext(storage, StorageKey(0, 0, 0, destiny=destiny), ttl=ttl, max_tries=max_tries)

    def key_for(self, client: pyrogram.Client, update: Any) -> StorageKey | None:
        """The conversation of ``update``'s sender (None if the update has no sender).

        A ``Message`` belongs to (its chat, its sender or sender chat, its forum topic); a
        ``CallbackQuery`` to (the chat of its message, or the user for inline messages, and the user).
        Raises ``ValueError`` when the bot id is unknown (client not started, no ``bot_id``).
        """
        chat_id: int | None
        thread_id: int | None = None
        business: str | None = None
        if isinstance(update, Message):
            sender = update.from_user or update.sender_chat
            user_id = None if sender is None else sender.id
            chat_id = None if update.chat is None else update.chat.id
            thread_id = _topic_thread(update)
            business = getattr(update, "business_connection_id", None)
        elif isinstance(update, CallbackQuery):
            user_id = update.from_user.id if update.from_user is not None else None
            message = update.message
            chat_id = message.chat.id if message is not None and message.chat is not None else None
            if message is not None:
                thread_id = _topic_thread(message)
                business = getattr(message, "business_connection_id", None)
        else:
            user = getattr(update, "from_user", None)
            chat = getattr(update, "chat", None)
            user_id = getattr(user, "id", None)
            chat_id = getattr(chat, "id", None)
        if user_id is None:
            return None
        return StorageKey(
            bot_id=self._bot_id(client),
            chat_id=user_id if chat_id is None else chat_id,
            user_id=user_id,
            thread_id=thread_id,
            business_connection_id=business or None,
            destiny=self.destiny,
        )

    def _bot_id(self, client: pyrogram.Client) -> int:
        if self.bot_id is not None:
            return self.bot_id
        me = getattr(client, "me", None)
        bot_id = getattr(me, "id", None)
        if type(bot_id) is not int:
            raise ValueError(
                "the bot id is unknown: start the client first (client.me) or pass "
                "PyrogramFSM(..., bot_id=...)"
            )
        return bot_id

    def context(self, client: pyrogram.Client, update: Any) -> FSMContext:
        """The ``FSMContext`` of ``update``'s sender; ``ValueError`` if the update has no sender."""
        key = self.key_for(client, update)
        if key is None:
            raise ValueError(f"a {type(update).__name__} without a sender has no conversation")
        return self.context_for(key)

    def context_for(self, key: StorageKey) -> FSMContext:
        """The ``FSMContext`` of ``key``."""
        return FSMContext(self.storage, key, ttl=self._ttl, max_tries=self._max_tries)

    def inject(self, handler: Handler[R]) -> Callable[[Any, Any], Awaitable[R]]:
        """Decorate ``async def handler(client, update, state)`` into a Pyrogram handler.

        ``state`` is the sender's ``FSMContext``; updates without a sender raise ``ValueError``.
        """

        @functools.wraps(handler)
        async def wrapper(client: Any, update: Any) -> R:
            return await handler(client, update, self.context(client, update))

        return wrapper

    def in_state(self, *states: State | str | type | None) -> FSMStateFilter:
        """A filter passing updates whose sender is in one of ``states``.

        Each is a ``State``, a state name, a ``StatesGroup`` (any of its states, nested included),
        ``None`` (no state) or ``ANY_STATE`` / ``"*"`` (anything, no state included).
        Raises ``TypeError`` / ``ValueError`` for anything else or when no state is given.
        """
        return FSMStateFilter(self, states)


class FSMStateFilter(Filter):
    """Pyrogram filter: the sender's conversation is in one of the given states."""

    def __init__(self, fsm: PyrogramFSM, states: tuple[object, ...]) -> None:
        if not states:
            raise ValueError("in_state() needs at least one state (None for 'no state')")
        names: set[str | None] = set()
        groups: list[StatesGroupMeta] = []
        self.any = False
        for state in states:
            if state is None:
                names.add(None)
            elif isinstance(state, StatesGroupMeta):
                groups.append(state)
            elif isinstance(state, State | str):
                name = state.name if isinstance(state, State) else state
                if not name:
                    raise ValueError("a state name must be a non-empty str")
                if name == "*":
                    self.any = True
                names.add(name)
            else:
                raise TypeError(
                    "in_state() takes State, str, StatesGroup or None, "
                    f"not {type(state).__name__}"
                )
        for group in groups:
            names.update(group.__state_names__)
        self.fsm = fsm
        self.names = frozenset(names)

    async def __call__(self, client: pyrogram.Client, update: Any) -> bool:
        if self.any:
            return True
        key = self.fsm.key_for(client, update)
        if key is None:
            return False
        return await self.fsm.context_for(key).get_state() in self.names

    def __repr__(self) -> str:
        shown = ", ".join(sorted(repr(n) for n in self.names))
        return f"FSMStateFilter({shown})"
