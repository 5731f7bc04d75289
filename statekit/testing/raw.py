"""Backdoor access to what a backend holds, for tests that plant bytes the codec never wrote."""

from __future__ import annotations

import sys

from statekit.storage.base import BaseStorage
from statekit.storage.memory import MemoryStorage
from statekit.storage.redis import RedisStorage
from statekit.storage.sqlite import _TABLE, SQLiteStorage

__all__ = ["plant_raw", "plant_raw_postgres"]


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
    elif _is_postgres(storage):
        await plant_raw_postgres(storage, key, raw)
    else:
        raise TypeError(f"plant_raw does not know how to reach into {type(storage).__name__}")


def _is_postgres(storage: BaseStorage) -> bool:
    module = sys.modules.get("statekit.storage.postgres")  # never imports asyncpg itself
    return module is not None and isinstance(storage, module.PostgresStorage)


async def plant_raw_postgres(storage: BaseStorage, key: str, raw: bytes) -> None:
    """``plant_raw`` for a ``PostgresStorage``: ``raw`` as the key's value bytes, no expiry."""
    from statekit.storage.postgres import PostgresStorage

    if not isinstance(storage, PostgresStorage):
        raise TypeError(f"plant_raw_postgres takes a PostgresStorage, not {type(storage).__name__}")
    await storage.start()
    await storage._run("execute", storage._sql.set, None, storage.namespace.encode(), key.encode(),
                       raw, None, None)
