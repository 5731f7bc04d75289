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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit
from urllib.parse import quote as quote_url

import asyncpg

from statekit.codec import Codec
from statekit.errors import StatekitError, StorageUnavailableError
from statekit.storage._coalesce import Coalescer, Pending
from statekit.storage._fastpath import FastPathStorage
from statekit.storage._glob import compile_glob, literal_prefix
from statekit.storage._postgres_sql import (
    SCHEMA_VERSION,
    Statements,
    check_table,
    like_filter,
    meta_sql,
    migrations,
    prefix_bounds,
    quote,
    schema_sql,
)
from statekit.storage._statements import statement_parts
from statekit.storage.base import Stored

__all__ = ["PostgresStorage", "SCHEMA_VERSION", "schema_sql"]

log = logging.getLogger("statekit.storage.postgres")

_SCAN_PAGE = 1000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

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
    asyncpg.InternalClientError,  # a connection left in a broken protocol state by a drop
    asyncpg.PostgresConnectionError,
    asyncpg.InvalidAuthorizationSpecificationError,  # wrong password, unknown role, pg_hba
    asyncpg.InvalidCatalogNameError,  # no such database
    asyncpg.OperatorInterventionError,  # 57P01 terminated, shutting down, starting up
    asyncpg.InsufficientResourcesError,  # too many connections, disk full
)
_RETRY_STATEMENT: Final = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


# asyncpg >= 0.30 lets a pool skip its reset query (a round trip per release): statekit sets no
# session state (no SET, LISTEN, cursors or session advisory locks), so there is nothing to reset;
# an open transaction is still rolled back by asyncpg itself.
_POOL_TAKES_RESET: Final = tuple(int(p) for p in asyncpg.__version__.split(".")[:2]) >= (0, 30)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset hook of statekit's own pools: nothing to undo (see ``_POOL_TAKES_RESET``)."""


def _split(stored: Stored) -> tuple[bytes | None, int | None]:
    """(value, counter) columns of a stored form."""
    return (None, stored) if type(stored) is int else (stored, None)  # type: ignore[return-value]


def _row_stored(value: bytes | None, counter: int | None) -> Stored:
    return counter if counter is not None else value  # type: ignore[return-value]


class PostgresStorage(FastPathStorage):
    """Storage in one PostgreSQL table (``table``, default ``statekit_kv``) over an asyncpg pool.

    ``dsn_or_pool``: a ``postgresql://`` DSN (statekit makes and closes the pool; ``min_size`` /
    ``max_size`` connections, ``statement_cache_size`` as asyncpg's, 0 for PgBouncer in
    transaction mode, ``connect_timeout`` seconds) or an existing ``asyncpg.Pool`` (used as it is,
    never closed by statekit). Expiry uses the server's clock unless ``clock`` (Unix seconds, for
    tests) is given; expired rows are deleted every ``sweep_interval`` seconds, at most
    ``sweep_batch`` rows per statement.
    """

    backend_name = "postgresql"
    _scan_may_repeat = False  # keyset pagination: each page starts strictly after the last key

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
        self.table: Final = check_table(table)
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
        self._sql = Statements(quote(table))
        self._coalescer: Coalescer | None = None

    # ------------------------------------------------------------------ construction from a URL

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStorage:
        """A storage for a ``postgresql://`` or ``postgres://`` URL; ``options`` override the URL's
        query parameters. The password may hold a raw ``/``, ``@`` or ``:`` (``?`` and ``#``
        must be percent-encoded). Raises ``ValueError`` naming the problem, never quoting the
        URL, for another scheme, a bad port, a bad parameter value, or unknown parameters."""
        from statekit.storage.url import StorageURL, url_error

        parsed = StorageURL.parse(url)
        scheme = parsed.scheme
        if scheme not in ("postgresql", "postgres"):
            raise url_error(scheme, "not a postgresql:// or postgres:// URL")
        if parsed.host.startswith("[") and "]" not in parsed.host:
            raise url_error(scheme, "an IPv6 host is missing its closing ']'")
        port = parsed.host.rpartition("]")[2]
        port = port.rpartition(":")[2] if ":" in port else ""
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise url_error(scheme, "the port is not a number from 1 to 65535")
        params: dict[str, Any] = {}
        driver: list[tuple[str, str]] = []
        unknown: list[str] = []
        for name, value in parsed.params:
            if name in _OWN_PARAMS:
                params[name] = _convert(scheme, name, value)
            elif name in _DRIVER_PARAMS:
                driver.append((name, value))
            else:
                unknown.append(name)
        if unknown:
            raise url_error(
                scheme,
                f"unknown parameters {sorted(set(unknown))}; accepted: "
                + ", ".join(_OWN_PARAMS + _DRIVER_PARAMS),
            )
        user = ""
        if parsed.userinfo is not None:
            user = quote_url(parsed.username or "", safe="")
            if parsed.password is not None:
                user += ":" + quote_url(parsed.password, safe="")
            user += "@"
        query = f"?{urlencode(driver)}" if driver else ""
        dsn = f"postgresql://{user}{parsed.host}{parsed.path}{query}"
        params.update(options)
        return cls(dsn, **params)

    def describe(self) -> str:
        """``host:port/database`` of the server (never the password)."""
        return self._where

    def __repr__(self) -> str:
        return (
            f"PostgresStorage({self.describe()}, table={self.table!r}, namespace={self.namespace!r})"
        )

    # ------------------------------------------------------------------ errors

    def _unavailable(self, exc: BaseException) -> StorageUnavailableError:
        from statekit.storage.url import mask_url

        text = mask_url(str(exc)) or "no details"
        return StorageUnavailableError(
            f"PostgreSQL at {self._where} is unavailable: {type(exc).__name__}: {text}"
        )

    def _failed(self, exc: asyncpg.PostgresError) -> StatekitError:
        from statekit.storage.url import mask_url

        state = getattr(exc, "sqlstate", None) or "?"
        hint = ""
        if isinstance(exc, asyncpg.InvalidSQLStatementNameError):
            hint = (" (behind PgBouncer in transaction or statement mode, pass "
                    "statement_cache_size=0)")
        return StatekitError(
            f"PostgreSQL at {self._where} refused a statement on table {self.table!r} "
            f"(SQLSTATE {state}): {(mask_url(str(exc)).splitlines() or [''])[0]}{hint}"
        )

    async def _run(self, how: str, sql: str, *args: Any, read: bool = False) -> Any:
        """Run one statement through the pool and return asyncpg's answer, with every driver error
        converted here: connection failures to ``StorageUnavailableError`` (a read is retried once
        on a fresh connection first), out-of-range integers to ``OverflowError``, deadlocks and
        serialization failures retried, any other server error to ``StatekitError``."""
        pool = self._started_pool()

        async def call() -> Any:
            if how == "fetchrow":
                return await pool.fetchrow(sql, *args)
            if how == "fetchval":
                return await pool.fetchval(sql, *args)
            if how == "fetch":
                return await pool.fetch(sql, *args)
            return await pool.execute(sql, *args)

        return await self._converted(call, read)

    async def _run_in_transaction(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Run ``statements`` one after the other in one transaction on one connection (the event
        loop runs while each is on the server), errors converted as by ``_run``; a deadlock or a
        serialization failure runs them all again."""
        pool = self._started_pool()

        async def call() -> None:
            async with pool.acquire() as conn, conn.transaction():
                for sql, args in statements:
                    await conn.execute(sql, *args)

        await self._converted(call, False)

    def _started_pool(self) -> asyncpg.Pool:
        pool = self._pool
        if pool is None:
            raise StorageUnavailableError(f"{self!r} is not started")
        return pool

    async def _converted(self, call: Callable[[], Awaitable[Any]], read: bool) -> Any:
        """``await call()`` with the driver's errors converted (see ``_run``)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except asyncpg.NumericValueOutOfRangeError as exc:
                raise OverflowError(str(exc)) from exc
            except asyncpg.ClientConfigurationError as exc:  # a bad DSN parameter value
                raise ValueError(f"cannot connect to {self._where}: {exc}") from None
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
                options: dict[str, Any] = {}
                if _POOL_TAKES_RESET:
                    options["reset"] = _keep_session
                pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    statement_cache_size=self._statement_cache_size,
                    timeout=self._connect_timeout,
                    **options,
                )
            except asyncpg.ClientConfigurationError as exc:  # a bad DSN parameter value
                raise ValueError(f"cannot open {self._where}: {exc}") from None
            except _UNAVAILABLE as exc:
                raise self._unavailable(exc) from exc
            except asyncpg.PostgresError as exc:
                raise self._failed(exc) from exc
            except ValueError as exc:  # a malformed DSN (asyncpg's message)
                raise ValueError(f"cannot open {self._where}: {exc}") from None
        try:
            await self._migrate(pool)
        except BaseException:
            if self._given_pool is None:
                with contextlib.suppress(Exception):
                    await pool.close()
            raise
        self._pool = pool
        self._coalescer = Coalescer(
            pool.get_max_size(),
            {
                "get": self._get_batch,
                "set": self._set_batch,
                "increment": self._increment_batch,
                "insert_if_absent": self._insert_if_absent_batch,
                "update_if": self._update_if_batch,
                "delete": self._delete_batch,
            },
            distinct=frozenset({"insert_if_absent", "update_if"}),
        )
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="statekit-postgres-sweeper")

    async def _migrate(self, pool: asyncpg.Pool) -> None:
        """Create or migrate the schema to ``SCHEMA_VERSION`` (concurrent starters serialise on an
        advisory lock); a schema at the current version is only read, so a role without CREATE
        rights works once a DBA has run ``schema_sql()``."""
        meta = quote(self.table + "_meta")
        try:
            async with pool.acquire() as conn:
                if self._given_pool is not None:  # name the server in errors, as for a DSN
                    row = await conn.fetchrow(
                        "SELECT host(inet_server_addr()), inet_server_port(), current_database(), "
                        "current_user"
                    )
                    host = row[0] or "localhost (unix socket)"
                    self._where = f"postgresql://{host}:{row[1] or 5432}/{row[2]} as {row[3]} (given pool)"
                version = await self._schema_version(conn, meta)
                if version == SCHEMA_VERSION:
                    return
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "statekit:" + self.table)
                    version = await self._schema_version(conn, meta)
                    create, upsert = meta_sql(self.table)
                    for steps in migrations(self.table)[version:]:
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
        if self._coalescer is not None:
            await self._coalescer.drain()
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

    async def _plant(self, key: str, raw: bytes) -> None:
        """Test hook (``statekit.testing.raw``): ``raw`` as the key's value bytes, no expiry."""
        await self._run("execute", self._sql.set, self._now(), self._ns, key.encode(), raw, None, None)

    async def _raw(self, key: str) -> Stored | None:
        """Test hook (``statekit.testing.raw``): what the live row physically holds."""
        return await self._get_one(key.encode())

    async def _get(self, key: str) -> Stored | None:
        k = key.encode()
        return await self._batched("get", (k,), lambda: self._get_one(k))  # type: ignore[no-any-return]

    async def _get_one(self, k: bytes) -> Stored | None:
        row = await self._run("fetchrow", self._sql.get, self._now(), self._ns, k, read=True)
        return None if row is None else _row_stored(row[0], row[1])

    async def _set(self, key: str, stored: Stored, ttl_ms: int | None, keep_ttl: bool) -> None:
        value, counter = _split(stored)
        k = key.encode()
        if keep_ttl:
            await self._run("execute", self._sql.set_keep, self._now(), self._ns, k, value, counter, ttl_ms)
            return
        await self._batched(
            "set", (k, value, counter, ttl_ms),
            lambda: self._run("execute", self._sql.set, self._now(), self._ns, k, value, counter, ttl_ms),
        )

    def _batched(self, kind: str, args: tuple[Any, ...], single: Callable[[], Any]) -> Any:
        coalescer = self._coalescer
        if coalescer is None:
            raise StorageUnavailableError(f"{self!r} is not started")
        return coalescer.run(kind, args, single)

    async def _delete(self, key: str) -> bool:
        k = key.encode()
        return bool(await self._batched(
            "delete", (k,), lambda: self._run("fetchval", self._sql.delete, self._now(), self._ns, k)
        ))

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
            return bool(await self._batched(
                "insert_if_absent", (k, value, counter, ttl_ms),
                lambda: self._run("fetchval", sql.insert_if_absent, now, self._ns, k, value, counter, ttl_ms),
            ))
        old_value, old_counter = _split(expected)
        if new is None:
            return bool(await self._run("fetchval", sql.delete_if, now, self._ns, k, old_value, old_counter))
        value, counter = _split(new)
        if keep_ttl:
            return bool(await self._run(
                "fetchval", sql.update_if_keep, now, self._ns, k, value, counter, old_value, old_counter
            ))
        return bool(await self._batched(
            "update_if", (k, value, counter, ttl_ms, old_value, old_counter),
            lambda: self._run(
                "fetchval", sql.update_if, now, self._ns, k, value, counter, ttl_ms, old_value, old_counter
            ),
        ))

    async def _increment(self, key: str, amount: int, ttl_ms: int | None) -> int:
        k = key.encode()
        return await self._batched(  # type: ignore[no-any-return]
            "increment", (k, amount, ttl_ms, key), lambda: self._increment_one(key, k, amount, ttl_ms)
        )

    async def _increment_one(self, key: str, k: bytes, amount: int, ttl_ms: int | None) -> int:
        try:
            row = await self._run("fetchrow", self._sql.increment, self._now(), self._ns, k, amount, ttl_ms)
        except OverflowError:
            raise self.overflow_error(key, amount) from None
        if row[0] is None:
            raise self.wrong_type_error(key)
        return int(row[0])

    # ------------------------------------------------------------------ batches (see _coalesce)

    async def _get_batch(self, items: list[Pending[Any]]) -> None:
        keys = list({item.args[0] for item in items})
        rows = await self._run("fetch", self._sql.get_many, self._now(), self._ns, keys, read=True)
        found = {bytes(r[0]): _row_stored(r[1], r[2]) for r in rows}
        for item in items:
            item.resolve(found.get(item.args[0]))

    async def _set_batch(self, items: list[Pending[Any]]) -> None:
        last = {item.args[0]: item.args for item in items}  # concurrent writes: the last one wins
        rows = [last[k] for k in sorted(last)]
        await self._run(
            "execute", self._sql.set_batch, self._now(), self._ns,
            *([row[n] for row in rows] for n in range(4)),
        )
        for item in items:
            item.resolve(None)

    async def _delete_batch(self, items: list[Pending[Any]]) -> None:
        keys = sorted({item.args[0] for item in items})
        rows = await self._run("fetch", self._sql.delete_batch, self._now(), self._ns, keys)
        live = {bytes(r[0]) for r in rows if r[1]}
        for item in items:  # of several deletes of one key, the first removed it
            item.resolve(item.args[0] in live)
            live.discard(item.args[0])

    async def _insert_if_absent_batch(self, items: list[Pending[Any]]) -> None:
        rows = sorted(item.args for item in items)
        done = await self._run(
            "fetch", self._sql.insert_if_absent_batch, self._now(), self._ns,
            *([row[n] for row in rows] for n in range(4)),
        )
        written = {bytes(r[0]) for r in done}
        for item in items:
            item.resolve(item.args[0] in written)

    async def _update_if_batch(self, items: list[Pending[Any]]) -> None:
        rows = sorted(item.args for item in items)
        done = await self._run(
            "fetch", self._sql.update_if_batch, self._now(), self._ns,
            *([row[n] for row in rows] for n in range(6)),
        )
        written = {bytes(r[0]) for r in done}
        for item in items:
            item.resolve(item.args[0] in written)

    async def _increment_batch(self, items: list[Pending[Any]]) -> None:
        """Sum the amounts per key, run one upsert for all keys, and give each caller the value
        it would have seen had the calls run one by one in arrival order. A key whose amounts
        differ in sign (an intermediate value could overflow) and every key of a batch that
        overflows run one by one instead."""
        groups: dict[bytes, list[Pending[Any]]] = {}
        for item in items:
            groups.setdefault(item.args[0], []).append(item)
        alone: list[list[Pending[Any]]] = []
        keys: list[bytes] = []
        sums: list[int] = []
        ttls: list[int | None] = []
        for k in sorted(groups):
            group = groups[k]
            amounts = [item.args[1] for item in group]
            total = sum(amounts)
            if len({a > 0 for a in amounts if a}) > 1 or not _INT64_MIN <= total <= _INT64_MAX:
                alone.append(group)
                continue
            keys.append(k)
            sums.append(total)
            ttls.append(group[0].args[2])  # the first call is the one that may create the key
        if keys:
            try:
                rows = await self._run(
                    "fetch", self._sql.increment_batch, self._now(), self._ns, keys, sums, ttls
                )
            except OverflowError:
                alone += [groups[k] for k in keys]
            else:
                for row in rows:
                    group = groups[bytes(row[0])]
                    value = row[1]
                    for item in reversed(group):
                        if value is None:
                            item.fail(self.wrong_type_error(item.args[3]))
                        else:
                            item.resolve(value)
                            value -= item.args[1]
        for group in alone:
            for item in group:
                k, amount, ttl_ms, key = item.args
                try:
                    item.resolve(await self._increment_one(key, k, amount, ttl_ms))
                except (StatekitError, OverflowError) as exc:
                    item.fail(exc)

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
        now, sql = self._now(), self._sql.set_many
        parts = statement_parts(values)  # asyncpg encodes them in the event loop's thread
        if len(parts) == 1:
            await self._run("execute", sql, now, self._ns, keys, values, counters, ttl_ms)
            return
        await self._run_in_transaction([
            (sql, (now, self._ns, keys[start:end], values[start:end], counters[start:end], ttl_ms))
            for start, end in parts
        ])

    async def _delete_many(self, keys: list[str]) -> int:
        encoded = sorted(k.encode() for k in keys)
        return int(await self._run("fetchval", self._sql.delete_many, self._now(), self._ns, encoded))

    async def _scan(self, pattern: str) -> AsyncIterator[str]:
        matches = compile_glob(pattern)
        low, high = prefix_bounds(literal_prefix(pattern).encode())
        like = like_filter(pattern)
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


def _convert(scheme: str, name: str, value: str) -> Any:
    from statekit.storage.url import url_error

    try:
        if name in ("namespace", "table"):
            if not value:
                raise ValueError
            return value
        if name in ("min_size", "max_size", "statement_cache_size"):
            return int(value)
        return float(value)
    except ValueError:
        kind = "a non-empty name" if name in ("namespace", "table") else "a number"
        raise url_error(scheme, f"parameter {name} must be {kind}") from None

