"""``open_storage(url)``: a registry of URL schemes, and the one credential masker.

A scheme names a storage class that offers ``from_url(url, **options)``. Schemes come from, in
this order: ``register_storage(scheme, target)`` at run time; the entry-point group
``statekit.storages`` (name = scheme, value = ``"package.module:Class"``), where statekit declares
its own schemes in its ``pyproject.toml`` exactly as a third party would; and, only for a scheme no
entry point declares, the same built-in table below (a source checkout that was never installed
has no entry-point metadata; a test keeps this table equal to the ``pyproject.toml`` one). A
backend's module, and its driver, is imported only when its scheme is opened; this module imports
no backend.

``mask_url`` is the one function that hides credentials: every message, ``repr`` and log line of
statekit that may show a URL goes through it.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, unquote

from statekit.storage.base import MAX_TTL_SECONDS, BaseStorage

__all__ = [
    "ENTRY_POINT_GROUP",
    "StorageURL",
    "UrlOpener",
    "bool_param",
    "int_param",
    "mask_url",
    "open_storage",
    "register_storage",
    "registered_schemes",
    "seconds_param",
    "str_param",
    "url_error",
]

ENTRY_POINT_GROUP = "statekit.storages"

_BUILTIN: Mapping[str, str] = {
    "memory": "statekit.storage.memory:MemoryStorage",
    "sqlite": "statekit.storage.sqlite:SQLiteStorage",
    "redis": "statekit.storage.redis:RedisStorage",
    "rediss": "statekit.storage.redis:RedisStorage",
    "unix": "statekit.storage.redis:RedisStorage",
    "redis+cluster": "statekit.storage.redis:RedisStorage",
    "redis+sentinel": "statekit.storage.redis:RedisStorage",
    "postgresql": "statekit.storage.postgres:PostgresStorage",
    "postgres": "statekit.storage.postgres:PostgresStorage",
}
"""Fallback for a source checkout without entry-point metadata; equal to pyproject.toml's table."""

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*\Z")
_URL_START = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://")
_WHITESPACE = re.compile(r"(\s+)")
_SECRET_PARAM = re.compile(r"(?i)((?:password|passwd|pwd|secret|token)=)[^&#\s'\"]*")


class UrlOpener(Protocol):
    """What a registered target is: a class (or any object) with ``from_url(url, **options)``."""

    def from_url(self, url: str, **options: Any) -> BaseStorage: ...


_registered: dict[str, str | UrlOpener] = {}
_from_entry_points: dict[str, list[str]] | None = None


# ---------------------------------------------------------------------- the masker


def _mask_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    rest = _SECRET_PARAM.sub(r"\1***", rest)
    if rest.startswith("/"):  # no authority (sqlite:///path): nothing to hide before a path
        return f"{scheme}{sep}{rest}"
    _, at, after = rest.rpartition("@")
    return f"{scheme}{sep}***@{after}" if at else f"{scheme}{sep}{rest}"


def mask_url(text: str) -> str:
    """Return ``text`` with the credentials of every URL in it hidden.

    Everything between ``scheme://`` and the last ``@`` of the URL is replaced by ``***``
    (user name and password, whatever characters they hold: ``/``, ``@``, ``:``, even ``://``),
    and so is the value of every ``password=`` / ``secret=`` / ``token=`` parameter. A URL runs
    to the next whitespace. Over-masking is preferred to a leak.
    """
    if not isinstance(text, str):
        text = str(text)
    if "://" not in text:
        return _SECRET_PARAM.sub(r"\1***", text)
    out: list[str] = []
    for token in _WHITESPACE.split(text):
        found = _URL_START.search(token)
        if found is None:
            out.append(_SECRET_PARAM.sub(r"\1***", token))
        else:
            out.append(_SECRET_PARAM.sub(r"\1***", token[: found.start()]))
            out.append(_mask_one(token[found.start() :]))
    return "".join(out)


# ---------------------------------------------------------------------- parsing


def url_error(scheme: str | None, why: str) -> ValueError:
    """The ``ValueError`` for a storage URL that cannot be opened: names the problem and the
    registered schemes, and never quotes the URL (it may hold a password)."""
    what = f"a {scheme}:// URL" if scheme else "the URL"
    return ValueError(
        f"cannot open storage URL ({what}): {why}; accepted schemes: "
        + ", ".join(f"{s}://" for s in registered_schemes())
    )


@dataclass(frozen=True)
class StorageURL:
    """A storage URL split without losing anything a password may contain.

    ``userinfo`` is everything between ``scheme://`` and the last ``@`` before the query (so a
    password may hold a raw ``/``, ``@`` or ``:``; ``?`` and ``#`` must be percent-encoded),
    still percent-encoded; ``host`` is the rest of the authority (``host:port``, or
    comma-separated nodes), ``path`` what follows it (with its leading ``/``), ``params`` the
    query. ``repr`` shows no credentials.
    """

    scheme: str
    userinfo: str | None
    host: str
    path: str
    params: tuple[tuple[str, str], ...]

    def __repr__(self) -> str:
        return f"StorageURL({self.describe()!r})"

    def describe(self, host: str | None = None, path: str | None = None) -> str:
        """The URL for messages: no query, and ``***@`` in place of any user part (``host`` /
        ``path`` replace the URL's own, e.g. normalised)."""
        user = "" if self.userinfo is None else "***@"
        return f"{self.scheme}://{user}{self.host if host is None else host}{self.path if path is None else path}"

    @property
    def username(self) -> str | None:
        """The decoded user name, or None."""
        if self.userinfo is None:
            return None
        return unquote(self.userinfo.partition(":")[0]) or None

    @property
    def password(self) -> str | None:
        """The decoded password, or None when the URL has none."""
        if self.userinfo is None or ":" not in self.userinfo:
            return None
        return unquote(self.userinfo.partition(":")[2])

    def geturl(self) -> str:
        """The URL again (with its credentials: never show it, see ``describe``)."""
        user = "" if self.userinfo is None else f"{self.userinfo}@"
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in self.params)
        return f"{self.scheme}://{user}{self.host}{self.path}" + (f"?{query}" if query else "")

    @classmethod
    def parse(cls, url: object) -> StorageURL:
        """Split ``url``; ``ValueError`` (not quoting it) if it has no ``scheme://``."""
        if not isinstance(url, str):
            raise url_error(None, f"expected a str, got {type(url).__name__}")
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep or not _SCHEME.match(scheme):
            raise url_error(None, "it does not start with scheme://")
        rest = rest.partition("#")[0]
        head, _, query = rest.partition("?")
        userinfo: str | None = None
        if not head.startswith("/"):
            before, at, after = head.rpartition("@")
            if at:
                userinfo, head = before, after
        slash = head.find("/")
        host, path = (head, "") if slash < 0 else (head[:slash], head[slash:])
        try:
            params = tuple(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
        except ValueError:  # pragma: no cover - parse_qsl is lenient without strict_parsing
            raise url_error(scheme, "the query cannot be parsed") from None
        return cls(scheme, userinfo, host, path, params)

    def storage_options(
        self, accepted: Mapping[str, Callable[[str, str], Any]] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return (storage options ``namespace`` / ``default_ttl``, backend options) of the query.

        ``accepted`` maps each backend parameter to a converter ``(name, text) -> value`` that
        raises ``ValueError`` naming the problem. Raises ``ValueError`` (``url_error``) for an
        unknown, repeated or malformed parameter.
        """
        accepted = accepted or {}
        common: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        seen: set[str] = set()
        for name, value in self.params:
            if name in seen:
                raise url_error(self.scheme, f"parameter {name!r} is given twice")
            seen.add(name)
            if name == "namespace":
                if not value:
                    raise url_error(self.scheme, "namespace must not be empty")
                common["namespace"] = value
            elif name == "default_ttl":
                common["default_ttl"] = _convert(self.scheme, name, value, seconds_param)
            elif name in accepted:
                extra[name] = _convert(self.scheme, name, value, accepted[name])
            else:
                names = ", ".join(["namespace", "default_ttl", *sorted(accepted)])
                raise url_error(
                    self.scheme, f"unknown parameter {name[:40]!r} for {self.scheme}:// (accepted: {names})"
                )
        return common, extra


def _convert(scheme: str, name: str, value: str, convert: Callable[[str, str], Any]) -> Any:
    try:
        return convert(name, value)
    except ValueError as exc:
        raise url_error(scheme, str(exc)) from None


def seconds_param(name: str, text: str) -> float:
    """A URL parameter holding seconds > 0 (at most ``MAX_TTL_SECONDS``)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (0 < seconds <= MAX_TTL_SECONDS):
        raise ValueError(f"{name} must be a number of seconds > 0, got {text[:40]!r}")
    return seconds


def int_param(low: int = 0) -> Callable[[str, str], int]:
    """A converter for a URL parameter holding a decimal integer >= ``low``."""

    def convert(name: str, text: str) -> int:
        if not text.isdigit() or not text.isascii() or int(text) < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {text[:40]!r}")
        return int(text)

    return convert


def bool_param(name: str, text: str) -> bool:
    """A URL parameter holding a boolean (``true``/``false``, ``1``/``0``, ``yes``/``no``)."""
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {text[:40]!r}")


def str_param(name: str, text: str) -> str:
    """A URL parameter holding any text."""
    return text


# ---------------------------------------------------------------------- the registry


def register_storage(scheme: str, target: str | UrlOpener) -> None:
    """Make ``open_storage`` open ``scheme://`` URLs with ``target``.

    ``target`` is ``"package.module:Class"`` (imported on first use) or an object with a
    ``from_url(url, **options)`` method (usually the storage class). A run-time registration wins
    over an entry point and over a built-in scheme of the same name. Raises ``ValueError`` for a
    scheme that is not ``[a-z][a-z0-9+.-]*`` or a malformed target string, ``TypeError`` for a
    target without ``from_url``.
    """
    if not isinstance(scheme, str) or not _SCHEME.match(scheme):
        raise ValueError(f"a scheme is lowercase [a-z][a-z0-9+.-]*, got {scheme!r}")
    if isinstance(target, str):
        module, colon, attr = target.partition(":")
        if not colon or not module or not attr:
            raise ValueError(f"target must be 'package.module:Class', got {target!r}")
    elif not callable(getattr(target, "from_url", None)):
        raise TypeError(
            f"target for {scheme!r} must offer from_url(url, **options), "
            f"got {type(target).__name__}"
        )
    _registered[scheme] = target


def _entry_point_table() -> dict[str, list[str]]:
    global _from_entry_points
    if _from_entry_points is None:
        table: dict[str, list[str]] = {}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            targets = table.setdefault(ep.name.lower(), [])
            if ep.value not in targets:
                targets.append(ep.value)
        _from_entry_points = table
    return _from_entry_points


def registered_schemes() -> list[str]:
    """Every scheme ``open_storage`` can open now, sorted."""
    return sorted({*_BUILTIN, *_entry_point_table(), *_registered})


def _resolve(scheme: str) -> UrlOpener:
    target: str | UrlOpener
    if scheme in _registered:
        target = _registered[scheme]
    elif scheme in _entry_point_table():
        targets = _entry_point_table()[scheme]
        if len(targets) > 1:
            raise url_error(
                scheme, f"installed packages register {scheme}:// twice ({', '.join(targets)})"
            )
        target = targets[0]
    elif scheme in _BUILTIN:
        target = _BUILTIN[scheme]
    else:
        raise url_error(None, f"unknown scheme {scheme!r}")
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"{scheme}:// is served by {target}, which cannot be imported ({exc}); install the "
            "package (or statekit extra) that provides it"
        ) from exc
    found: Any = module
    for part in attr.split("."):
        found = getattr(found, part)
    if not callable(getattr(found, "from_url", None)):
        raise TypeError(f"{target} (registered for {scheme}://) has no from_url(url, **options)")
    return found  # type: ignore[no-any-return]


def open_storage(url: str, **options: Any) -> BaseStorage:
    """Return an (unstarted) storage for ``url``; keyword ``options`` go to its constructor and
    win over the URL's query parameters.

    The scheme picks the backend in the registry (see the module docstring); its module is
    imported now. Raises ``ValueError`` naming the problem and the accepted schemes for an
    unknown scheme or a malformed URL, never quoting the URL, and ``ImportError`` naming the
    scheme when its backend (or the backend's driver) is not installed.
    """
    scheme = StorageURL.parse(url).scheme
    return _resolve(scheme).from_url(url, **options)
