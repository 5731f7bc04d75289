"""Peer rows of ``SessionStore``: their stored form, and the in-process cache of them (by id,
LRU-bounded, and by username and phone).

Only what the store knows to be current goes into the username and phone indexes (rows it wrote,
or rows it found through that very index key); rows read by id are cached without indexing them,
so a lookup by username never disagrees with the storage's own index.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import msgpack

from statekit.codec import INT64_MAX
from statekit.errors import CorruptValueError
from statekit.session.records import Peer

__all__ = [
    "PeerCache",
    "PeerRow",
    "clean_usernames",
    "make_row",
    "normalize_phone",
    "pack_row",
    "peer_row",
    "row_peer",
    "stored_row",
    "unpack_row",
    "username_pair",
]

PeerRow = tuple[int, int, str, tuple[str, ...], "str | None", "int | None", "str | None"]
"""(id, access_hash, type, usernames, phone_number, last_update_on, name)."""

_INT64 = INT64_MAX + 1  # ids and hashes are signed 64-bit: -_INT64 <= x < _INT64
_PHONE_JUNK = str.maketrans("", "", "+()- \t")


def normalize_phone(phone: str) -> str:
    """Phone number as stored: digits only (``+``, spaces, dashes and brackets removed)."""
    return phone.translate(_PHONE_JUNK)


def clean_usernames(peer_id: int, names: Iterable[Any]) -> tuple[str, ...]:
    """``names`` without None entries, ``@`` prefixes and empty names; ``TypeError`` naming the
    peer if ``names`` is not a list (or other iterable) of str and None, e.g. a single str."""
    if isinstance(names, str | bytes) or not isinstance(names, Iterable):
        raise TypeError(
            f"peer {peer_id}: usernames must be a list of str, not {type(names).__name__}"
        )
    listed = tuple(names)
    for name in listed:
        if type(name) is not str or not name or name[0] == "@":
            break
    else:
        return listed  # the common case: every name is already clean
    cleaned: list[str] = []
    for name in listed:
        if type(name) is str:
            name = name.lstrip("@")
            if name:
                cleaned.append(name)
        elif name is not None:
            raise TypeError(f"peer {peer_id}: usernames must be str or None, got {list(listed)!r}")
    return tuple(cleaned)


def username_pair(pair: Any) -> tuple[int, tuple[str, ...]]:
    """One ``(peer_id, usernames)`` pair of an ``update_usernames`` call, checked, with the
    usernames cleaned (``clean_usernames``). Raises ``TypeError`` naming what is not such a pair,
    a peer id that is not an int, or usernames that are not a list of str and None."""
    if type(pair) is not tuple or len(pair) != 2:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError(f"update_usernames takes (peer_id, usernames) pairs, got {pair!r:.80}")
    peer_id, names = pair
    if type(peer_id) is not int:
        raise TypeError(f"peer id must be an int, not {peer_id!r}")
    if (
        type(names) is list
        and len(names) == 1
        and type(name := names[0]) is str
        and name
        and name[0] != "@"
    ):  # the common shape (one clean username), checked inline
        return peer_id, (name,)
    return peer_id, clean_usernames(peer_id, names)


def make_row(
    peer_id: Any,
    access_hash: Any,
    kind: Any,
    usernames: Any,
    phone: Any,
    stamp: Any,
    name: Any = None,
) -> PeerRow:
    """A checked peer row: usernames without ``@``, phone digits only (None if empty), display
    name None if empty.

    Raises ``TypeError`` naming the peer and the field that is wrong.
    """
    if type(peer_id) is not int or not -_INT64 <= peer_id < _INT64:
        raise TypeError(f"peer id must be a 64-bit int, not {peer_id!r}")
    if type(access_hash) is not int or not -_INT64 <= access_hash < _INT64:
        raise TypeError(f"peer {peer_id}: access_hash must be a 64-bit int, not {access_hash!r}")
    if type(kind) is not str:
        raise TypeError(f"peer {peer_id}: type must be a str, not {type(kind).__name__}")
    if type(usernames) is not tuple:
        usernames = tuple(usernames)
    if usernames:
        if not all(type(u) is str for u in usernames):
            raise TypeError(f"peer {peer_id}: usernames must be str")
        usernames = tuple(u.lstrip("@") for u in usernames if u.lstrip("@"))
    if phone is not None:
        if type(phone) is not str:
            raise TypeError(f"peer {peer_id}: phone_number must be a str, not {type(phone).__name__}")
        phone = phone.translate(_PHONE_JUNK) or None
    if stamp is not None and type(stamp) is not int:
        raise TypeError(f"peer {peer_id}: last_update_on must be an int, not {stamp!r}")
    if name is not None:
        if type(name) is not str:
            raise TypeError(f"peer {peer_id}: name must be a str, not {type(name).__name__}")
        name = name or None
    return (peer_id, access_hash, kind, usernames, phone, stamp, name)


def peer_row(peer: Peer, now: int) -> PeerRow:
    """The row of ``peer`` (``now`` for a missing ``last_update_on``); ``TypeError`` if bad."""
    if not isinstance(peer, Peer):
        raise TypeError(f"peers must be statekit.session.Peer objects, not {type(peer).__name__}")
    stamp = peer.last_update_on
    return make_row(
        peer.id, peer.access_hash, peer.type, peer.usernames, peer.phone_number,
        now if stamp is None else stamp, peer.name,
    )


def row_peer(row: PeerRow) -> Peer:
    """A fresh ``Peer`` of ``row``."""
    return Peer(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


_pack = msgpack.Packer().pack  # reused: no per-row setup (rows hold only int, str, None)


def pack_row(row: PeerRow) -> bytes:
    """The stored form of ``row`` under the default codec: a msgpack array (the codec's own
    encoding of the row as a list, which has no maps to order). A row without a display name is
    stored as the 6 items statekit wrote before names were kept."""
    return _pack(row if row[6] is not None else row[:6])  # type: ignore[no-any-return]


def stored_row(row: PeerRow) -> list[Any]:
    """``row`` as the list it is stored as (6 items when it has no display name)."""
    return list(row if row[6] is not None else row[:6])


def unpack_row(key: str, value: Any) -> PeerRow | None:
    """The row stored under ``key`` (None if absent or retired); ``CorruptValueError`` if the
    value is not a peer record. A row is stored as a list; rows written by statekit 0.1 as
    msgpack bytes inside a bytes value are read too."""
    if value is None or value == b"":
        return None
    try:
        if type(value) is bytes:
            value = msgpack.unpackb(value)
        if type(value) is not list:
            raise TypeError(type(value).__name__)
        if len(value) == 6:
            pid, access_hash, kind, usernames, phone, stamp = value
            name = None
        else:
            pid, access_hash, kind, usernames, phone, stamp, name = value
            if name is not None and type(name) is not str:
                raise TypeError("name")
        if not (type(pid) is int and type(access_hash) is int and type(kind) is str):
            raise TypeError("id, access_hash, type")
        return (pid, access_hash, kind, tuple(usernames), phone, stamp, name)
    except (TypeError, ValueError, msgpack.UnpackException) as exc:
        raise CorruptValueError(f"key {key!r} does not hold a peer record ({exc})") from None


class PeerCache:
    """At most ``size`` peer rows, least recently used evicted first."""

    __slots__ = ("by_phone", "by_username", "rows", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.rows: OrderedDict[int, PeerRow] = OrderedDict()
        self.by_username: dict[str, int] = {}
        self.by_phone: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def clear(self) -> None:
        """Forget everything."""
        self.rows.clear()
        self.by_username.clear()
        self.by_phone.clear()

    def get(self, peer_id: int) -> PeerRow | None:
        """The cached row of ``peer_id``, or None."""
        row = self.rows.get(peer_id)
        if row is not None:
            self.rows.move_to_end(peer_id)
        return row

    def get_by_username(self, lowered: str) -> PeerRow | None:
        """The cached row indexed under the lower-case ``lowered`` username, or None."""
        peer_id = self.by_username.get(lowered)
        return None if peer_id is None else self.get(peer_id)

    def get_by_phone(self, phone: str) -> PeerRow | None:
        """The cached row indexed under ``phone``, or None."""
        peer_id = self.by_phone.get(phone)
        return None if peer_id is None else self.get(peer_id)

    def _unindex(self, row: PeerRow, keep: PeerRow | None = None) -> None:
        """Drop the index entries of ``row`` that point to it, except those ``keep`` also has."""
        peer_id = row[0]
        kept = {name.lower() for name in keep[3]} if keep is not None else set()
        for name in row[3]:
            lowered = name.lower()
            if lowered not in kept and self.by_username.get(lowered) == peer_id:
                del self.by_username[lowered]
        phone = row[4]
        if (
            phone is not None
            and (keep is None or keep[4] != phone)
            and self.by_phone.get(phone) == peer_id
        ):
            del self.by_phone[phone]

    def put(
        self,
        row: PeerRow,
        *,
        index: bool = False,
        username: str | None = None,
        phone: str | None = None,
    ) -> None:
        """Cache ``row``; ``index=True`` indexes all its usernames and phone (a row just written),
        ``username`` / ``phone`` index only that one (a row found through that index)."""
        if self.size <= 0:
            return
        peer_id = row[0]
        old = self.rows.get(peer_id)
        if old is not None:
            self._unindex(old, keep=row)
        self.rows[peer_id] = row
        self.rows.move_to_end(peer_id)
        if index:
            for name in row[3]:
                self.by_username[name.lower()] = peer_id
            if row[4] is not None:
                self.by_phone[row[4]] = peer_id
        if username is not None:
            self.by_username[username] = peer_id
        if phone is not None:
            self.by_phone[phone] = peer_id
        while len(self.rows) > self.size:
            _, evicted = self.rows.popitem(last=False)
            self._unindex(evicted)

    def put_written(self, rows: Iterable[PeerRow]) -> None:
        """``put(row, index=True)`` for each of ``rows`` (rows just written), in one pass."""
        if self.size <= 0:
            return
        cached, by_username, by_phone = self.rows, self.by_username, self.by_phone
        for row in rows:
            peer_id = row[0]
            old = cached.pop(peer_id, None)
            if old is not None:
                self._unindex(old, keep=row)
            cached[peer_id] = row  # (re)inserted last: the most recently used
            for name in row[3]:
                by_username[name.lower()] = peer_id
            if row[4] is not None:
                by_phone[row[4]] = peer_id
        while len(cached) > self.size:
            _, evicted = cached.popitem(last=False)
            self._unindex(evicted)

    def discard(self, peer_id: int) -> None:
        """Forget ``peer_id`` and its index entries."""
        row = self.rows.pop(peer_id, None)
        if row is not None:
            self._unindex(row)

    def unindex_username(self, lowered: str, peer_id: int) -> None:
        """Drop the username index entry ``lowered`` if it points to ``peer_id``."""
        if self.by_username.get(lowered) == peer_id:
            del self.by_username[lowered]

    def unindex_phone(self, phone: str, peer_id: int) -> None:
        """Drop the phone index entry ``phone`` if it points to ``peer_id``."""
        if self.by_phone.get(phone) == peer_id:
            del self.by_phone[phone]
