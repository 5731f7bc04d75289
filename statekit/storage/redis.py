"""Redis storage over redis-py's asyncio client: single node, Redis Cluster or Valkey.

URLs: ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS); cluster and sentinel URLs are
handled by ``open_storage``. Extra ``hiredis`` installs the fast parser. Keys are
``{namespace}:{key}`` with ``%`` and ``:`` of the namespace percent-escaped. Every operation is one
round trip (Lua scripts sent as EVALSHA where a check and a write must be atomic, pipelines for
batches) and touches one key, so it is Redis Cluster safe. On a single node, concurrent commands
are pipelined together (``statekit.storage._lanes``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal

import redis
import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import MasterNotFoundError, SentinelConnectionPool

from statekit.codec import Codec
from statekit.errors import StatekitError, StorageUnavailableError
from statekit.storage._cluster_lanes import ClusterLanes
from statekit.storage._glob import escape_glob
from statekit.storage._lanes import CommandLanes
from statekit.storage.base import BaseStorage, Stored

__all__ = ["RedisStorage", "redis_key_prefix"]

AsyncRedisClient = redis.asyncio.Redis | RedisCluster

_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.RedisClusterException,
    OSError,
    asyncio.TimeoutError,
)

# KEYS[1]; ARGV: has_expected ('0'/'1'), expected, has_new ('0'/'1'), new, ttl_ms or '', keep ('0'/'1')
_CAS_LUA = """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if cur then return 0 end
elseif cur ~= ARGV[2] then
  return 0
end
if ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
elseif ARGV[6] == '1' and cur then
  redis.call('SET', KEYS[1], ARGV[4], 'KEEPTTL')
elseif ARGV[5] ~= '' then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
else
  redis.call('SET', KEYS[1], ARGV[4])
end
return 1
"""

# KEYS[1]; ARGV: value, ttl_ms -- keep a live key's expiry, else expire in ttl_ms
_SET_KEEP_TTL_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""

# KEYS[1]; ARGV: amount, ttl_ms -- the ttl applies only if this call creates the key
_INCR_TTL_LUA = """
redis.call('SET', KEYS[1], '0', 'PX', ARGV[2], 'NX')
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n > 9007199254740991 or n < -9007199254740991 then
  return redis.call('GET', KEYS[1])
end
return n
"""
# Lua numbers are doubles: a result beyond 2^53 is read back as text to stay exact. If INCRBY
# fails (not an integer, overflow) the script stops; SET NX changed nothing, as the key existed.


def redis_key_prefix(namespace: str) -> str:
    """Return the Redis key prefix of ``namespace``: ``%``, ``:``, ``{`` and ``}`` percent-escaped,
    then ``:``. Escaping braces keeps a namespace from becoming a Redis Cluster hash tag that would
    put all its keys in one slot; the keys' own hash tags (``fsm:{…}``) stay in effect."""
    escaped = namespace.replace("%", "%25").replace(":", "%3A")
    return escaped.replace("{", "%7B").replace("}", "%7D") + ":"


def _describe_client(client: Any) -> str:
    """``redis://host:port/db`` (or the cluster / sentinel form) of a client, never with its password."""
    try:
        if isinstance(client, RedisCluster):
            nodes = client.get_nodes() or client.startup_nodes or []
            where = ",".join(f"{n.host}:{n.port}" for n in nodes[:3]) or "?"
            return f"redis+cluster://{where}"
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        if isinstance(pool, SentinelConnectionPool):
            sentinels = ",".join(
                f"{s.connection_pool.connection_kwargs.get('host', '?')}:"
                f"{s.connection_pool.connection_kwargs.get('port', '?')}"
                for s in pool.sentinel_manager.sentinels
            )
            return f"redis+sentinel://{sentinels}/{pool.service_name}"
        if "path" in kwargs:
            return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
        scheme = "rediss" if pool.connection_class.__name__ == "SSLConnection" else "redis"
        user = f"{kwargs['username']}@" if kwargs.get("username") else ""
        return f"{scheme}://{user}{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    except (AttributeError, KeyError, TypeError):
        return type(client).__name__


def _decodes_responses(client: AsyncRedisClient) -> bool:
    if isinstance(client, RedisCluster):
        return bool(client.get_encoder().decode_responses)
    return bool(client.connection_pool.connection_kwargs.get("decode_responses", False))


# RedisCluster keeps its construction arguments only as connection kwargs; these are the ones the
# constructor takes back under the same name (the rest are derived or internal).
_CLUSTER_TWIN_KWARGS = (
    "max_connections", "credential_provider", "username", "password", "client_name",
    "encoding", "encoding_errors", "health_check_interval", "socket_connect_timeout",
    "socket_keepalive", "socket_keepalive_options", "socket_read_size", "socket_timeout",
    "protocol", "ssl_ca_certs", "ssl_ca_data", "ssl_cert_reqs", "ssl_certfile",
    "ssl_check_hostname", "ssl_keyfile", "ssl_min_version", "ssl_ciphers",
)


def _bytes_twin(client: AsyncRedisClient) -> AsyncRedisClient:
    """A client reaching the same server(s) as ``client`` but returning bytes.

    Works for a plain client, a ``RedisCluster`` and a Sentinel-managed (``master_for``) client;
    the twin owns its own connections (closed by ``aclose()``).
    """
    if isinstance(client, RedisCluster):
        from redis.asyncio.cluster import ClusterNode
        from redis.asyncio.connection import SSLConnection

        ckw = client.connection_kwargs
        kwargs = {k: ckw[k] for k in _CLUSTER_TWIN_KWARGS if k in ckw and ckw[k] is not None}
        if ckw.get("connection_class") is SSLConnection:
            kwargs["ssl"] = True
        if client.load_balancing_strategy is not None:
            kwargs["load_balancing_strategy"] = client.load_balancing_strategy
        elif client.read_from_replicas:
            kwargs["read_from_replicas"] = True
        nodes = client.startup_nodes or client.get_nodes()
        manager = client.nodes_manager
        return RedisCluster(
            startup_nodes=[ClusterNode(n.host, n.port) for n in nodes],
            require_full_coverage=manager.require_full_coverage,
            address_remap=manager.address_remap,
            retry=client.retry,
            decode_responses=False,
            **kwargs,
        )
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs["decode_responses"] = False
    if isinstance(pool, SentinelConnectionPool):
        kwargs.pop("connection_pool", None)  # the pool's weak self-reference
        twin_pool: Any = type(pool)(
            pool.service_name,
            pool.sentinel_manager,
            is_master=pool.is_master,
            check_connection=pool.check_connection,
            connection_class=pool.connection_class,
            max_connections=pool.max_connections,
            **kwargs,
        )
    else:
        # a default (non-blocking) pool would fail bursts with "Too many connections": block instead
        pool_class: Any = (
            redis.asyncio.BlockingConnectionPool
            if type(pool) is redis.asyncio.ConnectionPool
            else type(pool)
        )
        if issubclass(pool_class, redis.asyncio.BlockingConnectionPool):
            kwargs["timeout"] = getattr(pool, "timeout", None)
        twin_pool = pool_class(
            connection_class=pool.connection_class, max_connections=pool.max_connections, **kwargs
        )
    return redis.asyncio.Redis.from_pool(twin_pool)


def _connection_limit(client: Any) -> int | None:
    """How many operations may be in flight before the client's pool raises "Too many
    connections" (None: its pool waits by itself, or has no practical bound)."""
    if isinstance(client, RedisCluster):
        # half the per-node pool: the cluster client may hold a connection a moment past the
        # end of an operation (seen with redis-py 8.1)
        limit = getattr(client, "connection_kwargs", {}).get("max_connections")
        return max(1, limit // 2) if isinstance(limit, int) and limit < 100_000 else None
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, redis.asyncio.BlockingConnectionPool) or pool is None:
        return None
    return int(pool.max_connections)


class RedisStorage(BaseStorage):
    """Storage in Redis (or Valkey, or Redis Cluster).

    ``client_or_url``: a ``redis.asyncio.Redis``, a ``redis.asyncio.RedisCluster`` or a URL.
    A client that decodes responses is fine: statekit talks to the same server through a twin
    connection pool that returns bytes. On a single node, single-key commands and MGET / MSET /
    DEL go through auto-pipelined command lanes (``command_lanes`` connections held from the
    pool; see ``statekit.storage._lanes``); other operations each hold one of the pool's remaining
    connections, so bursts above the pool size wait instead of failing with "Too many
    connections". A client passed in stays open on ``stop()`` (the lanes' connections go back to
    its pool); one statekit created is closed.
    Raises ``TypeError`` for a synchronous client.
    """

    backend_name = "redis"
    command_lanes = 4
    """Connections a storage holds for its auto-pipelined single-key commands, at most a quarter
    of the pool (on a cluster, half as many per primary: batches spread over three primaries came
    out fuller and faster with 2 than with 4, see docs/bench/cluster.md); Sentinel-managed
    clients send every command through redis-py."""

    def __init__(
        self,
        client_or_url: redis.asyncio.Redis | RedisCluster | str,
        *,
        namespace: str = "statekit",
        default_ttl: int | float | timedelta | None = None,
        codec: Codec | None = None,
        max_key_bytes: int = 1024,
        max_value_bytes: int = 1024 * 1024,
        scan_count: int = 500,
    ) -> None:
        super().__init__(
            namespace=namespace,
            default_ttl=default_ttl,
            codec=codec,
            max_key_bytes=max_key_bytes,
            max_value_bytes=max_value_bytes,
        )
        self._url: str | None = None
        self._given: AsyncRedisClient | None = None
        if isinstance(client_or_url, str):
            from statekit.storage.url import mask_url

            self._url = client_or_url
            self._where = mask_url(client_or_url)
        elif isinstance(client_or_url, redis.asyncio.Redis | RedisCluster):
            self._given = client_or_url
            self._where = _describe_client(client_or_url)
        elif isinstance(client_or_url, redis.Redis | redis.RedisCluster):
            raise TypeError(
                "RedisStorage needs an asyncio client: pass redis.asyncio.Redis "
                "(or redis.asyncio.RedisCluster), not the synchronous "
                f"{type(client_or_url).__module__}.{type(client_or_url).__name__}"
            )
        else:
            raise TypeError(
                "RedisStorage takes a redis.asyncio.Redis, a redis.asyncio.RedisCluster or a "
                f"redis:// URL, not {type(client_or_url).__name__}"
            )
        self._prefix = redis_key_prefix(namespace)
        self._match_prefix = escape_glob(self._prefix)
        self._scan_count = scan_count
        self._client: Any = None
        self._owned = False
        self._cluster = isinstance(client_or_url, RedisCluster)
        self._slots: asyncio.Semaphore | None = None
        self._lanes: CommandLanes | None = None
        self._cluster_lanes: ClusterLanes | None = None
        self._script_loads: dict[str, asyncio.Future[None]] = {}
        self._op = _Operation(self)
        self._exec: Any = None
        self._cmd = self._cmd_slotted

    def _describe(self) -> str:
        return self._where

    @property
    def client(self) -> AsyncRedisClient:
        """The bytes-returning client statekit uses (available after ``start()``)."""
        if self._client is None:
            raise StorageUnavailableError(f"{self!r} is not started")
        return self._client  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ lifecycle

    async def _open(self) -> None:
        if self._url is not None:
            from statekit.storage.url import redis_client_from_url

            client = redis_client_from_url(self._url)
            self._owned = True
        else:
            assert self._given is not None
            if _decodes_responses(self._given):
                client, self._owned = _bytes_twin(self._given), True
            else:
                client, self._owned = self._given, False
        limit = _connection_limit(client)
        self._cluster = isinstance(client, RedisCluster)
        pool = getattr(client, "connection_pool", None)
        if type(pool) in (redis.asyncio.ConnectionPool, redis.asyncio.BlockingConnectionPool):
            # one node, no sentinel: single-key commands go through auto-pipelined lanes
            lanes = max(1, min(self.command_lanes, (limit or 8) // 4))
            self._lanes = CommandLanes(pool, lanes)
            self._exec = self._lanes.call
            self._cmd = self._cmd_direct
            if limit:
                limit = max(1, limit - lanes)
        elif self._cluster:
            # single-key commands go through the lanes of the primary that owns their slot
            per_node = getattr(client, "connection_kwargs", {}).get("max_connections")
            size = max(1, self.command_lanes // 2)  # see command_lanes
            if isinstance(per_node, int):
                size = max(1, min(size, per_node // 4))
            self._lanes = None
            self._cluster_lanes = ClusterLanes(client, size)
            self._exec = self._cluster_lanes.call
            self._cmd = self._cmd_direct
        else:
            self._lanes = None
            self._exec = client.execute_command
            self._cmd = self._cmd_slotted
        self._slots = asyncio.Semaphore(limit) if limit else None
        if self._cluster:
            # Load the slot layout before the first burst: redis-py's cluster client fails when
            # many first commands race to initialise it.
            async with self._op:
                await client.initialize()
        self._client = client
        self._cas = client.register_script(_CAS_LUA)
        self._set_keep = client.register_script(_SET_KEEP_TTL_LUA)
        self._incr_ttl = client.register_script(_INCR_TTL_LUA)

    async def _close(self) -> None:
        lanes, self._lanes = self._lanes, None
        if lanes is not None:
            await lanes.close()
        cluster_lanes, self._cluster_lanes = self._cluster_lanes, None
        if cluster_lanes is not None:
            await cluster_lanes.close()
        client, self._client = self._client, None
        if client is not None and self._owned:
            try:
                await client.aclose()
            except _UNAVAILABLE:
                pass

    async def _ping(self) -> None:
        async with self._op:
            await self._client.ping()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _wire(stored: Stored) -> bytes:
        return str(stored).encode() if type(stored) is int else stored  # type: ignore[return-value]

    @staticmethod
    def _parse(raw: bytes | None) -> Stored | None:
        if raw is None:
            return None
        if raw and raw[0] < 0x80:
            try:
                return int(raw)
            except ValueError:
                return bytes(raw)  # decode_stored reports it as corrupt
        return bytes(raw)

    async def _cmd_direct(self, *command: Any) -> Any:
        """One command through the command lanes, its errors turned into statekit errors
        (``NoScriptError`` is left to ``_run``)."""
        try:
            return await self._exec(*command)
        except StatekitError:
            raise
        except Exception as exc:
            _translate(self, exc)
            raise

    async def _cmd_slotted(self, *command: Any) -> Any:
        """One command through redis-py, holding a connection slot."""
        async with self._op:
            return await self._exec(*command)

    async def _run(self, script: Any, rkey: str, *args: Any) -> Any:
        """Run a one-key Lua ``script`` (a redis-py ``Script``): EVALSHA sent directly (through
        ``Script.__call__`` it ran at 0.82–0.91x in docs/benchmarks.md). When the server does
        not know the script (first use, restart, failover) it is loaded once and sent again; on
        a cluster or through Sentinel the ``Script`` itself loads it on the key's node."""
        try:
            return await self._cmd("EVALSHA", script.sha, 1, rkey, *args)
        except redis.exceptions.NoScriptError:
            pass
        if self._lanes is None:
            async with self._op:
                return await script(keys=[rkey], args=list(args))
        load = self._script_loads.get(script.sha)
        if load is None:  # one SCRIPT LOAD, however many callers met NOSCRIPT at once
            load = asyncio.ensure_future(self._load_script(script))
            self._script_loads[script.sha] = load
            load.add_done_callback(lambda _: self._script_loads.pop(script.sha, None))
        await asyncio.shield(load)
        return await self._cmd("EVALSHA", script.sha, 1, rkey, *args)

    async def _load_script(self, script: Any) -> None:
        async with self._op:
            await self._client.script_load(script.script)

    # ------------------------------------------------------------------ primitives

    async def _get(self, key: str) -> Stored | None:
        raw = await self._cmd("GET", self._prefix + key)
        if raw is None:
            return None
        if raw[0] < 0x80:
            try:
                return int(raw)
            except ValueError:
                return raw  # type: ignore[no-any-return]
        return raw  # type: ignore[no-any-return]

    async def _set(self, key: str, stored: Stored, ttl_ms: int | None, keep_ttl: bool) -> None:
        rkey = self._prefix + key
        if keep_ttl:
            if ttl_ms is None:
                await self._cmd("SET", rkey, self._wire(stored), "KEEPTTL")
            else:
                await self._run(self._set_keep, rkey, self._wire(stored), ttl_ms)
        elif ttl_ms is None:
            await self._cmd("SET", rkey, self._wire(stored))
        else:
            await self._cmd("SET", rkey, self._wire(stored), "PX", ttl_ms)

    async def _delete(self, key: str) -> bool:
        return bool(await self._cmd("DEL", self._prefix + key))

    async def _compare_and_set(
        self,
        key: str,
        expected: Stored | None,
        new: Stored | None,
        ttl_ms: int | None,
        keep_ttl: bool,
    ) -> bool:
        args = [
            b"0" if expected is None else b"1",
            b"" if expected is None else self._wire(expected),
            b"0" if new is None else b"1",
            b"" if new is None else self._wire(new),
            b"" if ttl_ms is None else str(ttl_ms).encode(),
            b"1" if keep_ttl else b"0",
        ]
        return bool(await self._run(self._cas, self._prefix + key, *args))

    async def _increment(self, key: str, amount: int, ttl_ms: int | None) -> int:
        rkey = self._prefix + key
        try:
            if ttl_ms is None:
                return int(await self._cmd("INCRBY", rkey, amount))
            return int(await self._run(self._incr_ttl, rkey, amount, ttl_ms))
        except _ServerError as exc:
            text = str(exc.__cause__)
            if "overflow" in text:
                raise self.overflow_error(key, amount) from None
            if "not an integer" in text:
                raise self.wrong_type_error(key) from None
            raise

    async def _get_ttl(self, key: str) -> float | None:
        ms = int(await self._cmd("PTTL", self._prefix + key))
        return None if ms < 0 else ms / 1000

    async def _expire(self, key: str, ttl_ms: int | None) -> bool:
        rkey = self._prefix + key
        if ttl_ms is not None:
            return bool(await self._cmd("PEXPIRE", rkey, ttl_ms))
        async with self._op:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.persist(rkey)
                pipe.exists(rkey)
                _, exists = await pipe.execute()
            return bool(exists)

    async def _get_many(self, keys: list[str]) -> dict[str, Stored]:
        rkeys = [self._prefix + k for k in keys]
        if self._cluster:
            async with self._op:
                async with self._client.pipeline(transaction=False) as pipe:
                    for rkey in rkeys:
                        pipe.get(rkey)
                    values = await pipe.execute()
        else:
            values = await self._cmd("MGET", *rkeys)
        out: dict[str, Stored] = {}
        for key, raw in zip(keys, values, strict=True):
            parsed = self._parse(raw)
            if parsed is not None:
                out[key] = parsed
        return out

    async def _set_many(self, items: list[tuple[str, Stored]], ttl_ms: int | None) -> None:
        if ttl_ms is None and not self._cluster:  # one MSET: atomic, one command
            args: list[object] = []
            for key, stored in items:
                args += (self._prefix + key, self._wire(stored))
            await self._cmd("MSET", *args)
            return
        async with self._op:
            async with self._client.pipeline(transaction=not self._cluster) as pipe:
                for key, stored in items:
                    pipe.set(self._prefix + key, self._wire(stored), px=ttl_ms)
                await pipe.execute()

    async def _delete_rkeys(self, rkeys: list[bytes | str]) -> int:
        if self._cluster:
            async with self._op:
                async with self._client.pipeline(transaction=False) as pipe:
                    for rkey in rkeys:
                        pipe.delete(rkey)
                    return sum(await pipe.execute())
        return int(await self._cmd("DEL", *rkeys))

    async def _delete_many(self, keys: list[str]) -> int:
        return await self._delete_rkeys([self._prefix + k for k in keys])

    async def _scan_raw(self, match: str) -> AsyncIterator[bytes]:
        scan = self._client.scan_iter(match=match, count=self._scan_count).__aiter__()
        while True:
            async with self._op:  # each SCAN page holds a connection slot only while it runs
                try:
                    rkey = await scan.__anext__()
                except StopAsyncIteration:
                    return
            yield rkey

    async def _scan(self, pattern: str) -> AsyncIterator[str]:
        cut = len(self._prefix.encode())
        async for rkey in self._scan_raw(self._match_prefix + pattern):
            yield rkey[cut:].decode("utf-8", "surrogateescape")

    async def _clear(self) -> int:
        removed = 0
        batch: list[bytes | str] = []
        async for rkey in self._scan_raw(self._match_prefix + "*"):
            batch.append(rkey)
            if len(batch) >= 500:
                removed += await self._delete_rkeys(batch)
                batch = []
        if batch:
            removed += await self._delete_rkeys(batch)
        return removed


class _ServerError(StatekitError):
    """Redis answered with an error statekit did not expect."""


class _Operation:
    """One operation against Redis: holds a connection slot (so a burst above the pool size
    waits instead of failing with "Too many connections") and converts redis-py exceptions into
    statekit errors, in one place."""

    __slots__ = ("_storage",)

    def __init__(self, storage: RedisStorage) -> None:
        self._storage = storage

    async def __aenter__(self) -> None:
        slots = self._storage._slots
        if slots is not None:
            await slots.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        slots = self._storage._slots
        if slots is not None:
            slots.release()
        if exc is None or isinstance(exc, StatekitError):
            return False
        _translate(self._storage, exc)
        return False


def _translate(storage: RedisStorage, exc: BaseException) -> None:
    """Raise the statekit error for a redis-py exception (return if it is not one, or if it is
    ``NoScriptError``, which ``RedisStorage._run`` handles)."""
    if isinstance(exc, redis.exceptions.NoScriptError):
        return
    if isinstance(exc, MasterNotFoundError):
        raise StorageUnavailableError(
            f"Redis at {storage._where}: no sentinel names a usable primary (unknown "
            f"service name, sentinels unreachable, or a failover in progress): {_scrub(str(exc))}"
        ) from exc
    if isinstance(exc, _UNAVAILABLE):
        raise StorageUnavailableError(
            f"Redis at {storage._where} is unavailable: {type(exc).__name__}: {_scrub(str(exc))}"
        ) from exc
    if isinstance(exc, redis.exceptions.RedisError):
        raise _ServerError(
            f"Redis at {storage._where} answered with an error: {_scrub(str(exc))}"
        ) from exc


def _scrub(text: str) -> str:
    """Drop anything that looks like a URL credential from a driver message."""
    from statekit.storage.url import mask_credentials

    return mask_credentials(text)
