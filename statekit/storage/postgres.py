"""PostgreSQL storage over asyncpg: bot state beside the database the bot already runs on.

URLs: ``postgresql://user:password@host:port/dbname`` and ``postgres://…`` (query parameters
``namespace``, ``default_ttl``, ``table``, ``min_size``, ``max_size``, ``statement_cache_size``,
``connect_timeout`` and asyncpg's own ``sslmode``, ``sslrootcert``, …). Install extra: ``postgres``
(``pip install 'statekit[postgres]'``).

One table keyed by (namespace, key), both ``bytea`` (UTF-8 bytes: any key, NUL included, in any
database encoding, compared byte-wise like Redis), with a ``bytea`` value or a native ``BIGINT``
counter and an expiry in Unix milliseconds. Every operation is one statement; expired rows are
invisible at once and reclaimed by a background task in bounded batches. The schema is created on
first start, versioned in ``<table>_meta`` and migrated forward. No session-level state is used,
so it works behind PgBouncer in transaction mode (pass ``statement_cache_size=0`` there unless
PgBouncer tracks prepared statements).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import asyncpg

from statekit.codec import Codec
from statekit.errors import StatekitError, StorageUnavailableError
from statekit.storage._glob import compile_glob, literal_prefix
from statekit.storage.base import BaseStorage, Stored

__all__ = ["SCHEMA_VERSION", "PostgresStorage", "schema_sql"]

log = logging.getLogger("statekit.storage.postgres")

_NOW = "COALESCE($1::bigint, (extract(epoch FROM statement_timestamp()) * 1000)::bigint)"
_LIVE = f"(t.expires_at IS NULL OR t.expires_at > {_NOW})"
_EXPIRED = f"(t.expires_at IS NOT NULL AND t.expires_at <= {_NOW})"
_SCAN_PAGE = 1000
_TABLE_NAME = re.compile(r"^(?:[a-z_][a-z0-9_]{0,47}\.)?[a-z_][a-z0-9_]{0,47}$")

# query parameters of a URL that PostgresStorage takes itself / that asyncpg reads from the DSN
_OWN_PARAMS: Final = ("namespace", "default_ttl", "table", "min_size", "max_size",
                      "statement_cache_size", "connect_timeout", "sweep_interval")
_DRIVER_PARAMS: Final = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword",
                         "sslnegotiation", "ssl_min_protocol_version", "ssl_max_protocol_version",
                         "target_session_attrs", "passfile", "service", "krbsrvname", "gsslib")

# Connection-level failures: the server is down, unreachable, refusing us, or dropped the call.
_UNAVAILABLE: Final = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.InvalidAuthorizationSpecificationError,  # wrong password, unknown role, pg_hba
    asyncpg.InvalidCatalogNameError,  # no such database
    asyncpg.OperatorInterventionError,  # 57P01 terminated, shutting down, starting up
    asyncpg.InsufficientResourcesError,  # too many connections, disk full
)
_RETRY_STATEMENT: Final = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


def _quote(table: str) -> str:
    return ".".join(f'"{part}"' for part in table.split("."))


def _migrations(table: str) -> tuple[tuple[str, ...], ...]:
    """The schema steps; step ``n`` takes a version-``n`` schema to version ``n + 1``."""
    kv = _quote(table)
    index = _quote(table.split(".")[-1] + "_expires")
    return (
        (
            f"""CREATE TABLE IF NOT EXISTS {kv} (
    namespace  bytea  NOT NULL,
    key        bytea  NOT NULL,
    value      bytea,
    counter    bigint,
    expires_at bigint,
    PRIMARY KEY (namespace, key),
    CHECK ((value IS NULL) <> (counter IS NULL))
)""",
            f"CREATE INDEX IF NOT EXISTS {index} ON {kv} (expires_at) WHERE expires_at IS NOT NULL",
        ),
    )


SCHEMA_VERSION: Final = len(_migrations("statekit_kv"))


def _meta_sql(table: str) -> tuple[str, str]:
    meta = _quote(table + "_meta")
    create = f"CREATE TABLE IF NOT EXISTS {meta} (name text PRIMARY KEY, value text NOT NULL)"
    upsert = (
        f"INSERT INTO {meta} (name, value) VALUES ('schema_version', $1) "
        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
    )
    return create, upsert


def schema_sql(table: str = "statekit_kv", role: str = "statekit_app") -> str:
    """The SQL that creates statekit's schema (current version) for ``table``, plus the grants a
    role without CREATE rights needs, for a DBA to run by hand. Raises ``ValueError`` for a table
    name that is not a plain (optionally schema-qualified) lower-case identifier."""
    _check_table(table)
    lines = [step + ";" for steps in _migrations(table) for step in steps]
    create, _ = _meta_sql(table)
    meta = _quote(table + "_meta")
    lines += [
        create + ";",
        f"INSERT INTO {meta} (name, value) VALUES ('schema_version', '{SCHEMA_VERSION}') "
        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value;",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {_quote(table)} TO {role};",
        f"GRANT SELECT ON {meta} TO {role};",
    ]
    return "\n".join(lines)


def _check_table(table: object) -> str:
    if type(table) is not str or not _TABLE_NAME.match(table):
        raise ValueError(
            f"table must be a lower-case SQL identifier of at most 48 characters, optionally "
            f"schema-qualified (e.g. 'statekit_kv' or 'bots.statekit_kv'), got {table!r}"
        )
    return table


def _prefix_bounds(prefix: bytes) -> tuple[bytes, bytes | None]:
    """(lowest, first-beyond) byte strings of every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return prefix, None
    return prefix, stripped[:-1] + bytes([stripped[-1] + 1])


def _like_filter(pattern: str) -> bytes | None:
    """A LIKE pattern (on UTF-8 bytes, ``\\`` escapes) every key matching the Redis glob
    ``pattern`` matches; ``None`` when it would match everything. The glob itself is applied
    afterwards, exactly; this only lets the server skip rows."""
    pat = pattern.encode()
    out = bytearray()
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        if c == 0x2A:  # *
            if not out.endswith(b"%") or out.endswith(b"\\%"):
                out += b"%"
            i += 1
        elif c == 0x3F:  # ?  one byte
            out += b"_"
            i += 1
        elif c == 0x5C:  # backslash: the next byte literally (a trailing one is itself)
            lit = pat[i + 1] if i + 1 < n else c
            out += (b"\\" + bytes([lit])) if lit in b"%_\\" else bytes([lit])
            i += 2
        elif c == 0x5B:  # a class matches one byte; its details are left to the exact glob
            i += 1
            if i < n and pat[i] == 0x5E:
                i += 1
            while i < n and pat[i] != 0x5D:
                i += 2 if pat[i] == 0x5C and i + 1 < n else 1
            i += 1
            out += b"_"
        else:
            out += (b"\\" + bytes([c])) if c in b"%_" else bytes([c])
            i += 1
    if out == b"%":
        return None
    return bytes(out)


def _split(stored: Stored) -> tuple[bytes | None, int | None]:
    """(value, counter) columns of a stored form."""
    return (None, stored) if type(stored) is int else (stored, None)  # type: ignore[return-value]


def _row_stored(value: bytes | None, counter: int | None) -> Stored:
    return counter if counter is not None else value  # type: ignore[return-value]


class PostgresStorage(BaseStorage):
    """Storage in one PostgreSQL table (``table``, default ``statekit_kv``) over an asyncpg pool.

    ``dsn_or_pool``: a ``postgresql://`` DSN (statekit makes and closes the pool; ``min_size`` /
    ``max_size`` connections, ``statement_cache_size`` as asyncpg's, 0 for PgBouncer in
    transaction mode, ``connect_timeout`` seconds) or an existing ``asyncpg.Pool`` (used as it is,
    never closed by statekit). Expiry uses the server's clock unless ``clock`` (Unix seconds, for
    tests) is given; expired rows are deleted every ``sweep_interval`` seconds, at most
    ``sweep_batch`` rows per statement.
    """

    backend_name = "postgresql"

    def __init__(
        self,
        dsn_or_pool: str | asyncpg.Pool,
        *,
        namespace: str = "statekit",
        default_ttl: int | float | timedelta | None = None,
        codec: Codec | None = None,
        table: str = "statekit_kv",
        min_size: int = 1,
        max_size: int = 10,
        statement_cache_size: int = 100,
        connect_timeout: float = 10.0,
        sweep_interval: float = 60.0,
        sweep_batch: int = 1000,
        clock: Callable[[], float] | None = None,
        max_key_bytes: int = 1024,
        max_value_bytes: int = 1024 * 1024,
    ) -> None:
        super().__init__(
            namespace=namespace,
            default_ttl=default_ttl,
            codec=codec,
            max_key_bytes=max_key_bytes,
            max_value_bytes=max_value_bytes,
        )
        self.table: Final = _check_table(table)
        if type(min_size) is not int or type(max_size) is not int or not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError(
                f"pool sizes must be ints with 0 <= min_size <= max_size and max_size >= 1, "
                f"got min_size={min_size!r}, max_size={max_size!r}"
            )
        if type(statement_cache_size) is not int or statement_cache_size < 0:
            raise ValueError(f"statement_cache_size must be an int >= 0, got {statement_cache_size!r}")
        for name, number in (("connect_timeout", connect_timeout), ("sweep_interval", sweep_interval)):
            if not isinstance(number, int | float) or isinstance(number, bool) or not number > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {number!r}")
        if type(sweep_batch) is not int or sweep_batch < 1:
            raise ValueError(f"sweep_batch must be a positive int, got {sweep_batch!r}")
        self._dsn: str | None = None
        self._given_pool: asyncpg.Pool | None = None
        if isinstance(dsn_or_pool, asyncpg.Pool):
            self._given_pool = dsn_or_pool
            self._where = "an application-provided asyncpg pool"
        elif isinstance(dsn_or_pool, str):
            self._dsn = dsn_or_pool
            self._where = _where_of(dsn_or_pool)
        else:
            raise TypeError(
                "PostgresStorage takes a postgresql:// DSN or an asyncpg.Pool, "
                f"not {type(dsn_or_pool).__name__}"
            )
        self._min_size, self._max_size = min_size, max_size
        self._statement_cache_size = statement_cache_size
        self._connect_timeout = float(connect_timeout)
        self._sweep_interval = float(sweep_interval)
        self._sweep_batch = sweep_batch
        self._clock = clock
        self._ns = namespace.encode()
        self._pool: asyncpg.Pool | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._sql = _Statements(_quote(table))

    # ------------------------------------------------------------------ construction from a URL

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStorage:
        """A storage for a ``postgresql://`` or ``postgres://`` URL; ``options`` override the URL's
        query parameters. Raises ``ValueError`` (password masked) for another scheme, a bad port,
        a bad parameter value, or unknown parameters (named)."""
        from statekit.storage.url import mask_url

        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme.lower() not in ("postgresql", "postgres"):
            shown = mask_url(url) if isinstance(url, str) else repr(url)
            raise ValueError(f"not a postgresql:// or postgres:// URL: {shown!r}")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"cannot open {mask_url(url)!r}: the port is not a number") from None
        params: dict[str, Any] = {}
        driver: list[tuple[str, str]] = []
        unknown: list[str] = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name in _OWN_PARAMS:
                params[name] = _convert(url, name, value)
            elif name in _DRIVER_PARAMS:
                driver.append((name, value))
            else:
                unknown.append(name)
        if unknown:
            raise ValueError(
                f"cannot open {mask_url(url)!r}: unknown parameters {sorted(set(unknown))}; "
                f"accepted: {', '.join(_OWN_PARAMS + _DRIVER_PARAMS)}"
            )
        query = "&".join(f"{k}={v}" for k, v in driver)
        dsn = parts._replace(scheme="postgresql", query=query).geturl()
        params.update(options)
        return cls(dsn, **params)

    def _describe(self) -> str:
        return self._where if self._given_pool is None else "postgresql (given pool)"

    def __repr__(self) -> str:
        return (
            f"PostgresStorage({self._describe()}, table={self.table!r}, namespace={self.namespace!r})"
        )

    # ------------------------------------------------------------------ errors

    def _unavailable(self, exc: BaseException) -> StorageUnavailableError:
        from statekit.storage.url import mask_credentials

        text = mask_credentials(str(exc)) or "no details"
        return StorageUnavailableError(
            f"PostgreSQL at {self._where} is unavailable: {type(exc).__name__}: {text}"
        )

    def _failed(self, exc: asyncpg.PostgresError) -> StatekitError:
        from statekit.storage.url import mask_credentials

        state = getattr(exc, "sqlstate", None) or "?"
        return StatekitError(
            f"PostgreSQL at {self._where} refused a statement on table {self.table!r} "
            f"(SQLSTATE {state}): {mask_credentials(str(exc))}"
        )

    async def _run(self, how: str, sql: str, *args: Any, read: bool = False) -> Any:
        """Run one statement through the pool and return asyncpg's answer, with every driver error
        converted here: connection failures to ``StorageUnavailableError`` (a read is retried once
        on a fresh connection first), out-of-range integers to ``OverflowError``, deadlocks and
        serialization failures retried, any other server error to ``StatekitError``."""
        pool = self._pool
        if pool is None:
            raise StorageUnavailableError(f"{self!r} is not started")
        attempt = 0
        while True:
            attempt += 1
            try:
                if how == "fetchrow":
                    return await pool.fetchrow(sql, *args)
                if how == "fetchval":
                    return await pool.fetchval(sql, *args)
                if how == "fetch":
                    return await pool.fetch(sql, *args)
                return await pool.execute(sql, *args)
            except asyncpg.NumericValueOutOfRangeError as exc:
                raise OverflowError(str(exc)) from exc
            except _RETRY_STATEMENT as exc:
                if attempt >= 5:
                    raise self._failed(exc) from exc
                await asyncio.sleep(0.001 * attempt)
            except _UNAVAILABLE as exc:
                if not (read and attempt == 1):
                    raise self._unavailable(exc) from exc
            except asyncpg.PostgresError as exc:
                raise self._failed(exc) from exc

    def _now(self) -> int | None:
        return None if self._clock is None else int(self._clock() * 1000)

    # ------------------------------------------------------------------ lifecycle

    async def _open(self) -> None:
        if self._given_pool is not None:
            pool = self._given_pool
        else:
            try:
                pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    statement_cache_size=self._statement_cache_size,
                    timeout=self._connect_timeout,
                )
            except _UNAVAILABLE as exc:
                raise self._unavailable(exc) from exc
            except asyncpg.PostgresError as exc:
                raise self._failed(exc) from exc
            except ValueError as exc:  # a malformed DSN parameter (asyncpg's message)
                raise ValueError(f"cannot open {self._where}: {exc}") from None
        try:
            await self._migrate(pool)
        except BaseException:
            if self._given_pool is None:
                with contextlib.suppress(Exception):
                    await pool.close()
            raise
        self._pool = pool
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="statekit-postgres-sweeper")

    async def _migrate(self, pool: asyncpg.Pool) -> None:
        """Create or migrate the schema to ``SCHEMA_VERSION`` (concurrent starters serialise on an
        advisory lock); a schema at the current version is only read, so a role without CREATE
        rights works once a DBA has run ``schema_sql()``."""
        meta = _quote(self.table + "_meta")
        try:
            async with pool.acquire() as conn:
                version = await self._schema_version(conn, meta)
                if version == SCHEMA_VERSION:
                    return
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "statekit:" + self.table)
                    version = await self._schema_version(conn, meta)
                    create, upsert = _meta_sql(self.table)
                    for steps in _migrations(self.table)[version:]:
                        for step in steps:
                            await conn.execute(step)
                    await conn.execute(create)
                    await conn.execute(upsert, str(SCHEMA_VERSION))
        except asyncpg.InsufficientPrivilegeError as exc:
            raise StatekitError(
                f"PostgreSQL at {self._where}: this role may not create statekit's table "
                f"{self.table!r} ({exc}). Have a database owner run once:\n"
                + schema_sql(self.table, "<your bot's role>")
            ) from exc
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        except asyncpg.PostgresError as exc:
            raise self._failed(exc) from exc

    async def _schema_version(self, conn: asyncpg.Connection, meta: str) -> int:
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", meta)
        if not exists:
            return 0
        found = await conn.fetchval(f"SELECT value FROM {meta} WHERE name = 'schema_version'")
        version = int(found) if found is not None else 0
        if version > SCHEMA_VERSION:
            raise StatekitError(
                f"PostgreSQL table {self.table!r} at {self._where} has statekit schema version "
                f"{version}, newer than this statekit ({SCHEMA_VERSION}); upgrade statekit"
            )
        return version

    async def _close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        pool, self._pool = self._pool, None
        if pool is not None and self._given_pool is None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except (asyncio.TimeoutError, *_UNAVAILABLE):
                pool.terminate()

    async def _sweep_forever(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                await self.sweep()
                failing = False
            except StatekitError as exc:
                if not failing:
                    log.warning("statekit: expired-row cleanup failed (will retry): %s", exc)
                failing = True

    async def sweep(self) -> int:
        """Delete expired rows of every namespace of the table now, in batches of ``sweep_batch``
        rows (space reclaim only: expired keys are already invisible); return how many."""
        total = 0
        while True:
            status = await self._run("execute", self._sql.sweep, self._now(), self._sweep_batch)
            count = int(status.rsplit(" ", 1)[-1])
            total += count
            if count < self._sweep_batch:
                return total
            await asyncio.sleep(0)

    async def _ping(self) -> None:
        await self._run("fetchval", "SELECT 1", read=True)

    # ------------------------------------------------------------------ primitives

    async def _get(self, key: str) -> Stored | None:
        row = await self._run("fetchrow", self._sql.get, self._now(), self._ns, key.encode(), read=True)
        return None if row is None else _row_stored(row[0], row[1])

    async def _set(self, key: str, stored: Stored, ttl_ms: int | None, keep_ttl: bool) -> None:
        value, counter = _split(stored)
        sql = self._sql.set_keep if keep_ttl else self._sql.set
        await self._run("execute", sql, self._now(), self._ns, key.encode(), value, counter, ttl_ms)

    async def _delete(self, key: str) -> bool:
        live = await self._run("fetchval", self._sql.delete, self._now(), self._ns, key.encode())
        return bool(live)

    async def _compare_and_set(
        self,
        key: str,
        expected: Stored | None,
        new: Stored | None,
        ttl_ms: int | None,
        keep_ttl: bool,
    ) -> bool:
        sql = self._sql
        now, k = self._now(), key.encode()
        if expected is None:
            if new is None:
                return bool(await self._run("fetchval", sql.absent, now, self._ns, k, read=True))
            value, counter = _split(new)
            return bool(await self._run("fetchval", sql.insert_if_absent, now, self._ns, k, value, counter, ttl_ms))
        old_value, old_counter = _split(expected)
        if new is None:
            return bool(await self._run("fetchval", sql.delete_if, now, self._ns, k, old_value, old_counter))
        value, counter = _split(new)
        if keep_ttl:
            args: tuple[Any, ...] = (sql.update_if_keep, now, self._ns, k, value, counter, old_value, old_counter)
        else:
            args = (sql.update_if, now, self._ns, k, value, counter, ttl_ms, old_value, old_counter)
        return bool(await self._run("fetchval", *args))

    async def _increment(self, key: str, amount: int, ttl_ms: int | None) -> int:
        try:
            row = await self._run("fetchrow", self._sql.increment, self._now(), self._ns, key.encode(), amount, ttl_ms)
        except OverflowError:
            raise self.overflow_error(key, amount) from None
        if row[0] is None:
            raise self.wrong_type_error(key)
        return int(row[0])

    async def _get_ttl(self, key: str) -> float | None:
        left = await self._run("fetchrow", self._sql.ttl, self._now(), self._ns, key.encode(), read=True)
        if left is None or left[0] is None:
            return None
        return max(0.0, int(left[0]) / 1000)

    async def _expire(self, key: str, ttl_ms: int | None) -> bool:
        return bool(await self._run("fetchval", self._sql.expire, self._now(), self._ns, key.encode(), ttl_ms))

    async def _get_many(self, keys: list[str]) -> dict[str, Stored]:
        rows = await self._run(
            "fetch", self._sql.get_many, self._now(), self._ns, [k.encode() for k in keys], read=True
        )
        found = {bytes(r[0]): _row_stored(r[1], r[2]) for r in rows}
        out: dict[str, Stored] = {}
        for key in keys:
            stored = found.get(key.encode())
            if stored is not None:
                out[key] = stored
        return out

    async def _set_many(self, items: list[tuple[str, Stored]], ttl_ms: int | None) -> None:
        # one row per key (the last value wins, as if written in order), sorted so that two
        # batches over the same keys lock rows in the same order and cannot deadlock
        last = dict(items)
        keys: list[bytes] = []
        values: list[bytes | None] = []
        counters: list[int | None] = []
        for key, stored in sorted((k.encode(), v) for k, v in last.items()):
            value, counter = _split(stored)
            keys.append(key)
            values.append(value)
            counters.append(counter)
        await self._run("execute", self._sql.set_many, self._now(), self._ns, keys, values, counters, ttl_ms)

    async def _delete_many(self, keys: list[str]) -> int:
        encoded = sorted(k.encode() for k in keys)
        return int(await self._run("fetchval", self._sql.delete_many, self._now(), self._ns, encoded))

    async def _scan(self, pattern: str) -> AsyncIterator[str]:
        matches = compile_glob(pattern)
        low, high = _prefix_bounds(literal_prefix(pattern).encode())
        like = _like_filter(pattern)
        after: bytes | None = None
        while True:
            rows: Sequence[Any] = await self._run(
                "fetch", self._sql.scan, self._now(), self._ns, low, high, after, like, _SCAN_PAGE, read=True
            )
            for row in rows:
                key = bytes(row[0]).decode()
                if matches(key):
                    yield key
            if len(rows) < _SCAN_PAGE:
                return
            after = bytes(rows[-1][0])

    async def _clear(self) -> int:
        return int(await self._run("fetchval", self._sql.clear, self._now(), self._ns))


class _Statements:
    """Every statement of the storage for one table. Parameters: ``$1`` now in Unix ms (NULL:
    the server's clock), ``$2`` namespace, ``$3`` key, then per statement."""

    def __init__(self, table: str) -> None:
        t = f"{table} AS t"
        where = "t.namespace = $2 AND t.key = $3"
        expires = f"{_NOW} + $6::bigint"
        self.get = f"SELECT t.value, t.counter FROM {t} WHERE {where} AND {_LIVE}"
        upsert = (
            f"INSERT INTO {t} (namespace, key, value, counter, expires_at) "
            f"VALUES ($2, $3, $4, $5, {expires}) ON CONFLICT (namespace, key) DO UPDATE SET "
            "value = EXCLUDED.value, counter = EXCLUDED.counter, "
        )
        self.set = upsert + "expires_at = EXCLUDED.expires_at"
        self.set_keep = upsert + f"expires_at = CASE WHEN {_LIVE} THEN t.expires_at ELSE EXCLUDED.expires_at END"
        self.delete = f"DELETE FROM {t} WHERE {where} RETURNING {_LIVE}"
        self.absent = f"SELECT NOT EXISTS (SELECT 1 FROM {t} WHERE {where} AND {_LIVE})"
        self.insert_if_absent = (
            f"INSERT INTO {t} (namespace, key, value, counter, expires_at) "
            f"VALUES ($2, $3, $4, $5, {expires}) ON CONFLICT (namespace, key) DO UPDATE SET "
            "value = EXCLUDED.value, counter = EXCLUDED.counter, expires_at = EXCLUDED.expires_at "
            f"WHERE {_EXPIRED} RETURNING true"
        )
        same = "t.value IS NOT DISTINCT FROM $7 AND t.counter IS NOT DISTINCT FROM $8"
        self.delete_if = (
            f"DELETE FROM {t} WHERE {where} AND {_LIVE} "
            "AND t.value IS NOT DISTINCT FROM $4 AND t.counter IS NOT DISTINCT FROM $5 RETURNING true"
        )
        update = f"UPDATE {t} SET value = $4, counter = $5, "
        self.update_if = (
            update + f"expires_at = {expires} WHERE {where} AND {_LIVE} AND {same} RETURNING true"
        )
        self.update_if_keep = (
            update + "expires_at = t.expires_at "
            f"WHERE {where} AND {_LIVE} AND t.value IS NOT DISTINCT FROM $6 "
            "AND t.counter IS NOT DISTINCT FROM $7 RETURNING true"
        )
        # a live non-integer row is left as it was and returns NULL: WrongTypeError
        self.increment = (
            f"INSERT INTO {t} (namespace, key, value, counter, expires_at) "
            f"VALUES ($2, $3, NULL, $4, {_NOW} + $5::bigint) ON CONFLICT (namespace, key) DO UPDATE SET "
            f"counter = CASE WHEN {_EXPIRED} THEN EXCLUDED.counter ELSE t.counter + EXCLUDED.counter END, "
            f"value = CASE WHEN {_EXPIRED} THEN NULL ELSE t.value END, "
            f"expires_at = CASE WHEN {_EXPIRED} THEN EXCLUDED.expires_at ELSE t.expires_at END "
            "RETURNING t.counter"
        )
        self.ttl = f"SELECT t.expires_at - {_NOW} FROM {t} WHERE {where} AND {_LIVE}"
        self.expire = (
            f"UPDATE {t} SET expires_at = {_NOW} + $4::bigint WHERE {where} AND {_LIVE} RETURNING true"
        )
        self.get_many = (
            f"SELECT t.key, t.value, t.counter FROM {t} "
            f"WHERE t.namespace = $2 AND t.key = ANY($3::bytea[]) AND {_LIVE}"
        )
        self.set_many = (
            f"INSERT INTO {t} (namespace, key, value, counter, expires_at) "
            f"SELECT $2, u.k, u.v, u.c, {_NOW} + $6::bigint "
            "FROM unnest($3::bytea[], $4::bytea[], $5::bigint[]) AS u(k, v, c) "
            "ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, "
            "counter = EXCLUDED.counter, expires_at = EXCLUDED.expires_at"
        )
        self.delete_many = (
            f"WITH gone AS (DELETE FROM {t} WHERE t.namespace = $2 AND t.key = ANY($3::bytea[]) "
            f"RETURNING {_LIVE} AS live) SELECT count(*) FILTER (WHERE live) FROM gone"
        )
        self.scan = (
            f"SELECT t.key FROM {t} WHERE t.namespace = $2 AND t.key >= $3 "
            "AND ($4::bytea IS NULL OR t.key < $4) AND ($5::bytea IS NULL OR t.key > $5) "
            f"AND ($6::bytea IS NULL OR t.key LIKE $6) AND {_LIVE} ORDER BY t.key LIMIT $7"
        )
        self.clear = (
            f"WITH gone AS (DELETE FROM {t} WHERE t.namespace = $2 RETURNING {_LIVE} AS live) "
            "SELECT count(*) FILTER (WHERE live) FROM gone"
        )
        self.sweep = (
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT s.ctid FROM {table} AS s "
            f"WHERE s.expires_at <= {_NOW} LIMIT $2 FOR UPDATE SKIP LOCKED)) "
            f"AND expires_at <= {_NOW}"
        )


def _where_of(dsn: str) -> str:
    """``host:port/dbname (user NAME)`` of a DSN, never its password."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "postgresql (unparsable DSN)"
    query = dict(parse_qsl(parts.query))
    if not parts.hostname and query.get("host"):
        host = query["host"]
    database = unquote(parts.path.lstrip("/")) or query.get("dbname") or parts.username or "?"
    user = f" as {unquote(parts.username)}" if parts.username else ""
    return f"postgresql://{host}:{port}/{database}{user}"


def _convert(url: str, name: str, value: str) -> Any:
    from statekit.storage.url import mask_url

    try:
        if name in ("namespace", "table"):
            if not value:
                raise ValueError
            return value
        if name in ("min_size", "max_size", "statement_cache_size"):
            return int(value)
        return float(value)
    except ValueError:
        raise ValueError(f"cannot open {mask_url(url)!r}: bad value {value!r} for {name}") from None

