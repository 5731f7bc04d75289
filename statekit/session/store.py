"""``SessionStore``: one MTProto session (record, peer cache, update states) over any statekit
storage.

Keys of session ``NAME`` (all share the Redis Cluster hash tag ``{NAME}``)::

    session:{NAME}:data            the session record (dc, auth key, user...), optionally sealed
    session:{NAME}:peers:N         the peers whose id % 512 is N: their rows
                                   [id, access_hash, type, usernames, phone, stamp, name], packed
    session:{NAME}:names:N         lower-case username -> peer id, for usernames whose CRC-32
                                   % 512 is N, packed
    session:{NAME}:phones:N        phone number -> peer id, likewise
    session:{NAME}:layout          2: the peers are in buckets (statekit 0.1 kept a key per peer)
    session:{NAME}:states          update states of every box
    session:{NAME}:lease           the ownership lease (see ``statekit.session.lease``)

Buckets are packed (``statekit.session._buckets``, ``statekit.session._packed``): a lookup
decodes the one row it finds, not the bucket. A lookup by id is one storage read, by username or
phone two. Writing any number of peers writes at most 1,536 keys. ``open()`` takes the ownership
lease; while it is held no other process writes the session, so the store serves repeated reads
from memory (the record, the update states and the peer buckets it has read or written) and
writes peers in one batch.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from array import array
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sized
from itertools import islice
from typing import Any, Final, TypeVar, cast

from statekit._release import drop_in_slices, empty_in_slices
from statekit.codec import INT64_MAX, MsgpackCodec, encode_stored
from statekit.errors import StatekitError, StorageUnavailableError
from statekit.session._buckets import (
    INDEX_BUCKETS,
    PEER_BUCKETS,
    BucketCache,
    PeerBucket,
    checked_row,
    decode_index_bucket,
    decode_peer_bucket,
    index_bucket,
    index_buckets,
    index_peer_bucket,
    index_view,
    pack_bucket,
    packed_bucket,
    peer_bucket,
    peer_buckets,
    peer_view,
    rows_of,
    stored_index_view,
    stored_peer_view,
    thawed,
    unpacked_stored,
)
from statekit.session._cipher import SessionCipher
from statekit.session._collector import age_young
from statekit.session._packed import PackedIndex, PackedPeers
from statekit.session._peers import (
    PeerRow,
    make_row,
    normalize_phone,
    peer_row,
    row_peer,
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

log = logging.getLogger("statekit.session")

_Item = TypeVar("_Item")


class _Drops:
    """Index entries to drop: ``texts[i]`` if it still points to peer ``ids[i]``. A list and an
    array rather than a list of pairs: a pair per renamed peer would fill the collector's youngest
    generation with 100,000 tuples in a large write, collected in one long pause, and an array of
    ids is not even traced (a list of 100,000 is, by every collection while it is young)."""

    __slots__ = ("ids", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.ids: array[int] = array("q")

    def __len__(self) -> int:
        return len(self.texts)


class _IndexChanges:
    """Index changes of one peer write: claims (lower-case username or phone -> the id of the peer
    written with it) and drops (usernames and phones peers no longer have)."""

    __slots__ = ("dropped_names", "dropped_phones", "names", "phones")

    def __init__(self) -> None:
        self.names: dict[str, int] = {}
        self.dropped_names = _Drops()
        self.phones: dict[str, int] = {}
        self.dropped_phones = _Drops()

_CHUNK = 500
_CHUNK_BUCKETS = 64  # buckets read in one call
_WARM_ENTRIES = 8192  # rows or index entries of older buckets read ahead in one call (~5 ms of decoding)
# the same, of packed buckets (about 10 MB): one call for most sessions, as a call per chunk
# would hand the GIL back and forth between the event loop taking in one chunk and SQLite's
# thread reading the next (each handover waiting out the interpreter's 5 ms switch interval)
_WARM_PACKED_ENTRIES = 262_144
_YIELD_WARM = 64  # buckets read ahead taken in between two turns of the event loop
# rows merged, decoded or packed between two turns of the event loop: a 1 ms timer waits out two
# or three turns (the loop runs it the turn after its timer fires); in a probe of a slow phase of
# this 2-core machine, turns of 1,000 rows took 3-4 ms (timer gaps of 11-14 ms), of 500 rows
# 1.7-2.7 ms (gaps of 5.6-7 ms)
_YIELD_ROWS = 500
_YIELD_PACKED = 500
_AGE_BEFORE_ROWS = 10_000  # a write of this many rows or more ages the buckets it loaded first
_YIELD_SCAN = 10_000  # ids mapped to their bucket number between two turns (about 0.3 ms)
_MAX_ATTEMPTS = 200  # compare-and-set rounds of one peer write without the lease
_LAYOUT = 2
_REFRESH_AFTER = 300  # seconds: an unchanged peer is rewritten only to refresh an older stamp
_INT64 = INT64_MAX + 1  # ids and hashes are signed 64-bit: -_INT64 <= x < _INT64


def _every_bucket(prefix: str, count: int) -> Iterator[str]:
    """The keys of the ``count`` buckets under ``prefix`` (a key is the prefix and the number)."""
    return (f"{prefix}{n}" for n in range(count))


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
        # bucket key prefixes: a key is the prefix followed by the bucket number
        self._peers_prefix = prefix + "peers:"
        self._names_prefix = prefix + "names:"
        self._phones_prefix = prefix + "phones:"
        # every bucket's key by prefix, by number: made once, not a string per lookup or bucket
        self._bucket_keys: Final = {
            self._peers_prefix: list(_every_bucket(self._peers_prefix, PEER_BUCKETS)),
            self._names_prefix: list(_every_bucket(self._names_prefix, INDEX_BUCKETS)),
            self._phones_prefix: list(_every_bucket(self._phones_prefix, INDEX_BUCKETS)),
        }
        self._peer_keys: Final = self._bucket_keys[self._peers_prefix]
        self._lease: SessionLease | None = None
        # peer_cache counts peers; a cached peer also has an entry or two in the index buckets
        self._cache = BucketCache(peer_cache * 3)
        self._warmers: dict[str, asyncio.Future[None]] = {}  # by the prefix of the keys read ahead
        self._arriving: dict[str, asyncio.Event] = {}  # bucket key -> set once read ahead (or not)
        self._peer_gen = 0
        self._peer_lock = asyncio.Lock()
        # bucket keys known not to be stored (learned by a scan while the lease was held, and
        # valid while it stays held): a write or lookup takes them as empty without reading them
        self._absent: set[str] = set()
        self._layout_ok = False  # no peers kept a key each (statekit 0.1) are left to move
        self._marked = False  # the layout marker is known to be stored
        self._layout_lock = asyncio.Lock()
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

    def _drop_cache(self) -> list[Any]:
        """Forget what was cached; return the buckets that were (the caller may let go of them
        in slices, as ``close()`` does; otherwise they go with the list, at once)."""
        dropped = self._cache.take()
        self._peer_gen += 1
        warmers, self._warmers = self._warmers, {}
        for warmer in warmers.values():
            warmer.cancel()
        arriving, self._arriving = self._arriving, {}
        for event in set(arriving.values()):
            event.set()  # a reader cancelled before it began: its lookups read for themselves
        self._record.forget()
        self._states.forget()
        self._absent = set()
        return dropped

    def _forget_on_gap(self) -> None:
        """The lease had a gap (another process may have written): nothing cached can be trusted."""
        self._drop_cache()

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
            on_gap=self._forget_on_gap,
        )
        await lease.acquire(wait=wait)
        self._drop_cache()
        self._lease = lease

    async def close(self) -> None:
        """Release the ownership lease (if taken) and drop what was cached; idempotent. The
        cached peers are let go of ``_YIELD_ROWS`` at a time, the event loop running between
        (all at once, a 100,000-peer session's rows held it for 30 ms)."""
        lease, self._lease = self._lease, None
        dropped = self._drop_cache()
        if lease is not None:
            await lease.release()
        await drop_in_slices(dropped, _YIELD_ROWS)

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

    def _peers_key(self, peer_id: int) -> str:
        return self._peer_keys[peer_bucket(peer_id)]

    def _names_key(self, lowered: str) -> str:
        return self._bucket_keys[self._names_prefix][index_bucket(lowered)]

    def _phones_key(self, phone: str) -> str:
        return self._bucket_keys[self._phones_prefix][index_bucket(phone)]

    async def _ensure_layout(self, *, writing: bool = False) -> None:
        """Move peers stored one key each (``peer:ID``, ``un:NAME``, ``ph:PHONE``, statekit before
        0.2) into buckets, once per session: the first peer operation of a store reads the layout
        marker, and only when it is missing looks for such keys (one scan of the storage). The
        marker is written by the first write of peers (or a move), never by a lookup, so looking
        up peers of a session that has none leaves nothing behind.

        That scan lists every key of the session; with the lease held, the buckets it did not
        find are remembered as absent, so that the first write of a new session (or a lookup in
        it) does not read 1,536 keys that cannot exist."""
        if self._layout_ok and (self._marked or not writing):
            return
        async with self._layout_lock:
            if self._layout_ok and (self._marked or not writing):
                return
            marker = self._prefix + "layout"
            if await self.storage.get_state(marker) == _LAYOUT:
                self._marked = True
            else:
                legacy = await self._scan_own_keys()
                if legacy:
                    await self._migrate_legacy(legacy)
                if legacy or writing:
                    await self.storage.set_state(marker, _LAYOUT, ttl=None)
                    self._marked = True
            self._layout_ok = True

    async def _scan_own_keys(self) -> list[str]:
        """One scan of the session's keys: return those of peers kept a key each (statekit 0.1),
        and, if the lease was held throughout and no peer write ran meanwhile, remember the
        buckets not found as absent."""
        gen, watched = self._peer_gen, self._caching() and not self._peer_lock.locked()
        found = await self._own_keys()
        legacy_prefix = self._prefix + "peer:"
        legacy = [key for key in found if key.startswith(legacy_prefix)]
        if watched and gen == self._peer_gen and self._caching():
            self._absent = {key for keys in self._bucket_keys.values() for key in keys}.difference(found)
        return legacy

    async def _migrate_legacy(self, keys: list[str]) -> None:
        rows: dict[int, PeerRow] = {}
        for start in range(0, len(keys), _CHUNK):
            stored = await self.storage.get_many(keys[start : start + _CHUNK])
            for key, value in stored.items():
                row = unpack_row(key, value)
                if row is not None:
                    rows[row[0]] = row
        async with self._peer_lock:
            self._peer_gen += 1
            await self._write_peers(rows, lambda old, new: None, insert=True)
            name = BaseStorage.glob_escape(self.name)
            for kind in ("peer", "un", "ph"):
                stale = [k async for k in self.storage.scan_keys(f"session:{{{name}}}:{kind}:*")]
                for start in range(0, len(stale), _CHUNK):
                    await self.storage.delete_many(stale[start : start + _CHUNK])
        log.info("statekit: session %r: %d peers moved into buckets", self.name, len(rows))

    async def _load(
        self, keys: list[str], decode: Callable[[str, Any], dict[Any, Any]], caching: bool
    ) -> tuple[dict[str, dict[Any, Any]], dict[str, Any]]:
        """The buckets ``keys`` in the form a write changes (from the cache when ``caching``,
        where a packed view is replaced by that form; read ``_CHUNK_BUCKETS`` a call, the calls
        issued together) and the stored values of those read (for compare-and-set)."""
        buckets: dict[str, dict[Any, Any]] = {}
        missing = keys
        if caching:
            missing = []
            cached, absent = self._cache.get, self._absent
            for key in keys:
                bucket = cached(key)
                if bucket is None:
                    if key in absent:  # not stored: from now on the cached bucket is the truth
                        absent.discard(key)
                        bucket = buckets[key] = decode(key, None)
                        self._cache.put(key, bucket)
                    else:
                        missing.append(key)
                else:
                    if not isinstance(bucket, dict):
                        bucket = thawed(bucket)
                        self._cache.put(key, bucket)
                    buckets[key] = bucket
        raw: dict[str, Any] = {}
        reads = [
            self._read(missing[start : start + _CHUNK_BUCKETS])
            for start in range(0, len(missing), _CHUNK_BUCKETS)
        ]
        for stored in await asyncio.gather(*reads):
            raw.update(stored)
        decoded = 0
        for key in missing:
            value = raw.get(key)
            bucket = buckets[key] = decode(key, value)
            if caching:
                self._cache.put(key, bucket)
            decoded += len(bucket)
            if decoded > _YIELD_ROWS:
                decoded = 0
                await asyncio.sleep(0)  # decoding a large session must not hold the loop
        return buckets, raw

    def _msgpack_storage(self) -> FastPathStorage | None:
        """The storage, if it hands over and takes stored msgpack bytes (buckets are then
        decoded and packed here, without the codec's generic path); else None."""
        storage = self.storage
        if isinstance(storage, FastPathStorage) and type(storage.codec) is MsgpackCodec:
            return storage
        return None

    async def _read(self, keys: list[str]) -> dict[str, Any]:
        """The values of the buckets ``keys`` that exist (arrays read as tuples where the
        storage hands over its stored form: fewer objects for the garbage collector to trace)."""
        storage = self._msgpack_storage()
        if storage is not None:
            stored = await storage.get_many_stored(keys)
            return {key: unpacked_stored(key, value) for key, value in stored.items()}
        return await self.storage.get_many(keys)

    async def _write_peers(
        self,
        items: dict[int, _Item],
        merge: Callable[[PeerRow, _Item], PeerRow | None],
        *,
        insert: bool,
    ) -> None:
        """Merge ``items`` into the stored peers and write the buckets that change (caller holds
        ``_peer_lock``): ``merge(stored row, item)`` gives the row to store, or None to leave the
        peer as it is; an item of a peer not stored is stored as it is (a row) if ``insert``,
        else skipped. A peer's usernames and phone it no longer has stop resolving (unless another
        peer took them); a username or phone of a written peer resolves to it.

        With the lease held the buckets come from the cache and are written in one batch;
        without it every changed bucket is written by compare-and-set against what was read,
        and the merge is redone on a conflict, so concurrent writers lose no peer.
        """
        caching = self._caching()
        # index changes of an attempt that did not write everything are made by the next: by then
        # the peers written may no longer differ from what is stored
        changes = _IndexChanges()
        for attempt in range(_MAX_ATTEMPTS):
            if await self._write_once(items, merge, insert, caching, changes):
                return
            await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 50)))
        raise StorageUnavailableError(
            f"session {self.name!r}: peers not written after {_MAX_ATTEMPTS} conflicting writes"
        )

    async def _write_once(
        self,
        items: dict[int, _Item],
        merge: Callable[[PeerRow, _Item], PeerRow | None],
        insert: bool,
        caching: bool,
        changes: _IndexChanges,
    ) -> bool:
        """One attempt of ``_write_peers``: False if a compare-and-set found a bucket changed."""
        self._peer_gen += 1
        numbers: set[int] = set()
        ids = iter(items)  # items is the caller's own: not changed meanwhile
        for start in range(0, len(items), _YIELD_SCAN):
            if start:
                await asyncio.sleep(0)  # a large batch must not hold the event loop
            numbers.update(peer_buckets(islice(ids, _YIELD_SCAN)))
        peer_keys = self._peer_keys
        keys = {n: peer_keys[n] for n in numbers}
        buckets, raw = await self._load(list(keys.values()), index_peer_bucket, caching)
        if len(items) >= _AGE_BEFORE_ROWS:
            age_young()  # the buckets this write fills: old before they hold its rows
        by_number = {n: cast(PeerBucket, buckets[key]) for n, key in keys.items()}
        dirty: set[int] = set()
        claims, dropped = changes.names, changes.dropped_names
        phone_claims, phone_dropped = changes.phones, changes.dropped_phones
        drop_name, drop_name_of = dropped.texts.append, dropped.ids.append
        drop_phone, drop_phone_of = phone_dropped.texts.append, phone_dropped.ids.append
        pending = iter(items.items())  # items is the caller's own: not changed meanwhile
        try:
            for start in range(0, len(items), _YIELD_ROWS):
                if start:
                    await asyncio.sleep(0)  # a large batch must not hold the event loop
                for peer_id, item in islice(pending, _YIELD_ROWS):
                    n = peer_id % PEER_BUCKETS
                    bucket = by_number[n]
                    old = bucket.get(peer_id)
                    if old is not None and bucket.unchecked and peer_id in bucket.unchecked:
                        old = checked_row(bucket, keys[n], peer_id)
                    if old is None:
                        if not insert:
                            continue
                        row: PeerRow = item  # type: ignore[assignment]
                        bucket[peer_id] = row
                        dirty.add(n)
                        usernames = row[3]
                        if usernames:
                            if len(usernames) == 1:
                                claims[usernames[0].lower()] = peer_id
                            else:
                                for name in usernames:
                                    claims[name.lower()] = peer_id
                        if row[4] is not None:
                            phone_claims[row[4]] = peer_id
                        continue
                    merged = merge(old, item)
                    if merged is None:
                        continue
                    row = merged
                    bucket[peer_id] = row
                    dirty.add(n)
                    had, has = old[3], row[3]
                    if had != has:
                        if len(had) == 1 and len(has) == 1:
                            low, was = has[0].lower(), had[0].lower()
                            if low != was:
                                claims[low] = peer_id
                                drop_name(was)
                                drop_name_of(peer_id)
                        else:
                            kept = {name.lower() for name in has}
                            for low in kept:
                                claims[low] = peer_id
                            for name in had:
                                if name.lower() not in kept:
                                    drop_name(name.lower())
                                    drop_name_of(peer_id)
                    if old[4] != row[4]:
                        if row[4] is not None:
                            phone_claims[row[4]] = peer_id
                        if old[4] is not None:
                            drop_phone(old[4])
                            drop_phone_of(peer_id)
            written = [keys[n] for n in dirty]
            if not caching:
                if self._lease is not None:
                    # the lease is ours but not certainly held (a renewal is late): the lease
                    # may come back without a gap, and what is cached would then miss this write
                    self._forget_cached_peers()
                await self._merge_index(self._names_prefix, claims, dropped, written, buckets, raw, False)
                await self._merge_index(
                    self._phones_prefix, phone_claims, phone_dropped, written, buckets, raw, False
                )
                return not written or await self._swap_buckets(written, buckets, raw)
            # with the lease: every changed bucket (peers, then indexes) in one batch, after the
            # whole merge: one transaction on SQLite, one MSET on Redis, so a failure part-way
            # (a malformed index bucket, a lost connection) leaves no peer written without its index
            indexes: list[str] = []
            await self._merge_index(self._names_prefix, claims, dropped, indexes, buckets, raw, True)
            await self._merge_index(
                self._phones_prefix, phone_claims, phone_dropped, indexes, buckets, raw, True
            )
            if written or indexes:
                await self._put_buckets([*written, *indexes], buckets)
            for key in (*written, *indexes):
                self._cache.recount(key)
            return True
        except BaseException:
            if caching:
                self._forget_cached_peers()  # cached buckets may hold rows that were not written
            raise

    def _forget_cached_peers(self) -> None:
        """Forget the cached buckets and the buckets known absent (the next accesses read)."""
        self._cache.clear()
        self._absent = set()

    async def _merge_index(
        self,
        prefix: str,
        claims: dict[str, int],
        dropped: _Drops,
        dirty: list[str],
        buckets: dict[str, dict[Any, Any]],
        raw: dict[str, Any],
        caching: bool,
    ) -> None:
        """Apply index changes to the index buckets under ``prefix``: entries of ``dropped`` that
        still point to their peer are removed (unless that peer claims them again), then every
        claim is pointed to its peer; the keys of the buckets changed are added to ``dirty``."""
        if not claims and not dropped:
            return
        # bucket numbers in arrays and the claims read in slices: a young list of 100,000 items
        # is traced by every collection until it is old, and a large write makes several
        used: set[int] = set()  # the bucket numbers met
        numbers: array[int] = array("i")  # the bucket number of each claim, in order
        claimed = iter(claims)
        for start in range(0, len(claims), _YIELD_ROWS):
            if start:
                await asyncio.sleep(0)  # a large batch must not hold the event loop
            some = index_buckets(list(islice(claimed, _YIELD_ROWS)))
            numbers.extend(some)
            used.update(some)
        drop_numbers: array[int] = array("i")  # the bucket number of each of dropped
        for start in range(0, len(dropped), _YIELD_ROWS):
            await asyncio.sleep(0)
            some = index_buckets(dropped.texts[start : start + _YIELD_ROWS])
            drop_numbers.extend(some)
            used.update(some)
        bucket_keys = self._bucket_keys[prefix]
        keys = {n: bucket_keys[n] for n in used}
        loaded, read = await self._load(list(keys.values()), decode_index_bucket, caching)
        buckets.update(loaded)
        raw.update(read)
        by_number: list[dict[Any, Any]] = [{}] * INDEX_BUCKETS  # every number used is set below
        for n, key in keys.items():
            by_number[n] = loaded[key]
        changed = bytearray(INDEX_BUCKETS)
        for start in range(0, len(dropped), _YIELD_ROWS):
            if start:
                await asyncio.sleep(0)
            end = start + _YIELD_ROWS
            for text, peer_id, n in zip(
                dropped.texts[start:end], dropped.ids[start:end], drop_numbers[start:end], strict=True
            ):
                bucket = by_number[n]
                if bucket.get(text) == peer_id and claims.get(text) != peer_id:
                    del bucket[text]
                    changed[n] = 1
        pairs = iter(claims.items())  # claims is not changed here: the order of the first pass
        for start in range(0, len(claims), _YIELD_ROWS):
            if start:
                await asyncio.sleep(0)
            chunk = islice(pairs, _YIELD_ROWS)
            for (text, peer_id), n in zip(chunk, numbers[start : start + _YIELD_ROWS], strict=True):
                bucket = by_number[n]
                if bucket.get(text) != peer_id:
                    bucket[text] = peer_id
                    changed[n] = 1
        dirty.extend(key for n, key in keys.items() if changed[n])

    def _stored_bucket(self, key: str, bucket: dict[Any, Any]) -> bytes:
        """The value a bucket is stored as (packed), for the public storage operations."""
        return packed_bucket(key, bucket, peers=key.startswith(self._peers_prefix))

    async def _packed(
        self, keys: Iterable[str], buckets: dict[str, dict[Any, Any]], *, encoded: bool = False
    ) -> list[Any]:
        """The buckets ``keys`` as stored (``_stored_bucket``; ``encoded``: in the msgpack stored
        form ``set_many_encoded`` takes), the event loop running between every ``_YIELD_PACKED``
        entries packed (and the rest of a bucket): packing a large session must not hold it."""
        values: list[Any] = []
        packed = 0
        for key in keys:
            bucket = buckets[key]
            value = self._stored_bucket(key, bucket)
            values.append(pack_bucket(value) if encoded else value)
            packed += len(bucket)
            if packed > _YIELD_PACKED:
                packed = 0
                await asyncio.sleep(0)
        return values

    async def _put_buckets(
        self, keys: list[str], buckets: dict[str, dict[Any, Any]], *, also: Mapping[str, Any] | None = None
    ) -> None:
        """Write the buckets ``keys`` without expiry, in one batch, with the values of ``also``
        (other keys of the session: one transaction on SQLite, one MSET on Redis). On a storage
        that takes stored msgpack bytes the buckets are handed over as ``_packed`` encoded them,
        a slice at a time: ``set_many`` would encode them all (~10 MB at 100,000 peers) in one
        piece."""
        storage = self._msgpack_storage()
        values = await self._packed(keys, buckets, encoded=storage is not None)
        extra = also or {}
        if storage is not None:
            items = [(key, encode_stored(storage.codec, key, value)) for key, value in extra.items()]
            items += zip(keys, values, strict=True)
            await storage.set_many_encoded(items, ttl=None)
        else:
            await self.storage.set_many({**extra, **dict(zip(keys, values, strict=True))}, ttl=None)

    async def _swap_buckets(
        self, keys: list[str], buckets: dict[str, dict[Any, Any]], raw: dict[str, Any]
    ) -> bool:
        """Compare-and-set each of the buckets ``keys`` against what was read; True if every one
        was written (one that was not is merged again by the caller)."""
        values = await self._packed(keys, buckets)
        swaps = [
            self.storage.compare_and_set(key, value, expected=raw.get(key), ttl=None)
            for key, value in zip(keys, values, strict=True)
        ]
        return all(await asyncio.gather(*swaps))

    async def update_peers(self, peers: Iterable[Peer], *, keep_usernames: bool = False) -> None:
        """Store ``peers``: each replaces the stored peer of its id.

        A peer's usernames that it no longer has stop resolving. ``keep_usernames=True`` keeps the
        stored usernames of a peer given without any (for clients that send them separately),
        and its stored display name if given without one.
        ``last_update_on`` defaults to now; a peer equal to the stored one is not written again
        unless its stored ``last_update_on`` is over 5 minutes old. However many peers are given,
        at most ``PEER_BUCKETS`` + 2 × ``INDEX_BUCKETS`` keys are written, in one batch while the
        lease is held (without it, each changed key by compare-and-set). Raises ``TypeError``
        naming a bad peer before anything is written.
        """
        now = _now()
        rows = await _rows_in_slices(peers, peer_row, now)
        await self._update_peer_rows(rows, now, keep_usernames=keep_usernames)

    async def update_peer_rows(
        self, rows: Iterable[PeerRow], *, keep_usernames: bool = False
    ) -> None:
        """``update_peers`` for peer rows ``(id, access_hash, type, usernames, phone_number,
        last_update_on[, name])`` as an adapter gets them from a client library (``last_update_on``
        None: now). Every row is checked first, as ``statekit.session.support.make_row`` does:
        raises ``TypeError`` naming the peer and the field before anything is written."""
        now = _now()
        checked = await _rows_in_slices(rows, _checked_row, now)
        await self._update_peer_rows(checked, now, keep_usernames=keep_usernames)

    async def _update_peer_rows(
        self, by_id: dict[int, PeerRow], now: int, *, keep_usernames: bool = False
    ) -> None:
        """``update_peers`` for checked rows by id, stamped (``now``: the stamp of those given
        without one)."""
        if not by_id:
            return
        self._check_writable()

        def merge(previous: PeerRow, row: PeerRow) -> PeerRow | None:
            if keep_usernames and not row[3] and previous[3]:
                row = (row[0], row[1], row[2], previous[3], row[4], row[5], row[6])
            if keep_usernames and row[6] is None and previous[6] is not None:
                row = (*row[:6], previous[6])  # a client that keeps no names
            if row[1] != previous[1]:
                return row  # a new access hash: the common change, decided without slicing
            if row[2:5] == previous[2:5] and row[6] == previous[6] and (
                row[5] == previous[5]
                or (row[5] == now and now - (previous[5] or 0) < _REFRESH_AFTER)
            ):
                return None  # unchanged and recently stamped: nothing to write
            return row

        await self._ensure_layout(writing=True)
        async with self._peer_lock:
            await self._write_peers(by_id, merge, insert=True)

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

        def merge(row: PeerRow, names: tuple[str, ...]) -> PeerRow | None:
            return (row[0], row[1], row[2], names, row[4], now, row[6])

        await self._ensure_layout(writing=True)
        async with self._peer_lock:
            await self._write_peers(wanted, merge, insert=False)

    async def _bucket(self, key: str, decode: Callable[[str, Any], Any]) -> Any:
        """The bucket ``key`` in the form a lookup reads (``decode``: ``peer_view`` or
        ``index_view``; a cached bucket may be in either form): from the cache while the lease is
        held, else read (and cached unless a write began meanwhile)."""
        caching = self._caching()
        if caching:
            bucket = self._cache.get(key)
            if bucket is not None:
                return bucket
            arriving = self._arriving.get(key)
            if arriving is not None:  # being read ahead: a read of its own would queue behind
                await arriving.wait()
                bucket = self._cache.get(key)
                if bucket is not None:
                    return bucket
        await self._ensure_layout()
        if caching and key in self._absent:
            return decode(key, None)  # not stored (nor written since: it would be cached)
        gen = self._peer_gen
        bucket = decode(key, (await self._read([key])).get(key))
        if caching and gen == self._peer_gen and not self._peer_lock.locked() and self._caching():
            self._cache.put(key, bucket)
            for prefix, count in ((self._peers_prefix, PEER_BUCKETS), (self._names_prefix, INDEX_BUCKETS)):
                if key.startswith(prefix):
                    self._start_warming(prefix, count, bucket)
        return bucket

    def _start_warming(self, prefix: str, count: int, first: Any) -> None:
        """After the first lookup with the lease held that missed a peer bucket (or a username
        index bucket; ``first``: that bucket), read the rest of them into the cache in the
        background, as far as it holds (lookups by id alone never read the username index).
        The reads are issued together, each of about ``_WARM_PACKED_ENTRIES`` entries of packed
        buckets (cheap to take in: nothing is decoded) or ``_WARM_ENTRIES`` of older ones (decoded
        as they arrive), so a small session is read in one call and a large one without a long
        stall. A lookup of a bucket being read waits for that read instead of queueing one of its
        own behind it."""
        if prefix in self._warmers or self._cache.size <= 0:
            return
        per_entries = _WARM_PACKED_ENTRIES if isinstance(first, PackedPeers | PackedIndex) else _WARM_ENTRIES
        per_call = min(max(per_entries // max(len(first), 1), 8), count)
        absent = self._absent
        # in the order of the strings, so each read is one range of keys (see _warm_some)
        keys = sorted(self._cache.missing([k for k in self._bucket_keys[prefix] if k not in absent]))
        chunks: list[tuple[list[str], asyncio.Event]] = []
        for start in range(0, len(keys), per_call):
            chunk, arrived = keys[start : start + per_call], asyncio.Event()
            for key in chunk:
                self._arriving[key] = arrived
            chunks.append((chunk, arrived))
        self._warmers[prefix] = asyncio.ensure_future(self._warm(chunks, self._peer_gen))

    async def _warm(self, chunks: list[tuple[list[str], asyncio.Event]], gen: int) -> None:
        try:
            await asyncio.gather(*(self._warm_some(keys, gen, arrived) for keys, arrived in chunks))
        except StatekitError as exc:
            log.warning("statekit: session %r: reading peers ahead failed: %s", self.name, exc)

    async def _warm_some(self, keys: list[str], gen: int, arrived: asyncio.Event) -> None:
        """Read ``keys`` into the cache, unless a write began, the lease went or the cache is
        full. Lookups waiting for one of them (on ``arrived``) are woken in any case."""
        arriving = self._arriving
        try:
            storage = self._msgpack_storage()
            views: tuple[Callable[[str, Any], Any], Callable[[str, Any], Any]]
            if storage is not None:
                # keys in string order (_start_warming): one range of keys, which a storage
                # keeping its keys in order reads in one scan; packed buckets are then viewed
                # in their stored form, not copied out of it
                stored = await storage.get_range_stored(keys)
                views = (stored_peer_view, stored_index_view)
            else:
                stored = await self.storage.get_many(keys)
                views = (peer_view, index_view)
            taken = 0
            for key in keys:
                if taken % _YIELD_WARM == 0:
                    if taken:
                        await asyncio.sleep(0)  # taking in a large session must not hold the loop
                    if gen != self._peer_gen or self._peer_lock.locked() or not self._caching():
                        return  # lookups read as before
                taken += 1
                view = views[0] if key.startswith(self._peers_prefix) else views[1]
                bucket = view(key, stored.get(key))
                if not self._cache.has_room(len(bucket)):
                    return  # full: keep what the lookups themselves bring in
                if key not in self._cache:
                    self._cache.put(key, bucket)
        finally:
            for key in keys:
                if arriving.get(key) is arrived:
                    del arriving[key]
            arrived.set()

    async def peer_row_by_id(self, peer_id: int) -> PeerRow | None:
        """The stored row ``(id, access_hash, type, usernames, phone, last_update_on, name)`` of a
        peer, or None."""
        if type(peer_id) is not int:
            raise TypeError(f"peer id must be an int, not {type(peer_id).__name__}")
        key = self._peer_keys[peer_id % PEER_BUCKETS]
        lease = self._lease  # _cached(key), inline: the common case, without a coroutine of its own
        bucket = self._cache.get(key) if lease is not None and lease.held else None
        if bucket is None:
            bucket = await self._bucket(key, peer_view)
        return checked_row(bucket, key, peer_id)

    def _cached(self, key: str) -> Any:
        """The cached bucket ``key`` while the lease is held, else None (as ``_bucket`` finds it)."""
        return self._cache.get(key) if self._caching() else None

    async def _indexed(self, key: str, text: str) -> PeerRow | None:
        """The row of the peer that index bucket ``key`` points ``text`` to, or None."""
        bucket = self._cached(key)
        if bucket is None:
            bucket = await self._bucket(key, index_view)
        peer_id = bucket.get(text)
        return None if peer_id is None else await self.peer_row_by_id(peer_id)

    async def peer_row_by_username(self, username: str) -> PeerRow | None:
        """The stored row of the peer that has ``username`` (case-insensitive, ``@`` optional)."""
        if type(username) is not str:
            raise TypeError(f"username must be a str, not {type(username).__name__}")
        lowered = username.lstrip("@").lower()
        if not lowered:
            return None
        row = await self._indexed(self._names_key(lowered), lowered)
        if row is None:
            return None
        names = row[3]
        if len(names) == 1:  # the common case, without a generator
            return row if names[0].lower() == lowered else None
        return row if any(name.lower() == lowered for name in names) else None

    async def peer_row_by_phone_number(self, phone_number: str) -> PeerRow | None:
        """The stored row of the peer with ``phone_number`` (``+``, spaces, dashes ignored)."""
        if type(phone_number) is not str:
            raise TypeError(f"phone_number must be a str, not {type(phone_number).__name__}")
        phone = normalize_phone(phone_number)
        if not phone:
            return None
        row = await self._indexed(self._phones_key(phone), phone)
        if row is None or row[4] != phone:
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
        """Stream every stored peer (in no particular order); the event loop runs between every
        ``_YIELD_ROWS`` of them.

        Raises ``CorruptValueError`` naming the key of a peer bucket that does not decode."""
        async for row in self.iter_peer_rows():
            yield row_peer(row)

    async def iter_peer_rows(self) -> AsyncIterator[PeerRow]:
        """Stream every stored peer as its row ``(id, access_hash, type, usernames,
        phone_number, last_update_on, name)``, checked as ``Peer`` checks its fields, in no
        particular order: ``iter_peers`` without a ``Peer`` object each. The event loop runs
        between every ``_YIELD_ROWS`` rows (a client loading a large session keeps serving).
        With the lease held, a bucket the cache holds is not read: its rows are the cached ones
        (each bucket's taken at once, as a read would give them), unless a write is merging into
        the cached buckets at that moment (the stored bucket is read then); the buckets read are
        kept in the peer cache as far as it holds (the rows yielded, not copies), so writes that
        follow neither read nor decode them again.

        Raises ``CorruptValueError`` naming the key of a peer bucket that does not decode."""
        await self._ensure_layout()
        decoded = 0
        async for keys in self._peer_bucket_keys():
            gen = self._peer_gen
            missing = self._cache.missing(keys) if self._caching() else keys
            read = await self.storage.get_many(missing) if missing else {}
            asked = set(missing)
            for key in keys:
                if decoded >= _YIELD_ROWS:
                    decoded = 0
                    await asyncio.sleep(0)  # a large session must not hold the loop
                bucket = self._settled_bucket(key)
                if bucket is not None:
                    rows: Iterable[PeerRow] = rows_of(key, bucket)
                else:
                    if key not in asked:  # cached when the batch was read, not usable now
                        read.update(await self.storage.get_many([key]))
                    if key not in read:
                        continue  # deleted since it was listed
                    found = decode_peer_bucket(key, read.pop(key))
                    self._keep_read(key, found, gen)
                    rows = found.values()
                for row in rows:
                    decoded += 1
                    yield row

    def _settled_bucket(self, key: str) -> PackedPeers | PeerBucket | None:
        """The cached peer bucket ``key`` if it holds what is stored: the lease is held (the
        cache is the truth) and no write is merging into the cached buckets (which may yet fail);
        looked at without touching the cache's eviction order (a scan of every bucket is no sign
        of which ones are wanted). None otherwise."""
        if not self._caching() or self._peer_lock.locked():
            return None
        return cast("PackedPeers | PeerBucket | None", self._cache.peek(key))

    def _keep_read(self, key: str, rows: dict[int, PeerRow], gen: int) -> None:
        """Cache peer bucket ``key`` as ``iter_peer_rows`` read and checked it (``gen``: the
        write generation before the read), so that the writes that follow (an adapter that loaded
        every peer at open, then meets them again) neither read nor decode it again; the rows are
        the ones yielded, not copies. Nothing is cached without the lease, if a write began since
        the read, if the bucket is cached already or if the cache is full."""
        if (
            gen != self._peer_gen
            or self._peer_lock.locked()
            or not self._caching()
            or key in self._cache
            or not self._cache.has_room(len(rows))
        ):
            return
        bucket = PeerBucket(rows)
        bucket.unchecked.clear()  # the rows are checked ones
        self._cache.put(key, bucket)

    async def _peer_bucket_keys(self) -> AsyncIterator[list[str]]:
        """The keys of the stored peer buckets, ``_CHUNK_BUCKETS`` at a time."""
        batch: list[str] = []
        pattern = f"session:{{{BaseStorage.glob_escape(self.name)}}}:peers:*"
        async for key in self.storage.scan_keys(pattern):
            batch.append(key)
            if len(batch) >= _CHUNK_BUCKETS:
                yield batch
                batch = []
        if batch:
            yield batch

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
        rows = {row[0]: row async for row in self.iter_peer_rows()}
        peers: list[Peer] = []
        for n, peer_id in enumerate(sorted(rows), 1):  # ints: one C-level sort, 100,000 in 2.5-9 ms
            peers.append(row_peer(rows[peer_id]))
            if n % _YIELD_ROWS == 0:
                await asyncio.sleep(0)  # a Peer each: 100,000 of them must not hold the loop
        await empty_in_slices(rows, _YIELD_ROWS)  # the rows read, freed at once: 10 ms at 100,000
        return SessionSnapshot(data, peers, await self.get_update_states())

    async def restore(self, snapshot: SessionSnapshot) -> None:
        """Replace this session's record, peers and update states by ``snapshot``.

        Everything is written in one batch before what the snapshot does not have is deleted, so
        the session is never seen empty.
        """
        if not isinstance(snapshot, SessionSnapshot):
            raise TypeError(f"restore() takes a SessionSnapshot, not {type(snapshot).__name__}")
        now = _now()
        rows = await _rows_in_slices(list(snapshot.peers), peer_row, now)
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
            mapping[self._prefix + "layout"] = _LAYOUT
            # a large session in slices, the event loop running between (100,000 peers in one
            # piece held it for 250 ms)
            buckets: dict[str, dict[Any, Any]] = {}
            aged = len(rows) >= _AGE_BEFORE_ROWS
            if aged:
                # the peer buckets made, and made old, before the rows fill them. A dict is tracked
                # by the collector from its first row on, as a young object, and filling buckets
                # allocates nothing the collector counts: the next young collection would trace
                # every row (~5 ms at 100,000 peers). A PeerBucket is tracked from the start, so
                # age_young() makes it old while it is empty. (Index buckets map str to int: a
                # dict of those is never tracked.)
                buckets.update((key, PeerBucket()) for key in self._peer_keys)
                age_young()
            for n, (peer_id, row) in enumerate(rows.items(), 1):
                buckets.setdefault(self._peers_key(peer_id), {})[peer_id] = row
                for name in row[3]:
                    buckets.setdefault(self._names_key(name.lower()), {})[name.lower()] = peer_id
                if row[4] is not None:
                    buckets.setdefault(self._phones_key(row[4]), {})[row[4]] = peer_id
                if n % _YIELD_ROWS == 0:
                    await asyncio.sleep(0)
            if aged:
                buckets = {key: bucket for key, bucket in buckets.items() if bucket}
            # what lookups cache meanwhile (the buckets as they were) is dropped again after
            dropped = self._drop_cache()
            await self._put_buckets(list(buckets), buckets, also=mapping)
            dropped += self._drop_cache()
            await drop_in_slices(dropped, _YIELD_ROWS)
            self._layout_ok = self._marked = True
            leftover = [k for k in before if k not in mapping and k not in buckets]
            for start in range(0, len(leftover), _CHUNK):
                await self.storage.delete_many(leftover[start : start + _CHUNK])
            # what was built for the write, freed in slices: at once, 100,000 peers' rows and
            # buckets held the loop for 20 ms
            mapping.clear()
            built: list[Sized] = [*buckets.values()]
            buckets.clear()
            await drop_in_slices(built, _YIELD_ROWS)
            await empty_in_slices(rows, _YIELD_ROWS)

    async def _own_keys(self) -> list[str]:
        """Every key of this session but its lease (one listing of the storage)."""
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
                dropped = self._drop_cache()
                self._layout_ok = self._marked = False  # the marker goes too: a write sets it again
                removed = 0
                for start in range(0, len(keys), _CHUNK):
                    removed += await self.storage.delete_many(keys[start : start + _CHUNK])
                await drop_in_slices(dropped, _YIELD_ROWS)
                return removed
        finally:
            if probe is not None:
                await probe.release()

    @classmethod
    async def list_sessions(cls, storage: BaseStorage) -> list[str]:
        """Names of the sessions held in ``storage`` (see ``list_sessions``)."""
        return await list_sessions(storage)


async def _rows_in_slices(
    items: Iterable[_Item], to_row: Callable[[_Item, int], PeerRow], now: int
) -> dict[int, PeerRow]:
    """The rows ``to_row(item, now)`` of ``items`` by id (``peer_row`` for peers, ``_checked_row``
    for rows: each raises ``TypeError`` naming a bad one), the event loop running between every
    ``_YIELD_ROWS`` of them."""
    rows: dict[int, PeerRow] = {}
    for n, item in enumerate(items, 1):
        row = to_row(item, now)
        rows[row[0]] = row
        if n % _YIELD_ROWS == 0:
            await asyncio.sleep(0)  # a large batch must not hold the event loop
    return rows


def _checked_row(row: object, now: int) -> PeerRow:
    """``row`` as a 7-item peer row if it is well formed (the common shapes checked inline, any
    other through ``make_row``), stamped ``now`` if it has no stamp; a 6-item row has no display
    name. ``TypeError`` naming the peer and the field otherwise, or if it is not a 6- or 7-item
    row."""
    if type(row) is tuple and len(row) in (6, 7):
        peer_id, access_hash, kind, names, phone, stamp = row[:6]
        name = row[6] if len(row) == 7 else None
        if (
            type(peer_id) is int
            and type(access_hash) is int
            and -_INT64 <= peer_id < _INT64
            and -_INT64 <= access_hash < _INT64
            and type(kind) is str
            and type(names) is tuple
            and (phone is None or (type(phone) is str and phone.isdigit() and phone.isascii()))
            and (stamp is None or type(stamp) is int)
            and (name is None or (type(name) is str and name))
            and (
                not names
                or (len(names) == 1 and type(one := names[0]) is str and one and one[0] != "@")
                or all(type(n) is str and n and n[0] != "@" for n in names)
            )
        ):  # already clean: kept as it is
            return (peer_id, access_hash, kind, names, phone, now if stamp is None else stamp, name)
        checked = make_row(peer_id, access_hash, kind, names, phone, stamp, name)
    elif isinstance(row, list | tuple) and len(row) in (6, 7):
        checked = make_row(*row)
    else:
        shape = f"{type(row).__name__} of {len(row)} items" if isinstance(row, list | tuple) else type(row).__name__
        raise TypeError(f"a peer row is a tuple of 6 or 7 items, got {shape}")  # not shown: secrets
    return checked if checked[5] is not None else (*checked[:5], now, checked[6])
