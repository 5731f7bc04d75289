"""Packed buckets: a peer bucket or a username/phone index bucket as one ``bytes`` value that a
lookup searches without decoding the rest of it.

A packed peer bucket (``PEERS_TAG`` and a format byte, then little-endian)::

    b"skP" | format | count c (u32) | ids: c x i64 or i32, ascending | ends: c x u32 or u16 | rows

where ``rows`` is the msgpack arrays of the rows without their id (``[access_hash, type,
[usernames], phone, last_update_on, name]``), one after another, and ``ends[i]`` is where row
``i`` ends within them; format 1: i64 ids and u32 ends, 2: i64 and u16, 3: i32 and u32, 4: i32
and u16 (the narrow form whenever every id, or every end, fits in it). A packed index bucket
(``INDEX_TAG`` and format 1)::

    b"skI\\x01" | count c (u32) | ids: c x i64 | texts

where ``texts`` is the UTF-8 of each username or phone number (surrogates passed through), each
between two NUL bytes (``\\0a\\0b\\0``): text ``i`` points to ``ids[i]``. Reading a bucket
costs a copy or two of its arrays, whatever it holds; a lookup by id is a binary search and the
decoding of one row, by username or phone one search of the texts. A bucket takes about as many
bytes as the msgpack array or map it replaces (which keeps SQLite from moving it to overflow pages
any sooner).

Malformed bytes raise ``CorruptValueError`` naming the key, never showing the bytes.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from itertools import accumulate
from typing import Any, Final

import msgpack

from statekit.errors import CorruptValueError

__all__ = [
    "INDEX_TAG",
    "PEERS_TAG",
    "PackedIndex",
    "PackedPeers",
    "bin_payload",
    "is_packed_index",
    "is_packed_peers",
    "not_a_peer_bucket",
    "pack_index",
    "pack_peers",
]

PEERS_TAG: Final = b"skP"
INDEX_TAG: Final = b"skI"
# peer bucket formats: the array types of its ids and of its row ends, by format byte
_FORMATS: Final = {1: ("q", "I"), 2: ("q", "H"), 3: ("i", "I"), 4: ("i", "H")}
_FORMAT_OF: Final = {codes: bytes((n,)) for n, codes in _FORMATS.items()}
_SIZES: Final = {"H": 2, "I": 4, "i": 4, "q": 8}
_HEAD = 8  # tag, format and count
_SWAP = sys.byteorder != "little"  # arrays are stored little-endian
_pack_row = msgpack.Packer().pack
_COUNT = struct.Struct("<I").pack
_BIN_HEADS: Final = {0xC4: 2, 0xC5: 3, 0xC6: 5}  # msgpack bin 8/16/32: type byte and length

if any(array(code).itemsize != size for code, size in _SIZES.items()):  # pragma: no cover
    raise ImportError("statekit needs arrays of 2-byte 'H', 4-byte 'I' and 'i', 8-byte 'q'")


def is_packed_peers(value: object) -> bool:
    """True if ``value`` is (meant to be) a packed peer bucket."""
    return type(value) is bytes and value[:3] == PEERS_TAG


def is_packed_index(value: object) -> bool:
    """True if ``value`` is (meant to be) a packed index bucket."""
    return type(value) is bytes and value[:3] == INDEX_TAG


def bin_payload(stored: bytes) -> int:
    """Where the payload of ``stored`` starts if it is one whole msgpack ``bin`` value (how a
    msgpack storage keeps a packed bucket), else -1."""
    head = _BIN_HEADS.get(stored[0], 0) if stored else 0
    if not head or int.from_bytes(stored[1:head], "big") != len(stored) - head:
        return -1
    return head


def not_a_peer_bucket(key: str, exc: Exception) -> CorruptValueError:
    """The error for peer bucket ``key`` that failed to decode with ``exc`` (whose message
    names a field or a msgpack fault, never a value)."""
    return CorruptValueError(f"key {key!r} does not hold a peer bucket ({str(exc) or type(exc).__name__})")


def _array(code: str, data: bytes, start: int, count: int) -> array[Any]:
    found = array(code)
    found.frombytes(data[start : start + count * found.itemsize])
    if _SWAP:  # pragma: no cover - big-endian hosts
        found.byteswap()
    return found


def _raw(found: array[Any]) -> bytes:
    if _SWAP:  # pragma: no cover - big-endian hosts
        found = array(found.typecode, found)
        found.byteswap()
    return found.tobytes()


def _header(key: str, data: bytes, start: int, magic: bytes, per_entry: int, what: str) -> int:
    """The entry count of the packed bucket at ``start`` in ``data`` (tag and format ``magic``),
    its size checked against it."""
    size = len(data) - start
    if size < _HEAD or data[start : start + 4] != magic:
        raise CorruptValueError(f"key {key!r} does not hold a packed {what} bucket (bad header)")
    count = int.from_bytes(data[start + 4 : start + _HEAD], "little")
    if _HEAD + count * per_entry > size:
        raise CorruptValueError(
            f"key {key!r} does not hold a packed {what} bucket ({count} entries do not fit in "
            f"{size} bytes)"
        )
    return count


def _check_ends(key: str, ends: array[int], size: int, what: str) -> None:
    if (ends[-1] if ends else 0) != size:
        raise CorruptValueError(
            f"key {key!r} does not hold a packed {what} bucket (its entries do not end where it does)"
        )


class PackedPeers:
    """The rows of a packed peer bucket, found by id without decoding the others: the bucket is
    ``data`` from ``start`` to its end (a stored value that wraps it need not be copied)."""

    __slots__ = ("_base", "_data", "_ends", "_ids", "key", "seen")

    def __init__(self, key: str, data: bytes, start: int = 0) -> None:
        tagged = len(data) > start + 3
        id_code, end_code = _FORMATS.get(data[start + 3], ("q", "I")) if tagged else ("q", "I")
        id_size, end_size = _SIZES[id_code], _SIZES[end_code]
        count = _header(
            key, data, start, PEERS_TAG + _FORMAT_OF[id_code, end_code], id_size + end_size, "peer"
        )
        self.key = key
        self.seen: dict[int, Any] = {}  # rows decoded so far, by id: kept by whoever decodes them
        self._data = data
        self._ids = _array(id_code, data, start + _HEAD, count)
        self._ends = _array(end_code, data, start + _HEAD + id_size * count, count)
        self._base = start + _HEAD + (id_size + end_size) * count
        _check_ends(key, self._ends, len(data) - self._base, "peer")

    def __len__(self) -> int:
        return len(self._ids)

    def _at(self, i: int) -> bytes:
        start = self._ends[i - 1] if i else 0
        return self._data[self._base + start : self._base + self._ends[i]]

    def find(self, peer_id: int) -> bytes | None:
        """The packed row of ``peer_id`` (without its id), or None if the bucket has none."""
        ids = self._ids
        i = bisect_left(ids, peer_id)
        if i < len(ids) and ids[i] == peer_id:  # self._at(i), inline: a lookup's own path
            ends, base = self._ends, self._base
            return self._data[base + ends[i - 1] if i else base : base + ends[i]]
        return None

    def items(self) -> Iterator[tuple[int, bytes]]:
        """Every (id, packed row without its id), by ascending id."""
        for i, peer_id in enumerate(self._ids):
            yield peer_id, self._at(i)

    def decoded(self) -> list[tuple[int, Any]]:
        """Every (id, row without its id as msgpack decodes it, arrays as tuples), by ascending
        id, in one pass. Raises ``CorruptValueError`` naming the key if the rows are not that
        many msgpack values."""
        unpacker = msgpack.Unpacker(use_list=False, max_buffer_size=max(len(self._data), 1024))
        unpacker.feed(self._data[self._base :])
        try:
            return list(zip(self._ids, unpacker, strict=True))  # ValueError if not as many
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise not_a_peer_bucket(self.key, exc) from None


class PackedIndex:
    """The peer ids of a packed index bucket, found by username or phone without decoding the
    other entries: the bucket is ``data`` from ``start`` to its end."""

    __slots__ = ("_base", "_data", "_ids", "key")

    def __init__(self, key: str, data: bytes, start: int = 0) -> None:
        count = _header(key, data, start, INDEX_TAG + b"\x01", 8, "username or phone index")
        self.key = key
        self._data = data
        self._ids = _array("q", data, start + _HEAD, count)
        self._base = base = start + _HEAD + 8 * count
        if data[base : base + 1] != b"\0" or data[-1:] != b"\0" or data.count(b"\0", base) != count + 1:
            raise CorruptValueError(
                f"key {key!r} does not hold a packed username or phone index bucket "
                "(its texts are not as many as its ids)"
            )

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, text: str) -> int | None:
        """The peer id ``text`` points to, or None."""
        if "\0" in text:
            return None  # never indexed
        data = self._data
        at = data.find(b"\0" + text.encode("utf-8", "surrogatepass") + b"\0", self._base)
        if at < 0:
            return None
        return int(self._ids[data.count(b"\0", self._base, at)])

    def to_dict(self) -> dict[str, int]:
        """Every entry: username or phone -> peer id."""
        if not self._ids:
            return {}
        try:
            texts = self._data[self._base + 1 : -1].decode("utf-8", "surrogatepass").split("\0")
        except UnicodeDecodeError:
            raise CorruptValueError(
                f"key {self.key!r} does not hold a packed username or phone index bucket "
                "(a text is not UTF-8)"
            ) from None
        return dict(zip(texts, self._ids, strict=True))


def pack_peers(key: str, rows: Mapping[int, Any], *, has_packed: bool = True) -> bytes:
    """``rows`` (id -> a row, or a packed row as ``PackedPeers.find`` gives it; ``has_packed``
    False: none is) as a packed peer bucket. Raises ``CorruptValueError`` naming ``key`` if an id
    is not a 64-bit int or a row cannot be packed."""
    try:
        order = sorted(rows)
        ids = array("q", order)
        values = [rows[peer_id] for peer_id in order]
        if has_packed and bytes in set(map(type, values)):
            parts = [row if type(row) is bytes else _pack_row(row[1:]) for row in values]
        else:
            parts = [_pack_row(row[1:]) for row in values]
    except (TypeError, OverflowError, ValueError):  # the row is not shown: it may hold secrets
        raise CorruptValueError(
            f"key {key!r}: a peer bucket entry has an id that is not a 64-bit int or a row "
            "that cannot be packed"
        ) from None
    ends = array("I", accumulate(map(len, parts)))
    if not ends or ends[-1] <= 0xFFFF:
        ends = array("H", ends)
    if not order or (-(2**31) <= order[0] and order[-1] < 2**31):
        ids = array("i", order)
    if _SWAP:  # pragma: no cover - big-endian hosts
        ids.byteswap()
        ends.byteswap()
    return b"".join((
        PEERS_TAG, _FORMAT_OF[ids.typecode, ends.typecode], _COUNT(len(order)), ids.tobytes(), ends.tobytes(), *parts
    ))


def pack_index(entries: Mapping[str, int]) -> bytes:
    """``entries`` (username or phone -> peer id) as a packed index bucket; a text holding a NUL
    character (which no Telegram username or phone number has) is left out."""
    texts = "\0".join(entries)
    if entries and texts.count("\0") != len(entries) - 1:
        entries = {text: peer_id for text, peer_id in entries.items() if "\0" not in text}
        texts = "\0".join(entries)
    return b"".join((
        INDEX_TAG,
        b"\x01",
        _COUNT(len(entries)),
        _raw(array("q", list(entries.values()))),
        f"\0{texts}\0".encode("utf-8", "surrogatepass") if entries else b"\0",
    ))
