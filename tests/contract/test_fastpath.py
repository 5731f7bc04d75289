"""statekit's internal fast paths (``statekit.storage._fastpath.FastPathStorage``), on every
in-tree backend, and the FSM / session callers' fallback to the public contract without them."""

from __future__ import annotations

from typing import Any

import pytest

from statekit import BaseStorage
from statekit.errors import SerializationError
from statekit.storage._fastpath import FastPathStorage


@pytest.fixture
def storage(storage: BaseStorage) -> FastPathStorage:
    assert isinstance(storage, FastPathStorage), "every in-tree backend offers the fast paths"
    return storage


class TestFastPaths:
    async def test_set_many_encoded_stores_codec_output(self, storage: FastPathStorage) -> None:
        values = {"row": [7, -1, "user", ["a"], None, 3], "map": {"b": 1, "a": [True]}}
        encoded = [(k, storage.codec.encode(v)) for k, v in values.items()]
        await storage.set_many_encoded(encoded, ttl=None)
        assert await storage.get_many(list(values)) == values
        assert await storage.get_state("row") == values["row"]
        await storage.set_many_encoded([("n", 41)])  # a native integer is a stored form too
        assert await storage.increment("n") == 42
        await storage.set_many_encoded([])

    async def test_set_many_encoded_of_a_key_given_twice_stores_the_last(self, storage: FastPathStorage) -> None:
        first, last = storage.codec.encode("first"), storage.codec.encode("last")
        await storage.set_many_encoded([("k", first), ("other", first), ("k", last)], ttl=None)
        assert await storage.get_many(["k", "other"]) == {"k": "last", "other": "first"}
        await storage.set_many_encoded([("k", last), ("k", first)], ttl=60)  # over stored rows too
        assert await storage.get_state("k") == "first"
        assert await storage.get_ttl("k") is not None

    @pytest.mark.parametrize("items", ["ab", {"k": b"\x81"}, [("k",)], [["k", b"\x81"]], [("k", b"\x81", 1)]])
    async def test_set_many_encoded_takes_only_key_value_pairs(
        self, storage: FastPathStorage, items: Any
    ) -> None:
        with pytest.raises(TypeError, match="pairs") as caught:
            await storage.set_many_encoded(items)
        assert await storage.list_keys() == []
        assert "\\x81" not in str(caught.value)  # a value is never shown

    async def test_a_malformed_pair_names_its_shape_never_its_value(self, storage: FastPathStorage) -> None:
        # a session record's stored form holds its auth key
        secret = b"\x81" + bytes(range(1, 40))
        for item in (["record", secret], ("record", secret, None), (secret,)):
            with pytest.raises(TypeError, match=r"got (list of 2|tuple of 3|tuple of 1) items") as caught:
                await storage.set_many_encoded([item])
            assert repr(secret)[2:12] not in str(caught.value)
            assert "record" not in str(caught.value)
        assert await storage.list_keys() == []

    async def test_get_range_stored_gives_what_get_many_stored_gives(
        self, storage: FastPathStorage, clock: Any
    ) -> None:
        # keys in string order, others stored in between and around them (read for nothing by
        # a backend that scans the range: never given), one expiring, one never stored
        wanted = sorted(f"b:{n}" for n in range(40))
        await storage.set_many({key: [key, 1] for key in wanted[:-1] if key != "b:3"}, ttl=None)
        await storage.set_many({"b:10x": "between", "a": "before", "c": "after", "b:": "edge"}, ttl=None)
        await storage.set_state("b:2", "expiring", ttl=1)
        await storage.increment("b:3")  # a counter: a native int where the backend keeps one
        await clock.advance(1.5)
        found = await storage.get_range_stored(wanted)
        assert found == await storage.get_many_stored(wanted)
        assert list(found) == [key for key in wanted if key not in ("b:2", wanted[-1])]  # their order
        counter = found["b:3"]
        assert (storage.codec.decode(counter) if type(counter) is bytes else counter) == 1
        assert storage.codec.decode(found["b:11"]) == ["b:11", 1]  # type: ignore[arg-type]
        assert await storage.get_range_stored(wanted[5:7]) == await storage.get_many_stored(wanted[5:7])
        assert await storage.get_range_stored([]) == {}
        with pytest.raises(ValueError, match="key"):
            await storage.get_range_stored([*wanted, ""])

    async def test_get_range_stored_orders_keys_as_python_does_and_keeps_to_its_namespace(
        self, storage: FastPathStorage, make_storage: Any
    ) -> None:
        # the range runs from min() to max() of the keys: a backend comparing keys in another
        # order than Python's code points (bytes of another encoding, a locale's collation)
        # would miss the keys past either end; beyond ASCII, capitals, a symbol, the top of the
        # BMP and a character beyond it (UTF-16 would put it before U+FFFF)
        wanted = sorted(["b:A", "b:a", "b:z", "b:é", "b:ß", "b:€", "b:\uffff", "b:\U0001f600"]
                        + [f"b:{n}" for n in range(16)])
        await storage.set_many({key: key for key in wanted}, ttl=None)
        neighbour = make_storage(namespace=f"{storage.namespace}x")  # the same file or server
        await neighbour.start()
        try:
            await neighbour.set_many({key: "other namespace" for key in [*wanted, "b:m"]}, ttl=None)
            found = await storage.get_range_stored(wanted)
            assert list(found) == wanted
            assert {key: storage.codec.decode(value) for key, value in found.items()} == {  # type: ignore[arg-type]
                key: key for key in wanted
            }
            assert await neighbour.get_range_stored(["b:m"]) != {}  # its own keys are its own
        finally:
            await neighbour.clear_namespace()
            await neighbour.stop()

    async def test_attachment_is_made_once_per_storage(self, storage: FastPathStorage) -> None:
        made: list[BaseStorage] = []

        def factory(owner: BaseStorage) -> object:
            made.append(owner)
            return object()

        first = storage.attachment("test.helper", factory)
        assert storage.attachment("test.helper", factory) is first
        assert made == [storage]

    @pytest.mark.parametrize("value", [b"", b"\x01plain", "text", 2**63, 1.5, b"\x81" * (1024 * 1024 + 1)])
    async def test_set_many_encoded_refuses_what_the_codec_did_not_produce(
        self, storage: FastPathStorage, value: Any
    ) -> None:
        good = storage.codec.encode({"ok": 1})
        with pytest.raises(SerializationError, match="'bad'"):
            await storage.set_many_encoded([("good", good), ("bad", value)])
        with pytest.raises(ValueError):
            await storage.set_many_encoded([("good", good), ("", good)])
        assert await storage.list_keys() == [], "nothing is written when one item is bad"

    async def test_cas_encoded_compares_and_writes_stored_forms(self, storage: FastPathStorage) -> None:
        first, second = {"state": "a", "data": {"n": 1}}, {"state": "b", "data": {}}
        enc = storage.codec.encode
        assert await storage.compare_and_set_encoded("k", enc(first), expected=None)
        assert not await storage.compare_and_set_encoded("k", enc(second), expected=None)
        assert not await storage.compare_and_set_encoded("k", enc(second), expected=enc(second))
        assert await storage.get_state("k") == first
        assert await storage.compare_and_set_encoded("k", enc(second), expected=enc(first))
        assert await storage.get_state("k") == second
        assert await storage.compare_and_set_encoded("n", 41, expected=None)
        assert await storage.increment("n") == 42
        assert await storage.compare_and_set_encoded("k", None, expected=enc(second))
        assert await storage.get_state("k") is None

    @pytest.mark.parametrize("stored", [b"", b"\x05", "text", 2**63, 1.5, b"\x81" * (1024 * 1024 + 1)])
    async def test_cas_encoded_refuses_what_is_not_a_stored_form(
        self, storage: FastPathStorage, stored: Any
    ) -> None:
        await storage.set_state("k", {"a": 1})
        with pytest.raises(SerializationError, match="'k'"):
            await storage.compare_and_set_encoded("k", stored, expected=storage.codec.encode({"a": 1}))
        with pytest.raises(SerializationError, match="expected"):
            await storage.compare_and_set_encoded("k", storage.codec.encode({"a": 2}), expected=stored)
        assert await storage.get_state("k") == {"a": 1}

