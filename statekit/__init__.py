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
from statekit.fsm import FSMConflictError, FSMContext, State, StatesGroup, StorageKey
from statekit.session import Peer, SessionData, SessionSnapshot, SessionStore, UpdateState
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
    "FSMConflictError",
    "FSMContext",
    "MemoryStorage",
    "MsgpackCodec",
    "Peer",
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
]
