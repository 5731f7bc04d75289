"""Packed peer and index buckets (``statekit.session._packed``): what is packed reads back, a
lookup finds exactly its entry, and malformed bytes are refused by key without being shown."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statekit.errors import CorruptValueError
from statekit.session._buckets import (
    BucketCache,
    PeerBucket,
    checked_row,
    decode_index_bucket,
    decode_peer_bucket,
    index_peer_bucket,
    index_view,
    pack_bucket,
    packed_bucket,
    peer_view,
    rows_of,
    stored_index_view,
    stored_peer_view,
    thawed,
)
from statekit.session._packed import (
    INDEX_TAG,
    PEERS_TAG,
    PackedIndex,
    PackedPeers,
    bin_payload,
    pack_index,
    pack_peers,
)
from statekit.session._peers import PeerRow

KEY = "session:{bot}:peers:7"
SECRET_HASH = 8_765_432_101_234_567


def rows(n: int, seed: int = 1, bits: int = 64) -> dict[int, PeerRow]:
    draw = random.Random(seed)
    picks = list(dict.fromkeys(draw.randrange(-(2 ** (bits - 1)), 2 ** (bits - 1)) for _ in range(n)))
    return {
        i: (i, SECRET_HASH + k, "user", (f"u{k}",) if k % 3 else (), "15550001" if k % 5 == 0 else None,
            1_700_000_000 + k, f"Name {k}" if k % 2 else None)
        for k, i in enumerate(picks)
    }


@pytest.mark.parametrize("bits", [64, 32])
@pytest.mark.parametrize("n", [0, 1, 2, 300])
def test_a_packed_peer_bucket_finds_every_row_and_nothing_else(n: int, bits: int) -> None:
    given = rows(n, bits=bits)
    packed = pack_peers(KEY, given)
    assert packed[3] in ((1, 2) if bits == 64 and n else (3, 4))  # ids in 32 bits when they fit
    view = PackedPeers(KEY, packed)
    assert len(view) == n
    for peer_id, row in given.items():
        assert checked_row(view, KEY, peer_id) == row
        assert checked_row(view, KEY, peer_id) == row  # the decoded row is kept
    for absent in (0, -(2**63), 2**63 - 1, *(i + 1 for i in given)):
        if absent not in given:
            assert view.find(absent) is None
            assert checked_row(view, KEY, absent) is None
    assert decode_peer_bucket(KEY, pack_peers(KEY, given)) == given
    assert [peer_id for peer_id, _ in view.items()] == sorted(given)


@pytest.mark.parametrize("bits", [64, 32])
@pytest.mark.parametrize("n", [0, 1, 300, 2000])  # bin 8, 16 and 32 around the bucket
def test_a_bucket_in_its_stored_form_is_read_where_it_lies(n: int, bits: int) -> None:
    given = rows(n, bits=bits)
    packed = pack_peers(KEY, given)
    stored = pack_bucket(packed)  # as a msgpack storage keeps it: a bin wrapping the bucket
    start = bin_payload(stored)
    assert start in (2, 3, 5) and stored[start:] == packed
    view = stored_peer_view(KEY, stored)
    assert isinstance(view, PackedPeers) and len(view) == n
    assert view.decoded() == PackedPeers(KEY, packed).decoded()
    for peer_id, row in given.items():
        assert checked_row(view, KEY, peer_id) == row
    assert all(view.find(i + 1) is None for i in given if i + 1 not in given)
    assert packed_bucket(KEY, view, peers=True) == packed  # written again as it was
    names = {f"user{i}": i for i in range(n)}
    index = stored_index_view("k", pack_bucket(pack_index(names)))
    assert isinstance(index, PackedIndex) and index.to_dict() == names
    assert all(index.get(text) == peer_id for text, peer_id in names.items())


def test_a_stored_form_that_wraps_no_packed_bucket_reads_as_its_value() -> None:
    given = rows(3)
    older = stored_peer_view(KEY, msgpack.packb([list(row) for row in given.values()]))  # statekit 0.2
    assert isinstance(older, PeerBucket)
    assert {peer_id: checked_row(older, KEY, peer_id) for peer_id in older} == given
    assert stored_peer_view(KEY, None) == {}
    assert stored_index_view("k", msgpack.packb({"ann": 1})) == {"ann": 1}
    assert stored_index_view("k", None) == {}
    stored = pack_bucket(pack_peers(KEY, rows(3)))
    for bad in (stored[:-1], stored + b"\x00", b"\xc1", 7):  # cut, longer, not msgpack, an int
        if type(bad) is bytes:
            assert bin_payload(bad) == -1  # no whole bin: not viewed in place
        with pytest.raises(CorruptValueError, match="peers:7") as caught:
            stored_peer_view(KEY, bad)
        assert str(SECRET_HASH) not in str(caught.value)
    assert bin_payload(b"") == -1
    assert bin_payload(msgpack.packb("text")) == -1


@pytest.mark.parametrize(("n", "name_size", "ends"), [(20, 10, 2), (400, 200, 4)])
def test_a_bucket_takes_about_the_bytes_of_its_msgpack_rows(n: int, name_size: int, ends: int) -> None:
    """Row ends take 2 bytes while the rows fit in 64 KiB, 4 beyond; the ids (8 bytes) stand in
    for the ids the rows no longer hold (9 bytes for Telegram's ids), so a packed bucket is no
    larger than the msgpack array of its rows plus its ends and a header."""
    given = {
        -1_000_000_000_000 - k: (-1_000_000_000_000 - k, SECRET_HASH + k, "supergroup", (f"chan{k}",),
                                 None, 1_700_000_000, "N" * name_size)
        for k in range(n)
    }
    packed = pack_peers(KEY, given)
    assert packed[3] == (2 if ends == 2 else 1)
    assert len(packed) <= len(msgpack.packb(list(given.values()))) + ends * n + 8
    assert decode_peer_bucket(KEY, packed) == given


def test_a_thawed_bucket_packs_its_unchanged_rows_as_they_were() -> None:
    given = rows(50)
    packed = pack_peers(KEY, given)
    view = peer_view(KEY, packed)
    first = next(iter(given))
    assert checked_row(view, KEY, first) == given[first]  # decoded before the write
    bucket = thawed(view)
    assert isinstance(bucket, PeerBucket) and bucket.unchecked == set(given) - {first}
    assert pack_peers(KEY, bucket) == packed  # decoded or not, each row packs the same
    bucket[42] = (42, 1, "bot", ("new",), None, 5, None)
    assert decode_peer_bucket(KEY, packed_bucket(KEY, bucket, peers=True)) == {**given, 42: bucket[42]}
    assert index_peer_bucket(KEY, packed).keys() == given.keys()


def test_rows_of_either_form_gives_every_row_checked_and_taken_at_once() -> None:
    given = rows(40)
    packed = pack_peers(KEY, given)
    view = peer_view(KEY, packed)
    first = next(iter(given))
    looked_up = checked_row(view, KEY, first)
    from_view = rows_of(KEY, view)
    assert sorted(from_view) == sorted(given.values())
    assert any(row is looked_up for row in from_view)  # a row decoded already: the same one
    bucket = index_peer_bucket(KEY, packed)  # rows left packed until checked
    from_bucket = rows_of(KEY, bucket)
    assert sorted(from_bucket) == sorted(given.values())
    assert all(type(row) is tuple for row in from_bucket) and not bucket.unchecked
    bucket[7] = (7, 1, "bot", (), None, 5, None)  # a change after: the list stays as taken
    assert len(from_bucket) == 40
    bad = PeerBucket({5: (5, "not a hash", "user", (), None, 1, None)})
    with pytest.raises(CorruptValueError, match=KEY) as caught:
        rows_of(KEY, bad)
    assert "not a hash" not in str(caught.value)


def test_a_peek_at_the_cache_leaves_what_is_evicted_first_as_it_was() -> None:
    for touch in ("peek", "get"):
        cache = BucketCache(4)
        cache.put("a", {1: 1, 2: 2})
        cache.put("b", {3: 3, 4: 4})
        assert getattr(cache, touch)("a") == {1: 1, 2: 2} and cache.peek("zz") is None
        cache.put("c", {5: 5})  # 5 entries: the least recently used bucket goes
        assert ("a" in cache, "b" in cache) == ((False, True) if touch == "peek" else (True, False))


def test_decoded_rows_share_one_str_per_peer_type() -> None:
    """Rows decoded from a packed bucket (a whole bucket, or one looked up) hold the peer type as
    one shared str per type, not a copy each: 53 bytes less a row in a cache of 100,000."""
    given = {i: (i, SECRET_HASH, ("user", "bot", "channel")[i % 3], (), None, 1, None) for i in range(1, 31)}
    packed = pack_peers(KEY, given)
    decoded = decode_peer_bucket(KEY, packed)
    assert decoded == given
    view = peer_view(KEY, packed)
    looked_up = [checked_row(view, KEY, i) for i in (1, 4)]
    kinds = [decoded[1][2], decoded[4][2], *(row[2] for row in looked_up if row is not None)]
    assert len(kinds) == 4 and kinds[0] == "bot" and all(kind is kinds[0] for kind in kinds), kinds
    assert decoded[2][2] is decoded[5][2] == "channel" and decoded[3][2] is decoded[6][2] == "user"
    rare = decode_peer_bucket(KEY, pack_peers(KEY, {1: (1, 2, "forum", (), None, 1, None)}))
    assert rare[1][2] == "forum"  # any other type decodes as it is


@pytest.mark.parametrize(
    "entries",
    [
        {},
        {"ann": 1},
        {"ann": 1, "bob": -5, "annie": 2**63 - 1, "nn": -(2**63)},
        {"\u00e9l\u00e8ve": 3, "\u6771\u4eac": 4, "emoji\U0001f600": 5, "bad\udc80": 6, "": 7},
        {f"user{i}": i for i in range(500)},
    ],
)
def test_a_packed_index_resolves_exactly_its_entries(entries: dict[str, int]) -> None:
    view = PackedIndex("k", pack_index(entries))
    assert len(view) == len(entries)
    for text, peer_id in entries.items():
        assert view.get(text) == peer_id
    for text in entries:  # a part or an extension of an entry is not that entry
        for other in (text[:-1], text + "x", "x" + text, text[1:]):
            if other not in entries:
                assert view.get(other) is None
    assert view.to_dict() == entries
    assert decode_index_bucket("k", pack_index(entries)) == entries
    assert index_view("k", pack_index(entries)).get("absent") is None


def test_a_text_holding_nul_is_not_indexed() -> None:
    view = PackedIndex("k", pack_index({"a\0b": 1, "a": 2, "b": 3}))
    assert view.to_dict() == {"a": 2, "b": 3}
    assert view.get("a\0b") is None and view.get("a") == 2 and view.get("b") == 3


def test_older_bucket_forms_still_read() -> None:
    row = [5, SECRET_HASH, "user", ["ann"], None, 1, None]
    assert decode_peer_bucket(KEY, [row]) == {5: (5, SECRET_HASH, "user", ("ann",), None, 1, None)}
    assert checked_row(peer_view(KEY, [row]), KEY, 5) == (5, SECRET_HASH, "user", ("ann",), None, 1, None)
    assert checked_row(peer_view(KEY, msgpack.packb([row])), KEY, 5) is not None  # msgpack in bytes
    assert index_view("k", {"ann": 5}).get("ann") == 5


def _peer_bucket_bad(data: bytes) -> None:
    with pytest.raises(CorruptValueError) as caught:
        view = peer_view(KEY, data)
        for peer_id, _ in view.items():  # type: ignore[union-attr]
            checked_row(view, KEY, peer_id)
    message = str(caught.value)
    assert KEY in message and str(SECRET_HASH) not in message and "\\x" not in message
    with pytest.raises(CorruptValueError, match="peers:7"):  # the whole bucket at once
        decode_peer_bucket(KEY, data)


def test_malformed_packed_peer_buckets_are_refused_by_key_without_showing_them() -> None:
    good = pack_peers(KEY, rows(3))
    _peer_bucket_bad(good[:4])  # no count
    _peer_bucket_bad(good[:4] + (10**6).to_bytes(4, "little") + good[8:])  # more than fit
    _peer_bucket_bad(PEERS_TAG + b"\x09" + good[4:])  # a format it does not know
    _peer_bucket_bad(PEERS_TAG + b"\x01" + good[4:])  # 16-bit row ends read as 32-bit ones
    _peer_bucket_bad(good[:-1])  # cut short: the rows do not end where it does
    _peer_bucket_bad(good + b"\x00")
    one = pack_peers(KEY, {1: (1, SECRET_HASH, "user", (), None, 1, None)})
    _peer_bucket_bad(one[:-3] + b"\xc1\xc1\xc1")  # not msgpack
    _peer_bucket_bad(one.replace(b"user", b"\xc0\xc0\xc0\xc0"))  # not a row
    with pytest.raises(CorruptValueError, match="peers:7"):
        pack_peers(KEY, {"1": (1, 2, "user", (), None, 1, None)})  # type: ignore[dict-item]


def test_an_unpacked_index_bucket_with_an_id_beyond_64_bits_is_refused_by_key() -> None:
    with pytest.raises(CorruptValueError, match="names:3"):
        decode_index_bucket("session:{bot}:names:3", {"ann": 2**64 - 1})
    assert decode_index_bucket("k", {"ann": -(2**63), "bob": 2**63 - 1}) == {"ann": -(2**63), "bob": 2**63 - 1}


def test_malformed_packed_index_buckets_are_refused_by_key() -> None:
    good = pack_index({"ann": 1, "bob": 2})
    for bad in (
        INDEX_TAG + b"\x01" + (2).to_bytes(4, "little"),  # ids missing
        INDEX_TAG + b"\x01" + (10**8).to_bytes(4, "little") + good[8:],
        INDEX_TAG + b"\x02" + good[4:],  # a format it does not know
        good[:-1],  # a text without its closing NUL
        good + b"x\0",  # more texts than ids
        good.replace(b"ann", b"\xff\xfe\xfd"),  # not UTF-8
    ):
        with pytest.raises(CorruptValueError, match="names:3"):
            decode_index_bucket("session:{bot}:names:3", bad)


_ROW = st.tuples(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from(["user", "bot", "group", "channel", "supergroup"]),
    st.lists(st.text(min_size=1, max_size=12), max_size=3).map(tuple),
    st.none() | st.text("0123456789", min_size=1, max_size=15),
    st.none() | st.integers(0, 2**40),
    st.none() | st.text(min_size=1, max_size=20),
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.integers(-(2**63), 2**63 - 1), _ROW, max_size=40),
    st.dictionaries(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1), max_size=40),
)
def test_any_rows_and_names_round_trip(given_rows: dict[int, Any], names: dict[str, int]) -> None:
    rows_by_id = {peer_id: (peer_id, *row) for peer_id, row in given_rows.items()}
    assert decode_peer_bucket(KEY, pack_peers(KEY, rows_by_id)) == rows_by_id
    kept = {text: peer_id for text, peer_id in names.items() if "\0" not in text}
    view = PackedIndex("k", pack_index(names))
    assert view.to_dict() == kept
    assert all(view.get(text) == peer_id for text, peer_id in kept.items())


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_packed_buckets_raise_only_corrupt_value_error(data: st.DataObject) -> None:
    """Whatever bytes a packed bucket holds (a valid one with bytes changed, cut or added), its
    readers answer or raise ``CorruptValueError``, never anything else."""
    good = data.draw(st.sampled_from([pack_peers(KEY, rows(12)), pack_peers(KEY, rows(12, bits=32)),
                                      pack_index({f"user{i}": i for i in range(12)})]))
    damaged = bytearray(good)
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, 8))
    blob = bytes(damaged[: len(damaged) - cut]) + data.draw(st.binary(max_size=8))
    for read in (
        lambda: decode_peer_bucket(KEY, blob),
        lambda: [checked_row(view, KEY, i) for view in [peer_view(KEY, blob)] for i in range(-3, 3)],
        lambda: [checked_row(view, KEY, i) for view in [peer_view(KEY, blob)]
                 if isinstance(view, PackedPeers) for i, _ in view.items()],
        lambda: decode_index_bucket("k", blob),
        lambda: index_view("k", blob).get("user3"),
        # the bucket in its stored form, the bin around it whole, then the stored form damaged
        lambda: [checked_row(view, KEY, i) for view in [stored_peer_view(KEY, pack_bucket(blob))]
                 if isinstance(view, PackedPeers) for i, _ in view.items()],
        lambda: stored_index_view("k", pack_bucket(blob)).get("user3"),
        lambda: [checked_row(view, KEY, i) for view in [stored_peer_view(KEY, blob)]
                 if isinstance(view, PackedPeers) for i, _ in view.items()],
        lambda: stored_index_view("k", blob).get("user3"),
    ):
        try:
            read()
        except CorruptValueError:
            pass
