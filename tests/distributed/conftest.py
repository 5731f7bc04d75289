"""Fixtures of the distributed / fault tests: setups a test may break (kill, restart) on its own."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from statekit.testing import RedisClusterSetup, RedisSentinelSetup, RedisServerUnavailable

T = TypeVar("T", RedisClusterSetup, RedisSentinelSetup)


def _started(make: Callable[[], T]) -> T:
    try:
        setup = make()
        setup.start()
    except RedisServerUnavailable as exc:
        if os.environ.get("STATEKIT_REQUIRE_REDIS") == "1":
            pytest.fail(f"STATEKIT_REQUIRE_REDIS=1 but {exc}")
        pytest.skip(f"needs redis-server / redis-cli: {exc}")
    return setup


@pytest.fixture
def own_cluster() -> Iterator[RedisClusterSetup]:
    """A three-primary cluster of this test's own (safe to kill nodes of), append-only on."""
    setup = _started(lambda: RedisClusterSetup(appendonly=True))
    yield setup
    setup.cleanup()


@pytest.fixture
def own_sentinel() -> Iterator[RedisSentinelSetup]:
    """A primary + replica + three sentinels of this test's own (safe to fail over)."""
    setup = _started(lambda: RedisSentinelSetup(down_after_ms=500))
    yield setup
    setup.cleanup()
