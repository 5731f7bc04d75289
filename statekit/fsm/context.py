"""``FSMContext``: the state and data of one conversation, read and written as one record.

Every write is a compare-and-set of the whole record, retried with jittered backoff up to
``max_tries`` times (then ``FSMConflictError``), so concurrent writers never lose each other's
updates. Writes of one conversation issued concurrently in one process are coalesced into one
compare-and-set. With ``ttl``, every write sets the record's expiry again (sliding on write).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from datetime import timedelta
from typing import Any

from statekit.fsm._record import FSMRecord, check_data, fresh
from statekit.fsm._writer import FSMConflictError, Op, Step, writer_for
from statekit.fsm.key import StorageKey
from statekit.fsm.state import StateSpec, state_name
from statekit.storage.base import DEFAULT, TTL, BaseStorage, ttl_to_ms

__all__ = ["FSMConflictError", "FSMContext", "FSMRecord"]


class FSMContext:
    """The conversation ``key`` in ``storage``.

    ``ttl`` (seconds or timedelta): every write makes the record expire that long after it;
    ``None`` leaves expiry to the storage's ``default_ttl`` (no expiry if it has none).
    ``max_tries`` bounds the compare-and-set retries of one write (default 50).
    ``coalesce=False`` makes every call its own compare-and-set (for tests and measurements).

    Raises ``TypeError`` for a storage that is not a ``statekit.BaseStorage`` or a key that is
    not a ``StorageKey``, and ``ValueError`` for a bad ``ttl`` or ``max_tries``.
    """

    __slots__ = ("_coalesce", "_key", "_max_tries", "_skey", "_storage", "_ttl", "_writer")

    def __init__(
        self,
        storage: BaseStorage,
        key: StorageKey,
        *,
        ttl: int | float | timedelta | None = None,
        max_tries: int = 50,
        coalesce: bool = True,
    ) -> None:
        if not isinstance(storage, BaseStorage):
            raise TypeError(f"storage must be a statekit BaseStorage, not {type(storage).__name__}")
        if not isinstance(key, StorageKey):
            raise TypeError(f"key must be a statekit.fsm.StorageKey, not {type(key).__name__}")
        if type(max_tries) is not int or max_tries < 1:
            raise ValueError(f"max_tries must be an int >= 1, got {max_tries!r}")
        if ttl is not None:
            ttl_to_ms(ttl)
        self._storage = storage
        self._key = key
        self._skey = key.storage_key
        self._ttl: TTL = DEFAULT if ttl is None else ttl
        self._max_tries = max_tries
        self._coalesce = bool(coalesce)
        self._writer = writer_for(storage)

    @property
    def storage(self) -> BaseStorage:
        """The statekit storage the record lives in."""
        return self._storage

    @property
    def key(self) -> StorageKey:
        """The conversation."""
        return self._key

    def __repr__(self) -> str:
        return f"FSMContext({self._storage!r}, {self._skey!r})"

    # ------------------------------------------------------------------ reads (one round trip)

    async def get_record(self) -> FSMRecord:
        """Return the state and data, read together (never a torn pair).

        Raises ``CorruptValueError`` naming the conversation if the stored record is unreadable.
        """
        _, state, data = await self._writer.read(self._skey)
        return FSMRecord(state, fresh(data))

    async def get_state(self) -> str | None:
        """Return the name of the current state, or ``None``."""
        _, state, _ = await self._writer.read(self._skey)
        return state

    async def get_data(self) -> dict[str, Any]:
        """Return a fresh copy of the data (``{}`` if none)."""
        _, _, data = await self._writer.read(self._skey)
        return fresh(data)  # type: ignore[no-any-return]

    async def get_value(self, name: str, default: Any = None) -> Any:
        """Return ``data[name]``, or ``default`` if it is not set."""
        _, _, data = await self._writer.read(self._skey)
        return fresh(data[name]) if name in data else default

    # ------------------------------------------------------------------ writes (compare-and-set)

    def _submit(
        self,
        apply: Callable[[str | None, dict[str, Any]], Step],
        guard: Callable[[Any], bool] | None = None,
    ) -> Coroutine[Any, Any, Any]:
        # a plain function handing back the writer's coroutine: one coroutine frame less per call
        return self._writer.submit(
            self._skey, Op(apply, guard), self._ttl, self._max_tries, self._coalesce
        )

    def _state(self, state: object) -> str | None:
        try:
            return state_name(state)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"conversation {self._skey}: {exc}") from None

    async def set_state(self, state: StateSpec = None) -> None:
        """Set the state (a named ``State``, a state name, or ``None``); the data is kept.

        Raises ``TypeError`` / ``ValueError`` naming the conversation for anything else.
        """
        name = self._state(state)

        def apply(_: str | None, data: dict[str, Any]) -> Step:
            return name, data, None, True

        await self._submit(apply)

    async def set_data(self, data: Mapping[str, Any]) -> None:
        """Replace the data; the state is kept.

        Raises ``TypeError`` naming the conversation unless ``data`` is a str-keyed mapping, and
        ``SerializationError`` if a value cannot be stored; nothing is written then.
        """
        new = check_data(self._skey, data)

        def apply(state: str | None, _: dict[str, Any]) -> Step:
            return state, new, None, True

        await self._submit(apply)

    async def update_data(
        self, mapping: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> dict[str, Any]:
        """Merge ``mapping`` then ``kwargs`` into the data (like ``dict.update``), atomically.

        Returns a fresh copy of the data right after this update. Concurrent calls all land.
        Raises like ``set_data``.
        """
        patch = check_data(self._skey, {} if mapping is None else mapping)
        if kwargs:
            patch.update(check_data(self._skey, kwargs))

        def apply(state: str | None, data: dict[str, Any]) -> Step:
            merged = {**data, **patch}
            return state, merged, merged, True

        return fresh(await self._submit(apply))  # type: ignore[no-any-return]

    async def update(self, fn: Callable[[FSMRecord], FSMRecord]) -> FSMRecord:
        """Replace the record with ``fn(record)`` atomically and return the new record.

        ``fn`` gets a record with a fresh copy of the data and must return an ``FSMRecord``; it may
        run more than once (after a conflict), so it must not have side effects. An exception
        raised by ``fn`` propagates and nothing is written.
        """
        skey = self._skey

        def apply(state: str | None, data: dict[str, Any]) -> Step:
            out = fn(FSMRecord(state, fresh(data)))
            if not isinstance(out, FSMRecord):
                raise TypeError(
                    f"conversation {skey}: update() function must return an FSMRecord, "
                    f"not {type(out).__name__}"
                )
            new_state = self._state(out.state)
            new_data = check_data(skey, out.data)
            return new_state, new_data, FSMRecord(new_state, new_data), True

        record: FSMRecord = await self._submit(apply)
        return FSMRecord(record.state, fresh(record.data))

    async def transition(self, expected: StateSpec, new: StateSpec) -> bool:
        """Set the state to ``new`` only if it is ``expected`` now; return True if it was.

        A compare-and-set on the state alone: of many concurrent ``transition(A, B)`` calls
        exactly one returns True. The data is kept.
        """
        want = self._state(expected)
        name = self._state(new)

        def apply(state: str | None, data: dict[str, Any]) -> Step:
            if state != want:
                return state, data, False, False
            return name, data, True, True

        return bool(await self._submit(apply))

    async def clear(self) -> None:
        """Forget the state and the data (the record is deleted; works on a corrupt record)."""
        await self._storage.delete_state(self._skey)
        self._writer.remember(self._skey, None)

