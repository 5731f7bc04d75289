"""The LIKE pre-filter of ``scan_keys`` never drops a key the Redis glob matches (property test,
LIKE evaluated by the server), and scans by pattern return exactly the glob's matches."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statekit.storage._glob import compile_glob, literal_prefix
from statekit.storage._postgres_sql import like_filter, prefix_bounds
from statekit.storage.postgres import PostgresStorage

pytestmark = pytest.mark.postgres

ALPHABET = "ab*?[]^-\\%_'\x00é"
# keys from a small alphabet and short patterns, so that most patterns match some keys
KEYS = st.lists(st.text("ab-%_\\\x00é", min_size=1, max_size=4), min_size=1, max_size=40, unique=True)
PATTERNS = st.text(ALPHABET, max_size=5)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def conn(postgres_url: str, loop: asyncio.AbstractEventLoop) -> Iterator[asyncpg.Connection]:
    connection = loop.run_until_complete(asyncpg.connect(postgres_url))
    yield connection
    loop.run_until_complete(connection.close())


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=KEYS, pattern=PATTERNS)
def test_like_prefilter_and_prefix_range_keep_every_glob_match(
    conn: asyncpg.Connection, loop: asyncio.AbstractEventLoop, keys: list[str], pattern: str
) -> None:
    matches = compile_glob(pattern)
    encoded = [k.encode() for k in keys]
    like = like_filter(pattern)
    low, high = prefix_bounds(literal_prefix(pattern).encode())
    kept = loop.run_until_complete(conn.fetch(
        "SELECT k FROM unnest($1::bytea[]) AS k WHERE k >= $2 AND ($3::bytea IS NULL OR k < $3) "
        "AND ($4::bytea IS NULL OR k LIKE $4)", encoded, low, high, like,
    ))
    survivors = {bytes(r[0]).decode() for r in kept}
    assert {k for k in keys if matches(k)} <= survivors, (pattern, like)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=KEYS, patterns=st.lists(PATTERNS, min_size=1, max_size=4))
def test_scan_returns_exactly_the_glob_matches(
    postgres_url: str, loop: asyncio.AbstractEventLoop, keys: list[str], patterns: list[str]
) -> None:
    async def check() -> None:
        async with PostgresStorage(postgres_url, namespace=f"g{uuid.uuid4().hex[:8]}") as storage:
            try:
                await storage.set_many({k: 1 for k in keys})
                for pattern in patterns:
                    expected = sorted(k for k in keys if compile_glob(pattern)(k))
                    assert sorted(await storage.list_keys(pattern)) == expected, pattern
            finally:
                await storage.clear_namespace()

    loop.run_until_complete(check())
