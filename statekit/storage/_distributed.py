"""Redis Cluster and Sentinel URLs (``redis+cluster://``, ``redis+sentinel://``) for open_storage.

``redis+cluster://[user:password@]host:port[,host:port...]`` opens a ``redis.asyncio.RedisCluster``;
``redis+sentinel://[user:password@]host:port[,host:port...]/service_name`` opens the primary that
the sentinels name for ``service_name`` (``redis.asyncio.sentinel.Sentinel.master_for``), which
follows failovers. Routing and failover are redis-py's own. Query parameters besides
``namespace`` / ``default_ttl``: ``socket_timeout`` and ``socket_connect_timeout`` (seconds),
``max_connections`` (operations in flight at once, default 100; more wait for a free connection),
and for sentinel ``db``, ``sentinel_username`` and ``sentinel_password`` (when the sentinels
themselves require a password; the URL's own credentials are those of the data nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from statekit.storage.base import BaseStorage
from statekit.storage.redis import RedisStorage
from statekit.storage.url import SCHEMES, mask_url

__all__ = ["DistributedSpec", "open_distributed", "parse_distributed_url"]

_DEFAULT_PORTS = {"redis+cluster": 6379, "redis+sentinel": 26379}
_COMMON = ("namespace", "default_ttl")
_FLOAT_PARAMS = ("socket_timeout", "socket_connect_timeout")
_INT_PARAMS = ("max_connections",)
_SENTINEL_PARAMS = ("db", "sentinel_username", "sentinel_password")


@dataclass(frozen=True)
class DistributedSpec:
    """A parsed ``redis+cluster://`` or ``redis+sentinel://`` URL (``repr`` hides passwords)."""

    scheme: str
    nodes: tuple[tuple[str, int], ...]
    service: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    socket_timeout: float | None = None
    socket_connect_timeout: float = 5.0
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    max_connections: int = 100

    def describe(self) -> str:
        """The URL without any password, e.g. ``redis+sentinel://h:26379,h:26380/mymaster``."""
        user = f"{self.username or ''}:***@" if self.password is not None else (
            f"{self.username}@" if self.username else ""
        )
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.nodes)
        tail = f"/{self.service}" if self.service is not None else ""
        return f"{self.scheme}://{user}{hosts}{tail}"


def _safe(url: str) -> str:
    """``url`` with the password of its user part (even one holding a raw ``@``) replaced."""
    scheme, sep, rest = url.partition("://")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    userinfo, at, hosts = rest[:cut].rpartition("@")
    if sep and at and ":" in userinfo:
        rest = f"{userinfo.partition(':')[0]}:***@{hosts}{rest[cut:]}"
    return mask_url(f"{scheme}{sep}{rest}")


def _bad_url(url: str, why: str) -> ValueError:
    return ValueError(
        f"cannot open storage URL {_safe(url)!r}: {why}; accepted schemes: {', '.join(SCHEMES)}"
    )


def _parse_node(url: str, text: str, default_port: int) -> tuple[str, int]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise _bad_url(url, f"malformed IPv6 node {text!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise _bad_url(url, f"node {text!r} has no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _bad_url(url, f"node {text!r}: the port is not a number in 1..65535")
    return host, int(port_text)


def parse_distributed_url(url: str) -> DistributedSpec:
    """Parse a ``redis+cluster://`` / ``redis+sentinel://`` URL.

    Raises ``ValueError`` naming the accepted schemes for a malformed URL (no node, bad port,
    missing or extra service name, unknown query parameter).
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
        raise _bad_url(url, "not a redis+cluster:// or redis+sentinel:// URL")
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user_text, colon, pw_text = userinfo.partition(":")
        username = unquote(user_text) or None
        password = unquote(pw_text) if colon else None
    if not hosts:
        raise _bad_url(url, "no host:port")
    default_port = _DEFAULT_PORTS[scheme]
    nodes = tuple(_parse_node(url, part.strip(), default_port) for part in hosts.split(","))

    service: str | None = None
    path = path.strip("/")
    if scheme == "redis+sentinel":
        if not path:
            raise _bad_url(url, "no service name (redis+sentinel://host:port/service_name)")
        if "/" in path:
            raise _bad_url(url, f"the path must be just the service name, got {path!r}")
        service = unquote(path)
    elif path:
        raise _bad_url(url, f"a cluster URL has no path (got {path!r}); Redis Cluster has only db 0")

    options: dict[str, Any] = {}
    allowed = _FLOAT_PARAMS + _INT_PARAMS + (_SENTINEL_PARAMS if scheme == "redis+sentinel" else ())
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _COMMON:
            continue
        if name not in allowed:
            raise _bad_url(url, f"unknown parameter {name!r} for {scheme}:// (accepted: {', '.join(allowed)})")
        if name in _FLOAT_PARAMS:
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if not seconds > 0:
                raise _bad_url(url, f"{name} must be seconds > 0, got {value!r}")
            options[name] = seconds
        elif name == "db" or name in _INT_PARAMS:
            if not value.isdigit() or (name != "db" and int(value) < 1):
                raise _bad_url(url, f"{name} must be a {'non-negative' if name == 'db' else 'positive'} integer, got {value!r}")
            options[name] = int(value)
        else:
            options[name] = value
    return DistributedSpec(
        scheme=scheme,
        nodes=nodes,
        service=service,
        username=username,
        password=password,
        **options,
    )


def _retry() -> Any:
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff

    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 2)


def _connect(spec: DistributedSpec) -> tuple[Any, Any]:
    """Return (bytes-returning client, Sentinel manager or None) for ``spec``; opens nothing."""
    timeouts: dict[str, Any] = {
        "socket_timeout": spec.socket_timeout,
        "socket_connect_timeout": spec.socket_connect_timeout,
    }
    if spec.scheme == "redis+cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in spec.nodes],
            # per node; RedisStorage keeps at most half this many operations in flight, as
            # redis-py's cluster client can hold a connection a moment past an operation's end
            max_connections=spec.max_connections * 2,
            username=spec.username,
            password=spec.password,
            decode_responses=False,
            retry=_retry(),
            **timeouts,
        )
        return client, None
    from redis.asyncio.sentinel import Sentinel

    sentinel_kwargs: dict[str, Any] = dict(timeouts, retry=_retry())
    if spec.sentinel_password is not None:
        sentinel_kwargs["password"] = spec.sentinel_password
    if spec.sentinel_username is not None:
        sentinel_kwargs["username"] = spec.sentinel_username
    manager = Sentinel(list(spec.nodes), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis-py 8
    client = manager.master_for(
        spec.service or "",
        max_connections=spec.max_connections,
        decode_responses=False,
        username=spec.username,
        password=spec.password,
        db=spec.db,
        retry=_retry(),
        **timeouts,
    )
    return client, manager


class DistributedRedisStorage(RedisStorage):
    """A ``RedisStorage`` that owns a cluster or sentinel client built from a parsed URL.

    Each ``start()`` builds a fresh client; on a cluster it also reads the topology, so
    ``start()`` raises ``StorageUnavailableError`` naming the nodes when none answers (a later
    operation starts it again). ``stop()`` closes the client and the sentinel connections.
    """

    def __init__(self, spec: DistributedSpec, **options: Any) -> None:
        super().__init__(spec.describe(), **options)
        self._spec = spec
        self._url = None
        self._where = spec.describe()
        self._manager: Any = None

    async def _open(self) -> None:
        client, manager = _connect(self._spec)
        self._given = client  # RedisStorage._open loads a cluster's layout before first use
        await super()._open()
        self._owned = True  # statekit built this client, so stop() closes it
        self._manager = manager

    async def _ping(self) -> None:
        if self._spec.scheme != "redis+cluster":
            await super()._ping()
            return
        from redis.asyncio.cluster import RedisCluster

        # healthy means every primary answers, so that every slot can be served
        async with self._op:
            await self.client.ping(target_nodes=RedisCluster.PRIMARIES)

    async def _close(self) -> None:
        manager, self._manager = self._manager, None
        try:
            await super()._close()
        finally:
            if manager is not None:
                await close_sentinel(manager)


async def close_sentinel(manager: Any) -> None:
    """Close a ``redis.asyncio.Sentinel`` and its sentinel connections (redis-py 8 has
    ``Sentinel.aclose``; before it, each sentinel client is closed)."""
    if hasattr(manager, "aclose"):
        await manager.aclose()
    else:
        for sentinel in manager.sentinels:
            await sentinel.aclose()


def open_distributed(url: str, scheme: str, params: dict[str, Any]) -> BaseStorage:
    """Return an unstarted ``RedisStorage`` for a cluster or sentinel URL.

    ``params`` are the storage's constructor options. Raises ``ValueError`` for a malformed URL.
    Unreachable nodes or an unknown sentinel service surface as ``StorageUnavailableError`` on
    ``start()`` or the first operation, naming the nodes / service (never a password).
    """
    spec = parse_distributed_url(url)
    if spec.scheme != scheme:  # pragma: no cover - open_storage passes the URL's own scheme
        raise _bad_url(url, f"scheme {scheme!r} does not match")
    return DistributedRedisStorage(spec, **params)
