"""``StorageKey``: which conversation a piece of FSM state belongs to, and its storage key.

A user in a group chat has a conversation of their own: the key always carries both the chat and
the user. ``StorageKey.storage_key`` renders ``fsm:{bot:chat:user:thread:business:destiny}``; the
whole identity sits inside one ``{...}`` Redis Cluster hash tag, so every key of one conversation
lands on the same cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from statekit.codec import INT64_MAX, INT64_MIN

__all__ = ["DEFAULT_DESTINY", "StorageKey"]

DEFAULT_DESTINY = "default"



def _escape(text: str) -> str:
    """Percent-escape the characters that structure a rendered key."""
    return (
        text.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")
    )


def _check_id(what: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if type(value) is not int:
        raise TypeError(f"StorageKey.{what} must be an int, not {type(value).__name__}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"StorageKey.{what} {value} is outside signed 64-bit")


@dataclass(frozen=True, init=False)
class StorageKey:
    """The identity of one conversation (the fields aiogram's ``StorageKey`` has).

    Raises ``TypeError`` for ids that are not ``int`` and ``ValueError`` for an empty
    ``business_connection_id`` or ``destiny``.
    """

    bot_id: int
    chat_id: int
    user_id: int
    thread_id: int | None = None
    business_connection_id: str | None = None
    destiny: str = DEFAULT_DESTINY
    _rendered: str = field(init=False, repr=False, compare=False, hash=False)

    def __init__(
        self,
        bot_id: int,
        chat_id: int,
        user_id: int,
        thread_id: int | None = None,
        business_connection_id: str | None = None,
        destiny: str = DEFAULT_DESTINY,
    ) -> None:
        if not (
            type(bot_id) is int
            and type(chat_id) is int
            and type(user_id) is int
            and (thread_id is None or type(thread_id) is int)
            and INT64_MIN <= bot_id <= INT64_MAX
            and INT64_MIN <= chat_id <= INT64_MAX
            and INT64_MIN <= user_id <= INT64_MAX
            and (thread_id is None or INT64_MIN <= thread_id <= INT64_MAX)
        ):
            _check_id("bot_id", bot_id)
            _check_id("chat_id", chat_id)
            _check_id("user_id", user_id)
            _check_id("thread_id", thread_id, optional=True)
        bcid = business_connection_id
        if bcid is not None and (type(bcid) is not str or not bcid):
            raise ValueError(
                f"StorageKey.business_connection_id must be a non-empty str or None, got {bcid!r}"
            )
        if type(destiny) is not str or not destiny:
            raise ValueError(f"StorageKey.destiny must be a non-empty str, got {destiny!r}")
        if thread_id is None and bcid is None and destiny == DEFAULT_DESTINY:
            rendered = f"fsm:{{{bot_id}:{chat_id}:{user_id}:::default}}"
        else:
            rendered = (
                f"fsm:{{{bot_id}:{chat_id}:{user_id}:{'' if thread_id is None else thread_id}:"
                f"{'' if bcid is None else _escape(bcid)}:"
                f"{destiny if destiny == DEFAULT_DESTINY else _escape(destiny)}}}"
            )
        # frozen: one write to the instance dict instead of object.__setattr__ per field
        self.__dict__.update(
            bot_id=bot_id,
            chat_id=chat_id,
            user_id=user_id,
            thread_id=thread_id,
            business_connection_id=bcid,
            destiny=destiny,
            _rendered=rendered,
        )

    @property
    def storage_key(self) -> str:
        """The key of this conversation's record in a statekit storage."""
        return self._rendered

    def __str__(self) -> str:
        return self._rendered
