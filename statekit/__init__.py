"""statekit: the state a Telegram bot lives on — FSM state, MTProto sessions and rate-limit
counters — over memory, one SQLite file or Redis, behind one async storage contract."""

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
from statekit.storage.base import DEFAULT, TTL, BaseStorage
from statekit.storage.memory import MemoryStorage
from statekit.storage.redis import RedisStorage
from statekit.storage.sqlite import SQLiteStorage
from statekit.storage.url import open_storage

__version__ = "0.1.0"

__all__ = [
    "BaseStorage",
    "Codec",
    "CorruptValueError",
    "DEFAULT",
    "MemoryStorage",
    "MsgpackCodec",
    "RateLimitedError",
    "RedisStorage",
    "SQLiteStorage",
    "SerializationError",
    "SessionFormatError",
    "SessionLockedError",
    "StatekitError",
    "StorageClosedError",
    "StorageUnavailableError",
    "TTL",
    "WrongTypeError",
    "open_storage",
]
