"""Telethon glue: ``TelethonSession``, a Telethon ``Session`` over any statekit storage, so a
client's session (auth key, entities, update states) can live in SQLite or Redis. Needs the
``telethon`` extra.

Telethon reads its session synchronously (``TelegramClient.__init__`` already reads the auth
key), so the session is loaded into memory first::

    async with TelethonSession(storage, "me") as session:       # takes the ownership lease
        async with TelegramClient(session, api_id, api_hash) as client:
            ...

Consistency: every read is served from memory, loaded once by ``open()``; the lease guarantees no
other process writes the session meanwhile. Changes are kept in memory and written to the store
when Telethon calls ``save()`` (after logging in, after switching data centre, and every minute
with the entities and update states it has met) and on ``close()``, exactly the points at which
Telethon's own SQLite session commits. ``save()``, ``close()`` and ``delete()`` return awaitables,
which Telethon awaits (its "async sessions" path; the warning it emits for that path is silenced
for this class only). ``cache_file`` data stays in memory; entity display names are stored with the peers.

The signed-in user: Telethon records it as entity 0 with the user's id in the hash column. Here
that record sets the session's ``user_id`` (it is not stored as a peer), and
``get_input_entity(0)`` answers ``InputPeerUser(0, user_id)`` as Telethon's own sessions do.
"""

from __future__ import annotations

import asyncio
import datetime
import time
import warnings
from collections.abc import Iterable
from typing import Any

from telethon import utils
from telethon.crypto import AuthKey
from telethon.sessions.memory import MemorySession
from telethon.tl import types
from telethon.tl.tlobject import TLObject

from statekit.session import SessionCipher
from statekit.session.records import UpdateState
from statekit.session.store import SessionStore
from statekit.session.support import (
    PeerRow,
    YoungCollector,
    empty_in_slices,
    normalize_phone,
    write_checked_rows,
)
from statekit.storage.base import BaseStorage

__all__ = ["TelethonSession"]

# Telethon warns whenever a session method returns an awaitable; TelethonSession does so on
# purpose (save / close / delete must reach the storage before the client moves on).
warnings.filterwarnings(
    "ignore",
    message="Using async sessions support is an experimental feature",
    category=UserWarning,
    module=r"telethon\.utils",
)

_CHANNEL_BASE = 1_000_000_000_000
_READ_EVERY = 500  # queued entities read between two turns of the event loop
_EPOCH = datetime.datetime.fromtimestamp(0, tz=datetime.timezone.utc)

# an entity is kept as the peer row the store writes: (marked id, access_hash, type, usernames
# (lower-case), phone, when it was last met, display name)


def _box_id(entity_id: int) -> int:
    """Telethon's update-state id (0, or a bare channel id) as statekit's (0, or Bot-API id)."""
    return 0 if entity_id == 0 else -_CHANNEL_BASE - entity_id


def _entity_id(box: int) -> int:
    return 0 if box == 0 else -box - _CHANNEL_BASE


def _kind(entity: Any, marked_id: int) -> str:
    if isinstance(entity, types.User):
        return "bot" if entity.bot else "user"
    if isinstance(entity, types.Channel | types.ChannelForbidden):
        return "channel" if entity.broadcast else "supergroup"
    if isinstance(entity, types.Chat | types.ChatForbidden | types.ChatEmpty):
        return "group"
    _, peer = utils.resolve_id(marked_id)
    return "user" if peer is types.PeerUser else "group" if peer is types.PeerChat else "channel"


def _usernames(entity: Any, main: str | None) -> tuple[str, ...]:
    names = [main] if main else []
    for item in getattr(entity, "usernames", None) or ():
        name = getattr(item, "username", None)
        if name and getattr(item, "active", True) and name.lower() not in names:
            names.append(name.lower())
    return tuple(names)


class TelethonSession(MemorySession):  # type: ignore[misc]
    """A Telethon session keeping session ``name`` in a statekit ``storage``.

    ``await open()`` (or ``async with``) takes the ownership lease (``SessionLockedError`` naming
    the holder if another process has it) and loads the session; until then the session refuses
    to be read (``RuntimeError``), so a client can never start a fresh login by mistake. ``cipher``
    keeps the session record encrypted at rest; ``lease_ttl`` / ``lease_wait`` tune the lease.
    """

    def __init__(
        self,
        storage: BaseStorage,
        name: str,
        *,
        cipher: SessionCipher | bytes | None = None,
        lease_ttl: float = 30.0,
        lease_wait: float = 0.0,
    ) -> None:
        super().__init__()
        self.store = SessionStore(storage, name, cipher=cipher, lease_ttl=lease_ttl)
        self.name = name
        self.lease_wait = lease_wait
        self._opened = False
        self._user_id: int | None = None
        self._peers: dict[int, PeerRow] = {}
        self._unread: list[Any] = []  # entities process_entities queued, read by the next save
        self._unread_at = 0  # how many of _unread have been read already
        self._reader: asyncio.Task[None] | None = None  # reads them meanwhile, in the background
        # username / phone -> peer id, brought up to date by the next lookup of that kind; an
        # entry may be stale (the peer has since dropped it): lookups check the peer's row
        self._by_username: dict[str, int] = {}
        self._by_phone: dict[str, int] = {}
        self._unindexed: list[PeerRow] = []  # rows met with new usernames or phone, in order
        self._reindex = False  # rebuild both from _peers instead (too many were unindexed)
        self._stale = 0  # at most this many entries of the two indexes are stale
        self._dirty_fields: dict[str, Any] = {}
        self._dirty_peers: dict[int, PeerRow] = {}
        self._dirty_states: dict[int, Any] = {}
        self._collector = YoungCollector()  # for the rows _remember replaces

    def __repr__(self) -> str:
        state = "open" if self._opened else "not open"
        return f"TelethonSession({self.name!r}, {self.store.storage!r}, {state})"

    def _require_open(self) -> None:
        if not self._opened:
            raise RuntimeError(
                f"TelethonSession {self.name!r} is not open: await session.open() (or use "
                "'async with session:') before creating the TelegramClient"
            )

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> TelethonSession:
        """Take the ownership lease and load the session into memory; return self.

        Raises ``SessionLockedError`` naming the holder if another process holds the session.
        """
        if self._opened:
            return self
        await self.store.storage.start()
        await self.store.open(wait=self.lease_wait)
        try:
            await self._load()
        except BaseException:
            await self.store.close()
            raise
        self._opened = True
        return self

    async def _load(self) -> None:
        fields = await self.store.get_fields()
        self._dc_id = fields["dc_id"] or 0
        self._server_address = fields["server_address"]
        self._port = fields["port"]
        self._auth_key = AuthKey(fields["auth_key"]) if fields["auth_key"] else None
        self._takeout_id = fields["takeout_id"]
        self._user_id = fields["user_id"]
        self._unread.clear()
        self._unread_at = 0
        self._forget_peers()
        async for row in self.store.iter_peer_rows():
            peer_id, names = row[0], row[3]
            if peer_id == 0:  # an entity-0 marker stored as a peer (statekit before 2026-12)
                if self._user_id is None and row[1]:
                    self._user_id = row[1]
                continue
            if names and (lowered := tuple(map(str.lower, names))) != names:
                # stored by an older statekit: the row the store keeps (and caches) is not changed
                row = (peer_id, row[1], row[2], lowered, row[4], row[5], row[6])
            self._index(row, self._peers.get(peer_id))
        self._update_states = {
            _entity_id(s.id): types.updates.State(
                pts=s.pts or 0,
                qts=s.qts or 0,
                date=_EPOCH if s.date is None else datetime.datetime.fromtimestamp(s.date, tz=datetime.timezone.utc),
                seq=s.seq or 0,
                unread_count=0,
            )
            for s in await self.store.get_update_states()
        }

    async def flush(self) -> None:
        """Write every change made since the last write to the store."""
        reader = self._reader
        if reader is not None and not reader.done():
            # the background reader is at it: reading alongside it would read two slices in every
            # turn of the event loop (twice the stall); its error, if any, is raised here
            await asyncio.wait([reader])
            if not reader.cancelled() and (error := reader.exception()) is not None:
                raise error
        await self._read_in_slices()  # entities queued by process_entities (those left)
        if not (self._dirty_fields or self._dirty_peers or self._dirty_states):
            return
        self._require_open()
        fields, self._dirty_fields = self._dirty_fields, {}
        peers, self._dirty_peers = self._dirty_peers, {}
        states, self._dirty_states = self._dirty_states, {}
        try:
            if self.store.lease is None:
                await self.store.open(wait=self.lease_wait)  # closed, then used again
            if fields:
                await self.store.update(**fields)
            if peers:
                # rows read from TL objects by process_entities: already what make_row makes
                await write_checked_rows(self.store, peers)
            if states:
                await self.store.set_update_state(
                    UpdateState(
                        _box_id(eid),
                        s.pts,
                        s.qts,
                        int(s.date.timestamp()) if s.date is not None else None,
                        s.seq,
                    )
                    for eid, s in states.items()
                )
        except BaseException:
            # keep what was not written; anything changed meanwhile is newer and wins
            self._dirty_fields = {**fields, **self._dirty_fields}
            self._dirty_peers = {**peers, **self._dirty_peers}
            self._dirty_states = {**states, **self._dirty_states}
            raise

    def save(self) -> Any:
        """Return an awaitable that writes pending changes to the store (Telethon awaits it)."""
        return self.flush()

    async def _close(self) -> None:
        if self._opened:
            try:
                await self.flush()
            finally:
                reader, self._reader = self._reader, None
                if reader is not None and not reader.done():
                    reader.cancel()  # nothing left to read: flush read the queue
                await self.store.close()

    def close(self) -> Any:
        """Return an awaitable that writes pending changes and releases the lease."""
        return self._close()

    async def aclose(self) -> None:
        """Write pending changes, release the lease and forget the loaded session (its entities
        let go of ``_READ_EVERY`` at a time, the event loop running between: all at once, those
        of 100,000 entities held it for 14–24 ms). ``open()`` loads it again."""
        await self._close()
        self._opened = False
        peers, by_username, by_phone = self._peers, self._by_username, self._by_phone
        self._peers, self._by_username, self._by_phone = {}, {}, {}
        self._forget_peers()
        for mapping in (by_username, by_phone, peers):
            await empty_in_slices(mapping, _READ_EVERY)

    async def __aenter__(self) -> TelethonSession:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _delete(self) -> None:
        self._unread.clear()
        self._unread_at = 0
        self._dirty_fields.clear()
        self._dirty_peers.clear()
        self._dirty_states.clear()
        await self.store.delete()
        self._forget_peers()
        self._update_states = {}
        self._auth_key = None
        self._user_id = None

    def delete(self) -> Any:
        """Return an awaitable that deletes the session and everything it owns from the store."""
        return self._delete()

    def clone(self, to_instance: Any = None) -> Any:
        """A throw-away in-memory session (Telethon uses clones for other data centres)."""
        return to_instance or MemorySession()

    # ------------------------------------------------------------------ session fields

    def set_dc(self, dc_id: int, server_address: str, port: int) -> None:
        super().set_dc(dc_id, server_address, port)
        self._dirty_fields.update(dc_id=dc_id or None, server_address=server_address, port=port)

    @property
    def dc_id(self) -> int:
        self._require_open()
        return int(self._dc_id)

    @property
    def server_address(self) -> str | None:
        self._require_open()
        return self._server_address  # type: ignore[no-any-return]

    @property
    def port(self) -> int | None:
        self._require_open()
        return self._port  # type: ignore[no-any-return]

    @property
    def auth_key(self) -> Any:
        self._require_open()
        return self._auth_key

    @auth_key.setter
    def auth_key(self, value: Any) -> None:
        self._auth_key = value
        self._dirty_fields["auth_key"] = value.key if value is not None and value.key else None

    @property
    def takeout_id(self) -> int | None:
        self._require_open()
        return self._takeout_id  # type: ignore[no-any-return]

    @takeout_id.setter
    def takeout_id(self, value: int | None) -> None:
        self._takeout_id = value
        self._dirty_fields["takeout_id"] = value

    @property
    def user_id(self) -> int | None:
        """The signed-in user's id (Telethon's entity-0 record), or ``None`` if not known yet."""
        self._require_open()
        self._read_queued()
        return self._user_id

    # ------------------------------------------------------------------ update states

    def get_update_state(self, entity_id: int) -> Any:
        self._require_open()
        return self._update_states.get(entity_id)

    def set_update_state(self, entity_id: int, state: Any) -> None:
        self._update_states[entity_id] = state
        self._dirty_states[entity_id] = state

    def get_update_states(self) -> Any:
        self._require_open()
        return self._update_states.items()

    # ------------------------------------------------------------------ entities

    def _forget_peers(self) -> None:
        self._peers.clear()
        self._by_username.clear()
        self._by_phone.clear()
        self._unindexed.clear()
        self._reindex = False
        self._stale = 0

    def _index(self, row: PeerRow, old: PeerRow | None) -> None:
        """Remember ``row`` (usernames lower-case) as its peer's, replacing ``old``. Its
        usernames and phone are indexed by the next lookup by username or phone (``_names``):
        a client meets far more entities than it looks up by name."""
        self._peers[row[0]] = row
        if old is None or old[3] != row[3] or old[4] != row[4]:
            if old is not None:
                self._stale += len(old[3]) + (old[4] is not None)
            if not self._reindex:
                unindexed = self._unindexed
                unindexed.append(row)
                if len(unindexed) > len(self._peers) + 1024:  # cheaper to rebuild than replay
                    unindexed.clear()
                    self._reindex = True

    def _names(self) -> tuple[dict[str, int], dict[str, int]]:
        """The username and phone indexes, brought up to date (entries may be stale).

        Rows are replayed in the order they were met, so a username two entities claim answers
        the one met last; a rebuild (more rows to replay, or more stale entries, than there are
        entities) answers the one with the newest stamp, as Telethon's session answers the
        newest row."""
        by_username, by_phone = self._by_username, self._by_phone
        if not self._reindex and self._stale <= len(self._peers) + 1024:
            if not self._unindexed:
                return by_username, by_phone
            rows, self._unindexed = self._unindexed, []
            for row in rows:
                peer_id = row[0]
                for name in row[3]:
                    by_username[name] = peer_id
                if row[4] is not None:
                    by_phone[row[4]] = peer_id
            return by_username, by_phone
        self._reindex = False
        self._unindexed.clear()
        by_username.clear()
        by_phone.clear()
        peers = self._peers
        for row in peers.values():
            peer_id, stamp = row[0], row[5]
            for name in row[3]:
                held = by_username.get(name)
                if held is None or (peers[held][5] or 0) <= (stamp or 0):
                    by_username[name] = peer_id
            phone = row[4]
            if phone is not None:
                held = by_phone.get(phone)
                if held is None or (peers[held][5] or 0) <= (stamp or 0):
                    by_phone[phone] = peer_id
        self._stale = 0
        return by_username, by_phone

    @staticmethod
    def _entities_of(tlo: Any) -> Iterable[Any]:
        if not isinstance(tlo, TLObject) and utils.is_list_like(tlo):
            return list(tlo)
        found: list[Any] = []
        for attr in ("user", "chat"):
            item = getattr(tlo, attr, None)
            if item is not None:
                found.append(item)
        for attr in ("chats", "users"):
            items: Any = getattr(tlo, attr, None)
            if utils.is_list_like(items):
                found.extend(items)
        return found

    def process_entities(self, tlo: Any) -> None:
        """Remember the entities found in ``tlo`` (written to the store on the next save).

        They are only queued here: a client hands over thousands at once and this method is
        synchronous, so reading them would hold the event loop for the whole batch. A background
        task (or the next ``save()``) reads them 500 at a time, letting the loop run in between;
        a lookup before that reads the queued ones first, so it sees them as Telethon's own
        session would."""
        self._unread.extend(self._entities_of(tlo))
        if self._unread and (self._reader is None or self._reader.done()):
            try:
                self._reader = asyncio.get_running_loop().create_task(self._read_soon())
            except RuntimeError:  # no event loop running: read them now
                self._read_queued()

    async def _read_soon(self) -> None:
        """Read the queued entities in the background (so that a client that neither looks up
        nor saves for a while does not pile them up)."""
        await asyncio.sleep(0)
        await self._read_in_slices()

    async def _read_in_slices(self) -> None:
        """Read the queued entities ``_READ_EVERY`` at a time, the event loop running between."""
        while self._unread:
            at = self._unread_at
            self._unread_at = at + _READ_EVERY
            self._collector.replaced(self._remember(self._unread[at : at + _READ_EVERY]))
            if self._unread_at >= len(self._unread):
                self._unread.clear()
                self._unread_at = 0
            else:
                await asyncio.sleep(0)

    def _read_queued(self) -> None:
        """Read every entity ``process_entities`` queued (for a lookup that must see them)."""
        if self._unread:
            queued, at = self._unread, self._unread_at
            self._unread, self._unread_at = [], 0
            self._remember(queued[at:] if at else queued)

    def _remember(self, entities: Iterable[Any]) -> int:
        """Index ``entities`` and mark those that changed for the next write; return how many
        rows it replaced (for ``YoungCollector``)."""
        user, channel, chat = types.User, types.Channel, types.Chat
        peers, dirty = self._peers, self._dirty_peers
        replaced = 0
        now = int(time.time())
        for entity in entities:
            cls = type(entity)
            # the common entities read directly, as Telethon's own _entity_to_row reads them
            if cls is user:
                access_hash = entity.access_hash
                if access_hash is None or entity.min:
                    continue  # no usable hash: Telethon keeps none either
                marked_id = entity.id
                first, last = entity.first_name, entity.last_name
                name = f"{first} {last}" if first and last else first or last or None
                kind = "bot" if entity.bot else "user"
                phone = entity.phone or None
                username = entity.username
            elif cls is channel:
                access_hash = entity.access_hash
                if access_hash is None or entity.min:
                    continue
                marked_id = -_CHANNEL_BASE - entity.id
                name = entity.title or None
                kind = "channel" if entity.broadcast else "supergroup"
                phone = None
                username = entity.username
            elif cls is chat:
                marked_id, access_hash, name, kind = -entity.id, 0, entity.title or None, "group"
                phone = username = None
            else:
                found = self._entity_to_row(entity)
                if not found:
                    continue
                marked_id, access_hash, username, phone, name = found
                if marked_id == 0:  # Telethon's record of the signed-in user: its id is the hash
                    if access_hash and access_hash != self._user_id:
                        self._user_id = access_hash
                        self._dirty_fields["user_id"] = access_hash
                    continue
                kind = _kind(entity, marked_id)
                phone = phone or None
            if phone is not None and not (phone.isdigit() and phone.isascii()):
                phone = normalize_phone(phone) or None
            usernames = (
                _usernames(entity, username.lower() if username else None)
                if getattr(entity, "usernames", None)
                else ((username.lower(),) if username else ())
            )
            old = peers.get(marked_id)
            if (
                old is not None
                and old[1] == access_hash
                and old[3] == usernames
                and old[4] == phone
                and old[6] == name
                and old[2] == kind
            ):
                continue  # met again unchanged: nothing to write
            row: PeerRow = (marked_id, access_hash, kind, usernames, phone, now, name)
            self._index(row, old)
            dirty[marked_id] = row
            if old is not None:
                replaced += 1
        return replaced

    def get_entity_rows_by_phone(self, phone: str) -> tuple[int, int] | None:
        self._read_queued()
        peer_id = self._names()[1].get(phone)
        row = None if peer_id is None else self._peers.get(peer_id)
        return None if row is None or row[4] != phone else (row[0], row[1])

    def get_entity_rows_by_username(self, username: str) -> tuple[int, int] | None:
        self._read_queued()
        lowered = username.lower()
        peer_id = self._names()[0].get(lowered)
        row = None if peer_id is None else self._peers.get(peer_id)
        return None if row is None or lowered not in row[3] else (row[0], row[1])

    def get_entity_rows_by_name(self, name: str) -> tuple[int, int] | None:
        """The first entity (in the order they were met) whose display name is ``name``.

        A scan of the entities, as Telethon's own sessions do (its SQLite table has no index on
        names): a lookup by name is Telethon's last resort for a string that is neither a phone
        nor a known username, and keeping a name index would cost every entity write."""
        self._read_queued()
        for peer_id, row in self._peers.items():
            if row[6] == name:
                return (peer_id, row[1])
        return None

    def get_entity_rows_by_id(self, id: int, exact: bool = True) -> tuple[int, int] | None:  # noqa: A002 - Telethon's name
        self._read_queued()
        if exact:
            candidates: tuple[int, ...] = (id,)
        else:
            candidates = (
                utils.get_peer_id(types.PeerUser(id)),
                utils.get_peer_id(types.PeerChat(id)),
                utils.get_peer_id(types.PeerChannel(id)),
            )
        for peer_id in candidates:
            if peer_id == 0:
                return None if self._user_id is None else (0, self._user_id)
            row = self._peers.get(peer_id)
            if row is not None:
                return (peer_id, row[1])
        return None

    def get_input_entity(self, key: Any) -> Any:
        """The ``InputPeer`` of a cached entity (``ValueError`` if unknown), as Telethon's own."""
        self._require_open()
        self._read_queued()
        return super().get_input_entity(key)
