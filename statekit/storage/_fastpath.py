"""statekit's own fast paths for its FSM and session layers: an internal interface, not part of
the storage contract a third-party backend implements.

The in-tree backends subclass ``FastPathStorage``. Callers detect it with ``isinstance`` and fall
back to the public operations of ``BaseStorage`` when a storage does not offer it, so a
third-party backend works everywhere without it (a little slower: values are decoded and encoded
again).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

from statekit.codec import INT64_MAX, INT64_MIN
from statekit.errors import SerializationError
from statekit.storage.base import DEFAULT, TTL, BaseStorage, Stored

__all__ = ["FastPathStorage"]

_T = TypeVar("_T")


class FastPathStorage(BaseStorage):
    """A ``BaseStorage`` that also takes values already in stored form and keeps helper objects
    of its callers for as long as it lives."""

    _attachments: dict[str, object] | None = None

    def attachment(self, name: str, factory: Callable[[BaseStorage], _T]) -> _T:
        """The helper object ``name`` of this storage, made by ``factory(self)`` on first use and
        kept exactly as long as the storage (statekit's FSM keeps its write path here)."""
        attachments = self._attachments
        if attachments is None:
            attachments = self._attachments = {}
        found = attachments.get(name)
        if found is None:
            found = attachments[name] = factory(self)
        return found  # type: ignore[return-value]

    async def compare_and_set_encoded(
        self,
        key: str,
        new: Stored | None,
        *,
        expected: Stored | None,
        ttl: TTL = DEFAULT,
        keep_ttl: bool = False,
    ) -> bool:
        """``compare_and_set`` for values already in stored form (``encode_stored`` output: a
        signed 64-bit int, or bytes of this storage's codec), for callers that keep the stored
        form of what they last wrote (statekit's FSM), so ``expected`` is not encoded again.

        Raises ``ValueError`` for a bad key and ``SerializationError`` for a value that is not
        such a stored form or is over ``max_value_bytes``; nothing is written then.
        """
        if not self._guard(key):
            await self._ensure_started()
        if new is not None:
            self._check_stored(key, new, "new value")
        if expected is not None:
            self._check_stored(key, expected, "expected value")
        ttl_ms = self._ttl(ttl)
        return await self._compare_and_set(key, expected, new, ttl_ms, bool(keep_ttl))

    async def get_many_stored(self, keys: Iterable[str]) -> dict[str, Stored]:
        """``get_many`` without decoding: the live keys among ``keys`` with their stored forms (a
        signed 64-bit int, or bytes of this storage's codec), for callers that decode values
        their own way (statekit's session store). Raises ``ValueError`` for a bad key."""
        return await self._read_stored(keys, self._get_many)

    async def get_range_stored(self, keys: Iterable[str]) -> dict[str, Stored]:
        """``get_many_stored(keys)`` for ``keys`` that are all or most of the keys stored between
        the least and the greatest of them (every bucket of a session, read ahead by statekit's
        session store): a backend that keeps its keys in order reads that range in one scan and
        keeps the keys asked for (the others in it are read for nothing, so a caller with other
        keys in between calls ``get_many_stored``). Raises ``ValueError`` for a bad key."""
        return await self._read_stored(keys, self._get_range)

    async def _read_stored(
        self, keys: Iterable[str], read: Callable[[list[str]], Awaitable[dict[str, Stored]]]
    ) -> dict[str, Stored]:
        """``read`` of ``keys`` checked (``ValueError`` for a bad key), none for none."""
        await self._ensure_started()
        key_list = self._key_list(keys)
        return await read(key_list) if key_list else {}

    async def _get_range(self, keys: list[str]) -> dict[str, Stored]:
        """``get_range_stored`` of checked, non-empty ``keys``: ``_get_many`` unless the backend
        keeps its keys in order and reads a range faster."""
        return await self._get_many(keys)

    async def set_many_encoded(
        self, items: Iterable[tuple[str, Stored]], *, ttl: TTL = DEFAULT
    ) -> None:
        """``set_many`` for values already in stored form (``encode_stored`` output: a signed
        64-bit int, or bytes of this storage's codec), for callers that keep encoded values
        (statekit's session store).

        Raises ``TypeError`` unless ``items`` are (key, stored value) pairs, ``ValueError`` for a
        bad key and ``SerializationError`` for a value that is not a stored form or is over
        ``max_value_bytes``; nothing is written then.
        """
        await self._ensure_started()
        if isinstance(items, str | bytes | Mapping):
            raise TypeError(
                f"set_many_encoded takes (key, stored value) pairs, not a {type(items).__name__}"
            )
        chars, most = self._max_key_chars, self.max_value_bytes
        checked: list[tuple[str, Stored]] = list(items)
        for item in checked:
            if type(item) is not tuple or len(item) != 2:
                # the item itself is not shown: its value may be a session record's auth key
                size = f" of {len(item)} items" if isinstance(item, tuple | list) else ""
                raise TypeError(
                    f"set_many_encoded takes (key, stored value) pairs, got {type(item).__name__}{size}"
                )
            key, value = item
            if type(key) is not str or not key or len(key) > chars or not key.isascii():
                self._check_key(key)
            if type(value) is not bytes or not value or value[0] < 0x80 or len(value) > most:
                self._check_stored(key, value, "value")  # raises unless a native int
        ttl_ms = self._ttl(ttl)
        if checked:
            await self._set_many(checked, ttl_ms)

    def _check_stored(self, key: str, stored: object, what: str) -> Stored:
        """``stored`` if it is a stored form (``encode_stored`` output within
        ``max_value_bytes``); else ``SerializationError`` naming the key and what was given."""
        if type(stored) is bytes:
            if stored and stored[0] >= 0x80 and len(stored) <= self.max_value_bytes:
                return stored
        elif type(stored) is int and INT64_MIN <= stored <= INT64_MAX:
            return stored
        size = f" of {len(stored)} bytes" if isinstance(stored, bytes) else ""
        raise SerializationError(
            f"key {key!r}: {what} must be a stored form (a signed 64-bit int, or codec bytes "
            f"starting at 0x80 or above, at most {self.max_value_bytes} bytes), got "
            f"{type(stored).__name__}{size}"
        )
