"""The ownership lease of a session: one process at a time uses a session.

A lease is one key written with ``compare_and_set(expected=None)`` and a TTL, holding who took it
(host, pid, since, a random token). The holder renews it in the background; a second process gets
``SessionLockedError`` naming the holder instead of "database is locked" or AUTH_KEY_DUPLICATED.
If the holder dies, nothing renews the key and it expires by itself. Only the storage contract is
used, so it works the same on memory, SQLite and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from statekit.errors import SessionLockedError, StorageUnavailableError
from statekit.storage.base import BaseStorage

__all__ = ["LeaseHolder", "SessionLease"]

log = logging.getLogger("statekit.session")


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """Who holds a lease: host name, process id, Unix time it was taken, and its token."""

    host: str
    pid: int
    since: float
    token: str

    def to_value(self) -> dict[str, Any]:
        """The record as stored."""
        return {"host": self.host, "pid": self.pid, "since": self.since, "token": self.token}

    @classmethod
    def from_value(cls, value: Any) -> LeaseHolder | None:
        """Parse a stored record; None if it is not one."""
        if not isinstance(value, dict):
            return None
        host, pid, since, token = (value.get(k) for k in ("host", "pid", "since", "token"))
        if not (isinstance(host, str) and type(pid) is int and isinstance(token, str)):
            return None
        if not isinstance(since, int | float) or isinstance(since, bool):
            return None
        return cls(host, pid, float(since), token)

    def describe(self) -> str:
        """``pid 123 on host 'box' since 2024-05-01 12:00:00 UTC``."""
        when = datetime.fromtimestamp(self.since, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"pid {self.pid} on host {self.host!r} since {when}"


class SessionLease:
    """An ownership lease on ``key`` of ``storage``, valid ``ttl`` seconds unless renewed.

    ``acquire()`` takes it (``SessionLockedError`` if another holder has it), then renews it every
    ``ttl / 3`` seconds in a background task until ``release()``. ``held`` is True only while the
    lease is certainly ours (taken, and renewed less than ``ttl`` ago); ``on_gap`` is called when
    ownership may have been interrupted (the lease lapsed and was taken again, or was lost), so a
    holder can drop anything it cached on the strength of being the only writer.
    """

    def __init__(
        self,
        storage: BaseStorage,
        key: str,
        *,
        ttl: float = 30.0,
        what: str = "session",
        on_gap: Callable[[], None] | None = None,
    ) -> None:
        if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not 0 < ttl < 86400:
            raise ValueError(f"lease ttl must be seconds in (0, 86400), got {ttl!r}")
        self.storage = storage
        self.key = key
        self.ttl = float(ttl)
        self.what = what
        self._on_gap = on_gap
        self._holder: LeaseHolder | None = None
        self._valid_until = 0.0
        self._lost = False
        self._lost_to: LeaseHolder | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "held" if self._holder is not None else "free"
        return f"SessionLease({self.what}, ttl={self.ttl}, {state})"

    @property
    def holder(self) -> LeaseHolder | None:
        """Our holder record while we hold (or try to keep) the lease, else None."""
        return self._holder

    @property
    def held(self) -> bool:
        """True while the lease is certainly ours."""
        return self._holder is not None and time.monotonic() < self._valid_until

    @property
    def lost(self) -> bool:
        """True once another holder took the lease from us (``check()`` raises then)."""
        return self._lost

    async def current_holder(self) -> LeaseHolder | None:
        """Return whoever holds the lease now (us included), or None if it is free."""
        return LeaseHolder.from_value(await self.storage.get_state(self.key))

    def _locked_error(self, other: LeaseHolder | None, remaining: float | None) -> SessionLockedError:
        who = other.describe() if other is not None else "another process"
        left = f"; its lease expires in {remaining:.1f}s unless renewed" if remaining else ""
        return SessionLockedError(
            f"{self.what} is in use by {who}{left}. Stop that process, or open with wait= to "
            "wait for it (a dead holder's lease lapses by itself)"
        )

    async def acquire(self, *, wait: float = 0.0) -> None:
        """Take the lease, retrying for up to ``wait`` seconds while another holder has it.

        Raises ``SessionLockedError`` naming the holder (host, pid, since) if it is still taken,
        and ``RuntimeError`` if this object already holds it.
        """
        if self._holder is not None:
            raise RuntimeError(f"{self.what}: lease already acquired by this object")
        deadline = time.monotonic() + max(0.0, wait)
        holder = LeaseHolder(socket.gethostname(), os.getpid(), time.time(), uuid.uuid4().hex)
        while True:
            started = time.monotonic()
            if await self.storage.compare_and_set(
                self.key, holder.to_value(), expected=None, ttl=self.ttl
            ):
                break
            other = await self.current_holder()
            if other is None and await self.storage.get_state(self.key) is None:
                continue  # it lapsed between the two calls: try again at once
            now = time.monotonic()
            if now >= deadline:
                raise self._locked_error(other, await self.storage.get_ttl(self.key))
            await asyncio.sleep(min(self.ttl / 10, 0.5, deadline - now))
        self._holder = holder
        self._lost, self._lost_to = False, None
        self._valid_until = started + self.ttl * 0.9
        self._task = asyncio.create_task(self._renew_forever(), name=f"statekit-lease:{self.key}")

    async def renew(self) -> bool:
        """Renew the lease now; return True if it is (still, or again) ours.

        If it lapsed and was free, it is taken again and ``on_gap`` is called; if another holder
        has it, the lease is lost (``check()`` raises from then on) and ``on_gap`` is called.
        """
        holder = self._holder
        if holder is None:
            return False
        started = time.monotonic()
        value = holder.to_value()
        if await self.storage.compare_and_set(self.key, value, expected=value, ttl=self.ttl):
            self._valid_until = started + self.ttl * 0.9
            return True
        if await self.storage.compare_and_set(self.key, value, expected=None, ttl=self.ttl):
            log.warning("%s: lease lapsed and was taken again; cached state dropped", self.what)
            self._valid_until = started + self.ttl * 0.9
            self._gap()
            return True
        other = await self.current_holder()
        self._valid_until = 0.0
        self._lost, self._lost_to = True, other
        log.error(
            "%s: lease lost to %s", self.what, other.describe() if other else "another process"
        )
        self._gap()
        return False

    def _gap(self) -> None:
        if self._on_gap is not None:
            self._on_gap()

    async def _renew_forever(self) -> None:
        interval = self.ttl / 3
        while self._holder is not None:
            await asyncio.sleep(interval)
            try:
                if not await self.renew():
                    return
            except StorageUnavailableError as exc:
                log.warning("%s: lease renewal failed (%s); retrying", self.what, exc)

    def check(self) -> None:
        """Raise ``SessionLockedError`` if the lease was lost to another holder."""
        if self._lost:
            raise self._locked_error(self._lost_to, None)

    async def release(self) -> bool:
        """Stop renewing and delete the lease if it is still ours; return True if deleted."""
        holder, self._holder = self._holder, None
        self._valid_until = 0.0
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if holder is None:
            return False
        return await self.storage.compare_and_set(self.key, None, expected=holder.to_value())
