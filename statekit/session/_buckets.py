"""The stored layout of a session's peers: rows grouped into buckets, and the in-process cache of
those buckets.

Peers live in ``PEER_BUCKETS`` keys, each holding the rows of the peers whose id falls in it
(``peer_id % PEER_BUCKETS``); the username and phone indexes live in ``INDEX_BUCKETS`` keys each,
mapping a lower-case username (or a phone number) to a peer id (bucket: CRC-32 of the UTF-8
text). Writing N peers therefore writes at most ``PEER_BUCKETS + 2 * INDEX_BUCKETS`` keys, however
large N is; a lookup by id reads one key, by username or phone two (the index, then the peer, whose
row must still have that username or phone: an index entry is only a pointer).

Stored forms: a bucket is written packed (``statekit.session._packed``: one ``bytes`` value that a
lookup searches without decoding it whole); a row is the msgpack array
``[id, access_hash, type, [usernames], phone, last_update_on, name]`` (6 items: no name; in a
packed bucket without its id, which the bucket's id array holds).
Unpacked buckets (written before 2026-12-06) are read as well: a peer bucket as an array of rows,
an index bucket as a map ``{username or phone: peer id}``; the next write of a bucket packs it.

Each bucket has two in-memory forms: a view for lookups (``peer_view`` / ``index_view``: the
packed bucket itself, nothing decoded until asked for) and a mutable form for writes
(``index_peer_bucket`` / ``decode_index_bucket``: a dict; ``thawed`` turns a view into one).
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any, Final, cast

import msgpack

from statekit.codec import INT64_MAX, INT64_MIN
from statekit.errors import CorruptValueError
from statekit.session._packed import (
    INDEX_TAG,
    PEERS_TAG,
    PackedIndex,
    PackedPeers,
    bin_payload,
    is_packed_index,
    is_packed_peers,
    not_a_peer_bucket,
    pack_index,
    pack_peers,
)
from statekit.session._peers import SHARED_TYPES, PeerRow, stored_peer_row

__all__ = [
    "INDEX_BUCKETS",
    "PEER_BUCKETS",
    "BucketCache",
    "IndexBucket",
    "PeerBucket",
    "checked_row",
    "decode_index_bucket",
    "decode_peer_bucket",
    "index_bucket",
    "index_buckets",
    "index_peer_bucket",
    "index_view",
    "pack_bucket",
    "packed_bucket",
    "peer_bucket",
    "peer_buckets",
    "peer_view",
    "rows_of",
    "stored_index_view",
    "stored_peer_view",
    "thawed",
    "unpacked_stored",
]

PEER_BUCKETS: Final = 512
INDEX_BUCKETS: Final = 512

IndexBucket = dict[str, int]

pack_bucket = msgpack.Packer().pack
"""The msgpack form of a bucket's stored value (a packed bucket: msgpack ``bin``)."""

_unpackb = msgpack.unpackb  # bound once: a first lookup of a row decodes it


def peer_bucket(peer_id: int) -> int:
    """The bucket number of ``peer_id`` (0 <= n < PEER_BUCKETS)."""
    return peer_id % PEER_BUCKETS


def peer_buckets(peer_ids: Iterable[int]) -> Iterator[int]:
    """``peer_bucket`` of each of ``peer_ids``, in order (mapped in C: for a batch)."""
    return map(PEER_BUCKETS.__rmod__, peer_ids)


def index_bucket(text: str) -> int:
    """The bucket number of a lower-case username or a phone number (0 <= n < INDEX_BUCKETS)."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % INDEX_BUCKETS


def index_buckets(texts: list[str]) -> list[int]:
    """``index_bucket`` of each of ``texts``, in order (one call for a batch)."""
    crc = zlib.crc32
    return [crc(text.encode("utf-8", "surrogatepass")) % INDEX_BUCKETS for text in texts]


def _as_list(key: str, value: Any) -> Any:
    """``value`` as read, with msgpack held in bytes decoded (a packed bucket stays bytes)."""
    if type(value) is bytes and not (is_packed_peers(value) or is_packed_index(value)):
        # a non-msgpack codec holding msgpack bytes is not ours, but readable
        try:
            return msgpack.unpackb(value)
        except (ValueError, msgpack.UnpackException) as exc:
            raise not_a_peer_bucket(key, exc) from None
    return value


def _with_id(peer_id: int, item: Any) -> PeerRow:
    """The row of ``peer_id`` whose packed form (stored without the id) decoded to ``item``,
    checked; ``TypeError``/``ValueError`` naming the field otherwise (never the values)."""
    if type(item) is not tuple:
        raise TypeError(f"a {type(item).__name__}, not a row")
    if len(item) == 6:  # the common row, checked inline (a first lookup decodes one of these)
        access_hash, kind, usernames, phone, stamp, name = item
        if (
            type(access_hash) is int
            and type(kind) is str
            and type(usernames) is tuple
            and (phone is None or type(phone) is str)
            and (stamp is None or type(stamp) is int)
            and (name is None or type(name) is str)
            and (not usernames or (len(usernames) == 1 and type(usernames[0]) is str))
        ):
            # the peer types as one shared str each, not one decoded copy per row
            return (peer_id, access_hash, SHARED_TYPES.get(kind, kind), usernames, phone, stamp, name)
    return stored_peer_row((peer_id, *item))


def _unpacked_row(key: str, peer_id: int, packed: bytes) -> PeerRow:
    """The packed row of ``peer_id`` in bucket ``key``, decoded and checked."""
    try:
        return _with_id(peer_id, _unpackb(packed, use_list=False))
    except (TypeError, ValueError, msgpack.UnpackException) as exc:
        raise not_a_peer_bucket(key, exc) from None


def decode_peer_bucket(key: str, value: Any) -> dict[int, PeerRow]:
    """The rows stored under peer bucket ``key`` by id, every one checked (empty if ``value`` is
    None).

    Raises ``CorruptValueError`` naming the key if the value is not a peer bucket."""
    found: dict[int, PeerRow] = {}
    if value is None:
        return found
    value = _as_list(key, value)
    if type(value) is bytes:
        return _decoded(key, PackedPeers(key, value))
    if type(value) is not list:
        raise CorruptValueError(f"key {key!r} does not hold a peer bucket (a {type(value).__name__})")
    try:
        for item in value:
            row = stored_peer_row(item)
            found[row[0]] = row
    except (TypeError, ValueError) as exc:
        raise not_a_peer_bucket(key, exc) from None
    return found


def _decoded(key: str, view: PackedPeers) -> dict[int, PeerRow]:
    """Every row of the packed peer bucket ``view`` (read from ``key``) by id, decoded in one
    pass and checked; a row the view has decoded already is that one. Raises
    ``CorruptValueError`` naming the key if a row is malformed."""
    seen = view.seen
    try:
        if not seen:
            return {peer_id: _with_id(peer_id, item) for peer_id, item in view.decoded()}
        return {peer_id: seen.get(peer_id) or _with_id(peer_id, item) for peer_id, item in view.decoded()}
    except (TypeError, ValueError) as exc:
        raise not_a_peer_bucket(key, exc) from None


def rows_of(key: str, bucket: PackedPeers | PeerBucket) -> list[PeerRow]:
    """Every row of peer bucket ``key`` in either in-memory form, checked (rows already decoded
    are the ones given, not copies), taken at once: the list stays as it is while the bucket
    changes. Raises ``CorruptValueError`` naming the key if a stored row is malformed."""
    if isinstance(bucket, PackedPeers):
        return list(_decoded(key, bucket).values())
    return [cast(PeerRow, checked_row(bucket, key, peer_id)) for peer_id in list(bucket)]


class PeerBucket(dict[int, Any]):
    """The rows of one peer bucket by id; a row whose id is in ``unchecked`` (every row given to
    the constructor) is as it was read (packed bytes, or a tuple or list meant to hold 6 or 7
    items) until ``checked_row`` checks it; a row set afterwards is a checked one. (The rows a
    write sets are not counted one by one: a bucket that a write filled has nothing unchecked,
    which a write of 100,000 peers tells from an empty set without a lookup per row.)"""

    __slots__ = ("has_packed", "unchecked")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.unchecked: set[int] = set(self)
        self.has_packed = False  # may hold packed rows (thawed from a packed bucket)


def index_peer_bucket(key: str, value: Any) -> PeerBucket:
    """The rows stored under peer bucket ``key`` by id, each left as read until ``checked_row``
    is asked for it: reading a bucket costs a dict entry per row, and a row is checked when it is
    used. Raises ``CorruptValueError`` naming the key if the value is not a peer bucket."""
    if value is None:
        return PeerBucket()
    value = _as_list(key, value)
    if type(value) is bytes:
        return cast(PeerBucket, thawed(PackedPeers(key, value)))
    if type(value) is not list and type(value) is not tuple:
        raise CorruptValueError(f"key {key!r} does not hold a peer bucket (a {type(value).__name__})")
    try:
        return PeerBucket({item[0]: item for item in value})
    except (TypeError, IndexError, KeyError):  # the exception would show the entry: not said
        raise CorruptValueError(
            f"key {key!r} does not hold a peer bucket (an entry without an id first)"
        ) from None


def peer_view(key: str, value: Any) -> PackedPeers | PeerBucket:
    """The peer bucket ``key`` for lookups: a packed bucket as it is (rows decoded when looked
    up), an older one as ``index_peer_bucket`` reads it. ``CorruptValueError`` as there."""
    if is_packed_peers(value):
        return PackedPeers(key, value)
    return index_peer_bucket(key, value)


def stored_peer_view(key: str, stored: Any) -> PackedPeers | PeerBucket:
    """``peer_view`` of the stored msgpack form of a bucket's value (None: not stored): a packed
    bucket is viewed where it lies in that form, not copied out of it. ``CorruptValueError``
    naming the key if it is not msgpack, or as ``peer_view`` raises it."""
    start = _packed_start(stored, PEERS_TAG)
    if start:
        return PackedPeers(key, stored, start)
    return peer_view(key, unpacked_stored(key, stored))


def stored_index_view(key: str, stored: Any) -> PackedIndex | IndexBucket:
    """``index_view`` of the stored msgpack form of a bucket's value, as ``stored_peer_view``."""
    start = _packed_start(stored, INDEX_TAG)
    if start:
        return PackedIndex(key, stored, start)
    return index_view(key, unpacked_stored(key, stored))


def _packed_start(stored: Any, tag: bytes) -> int:
    """Where the packed bucket tagged ``tag`` starts in ``stored`` (a msgpack ``bin`` wrapping
    it), or 0 if ``stored`` is no such value."""
    if type(stored) is not bytes:
        return 0
    start = bin_payload(stored)
    return start if start > 0 and stored[start : start + 3] == tag else 0


def unpacked_stored(key: str, stored: Any) -> Any:
    """The value of bucket ``key`` from its stored msgpack form (arrays as tuples; None or a
    native int as given). ``CorruptValueError`` naming the key if it is not msgpack."""
    if type(stored) is not bytes:
        return stored  # None, or a native int (not a bucket: the decoding that follows says so)
    try:
        return _unpackb(stored, use_list=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise CorruptValueError(f"key {key!r} does not hold msgpack ({str(exc) or type(exc).__name__})") from None


def checked_row(bucket: PeerBucket | PackedPeers, key: str, peer_id: int) -> PeerRow | None:
    """The row of ``peer_id`` in ``bucket`` (read from ``key``), checked and kept checked; None
    if absent. Raises ``CorruptValueError`` naming the key if the stored row is malformed."""
    if isinstance(bucket, PackedPeers):
        row: Any = bucket.seen.get(peer_id)
        if row is None:
            packed = bucket.find(peer_id)
            if packed is None:
                return None
            row = bucket.seen[peer_id] = _unpacked_row(key, peer_id, packed)
        return row  # type: ignore[no-any-return]
    row = bucket.get(peer_id)
    unchecked = bucket.unchecked
    if row is not None and unchecked and peer_id in unchecked:
        if type(row) is bytes:
            row = _unpacked_row(key, peer_id, row)
        else:
            try:
                row = stored_peer_row(row)
            except (TypeError, ValueError) as exc:
                raise not_a_peer_bucket(key, exc) from None
        bucket[peer_id] = row
        unchecked.discard(peer_id)
    return row  # type: ignore[no-any-return]


def decode_index_bucket(key: str, value: Any) -> IndexBucket:
    """The peer ids stored under index bucket ``key`` by username or phone (empty if ``value`` is
    None); a copy, so the value read stays as read.

    Raises ``CorruptValueError`` naming the key if the value is not an index bucket."""
    if value is None:
        return {}
    value = _as_list(key, value)
    if type(value) is bytes:
        return PackedIndex(key, value).to_dict()
    if type(value) is not dict or not all(
        type(k) is str and type(v) is int and INT64_MIN <= v <= INT64_MAX for k, v in value.items()
    ):
        raise CorruptValueError(
            f"key {key!r} does not hold a username or phone index bucket (a map of text to "
            "signed 64-bit peer id)"
        )
    return dict(value)


def index_view(key: str, value: Any) -> PackedIndex | IndexBucket:
    """The index bucket ``key`` for lookups: a packed bucket as it is, an older one as
    ``decode_index_bucket`` reads it. ``CorruptValueError`` as there."""
    if is_packed_index(value):
        return PackedIndex(key, value)
    return decode_index_bucket(key, value)


def thawed(bucket: Any) -> Any:
    """``bucket`` in the form a write changes: a packed view as a dict (rows already decoded kept
    decoded), any other bucket as it is."""
    if type(bucket) is PackedPeers:
        found = PeerBucket(bucket.items())
        found.has_packed = True
        if bucket.seen:
            found.update(bucket.seen)
            found.unchecked.difference_update(bucket.seen)
        return found
    if type(bucket) is PackedIndex:
        return bucket.to_dict()
    return bucket


def packed_bucket(key: str, bucket: Any, *, peers: bool) -> bytes:
    """The packed form of a bucket in either form (``peers``: a peer bucket, else an index)."""
    if type(bucket) is PackedPeers or type(bucket) is PackedIndex:
        bucket = thawed(bucket)
    if not peers:
        return pack_index(bucket)
    return pack_peers(key, bucket, has_packed=type(bucket) is not PeerBucket or bucket.has_packed)


class BucketCache:
    """Decoded buckets by key, least recently used evicted first once they hold more than
    ``size`` entries in all (rows and index entries). A bucket changed in place by its holder
    is re-counted with ``recount``."""

    __slots__ = ("_buckets", "_held", "_sizes", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._buckets: OrderedDict[str, Any] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._held = 0

    def __len__(self) -> int:
        return self._held

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def clear(self) -> None:
        """Forget every bucket."""
        self._buckets.clear()
        self._sizes.clear()
        self._held = 0

    def take(self) -> list[Any]:
        """Every cached bucket, least recently used first, the cache left empty (for whoever
        lets go of them: ``drop_in_slices``)."""
        buckets = list(self._buckets.values())
        self.clear()
        return buckets

    def get(self, key: str) -> Any:
        """The cached bucket ``key`` (touched as recently used), or None if not cached."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            self._buckets.move_to_end(key)
        return bucket

    def peek(self, key: str) -> Any:
        """The cached bucket ``key`` without touching it (a scan of every bucket is no sign of
        which ones are wanted), or None if not cached."""
        return self._buckets.get(key)

    def has_room(self, entries: int) -> bool:
        """True if ``entries`` more fit without evicting anything (for reads ahead, which must
        not push out what lookups or writes brought in)."""
        return self._held + entries <= self.size

    def put(self, key: str, bucket: Any) -> None:
        """Cache ``bucket`` (the caller's, not a copy; any form) under ``key``, evicting the least
        recently used buckets while over ``size`` entries; a bucket larger than ``size`` is not
        kept."""
        if self.size <= 0:
            return
        if key in self._buckets:
            del self._buckets[key]
            self._held -= self._sizes.pop(key)
        if len(bucket) > self.size:
            return
        self._buckets[key] = bucket
        self._sizes[key] = len(bucket)
        self._held += len(bucket)
        self._evict()

    def recount(self, key: str) -> None:
        """Account for a change in size of the cached bucket ``key`` made in place."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            self._held += len(bucket) - self._sizes[key]
            self._sizes[key] = len(bucket)
            self._evict()

    def _evict(self) -> None:
        while self._held > self.size and self._buckets:
            key, _ = self._buckets.popitem(last=False)
            self._held -= self._sizes.pop(key)

    def missing(self, keys: list[str]) -> list[str]:
        """Those of ``keys`` not cached."""
        held = self._buckets
        return [key for key in keys if key not in held]
