"""Replaces aiogram's ``tests/conftest.py`` when run_framework_suites.sh runs aiogram's own
``tests/test_fsm/`` on statekit: every aiogram ``MemoryStorage`` (the fixtures, the tests' own
``MemoryStorage()`` calls, a ``Dispatcher()``'s default) is an ``AiogramStorage`` over a statekit
storage of ``STATEKIT_FW_BACKEND``. aiogram's own Redis and Mongo storages are not what this run
checks: their fixtures skip.
"""

from __future__ import annotations

from typing import Any

import aiogram.dispatcher.dispatcher
import aiogram.fsm.storage.memory
import pytest
from statekit_swap import SwappedStorage, finish, tolerate
from statekit_swap import _statekit_storages_stopped as _statekit_storages_stopped

aiogram.fsm.storage.memory.MemoryStorage = SwappedStorage  # type: ignore[misc]
aiogram.dispatcher.dispatcher.MemoryStorage = SwappedStorage  # type: ignore[attr-defined]

from aiogram import Dispatcher  # noqa: E402
from aiogram.fsm.storage.base import StorageKey  # noqa: E402
from aiogram.fsm.storage.memory import DisabledEventIsolation, SimpleEventIsolation  # noqa: E402
from tests.mocked_bot import MockedBot  # noqa: E402

# test (node id ending) -> why it may fail on statekit: it inspects aiogram's MemoryStorage itself
TOLERATED = {
    "test_context.py::test_address_mapping": "subscripts MemoryStorage.storage (aiogram's dict)",
    "test_context.py::TestFSMContext::test_address_mapping": "subscripts MemoryStorage.storage",
}

CHAT_ID = -42
USER_ID = 42


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis: aiogram's Redis tests")
    config.addinivalue_line("markers", "mongo: aiogram's Mongo tests")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tolerate(items, TOLERATED)


def pytest_sessionfinish(session: pytest.Session) -> None:
    finish(session)


def _not_ours(name: str) -> None:
    pytest.skip(f"aiogram's own {name} storage: not what the statekit run checks")


@pytest.fixture
def redis_storage() -> None:
    _not_ours("Redis")


@pytest.fixture
def mongo_storage() -> None:
    _not_ours("Mongo")


@pytest.fixture
def pymongo_storage() -> None:
    _not_ours("PyMongo")


@pytest.fixture
def redis_isolation() -> None:
    _not_ours("Redis")


@pytest.fixture
async def memory_storage() -> Any:
    storage = SwappedStorage()
    try:
        yield storage
    finally:
        await storage.close()


@pytest.fixture
async def lock_isolation() -> Any:
    isolation = SimpleEventIsolation()
    try:
        yield isolation
    finally:
        await isolation.close()


@pytest.fixture
async def disabled_isolation() -> Any:
    isolation = DisabledEventIsolation()
    try:
        yield isolation
    finally:
        await isolation.close()


@pytest.fixture
def bot() -> MockedBot:
    return MockedBot()


@pytest.fixture(name="storage_key")
def create_storage_key(bot: MockedBot) -> StorageKey:
    return StorageKey(chat_id=CHAT_ID, user_id=USER_ID, bot_id=bot.id)


@pytest.fixture
async def dispatcher() -> Any:
    dp = Dispatcher()
    await dp.emit_startup()
    try:
        yield dp
    finally:
        await dp.emit_shutdown()


@pytest.fixture
def storage(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


@pytest.fixture
def isolation(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)
