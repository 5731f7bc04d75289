"""``BaseStorage``: the one async storage contract every backend implements.

Public methods validate arguments, resolve TTLs and encode/decode values exactly once, then call
the backend's small private primitives (``_get``, ``_set``, ...). A backend implements only those.
"""

from __future__ import annotations

import abc
import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Final

from statekit.codec import (
    INT64_MAX,
    INT64_MIN,
    Codec,
    MsgpackCodec,
    Value,
    decode_stored,
    encode_stored,
)
from statekit.errors import SerializationError, StorageClosedError, WrongTypeError
from statekit.storage._glob import check_glob, compile_glob, escape_glob

__all__ = ["BaseStorage", "DEFAULT", "MAX_TTL_SECONDS", "Stored", "TTL", "same_stored", "ttl_to_ms"]

Stored = int | bytes
"""What a backend keeps: a native integer, or codec bytes (first byte >= 0x80)."""


class _DefaultTTL:
    """Sentinel type of ``DEFAULT``: use the storage's ``default_ttl``."""

    _instance: _DefaultTTL | None = None

    def __new__(cls) -> _DefaultTTL:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT"

    def __reduce__(self) -> str:
        return "DEFAULT"


DEFAULT: Final = _DefaultTTL()
"""TTL sentinel: the storage's ``default_ttl`` applies."""

TTL = int | float | timedelta | None | _DefaultTTL

MAX_TTL_SECONDS: Final = 10**10
"""The largest TTL statekit accepts: 10,000,000,000 seconds (about 317 years). Every backend
refuses a longer one with the same ``ValueError`` before anything is written. It lies well inside
Redis's own bound (2**63 - 1 milliseconds from now) and PostgreSQL's timestamp range, and its
milliseconds stay below 2**53, so they are exact in a Lua number or a float."""

_NEW, _STARTED, _STOPPED = "new", "started", "stopped"
_DEDUPE_PARTS = 256  # list_keys dedupes into this many sets (a power of two)


def _utf8(text: str, what: str) -> bytes:
    """``text`` as UTF-8; ``ValueError`` naming it if it holds lone surrogates (not encodable)."""
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} {text[:40]!r} is not valid Unicode text (character {exc.start} is a lone "
            "surrogate) and cannot be stored"
        ) from None


def ttl_to_ms(ttl: int | float | timedelta, what: str = "ttl") -> int:
    """Return ``ttl`` (seconds or timedelta, > 0) in whole milliseconds (at least 1).

    Raises ``TypeError`` for another type and ``ValueError`` for a TTL that is not > 0 or is over
    ``MAX_TTL_SECONDS``.
    """
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif type(ttl) is float:
        seconds = ttl
    elif type(ttl) is int:
        seconds = float(ttl) if abs(ttl) <= MAX_TTL_SECONDS else (math.inf if ttl > 0 else -math.inf)
    else:
        raise TypeError(
            f"{what} must be seconds (int or float) or a datetime.timedelta, not {type(ttl).__name__}"
        )
    if not seconds > 0:
        raise ValueError(f"{what} must be a number of seconds > 0, got {ttl!r:.40}")
    if seconds > MAX_TTL_SECONDS:
        raise ValueError(
            f"{what} of {seconds:.6g} seconds is over statekit's limit of {MAX_TTL_SECONDS} "
            "seconds (about 317 years); pass ttl=None for no expiry"
        )
    return max(1, round(seconds * 1000))


class BaseStorage(abc.ABC):
    """Async key-value storage for bot state; see SPEC section 1 for the full contract.

    Keys are non-empty ``str`` of at most ``max_key_bytes`` UTF-8 bytes (``ValueError`` otherwise).
    Every operation starts the storage if it was never started; after ``stop()`` operations raise
    ``StorageClosedError`` until ``start()``.
    """

    backend_name: str = "storage"
    _scan_may_repeat: bool = True
    """Whether ``_scan`` may yield a key more than once (Redis SCAN can); a backend whose scan
    never repeats a key sets it False and ``list_keys`` skips deduplication."""

    def __init__(
        self,
        *,
        namespace: str = "statekit",
        default_ttl: int | float | timedelta | None = None,
        codec: Codec | None = None,
        max_key_bytes: int = 1024,
        max_value_bytes: int = 1024 * 1024,
    ) -> None:
        if type(namespace) is not str or not namespace:
            raise ValueError(f"namespace must be a non-empty str, got {namespace!r}")
        _utf8(namespace, "namespace")
        if type(max_key_bytes) is not int or max_key_bytes < 1:
            raise ValueError(f"max_key_bytes must be a positive int, got {max_key_bytes!r}")
        if type(max_value_bytes) is not int or max_value_bytes < 1:
            raise ValueError(f"max_value_bytes must be a positive int, got {max_value_bytes!r}")
        self.namespace: Final = namespace
        self.default_ttl: float | None = (
            None if default_ttl is None else ttl_to_ms(default_ttl, "default_ttl") / 1000
        )
        self._default_ttl_ms = None if default_ttl is None else ttl_to_ms(default_ttl, "default_ttl")
        self.codec: Final[Codec] = codec if codec is not None else MsgpackCodec()
        self.max_key_bytes: Final = max_key_bytes
        self.max_value_bytes: Final = max_value_bytes
        self._max_key_chars = max_key_bytes // 4
        self._fast_decode = self.codec.decode
        self._lifecycle = _NEW
        self._lifecycle_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open connections and start background tasks; idempotent."""
        if self._lifecycle is _STARTED:
            return
        if self._lifecycle_lock is None:
            self._lifecycle_lock = asyncio.Lock()
        async with self._lifecycle_lock:
            if self._lifecycle is not _STARTED:
                await self._open()
                self._lifecycle = _STARTED

    async def stop(self) -> None:
        """Close connections and stop background tasks; idempotent."""
        if self._lifecycle_lock is None:
            self._lifecycle_lock = asyncio.Lock()
        async with self._lifecycle_lock:
            if self._lifecycle is _STARTED:
                self._lifecycle = _STOPPED
                await self._close()
            else:
                self._lifecycle = _STOPPED

    @property
    def started(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._lifecycle is _STARTED

    async def __aenter__(self) -> BaseStorage:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _ensure_started(self) -> None:
        if self._lifecycle is _STOPPED:
            raise StorageClosedError(f"{self!r} is stopped; call start() before using it again")
        await self.start()

    def _guard(self, key: object) -> bool:
        """The opening of every one-key operation, written once: check ``key`` (``ValueError``)
        and return True if the storage is started. Callers write
        ``if not self._guard(key): await self._ensure_started()`` (which starts a storage that
        never was, and raises ``StorageClosedError`` after ``stop()``); a plain method keeps the
        common path as cheap as the inline lines it replaced (tests/benchmarks/guard.py)."""
        if type(key) is not str or not key or len(key) > self._max_key_chars or not key.isascii():
            self._check_key(key)
        return self._lifecycle is _STARTED

    # ------------------------------------------------------------------ validation helpers

    def _check_key(self, key: object) -> str:
        if type(key) is not str or not key:
            raise ValueError(f"key must be a non-empty str, got {key!r}")
        if not key.isascii() or len(key) > self._max_key_chars:
            size = len(_utf8(key, "key"))
            if size > self.max_key_bytes:
                raise ValueError(
                    f"key {key[:40]!r}... is {size} UTF-8 bytes; the limit is {self.max_key_bytes}"
                )
        return key

    def _ttl(self, ttl: TTL) -> int | None:
        if ttl is DEFAULT:
            return self._default_ttl_ms
        if ttl is None:
            return None
        return ttl_to_ms(ttl)  # type: ignore[arg-type]

    def _encode(self, key: str, value: Value) -> Stored:
        stored = encode_stored(self.codec, key, value)
        if type(stored) is bytes and len(stored) > self.max_value_bytes:
            raise SerializationError(
                f"key {key!r}: encoded value is {len(stored)} bytes; "
                f"the limit is {self.max_value_bytes} (max_value_bytes)"
            )
        return stored

    def _decode(self, key: str, stored: Stored) -> Value:
        return decode_stored(self.codec, key, stored)

    @staticmethod
    def _check_pattern(pattern: object) -> str:
        if type(pattern) is not str:
            raise TypeError(f"pattern must be a str glob, not {type(pattern).__name__}")
        if not pattern.isascii():
            _utf8(pattern, "pattern")
            check_glob(pattern)
        return pattern

    @staticmethod
    def glob_matcher(pattern: str) -> Callable[[str], bool]:
        """A predicate telling whether a key matches the Redis glob ``pattern`` (``*``, ``?``,
        ``[abc]``, ``[^abc]``, ``[a-z]``, ``\\`` escapes; on UTF-8 bytes, case-sensitive), for
        a backend that matches keys itself. ``pattern`` has been checked by ``scan_keys``."""
        return compile_glob(pattern)

    @staticmethod
    def glob_escape(text: str) -> str:
        """``text`` with every glob metacharacter backslash-escaped, so that it matches itself
        (e.g. a key prefix in a ``scan_keys`` pattern)."""
        return escape_glob(text)

    def wrong_type_error(self, key: str) -> WrongTypeError:
        """The error a backend raises when ``increment`` meets a non-integer value."""
        return WrongTypeError(f"key {key!r} holds a value that is not an integer; cannot increment")

    def overflow_error(self, key: str, amount: int) -> OverflowError:
        """The error a backend raises when ``increment`` would leave signed 64-bit."""
        return OverflowError(f"key {key!r}: adding {amount} would overflow signed 64-bit")

    def incremented(self, key: str, current: Stored | None, amount: int) -> int:
        """The rule of ``increment``, for a backend that computes it itself: the new value of a
        counter holding ``current`` (``None``: absent, so ``amount``). Raises ``WrongTypeError``
        if ``current`` is not a native integer and ``OverflowError`` if the result leaves signed
        64-bit; the backend then writes nothing."""
        if current is None:
            return amount
        if type(current) is not int:
            raise self.wrong_type_error(key)
        result = current + amount
        if not INT64_MIN <= result <= INT64_MAX:
            raise self.overflow_error(key, amount)
        return result

    # ------------------------------------------------------------------ public operations

    async def get_state(self, key: str) -> Value:
        """Return the value under ``key``, or ``None`` if it is absent or expired.

        Raises ``CorruptValueError`` if the stored bytes cannot be decoded.
        """
        if not self._guard(key):
            await self._ensure_started()
        stored = await self._get(key)
        if stored is None or isinstance(stored, int):
            return stored
        if stored and stored[0] >= 0x80:
            try:
                return self._fast_decode(stored)
            except Exception:  # noqa: BLE001 - decode_stored below names the key
                pass
        return decode_stored(self.codec, key, stored)

    async def set_state(
        self, key: str, value: Value, *, ttl: TTL = DEFAULT, keep_ttl: bool = False
    ) -> None:
        """Store ``value`` under ``key``.

        ``ttl``: seconds or timedelta (> 0), ``None`` for no expiry, ``DEFAULT`` for the storage's
        ``default_ttl``. ``keep_ttl=True`` keeps the expiry of a live key (``ttl`` then applies only
        if the key did not exist). Raises ``ValueError`` for ``None`` values or bad TTLs and
        ``SerializationError`` for values that cannot be stored; nothing is written then.
        """
        if not self._guard(key):
            await self._ensure_started()
        stored = value if type(value) is int and INT64_MIN <= value <= INT64_MAX else self._encode(key, value)
        await self._set(
            key, stored, self._default_ttl_ms if ttl is DEFAULT else self._ttl(ttl), bool(keep_ttl)
        )

    async def delete_state(self, key: str) -> bool:
        """Delete ``key``; return True if a live key was removed."""
        if not self._guard(key):
            await self._ensure_started()
        return await self._delete(key)

    async def compare_and_set(
        self,
        key: str,
        new: Value,
        *,
        expected: Value,
        ttl: TTL = DEFAULT,
        keep_ttl: bool = False,
    ) -> bool:
        """Atomically replace the value of ``key`` with ``new`` if it currently equals ``expected``.

        ``expected=None`` means "the key is absent"; ``new=None`` deletes the key. Equality is value
        equality with dict key order ignored (``True != 1``, ``1 != 1.0``). Returns True if written.
        """
        if not self._guard(key):
            await self._ensure_started()
        new_stored = None if new is None else self._encode(key, new)
        expected_stored = None if expected is None else encode_stored(self.codec, key, expected)
        ttl_ms = self._ttl(ttl)
        return await self._compare_and_set(key, expected_stored, new_stored, ttl_ms, bool(keep_ttl))

    async def increment(self, key: str, amount: int = 1, *, ttl: TTL = DEFAULT) -> int:
        """Atomically add ``amount`` to the integer under ``key`` (absent: 0) and return the result.

        ``ttl`` applies only when this call creates the key; an existing expiry never moves.
        Raises ``WrongTypeError`` if the value is not an integer and ``OverflowError`` if the result
        leaves signed 64-bit; nothing changes then.
        """
        if not self._guard(key):
            await self._ensure_started()
        if type(amount) is not int:
            raise TypeError(f"increment amount for key {key!r} must be an int, not {type(amount).__name__}")
        if not INT64_MIN <= amount <= INT64_MAX:
            raise OverflowError(f"increment amount {amount} for key {key!r} is outside signed 64-bit")
        return await self._increment(
            key, amount, self._default_ttl_ms if ttl is DEFAULT else self._ttl(ttl)
        )

    async def get_ttl(self, key: str) -> float | None:
        """Return the seconds ``key`` has left, or ``None`` if it is absent or has no expiry."""
        if not self._guard(key):
            await self._ensure_started()
        return await self._get_ttl(key)

    async def expire(self, key: str, ttl: int | float | timedelta | None) -> bool:
        """Set (``ttl`` seconds) or remove (``ttl=None``) the expiry of a live key.

        Returns False if the key is absent.
        """
        if not self._guard(key):
            await self._ensure_started()
        ttl_ms = None if ttl is None else ttl_to_ms(ttl)
        return await self._expire(key, ttl_ms)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Value]:
        """Return the live keys among ``keys`` with their values, in one round trip."""
        await self._ensure_started()
        key_list = self._key_list(keys)
        if not key_list:
            return {}
        found = await self._get_many(key_list)
        return {k: decode_stored(self.codec, k, v) for k, v in found.items()}

    async def set_many(self, mapping: Mapping[str, Value], *, ttl: TTL = DEFAULT) -> None:
        """Store every item of ``mapping`` in one round trip / one transaction.

        Every key and value is checked before anything is written.
        """
        await self._ensure_started()
        if not isinstance(mapping, Mapping):
            raise TypeError(f"set_many takes a mapping, not {type(mapping).__name__}")
        items = [(self._check_key(k), self._encode(k, v)) for k, v in mapping.items()]
        ttl_ms = self._ttl(ttl)
        if items:
            await self._set_many(items, ttl_ms)

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Delete ``keys``; return how many live keys were removed."""
        await self._ensure_started()
        key_list = self._key_list(keys)
        if not key_list:
            return 0
        return await self._delete_many(key_list)

    def _key_list(self, keys: Iterable[str]) -> list[str]:
        if isinstance(keys, str | bytes):
            raise TypeError("keys must be an iterable of str, not a single str")
        key_list = list(keys)
        chars = self._max_key_chars
        for k in key_list:
            if type(k) is not str or not k or len(k) > chars or not k.isascii():
                self._check_key(k)
        return list(dict.fromkeys(key_list))

    async def scan_keys(self, pattern: str = "*") -> AsyncIterator[str]:
        """Stream the live keys of this namespace that match the Redis glob ``pattern``."""
        await self._ensure_started()
        self._check_pattern(pattern)
        async for key in self._scan(pattern):
            yield key

    async def list_keys(self, pattern: str = "*") -> list[str]:
        """Return ``scan_keys(pattern)`` collected into a list, each key once.

        The keys are collected (and, for a backend whose scan may repeat a key, deduplicated)
        as the scan streams them, never in one piece at the end, so a million keys do not hold
        the event loop for longer than one scan page does."""
        if not self._scan_may_repeat:
            return [k async for k in self.scan_keys(pattern)]
        # Deduplicate into many small sets rather than one: a single set of a million keys
        # rehashes everything when it grows (tens of milliseconds in one piece).
        seen: list[set[str]] = [set() for _ in range(_DEDUPE_PARTS)]
        out: list[str] = []
        async for k in self.scan_keys(pattern):
            part = seen[hash(k) & (_DEDUPE_PARTS - 1)]
            if k not in part:
                part.add(k)
                out.append(k)
        while seen:  # free the sets a few at a time too (a million entries take ~10 ms)
            del seen[-32:]
            await asyncio.sleep(0)
        return out

    async def clear_namespace(self) -> int:
        """Delete every key of this namespace (and nothing else); return how many."""
        await self._ensure_started()
        return await self._clear()

    async def health(self) -> bool:
        """Return True if the backend answers now; never raises."""
        try:
            if self._lifecycle is not _STARTED:
                await self._ensure_started()
            await self._ping()
        except Exception:  # noqa: BLE001 - health() reports, it never raises
            return False
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()}, namespace={self.namespace!r})"

    def describe(self) -> str:
        """Where the data lives, for messages and ``repr`` (a URL through ``mask_url``, a path):
        never a password. Backends override it; the default is ``backend_name``."""
        return self.backend_name

    # ------------------------------------------------------------------ backend primitives

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    @abc.abstractmethod
    async def _ping(self) -> None: ...

    @abc.abstractmethod
    async def _get(self, key: str) -> Stored | None: ...

    @abc.abstractmethod
    async def _set(self, key: str, stored: Stored, ttl_ms: int | None, keep_ttl: bool) -> None: ...

    @abc.abstractmethod
    async def _delete(self, key: str) -> bool: ...

    @abc.abstractmethod
    async def _compare_and_set(
        self,
        key: str,
        expected: Stored | None,
        new: Stored | None,
        ttl_ms: int | None,
        keep_ttl: bool,
    ) -> bool: ...

    @abc.abstractmethod
    async def _increment(self, key: str, amount: int, ttl_ms: int | None) -> int: ...

    @abc.abstractmethod
    async def _get_ttl(self, key: str) -> float | None: ...

    @abc.abstractmethod
    async def _expire(self, key: str, ttl_ms: int | None) -> bool: ...

    @abc.abstractmethod
    async def _get_many(self, keys: list[str]) -> dict[str, Stored]: ...

    @abc.abstractmethod
    async def _set_many(self, items: list[tuple[str, Stored]], ttl_ms: int | None) -> None: ...

    @abc.abstractmethod
    async def _delete_many(self, keys: list[str]) -> int: ...

    @abc.abstractmethod
    def _scan(self, pattern: str) -> AsyncIterator[str]: ...

    @abc.abstractmethod
    async def _clear(self) -> int: ...


def same_stored(a: Stored | None, b: Stored | None) -> bool:
    """True if two stored forms hold the same value (an int never equals bytes)."""
    return type(a) is type(b) and a == b


