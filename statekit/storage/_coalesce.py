"""Shared round trips for a pooled backend: operations run one statement each while the pool has a
free connection; once every connection is busy, further operations queue by kind and each kind's
queue runs as ONE batch statement on the next connection that frees up. No extra latency when
idle; under load, many callers per round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["Coalescer", "Pending"]

_T = TypeVar("_T")


class Pending(Generic[_T]):
    """One queued operation: its arguments and the future its caller awaits."""

    __slots__ = ("args", "future")

    def __init__(self, future: asyncio.Future[_T], args: tuple[Any, ...]) -> None:
        self.future = future
        self.args = args

    def resolve(self, result: _T) -> None:
        if not self.future.done():
            self.future.set_result(result)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


Batch = Callable[[list[Pending[Any]]], Awaitable[None]]


class Coalescer:
    """Runs operations directly while fewer than ``limit`` are in flight, else in batches.

    ``batches`` maps a kind to ``async fn(items)`` that runs them as one statement and resolves
    every item (an exception it raises fails the items it left unresolved). ``distinct(kind)``
    names kinds whose batch may hold each first argument (the key) once only; later operations on
    the same key wait for the next batch. At most ``max_batch`` items go into one batch.
    """

    def __init__(
        self,
        limit: int,
        batches: dict[str, Batch],
        *,
        distinct: frozenset[str] = frozenset(),
        max_batch: int = 500,
    ) -> None:
        self._limit = limit
        self._batches = batches
        self._distinct = distinct
        self._max_batch = max_batch
        self._busy = 0
        self._pending: dict[str, list[Pending[Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches_run = 0
        """How many batch statements ran (for tests and tuning)."""

    async def run(self, kind: str, args: tuple[Any, ...], single: Callable[[], Awaitable[_T]]) -> _T:
        """Return ``await single()`` if a connection is free, else the result of a batch."""
        if self._busy < self._limit and not self._pending:
            self._busy += 1
            try:
                return await single()
            finally:
                self._busy -= 1
                if self._pending:
                    self._kick()
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(kind, []).append(Pending(future, args))
        self._kick()
        return await future

    def _kick(self) -> None:
        while self._busy < self._limit and self._pending:
            kind = next(iter(self._pending))
            queue = self._pending.pop(kind)
            taken: list[Pending[Any]] = []
            rest: list[Pending[Any]] = []
            seen: set[Any] = set()
            for item in queue:
                if item.future.done():  # cancelled while queued: never run
                    continue
                if len(taken) >= self._max_batch or (kind in self._distinct and item.args[0] in seen):
                    rest.append(item)
                    continue
                seen.add(item.args[0])
                taken.append(item)
            if rest:
                self._pending[kind] = rest
            if not taken:
                continue
            self._busy += 1
            task = asyncio.get_running_loop().create_task(self._run_batch(kind, taken))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, kind: str, items: list[Pending[Any]]) -> None:
        self.batches_run += 1
        try:
            await self._batches[kind](items)
        except BaseException as exc:
            for item in items:
                item.fail(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._busy -= 1
            if self._pending:
                self._kick()

    async def drain(self) -> None:
        """Wait until every queued and running batch has finished."""
        while self._tasks or self._pending:
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            else:
                await asyncio.sleep(0.001)
