"""Value encoding: the ``Codec`` protocol and the default canonical msgpack codec.

Stored form: a top-level ``int`` is kept in the backend's native integer form (so that
``increment`` is a native atomic operation); every other value is msgpack bytes, whose first
byte is always >= 0x80, which keeps the two forms apart.
"""

from __future__ import annotations

from typing import Any, Final, Protocol, runtime_checkable

import msgpack

from statekit.errors import CorruptValueError, SerializationError

__all__ = ["Codec", "INT64_MAX", "INT64_MIN", "MsgpackCodec", "Value", "decode_stored", "encode_stored"]

Value = Any
"""A storable value: None, bool, int (int64), float, str, bytes, list/tuple, dict (str/int/bytes keys)."""

INT64_MIN: Final = -(2**63)
"""The smallest integer statekit stores (signed 64-bit), here and only here."""
INT64_MAX: Final = 2**63 - 1
"""The largest integer statekit stores (signed 64-bit)."""
_KEY_RANK = {str: 0, int: 1, bytes: 2}


@runtime_checkable
class Codec(Protocol):
    """Turns values into bytes and back. ``encode`` must be canonical: equal values, equal bytes."""

    def encode(self, value: Value) -> bytes:
        """Return the bytes of ``value``; raise ``SerializationError`` (or TypeError) if unsupported."""
        ...

    def decode(self, data: bytes) -> Value:
        """Return the value of ``data``; raise ``ValueError`` (or any error) if unreadable."""
        ...


def _describe(value: object) -> str:
    return type(value).__qualname__


class _Unsupported(Exception):
    """Raised inside the fast walk; the slow walk then finds where and why."""


def _rank(key: Any) -> tuple[int, Any]:
    return (_KEY_RANK[type(key)], key)


_SCALARS = frozenset({str, bytes, bool, float, type(None)})


def _canonical_item(value: Any) -> Any:
    t = type(value)
    if t in _SCALARS:
        return value
    if t is int:
        if INT64_MIN <= value <= INT64_MAX:
            return value
        raise _Unsupported
    if t is dict or t is list or t is tuple:
        return _canonical(value)
    return _canonical_item(_plain(value))


def _plain(value: Any) -> Any:
    """The built-in value of an instance of a subclass of a storable type (``StrEnum`` member,
    Pyrogram's ``Str``, ``IntEnum``, ``OrderedDict``, a named tuple); raise _Unsupported otherwise."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):  # bool cannot be subclassed, so this is never a bool
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list | tuple):
        return list(value)
    raise _Unsupported


def _canonical(value: Any) -> Any:
    """Return ``value`` with dicts re-ordered canonically; raise _Unsupported on bad types."""
    t = type(value)
    if t is dict:
        keys = list(value)
        for k in keys:
            kt = type(k)
            if kt is not str and kt is not int and kt is not bytes:
                raise _Unsupported
        try:
            keys.sort()
        except TypeError:  # keys of several types: str, then int, then bytes
            keys.sort(key=_rank)
        out = {}
        for k in keys:
            item = value[k]
            it = type(item)
            if it in _SCALARS or (it is int and INT64_MIN <= item <= INT64_MAX):
                out[k] = item
            else:
                out[k] = _canonical_item(item)
        return out
    if t is list or t is tuple:
        return [
            item
            if type(item) in _SCALARS or (type(item) is int and INT64_MIN <= item <= INT64_MAX)
            else _canonical_item(item)
            for item in value
        ]
    if t in _SCALARS or (t is int and INT64_MIN <= value <= INT64_MAX):
        return value
    return _canonical_item(value)


def _find_unsupported(value: Any, path: str) -> str:
    """Describe the first unsupported part of ``value`` (slow; only called after a failure)."""
    if type(value) not in _SCALARS and type(value) not in (int, dict, list, tuple):
        try:
            value = _plain(value)
        except _Unsupported:
            return f"value at {path} has type {_describe(value)}, which cannot be stored"
    t = type(value)
    if t is str or t is bytes or t is bool or t is float or value is None:
        return ""
    if t is int:
        if INT64_MIN <= value <= INT64_MAX:
            return ""
        return f"integer at {path} is outside signed 64-bit"
    if t is list or t is tuple:
        for i, item in enumerate(value):
            found = _find_unsupported(item, f"{path}[{i}]")
            if found:
                return found
        return ""
    if t is dict:
        for k, item in value.items():
            if type(k) not in _KEY_RANK:
                return f"dict key {k!r} at {path} has type {_describe(k)}; keys must be str, int or bytes"
            found = _find_unsupported(item, f"{path}[{k!r}]")
            if found:
                return found
        return ""
    return f"value at {path} has type {_describe(value)}, which cannot be stored"


class MsgpackCodec:
    """Canonical msgpack: dict keys ordered (str, then int, then bytes; each sorted).

    Instances of subclasses of the storable types (``StrEnum`` members, Pyrogram's ``Str``,
    ``IntEnum``, ``OrderedDict``, named tuples) are stored as the built-in value they extend and
    read back as that built-in type.
    """

    __slots__ = ()

    def encode(self, value: Value) -> bytes:
        t = type(value)
        if t is str or t is bytes or t is bool or t is float or value is None:
            return msgpack.packb(value)  # type: ignore[no-any-return]
        try:
            canonical = _canonical(value)
        except _Unsupported:
            raise SerializationError(_find_unsupported(value, "value")) from None
        except RecursionError:
            raise SerializationError("value is nested too deeply (or contains itself)") from None
        return msgpack.packb(canonical)  # type: ignore[no-any-return]

    def decode(self, data: bytes) -> Value:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)

    def __repr__(self) -> str:
        return "MsgpackCodec()"


def encode_stored(codec: Codec, key: str, value: Value) -> int | bytes:
    """Return the stored form of ``value`` under ``key``; raise SerializationError naming both."""
    if type(value) is not int and isinstance(value, int) and type(value) is not bool:
        value = int.__int__(value)  # IntEnum and other int subclasses are stored as int
    if type(value) is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise SerializationError(f"key {key!r}: integer {value} is outside signed 64-bit")
        return value
    if value is None:
        raise ValueError(f"key {key!r}: value None cannot be stored; use delete_state()")
    try:
        data = codec.encode(value)
    except SerializationError as exc:
        raise SerializationError(f"key {key!r}: {exc}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(
            f"key {key!r}: value of type {_describe(value)} cannot be encoded: {exc}"
        ) from exc
    if not data or data[0] < 0x80:
        raise SerializationError(
            f"key {key!r}: codec {codec!r} produced bytes that start below 0x80, "
            "which are reserved for native integers"
        )
    return data


def decode_stored(codec: Codec, key: str, stored: int | bytes | str) -> Value:
    """Return the value of a stored form; raise CorruptValueError naming ``key`` if unreadable."""
    if isinstance(stored, int):
        return stored
    data = stored.encode() if isinstance(stored, str) else stored
    if not data:
        raise CorruptValueError(f"key {key!r}: stored value is empty")
    if data[0] < 0x80:
        try:
            return int(data)
        except ValueError:
            raise CorruptValueError(
                f"key {key!r}: stored value {data[:16]!r}... is neither an integer "
                f"nor {codec!r} data"
            ) from None
    try:
        return codec.decode(data)
    except Exception as exc:  # noqa: BLE001 - any codec failure means corrupt data
        raise CorruptValueError(
            f"key {key!r}: stored bytes cannot be decoded by {codec!r} ({type(exc).__name__})"
        ) from exc
