"""``SessionStore``: one MTProto session (record, peer cache, update states) over any statekit
storage.

Keys of session ``NAME`` (all share the Redis Cluster hash tag ``{NAME}``)::

    session:{NAME}:data            the session record (dc, auth key, user...), optionally sealed
    session:{NAME}:peer:ID         one peer: the list [id, access_hash, type, usernames, phone, stamp]
    session:{NAME}:un:USERNAME     the same peer, under each lower-case username it has
    session:{NAME}:ph:PHONE        the same peer, under its phone number
    session:{NAME}:states          update states of every box
    session:{NAME}:lease           the ownership lease (see ``statekit.session.lease``)

Every lookup is one storage read. ``open()`` takes the ownership lease; while it is held no other
process writes the session, so the store serves repeated reads from memory (the record, the
update states and recently used peers) and a field update is one compare-and-set.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Final

from statekit.codec import INT64_MAX, MsgpackCodec, encode_stored
from statekit.session._cipher import SessionCipher
from statekit.session._peers import (
    PeerCache,
    PeerRow,
    make_row,
    normalize_phone,
    pack_row,
    peer_row,
    row_peer,
    stored_row,
    unpack_row,
    username_pair,
)
from statekit.session._record import (
    FIELDS,
    Cell,
    RecordCodec,
    check_field,
    check_name,
    decode_states,
    encode_states,
)
from statekit.session.lease import LeaseHolder, SessionLease
from statekit.session.records import Peer, SessionData, SessionSnapshot, UpdateState
from statekit.storage._fastpath import FastPathStorage
from statekit.storage.base import BaseStorage

__all__ = ["FIELDS", "SessionStore", "list_sessions"]

_CHUNK = 500
_CHUNK_PEERS = 1000
_REFRESH_AFTER = 300  # seconds: an unchanged peer is rewritten only to refresh an older stamp
_INT64 = INT64_MAX + 1  # ids and hashes are signed 64-bit: -_INT64 <= x < _INT64


def _now() -> int:
    return int(time.time())


async def list_sessions(storage: BaseStorage) -> list[str]:
    """Return the names of the sessions that have a record in ``storage``, sorted."""
    names: set[str] = set()
    async for key in storage.scan_keys("session:{*}:data"):
        name = key[len("session:{") : -len("}:data")]
        if name and "{" not in name and "}" not in name:
            names.add(name)
    return sorted(names)


class SessionStore:
    """One MTProto session named ``name`` in ``storage``.

    ``cipher``: a ``SessionCipher`` (or its key as bytes) to keep the session record encrypted at
    rest. ``lease_ttl``: seconds a dead holder keeps the session locked. ``peer_cache``: peers kept
    in memory while the lease is held (0 disables caching of peers).

    ``async with store:`` (or ``open()`` / ``close()``) takes and releases the ownership lease;
    without it every method still works, reading the storage each time and writing without
    checking who holds the lease.
    """

    def __init__(
        self,
        storage: BaseStorage,
        name: str,
        *,
        cipher: SessionCipher | bytes | None = None,
        lease_ttl: float = 30.0,
        peer_cache: int = 100_000,
    ) -> None:
        if not isinstance(storage, BaseStorage):
            raise TypeError(f"storage must be a statekit BaseStorage, not {type(storage).__name__}")
        if type(peer_cache) is not int or peer_cache < 0:
            raise ValueError(f"peer_cache must be an int >= 0, got {peer_cache!r}")
        if not isinstance(lease_ttl, int | float) or isinstance(lease_ttl, bool) or lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be seconds > 0, got {lease_ttl!r}")
        self.storage: Final = storage
        self.name: Final = check_name(name)
        self._cipher = (
            cipher if isinstance(cipher, SessionCipher) or cipher is None else SessionCipher(cipher)
        )
        self._lease_ttl = float(lease_ttl)
        self._prefix = prefix = f"session:{{{name}}}:"
        # key prefixes: a key is the prefix followed by the peer id, lower-case username or phone
        self._peer_prefix = prefix + "peer:"
        self._username_prefix = prefix + "un:"
        self._phone_prefix = prefix + "ph:"
        self._lease: SessionLease | None = None
        self._peers = PeerCache(peer_cache)
        self._peer_gen = 0
        self._peer_lock = asyncio.Lock()
        self._codec = RecordCodec(name, self._cipher)
        self._record = Cell(
            storage, self._prefix + "data", self._codec.decode, self._codec.encode, self._caching
        )
        self._states = Cell(
            storage, self._prefix + "states", decode_states, encode_states, self._caching
        )

    def __repr__(self) -> str:
        lease = "leased" if self._lease is not None and self._lease.held else "not leased"
        sealed = ", encrypted" if self._cipher is not None else ""
        return f"SessionStore({self.name!r}, {self.storage!r}, {lease}{sealed})"

    # ------------------------------------------------------------------ lease and cache

    @property
    def lease(self) -> SessionLease | None:
        """The ownership lease taken by ``open()``, or None."""
        return self._lease

    def _caching(self) -> bool:
        lease = self._lease
        return lease is not None and lease.held

    def _drop_cache(self) -> None:
        self._peers.clear()
        self._peer_gen += 1
        self._record.forget()
        self._states.forget()

    def _check_writable(self) -> None:
        if self._lease is not None:
            self._lease.check()

    async def open(self, *, wait: float = 0.0) -> None:
        """Take the ownership lease (waiting up to ``wait`` seconds for it); idempotent.

        Raises ``SessionLockedError`` naming the holder (host, pid, since) if another holds it.
        """
        if self._lease is not None and self._lease.holder is not None:
            return
        lease = SessionLease(
            self.storage,
            self._prefix + "lease",
            ttl=self._lease_ttl,
            what=f"session {self.name!r}",
            on_gap=self._drop_cache,
        )
        await lease.acquire(wait=wait)
        self._drop_cache()
        self._lease = lease

    async def close(self) -> None:
        """Release the ownership lease (if taken) and drop what was cached; idempotent."""
        lease, self._lease = self._lease, None
        self._drop_cache()
        if lease is not None:
            await lease.release()

    async def __aenter__(self) -> SessionStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def holder(self) -> LeaseHolder | None:
        """Who holds this session's lease now (this store included), or None."""
        return LeaseHolder.from_value(await self.storage.get_state(self._prefix + "lease"))

    # ------------------------------------------------------------------ the record

    async def get_fields(self) -> dict[str, Any]:
        """Every record field (``FIELDS``), None where unset. Raises ``SessionFormatError`` if the
        record is encrypted and no (or the wrong) key was given."""
        record = await self._record.read()
        return {name: record.get(name) for name in FIELDS}

    async def get_field(self, name: str) -> Any:
        """One record field, or None if unset (``ValueError`` for an unknown field)."""
        if name not in FIELDS:
            check_field(name, None)
        return (await self._record.read()).get(name)

    async def update(self, **fields: Any) -> dict[str, Any]:
        """Set some record fields (None clears one), leaving the others as they are, atomically.

        Returns every field after the update. Raises ``ValueError``/``TypeError`` naming a bad
        field before anything is written.
        """
        checked = {name: check_field(name, value) for name, value in fields.items()}
        self._check_writable()

        def change(record: dict[str, Any]) -> dict[str, Any]:
            for name, value in checked.items():
                if value is None:
                    record.pop(name, None)
                else:
                    record[name] = value
            return record

        record = await self._record.update(change)
        return {name: record.get(name) for name in FIELDS}

    async def load(self) -> SessionData | None:
        """The session record, or None if there is none or it has no auth key / data centre yet."""
        record = await self._record.read()
        if record.get("auth_key") is None or record.get("dc_id") is None:
            return None
        return SessionData(
            dc_id=record["dc_id"],
            auth_key=record["auth_key"],
            server_address=record.get("server_address"),
            port=record.get("port"),
            api_id=record.get("api_id"),
            test_mode=bool(record.get("test_mode")),
            date=record.get("date"),
            user_id=record.get("user_id"),
            is_bot=bool(record.get("is_bot")),
        )

    async def save(self, data: SessionData) -> None:
        """Write every field of ``data`` (fields that are not in ``SessionData`` are kept)."""
        if not isinstance(data, SessionData):
            raise TypeError(f"save() takes a SessionData, not {type(data).__name__}")
        await self.update(**data.to_dict())

    async def exists(self) -> bool:
        """True if the session has a record."""
        return await self.storage.get_state(self._record.key) is not None

    # ------------------------------------------------------------------ peers

    def _peer_key(self, peer_id: int) -> str:
        return f"{self._peer_prefix}{peer_id}"

    def _username_key(self, lowered: str) -> str:
        return f"{self._username_prefix}{lowered}"

    def _phone_key(self, phone: str) -> str:
        return f"{self._phone_prefix}{phone}"

    async def _old_rows(self, ids: Iterable[int]) -> dict[int, PeerRow]:
        """The stored rows of ``ids`` (from memory when cached), read ``_CHUNK_PEERS`` a call."""
        found: dict[int, PeerRow] = {}
        missing: list[int] = []
        if self._caching():
            cached = self._peers.rows.get  # no LRU touch: the caller writes these rows next
            for peer_id in ids:
                row = cached(peer_id)
                if row is None:
                    missing.append(peer_id)
                else:
                    found[peer_id] = row
        else:
            missing = list(ids)
        pp = self._peer_prefix  # keys as _peer_key builds them, without a call per key
        reads = [
            self.storage.get_many([f"{pp}{i}" for i in missing[start : start + _CHUNK_PEERS]])
            for start in range(0, len(missing), _CHUNK_PEERS)
        ]  # issued together: a batching storage serves them in one go
        for stored in await asyncio.gather(*reads):
            for key, value in stored.items():
                row = unpack_row(key, value)
                if row is not None:
                    found[row[0]] = row
        return found

    async def _retired(
        self, rows: dict[int, PeerRow], old: dict[int, PeerRow]
    ) -> dict[int, list[str]]:
        """Index keys (by peer id) that point to a peer of ``rows`` for a username or phone it no
        longer has, and that no peer of ``rows`` claims."""
        if not any(peer_id in rows for peer_id in old):
            return {}
        claimed: set[str] = set()
        for row in rows.values():
            claimed.update(self._username_key(name.lower()) for name in row[3])
            if row[4] is not None:
                claimed.add(self._phone_key(row[4]))
        stale: dict[str, int] = {}
        for peer_id, previous in old.items():
            if peer_id not in rows:
                continue
            keys = [self._username_key(name.lower()) for name in previous[3]]
            if previous[4] is not None:
                keys.append(self._phone_key(previous[4]))
            stale.update((key, peer_id) for key in keys if key not in claimed)
        retired: dict[int, list[str]] = {}
        if stale:
            for key, value in (await self.storage.get_many(list(stale))).items():
                holder = unpack_row(key, value)
                if holder is not None and holder[0] == stale[key]:
                    retired.setdefault(holder[0], []).append(key)
        return retired

    async def _commit_rows(self, rows: dict[int, PeerRow], old: dict[int, PeerRow]) -> None:
        """Write ``rows`` with their index entries and retire the index entries the peers no
        longer have, each peer together with its own entries in one write.

        Batches of more than ``_CHUNK_PEERS`` peers are prepared a chunk at a time, the event
        loop running between chunks; each chunk's write is issued once it is prepared and all
        are awaited together, so a batching storage commits the queued ones in one go (SQLite:
        one group commit; Redis: pipelined on its lanes). If a write fails, the writes not yet
        done are cancelled and the error is raised; chunks already written stay written.
        """
        retired = await self._retired(rows, old)
        self._peer_gen += 1
        prefix = self._prefix
        # keys as _peer_key / _username_key / _phone_key build them, without a call per key
        pp, up, hp = self._peer_prefix, self._username_prefix, self._phone_prefix
        storage = self.storage
        encode = pack_row if type(storage.codec) is MsgpackCodec else self._encode_row
        tombstone = encode_stored(storage.codec, prefix, b"")
        assert type(tombstone) is bytes  # an encoded bytes value is never a native int
        writes: list[asyncio.Future[None]] = []
        items: list[tuple[str, bytes]] = []
        add = items.append
        try:
            for n, (peer_id, row) in enumerate(rows.items(), 1):
                packed = encode(row)
                add((f"{pp}{peer_id}", packed))
                for name in row[3]:
                    add((f"{up}{name.lower()}", packed))
                if row[4] is not None:
                    add((f"{hp}{row[4]}", packed))
                if retired and peer_id in retired:
                    for key in retired[peer_id]:
                        add((key, tombstone))  # retired in the same write; deleted below
                if not n % _CHUNK_PEERS:
                    writes.append(asyncio.ensure_future(_write_encoded(storage, items)))
                    items = []
                    add = items.append
                    await asyncio.sleep(0)  # let that write start; the loop runs between chunks
            if items:
                writes.append(asyncio.ensure_future(_write_encoded(storage, items)))
            await asyncio.gather(*writes)
        except BaseException:
            for write in writes:
                write.cancel()
            await asyncio.gather(*writes, return_exceptions=True)
            for peer_id in rows:
                self._peers.discard(peer_id)
            raise
        if self._caching():
            self._peers.put_written(rows.values())
            for peer_id, keys in retired.items():
                for key in keys:
                    entry = key[len(self._prefix) :]
                    if entry.startswith("un:"):
                        self._peers.unindex_username(entry[3:], peer_id)
                    else:
                        self._peers.unindex_phone(entry[3:], peer_id)
        tombstones = [key for keys in retired.values() for key in keys]
        if tombstones:
            await self.storage.delete_many(tombstones)

    def _encode_row(self, row: PeerRow) -> bytes:
        stored = encode_stored(self.storage.codec, self._prefix, stored_row(row))
        if type(stored) is not bytes:  # pragma: no cover - a list never encodes as an int
            raise TypeError("a peer row must encode to bytes")
        return stored

    async def update_peers(self, peers: Iterable[Peer], *, keep_usernames: bool = False) -> None:
        """Store ``peers``: each replaces the stored peer of its id.

        A peer's usernames that it no longer has stop resolving. ``keep_usernames=True`` keeps the
        stored usernames of a peer given without any (for clients that send them separately),
        and its stored display name if given without one.
        ``last_update_on`` defaults to now; a peer equal to the stored one is not written again
        unless its stored ``last_update_on`` is over 5 minutes old. One write per 1,000 peers,
        each peer with its index entries. Raises ``TypeError`` naming a bad peer before anything
        is written.
        """
        now = _now()
        await self._update_peer_rows([peer_row(p, now) for p in peers], keep_usernames=keep_usernames)

    async def update_peer_rows(
        self, rows: Iterable[PeerRow], *, keep_usernames: bool = False
    ) -> None:
        """``update_peers`` for peer rows ``(id, access_hash, type, usernames, phone_number,
        last_update_on[, name])`` as an adapter gets them from a client library (``last_update_on``
        None: now). Every row is checked first, as ``statekit.session.support.make_row`` does:
        raises ``TypeError`` naming the peer and the field before anything is written."""
        await self._update_peer_rows([_checked_row(row) for row in rows], keep_usernames=keep_usernames)

    async def _update_peer_rows(self, rows: Iterable[PeerRow], *, keep_usernames: bool = False) -> None:
        """``update_peers`` for rows already built by ``statekit.session._peers.make_row``
        (a None ``last_update_on`` means now)."""
        now = _now()
        by_id: dict[int, PeerRow] = {}
        for row in rows:
            by_id[row[0]] = row if row[5] is not None else (*row[:5], now, row[6])
        if not by_id:
            return
        self._check_writable()
        async with self._peer_lock:
            old = await self._old_rows(by_id)
            for peer_id, previous in old.items():
                row = by_id[peer_id]
                if keep_usernames and not row[3] and previous[3]:
                    row = by_id[peer_id] = (row[0], row[1], row[2], previous[3], row[4], row[5], row[6])
                if keep_usernames and row[6] is None and previous[6] is not None:
                    row = by_id[peer_id] = (*row[:6], previous[6])  # a client that keeps no names
                if row[:5] == previous[:5] and row[6] == previous[6] and (
                    row[5] == previous[5]
                    or (row[5] == now and now - (previous[5] or 0) < _REFRESH_AFTER)
                ):
                    del by_id[peer_id]  # unchanged and recently stamped: nothing to write
            if by_id:
                await self._commit_rows(by_id, old)

    async def update_usernames(self, usernames: Iterable[tuple[int, Iterable[str | None]]]) -> None:
        """Replace the usernames of stored peers: ``(peer_id, [username, ...])`` pairs (None
        entries skipped). Peers not stored are ignored; dropped usernames stop resolving."""
        wanted: dict[int, tuple[str, ...]] = {}
        for pair in usernames:
            peer_id, names = username_pair(pair)
            wanted[peer_id] = names
        if not wanted:
            return
        self._check_writable()
        now = _now()
        async with self._peer_lock:
            old = await self._old_rows(wanted)
            rows: dict[int, PeerRow] = {
                peer_id: (row[0], row[1], row[2], wanted[peer_id], row[4], now, row[6])
                for peer_id, row in old.items()
            }
            if rows:
                await self._commit_rows(rows, old)

    async def _lookup(
        self, key: str, cached: PeerRow | None, remember: Callable[[PeerRow], None]
    ) -> PeerRow | None:
        if cached is not None:
            return cached
        gen = self._peer_gen
        row = unpack_row(key, await self.storage.get_state(key))
        if row is not None and gen == self._peer_gen and not self._peer_lock.locked() and self._caching():
            remember(row)
        return row

    async def peer_row_by_id(self, peer_id: int) -> PeerRow | None:
        """The stored row ``(id, access_hash, type, usernames, phone, last_update_on)`` of a peer."""
        if type(peer_id) is not int:
            raise TypeError(f"peer id must be an int, not {type(peer_id).__name__}")
        cached = self._peers.get(peer_id) if self._caching() else None
        return await self._lookup(self._peer_key(peer_id), cached, self._peers.put)

    async def peer_row_by_username(self, username: str) -> PeerRow | None:
        """The stored row of the peer that has ``username`` (case-insensitive, ``@`` optional)."""
        if type(username) is not str:
            raise TypeError(f"username must be a str, not {type(username).__name__}")
        lowered = username.lstrip("@").lower()
        if not lowered:
            return None
        cached = self._peers.get_by_username(lowered) if self._caching() else None
        row = await self._lookup(
            self._username_key(lowered),
            cached,
            lambda r: self._peers.put(r, username=lowered),
        )
        if row is not None and cached is None and lowered not in (n.lower() for n in row[3]):
            return None
        return row

    async def peer_row_by_phone_number(self, phone_number: str) -> PeerRow | None:
        """The stored row of the peer with ``phone_number`` (``+``, spaces, dashes ignored)."""
        if type(phone_number) is not str:
            raise TypeError(f"phone_number must be a str, not {type(phone_number).__name__}")
        phone = normalize_phone(phone_number)
        if not phone:
            return None
        cached = self._peers.get_by_phone(phone) if self._caching() else None
        row = await self._lookup(
            self._phone_key(phone), cached, lambda r: self._peers.put(r, phone=phone)
        )
        if row is not None and row[4] != phone:
            return None
        return row

    async def get_peer_by_id(self, peer_id: int) -> Peer | None:
        """The stored peer with id ``peer_id`` (Bot-API form), or None."""
        row = await self.peer_row_by_id(peer_id)
        return None if row is None else row_peer(row)

    async def get_peer_by_username(self, username: str) -> Peer | None:
        """The stored peer that has ``username`` now (case-insensitive), or None."""
        row = await self.peer_row_by_username(username)
        return None if row is None else row_peer(row)

    async def get_peer_by_phone_number(self, phone_number: str) -> Peer | None:
        """The stored peer with ``phone_number``, or None."""
        row = await self.peer_row_by_phone_number(phone_number)
        return None if row is None else row_peer(row)

    async def iter_peers(self) -> AsyncIterator[Peer]:
        """Stream every stored peer (in no particular order)."""
        pattern = f"session:{{{BaseStorage.glob_escape(self.name)}}}:peer:*"
        batch: list[str] = []
        async for key in self.storage.scan_keys(pattern):
            batch.append(key)
            if len(batch) >= _CHUNK:
                for peer in await self._peers_of(batch):
                    yield peer
                batch = []
        if batch:
            for peer in await self._peers_of(batch):
                yield peer

    async def _peers_of(self, keys: list[str]) -> list[Peer]:
        stored = await self.storage.get_many(keys)
        rows = (unpack_row(k, v) for k, v in stored.items())
        return [row_peer(row) for row in rows if row is not None]

    # ------------------------------------------------------------------ update states

    async def get_update_states(self, ids: int | Iterable[int] | None = None) -> list[UpdateState]:
        """Update states of the boxes ``ids`` (all if None; 0 is the common box, channels by
        their Bot-API id), ordered by date (unknown dates first)."""
        states = await self._states.read()
        if ids is None:
            boxes: Iterable[int] = states
        else:
            boxes = [ids] if isinstance(ids, int) else list(ids)
        found = [UpdateState(box, *states[box]) for box in boxes if box in states]
        found.sort(key=lambda s: (s.date is not None, s.date or 0))
        return found

    async def get_update_state(self, box: int) -> UpdateState | None:
        """The update state of one box, or None."""
        values = (await self._states.read()).get(box)
        return None if values is None else UpdateState(box, *values)

    async def set_update_state(self, states: UpdateState | Iterable[UpdateState]) -> None:
        """Store update states; a None field keeps the stored value of that field."""
        given = [states] if isinstance(states, UpdateState) else list(states)
        for state in given:
            if not isinstance(state, UpdateState):
                raise TypeError(f"expected UpdateState objects, not {type(state).__name__}")
            for name in ("id", "pts", "qts", "date", "seq"):
                value = getattr(state, name)
                if (value is not None or name == "id") and (
                    type(value) is not int or not -_INT64 <= value < _INT64
                ):
                    raise TypeError(f"update state {state.id!r}: {name} must be an int, not {value!r}")
        if not given:
            return
        self._check_writable()

        def change(current: dict[int, tuple[int | None, ...]]) -> dict[int, tuple[int | None, ...]]:
            for state in given:
                old = current.get(state.id, (None, None, None, None))
                new = (state.pts, state.qts, state.date, state.seq)
                current[state.id] = tuple(n if n is not None else o for n, o in zip(new, old, strict=True))
            return current

        await self._states.update(change)

    async def delete_update_state(self, ids: int | Iterable[int]) -> None:
        """Forget the update states of the boxes ``ids``."""
        boxes = {ids} if isinstance(ids, int) else set(ids)
        if not boxes:
            return
        self._check_writable()
        await self._states.update(lambda current: {k: v for k, v in current.items() if k not in boxes})

    # ------------------------------------------------------------------ whole session

    async def snapshot(self) -> SessionSnapshot:
        """The whole session: record, peers and update states.

        Raises ``KeyError`` if the session has no complete record (no auth key or data centre).
        """
        data = await self.load()
        if data is None:
            raise KeyError(f"session {self.name!r} has no complete record (auth key and dc_id)")
        peers = [peer async for peer in self.iter_peers()]
        peers.sort(key=lambda p: p.id)
        return SessionSnapshot(data, peers, await self.get_update_states())

    async def restore(self, snapshot: SessionSnapshot) -> None:
        """Replace this session's record, peers and update states by ``snapshot``.

        Everything is written in one batch before what the snapshot does not have is deleted, so
        the session is never seen empty.
        """
        if not isinstance(snapshot, SessionSnapshot):
            raise TypeError(f"restore() takes a SessionSnapshot, not {type(snapshot).__name__}")
        now = _now()
        rows = {row[0]: row for row in (peer_row(p, now) for p in snapshot.peers)}
        fields = {k: check_field(k, v) for k, v in snapshot.data.to_dict().items()}
        fields = {k: v for k, v in fields.items() if v is not None}
        states: dict[int, tuple[int | None, ...]] = {
            s.id: (s.pts, s.qts, s.date, s.seq) for s in snapshot.update_states
        }
        self._check_writable()
        async with self._peer_lock:
            before = set(await self._own_keys())
            mapping: dict[str, Any] = {self._record.key: self._codec.encode(fields)}
            if states:
                mapping[self._states.key] = encode_states(states)
            for peer_id, row in rows.items():
                packed = stored_row(row)  # stored as a list, as _commit_rows writes it
                mapping[self._peer_key(peer_id)] = packed
                for name in row[3]:
                    mapping[self._username_key(name.lower())] = packed
                if row[4] is not None:
                    mapping[self._phone_key(row[4])] = packed
            self._drop_cache()
            await self.storage.set_many(mapping, ttl=None)
            self._drop_cache()
            leftover = [k for k in before if k not in mapping]
            for start in range(0, len(leftover), _CHUNK):
                await self.storage.delete_many(leftover[start : start + _CHUNK])

    async def _own_keys(self) -> list[str]:
        pattern = f"session:{{{BaseStorage.glob_escape(self.name)}}}:*"
        lease_key = self._prefix + "lease"
        return [k for k in await self.storage.list_keys(pattern) if k != lease_key]

    async def delete(self) -> int:
        """Delete everything this session owns (record, peers, indexes, update states, and the
        lease unless this store holds it); return how many keys were removed.

        Raises ``SessionLockedError`` naming the holder if another process holds the lease.
        """
        probe: SessionLease | None = None
        if self._lease is None or self._lease.holder is None:
            probe = SessionLease(self.storage, self._prefix + "lease", what=f"session {self.name!r}")
            await probe.acquire()  # raises SessionLockedError naming the holder
        else:
            self._check_writable()
        try:
            async with self._peer_lock:
                keys = await self._own_keys()
                self._drop_cache()
                removed = 0
                for start in range(0, len(keys), _CHUNK):
                    removed += await self.storage.delete_many(keys[start : start + _CHUNK])
                return removed
        finally:
            if probe is not None:
                await probe.release()

    @classmethod
    async def list_sessions(cls, storage: BaseStorage) -> list[str]:
        """Names of the sessions held in ``storage`` (see ``list_sessions``)."""
        return await list_sessions(storage)


async def _write_encoded(storage: BaseStorage, items: list[tuple[str, bytes]]) -> None:
    """Write rows already in stored form, without expiry: in one go on an in-tree storage, through
    the public ``set_many`` (decoding them first) on any other."""
    if isinstance(storage, FastPathStorage):
        await storage.set_many_encoded(items, ttl=None)
    else:
        decode = storage.codec.decode
        await storage.set_many({key: decode(value) for key, value in items}, ttl=None)


def _checked_row(row: object) -> PeerRow:
    """``row`` as a 7-item peer row if it is well formed (the common shape checked inline, any
    other through ``make_row``); a 6-item row has no display name. ``TypeError`` naming the peer
    and the field otherwise, or if it is not a 6- or 7-item row."""
    if type(row) is tuple and len(row) in (6, 7):
        peer_id, access_hash, kind, names, phone, stamp = row[:6]
        name = row[6] if len(row) == 7 else None
        if (
            type(peer_id) is int
            and type(access_hash) is int
            and -_INT64 <= peer_id < _INT64
            and -_INT64 <= access_hash < _INT64
            and type(kind) is str
            and names == ()
            and phone is None
            and (stamp is None or type(stamp) is int)
            and name is None
        ):
            return (peer_id, access_hash, kind, (), None, stamp, None)
        return make_row(peer_id, access_hash, kind, names, phone, stamp, name)
    if isinstance(row, list | tuple) and len(row) in (6, 7):
        return make_row(*row)
    raise TypeError(f"a peer row is a tuple of 6 or 7 items, got {type(row).__name__} {row!r:.100}")
