"""The storage conformance suite: every behaviour of SPEC section 1, written once.

Subclass ``StorageConformance`` in a test module and provide three fixtures:
``storage`` (a started storage), ``make_storage(**options)`` (a factory of more storages of the same
backend sharing the same server or file) and ``clock`` (an object whose ``await advance(seconds)``
moves the backend's time: a fake clock where the backend takes ``clock=``, a real sleep otherwise).
A new backend conforms by passing this suite.

One more fixture is optional: ``raw_access``, a ``RawAccess`` that reaches past the public
contract into the backend (to plant bytes the codec never wrote, and to read what is physically
stored). The suite's own ``raw_access`` gives ``None``; the tests that need it are then skipped
with a reason. Override it in your subclass (or a conftest) to run them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import pytest

from statekit.codec import INT64_MAX, INT64_MIN
from statekit.errors import (
    CorruptValueError,
    SerializationError,
    StorageClosedError,
    WrongTypeError,
)
from statekit.storage.base import MAX_TTL_SECONDS, BaseStorage

__all__ = [
    "AdvancingClock",
    "BAD_KEYS",
    "MakeStorage",
    "ROUND_TRIP_VALUES",
    "RawAccess",
    "StorageConformance",
    "UNENCODABLE",
]

MakeStorage = Callable[..., BaseStorage]

ROUND_TRIP_VALUES: list[Any] = [
    True,
    False,
    0,
    -1,
    INT64_MAX,
    INT64_MIN,
    1.5,
    -0.0,
    float("inf"),
    "",
    "héllo ✓",
    b"",
    b"\x00\xff\x80binary",
    [],
    [1, "two", 3.0, None, b"4"],
    {},
    {"a": 1, "b": [1, 2, {"c": None}]},
    {1: "int key", "s": "str key", b"k": "bytes key"},
    {"nested": {"deep": {"deeper": [[], {}, [1, [2, [3]]]]}}},
]

UNENCODABLE: list[Any] = [
    object(),
    {1, 2},
    frozenset(),
    {"a": object()},
    [1, 2, {3}],
    {1.5: "float key"},
    {(1, 2): "tuple key"},
    {True: "bool key"},
    2**63,
    INT64_MIN - 1,
    [2**64],
    bytearray(b"x"),
    complex(1, 2),
    "lone surrogate \ud800",
    {"\udc00": "surrogate key"},
]

BAD_KEYS: list[Any] = ["", None, 1, b"bytes", ["list"], "x" * 1025, "é" * 513, "lone\ud800"]

_T = TypeVar("_T")


async def _alongside(work: Awaitable[_T], step: Callable[[int], Awaitable[None]]) -> tuple[_T, int]:
    """Await ``work`` while a task repeats ``step(0)``, ``step(1)``, ... with a turn of the event
    loop after each; return what ``work`` returned and how many steps ran."""
    done = False

    async def repeat() -> int:
        i = 0
        while not done:
            await step(i)
            await asyncio.sleep(0)
            i += 1
        return i

    task = asyncio.create_task(repeat())
    try:
        result = await work
    finally:
        done = True
        rounds = await task
    return result, rounds


class AdvancingClock(Protocol):
    """What the ``clock`` fixture provides."""

    async def advance(self, seconds: float) -> None: ...


class RawAccess(Protocol):
    """What the optional ``raw_access`` fixture provides: a way past the public contract."""

    async def plant(self, storage: BaseStorage, key: str, raw: bytes) -> None:
        """Store ``raw`` under ``key`` exactly as given (no codec, no expiry)."""
        ...

    async def read(self, storage: BaseStorage, key: str) -> bytes | int | None:
        """What is physically stored under ``key``: the bytes (or the native integer, for a
        backend that keeps counters natively), ``None`` if nothing."""
        ...


def _need(raw_access: RawAccess | None) -> RawAccess:
    if raw_access is None:
        pytest.skip(
            "needs the raw_access fixture (a RawAccess of this backend), which this test module "
            "does not provide"
        )
    return raw_access


def _ids(values: list[Any]) -> list[str]:
    return [f"{type(v).__name__}-{i}" for i, v in enumerate(values)]


class StorageConformance:
    """SPEC section 1, as tests. See the module docstring for the fixtures it needs."""

    @pytest.fixture
    def raw_access(self) -> RawAccess | None:
        """No way past the contract by default: override to run the tests that need one."""
        return None

    # ------------------------------------------------------------------ values

    @pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=_ids(ROUND_TRIP_VALUES))
    async def test_value_round_trips_with_its_type(self, storage: BaseStorage, value: Any) -> None:
        await storage.set_state("k", value)
        got = await storage.get_state("k")
        assert got == value
        assert type(got) is type(value)

    async def test_tuple_reads_back_as_list(self, storage: BaseStorage) -> None:
        await storage.set_state("k", (1, (2, 3), {"t": (4,)}))
        assert await storage.get_state("k") == [1, [2, 3], {"t": [4]}]

    async def test_dict_round_trips_exactly_without_reshaping(self, storage: BaseStorage) -> None:
        value = {"z": 1, 10: [b"\x01"], b"raw": {"inner": 2, 3: None}, "a": {"x": True}}
        await storage.set_state("k", value)
        got = await storage.get_state("k")
        assert got == value
        assert set(map(type, got)) == {str, int, bytes}
        assert type(got[10][0]) is bytes and type(got[b"raw"][3]) is type(None)

    async def test_absent_key_reads_none(self, storage: BaseStorage) -> None:
        assert await storage.get_state("missing") is None

    async def test_read_value_is_a_fresh_object(self, storage: BaseStorage) -> None:
        await storage.set_state("k", {"list": [1, 2], "d": {"x": 1}})
        first = await storage.get_state("k")
        first["list"].append(3)
        first["d"]["x"] = 99
        first["new"] = True
        assert await storage.get_state("k") == {"list": [1, 2], "d": {"x": 1}}

    async def test_written_value_is_copied(self, storage: BaseStorage) -> None:
        value = {"list": [1]}
        await storage.set_state("k", value)
        value["list"].append(2)
        assert await storage.get_state("k") == {"list": [1]}

    async def test_overwrite_replaces_value_and_type(self, storage: BaseStorage) -> None:
        await storage.set_state("k", 5)
        await storage.set_state("k", "five")
        assert await storage.get_state("k") == "five"
        await storage.set_state("k", 6)
        assert await storage.get_state("k") == 6

    async def test_set_none_is_rejected(self, storage: BaseStorage) -> None:
        await storage.set_state("k", 1)
        with pytest.raises(ValueError, match="delete_state"):
            await storage.set_state("k", None)
        assert await storage.get_state("k") == 1

    @pytest.mark.parametrize("value", UNENCODABLE, ids=_ids(UNENCODABLE))
    async def test_unencodable_value_fails_that_call_only(self, storage: BaseStorage, value: Any) -> None:
        await storage.set_state("k", "before")
        with pytest.raises(SerializationError, match="'k'") as info:
            await storage.set_state("k", value)
        assert "'k'" in str(info.value)
        with pytest.raises(SerializationError):
            await storage.compare_and_set("k", value, expected="before")
        with pytest.raises(SerializationError):
            await storage.set_many({"k": "other", "k2": value})
        assert await storage.get_state("k") == "before"
        assert await storage.get_state("k2") is None
        await storage.set_state("k", "after")
        assert await storage.get_state("k") == "after"

    async def test_serialization_error_names_the_type(self, storage: BaseStorage) -> None:
        class Custom:
            pass

        with pytest.raises(SerializationError, match="Custom"):
            await storage.set_state("user:1", {"x": [Custom()]})

    async def test_corrupt_bytes_raise_corrupt_value_error(
        self, storage: BaseStorage, raw_access: RawAccess | None
    ) -> None:
        raw = _need(raw_access)
        await raw.plant(storage, "bad", b"\xc1\xc1garbage")
        with pytest.raises(CorruptValueError, match="'bad'"):
            await storage.get_state("bad")
        with pytest.raises(CorruptValueError, match="'bad'"):
            await storage.get_many(["bad"])
        await raw.plant(storage, "bad2", b"12abc")
        with pytest.raises(CorruptValueError, match="'bad2'"):
            await storage.get_state("bad2")
        await storage.set_state("good", 1)
        assert await storage.get_state("good") == 1
        assert await storage.delete_state("bad")

    async def test_values_are_stored_as_codec_bytes(
        self, storage: BaseStorage, raw_access: RawAccess | None
    ) -> None:
        raw = _need(raw_access)
        value = {"b": [1, 2], "a": {"x": None}}
        await storage.set_state("k", value)
        assert await raw.read(storage, "k") == storage.codec.encode({"a": {"x": None}, "b": [1, 2]})
        await storage.set_state("n", 41)
        assert await raw.read(storage, "n") in (41, b"41"), "a counter is a native integer"
        await raw.plant(storage, "p", storage.codec.encode(["planted"]))
        assert await storage.get_state("p") == ["planted"]

    # ------------------------------------------------------------------ keys

    @pytest.mark.parametrize("key", BAD_KEYS, ids=[repr(k)[:12] for k in BAD_KEYS])
    async def test_bad_key_is_rejected_by_every_operation(self, storage: BaseStorage, key: Any) -> None:
        hashable = not isinstance(key, list)
        calls = [
            storage.get_state(key),
            storage.set_state(key, 1),
            storage.delete_state(key),
            storage.compare_and_set(key, 1, expected=None),
            storage.increment(key),
            storage.get_ttl(key),
            storage.expire(key, 1),
            storage.get_many([key]),
            storage.delete_many([key]),
        ]
        if hashable:
            calls.append(storage.set_many({key: 1}))
        for call in calls:
            with pytest.raises(ValueError, match="key"):
                await call
        assert await storage.list_keys() == []

    async def test_longest_key_is_accepted(self, storage: BaseStorage) -> None:
        ascii_key = "k" * 1024
        multibyte_key = "é" * 512
        await storage.set_state(ascii_key, 1)
        await storage.set_state(multibyte_key, 2)
        assert await storage.get_state(ascii_key) == 1
        assert await storage.get_state(multibyte_key) == 2

    async def test_keys_may_hold_any_characters(self, storage: BaseStorage) -> None:
        keys = ["a:b:c", "with space", "{tag}x", "*?[]\\", "ключ", "emoji 🤖", "%3A"]
        for i, key in enumerate(keys):
            await storage.set_state(key, i)
        for i, key in enumerate(keys):
            assert await storage.get_state(key) == i
        assert sorted(await storage.list_keys()) == sorted(keys)

    # ------------------------------------------------------------------ delete

    async def test_delete_reports_whether_a_live_key_was_removed(self, storage: BaseStorage) -> None:
        await storage.set_state("k", 1)
        assert await storage.delete_state("k") is True
        assert await storage.delete_state("k") is False
        assert await storage.get_state("k") is None

    # ------------------------------------------------------------------ compare-and-set

    async def test_cas_on_absent_key_with_expected_none_creates_it(self, storage: BaseStorage) -> None:
        assert await storage.compare_and_set("k", {"v": 1}, expected=None) is True
        assert await storage.get_state("k") == {"v": 1}
        assert await storage.compare_and_set("k", {"v": 2}, expected=None) is False
        assert await storage.get_state("k") == {"v": 1}

    async def test_cas_with_wrong_expected_changes_nothing(self, storage: BaseStorage) -> None:
        await storage.set_state("k", "a", ttl=100)
        assert await storage.compare_and_set("k", "b", expected="x") is False
        assert await storage.compare_and_set("k", "b", expected=None) is False
        assert await storage.get_state("k") == "a"
        ttl = await storage.get_ttl("k")
        assert ttl is not None and 90 < ttl <= 100

    async def test_cas_ignores_dict_key_order(self, storage: BaseStorage) -> None:
        await storage.set_state("k", {"a": 1, "b": {"y": 2, "x": 1}})
        assert await storage.compare_and_set("k", "new", expected={"b": {"x": 1, "y": 2}, "a": 1})
        assert await storage.get_state("k") == "new"

    @pytest.mark.parametrize(
        ("stored", "expected"),
        [(True, 1), (1, True), (1, 1.0), (1.0, 1), (0, False), ("1", 1), (b"a", "a"), ([1], (1, 2))],
    )
    async def test_cas_distinguishes_types(self, storage: BaseStorage, stored: Any, expected: Any) -> None:
        await storage.set_state("k", stored)
        assert await storage.compare_and_set("k", "new", expected=expected) is False
        assert await storage.get_state("k") == stored

    async def test_cas_with_tuple_expected_matches_list(self, storage: BaseStorage) -> None:
        await storage.set_state("k", [1, 2])
        assert await storage.compare_and_set("k", "new", expected=(1, 2)) is True

    async def test_cas_with_new_none_deletes(self, storage: BaseStorage) -> None:
        await storage.set_state("k", 5)
        assert await storage.compare_and_set("k", None, expected=5) is True
        assert await storage.get_state("k") is None
        assert await storage.compare_and_set("k", None, expected=None) is True
        assert await storage.get_state("k") is None

    async def test_cas_on_integer_counter(self, storage: BaseStorage) -> None:
        await storage.increment("n", 41)
        assert await storage.compare_and_set("n", 42, expected=41) is True
        assert await storage.increment("n") == 43

    async def test_cas_applies_ttl(self, storage: BaseStorage, clock: AdvancingClock) -> None:
        assert await storage.compare_and_set("k", 1, expected=None, ttl=0.3)
        ttl = await storage.get_ttl("k")
        assert ttl is not None and 0 < ttl <= 0.3
        await clock.advance(0.4)
        assert await storage.get_state("k") is None

    async def test_cas_keep_ttl_keeps_expiry(self, storage: BaseStorage) -> None:
        await storage.set_state("k", 1, ttl=50)
        assert await storage.compare_and_set("k", 2, expected=1, keep_ttl=True)
        ttl = await storage.get_ttl("k")
        assert ttl is not None and 40 < ttl <= 50
        assert await storage.compare_and_set("k", 3, expected=2)
        assert await storage.get_ttl("k") is None

    async def test_concurrent_cas_retry_loops_lose_nothing(self, storage: BaseStorage) -> None:
        async def add_one() -> None:
            while True:
                current = await storage.get_state("counter")
                new = {"n": (current or {"n": 0})["n"] + 1}
                if await storage.compare_and_set("counter", new, expected=current):
                    return

        await asyncio.gather(*(add_one() for _ in range(50)))
        assert await storage.get_state("counter") == {"n": 50}

    # ------------------------------------------------------------------ increment

    async def test_increment_starts_at_zero_and_adds(self, storage: BaseStorage) -> None:
        assert await storage.increment("n") == 1
        assert await storage.increment("n", 10) == 11
        assert await storage.increment("n", -20) == -9
        value = await storage.get_state("n")
        assert value == -9 and type(value) is int

    async def test_increment_of_set_integer(self, storage: BaseStorage) -> None:
        await storage.set_state("n", 100)
        assert await storage.increment("n", 5) == 105

    @pytest.mark.parametrize("value", ["12", 1.0, True, b"1", [1], {"n": 1}])
    async def test_increment_of_non_integer_raises_wrong_type(self, storage: BaseStorage, value: Any) -> None:
        await storage.set_state("n", value, ttl=100)
        with pytest.raises(WrongTypeError, match="'n'"):
            await storage.increment("n")
        assert await storage.get_state("n") == value
        assert type(await storage.get_state("n")) is type(value)

    async def test_increment_overflow_changes_nothing(self, storage: BaseStorage) -> None:
        await storage.set_state("n", INT64_MAX - 1)
        assert await storage.increment("n") == INT64_MAX
        with pytest.raises(OverflowError, match="'n'"):
            await storage.increment("n")
        assert await storage.get_state("n") == INT64_MAX
        await storage.set_state("m", INT64_MIN)
        with pytest.raises(OverflowError):
            await storage.increment("m", -1)
        assert await storage.get_state("m") == INT64_MIN

    @pytest.mark.parametrize("amount", [1.5, "1", True, None])
    async def test_increment_amount_must_be_int(self, storage: BaseStorage, amount: Any) -> None:
        with pytest.raises(TypeError):
            await storage.increment("n", amount)
        assert await storage.get_state("n") is None

    async def test_increment_amount_outside_int64(self, storage: BaseStorage) -> None:
        with pytest.raises(OverflowError):
            await storage.increment("n", 2**63)
        assert await storage.get_state("n") is None

    async def test_increment_ttl_applies_only_on_creation(self, storage: BaseStorage, clock: AdvancingClock) -> None:
        # 1 s: on real time a stall of the machine up to 0.7 s still finds the key alive
        assert await storage.increment("n", ttl=1.0) == 1
        await clock.advance(0.3)
        assert await storage.increment("n", ttl=1.0) == 2
        await clock.advance(0.8)
        assert await storage.increment("n", ttl=1.0) == 1, "the first expiry must not move"

    async def test_increment_never_moves_existing_expiry(self, storage: BaseStorage) -> None:
        await storage.increment("n", ttl=100)
        await storage.increment("n", ttl=5000)
        ttl = await storage.get_ttl("n")
        assert ttl is not None and ttl <= 100
        await storage.increment("n", ttl=None)
        assert (await storage.get_ttl("n") or 0) > 0

    async def test_concurrent_increments_are_exact(self, storage: BaseStorage) -> None:
        results = await asyncio.gather(*(storage.increment("n") for _ in range(200)))
        assert sorted(results) == list(range(1, 201))
        assert await storage.get_state("n") == 200

    # ------------------------------------------------------------------ TTL

    @pytest.mark.parametrize("ttl", [0.3, timedelta(milliseconds=300)], ids=["float", "timedelta"])
    async def test_ttl_expires_key(self, storage: BaseStorage, clock: AdvancingClock, ttl: Any) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await storage.set_state("k", "v", ttl=ttl)
        assert await storage.get_state("k") == "v"
        remaining = await storage.get_ttl("k")
        # what is left is 0.3 s less the time taken since (however long a busy machine took)
        assert remaining is not None and 0.3 - (loop.time() - started) - 0.002 <= remaining <= 0.3
        await clock.advance(0.4)
        assert await storage.get_state("k") is None

    async def test_integer_ttl_in_seconds(self, storage: BaseStorage) -> None:
        await storage.set_state("k", 1, ttl=7)
        remaining = await storage.get_ttl("k")
        assert remaining is not None and 6 < remaining <= 7

    @pytest.mark.parametrize("ttl", [0, -1, 0.0, timedelta(0), -0.5, math.nan, math.inf])
    async def test_non_positive_ttl_is_rejected(self, storage: BaseStorage, ttl: Any) -> None:
        await storage.set_state("k", "old")
        for call in (
            storage.set_state("k", "new", ttl=ttl),
            storage.compare_and_set("k", "new", expected="old", ttl=ttl),
            storage.increment("n", ttl=ttl),
            storage.expire("k", ttl),
            storage.set_many({"k": "new"}, ttl=ttl),
        ):
            with pytest.raises(ValueError, match="ttl"):
                await call
        assert await storage.get_state("k") == "old"
        assert await storage.get_ttl("k") is None
        assert await storage.get_state("n") is None

    @pytest.mark.parametrize(
        "ttl",
        [MAX_TTL_SECONDS + 1, MAX_TTL_SECONDS * 1.5, 1e20, 1e308, 10**400, timedelta.max],
        ids=["limit+1", "limit*1.5", "1e20", "1e308", "10**400", "timedelta.max"],
    )
    async def test_ttl_over_the_limit_is_rejected_before_anything_is_written(
        self, storage: BaseStorage, make_storage: MakeStorage, ttl: Any
    ) -> None:
        await storage.set_state("k", "old")
        for call in (
            storage.set_state("k", "new", ttl=ttl),
            storage.set_state("fresh", "new", ttl=ttl),
            storage.compare_and_set("k", "new", expected="old", ttl=ttl),
            storage.compare_and_set("fresh", "new", expected=None, ttl=ttl),
            storage.increment("n", ttl=ttl),
            storage.expire("k", ttl),
            storage.set_many({"k": "new", "fresh": 1}, ttl=ttl),
        ):
            with pytest.raises(ValueError, match="ttl .*over statekit's limit"):
                await call
        with pytest.raises(ValueError, match="default_ttl .*over statekit's limit"):
            make_storage(default_ttl=ttl)
        assert await storage.get_state("k") == "old"
        assert await storage.get_ttl("k") is None
        assert sorted(await storage.list_keys()) == ["k"]

    async def test_ttl_at_the_limit_is_accepted(self, storage: BaseStorage) -> None:
        await storage.set_state("k", 1, ttl=MAX_TTL_SECONDS)
        assert await storage.increment("n", ttl=MAX_TTL_SECONDS) == 1
        assert await storage.expire("k", timedelta(seconds=MAX_TTL_SECONDS))
        for key in ("k", "n"):
            remaining = await storage.get_ttl(key)
            assert remaining is not None and MAX_TTL_SECONDS - 60 < remaining <= MAX_TTL_SECONDS

    @pytest.mark.parametrize("ttl", ["10", True, [1]])
    async def test_ttl_of_wrong_type_is_rejected(self, storage: BaseStorage, ttl: Any) -> None:
        with pytest.raises(TypeError, match="ttl"):
            await storage.set_state("k", 1, ttl=ttl)
        assert await storage.get_state("k") is None

    async def test_default_ttl_applies_and_none_overrides(self, make_storage: MakeStorage) -> None:
        store = make_storage(default_ttl=60)
        await store.start()
        await store.set_state("a", 1)
        await store.compare_and_set("b", 1, expected=None)
        await store.increment("c")
        await store.set_many({"d": 1})
        for key in "abcd":
            ttl = await store.get_ttl(key)
            assert ttl is not None and 50 < ttl <= 60, key
        await store.set_state("e", 1, ttl=None)
        assert await store.get_ttl("e") is None
        await store.set_state("a", 2, ttl=5)
        ttl = await store.get_ttl("a")
        assert ttl is not None and ttl <= 5

    async def test_plain_set_follows_default_ttl(self, storage: BaseStorage) -> None:
        await storage.set_state("k", 1, ttl=100)
        await storage.set_state("k", 2)
        assert await storage.get_ttl("k") is None, "without default_ttl, a plain set stores no expiry"

    async def test_keep_ttl_keeps_the_expiry_exactly(self, storage: BaseStorage, clock: AdvancingClock) -> None:
        # 1 s: on real time a stall of the machine up to 0.8 s still finds the key alive
        await storage.set_state("k", 1, ttl=1.0)
        await clock.advance(0.2)
        await storage.set_state("k", 2, keep_ttl=True)
        remaining = await storage.get_ttl("k")
        assert remaining is not None and remaining <= 0.81
        await clock.advance(0.85)
        assert await storage.get_state("k") is None

    async def test_keep_ttl_on_absent_key_uses_ttl(self, storage: BaseStorage) -> None:
        await storage.set_state("k", 1, ttl=30, keep_ttl=True)
        ttl = await storage.get_ttl("k")
        assert ttl is not None and 20 < ttl <= 30
        await storage.set_state("j", 1, keep_ttl=True)
        assert await storage.get_ttl("j") is None
        await storage.set_state("j", 2, ttl=30, keep_ttl=True)
        assert await storage.get_ttl("j") is None, "a live key keeps its (absent) expiry"

    async def test_expired_key_is_invisible_to_every_operation(
        self, storage: BaseStorage, clock: AdvancingClock
    ) -> None:
        for key in ("get", "cas", "casnone", "incr", "scan", "many", "ttl", "del", "exp"):
            await storage.set_state(key, 7, ttl=0.2)
        await storage.set_state("live", 1)
        await clock.advance(0.3)
        assert await storage.get_state("get") is None
        assert await storage.compare_and_set("cas", 8, expected=7) is False
        assert await storage.compare_and_set("casnone", 8, expected=None) is True
        assert await storage.increment("incr") == 1
        assert sorted(await storage.list_keys()) == ["casnone", "incr", "live"]
        assert await storage.get_many(["many", "live"]) == {"live": 1}
        assert await storage.get_ttl("ttl") is None
        assert await storage.delete_state("del") is False
        assert await storage.expire("exp", 10) is False
        assert await storage.get_state("exp") is None

    async def test_get_ttl_of_absent_and_persistent_keys(self, storage: BaseStorage) -> None:
        assert await storage.get_ttl("absent") is None
        await storage.set_state("k", 1)
        assert await storage.get_ttl("k") is None

    async def test_expire_sets_and_removes_expiry(self, storage: BaseStorage, clock: AdvancingClock) -> None:
        await storage.set_state("k", 1)
        assert await storage.expire("k", 100) is True
        ttl = await storage.get_ttl("k")
        assert ttl is not None and 90 < ttl <= 100
        assert await storage.expire("k", None) is True
        assert await storage.get_ttl("k") is None
        assert await storage.expire("k", None) is True, "a live key without expiry still counts"
        assert await storage.expire("absent", 10) is False
        assert await storage.expire("absent", None) is False
        assert await storage.expire("k", timedelta(milliseconds=200)) is True
        await clock.advance(0.3)
        assert await storage.get_state("k") is None

    # ------------------------------------------------------------------ batches

    async def test_get_many_returns_only_live_keys(self, storage: BaseStorage) -> None:
        await storage.set_many({"a": 1, "b": {"x": [1]}, "c": "s"})
        assert await storage.get_many(["a", "b", "zzz", "a"]) == {"a": 1, "b": {"x": [1]}}
        assert await storage.get_many([]) == {}

    async def test_get_many_reads_many_keys(self, storage: BaseStorage) -> None:
        mapping = {f"key:{i}": i for i in range(1200)}
        await storage.set_many(mapping)
        assert await storage.get_many(list(mapping)) == mapping

    async def test_set_many_of_megabytes_is_stored_whole(self, storage: BaseStorage) -> None:
        # a 100,000-peer session writes ~8 MB of buckets in one set_many: backends send that in
        # pieces or as several statements of one transaction, and every value must land whole
        await storage.set_many({f"old:{i}": i for i in range(50)})
        values = {f"bucket:{i:03d}": bytes([i % 251]) * (9_000 + 97 * i) for i in range(300)}
        values |= {f"old:{i}": b"replaced" for i in range(50)} | {"large": b"h" * 900_000}
        await storage.set_many(values)
        assert await storage.get_many(list(values)) == values

    async def test_set_many_with_ttl(self, storage: BaseStorage, clock: AdvancingClock) -> None:
        await storage.set_many({"a": 1, "b": 2}, ttl=0.2)
        assert await storage.get_many(["a", "b"]) == {"a": 1, "b": 2}
        await clock.advance(0.3)
        assert await storage.get_many(["a", "b"]) == {}

    async def test_set_many_validates_everything_before_writing(self, storage: BaseStorage) -> None:
        with pytest.raises(ValueError):
            await storage.set_many({"a": 1, "": 2})
        with pytest.raises(ValueError):
            await storage.set_many({"a": 1, "b": None})
        assert await storage.list_keys() == []
        await storage.set_many({})
        with pytest.raises(TypeError):
            await storage.set_many([("a", 1)])  # type: ignore[arg-type]

    async def test_delete_many_counts_removed(self, storage: BaseStorage) -> None:
        await storage.set_many({"a": 1, "b": 2, "c": 3})
        assert await storage.delete_many(["a", "b", "x", "a"]) == 2
        assert await storage.list_keys() == ["c"]
        assert await storage.delete_many([]) == 0

    async def test_delete_many_of_a_big_batch_counts_only_live_keys(
        self, storage: BaseStorage, clock: AdvancingClock
    ) -> None:
        await storage.set_many({f"live:{i}": i for i in range(1200)})
        await storage.set_many({f"dying:{i}": i for i in range(300)}, ttl=0.2)
        await storage.set_state("kept", 1)
        await clock.advance(0.3)
        keys = [f"live:{i}" for i in range(1200)] + [f"dying:{i}" for i in range(300)] + ["nope"]
        assert await storage.delete_many(keys) == 1200  # expired and absent keys do not count
        assert await storage.list_keys() == ["kept"]

    async def test_single_str_is_not_a_key_list(self, storage: BaseStorage) -> None:
        with pytest.raises(TypeError):
            await storage.get_many("abc")
        with pytest.raises(TypeError):
            await storage.delete_many("abc")

    # ------------------------------------------------------------------ scan and patterns

    PATTERN_KEYS = ["user:1", "user:2", "user:10", "User:3", "user:a", "user:b", "user:*", "user:?",
                    "admin:1", "u[1]", "ux", "é:1"]

    @pytest.mark.parametrize(
        ("pattern", "expected"),
        [
            ("*", PATTERN_KEYS),
            ("user:*", ["user:1", "user:2", "user:10", "user:a", "user:b", "user:*", "user:?"]),
            ("user:?", ["user:1", "user:2", "user:a", "user:b", "user:*", "user:?"]),
            ("User:*", ["User:3"]),
            ("user:[12]", ["user:1", "user:2"]),
            ("user:[^12]", ["user:a", "user:b", "user:*", "user:?"]),
            ("user:[a-z]", ["user:a", "user:b"]),
            ("user:[0-9]*", ["user:1", "user:2", "user:10"]),
            ("user:\\*", ["user:*"]),
            ("user:\\?", ["user:?"]),
            ("u\\[1\\]", ["u[1]"]),
            ("?:1", ["é:1"]),
            ("??:1", []),
            ("*1", ["user:1", "admin:1", "é:1"]),
            ("nomatch*", []),
        ],
    )
    async def test_scan_patterns_follow_redis_glob(
        self, storage: BaseStorage, pattern: str, expected: list[str]
    ) -> None:
        for key in self.PATTERN_KEYS:
            await storage.set_state(key, 1)
        if pattern == "?:1" or pattern == "??:1":
            # Redis matches bytes: "é" is two UTF-8 bytes, so "??:1" matches it and "?:1" does not.
            expected = [] if pattern == "?:1" else ["é:1"]
        assert sorted(await storage.list_keys(pattern)) == sorted(expected)
        assert sorted([k async for k in storage.scan_keys(pattern)]) == sorted(expected)

    @pytest.mark.parametrize("pattern", ["[!-é]", "[a-é]*", "[é-z]", "x[^\x7f-\u0100]", "*[а-я]"])
    async def test_range_with_a_non_ascii_end_is_refused(self, storage: BaseStorage, pattern: str) -> None:
        for key in (" ", "Z", "a", "é", "xy", "я"):
            await storage.set_state(key, 1)
        with pytest.raises(ValueError, match="non-ASCII"):
            await storage.list_keys(pattern)
        assert await storage.health() is True

    @pytest.mark.parametrize(
        ("pattern", "expected"), [("[é]*", ["é", "éa"]), ("é*", ["é", "éa"]), ("[\\é]", []), ("?a", [])]
    )
    async def test_non_ascii_outside_ranges_matches_bytes_alike(
        self, storage: BaseStorage, pattern: str, expected: list[str]
    ) -> None:
        for key in ("é", "éa", "a"):
            await storage.set_state(key, 1)
        assert sorted(await storage.list_keys(pattern)) == expected

    async def test_scan_streams_many_keys(self, storage: BaseStorage) -> None:
        await storage.set_many({f"k{i}": i for i in range(2500)})
        seen = set()
        async for key in storage.scan_keys():
            seen.add(key)
        assert len(seen) == 2500

    async def test_list_keys_during_concurrent_writes_has_each_key_once(self, storage: BaseStorage) -> None:
        """A key live for the whole scan (even rewritten meanwhile) is listed exactly once;
        keys added or removed during the scan may or may not be; nothing is listed twice."""
        stable = {f"stable:{i:05d}": i for i in range(4000)}
        await storage.set_many(stable)
        await storage.set_many({f"gone:{i:05d}": i for i in range(1000)})

        async def churn(i: int) -> None:
            await storage.set_state(f"stable:{(i * 37) % 4000:05d}", -i)  # rewrite a stable key
            await storage.set_state(f"new:{i:05d}", i)
            await storage.delete_state(f"gone:{i % 1000:05d}")

        listed, rounds = await _alongside(storage.list_keys(), churn)
        assert rounds > 0
        assert len(listed) == len(set(listed))
        assert set(stable) <= set(listed)
        assert all(k.startswith(("stable:", "new:", "gone:")) for k in listed)

    async def test_clear_namespace_during_concurrent_sets(self, storage: BaseStorage) -> None:
        """Every key present when ``clear_namespace`` starts is deleted; a key set meanwhile
        either survives with its value or is gone; the storage stays usable."""
        await storage.set_many({f"old:{i:05d}": i for i in range(3000)})

        async def write(i: int) -> None:
            await storage.set_state(f"new:{i:05d}", i)

        removed, written = await _alongside(storage.clear_namespace(), write)
        assert removed >= 3000
        left = await storage.list_keys()
        assert [k for k in left if not k.startswith("new:")] == []
        assert len(left) <= written
        values = await storage.get_many(left)
        assert all(values[k] == int(k[4:]) for k in left)
        await storage.set_state("after", 1)
        assert await storage.get_state("after") == 1

    async def test_scan_pattern_must_be_str(self, storage: BaseStorage) -> None:
        with pytest.raises(TypeError):
            await storage.list_keys(b"*")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="pattern"):
            await storage.list_keys("\ud800*")
        assert await storage.health() is True

    def test_namespace_must_be_valid_text(self, make_storage: MakeStorage) -> None:
        with pytest.raises(ValueError, match="namespace"):
            make_storage(namespace="bot\ud800")
        with pytest.raises(ValueError, match="namespace"):
            make_storage(namespace="")

    # ------------------------------------------------------------------ namespaces

    @pytest.mark.parametrize(
        ("ns_a", "ns_b"),
        [("bot[1]", "bot1"), ("a", "a:b"), ("a:b", "a%3Ab"), ("x*", "xy"), ("n?", "nn"), ("p\\", "p"),
         ("{a}", "%7Ba%7D")],
    )
    async def test_namespaces_never_see_each_other(
        self, make_storage: MakeStorage, ns_a: str, ns_b: str
    ) -> None:
        a = make_storage(namespace=ns_a)
        b = make_storage(namespace=ns_b)
        await a.start()
        await b.start()
        try:
            await a.set_state("k", "a")
            await a.set_state("b:k", "a2")
            await b.set_state("k", "b")
            assert await a.get_state("k") == "a"
            assert await b.get_state("k") == "b"
            assert await b.get_state("b:k") is None
            assert sorted(await a.list_keys()) == ["b:k", "k"]
            assert await b.list_keys() == ["k"]
            assert await a.clear_namespace() == 2
            assert await b.get_state("k") == "b"
            assert await b.list_keys() == ["k"]
            assert await b.clear_namespace() == 1
        finally:
            await a.clear_namespace()
            await b.clear_namespace()

    async def test_clear_namespace_counts_live_keys(self, storage: BaseStorage, clock: AdvancingClock) -> None:
        await storage.set_many({f"k{i}": i for i in range(1100)})
        await storage.set_state("short", 1, ttl=0.2)
        await clock.advance(0.3)
        assert await storage.clear_namespace() == 1100
        assert await storage.list_keys() == []
        assert await storage.clear_namespace() == 0

    # ------------------------------------------------------------------ lifecycle and health

    async def test_health_is_true_while_started(self, storage: BaseStorage) -> None:
        assert await storage.health() is True

    async def test_first_operation_starts_the_storage(self, make_storage: MakeStorage) -> None:
        store = make_storage()
        assert store.started is False
        await store.set_state("k", 1)
        assert store.started is True
        assert await store.get_state("k") == 1

    async def test_stop_closes_and_start_reopens(self, make_storage: MakeStorage) -> None:
        store = make_storage()
        async with store:
            await store.set_state("k", 1)
            await store.start()
        await store.stop()
        with pytest.raises(StorageClosedError):
            await store.get_state("k")
        with pytest.raises(StorageClosedError):
            await store.list_keys()
        assert await store.health() is False
        await store.start()
        await store.set_state("k2", 2)
        assert await store.get_state("k2") == 2

    async def test_cancelled_operations_leave_storage_consistent(self, storage: BaseStorage) -> None:
        await storage.set_many({f"k{i}": 0 for i in range(50)})
        big = {f"batch{i}": i for i in range(300)}
        tasks: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(storage.set_state(f"k{i}", 1)) for i in range(50)
        ]
        tasks.append(asyncio.ensure_future(storage.set_many(big)))
        tasks += [asyncio.ensure_future(storage.increment("n")) for _ in range(50)]
        await asyncio.sleep(0)
        for task in tasks[::2]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        values = await storage.get_many([f"k{i}" for i in range(50)])
        assert set(values.values()) <= {0, 1} and len(values) == 50
        batch = await storage.get_many(list(big))
        assert batch in ({}, big), "a batch is written whole or not at all"
        n = await storage.get_state("n") or 0
        assert 25 <= n <= 50
        assert await storage.increment("n") == n + 1
        await storage.set_state("after", "ok")
        assert await storage.get_state("after") == "ok"
        assert await storage.health() is True

    async def test_errors_of_one_caller_do_not_affect_others(self, storage: BaseStorage) -> None:
        await storage.set_state("text", "x")

        async def bad() -> None:
            await storage.increment("text")

        results = await asyncio.gather(
            bad(), storage.increment("n"), storage.set_state("a", object()), storage.set_state("b", 2),
            return_exceptions=True,
        )
        assert isinstance(results[0], WrongTypeError)
        assert results[1] == 1
        assert isinstance(results[2], SerializationError)
        assert results[3] is None
        assert await storage.get_many(["text", "n", "a", "b"]) == {"text": "x", "n": 1, "b": 2}

    async def test_repr_names_backend_and_namespace(self, storage: BaseStorage) -> None:
        text = repr(storage)
        assert type(storage).__name__ in text and storage.namespace in text
