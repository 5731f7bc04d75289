"""Storage backends and the contract they share.

``RedisStorage`` and ``SQLiteStorage`` are imported on first use (their drivers with them), so
that opening a ``memory://`` storage never imports redis-py or aiosqlite.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from statekit.storage.base import DEFAULT, MAX_TTL_SECONDS, TTL, BaseStorage
from statekit.storage.memory import MemoryStorage
from statekit.storage.url import mask_url, open_storage, register_storage, registered_schemes

if TYPE_CHECKING:
    from statekit.storage.redis import RedisStorage
    from statekit.storage.sqlite import SQLiteStorage

__all__ = [
    "BaseStorage",
    "DEFAULT",
    "MAX_TTL_SECONDS",
    "MemoryStorage",
    "RedisStorage",
    "SQLiteStorage",
    "TTL",
    "mask_url",
    "open_storage",
    "register_storage",
    "registered_schemes",
]

_LAZY = {
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
