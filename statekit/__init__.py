"""statekit: the state a Telegram bot lives on — FSM state, MTProto sessions and rate-limit
counters — over memory, one SQLite file or Redis, behind one async storage contract.

``RedisStorage``, ``SQLiteStorage`` and ``PostgresStorage`` are imported on first use, with their
drivers (``PostgresStorage`` needs the ``postgres`` extra: asyncpg).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from statekit.codec import Codec, MsgpackCodec
from statekit.errors import (
    CorruptValueError,
    RateLimitedError,
    SerializationError,
    SessionFormatError,
    SessionLockedError,
    StatekitError,
    StorageClosedError,
    StorageUnavailableError,
    WrongTypeError,
)
from statekit.fsm import FSMConflictError, FSMContext, State, StatesGroup, StorageKey
from statekit.session import Peer, SessionData, SessionSnapshot, SessionStore, UpdateState
from statekit.storage.base import DEFAULT, MAX_TTL_SECONDS, TTL, BaseStorage
from statekit.storage.memory import MemoryStorage
from statekit.storage.url import open_storage, register_storage

if TYPE_CHECKING:
    from statekit.storage.postgres import PostgresStorage
    from statekit.storage.redis import RedisStorage
    from statekit.storage.sqlite import SQLiteStorage

__version__ = "0.1.0"

__all__ = [
    "BaseStorage",
    "Codec",
    "CorruptValueError",
    "DEFAULT",
    "FSMConflictError",
    "FSMContext",
    "MAX_TTL_SECONDS",
    "MemoryStorage",
    "MsgpackCodec",
    "Peer",
    "PostgresStorage",
    "RateLimitedError",
    "RedisStorage",
    "SQLiteStorage",
    "SerializationError",
    "SessionData",
    "SessionFormatError",
    "SessionLockedError",
    "SessionSnapshot",
    "SessionStore",
    "State",
    "StatekitError",
    "StatesGroup",
    "StorageClosedError",
    "StorageKey",
    "StorageUnavailableError",
    "TTL",
    "UpdateState",
    "WrongTypeError",
    "open_storage",
    "register_storage",
]

_LAZY = {
    "PostgresStorage": "statekit.storage.postgres",
    "RedisStorage": "statekit.storage.redis",
    "SQLiteStorage": "statekit.storage.sqlite",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
