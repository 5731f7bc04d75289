"""Hostile storage arguments (issue 14): random TTLs, glob patterns and URLs holding passwords.

Every backend either accepts an argument or refuses it with the documented ``ValueError`` /
``TypeError`` before anything is written; every backend gives the same answer for a glob pattern
(or refuses it alike); and a password, whatever characters it holds, never appears in an error,
a ``repr`` or a log record. Bounded: a few hundred examples in all.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statekit import MAX_TTL_SECONDS, BaseStorage, MemoryStorage, SQLiteStorage, open_storage
from statekit.storage.redis import RedisStorage

_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_ttls = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([MAX_TTL_SECONDS, MAX_TTL_SECONDS + 1, 1e20, 1e308, 0.0004, 0.0005, -0.0]),
    st.builds(timedelta, seconds=st.floats(-1e12, 1e12, allow_nan=False)),
    st.just(timedelta.max),
    st.text(max_size=3),
    st.booleans(),
)


def _fakeredis() -> BaseStorage:
    import fakeredis

    return RedisStorage(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()))


_LOCAL: dict[str, Callable[[], BaseStorage]] = {
    "memory": MemoryStorage,
    "sqlite": lambda: SQLiteStorage(":memory:"),
    "fakeredis": _fakeredis,
}


def _on_each(check: Callable[[BaseStorage], Awaitable[Any]]) -> dict[str, Any]:
    """``check`` run on a fresh storage of each local backend; what each returned or raised."""

    async def one(make: Callable[[], BaseStorage]) -> Any:
        async with make() as storage:
            try:
                return await check(storage)
            except (ValueError, TypeError) as exc:
                return type(exc)

    return {name: asyncio.run(one(make)) for name, make in _LOCAL.items()}


def _expected_ttl_outcome(ttl: object) -> type[Exception] | None:
    """What SPEC section 1 and docs/storage.md "Limits" say a TTL argument does."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float | timedelta):
        return TypeError
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if math.isnan(seconds) or seconds <= 0 or seconds > MAX_TTL_SECONDS:
        return ValueError
    return None


@_SETTINGS
@given(ttl=_ttls)
def test_every_backend_takes_or_refuses_a_ttl_alike_before_writing(ttl: object) -> None:
    async def check(storage: BaseStorage) -> Any:
        await storage.set_state("kept", "before")
        outcomes = []
        for write in (
            lambda: storage.set_state("kept", "after", ttl=ttl),  # type: ignore[arg-type]
            lambda: storage.increment("fresh", ttl=ttl),  # type: ignore[arg-type]
            lambda: storage.compare_and_set("kept", "cas", expected="before", ttl=ttl),  # type: ignore[arg-type]
            lambda: storage.set_many({"kept": "many", "other": 1}, ttl=ttl),  # type: ignore[arg-type]
            lambda: storage.expire("kept", ttl),  # type: ignore[arg-type]
        ):
            try:
                await write()
                outcomes.append(None)
            except (ValueError, TypeError) as exc:
                outcomes.append(type(exc))
                # refused before anything was written
                assert await storage.get_state("kept") == "before"
                assert await storage.get_state("fresh") is None
                assert await storage.get_state("other") is None
        return outcomes

    results = _on_each(check)
    expected = _expected_ttl_outcome(ttl)
    for name, outcomes in results.items():
        if expected is None:
            assert outcomes[0] is None and outcomes[1] is None, (name, ttl, outcomes)
        else:
            assert outcomes == [expected] * 5, (name, ttl, outcomes)


_pattern_chars = st.sampled_from(list("ab*?[]^!-\\zZé€ ") + ["\U0001f600", "\x00"])


@_SETTINGS
@given(pattern=st.lists(_pattern_chars, max_size=8).map("".join))
def test_every_backend_answers_a_glob_alike_or_refuses_it_alike(pattern: str) -> None:
    keys = ["a", "b", "Z", "z", "é", "€", " ", "ab", "a*", "a?", "[a]", "\\", "\U0001f600", "-"]

    async def check(storage: BaseStorage) -> Any:
        await storage.set_many({k: 1 for k in keys})
        return sorted(await storage.list_keys(pattern or "*"))

    results = _on_each(check)
    assert len({repr(r) for r in results.values()}) == 1, (pattern, results)


_secret = st.text(
    alphabet=st.sampled_from(list("Xy7Qz9/@:?#%&=+ _-.~[]")), min_size=6, max_size=24
).filter(lambda s: sum(c.isalnum() for c in s) >= 4)


@_SETTINGS
@given(
    secret=_secret,
    scheme=st.sampled_from(["redis", "rediss", "redis+cluster", "redis+sentinel", "postgresql"]),
    tail=st.sampled_from(["127.0.0.1:6390/0", "127.0.0.1:6390/abc", "", "127.0.0.1:x/0", "h:1/db?x=1"]),
)
def test_a_password_never_shows_whatever_it_holds(
    secret: str, scheme: str, tail: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{scheme}://user:{secret}@{tail}"
    try:
        storage = open_storage(url)
    except (ValueError, TypeError, ImportError) as exc:
        shown = str(exc) + repr(exc)
    else:
        shown = repr(storage) + storage.describe() + str(storage)
    shown += "".join(r.getMessage() for r in caplog.records)
    assert secret not in shown, (url, shown)
