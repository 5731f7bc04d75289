"""Deadline arming for conversation timeouts: the per-storage table of declared timeouts, the
timer stamped into conversation records, and the due index (SPEC section 5.1).

Everything here uses the public storage operations only (``get_state``, ``set_state``,
``compare_and_set``, ``get_many``, ``increment``), so it works on every backend.

Stored forms (keys live in the storage's namespace):

``record``
    ``{"state", "data", "t": [version, arm, due_ms]}``: a conversation in a state that has a
    timeout carries its timer in its own record, written by the same compare-and-set as the
    state. ``version`` is new on every write; ``arm`` identifies the armed deadline (the version of
    the write that armed it: every write for ``since="write"``, the entering write for
    ``since="entry"``); ``due_ms`` is when it falls due (epoch milliseconds). A record in a state
    without a timeout carries no timer.
``tmo:b:<bucket>:<pid>`` and ``tmo:e:<bucket>:<pid>:<seq>``
    one shard of the due index: the number of batches process ``pid`` indexed for the second
    ``bucket`` (``at_ms // 1000``), and each batch (a list of entries
    ``[conversation key, arm, at_ms, due_ms]``) under its sequence number. Only that process
    writes its shard, so it knows the count: an append is two writes issued together (one round
    trip where the backend pipelines them) of the new batch (the appends of this process that
    arrived together) and the new count, whatever the shard already holds. Every key has its own Redis Cluster slot, so the index spreads over the cluster.
``tmo:writers``
    ``{pid: last bucket it may write}``: the processes whose shards a poller reads.
``tmo:lw``
    the low watermark: every bucket below it has been handled (where a starting poller begins).

The index entry is written before the record's compare-and-set; a crash between the two leaves an
entry whose arm no record carries, which the poller drops. A record never carries a timer whose
entry was not stored first, so no crash loses a deadline.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from statekit.storage._fastpath import FastPathStorage
from statekit.storage.base import BaseStorage

__all__ = [
    "BUCKET_MS",
    "LW_KEY",
    "RETAIN_MS",
    "SETTLE_MS",
    "WRITERS_KEY",
    "Spec",
    "Timers",
    "bucket_of",
    "entry_key",
    "now_ms",
    "shard_key",
    "timers_for",
]

BUCKET_MS = 1000
"""Width of one index bucket."""
SETTLE_MS = 3000
"""A bucket is re-read until this long after its end (a late append is still seen)."""
RETAIN_MS = 7 * 24 * 3600 * 1000
"""Index shards are kept this long after their bucket (deadlines older than this are lost)."""
WRITERS_KEY = "tmo:writers"
LW_KEY = "tmo:lw"
_CACHED_BUCKETS = 16
_REGISTER_AHEAD = 3600  # buckets a writer registers ahead of the one it writes
_RECHECK_S = 60.0  # a writer makes sure it is still listed this often (one read)


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return int(time.time() * 1000)


def bucket_of(at_ms: int) -> int:
    """The index bucket of a time."""
    return at_ms // BUCKET_MS


def shard_key(bucket: int, pid: str) -> str:
    """The index shard of process ``pid`` for ``bucket``: how many batches it holds."""
    return f"tmo:b:{bucket}:{pid}"


def entry_key(bucket: int, pid: str, seq: int) -> str:
    """Batch ``seq`` of the index shard of process ``pid`` for ``bucket``."""
    return f"tmo:e:{bucket}:{pid}:{seq}"


Handler = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Spec:
    """One declared timeout: ``after_ms`` in ``since`` mode, fired through ``owner``."""

    state: str
    after_ms: int
    since: str
    handler: Handler
    owner: Any


class Timers:
    """The timeouts declared on one storage in this process, and this process's index writer."""

    def __init__(self, storage: BaseStorage) -> None:
        self.storage = storage
        self.specs: dict[str, Spec] = {}
        self.pid = f"{random.getrandbits(48):012x}"
        self._shards: OrderedDict[int, int] = OrderedDict()  # bucket: batches written
        self._pending: list[tuple[int, list[Any], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._registered = -1
        self._checked = 0.0  # time.monotonic() of the last look at tmo:writers
        self._register_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------ stamping records

    def stamp(
        self, old: Any, state: str | None, version: int, at: int
    ) -> tuple[list[int] | None, list[Any] | None]:
        """The timer of a record written in ``state`` over the stored value ``old``.

        Returns (timer for the new record or None, index entry to store first or None); the entry
        is ``[arm, at_ms, due_ms]`` without the conversation key.
        """
        spec = self.specs.get(state) if state is not None else None
        if spec is None:
            return None, None
        if spec.since == "entry" and type(old) is dict and old.get("state") == state:
            timer = old.get("t")
            if type(timer) is list and len(timer) == 3:
                return [version, timer[1], timer[2]], None
        due = at + spec.after_ms
        return [version, version, due], [version, due, due]

    # ------------------------------------------------------------------ the due index

    async def index(self, conv: str, arm: int, at_ms: int, due_ms: int) -> None:
        """Store the index entry of a deadline (before the record that arms it is written).

        Concurrent calls of this process for one bucket are written together. An entry whose
        write landed too late for pollers to see it in its bucket is written again (so a stalled
        writer cannot hide a deadline). Raises what the storage raises.
        """
        at = max(at_ms, now_ms())
        while True:
            bucket = bucket_of(at)
            await self._append(bucket, [conv, arm, at, due_ms])
            landed = now_ms()
            if landed <= (bucket + 1) * BUCKET_MS + SETTLE_MS // 2:
                return
            at = landed

    async def _append(self, bucket: int, entry: list[Any]) -> None:
        if bucket + _REGISTER_AHEAD // 2 > self._registered or (
            time.monotonic() - self._checked > _RECHECK_S
        ):
            await self._register(bucket)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((bucket, entry, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        """Write what is pending, batch after batch, until nothing is; each waiting caller gets
        the outcome of its own bucket's write (all woken at once)."""
        batch: list[tuple[int, list[Any], asyncio.Future[None]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                buckets: dict[int, list[tuple[list[Any], asyncio.Future[None]]]] = {}
                for bucket, entry, done in batch:
                    buckets.setdefault(bucket, []).append((entry, done))
                for bucket, items in sorted(buckets.items()):
                    error: BaseException | None = None
                    try:
                        await self._write_shard(bucket, [entry for entry, _ in items])
                    except Exception as exc:  # noqa: BLE001 - handed to each waiting caller
                        error = exc
                    for _, done in items:
                        if not done.done():
                            if error is None:
                                done.set_result(None)
                            else:
                                done.set_exception(error)
        finally:  # cancelled (the loop is closing): no caller waits for ever
            for _, _, done in (*batch, *self._pending):
                if not done.done():
                    done.cancel()

    async def _write_shard(self, bucket: int, entries: list[list[Any]]) -> None:
        """Append ``entries`` to this process's shard of ``bucket``: the batch under its sequence
        number and the shard's new batch count."""
        storage = self.storage
        count = self._shards.get(bucket)
        if count is None:  # only after this bucket left the memory of recent ones
            stored = await storage.get_state(shard_key(bucket, self.pid))
            count = stored if type(stored) is int else 0
        ttl = max(1, (bucket + 1) * BUCKET_MS - now_ms() + RETAIN_MS) / 1000
        # two writes issued together (one round trip where the backend pipelines them); both
        # must land before the records that need them are written, in either order: a count
        # ahead of its batch reads as "not visible yet", a batch without its count is never read
        await asyncio.gather(
            storage.set_state(entry_key(bucket, self.pid, count), entries, ttl=ttl),
            storage.set_state(shard_key(bucket, self.pid), count + 1, ttl=ttl),
        )
        self._shards[bucket] = count + 1
        self._shards.move_to_end(bucket)
        while len(self._shards) > _CACHED_BUCKETS:
            self._shards.popitem(last=False)

    async def _register(self, bucket: int) -> None:
        """List this process in ``tmo:writers`` up to ``bucket`` + an hour; set the low watermark
        if there is none (so pollers start no later than this process's first entry).

        Checked again every ``_RECHECK_S`` seconds, so a store that lost the list (flushed, or
        restored from an older copy) lists this process again within that time.
        """
        if self._register_lock is None:
            self._register_lock = asyncio.Lock()
        async with self._register_lock:
            fresh = time.monotonic() - self._checked <= _RECHECK_S
            if fresh and bucket + _REGISTER_AHEAD // 2 <= self._registered:
                return
            storage = self.storage
            until = max(bucket + _REGISTER_AHEAD, self._registered)
            await storage.compare_and_set(LW_KEY, bucket_of(now_ms()), expected=None, ttl=None)
            while True:
                current = await storage.get_state(WRITERS_KEY)
                writers = dict(current) if type(current) is dict else {}
                listed = writers.get(self.pid)
                if type(listed) is int and listed >= until:
                    break
                writers[self.pid] = until
                if await storage.compare_and_set(
                    WRITERS_KEY, writers, expected=current, ttl=None
                ):
                    break
                await asyncio.sleep(random.uniform(0, 0.01))
            self._registered = until
            self._checked = time.monotonic()


def timers_for(storage: BaseStorage) -> Timers:
    """The ``Timers`` of ``storage`` (one per storage object, living as long as it does).

    The one place the timeouts reach the storage's attachment interface (an in-tree storage);
    for another backend they are kept in a weak mapping that holds the storage only weakly.
    """
    if isinstance(storage, FastPathStorage):
        return storage.attachment("statekit.fsm.timers", Timers)
    timers = _timers.get(storage)
    if timers is None:
        timers = _timers[storage] = Timers(cast(BaseStorage, weakref.proxy(storage)))
    return timers


_timers: weakref.WeakKeyDictionary[BaseStorage, Timers] = weakref.WeakKeyDictionary()
