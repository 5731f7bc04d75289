"""Shared by the conftests that run aiogram's and aiogram-dialog's own test suites on statekit
(see run_framework_suites.sh): ``SwappedStorage`` is an ``AiogramStorage`` over a fresh statekit
storage of the backend named by ``STATEKIT_FW_BACKEND`` (``memory``, ``sqlite``, ``redis``,
``postgres``: a throwaway PostgreSQL cluster of the run's own, or ``url``: any statekit URL in
``STATEKIT_FW_URL``), and
``TOLERATED`` marks the framework tests allowed to fail, each with its reason.

Not collected by statekit's own test run (no ``test_`` prefix, no ``conftest.py`` name).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from statekit import BaseStorage, MemoryStorage, RedisStorage, SQLiteStorage, open_storage
from statekit.adapters.aiogram import AiogramStorage
from statekit.testing import RedisServer
from statekit.testing.postgres_server import PostgresServer

BACKEND = os.environ.get("STATEKIT_FW_BACKEND", "memory")
if BACKEND not in ("memory", "sqlite", "redis", "postgres", "url"):
    raise SystemExit(
        f"STATEKIT_FW_BACKEND must be memory, sqlite, redis, postgres or url, not {BACKEND!r}"
    )

_made: list[BaseStorage] = []
made_total = 0  # storages made in this run: 0 at the end means the swap did not take
_tmp = Path(tempfile.mkdtemp(prefix="statekit-fw-"))
_redis: RedisServer | None = None
_postgres: PostgresServer | None = None
_postgres_url = ""


def new_statekit_storage() -> BaseStorage:
    """A fresh statekit storage of ``BACKEND`` (its own namespace / file); stopped after the test."""
    namespace = f"fw{uuid.uuid4().hex[:12]}"
    storage: BaseStorage
    if BACKEND == "memory":
        storage = MemoryStorage(namespace=namespace)
    elif BACKEND == "sqlite":
        storage = SQLiteStorage(_tmp / f"{namespace}.db", namespace=namespace)
    elif BACKEND == "url":
        storage = open_storage(os.environ["STATEKIT_FW_URL"], namespace=namespace)
    elif BACKEND == "postgres":
        global _postgres, _postgres_url
        if _postgres is None:
            _postgres = PostgresServer()
            _postgres.start()
            _postgres_url = _postgres.create_database("frameworks")
        storage = open_storage(_postgres_url, namespace=namespace)
    else:
        global _redis
        if _redis is None:
            _redis = RedisServer()
            _redis.start()
        storage = RedisStorage(_redis.url, namespace=namespace)
    global made_total
    made_total += 1
    _made.append(storage)
    return storage


class SwappedStorage(AiogramStorage):
    """Stands in for aiogram's ``MemoryStorage`` / aiogram-dialog's ``JsonMemoryStorage``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(new_statekit_storage())


async def stop_made() -> None:
    """Stop (and on Redis, clear) every storage made since the last call."""
    made, _made[:] = list(_made), []
    for storage in made:
        if BACKEND in ("redis", "postgres", "url") and storage.started:
            await storage.clear_namespace()
        await storage.stop()


@pytest.fixture(autouse=True)
async def _statekit_storages_stopped() -> Any:
    yield
    await stop_made()


def finish(session: pytest.Session) -> None:
    """End of the run: stop the Redis or PostgreSQL server, if one was started; fail the run if no test used
    a statekit storage (the swap did not take)."""
    if _redis is not None:
        _redis.cleanup()
    if _postgres is not None:
        _postgres.cleanup()
    if made_total == 0 and session.testscollected:
        print(f"statekit_swap: no test used a statekit storage ({BACKEND}): the swap failed")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        print(f"\nstatekit_swap: {made_total} statekit storages ({BACKEND}) used")


def tolerate(items: list[pytest.Item], tolerated: dict[str, str]) -> None:
    """Mark the tests named in ``tolerated`` (node id ending -> reason) as allowed to fail."""
    for item in items:
        for name, reason in tolerated.items():
            if item.nodeid.endswith(name) or f"{name}[" in item.nodeid:
                item.add_marker(pytest.mark.xfail(reason=reason, strict=False))


__all__ = ["BACKEND", "SwappedStorage", "finish", "new_statekit_storage", "stop_made", "tolerate"]
