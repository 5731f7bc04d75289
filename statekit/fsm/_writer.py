"""The write path of the FSM: compare-and-set with bounded jittered retries, a per-storage memory of
the last record seen for each conversation, and coalescing of concurrent writes in one process.

Every write is a function of the current record. The first writer of a conversation runs its own
write at once; writes that arrive while it is in flight queue up and are applied together, in
arrival order, by one compare-and-set. A stale memory costs a failed compare-and-set and a re-read,
never a lost update.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, cast

from statekit.codec import encode_stored
from statekit.errors import SerializationError, StatekitError
from statekit.fsm._record import pack, unpack
from statekit.fsm._timers import Timers, now_ms, timers_for
from statekit.storage._fastpath import FastPathStorage
from statekit.storage.base import TTL, BaseStorage

__all__ = ["FSMConflictError", "Op", "Step", "Writer", "writer_for"]

Step = tuple[str | None, dict[str, Any], Any, bool]
"""What an operation returns: (new state, new data, its result, whether it writes)."""

Apply = Callable[[str | None, dict[str, Any]], Step]

_MISSING: Any = object()
_BACKOFF_BASE = 0.001
_BACKOFF_CAP = 0.25


class FSMConflictError(StatekitError):
    """Every try of a write to one conversation met a concurrent change (the retry bound was hit)."""


class Op:
    """One queued write: ``apply`` maps (state, data) to a ``Step``; outcome kept for the caller.

    ``guard`` (optional) sees the stored value before the write: if it returns False, or an
    earlier op of the same batch writes, the op is skipped with the result False.
    """

    __slots__ = ("apply", "error", "future", "guard", "rejected", "result")

    def __init__(self, apply: Apply, guard: Callable[[Any], bool] | None = None) -> None:
        self.apply = apply
        self.guard = guard
        self.result: Any = None
        self.error: BaseException | None = None
        self.rejected: BaseException | None = None
        self.future: asyncio.Future[Any] | None = None

    def outcome(self) -> Any:
        """The result of the last application; raises the error it met."""
        error = self.rejected or self.error
        if error is not None:
            raise error
        return self.result

    def settle(self) -> None:
        """Hand the outcome to a queued caller (a caller that was cancelled is skipped)."""
        future = self.future
        if future is None or future.done():
            return
        error = self.rejected or self.error
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(self.result)


class Writer:
    """The FSM write path of one storage (shared by every ``FSMContext`` over it)."""

    cache_size = 4096

    def __init__(self, storage: BaseStorage, timers: Timers | None = None) -> None:
        self.storage = storage
        self._seen: OrderedDict[str, tuple[Any, Any]] = OrderedDict()  # key: (value, stored form)
        self._queues: dict[tuple[str, Any, int], deque[Op]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.timers: Timers = timers if timers is not None else timers_for(storage)

    # ------------------------------------------------------------------ memory of records

    def remember(self, key: str, value: Any, stored: Any = _MISSING) -> None:
        """Remember ``value`` (and its stored form, if known) as the stored value of ``key``."""
        seen = self._seen
        seen[key] = (value, stored)
        seen.move_to_end(key)
        if len(seen) > self.cache_size:
            seen.popitem(last=False)

    def forget(self, key: str) -> None:
        """Drop what is remembered of ``key``."""
        self._seen.pop(key, None)

    async def read(self, key: str) -> tuple[Any, str | None, dict[str, Any]]:
        """Read the stored value of ``key``: (value, state, data). Raises ``CorruptValueError``."""
        try:
            value = await self.storage.get_state(key)
            state, data = unpack(key, value)
        except BaseException:
            self.forget(key)
            raise
        self.remember(key, value)
        return value, state, data

    # ------------------------------------------------------------------ writes

    async def submit(self, key: str, op: Op, ttl: TTL, max_tries: int, coalesce: bool) -> Any:
        """Apply ``op`` to the record of ``key`` and return its result (or raise its error)."""
        if not coalesce:
            await self._write(key, [op], ttl, max_tries, None)
            return op.outcome()
        qkey = (key, ttl, max_tries)
        queue = self._queues.get(qkey)
        if queue is not None:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            op.future = future
            queue.append(op)
            return await future
        queue = self._queues[qkey] = deque()
        try:
            await self._write(key, [op], ttl, max_tries, None)
        finally:
            if queue:
                task = asyncio.get_running_loop().create_task(self._drain(qkey, queue))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                del self._queues[qkey]
        return op.outcome()

    async def _drain(self, qkey: tuple[str, Any, int], queue: deque[Op]) -> None:
        """Write the queued operations of one conversation, batch by batch, until none is left."""
        key, ttl, max_tries = qkey
        batch: list[Op] = []
        try:
            while queue:
                batch = _take(queue)
                if batch:
                    await self._write(key, batch, ttl, max_tries, queue)
                    for op in batch:
                        op.settle()
                batch = []
        finally:
            if self._queues.get(qkey) is queue:
                del self._queues[qkey]
            for op in (*batch, *queue):
                if op.future is not None and not op.future.done():
                    op.future.cancel()

    async def _write(
        self, key: str, ops: list[Op], ttl: TTL, max_tries: int, more: deque[Op] | None
    ) -> None:
        """Apply ``ops`` in order with one compare-and-set, retried; outcomes go to the ops.

        Raises only if cancelled (the outcome of the write in flight is then unknown).
        """
        try:
            entry = self._seen.get(key)
            fresh = entry is None
            if entry is None:
                value, _, _ = await self.read(key)
                expected: Any = _MISSING
            else:
                value, expected = entry
            storage = self.storage
            timers = self.timers
            version = 0  # the version and time stamped on this write, if a timeout arms it
            indexed = 0
            tries = 0
            while True:
                if more:
                    ops.extend(_take(more))
                state, data = unpack(key, value)
                writes = False
                for op in ops:
                    if op.rejected is not None:
                        continue
                    if op.guard is not None and (writes or not op.guard(value)):
                        op.result, op.error = False, None
                        continue
                    try:
                        state, data, op.result, wrote = op.apply(state, data)
                    except Exception as exc:  # noqa: BLE001 - delivered to that op's caller
                        op.error = exc
                        continue
                    op.error = None
                    writes = writes or wrote
                if not writes:
                    if fresh:
                        return
                    value, _, _ = await self.read(key)
                    expected, fresh = _MISSING, True
                    continue
                new = pack(state, data)
                if new is not None and timers.specs:  # timeouts declared: stamp the timer
                    if not version:
                        version, at = random.getrandbits(62) | 1, now_ms()
                    timer, armed = timers.stamp(value, state, version, at)
                    if timer is not None:
                        new["t"] = timer
                        if armed is not None and indexed != version:  # index first, then write
                            await timers.index(key, armed[0], armed[1], armed[2])
                            indexed = version
                try:
                    new_stored = None if new is None else encode_stored(storage.codec, key, new)
                    if expected is _MISSING:  # the stored form of what was read: encoded once
                        expected = None if value is None else encode_stored(storage.codec, key, value)
                    if isinstance(storage, FastPathStorage):
                        written = await storage.compare_and_set_encoded(
                            key, new_stored, expected=expected, ttl=ttl
                        )
                    else:  # a third-party backend: the public operation
                        written = await storage.compare_and_set(key, new, expected=value, ttl=ttl)
                except SerializationError:
                    if not self._reject_unencodable(key, value, ops):
                        raise
                    continue
                if written:
                    self.remember(key, new, new_stored)
                    return
                tries += 1
                if tries >= max_tries:
                    raise FSMConflictError(
                        f"conversation {key}: {tries} compare-and-set tries all met a concurrent "
                        "change; nothing was written by this call (raise max_tries if this "
                        "conversation is written this hard)"
                    )
                self.forget(key)
                if tries > 1:  # the first conflict retries at once: another writer just made progress
                    await asyncio.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**tries)))
                value, _, _ = await self.read(key)
                expected, fresh = _MISSING, True
        except asyncio.CancelledError:
            self.forget(key)
            raise
        except Exception as exc:  # noqa: BLE001 - every op of the batch gets the storage error
            self.forget(key)
            for op in ops:
                if op.rejected is None:
                    op.error = exc

    def _reject_unencodable(self, key: str, value: Any, ops: list[Op]) -> int:
        """Mark the ops whose result cannot be stored (the others are written without them).

        Returns how many ops were newly rejected.
        """
        state, data = unpack(key, value)
        rejected = 0
        storage = self.storage
        for op in ops:
            if op.rejected is not None:
                continue
            try:
                new_state, new_data, _, wrote = op.apply(state, data)
            except Exception:  # noqa: BLE001 - the op's own error is re-raised on the next pass
                continue
            if wrote:
                record = pack(new_state, new_data)
                if record is not None:
                    try:
                        stored = encode_stored(storage.codec, key, record)
                    except SerializationError as exc:
                        op.rejected = exc
                        rejected += 1
                        continue
                    if type(stored) is bytes and len(stored) > storage.max_value_bytes:
                        op.rejected = SerializationError(
                            f"conversation {key}: the record would be {len(stored)} bytes; the "
                            f"storage limit is {storage.max_value_bytes} (max_value_bytes)"
                        )
                        rejected += 1
                        continue
            state, data = new_state, new_data
        return rejected


def _take(queue: deque[Op]) -> list[Op]:
    """Every queued op whose caller still waits, in order; the queue is emptied."""
    ops = [op for op in queue if op.future is None or not op.future.done()]
    queue.clear()
    return ops


_writers: weakref.WeakKeyDictionary[BaseStorage, Writer] = weakref.WeakKeyDictionary()


def writer_for(storage: BaseStorage) -> Writer:
    """The one ``Writer`` of ``storage``: it lives as long as the storage does, and no longer
    (an attachment of an in-tree storage; for another backend, kept in a weak mapping and
    holding the storage only weakly)."""
    if isinstance(storage, FastPathStorage):
        return storage.attachment("statekit.fsm.writer", Writer)
    writer = _writers.get(storage)
    if writer is None:
        writer = _writers[storage] = Writer(
            cast(BaseStorage, weakref.proxy(storage)), timers_for(storage)
        )
    return writer
