"""The ``RawAccess`` hook of the conformance suite for statekit's own backends: plants bytes the
codec never wrote and reads what is physically stored (memory, SQLite, Redis)."""

from __future__ import annotations

import sys

from statekit.storage.base import BaseStorage
from statekit.storage.memory import MemoryStorage
from statekit.storage.redis import RedisStorage
from statekit.storage.sqlite import SQLiteStorage

__all__ = ["InTreeRawAccess", "plant_raw"]


class InTreeRawAccess:
    """A ``statekit.testing.conformance.RawAccess`` for ``MemoryStorage``, ``SQLiteStorage``,
    ``RedisStorage`` and ``PostgresStorage``; ``TypeError`` for any other backend."""

    async def plant(self, storage: BaseStorage, key: str, raw: bytes) -> None:
        """Store ``raw`` bytes under ``key`` directly in the backend, bypassing the codec."""
        await storage.start()
        if isinstance(storage, MemoryStorage):
            storage._plant(key, raw)
        elif isinstance(storage, SQLiteStorage | RedisStorage) or _is_postgres(storage):
            await storage._plant(key, raw)  # type: ignore[attr-defined]
        else:
            raise TypeError(f"InTreeRawAccess cannot reach into {type(storage).__name__}")

    async def read(self, storage: BaseStorage, key: str) -> bytes | int | None:
        """What the backend physically holds under ``key`` (``None``: nothing)."""
        await storage.start()
        if isinstance(storage, MemoryStorage):
            return storage._data.get(key)
        if isinstance(storage, SQLiteStorage | RedisStorage) or _is_postgres(storage):
            return await storage._raw(key)  # type: ignore[attr-defined, no-any-return]
        raise TypeError(f"InTreeRawAccess cannot reach into {type(storage).__name__}")


async def plant_raw(storage: BaseStorage, key: str, raw: bytes) -> None:
    """Store ``raw`` bytes under ``key`` directly in an in-tree backend, bypassing the codec."""
    await InTreeRawAccess().plant(storage, key, raw)


def _is_postgres(storage: BaseStorage) -> bool:
    module = sys.modules.get("statekit.storage.postgres")  # never imports asyncpg itself
    return module is not None and isinstance(storage, module.PostgresStorage)
