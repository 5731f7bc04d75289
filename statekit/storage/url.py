"""``open_storage(url)``: pick and configure a backend from a URL.

Schemes: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////absolute.db``,
``sqlite://:memory:``, ``redis://[user:password@]host:port/db``, ``rediss://…`` (TLS),
``redis+cluster://host:port``, ``redis+sentinel://host:port/service_name``, ``postgresql://`` and
``postgres://`` (``statekit.storage.postgres``, imported only when such a URL is opened).
Query parameters ``namespace`` and ``default_ttl`` (seconds) apply to every scheme.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from statekit.storage.base import BaseStorage

__all__ = ["SCHEMES", "mask_credentials", "mask_url", "open_storage"]

SCHEMES = (
    "memory://",
    "sqlite:///path.db",
    "sqlite://:memory:",
    "redis://",
    "rediss://",
    "redis+cluster://",
    "redis+sentinel://",
    "postgresql://",
    "postgres://",
)
_COMMON_PARAMS = ("namespace", "default_ttl")
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]*)@", re.I)


def mask_credentials(text: str) -> str:
    """Return ``text`` with the password of every URL in it replaced by ``***``."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def mask_url(url: str) -> str:
    """Return ``url`` safe to show: the password replaced by ``***`` and no query secrets."""
    masked = mask_credentials(url)
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", masked)


def _bad_url(url: str, why: str) -> ValueError:
    return ValueError(
        f"cannot open storage URL {mask_url(url)!r}: {why}; accepted schemes: {', '.join(SCHEMES)}"
    )


def _split_params(url: str, query: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Return (storage options, remaining driver parameters) of a URL query."""
    options: dict[str, Any] = {}
    rest: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "namespace":
            if not value:
                raise _bad_url(url, "namespace must not be empty")
            options["namespace"] = value
        elif name == "default_ttl":
            try:
                options["default_ttl"] = float(value)
            except ValueError:
                raise _bad_url(url, f"default_ttl must be seconds, got {value!r}") from None
        else:
            rest[name] = value
    return options, rest


def open_storage(url: str, **options: Any) -> BaseStorage:
    """Return an (unstarted) storage for ``url``; keyword ``options`` go to its constructor.

    Raises ``ValueError`` naming the accepted schemes for an unknown scheme or a malformed URL.
    The password of a Redis URL never appears in the error or in the storage's ``repr``.
    """
    if not isinstance(url, str) or "://" not in url:
        raise _bad_url(str(url), "not a URL")
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    parts = urlsplit(url)
    params, driver = _split_params(url, parts.query)
    params.update(options)
    if scheme == "memory":
        if driver:
            raise _bad_url(url, f"unknown parameters {sorted(driver)} for memory://")
        from statekit.storage.memory import MemoryStorage

        return MemoryStorage(**params)
    if scheme == "sqlite":
        path = rest.split("?", 1)[0]
        if path == ":memory:" or path == "/:memory:":
            path = ":memory:"
        elif path.startswith("/"):
            path = unquote(path[1:])
        else:
            raise _bad_url(url, "SQLite URLs are sqlite:///relative.db or sqlite:////absolute.db")
        if not path:
            raise _bad_url(url, "no database path")
        if "durability" in driver:
            params.setdefault("durability", driver.pop("durability"))
        if driver:
            raise _bad_url(url, f"unknown parameters {sorted(driver)} for sqlite://")
        from statekit.storage.sqlite import SQLiteStorage

        return SQLiteStorage(path, **params)
    if scheme in ("redis", "rediss", "unix"):
        if not parts.hostname and scheme != "unix":
            raise _bad_url(url, "no host")
        try:
            _ = parts.port
        except ValueError:
            raise _bad_url(url, "the port is not a number") from None
        from statekit.storage.redis import RedisStorage

        return RedisStorage(_strip_common(url), **params)
    if scheme in ("redis+cluster", "redis+sentinel"):
        from statekit.storage import _distributed

        return _distributed.open_distributed(url, scheme, params)
    if scheme in ("postgresql", "postgres"):
        # until the scheme registry (entry points ``statekit.storages``) resolves these
        from statekit.storage.postgres import PostgresStorage

        return PostgresStorage.from_url(url, **options)
    raise _bad_url(url, f"unknown scheme {scheme!r}")


def _strip_common(url: str) -> str:
    """``url`` without statekit's own query parameters (the driver would reject them)."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in _COMMON_PARAMS]
    query = "&".join(f"{k}={v}" for k, v in kept)
    return parts._replace(query=query).geturl()


def redis_client_from_url(url: str) -> Any:
    """A bytes-returning asyncio Redis client for ``url``, failing fast while the server is down."""
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff

    pool = redis.asyncio.ConnectionPool.from_url(
        url,
        decode_responses=False,
        socket_connect_timeout=5,
        max_connections=100,  # RedisStorage holds a slot per operation: bursts wait, never fail
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 2),
    )
    return redis.asyncio.Redis.from_pool(pool)
