"""Redis storage over redis-py's asyncio client: single node, Redis Cluster or Valkey.

URLs (``RedisStorage.from_url``; parsed in ``statekit.storage.redis._urls``):
``redis://[user:password@]host:port/db``, ``rediss://`` (TLS), ``unix:///path``,
``redis+cluster://host:port[,host:port...]``, ``redis+sentinel://host:port[,...]/service``. Every
redis-py client is built, and every redis-py error mapped, in ``statekit.storage.redis._client``. Extra ``hiredis`` installs the fast parser. Keys are
``{namespace}:{key}`` with ``%`` and ``:`` of the namespace percent-escaped. Every operation is one
round trip (Lua scripts sent as EVALSHA where a check and a write must be atomic, pipelines for
batches) and touches one key, so it is Redis Cluster safe. On a single node, concurrent commands
are pipelined together (``statekit.storage.redis._lanes``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal

import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from statekit.codec import Codec
from statekit.errors import StatekitError, StorageUnavailableError
from statekit.storage._fastpath import FastPathStorage
from statekit.storage._glob import escape_glob
from statekit.storage.base import Stored
from statekit.storage.redis import _client
from statekit.storage.redis._client import AsyncRedisClient, Connected, ServerError, translate
from statekit.storage.redis._cluster_lanes import ClusterLanes
from statekit.storage.redis._lanes import CommandLanes
from statekit.storage.redis._urls import RedisTarget, parse_redis_url
from statekit.storage.url import StorageURL

__all__ = ["RedisStorage", "redis_key_prefix"]

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


class RedisStorage(FastPathStorage):
    """Storage in Redis (or Valkey, or Redis Cluster).

    ``client_or_url``: a ``redis.asyncio.Redis``, a ``redis.asyncio.RedisCluster`` or a URL.
    A client that decodes responses is fine: statekit talks to the same server through a twin
    connection pool that returns bytes. On a single node, single-key commands and MGET / MSET /
    DEL go through auto-pipelined command lanes (``command_lanes`` connections held from the
    pool; see ``statekit.storage.redis._lanes``); other operations each hold one of the pool's remaining
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
        self._target: RedisTarget | None = None
        self._given: AsyncRedisClient | None = None
        if isinstance(client_or_url, str):
            target = parse_redis_url(client_or_url)
            if target.common:
                raise ValueError(
                    f"RedisStorage(url): the URL's {' and '.join(sorted(target.common))} "
                    "parameters are options of open_storage / RedisStorage.from_url; pass them "
                    "as keywords here"
                )
            self._target = target
            self._where = target.description
        else:
            self._given = _client.check_client(client_or_url)
            self._where = _client.describe_client(client_or_url)
        self._prefix = redis_key_prefix(namespace)
        self._match_prefix = escape_glob(self._prefix)
        self._scan_count = scan_count
        self._client: Any = None
        self._connected: Connected | None = None
        self._cluster = isinstance(client_or_url, RedisCluster)
        self._slots: asyncio.Semaphore | None = None
        self._lanes: CommandLanes | None = None
        self._cluster_lanes: ClusterLanes | None = None
        self._script_loads: dict[str, asyncio.Future[None]] = {}
        self._op = _Operation(self)
        self._exec: Any = None
        self._cmd = self._cmd_slotted

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStorage:
        """A ``RedisStorage`` for any Redis URL (see the module docstring) with its parameters
        ``namespace``, ``default_ttl`` and the driver's (``db``, ``socket_timeout``,
        ``socket_connect_timeout``, ``max_connections``, ...); keyword ``options`` win. The
        client is built on ``start()``. Raises ``ValueError`` naming a malformed part or an
        unknown parameter, never quoting the URL."""
        common = parse_redis_url(url).common
        parsed = StorageURL.parse(url)
        rest = tuple((k, v) for k, v in parsed.params if k not in common)
        return cls(replace(parsed, params=rest).geturl(), **{**common, **options})

    def describe(self) -> str:
        return self._where

    @property
    def client(self) -> AsyncRedisClient:
        """The bytes-returning client statekit uses (available after ``start()``)."""
        if self._client is None:
            raise StorageUnavailableError(f"{self!r} is not started")
        return self._client  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ lifecycle

    def _connect(self) -> Connected:
        if self._target is not None:
            return _client.connect(self._target)
        assert self._given is not None
        if _client.decodes_responses(self._given):
            return Connected(_client.bytes_twin(self._given), owned=True)
        return Connected(self._given, owned=False)

    async def _open(self) -> None:
        connected = self._connect()
        try:
            await self._use(connected.client)
        except BaseException:
            await connected.close()
            raise
        self._connected = connected

    async def _use(self, client: Any) -> None:
        limit = _client.connection_limit(client)
        self._cluster = isinstance(client, RedisCluster)
        if _client.is_direct_pool(client):
            # one node, no sentinel: single-key commands go through auto-pipelined lanes
            lanes = max(1, min(self.command_lanes, (limit or 8) // 4))
            self._lanes = CommandLanes(client.connection_pool, lanes)
            self._exec = self._lanes.call
            self._cmd = self._cmd_direct
            if limit:
                limit = max(1, limit - lanes)
        elif self._cluster:
            # single-key commands go through the lanes of the primary that owns their slot
            per_node = _client.cluster_max_connections(client)
            size = max(1, self.command_lanes // 2)  # see command_lanes
            if per_node is not None:
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
        self._client = None
        connected, self._connected = self._connected, None
        if connected is not None:
            await connected.close()

    async def _ping(self) -> None:
        async with self._op:
            await _client.ping(self._client)

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
            translate(self._where, exc)
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
        except ServerError as exc:
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

    async def _plant(self, key: str, raw: bytes) -> None:
        """Store ``raw`` under ``key`` without the codec (the test hook of ``statekit.testing``)."""
        async with self._op:
            await self._client.set(self._prefix + key, raw)

    async def _raw(self, key: str) -> bytes | None:
        """What is physically stored under ``key`` (the test hook of ``statekit.testing``)."""
        async with self._op:
            return await self._client.get(self._prefix + key)  # type: ignore[no-any-return]

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
        translate(self._storage._where, exc)
        return False
