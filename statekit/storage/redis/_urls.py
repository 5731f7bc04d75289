"""Redis URLs, parsed once for every shape of deployment (imports no driver).

``redis://[user:password@]host[:port][/db]``, ``rediss://…`` (TLS), ``unix://[user:password@]/path``,
``redis+cluster://[user:password@]host:port[,host:port...]`` and
``redis+sentinel://[user:password@]host:port[,host:port...]/service_name``. The password may
hold a raw ``/``, ``@`` or ``:`` (everything up to the last ``@`` is the user part); ``?`` and
``#`` must be percent-encoded. Every malformed part is one ``ValueError`` naming it, never quoting
the URL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

from statekit.storage.url import (
    StorageURL,
    bool_param,
    int_param,
    seconds_param,
    str_param,
    url_error,
)

__all__ = ["SCHEMES", "RedisTarget", "parse_redis_url"]

Kind = Literal["single", "cluster", "sentinel"]

SCHEMES: Mapping[str, Kind] = {
    "redis": "single",
    "rediss": "single",
    "unix": "single",
    "redis+cluster": "cluster",
    "redis+sentinel": "sentinel",
}
_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "redis+cluster": 6379, "redis+sentinel": 26379}

_Converter = Callable[[str, str], Any]
_EVERY: dict[str, _Converter] = {
    "socket_timeout": seconds_param,
    "socket_connect_timeout": seconds_param,
    "max_connections": int_param(1),
}
_SINGLE: dict[str, _Converter] = {
    **_EVERY,
    "db": int_param(0),
    "socket_keepalive": bool_param,
    "health_check_interval": seconds_param,
    "client_name": str_param,
    "protocol": int_param(2),
}
_TLS: dict[str, _Converter] = {
    "ssl_cert_reqs": str_param,
    "ssl_ca_certs": str_param,
    "ssl_certfile": str_param,
    "ssl_keyfile": str_param,
    "ssl_check_hostname": bool_param,
}
_SENTINEL: dict[str, _Converter] = {
    **_EVERY,
    "db": int_param(0),
    "sentinel_username": str_param,
    "sentinel_password": str_param,
}


@dataclass(frozen=True)
class RedisTarget:
    """Where a Redis URL points and how to reach it (``repr`` shows no password)."""

    kind: Kind
    scheme: str
    description: str
    nodes: tuple[tuple[str, int], ...] = ()
    path: str | None = None
    service: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    common: Mapping[str, Any] = field(default_factory=dict)


def _node(scheme: str, text: str, default_port: int) -> tuple[str, int]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise url_error(scheme, "a malformed IPv6 node (write [address]:port)")
        port_text = rest[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise url_error(scheme, "no host")
    if not port_text:
        return unquote(host), default_port
    if not port_text.isdigit() or not port_text.isascii() or not 0 < int(port_text) < 65536:
        raise url_error(scheme, "the port is not a number in 1..65535")
    return unquote(host), int(port_text)


def parse_redis_url(url: str) -> RedisTarget:
    """Parse any Redis URL of ``SCHEMES``; ``ValueError`` naming the problem otherwise."""
    parsed = StorageURL.parse(url)
    scheme = parsed.scheme
    kind = SCHEMES.get(scheme)
    if kind is None:
        raise url_error(scheme, f"RedisStorage opens only {', '.join(s + '://' for s in SCHEMES)} URLs")
    accepted = {"single": _SINGLE, "cluster": _EVERY, "sentinel": _SENTINEL}[kind]
    if scheme == "rediss":
        accepted = {**accepted, **_TLS}
    common, options = parsed.storage_options(accepted)
    password = parsed.password
    username = parsed.username
    db = options.pop("db", None)
    path_text = parsed.path.strip("/")

    if scheme == "unix":
        if parsed.host or not parsed.path.strip("/"):
            raise url_error(scheme, "a unix:// URL is unix:///path/to/redis.sock[?db=N]")
        path = unquote(parsed.path)
        description = parsed.describe(path=f"{path}?db={db or 0}")
        return RedisTarget(
            kind, scheme, description, path=path, username=username,
            password=password, db=db or 0, options=options, common=common,
        )
    if not parsed.host:
        raise url_error(scheme, "no host")
    nodes = tuple(_node(scheme, part.strip(), _DEFAULT_PORTS[scheme]) for part in parsed.host.split(","))
    service: str | None = None
    if kind == "single":
        if len(nodes) > 1:
            raise url_error(scheme, "one host only (for several nodes use redis+cluster:// or redis+sentinel://)")
        if path_text:
            if "/" in path_text:
                raise url_error(scheme, "the path must be just the db number, e.g. /0")
            if not path_text.isdigit() or not path_text.isascii():
                raise url_error(scheme, "the db in the path is not a non-negative integer")
            if db is not None and db != int(path_text):
                raise url_error(scheme, "the db is given twice (path and ?db=) with different values")
            db = int(path_text)
    elif kind == "sentinel":
        if not path_text:
            raise url_error(scheme, "no service name (redis+sentinel://host:port/service_name)")
        if "/" in path_text:
            raise url_error(scheme, "the path must be just the service name")
        service = unquote(path_text)
    elif path_text:
        raise url_error(scheme, "a cluster URL has no path; Redis Cluster has only db 0")
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in nodes)
    tail = f"/{db or 0}" if kind == "single" else f"/{service}" if service is not None else ""
    description = parsed.describe(host=hosts, path=tail)
    return RedisTarget(
        kind, scheme, description, nodes=nodes, service=service, username=username,
        password=password, db=db or 0, options=options, common=common,
    )
