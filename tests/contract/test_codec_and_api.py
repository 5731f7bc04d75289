"""The codec's canonical form and the package's public surface."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

import statekit
from statekit import MsgpackCodec, SerializationError
from statekit.codec import encode_stored

_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text() | st.binary()
_values = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5) | st.binary(max_size=3), inner, max_size=4),
    max_leaves=20,
)


@given(_values)
def test_codec_round_trips_any_supported_value(value: object) -> None:
    codec = MsgpackCodec()
    assert codec.decode(codec.encode(value)) == value


@given(st.dictionaries(st.text(max_size=4) | st.integers(-(2**63), 2**63 - 1), st.integers(-(2**63), 2**63 - 1), max_size=6))
def test_equal_dicts_encode_to_equal_bytes(mapping: dict[object, int]) -> None:
    codec = MsgpackCodec()
    reordered = dict(reversed(list(mapping.items())))
    assert codec.encode(mapping) == codec.encode(reordered)


@given(_values.filter(lambda v: type(v) is not int and v is not None))
def test_non_integer_values_start_at_or_above_0x80(value: object) -> None:
    data = encode_stored(MsgpackCodec(), "k", value)
    assert isinstance(data, bytes) and data[0] >= 0x80


def test_codec_rejects_unsupported_types_by_name() -> None:
    with pytest.raises(SerializationError, match="set"):
        MsgpackCodec().encode({"a": {1, 2}})
    assert msgpack.unpackb(MsgpackCodec().encode({"b": 1, "a": 2})) == {"a": 2, "b": 1}


def test_public_names_are_sorted_and_importable() -> None:
    assert statekit.__all__ == sorted(statekit.__all__)
    for name in statekit.__all__:
        assert getattr(statekit, name) is not None


def test_subclasses_of_storable_types_are_stored_as_the_builtin() -> None:
    import enum
    from collections import OrderedDict, namedtuple

    class Color(enum.IntEnum):
        RED = 1

    class Step(str, enum.Enum):
        NAME = "name"

    class Text(str):
        pass

    Point = namedtuple("Point", "x y")
    codec = MsgpackCodec()
    value = {"c": Color.RED, "s": Step.NAME, "t": Text("hi"), "o": OrderedDict(b=1, a=2), "p": Point(1, 2)}
    decoded = codec.decode(codec.encode(value))
    assert decoded == {"c": 1, "s": "name", "t": "hi", "o": {"a": 2, "b": 1}, "p": [1, 2]}
    assert type(decoded["t"]) is str and type(decoded["c"]) is int
    assert encode_stored(codec, "k", Color.RED) == 1
    assert codec.decode(codec.encode(Text("top"))) == "top"
