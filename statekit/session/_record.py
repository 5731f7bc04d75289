"""The session record of ``SessionStore``: its fields, their checks, its stored form (plain or
sealed with a ``SessionCipher``), and ``Cell``, a key changed only by compare-and-set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgpack

from statekit.codec import INT64_MAX
from statekit.errors import CorruptValueError, SessionFormatError, StatekitError
from statekit.session._cipher import SessionCipher
from statekit.session.records import AUTH_KEY_SIZE, _shown
from statekit.storage.base import BaseStorage

__all__ = [
    "FIELDS",
    "Cell",
    "RecordCodec",
    "check_field",
    "check_name",
    "decode_states",
    "encode_states",
]

FIELDS: Final = (
    "dc_id",
    "server_address",
    "port",
    "api_id",
    "test_mode",
    "auth_key",
    "date",
    "user_id",
    "is_bot",
    "takeout_id",
)
"""Fields of the session record: those of ``SessionData`` plus Telethon's ``takeout_id``."""

_BOOL_FIELDS = frozenset({"test_mode", "is_bot"})
_FORMAT = 1
_MAX_TRIES = 50
_INT64 = INT64_MAX + 1  # ids and hashes are signed 64-bit: -_INT64 <= x < _INT64


def check_name(name: object) -> str:
    """Return ``name`` if it can name a session; ``ValueError`` / ``TypeError`` otherwise."""
    if type(name) is not str:
        raise TypeError(f"session name must be a str, not {type(name).__name__}")
    if not name or len(name) > 200 or "{" in name or "}" in name or not name.isprintable():
        raise ValueError(
            f"session name must be 1-200 printable characters without '{{' or '}}', got {name!r}"
        )
    return name


def check_field(name: str, value: Any) -> Any:
    """Return ``value`` normalised for record field ``name`` (None clears a field).

    Raises ``ValueError`` for an unknown field or a bad value and ``TypeError`` for a wrong type,
    naming the field; the auth key itself never appears in a message.
    """
    if name not in FIELDS:
        raise ValueError(f"unknown session field {name!r}; known fields: {', '.join(FIELDS)}")
    if value is None:
        return None
    if name == "auth_key":
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"auth_key must be bytes, not {type(value).__name__}")
        if len(value) != AUTH_KEY_SIZE:
            raise ValueError(f"auth_key must be {AUTH_KEY_SIZE} bytes, got {len(value)} bytes")
        return bytes(value)
    if name in _BOOL_FIELDS:
        if type(value) is bool or (type(value) is int and value in (0, 1)):
            return bool(value)
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    if name == "server_address":
        if type(value) is not str:
            raise TypeError(f"server_address must be a str, not {type(value).__name__}")
        return value
    if type(value) is not int or not -_INT64 <= value < _INT64:
        raise TypeError(f"{name} must be a 64-bit int, not {_shown(value)}")
    if name == "dc_id" and not 0 < value < 1000:
        raise ValueError(f"dc_id must be a data centre number (1-999), got {value}")
    if name == "port" and not 0 <= value < 65536:
        raise ValueError(f"port must be 0-65535, got {value}")
    return value


def decode_states(raw: Any) -> dict[int, tuple[int | None, ...]]:
    """Update states as stored (``{box: [pts, qts, date, seq]}``) by box; ``CorruptValueError``
    if the value is not that."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CorruptValueError("update states record is not a dict")
    out: dict[int, tuple[int | None, ...]] = {}
    for box, values in raw.items():
        if type(box) is not int or not isinstance(values, list) or len(values) != 4:
            raise CorruptValueError(f"update states record has a bad entry {_shown(box)}")
        out[box] = tuple(values)
    return out


def encode_states(states: dict[int, tuple[int | None, ...]]) -> Any:
    """The stored form of update states by box."""
    return {box: list(values) for box, values in states.items()}


class RecordCodec:
    """Stored form of the record of session ``name``: ``{"v": 1, "fields": {...}}``, or with a
    cipher ``{"v": 1, "sealed": nonce+ciphertext}`` bound to the session name."""

    __slots__ = ("_aad", "_cipher", "_what")

    def __init__(self, name: str, cipher: SessionCipher | None) -> None:
        self._cipher = cipher
        self._aad = b"statekit-session\x00" + name.encode()
        self._what = f"session {name!r}"

    def encode(self, fields: dict[str, Any]) -> Any:
        """The stored form of ``fields`` (already checked)."""
        if self._cipher is None:
            return {"v": _FORMAT, "fields": fields}
        return {"v": _FORMAT, "sealed": self._cipher.encrypt(msgpack.packb(fields), self._aad)}

    def decode(self, raw: Any) -> dict[str, Any]:
        """The fields of a stored record (``{}`` for None).

        Raises ``SessionFormatError`` if it is sealed and no key (or the wrong key) was given, or
        if it is not a session record.
        """
        if raw is None:
            return {}
        what = self._what
        if not isinstance(raw, dict) or raw.get("v") != _FORMAT:
            raise SessionFormatError(f"{what}: the stored record is not a statekit session record")
        if "sealed" in raw:
            if self._cipher is None:
                raise SessionFormatError(
                    f"{what} is encrypted at rest: a key is needed to read it "
                    "(pass cipher=SessionCipher(key) with the key it was saved with)"
                )
            sealed = raw["sealed"]
            if type(sealed) is not bytes:
                raise SessionFormatError(f"{what}: sealed record is not bytes")
            plain = self._cipher.decrypt(sealed, self._aad, what)
            try:
                fields = msgpack.unpackb(plain)
            except (ValueError, msgpack.UnpackException) as exc:
                raise SessionFormatError(f"{what}: decrypted record is unreadable ({exc})") from None
        else:
            fields = raw.get("fields")
        if not isinstance(fields, dict):
            raise SessionFormatError(f"{what}: the stored record holds no fields")
        try:
            return {k: check_field(k, v) for k, v in fields.items() if k in FIELDS}
        except (TypeError, ValueError) as exc:
            raise SessionFormatError(f"{what}: the stored record is invalid: {exc}") from None


class Cell:
    """One key holding a dict, changed only by compare-and-set. While ``caching()`` is True (the
    owner holds its lease, so no one else writes) the last value seen is reused without a read."""

    __slots__ = (
        "_caching",
        "_decode",
        "_encode",
        "_known",
        "_raw",
        "_storage",
        "_value",
        "_version",
        "_writing",
        "key",
    )

    def __init__(
        self,
        storage: BaseStorage,
        key: str,
        decode: Callable[[Any], dict[Any, Any]],
        encode: Callable[[dict[Any, Any]], Any],
        caching: Callable[[], bool],
    ) -> None:
        self._storage = storage
        self.key = key
        self._decode = decode
        self._encode = encode
        self._caching = caching
        self._known = False
        self._raw: Any = None
        self._value: dict[Any, Any] = {}
        self._version = 0  # bumped by every write, so a read that raced one is not remembered
        self._writing = 0

    def forget(self) -> None:
        """Drop the remembered value; the next access reads the storage."""
        self._known = False
        self._raw, self._value = None, {}

    async def _fetch(self) -> tuple[Any, dict[Any, Any]]:
        if self._known and self._caching():
            return self._raw, self._value
        version = self._version
        raw = await self._storage.get_state(self.key)
        value = self._decode(raw)
        if version == self._version and not self._writing and self._caching():
            self._raw, self._value, self._known = raw, value, True
        return raw, value

    async def read(self) -> dict[Any, Any]:
        """The current value (shared: do not mutate it)."""
        return (await self._fetch())[1]

    async def update(self, change: Callable[[dict[Any, Any]], dict[Any, Any]]) -> dict[Any, Any]:
        """Apply ``change`` to a copy of the value and write the result by compare-and-set,
        retrying on conflict (an empty result deletes the key); return the value now stored."""
        for _ in range(_MAX_TRIES):
            raw, value = await self._fetch()
            new = change(dict(value))
            if new == value:
                return value
            new_raw = self._encode(new) if new else None
            self._version += 1
            self._writing += 1
            try:
                written = await self._storage.compare_and_set(
                    self.key, new_raw, expected=raw, ttl=None
                )
            except BaseException:
                self.forget()
                raise
            finally:
                self._writing -= 1
            if written:
                if self._caching():
                    self._raw, self._value, self._known = new_raw, new, True
                else:  # a late renewal: what was remembered must not outlive this write
                    self.forget()
                return new
            self.forget()
        raise StatekitError(
            f"key {self.key!r} could not be updated: {_MAX_TRIES} conflicting writes in a row"
        )
