"""Model-based test: a hypothesis state machine drives a backend and a plain in-memory reference
model with random sequences of every storage operation and requires identical results.

Memory and SQLite run on a FakeClock, so TTL expiry is exercised exactly (short TTLs, a rule that
advances the clock). Redis backends run on real time: their TTLs are long enough never to expire
during an example, and remaining TTLs are compared with a tolerance.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from statekit import (
    DEFAULT,
    BaseStorage,
    MemoryStorage,
    RedisStorage,
    SQLiteStorage,
    WrongTypeError,
    open_storage,
)
from statekit.testing import FakeClock

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

KEYS = st.sampled_from(["a", "b", "user:1", "user:22", "x[1]", "é", "{tag}:k"])

# pattern -> which keys it matches, written out independently of statekit's glob code (Redis
# globs match bytes: "?" is one byte, so it does not match the two-byte "é")
PATTERNS: dict[str, Callable[[str], bool]] = {
    "*": lambda k: True,
    "user:*": lambda k: k.startswith("user:"),
    "?": lambda k: len(k.encode()) == 1,
    "[ab]": lambda k: k in ("a", "b"),
    "[^a]*": lambda k: not k.startswith("a"),
    "x\\[1\\]": lambda k: k == "x[1]",
    "user:?": lambda k: k.startswith("user:") and len(k) == 6,
    "{tag}*": lambda k: k.startswith("{tag}"),
}

_scalars = (
    st.integers(INT64_MIN, INT64_MAX)
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=True).map(lambda f: 0.0 if f == 0 else f)
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)
    | st.binary(max_size=6)
)
_dict_keys = st.text(max_size=3, alphabet="abc") | st.integers(-3, 3) | st.binary(max_size=2)
VALUES = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_dict_keys, inner, max_size=3),
    max_leaves=6,
)


def same(a: Any, b: Any) -> bool:
    """SPEC value equality: type-strict (True != 1, 1 != 1.0), dict order ignored, tuple == list."""
    if isinstance(a, tuple):
        a = list(a)
    if isinstance(b, tuple):
        b = list(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(
            any(type(k) is type(k2) and k == k2 for k2 in b) and same(a[k], b[k]) for k in a
        )
    return bool(a == b)


@dataclass
class Entry:
    value: Any
    expires_ms: int | None


class Model:
    """The reference: a dict of values with expiry instants in milliseconds."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self.now_ms = now_ms
        self.data: dict[str, Entry] = {}

    def live(self, key: str) -> Entry | None:
        entry = self.data.get(key)
        if entry is not None and entry.expires_ms is not None and entry.expires_ms <= self.now_ms():
            del self.data[key]
            return None
        return entry

    def expiry(self, ttl: Any, keep_from: Entry | None = None) -> int | None:
        if keep_from is not None:
            return keep_from.expires_ms
        if ttl is None or ttl is DEFAULT:
            return None
        return self.now_ms() + max(1, round(ttl * 1000))

    def keys(self) -> list[str]:
        return [k for k in list(self.data) if self.live(k) is not None]


def ttls(real_time: bool) -> st.SearchStrategy[Any]:
    if real_time:
        seconds = st.integers(100, 1000).map(float)
    else:
        seconds = st.integers(1, 4000).map(lambda ms: ms / 1000)
    return st.none() | st.just(DEFAULT) | seconds


class StorageMachine(RuleBasedStateMachine):
    """Runs every operation on ``self.storage`` and on the model; results must be identical."""

    factory: Callable[[FakeClock | None], BaseStorage]
    real_time: bool

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = None if self.real_time else FakeClock(start=1_700_000_000.0)
        self.storage = self.factory(self.clock)
        clock = self.clock
        self.model = Model(
            (lambda: int(time.time() * 1000)) if clock is None else (lambda: int(clock() * 1000))
        )
        self.ttl_tolerance = 1.0 if self.real_time else 0.0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.storage.clear_namespace())
        finally:
            self.run(self.storage.stop())
            self.loop.close()

    @initialize()
    def start(self) -> None:
        self.run(self.storage.start())

    # ------------------------------------------------------------------ single keys

    @rule(key=KEYS, value=VALUES, data=st.data(), keep_ttl=st.booleans())
    def set_state(self, key: str, value: Any, data: st.DataObject, keep_ttl: bool) -> None:
        ttl = data.draw(ttls(self.real_time))
        self.run(self.storage.set_state(key, value, ttl=ttl, keep_ttl=keep_ttl))
        old = self.model.live(key)
        self.model.data[key] = Entry(value, self.model.expiry(ttl, old if keep_ttl else None))

    @rule(key=KEYS)
    def get_state(self, key: str) -> None:
        got = self.run(self.storage.get_state(key))
        entry = self.model.live(key)
        assert same(got, None if entry is None else entry.value), (got, entry)

    @rule(key=KEYS)
    def delete_state(self, key: str) -> None:
        removed = self.run(self.storage.delete_state(key))
        assert removed == (self.model.live(key) is not None)
        self.model.data.pop(key, None)

    @rule(key=KEYS, data=st.data(), keep_ttl=st.booleans())
    def compare_and_set(self, key: str, data: st.DataObject, keep_ttl: bool) -> None:
        entry = self.model.live(key)
        # mostly the right expectation (so writes happen), sometimes a wrong one
        if entry is not None and data.draw(st.booleans()):
            expected = entry.value
        else:
            expected = data.draw(st.none() | VALUES)
        new = data.draw(st.none() | VALUES)
        ttl = data.draw(ttls(self.real_time))
        done = self.run(
            self.storage.compare_and_set(key, new, expected=expected, ttl=ttl, keep_ttl=keep_ttl)
        )
        matches = entry is None if expected is None else entry is not None and same(entry.value, expected)
        assert done == matches, (entry, expected)
        if matches:
            if new is None:
                self.model.data.pop(key, None)
            else:
                self.model.data[key] = Entry(new, self.model.expiry(ttl, entry if keep_ttl else None))

    @rule(
        key=KEYS,
        amount=st.integers(-5, 5) | st.sampled_from([INT64_MAX, INT64_MIN, 2**62]),
        data=st.data(),
    )
    def increment(self, key: str, amount: int, data: st.DataObject) -> None:
        ttl = data.draw(ttls(self.real_time))
        entry = self.model.live(key)
        current = 0 if entry is None else entry.value
        if type(current) is not int:
            with pytest.raises(WrongTypeError):
                self.run(self.storage.increment(key, amount, ttl=ttl))
            return
        result = current + amount
        if not INT64_MIN <= result <= INT64_MAX:
            with pytest.raises(OverflowError):
                self.run(self.storage.increment(key, amount, ttl=ttl))
            return
        assert self.run(self.storage.increment(key, amount, ttl=ttl)) == result
        if entry is None:
            self.model.data[key] = Entry(result, self.model.expiry(ttl))
        else:
            entry.value = result  # an existing expiry never moves

    @rule(key=KEYS)
    def get_ttl(self, key: str) -> None:
        got = self.run(self.storage.get_ttl(key))
        entry = self.model.live(key)
        if entry is None or entry.expires_ms is None:
            assert got is None, (got, entry)
        else:
            expected = (entry.expires_ms - self.model.now_ms()) / 1000
            assert got is not None and abs(got - expected) <= self.ttl_tolerance + 0.0011, (got, expected)

    @rule(key=KEYS, data=st.data())
    def expire(self, key: str, data: st.DataObject) -> None:
        ttl = data.draw(st.none() | ttls(self.real_time).filter(lambda t: t is not None and t is not DEFAULT))
        done = self.run(self.storage.expire(key, ttl))
        entry = self.model.live(key)
        assert done == (entry is not None)
        if entry is not None:
            entry.expires_ms = self.model.expiry(ttl)

    # ------------------------------------------------------------------ batches and scans

    @rule(keys=st.lists(KEYS, max_size=5))
    def get_many(self, keys: list[str]) -> None:
        got = self.run(self.storage.get_many(keys))
        expected = {k: e.value for k in keys if (e := self.model.live(k)) is not None}
        assert got.keys() == expected.keys() and all(same(got[k], expected[k]) for k in got)

    @rule(mapping=st.dictionaries(KEYS, VALUES, max_size=4), data=st.data())
    def set_many(self, mapping: dict[str, Any], data: st.DataObject) -> None:
        ttl = data.draw(ttls(self.real_time))
        self.run(self.storage.set_many(mapping, ttl=ttl))
        for key, value in mapping.items():
            self.model.data[key] = Entry(value, self.model.expiry(ttl))

    @rule(keys=st.lists(KEYS, max_size=5))
    def delete_many(self, keys: list[str]) -> None:
        removed = self.run(self.storage.delete_many(keys))
        assert removed == len({k for k in keys if self.model.live(k) is not None})
        for key in keys:
            self.model.data.pop(key, None)

    @rule(pattern=st.sampled_from(sorted(PATTERNS)))
    def list_keys(self, pattern: str) -> None:
        got = self.run(self.storage.list_keys(pattern))
        assert sorted(got) == sorted(k for k in self.model.keys() if PATTERNS[pattern](k)), pattern

    @rule()
    def clear_namespace(self) -> None:
        removed = self.run(self.storage.clear_namespace())
        assert removed == len(self.model.keys())
        self.model.data.clear()

    @rule(ms=st.integers(1, 3000))
    def advance_clock(self, ms: int) -> None:
        if self.clock is not None:  # on Redis backends time only moves by itself
            self.clock.advance(ms / 1000)


def _factory(backend: str, request: pytest.FixtureRequest, tmp: Path) -> Callable[[FakeClock | None], BaseStorage]:
    def make(clock: FakeClock | None) -> BaseStorage:
        namespace = f"model-{uuid.uuid4().hex[:8]}"
        if backend == "memory":
            return MemoryStorage(namespace=namespace, clock=clock)
        if backend == "sqlite-file":
            return SQLiteStorage(tmp / f"{namespace}.db", namespace=namespace, clock=clock)
        if backend == "sqlite-memory":
            return SQLiteStorage(":memory:", namespace=namespace, clock=clock)
        if backend == "fakeredis":
            import fakeredis

            return RedisStorage(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), namespace=namespace)
        if backend == "redis":
            return RedisStorage(request.getfixturevalue("redis_server").url, namespace=namespace)
        if backend == "redis-cluster":
            return open_storage(request.getfixturevalue("redis_cluster").url, namespace=namespace)
        if backend == "redis-sentinel":
            return open_storage(request.getfixturevalue("redis_sentinel").url, namespace=namespace)
        if backend == "postgres":
            from statekit.storage.postgres import PostgresStorage

            url = request.getfixturevalue("postgres_url")
            return PostgresStorage.from_url(url, namespace=namespace, clock=clock)
        raise AssertionError(backend)

    return make


@pytest.mark.slow
def test_backend_matches_the_reference_model(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    real_time = backend not in ("memory", "sqlite-file", "sqlite-memory", "postgres")
    make = _factory(backend, request, tmp_path)
    make(None)  # resolve the server fixtures now, outside hypothesis

    class Machine(StorageMachine):
        factory = staticmethod(make)

    Machine.real_time = real_time
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=25 if real_time else 40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            derandomize=False,
        ),
    )
