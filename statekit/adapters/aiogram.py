"""aiogram 3 glue: ``AiogramStorage``, an ``aiogram.fsm.storage.base.BaseStorage`` over any statekit
storage. Needs the ``aiogram`` extra.

``Dispatcher(storage=AiogramStorage(statekit_storage))``. Each conversation is one statekit FSM
record (state and data together); ``update_data`` is an atomic compare-and-set, so concurrent
handlers of one user never lose each other's updates, without aiogram's Redis lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.state import State as AiogramState
from aiogram.fsm.storage.base import BaseStorage as AiogramBaseStorage
from aiogram.fsm.storage.base import StateType
from aiogram.fsm.storage.base import StorageKey as AiogramStorageKey

from statekit.fsm.context import FSMContext
from statekit.fsm.key import StorageKey
from statekit.storage.base import BaseStorage

__all__ = ["AiogramStorage"]

_CONTEXTS_KEPT = 4096  # FSMContext objects kept for recently seen keys (they hold no data)


class AiogramStorage(AiogramBaseStorage):
    """aiogram FSM storage backed by ``storage`` (memory, SQLite, Redis: any statekit storage).

    ``ttl``: every write makes the conversation expire that long after it (``None``: the
    storage's ``default_ttl``). ``max_tries`` bounds compare-and-set retries (``FSMConflictError``
    after). ``close_storage``: ``close()`` (called by aiogram at shutdown) also stops ``storage``;
    like aiogram's own storages, the adapter stays usable after ``close()``: the next FSM operation
    (a dispatcher started again) starts ``storage`` again.

    ``set_data`` / ``update_data`` with data that is not a mapping raise aiogram's
    ``DataNotDictLikeError``; a mapping with a non-``str`` key raises ``TypeError``.
    """

    def __init__(
        self,
        storage: BaseStorage,
        *,
        ttl: int | float | timedelta | None = None,
        max_tries: int = 50,
        close_storage: bool = True,
    ) -> None:
        if not isinstance(storage, BaseStorage):
            raise TypeError(
                f"AiogramStorage needs a statekit storage (MemoryStorage, SQLiteStorage, "
                f"RedisStorage, ...), not {type(storage).__name__}"
            )
        self.storage = storage
        self._ttl = ttl
        self._max_tries = max_tries
        self._close_storage = close_storage
        FSMContext(storage, StorageKey(0, 0, 0), ttl=ttl, max_tries=max_tries)  # validates
        self._contexts: dict[AiogramStorageKey, FSMContext] = {}
        self._closed = False  # close() stopped the storage: the next operation starts it again

    async def _reopen(self) -> None:
        """Start the storage this adapter stopped in ``close()`` (a dispatcher started again)."""
        self._closed = False
        await self.storage.start()

    def context(self, key: AiogramStorageKey) -> FSMContext:
        """The statekit ``FSMContext`` of an aiogram key."""
        contexts = self._contexts
        ctx = contexts.get(key)
        if ctx is None:
            ctx = FSMContext(
                self.storage,
                StorageKey(
                    bot_id=key.bot_id,
                    chat_id=key.chat_id,
                    user_id=key.user_id,
                    thread_id=key.thread_id,
                    business_connection_id=key.business_connection_id or None,
                    destiny=key.destiny,
                ),
                ttl=self._ttl,
                max_tries=self._max_tries,
            )
            if len(contexts) >= _CONTEXTS_KEPT:
                del contexts[next(iter(contexts))]
            contexts[key] = ctx
        return ctx

    async def set_state(self, key: AiogramStorageKey, state: StateType = None) -> None:
        """Set the state (an aiogram ``State``, a name or ``None``); the data is kept."""
        name = state.state if isinstance(state, AiogramState) else state
        if self._closed:
            await self._reopen()
        await self.context(key).set_state(name)

    async def get_state(self, key: AiogramStorageKey) -> str | None:
        """Return the current state name, or ``None``."""
        if self._closed:
            await self._reopen()
        return await self.context(key).get_state()

    async def set_data(self, key: AiogramStorageKey, data: Mapping[str, Any]) -> None:
        """Replace the data; the state is kept. ``DataNotDictLikeError`` unless a mapping."""
        if not isinstance(data, Mapping):
            raise self._not_dict_like(key, data)
        if self._closed:
            await self._reopen()
        await self.context(key).set_data(data)

    async def get_data(self, key: AiogramStorageKey) -> dict[str, Any]:
        """Return a fresh copy of the data."""
        if self._closed:
            await self._reopen()
        return await self.context(key).get_data()

    async def get_value(
        self, storage_key: AiogramStorageKey, dict_key: str, default: Any | None = None
    ) -> Any | None:
        """Return one value of the data, or ``default``."""
        if self._closed:
            await self._reopen()
        return await self.context(storage_key).get_value(dict_key, default)

    async def update_data(self, key: AiogramStorageKey, data: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``data`` into the data atomically and return the result (no update is lost).

        ``DataNotDictLikeError`` unless ``data`` is a mapping.
        """
        if not isinstance(data, Mapping):
            raise self._not_dict_like(key, data)
        if self._closed:
            await self._reopen()
        return await self.context(key).update_data(data)

    def _not_dict_like(self, key: AiogramStorageKey, data: object) -> DataNotDictLikeError:
        where = self.context(key).key.storage_key
        return DataNotDictLikeError(
            f"conversation {where}: FSM data must be a dict or dict-like object (a mapping), "
            f"not {type(data).__name__}"
        )

    async def close(self) -> None:
        """Stop the statekit storage (unless ``close_storage=False``).

        The adapter stays usable, as aiogram's own storages do: the next operation starts the
        storage again (a ``Dispatcher`` shut down and started again keeps working).
        """
        if self._close_storage:
            self._closed = True
            await self.storage.stop()
