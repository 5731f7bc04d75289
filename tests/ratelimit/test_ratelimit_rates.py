"""Several rates enforced together, refused hits, concurrency, peek and reset, on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from middleware import Rate, RateLimiter
from statekit import BaseStorage

STRATEGIES = ["fixed", "sliding", "gcra"]


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_refused_hits_consume_no_quota_on_any_rate(
    make_limiter: Callable[..., RateLimiter], timing: Callable[[str], Any], strategy: str
) -> None:
    time_ = timing(strategy)  # on Redis: exact time for sliding and GCRA, real for fixed
    short = 0.25 if time_.real else 1.0
    limiter = make_limiter(Rate(2, short), Rate(4, 100_000), strategy=strategy, **time_.options)
    for key in ("u1", "u2", "u3"):
        started = time_.now()
        assert [(await limiter.hit(key)).allowed for _ in range(2)] == [True, True]
        refused = [await limiter.hit(key) for _ in range(5)]
        if time_.now() - started < short:  # else a stall outlasted the window: again
            break
    else:
        raise AssertionError("the machine stalled through three tries; timing never held")
    assert not any(r.allowed for r in refused)  # refused by the short rate ...
    await time_.advance(short * 2.05)  # the short rate has forgotten everything (all strategies)
    # ... and counted on neither: the long rate still has exactly 2 of its 4 left
    assert [(await limiter.hit(key)).allowed for _ in range(2)] == [True, True]
    await time_.advance(short * 2.05)
    last = await limiter.hit(key)
    assert not last.allowed  # now the long rate is the one refusing
    assert last.retry_after > short
    peeked = await limiter.peek(key)
    assert not peeked.allowed and peeked.remaining == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_cost_counts_as_that_many_hits(
    make_limiter: Callable[..., RateLimiter], strategy: str
) -> None:
    limiter = make_limiter(Rate(10, 60), strategy=strategy)
    assert (await limiter.hit("u", cost=4)).remaining == 6
    assert (await limiter.hit("u", cost=6)).allowed
    refused = await limiter.hit("u", cost=1)
    assert not refused.allowed
    assert (await limiter.peek("u")).remaining == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_refused_costly_hit_leaves_room_for_cheaper_ones(
    make_limiter: Callable[..., RateLimiter], strategy: str
) -> None:
    limiter = make_limiter(Rate(10, 60), strategy=strategy)
    assert (await limiter.hit("u", cost=7)).allowed
    assert not (await limiter.hit("u", cost=4)).allowed
    assert (await limiter.hit("u", cost=3)).allowed
    assert not (await limiter.hit("u")).allowed


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_concurrent_hits_on_one_key_pass_exactly_the_limit(
    make_limiter: Callable[..., RateLimiter], strategy: str
) -> None:
    limiter = make_limiter(Rate(20, 60), Rate(30, 600), strategy=strategy)
    results = await asyncio.gather(*(limiter.hit("hot") for _ in range(100)))
    assert sum(r.allowed for r in results) == 20
    assert sorted(r.remaining for r in results if r.allowed) == list(range(20))
    # the refused ones consumed nothing on the second rate either
    assert (await limiter.peek("hot")).remaining == 0
    await limiter.reset("hot")
    assert (await limiter.peek("hot")).remaining == 20


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_keys_and_limiters_are_independent(
    storage: BaseStorage, make_limiter: Callable[..., RateLimiter], strategy: str
) -> None:
    a = make_limiter(Rate(2, 60), strategy=strategy)
    b = make_limiter(Rate(2, 60), strategy=strategy, prefix="other")
    assert [(await a.hit("x")).allowed for _ in range(3)] == [True, True, False]
    assert (await a.hit("y")).allowed
    assert (await b.hit("x")).allowed
    await a.reset("x")
    assert (await a.hit("x")).allowed
    keys = await storage.list_keys()
    assert keys and all(k.startswith(("ratelimit:", "other:")) for k in keys)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_peek_consumes_nothing(
    make_limiter: Callable[..., RateLimiter], strategy: str
) -> None:
    limiter = make_limiter(Rate(3, 60), strategy=strategy)
    fresh = await limiter.peek("u")
    assert fresh.allowed and fresh.remaining == 3 and fresh.reset_after == 0
    await limiter.hit("u")
    for _ in range(5):
        seen = await limiter.peek("u")
        assert seen.allowed and seen.remaining == 2 and seen.reset_after > 0
    assert [(await limiter.hit("u")).allowed for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_two_limiters_sharing_a_storage_see_each_others_hits(
    make_limiter: Callable[..., RateLimiter], strategy: str
) -> None:
    # two "processes": each remembers what it last read; a stale memory must not over-allow
    one = make_limiter(Rate(6, 60), strategy=strategy)
    two = make_limiter(Rate(6, 60), strategy=strategy)
    allowed = 0
    for i in range(12):
        allowed += (await (one if i % 3 else two).hit("shared")).allowed
    assert allowed == 6
    await one.reset("shared")
    assert (await two.hit("shared")).allowed  # two's memory is stale after the reset


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_tiny_memory_never_changes_an_answer(
    make_limiter: Callable[..., RateLimiter], strategy: str
) -> None:
    limiter = make_limiter(Rate(3, 60), strategy=strategy, memo_size=2)
    for round_ in range(4):
        for user in range(10):
            result = await limiter.hit(f"user:{user}")
            assert result.allowed == (round_ < 3)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_cancelled_hit_does_not_strand_the_others(
    make_limiter: Callable[..., RateLimiter], strategy: str
) -> None:
    limiter = make_limiter(Rate(10, 60), strategy=strategy)
    tasks = [asyncio.ensure_future(limiter.hit("k")) for _ in range(30)]
    await asyncio.sleep(0)
    tasks[0].cancel()
    tasks[5].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    results = [r for r in done if not isinstance(r, BaseException)]
    assert len(results) >= 28
    assert sum(r.allowed for r in results) <= 10
    # the key is usable afterwards, and nothing is left waiting
    assert isinstance(await limiter.hit("k"), type(results[0]))
