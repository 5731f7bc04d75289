"""``PyrogramStorage``: a Pyrogram-family session ``Storage`` (kurigram, irenogram, pyrofork,
pyrogram 2.0) over any statekit storage, so a client's session can live in SQLite or Redis.

kurigram / irenogram: ``Client(name, storage_engine=PyrogramStorage(storage, name))``; pyrogram
2.0: assign ``client.storage = PyrogramStorage(storage, name)`` after constructing the client.
``open()`` (called by the client when it connects) takes the session's ownership lease, so a second
process gets ``SessionLockedError`` naming the holder; ``close()`` releases it. The statekit
storage itself is left running (it may serve other parts of the bot): stop it yourself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from itertools import islice
from typing import Any

import pyrogram.storage.storage as _client_storage
from pyrogram import raw
from pyrogram.storage import Storage

from statekit.errors import StatekitError
from statekit.session import SessionCipher
from statekit.session.records import UpdateState
from statekit.session.store import SessionStore
from statekit.session.support import (
    PROD_ADDRESSES,
    TEST_ADDRESSES,
    PeerRow,
    make_row,
    username_pair,
    write_checked_rows,
)
from statekit.storage.base import BaseStorage

# kurigram / irenogram keep update states in their own dataclass; pyrogram 2.0 has none.
_ClientUpdateState: Any = getattr(_client_storage, "UpdateState", None)
_types: Any = raw.types

__all__ = ["PyrogramStorage"]

log = logging.getLogger("statekit.session")

_ZERO_CHANNEL_ID = -1_000_000_000_000
_MAX_CHAT_ID = 999_999_999_999
_YIELD_EVERY = 1000  # peers staged between two turns of the event loop (checked inline: cheap)
_INT64 = 2**63
_USER_TYPES = frozenset({"user", "bot"})
_CHANNEL_TYPES = frozenset({"channel", "supergroup", "direct", "forum", "community"})


def input_peer(row: PeerRow) -> Any:
    """The ``_types.InputPeer*`` a client sends for a stored peer row."""
    peer_id, access_hash, kind = row[0], row[1], row[2]
    if kind not in _USER_TYPES and kind != "group" and kind not in _CHANNEL_TYPES:
        kind = "user" if peer_id > 0 else "group" if peer_id >= -_MAX_CHAT_ID else "channel"
    if kind in _USER_TYPES:
        return _types.InputPeerUser(user_id=peer_id, access_hash=access_hash)
    if kind == "group":
        return _types.InputPeerChat(chat_id=-peer_id)
    return _types.InputPeerChannel(
        channel_id=_ZERO_CHANNEL_ID - peer_id, access_hash=access_hash
    )


class PyrogramStorage(Storage):
    """A Pyrogram-family ``Storage`` keeping session ``name`` in a statekit ``storage``.

    Accessors follow the clients' convention: ``await s.dc_id()`` reads, ``await s.dc_id(v)``
    writes (``None`` is a real value). Lookups of unknown peers raise ``KeyError``, as the clients
    expect; a username is resolved only if the peer was stored less than ``username_ttl`` seconds
    ago (``None``: always), like kurigram's own storage. ``cipher`` keeps the session record
    encrypted at rest; ``lease_ttl`` / ``lease_wait`` tune the ownership lease; ``peer_cache``
    bounds the peers kept in memory.
    """

    USERNAME_TTL = 8 * 60 * 60

    def __init__(
        self,
        storage: BaseStorage,
        name: str,
        *,
        cipher: SessionCipher | bytes | None = None,
        lease_ttl: float = 30.0,
        lease_wait: float = 0.0,
        peer_cache: int = 100_000,
        username_ttl: float | None = USERNAME_TTL,
    ) -> None:
        self.store = SessionStore(
            storage, name, cipher=cipher, lease_ttl=lease_ttl, peer_cache=peer_cache
        )
        self.name = name
        self.lease_wait = lease_wait
        self.username_ttl = username_ttl
        # Like kurigram's own storage, which commits neither update_peers nor update_usernames,
        # peers are staged here and written in the background right after (usernames, which
        # kurigram sends in a second call, merged in), or before the next lookup / save / close.
        self._pending: dict[int, PeerRow] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PyrogramStorage({self.store!r})"

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Start the statekit storage and take the session's ownership lease.

        Raises ``SessionLockedError`` (naming host, pid and since) if another process holds it.
        """
        await self.store.storage.start()
        await self.store.open(wait=self.lease_wait)

    async def save(self) -> None:
        """Write pending peers and stamp the session date (other changes are already stored)."""
        await self._flush()
        await self.store.update(date=int(time.time()))

    async def close(self) -> None:
        """Write pending peers and release the ownership lease (the statekit storage keeps
        running)."""
        try:
            await self._flush()
        finally:
            if self._flusher is not None:
                self._flusher.cancel()
                self._flusher = None
            await self.store.close()

    async def delete(self) -> None:
        """Delete the session and everything it owns from the storage."""
        async with self._flush_lock:
            self._pending.clear()
            await self.store.delete()

    # ------------------------------------------------------------------ peers

    async def update_peers(self, peers: Iterable[tuple[Any, ...]]) -> None:
        """Stage peers given as kurigram's ``(id, access_hash, type, phone_number)`` (usernames
        come separately, through ``update_usernames``; stored ones are kept) or write those given
        as pyrogram 2.0's ``(id, access_hash, type, username, phone_number)``.

        Staged peers are written in the background at once, and before any lookup, ``save()`` or
        ``close()``; a write that fails is retried then, and raises there.
        """
        short: dict[int, PeerRow] = {}
        full: list[PeerRow] = []
        now = int(time.time())
        n = 0
        for item in peers:
            n += 1
            if type(item) is tuple and len(item) == 4:
                peer_id, access_hash, kind, phone = item
                if (
                    phone is None
                    and type(peer_id) is int
                    and type(access_hash) is int
                    and type(kind) is str
                    and -_INT64 <= peer_id < _INT64
                    and -_INT64 <= access_hash < _INT64
                ):  # the common shape, checked inline; make_row checks the rest
                    short[peer_id] = (peer_id, access_hash, kind, (), None, now, None)
                else:
                    short[peer_id] = make_row(peer_id, access_hash or 0, kind, (), phone, now)
            elif isinstance(item, tuple | list) and len(item) in (4, 5):
                if len(item) == 4:
                    peer_id, access_hash, kind, phone = item
                    short[peer_id] = make_row(peer_id, access_hash or 0, kind, (), phone, now)
                else:
                    peer_id, access_hash, kind, username, phone = item
                    names = (username,) if username else ()
                    full.append(make_row(peer_id, access_hash or 0, kind, names, phone, None))
            else:
                # the item itself is not shown: it may hold an access hash and a phone number
                size = f" of {len(item)} items" if isinstance(item, tuple | list) else ""
                raise ValueError(f"a peer is a tuple of 4 or 5 items, got {type(item).__name__}{size}")
            if n == _YIELD_EVERY:
                n = 0
                await asyncio.sleep(0)  # a big batch must not hold the event loop
        if full:
            await self._flush()
            await self.store.update_peer_rows(full)
        if short:
            pending = self._pending
            if not pending and not self._flush_lock.locked():
                self._pending = short  # nobody holds the empty one: no copy of a large batch
            else:
                for n, (peer_id, row) in enumerate(short.items(), 1):
                    if n % _YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                        pending = self._pending  # a flush meanwhile took the one before
                    staged = pending.get(peer_id)
                    if staged is not None and staged[3]:
                        # usernames staged by update_usernames and not written yet: a row without
                        # usernames keeps them, as it keeps stored ones (kurigram's semantics)
                        row = (row[0], row[1], row[2], staged[3], row[4], row[5], row[6])
                    pending[peer_id] = row
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush(self) -> None:
        """Write the staged peers (waiting for a write in progress to finish first)."""
        async with self._flush_lock:
            if not self._pending:
                return
            pending, self._pending = self._pending, {}
            try:
                # rows checked as they were staged (update_peers, update_usernames), stamped
                await write_checked_rows(self.store, pending, keep_usernames=True)
            except BaseException:
                self._pending = {**pending, **self._pending}
                raise

    async def _flush_soon(self) -> None:
        try:
            await self._flush()
        except StatekitError as exc:  # kept staged: the next access writes them or raises
            log.warning("statekit: writing peers of session %r failed: %s", self.name, exc)

    async def update_usernames(self, usernames: Iterable[tuple[int, list[str | None]]]) -> None:
        """Replace the usernames of peers (staged ones included); dropped usernames stop
        resolving."""
        rest: list[tuple[int, tuple[str, ...]]] = []
        merged: dict[int, PeerRow] = {}  # applied once every pair is checked: all or nothing
        # the background write of staged peers waits meanwhile, so that they are written once,
        # with their usernames
        async with self._flush_lock:
            pending = self._pending
            n = 0
            for pair in usernames:
                n += 1
                if n == _YIELD_EVERY:
                    n = 0
                    await asyncio.sleep(0)  # a big batch must not hold the event loop
                peer_id, given = username_pair(pair)
                row = merged.get(peer_id) or pending.get(peer_id)
                if row is not None and given:
                    merged[peer_id] = (row[0], row[1], row[2], given, row[4], row[5], row[6])
                else:
                    rest.append((peer_id, given))
            if len(merged) <= _YIELD_EVERY:
                pending.update(merged)
            else:  # the flush waits for the lock meanwhile: it sees all of them or none
                rows = iter(merged.items())
                for _ in range(0, len(merged), _YIELD_EVERY):
                    pending.update(islice(rows, _YIELD_EVERY))
                    await asyncio.sleep(0)
        if rest:
            await self._flush()
            await self.store.update_usernames(rest)
        if self._pending:
            self._schedule_flush()

    async def get_peer_by_id(self, peer_id: int) -> Any:
        """The ``InputPeer`` of a stored peer; ``KeyError`` if unknown."""
        if self._pending or self._flush_lock.locked():
            await self._flush()
        row = await self.store.peer_row_by_id(peer_id)
        if row is None:
            raise KeyError(f"ID not found: {peer_id}")
        return input_peer(row)

    async def get_peer_by_username(self, username: str) -> Any:
        """The ``InputPeer`` of the peer with ``username``; ``KeyError`` if unknown or expired."""
        if self._pending or self._flush_lock.locked():
            await self._flush()
        row = await self.store.peer_row_by_username(username)
        if row is None:
            raise KeyError(f"Username not found: {username}")
        ttl = self.username_ttl
        if ttl is not None and (row[5] is None or abs(time.time() - row[5]) > ttl):
            raise KeyError(f"Username expired: {username}")
        return input_peer(row)

    async def get_peer_by_phone_number(self, phone_number: str) -> Any:
        """The ``InputPeer`` of the peer with ``phone_number``; ``KeyError`` if unknown."""
        if self._pending or self._flush_lock.locked():
            await self._flush()
        row = await self.store.peer_row_by_phone_number(phone_number)
        if row is None:
            raise KeyError(f"Phone number not found: {phone_number}")
        return input_peer(row)

    # ------------------------------------------------------------------ update states

    async def get_update_states(self, ids: int | Iterable[int] | None = None) -> list[Any]:
        """Update states as the client's ``UpdateState`` objects, oldest date first."""
        states = await self.store.get_update_states(ids)
        make = _ClientUpdateState if _ClientUpdateState is not None else UpdateState
        return [make(s.id, s.pts, s.qts, s.date, s.seq) for s in states]

    async def set_update_state(self, update_state: Any) -> None:
        """Store one update state or several; None fields keep the stored values."""
        single = isinstance(update_state, UpdateState) or (
            _ClientUpdateState is not None and isinstance(update_state, _ClientUpdateState)
        )
        given = [update_state] if single else list(update_state)
        await self.store.set_update_state(
            UpdateState(s.id, s.pts, s.qts, s.date, s.seq) for s in given
        )

    async def delete_update_state(self, state_id: int | Iterable[int]) -> None:
        """Forget the update states of the boxes ``state_id``."""
        await self.store.delete_update_state(state_id)

    # ------------------------------------------------------------------ session fields

    async def _field(self, name: str, value: Any) -> Any:
        if value is object:
            return await self.store.get_field(name)
        await self.store.update(**{name: value})
        return None

    async def dc_id(self, value: Any = object) -> Any:
        """Read or write the data centre (2 until one is set, like the clients' own storage)."""
        found = await self._field("dc_id", value)
        return 2 if value is object and found is None else found

    async def server_address(self, value: Any = object) -> Any:
        """Read or write the data centre's address (derived from ``dc_id`` if never set)."""
        found = await self._field("server_address", value)
        if value is object and found is None:
            dc = await self.dc_id()
            # as the clients do when they migrate an old session file
            table = TEST_ADDRESSES if await self.test_mode() else PROD_ADDRESSES
            return table.get(dc, table[2])
        return found

    async def port(self, value: Any = object) -> Any:
        """Read or write the data centre's port (443, or 80 in test mode, if never set)."""
        found = await self._field("port", value)
        if value is object and found is None:
            return 80 if await self.test_mode() else 443
        return found

    async def api_id(self, value: Any = object) -> Any:
        """Read or write the API id."""
        return await self._field("api_id", value)

    async def test_mode(self, value: Any = object) -> Any:
        """Read or write the test-mode flag (None until set)."""
        return await self._field("test_mode", value)

    async def auth_key(self, value: Any = object) -> Any:
        """Read or write the 256-byte auth key (None until set)."""
        return await self._field("auth_key", value)

    async def date(self, value: Any = object) -> Any:
        """Read or write the session date (0 until set)."""
        found = await self._field("date", value)
        return 0 if value is object and found is None else found

    async def user_id(self, value: Any = object) -> Any:
        """Read or write the user id (None until set)."""
        return await self._field("user_id", value)

    async def is_bot(self, value: Any = object) -> Any:
        """Read or write the bot flag (None until set)."""
        return await self._field("is_bot", value)
