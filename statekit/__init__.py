"""statekit: the state a Telegram bot lives on — FSM state, MTProto sessions and rate-limit
counters — over memory, one SQLite file or Redis, behind one async storage contract.

Every public name is imported on first use (PEP 562), so ``import statekit`` is quick (the
``statekit`` command catches Ctrl-C from its first moment) and a backend's driver is imported only
with it: ``PostgresStorage`` needs the ``postgres`` extra (asyncpg).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from statekit.storage.postgres import PostgresStorage
    from statekit.storage.redis import RedisStorage
    from statekit.storage.sqlite import SQLiteStorage
    from statekit.storage.url import open_storage, register_storage

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
    "BaseStorage": "statekit.storage.base",
    "Codec": "statekit.codec",
    "CorruptValueError": "statekit.errors",
    "DEFAULT": "statekit.storage.base",
    "FSMConflictError": "statekit.fsm",
    "FSMContext": "statekit.fsm",
    "MAX_TTL_SECONDS": "statekit.storage.base",
    "MemoryStorage": "statekit.storage.memory",
    "MsgpackCodec": "statekit.codec",
    "Peer": "statekit.session",
    "PostgresStorage": "statekit.storage.postgres",
    "RateLimitedError": "statekit.errors",
    "RedisStorage": "statekit.storage.redis",
    "SQLiteStorage": "statekit.storage.sqlite",
    "SerializationError": "statekit.errors",
    "SessionData": "statekit.session",
    "SessionFormatError": "statekit.errors",
    "SessionLockedError": "statekit.errors",
    "SessionSnapshot": "statekit.session",
    "SessionStore": "statekit.session",
    "State": "statekit.fsm",
    "StatekitError": "statekit.errors",
    "StatesGroup": "statekit.fsm",
    "StorageClosedError": "statekit.errors",
    "StorageKey": "statekit.fsm",
    "StorageUnavailableError": "statekit.errors",
    "TTL": "statekit.storage.base",
    "UpdateState": "statekit.session",
    "WrongTypeError": "statekit.errors",
    "open_storage": "statekit.storage.url",
    "register_storage": "statekit.storage.url",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
