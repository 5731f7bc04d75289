"""Added as ``tests/conftest.py`` when run_framework_suites.sh runs aiogram-dialog's own tests on
statekit: aiogram-dialog's ``JsonMemoryStorage`` and aiogram's ``MemoryStorage`` (all its tests
use) are an ``AiogramStorage`` over a statekit storage of ``STATEKIT_FW_BACKEND``.

Intent and stack ids: aiogram-dialog makes them from ``time.time()`` seconds plus
``randint(0, 99)``, so two ids made in the same second collide one time in 100 and a few of its
tests (``test_subdialog``, nested ``test_start``) fail now and then on aiogram's own storages too.
The id generator is patched here (never in statekit) to hand out unique ids, instead of retrying.
"""

from __future__ import annotations

import itertools
import time

import aiogram.dispatcher.dispatcher
import aiogram.fsm.storage.memory
import aiogram_dialog.api.entities.stack as _stack
import aiogram_dialog.test_tools.memory_storage
import pytest
from statekit_swap import SwappedStorage, finish, tolerate
from statekit_swap import _statekit_storages_stopped as _statekit_storages_stopped

aiogram.fsm.storage.memory.MemoryStorage = SwappedStorage  # type: ignore[misc]
aiogram.dispatcher.dispatcher.MemoryStorage = SwappedStorage  # type: ignore[attr-defined]
aiogram_dialog.test_tools.memory_storage.JsonMemoryStorage = SwappedStorage  # type: ignore[misc]

_ids = itertools.count(int(time.time()) % 100_000_000)
_stack.new_int_id = lambda: next(_ids)  # unique ids: see the module docstring

# test (node id ending) -> why it may fail on statekit
TOLERATED: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "repeat(n): run n times (pytest-repeat)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tolerate(items, TOLERATED)


def pytest_sessionfinish(session: pytest.Session) -> None:
    finish(session)
