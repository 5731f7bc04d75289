"""PostgresStorage beyond the shared conformance suite: URLs and secrets, the schema and its rights,
hostile keys, patterns and namespaces, expiry on the server's clock, cleanup, a given pool."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from statekit import StatekitError, StorageUnavailableError, open_storage
from statekit.storage._glob import compile_glob
from statekit.storage.postgres import SCHEMA_VERSION, PostgresStorage, schema_sql
from statekit.testing import FakeClock, free_port
from statekit.testing.postgres_server import PostgresServer

pytestmark = pytest.mark.postgres


def _ns() -> str:
    return f"pg{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStorage]:
    storage = PostgresStorage.from_url(postgres_url, namespace=_ns())
    await storage.start()
    yield storage
    await storage.clear_namespace()
    await storage.stop()


async def _superuser(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url)


# ---------------------------------------------------------------------- URLs and secrets


def test_from_url_takes_both_schemes_and_options() -> None:
    a = PostgresStorage.from_url(
        "postgresql://bot:s3cret@db.example:6543/app?namespace=mybot&default_ttl=30&max_size=4"
        "&min_size=0&statement_cache_size=0&table=bots.state&sslmode=require"
    )
    assert a.namespace == "mybot" and a.default_ttl == 30 and a.table == "bots.state"
    assert "db.example:6543/app" in repr(a) and "s3cret" not in repr(a)
    b = open_storage("postgres://bot:s3cret@db.example/app", namespace="x")
    assert isinstance(b, PostgresStorage) and "db.example:5432/app" in repr(b)
    assert "s3cret" not in repr(b)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql://u:s3cret@h/db?bogus=1&other=2", "['bogus', 'other']"),
        ("postgresql://u:s3cret@h:notaport/db", "port"),
        ("postgresql://u:s3cret@h/db?max_size=many", "max_size"),
        ("postgresql://u:s3cret@h/db?table=Robert'); DROP", "table"),
        ("postgresql://u:s3cret@h/db?min_size=5&max_size=2", "min_size"),
    ],
)
def test_bad_urls_name_the_problem_and_hide_the_password(url: str, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        open_storage(url)
    assert needle in str(info.value) and "s3cret" not in str(info.value)


async def test_bad_driver_parameter_values_are_value_errors() -> None:
    storage = PostgresStorage.from_url("postgresql://u:s3cret@127.0.0.1:1/db?sslmode=bogus")
    with pytest.raises(ValueError, match="sslmode") as info:
        await storage.start()
    assert "s3cret" not in str(info.value)
    with pytest.raises(ValueError, match="cannot open") as info:
        PostgresStorage.from_url("postgresql://u:s3cret@[::1/db")
    assert "s3cret" not in str(info.value)


async def test_unreachable_server_names_host_port_database() -> None:
    port = free_port()
    storage = PostgresStorage(f"postgresql://bot:s3cret@127.0.0.1:{port}/appdb", connect_timeout=5)
    with pytest.raises(StorageUnavailableError) as info:
        await storage.start()
    assert f"127.0.0.1:{port}/appdb" in str(info.value) and "s3cret" not in str(info.value)
    assert await storage.health() is False


async def test_wrong_password_and_missing_database(postgres_server: PostgresServer, postgres_url: str) -> None:
    wrong = postgres_url.replace(postgres_server.password, "not-the-password-x")
    with pytest.raises(StorageUnavailableError, match="password authentication failed") as info:
        await PostgresStorage(wrong).start()
    assert "not-the-password-x" not in str(info.value)
    assert postgres_server.password not in str(info.value)
    missing = postgres_server.url("no_such_db")
    with pytest.raises(StorageUnavailableError, match="no_such_db") as info:
        await PostgresStorage(missing).start()
    assert postgres_server.password not in str(info.value)


# ---------------------------------------------------------------------- a given pool


async def test_a_given_pool_is_used_and_never_closed(postgres_url: str) -> None:
    pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=2)
    try:
        storage = PostgresStorage(pool, namespace=_ns())
        async with storage:
            await storage.set_state("k", {"v": 1})
            assert await storage.get_state("k") == {"v": 1}
            await storage.clear_namespace()
        assert not pool._closed
        assert await pool.fetchval("SELECT 41 + 1") == 42
        assert "127.0.0.1" in repr(storage) and "given pool" in repr(storage)
        assert postgres_url.split("@")[0].split(":")[-1] not in repr(storage)  # no password
    finally:
        await pool.close()


# ---------------------------------------------------------------------- schema


async def test_schema_is_versioned_and_second_start_changes_nothing(postgres_url: str) -> None:
    table = f"kv_{uuid.uuid4().hex[:8]}"
    async with PostgresStorage(postgres_url, table=table, namespace="a") as storage:
        await storage.set_state("k", 1)
    conn = await _superuser(postgres_url)
    try:
        version = await conn.fetchval(f"SELECT value FROM {table}_meta WHERE name = 'schema_version'")
        assert version == str(SCHEMA_VERSION)
        columns = dict(await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1", table
        ))
        assert columns == {"namespace": "bytea", "key": "bytea", "value": "bytea",
                           "counter": "bigint", "expires_at": "bigint"}
        # a counter is a native BIGINT a SQL user can read
        async with PostgresStorage(postgres_url, table=table, namespace="a") as storage:
            await storage.increment("hits", 41)
        assert await conn.fetchval(
            f"SELECT counter FROM {table} WHERE key = convert_to('hits', 'UTF8')"
        ) == 41
        await conn.execute(f"UPDATE {table}_meta SET value = '{SCHEMA_VERSION + 1}'")
        with pytest.raises(StatekitError, match="newer than this statekit"):
            await PostgresStorage(postgres_url, table=table).start()
    finally:
        await conn.execute(f"DROP TABLE {table}, {table}_meta")
        await conn.close()


async def test_a_table_without_version_record_is_migrated_forward_keeping_rows(postgres_url: str) -> None:
    table = f"kv_{uuid.uuid4().hex[:8]}"
    async with PostgresStorage(postgres_url, table=table, namespace="a") as storage:
        await storage.set_state("kept", {"v": 1}, ttl=100)
    conn = await _superuser(postgres_url)
    try:
        await conn.execute(f"DROP TABLE {table}_meta")  # as a version-0 schema looks
        async with PostgresStorage(postgres_url, table=table, namespace="a") as storage:
            assert await storage.get_state("kept") == {"v": 1}
            ttl = await storage.get_ttl("kept")
            assert ttl is not None and 90 < ttl <= 100
        assert await conn.fetchval(f"SELECT value FROM {table}_meta") == str(SCHEMA_VERSION)
    finally:
        await conn.execute(f"DROP TABLE {table}, {table}_meta")
        await conn.close()


async def test_a_schema_qualified_table(postgres_url: str) -> None:
    schema = f"bots_{uuid.uuid4().hex[:6]}"
    conn = await _superuser(postgres_url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        async with PostgresStorage(postgres_url, table=f"{schema}.state", namespace="a") as storage:
            await storage.set_state("k", [1], ttl=50)
            assert await storage.increment("n", 3) == 3
            assert sorted(await storage.list_keys()) == ["k", "n"]
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
        assert sorted(r[0] for r in tables) == ["state", "state_meta"]
        assert await conn.fetchval("SELECT to_regclass('public.state')") is None
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


async def test_concurrent_first_starts_create_the_schema_once(postgres_url: str) -> None:
    table = f"kv_{uuid.uuid4().hex[:8]}"
    storages = [PostgresStorage(postgres_url, table=table, namespace=f"n{i}") for i in range(6)]
    await asyncio.gather(*(s.start() for s in storages))
    await asyncio.gather(*(s.set_state("k", i) for i, s in enumerate(storages)))
    assert [await s.get_state("k") for s in storages] == list(range(6))
    for s in storages:
        await s.stop()
    conn = await _superuser(postgres_url)
    await conn.execute(f"DROP TABLE {table}, {table}_meta")
    await conn.close()


async def test_role_without_create_rights_gets_the_sql_to_run(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    role, table = f"bot_{uuid.uuid4().hex[:6]}", f"kv_{uuid.uuid4().hex[:8]}"
    conn = await _superuser(postgres_url)
    try:
        await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'rolepw'")
        await conn.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
        limited = postgres_url.replace(f"postgres:{postgres_server.password}@", f"{role}:rolepw@")
        with pytest.raises(StatekitError) as info:
            await PostgresStorage(limited, table=table).start()
        message = str(info.value)
        assert "may not create" in message and f'CREATE TABLE IF NOT EXISTS "{table}"' in message
        assert "rolepw" not in message
        await conn.execute(schema_sql(table, role))  # what the DBA runs
        async with PostgresStorage(limited, table=table, namespace="x") as storage:
            await storage.set_state("k", "works")
            assert await storage.increment("n") == 1
            assert await storage.get_state("k") == "works"
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}, {table}_meta")
        await conn.execute(f"DROP OWNED BY {role}")
        await conn.execute(f"DROP ROLE {role}")
        await conn.close()


# ---------------------------------------------------------------------- hostile input

HOSTILE_KEYS = ["100%", "100x", "a_b", "axb", "a\\b", "it's", 'say "hi"', "nul\x00key", "nul",
                "\x00", "'; DROP TABLE statekit_kv; --", "%", "_", "\\", "ab", "a\\\\b", "é\x00"]
HOSTILE_PATTERNS = ["100%", "a_b", "a\\\\b", "nul\x00*", "*\x00*", "%", "_", "\\\\", "*'*", "?",
                    "[%_]", "a[\\\\_]b", "*\"*", "'*", "a?b", "\x00"]


async def test_hostile_keys_round_trip(store: PostgresStorage) -> None:
    for i, key in enumerate(HOSTILE_KEYS):
        await store.set_state(key, i)
    assert await store.get_many(HOSTILE_KEYS) == {k: i for i, k in enumerate(HOSTILE_KEYS)}
    assert sorted(await store.list_keys()) == sorted(HOSTILE_KEYS)
    assert await store.compare_and_set("nul\x00key", "x", expected=7)
    assert await store.increment("\x00") == 10
    assert await store.get_state("nul") == 8


@pytest.mark.parametrize("pattern", HOSTILE_PATTERNS, ids=[repr(p) for p in HOSTILE_PATTERNS])
async def test_hostile_patterns_match_exactly_as_redis_glob(store: PostgresStorage, pattern: str) -> None:
    await store.set_many({k: 1 for k in HOSTILE_KEYS})
    expected = sorted(k for k in HOSTILE_KEYS if compile_glob(pattern)(k))
    assert sorted(await store.list_keys(pattern)) == expected


def test_hostile_pattern_expectations_are_what_redis_does() -> None:
    # the oracle above is compile_glob; pin the cases where LIKE would differ from the glob
    assert [k for k in HOSTILE_KEYS if compile_glob("100%")(k)] == ["100%"]
    assert [k for k in HOSTILE_KEYS if compile_glob("a_b")(k)] == ["a_b"]
    assert [k for k in HOSTILE_KEYS if compile_glob("a\\\\b")(k)] == ["a\\b"]
    assert sorted(k for k in HOSTILE_KEYS if compile_glob("nul\x00*")(k)) == ["nul\x00key"]


@pytest.mark.parametrize(
    "namespace", ["'; DROP TABLE statekit_kv; --", "%", "_", "ns\x00a", "ns", "\\", "a'b\"c"]
)
async def test_namespaces_that_look_like_sql_stay_apart(postgres_url: str, namespace: str) -> None:
    others = [PostgresStorage(postgres_url, namespace=n) for n in ("ns", "nsXa", "a", namespace + "x")]
    mine = PostgresStorage(postgres_url, namespace=namespace)
    for s in (mine, *others):
        await s.start()
    try:
        for s in others:
            await s.set_state("k", s.namespace)
        await mine.set_state("k", "mine")
        await mine.set_state("only-mine", 1)
        assert sorted(await mine.list_keys()) == ["k", "only-mine"]
        assert await mine.clear_namespace() == 2
        for s in others:
            if s.namespace != namespace:
                assert await s.get_state("k") == s.namespace
                assert await s.list_keys() == ["k"]
    finally:
        for s in (mine, *others):
            await s.clear_namespace()
            await s.stop()


# ---------------------------------------------------------------------- expiry


async def test_expiry_on_the_server_clock_is_invisible_at_once(store: PostgresStorage) -> None:
    await store.set_state("short", 1, ttl=0.05)
    await store.set_state("long", 1, ttl=600)
    await store.increment("ctr", 5, ttl=0.05)
    assert await store.compare_and_set("cas", "a", expected=None, ttl=0.05)
    await asyncio.sleep(0.3)  # ample: every short key is past its expiry afterwards
    assert await store.get_state("short") is None
    assert await store.get_ttl("short") is None
    assert await store.get_many(["short", "long"]) == {"long": 1}
    assert sorted(await store.list_keys()) == ["long"]
    assert await store.increment("ctr", 2, ttl=600) == 2  # an expired counter starts again
    assert await store.compare_and_set("cas", "b", expected=None)  # expired counts as absent
    assert await store.expire("short", 10) is False
    assert await store.delete_state("short") is False
    ttl = await store.get_ttl("long")
    assert ttl is not None and 590 < ttl <= 600


async def test_sweep_reclaims_expired_rows_in_batches(postgres_url: str) -> None:
    clock = FakeClock()
    storage = PostgresStorage(postgres_url, namespace=_ns(), clock=clock, sweep_batch=7)
    async with storage:
        await storage.set_many({f"old{i}": i for i in range(30)}, ttl=1)
        await storage.set_many({f"keep{i}": i for i in range(5)})
        await storage.set_state("later", 1, ttl=100)
        clock.advance(2)
        assert await storage.sweep() == 30
        rows = await storage._run(
            "fetchval", "SELECT count(*) FROM statekit_kv WHERE namespace = $1", storage.namespace.encode()
        )
        assert rows == 6
        assert await storage.clear_namespace() == 6


async def test_background_sweeper_runs_while_started(postgres_url: str) -> None:
    clock = FakeClock()
    storage = PostgresStorage(postgres_url, namespace=_ns(), clock=clock, sweep_interval=0.05)
    ns = storage.namespace.encode()
    async with storage:
        await storage.set_many({f"old{i}": i for i in range(20)}, ttl=1)
        clock.advance(2)
        for _ in range(400):  # waits for an event (the sweep), bounded at 20 s
            left = await storage._run("fetchval", "SELECT count(*) FROM statekit_kv WHERE namespace = $1", ns)
            if left == 0:
                break
            await asyncio.sleep(0.05)
        assert left == 0


async def test_statement_cache_off_for_pgbouncer(postgres_url: str) -> None:
    async with open_storage(f"{postgres_url}?statement_cache_size=0&max_size=2&namespace={_ns()}") as s:
        await asyncio.gather(*(s.increment("n") for _ in range(50)))
        assert await s.get_state("n") == 50
        await s.clear_namespace()
