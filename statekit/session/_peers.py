"""Peer rows of ``SessionStore``: building and checking them, and reading their stored form
(the buckets they are stored in: ``statekit.session._buckets``)."""

from __future__ import annotations

from typing import Any, Final

import msgpack

from statekit.codec import INT64_MAX
from statekit.errors import CorruptValueError
from statekit.session.records import Peer
from statekit.session.records import _clean_usernames as clean_usernames

__all__ = [
    "SHARED_TYPES",
    "PeerRow",
    "clean_usernames",
    "make_row",
    "normalize_phone",
    "peer_row",
    "row_peer",
    "stored_peer_row",
    "unpack_row",
    "username_pair",
]

PeerRow = tuple[int, int, str, tuple[str, ...], "str | None", "int | None", "str | None"]
"""(id, access_hash, type, usernames, phone_number, last_update_on, name)."""

SHARED_TYPES: Final = {kind: kind for kind in ("user", "bot", "group", "channel", "supergroup")}
"""The common peer types, each mapped to itself: a type decoded or parsed is replaced by
``SHARED_TYPES.get(kind, kind)``, so that every row holds the same str instead of a copy each
(not ``sys.intern``: an interned str is immortal on Python 3.12.0–3.12.5 and free-threaded
builds, so a hostile input's made-up types would stay for the life of the process)."""

_INT64 = INT64_MAX + 1  # ids and hashes are signed 64-bit: -_INT64 <= x < _INT64
_PHONE_JUNK = str.maketrans("", "", "+()- \t")


def normalize_phone(phone: str) -> str:
    """Phone number as stored: digits only (``+``, spaces, dashes and brackets removed)."""
    return phone.translate(_PHONE_JUNK)


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
        shown = "an int out of range" if type(access_hash) is int else type(access_hash).__name__
        raise TypeError(f"peer {peer_id}: access_hash must be a 64-bit int, not {shown}")  # not shown: a secret
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


def stored_peer_row(item: Any) -> PeerRow:
    """A stored row (a list or tuple of 6 items, or 7 with the display name) as a ``PeerRow``.

    Raises ``TypeError``/``ValueError`` saying which field is wrong (never showing the values:
    a row holds an access hash and a phone number)."""
    if (type(item) is not list and type(item) is not tuple) or len(item) not in (6, 7):
        size = f" of {len(item)} items" if isinstance(item, list | tuple) else ""
        raise TypeError(f"a {type(item).__name__}{size}, not a row of 6 or 7 items")
    if len(item) == 7:
        pid, access_hash, kind, usernames, phone, stamp, name = item
        if name is not None and type(name) is not str:
            raise TypeError("name")
    else:
        pid, access_hash, kind, usernames, phone, stamp = item
        name = None
    if not (type(pid) is int and type(access_hash) is int and type(kind) is str):
        raise TypeError("id, access_hash, type")
    if phone is not None and type(phone) is not str:
        raise TypeError("phone_number")
    if stamp is not None and type(stamp) is not int:
        raise TypeError("last_update_on")
    if type(usernames) is not list and type(usernames) is not tuple:
        raise TypeError("usernames")
    names = tuple(usernames)
    if not all(type(n) is str for n in names):
        raise TypeError("usernames")
    return (pid, access_hash, kind, names, phone, stamp, name)


def unpack_row(key: str, value: Any) -> PeerRow | None:
    """The row stored under ``key`` by statekit 0.1 (a key per peer; None if absent or retired);
    ``CorruptValueError`` if the value is not a peer record. Such a row is a list, or msgpack
    bytes inside a bytes value (the first 0.1 releases)."""
    if value is None or value == b"":
        return None
    try:
        if type(value) is bytes:
            value = msgpack.unpackb(value)
        return stored_peer_row(value)
    except (TypeError, ValueError, msgpack.UnpackException) as exc:
        raise CorruptValueError(f"key {key!r} does not hold a peer record ({exc})") from None
