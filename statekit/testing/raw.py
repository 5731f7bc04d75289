"""Backdoor access to what a backend holds, for tests that plant bytes the codec never wrote."""

from __future__ import annotations

from statekit.storage.base import BaseStorage
from statekit.storage.memory import MemoryStorage
from statekit.storage.redis import RedisStorage
from statekit.storage.sqlite import _TABLE, SQLiteStorage

__all__ = ["plant_raw"]


async def plant_raw(storage: BaseStorage, key: str, raw: bytes) -> None:
    """Store ``raw`` bytes under ``key`` directly in the backend, bypassing the codec."""
    await storage.start()
    if isinstance(storage, MemoryStorage):
        storage._data[key] = raw
        storage._expiry.pop(key, None)
    elif isinstance(storage, SQLiteStorage):

        def op(db: object) -> None:
            db.execute(  # type: ignore[attr-defined]
                f"INSERT OR REPLACE INTO {_TABLE} (namespace, key, value, expires_at) "
                "VALUES (?, ?, ?, NULL)",
                (storage.namespace, key, raw),
            )

        await storage._submit(op, True)
    elif isinstance(storage, RedisStorage):
        await storage.client.set(storage._prefix + key, raw)
    else:
        raise TypeError(f"plant_raw does not know how to reach into {type(storage).__name__}")
