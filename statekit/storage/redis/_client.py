"""Every redis-py client statekit uses is built here, and every redis-py error is mapped here.

One place for: the retry policy; clients built from a parsed URL (single node, Redis Cluster,
Sentinel); the bytes-returning twin of a user's client that decodes responses; describing a
client without its password; the conversion of redis-py exceptions into statekit errors. The
redis-py internals statekit reads (connection kwargs of pools and cluster clients, the Sentinel
pool's fields) are read only here; ``tests/contract/test_driver_internals.py`` fails clearly when a
redis-py release changes them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff

from statekit.errors import StatekitError, StorageUnavailableError
from statekit.storage.redis._urls import RedisTarget
from statekit.storage.url import mask_url

__all__ = [
    "UNAVAILABLE",
    "AsyncRedisClient",
    "Connected",
    "ServerError",
    "bytes_twin",
    "check_client",
    "connect",
    "connection_limit",
    "decodes_responses",
    "describe_client",
    "is_direct_pool",
    "translate",
]

AsyncRedisClient = redis.asyncio.Redis | RedisCluster

UNAVAILABLE: tuple[type[BaseException], ...] = (
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
"""redis-py errors (and socket errors) that mean "the server cannot be reached now"."""

DEFAULT_MAX_CONNECTIONS = 100
"""Operations in flight at once on a client statekit builds; more wait for a free connection."""


def retry_policy() -> Retry:
    """The retry policy of every client statekit builds: 2 retries, jittered 50-500 ms."""
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 2)


@dataclass
class Connected:
    """A client to use, whether statekit owns (and so closes) it, and a Sentinel to close."""

    client: Any
    owned: bool
    sentinel: Any = None

    async def close(self) -> None:
        """Close what statekit owns: the client (if owned) and the Sentinel's connections."""
        try:
            if self.owned:
                await self.client.aclose()
        except UNAVAILABLE:
            pass
        finally:
            if self.sentinel is not None:
                await close_sentinel(self.sentinel)


def check_client(client: object) -> AsyncRedisClient:
    """``client`` if it is an asyncio redis-py client; ``TypeError`` saying which to pass."""
    if isinstance(client, redis.asyncio.Redis | RedisCluster):
        return client
    if isinstance(client, redis.Redis | redis.RedisCluster):
        raise TypeError(
            "RedisStorage needs an asyncio client: pass redis.asyncio.Redis "
            "(or redis.asyncio.RedisCluster), not the synchronous "
            f"{type(client).__module__}.{type(client).__name__}"
        )
    raise TypeError(
        "RedisStorage takes a redis.asyncio.Redis, a redis.asyncio.RedisCluster or a "
        f"redis:// URL, not {type(client).__name__}"
    )


def connect(target: RedisTarget) -> Connected:
    """A fresh bytes-returning client for a parsed URL; opens no connection yet."""
    options = dict(target.options)
    max_connections = options.pop("max_connections", DEFAULT_MAX_CONNECTIONS)
    timeouts: dict[str, Any] = {
        "socket_timeout": options.pop("socket_timeout", None),
        "socket_connect_timeout": options.pop("socket_connect_timeout", 5.0),
    }
    if target.kind == "cluster":
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            # per node; RedisStorage keeps at most half this many operations in flight, as
            # redis-py's cluster client can hold a connection a moment past an operation's end
            max_connections=max_connections * 2,
            username=target.username,
            password=target.password,
            decode_responses=False,
            retry=retry_policy(),
            **timeouts,
        )
        return Connected(client, owned=True)
    if target.kind == "sentinel":
        sentinel_kwargs: dict[str, Any] = dict(timeouts, retry=retry_policy())
        for name in ("username", "password"):
            value = options.pop(f"sentinel_{name}", None)
            if value is not None:
                sentinel_kwargs[name] = value
        manager = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis-py 8
        client = manager.master_for(
            target.service or "",
            max_connections=max_connections,
            decode_responses=False,
            username=target.username,
            password=target.password,
            db=target.db,
            retry=retry_policy(),
            **timeouts,
        )
        return Connected(client, owned=True, sentinel=manager)
    where: dict[str, Any]
    if target.scheme == "unix":
        where = {"connection_class": UnixDomainSocketConnection, "path": target.path}
    else:
        host, port = target.nodes[0]
        where = {
            "connection_class": SSLConnection if target.scheme == "rediss" else Connection,
            "host": host,
            "port": port,
        }
    pool = redis.asyncio.ConnectionPool(
        **where,
        db=target.db,
        username=target.username,
        password=target.password,
        decode_responses=False,
        max_connections=max_connections,
        retry=retry_policy(),
        **timeouts,
        **options,
    )
    return Connected(redis.asyncio.Redis.from_pool(pool), owned=True)


def describe_client(client: Any) -> str:
    """``redis://host:port/db`` (or the cluster / sentinel form) of a client, never with its
    password (the user name is hidden too, through ``mask_url``)."""
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
        return mask_url(
            f"{scheme}://{user}{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
            f"/{kwargs.get('db', 0)}"
        )
    except (AttributeError, KeyError, TypeError):
        return type(client).__name__


def decodes_responses(client: AsyncRedisClient) -> bool:
    """True if ``client`` returns ``str`` instead of ``bytes``."""
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


def bytes_twin(client: AsyncRedisClient) -> AsyncRedisClient:
    """A client reaching the same server(s) as ``client`` but returning bytes.

    Works for a plain client, a ``RedisCluster`` and a Sentinel-managed (``master_for``) client;
    the twin owns its own connections (closed by ``aclose()``).
    """
    if isinstance(client, RedisCluster):
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


def is_direct_pool(client: Any) -> bool:
    """True for a one-node client without Sentinel (its commands may use the command lanes)."""
    pool = getattr(client, "connection_pool", None)
    return type(pool) in (redis.asyncio.ConnectionPool, redis.asyncio.BlockingConnectionPool)


def connection_limit(client: Any) -> int | None:
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


def cluster_max_connections(client: Any) -> int | None:
    """The per-node pool size of a ``RedisCluster`` (None if unknown)."""
    per_node = getattr(client, "connection_kwargs", {}).get("max_connections")
    return per_node if isinstance(per_node, int) else None


async def ping(client: Any) -> None:
    """PING the server; on a cluster every primary (so that every slot can be served)."""
    if isinstance(client, RedisCluster):
        await client.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.ping()


async def close_sentinel(manager: Any) -> None:
    """Close a ``redis.asyncio.Sentinel`` and its sentinel connections (redis-py 8 has
    ``Sentinel.aclose``; before it, each sentinel client is closed)."""
    if hasattr(manager, "aclose"):
        await manager.aclose()
    else:
        for sentinel in manager.sentinels:
            await sentinel.aclose()


class ServerError(StatekitError):
    """Redis answered with an error statekit did not expect."""


def translate(where: str, exc: BaseException) -> None:
    """Raise the statekit error for a redis-py exception met at ``where`` (a description free of
    secrets); return if it is not one, or if it is ``NoScriptError`` (handled by the caller)."""
    if isinstance(exc, redis.exceptions.NoScriptError):
        return
    if isinstance(exc, MasterNotFoundError):
        raise StorageUnavailableError(
            f"Redis at {where}: no sentinel names a usable primary (unknown "
            f"service name, sentinels unreachable, or a failover in progress): {mask_url(str(exc))}"
        ) from exc
    if isinstance(exc, UNAVAILABLE):
        raise StorageUnavailableError(
            f"Redis at {where} is unavailable: {type(exc).__name__}: {mask_url(str(exc))}"
        ) from exc
    if isinstance(exc, redis.exceptions.RedisError):
        raise ServerError(f"Redis at {where} answered with an error: {mask_url(str(exc))}") from exc
