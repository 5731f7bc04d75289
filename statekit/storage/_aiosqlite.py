"""The aiosqlite internals statekit relies on, in one place (``tests/contract/
test_driver_internals.py`` fails with a clear message when an aiosqlite release changes them).

aiosqlite has no public way to run a whole batch of ``sqlite3`` calls in one hop to its worker
thread, which the SQLite backend's group commit needs; it uses ``Connection._execute(fn, *args)``
(present since aiosqlite 0.17) and the underlying ``sqlite3.Connection`` (``Connection._conn``).
Its worker thread (``Connection._thread``) is not a daemon, so a storage never stopped would keep a
finished program alive: ``daemon_worker`` marks it a daemon before it starts.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import aiosqlite

__all__ = ["daemon_worker", "raw_connection", "run_in_thread"]


async def run_in_thread(conn: aiosqlite.Connection, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` on the connection's worker thread and return its result.

    Neither ``args`` nor the result stay referenced once the call is over: aiosqlite's worker
    keeps the function of its last call, and what that returned, until the next call arrives,
    which would keep a large batch's values (the packed buckets of a session write: ~8 MB at
    100,000 peers) allocated meanwhile. Both pass through boxes emptied here."""
    given = [args]

    def call() -> list[Any]:
        return [fn(*given.pop())]

    returned: list[Any] = await conn._execute(call)  # type: ignore[no-untyped-call]
    return returned.pop()


def raw_connection(conn: aiosqlite.Connection) -> sqlite3.Connection:
    """The ``sqlite3.Connection`` an aiosqlite connection wraps (use only on its worker thread)."""
    return conn._conn


def daemon_worker(pending: aiosqlite.Connection) -> bool:
    """Mark the worker thread of a not yet awaited ``aiosqlite.connect(...)`` a daemon, so it
    never keeps a finished program alive (committed rows are on disk either way). Returns False
    if this aiosqlite release has no such thread attribute (nothing is changed then)."""
    worker = getattr(pending, "_thread", None)
    if not isinstance(worker, threading.Thread):
        return False
    worker.daemon = True
    return True
