"""Storage backends and the contract they share."""

from statekit.storage.base import DEFAULT, TTL, BaseStorage
from statekit.storage.memory import MemoryStorage
from statekit.storage.redis import RedisStorage
from statekit.storage.sqlite import SQLiteStorage
from statekit.storage.url import open_storage

__all__ = ["DEFAULT", "TTL", "BaseStorage", "MemoryStorage", "RedisStorage", "SQLiteStorage", "open_storage"]
