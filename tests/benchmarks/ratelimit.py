"""Rate-limit benchmark: statekit ``RateLimiter.hit`` against the ``limits`` package, on memory and
on one real redis-server, in the same run; and the cost ``RateLimitMiddleware`` adds per update.

Run: ``python -m tests.benchmarks.ratelimit [--seconds 1] [--rounds 2] [--json out.json]``.

Workload: ``Rate(1000, 1)`` per key over 1,000 keys taken in turn by all tasks (a bot's users),
so hits pass and every strategy is in its steady state (windows roll over, records expire and
come back).
Scenarios: ``sequential`` (one task), ``100 tasks`` (100 concurrent tasks, distinct keys) and,
on Redis, ``hot key`` (100 tasks on one key with ``Rate(10**9, 1)``: concurrent hits of one user).

Pairs (statekit strategy vs its closest ``limits`` strategy, redis-py implementation
``async+redis://``): ``fixed`` vs ``FixedWindowRateLimiter``; ``sliding`` vs
``SlidingWindowCounterRateLimiter``; ``gcra`` vs ``MovingWindowRateLimiter`` (both have no burst
at a window edge). ``redis-py`` is the client-side ceiling of a fixed window: the same
INCRBY+PEXPIRE Lua script called through redis-py directly. Goals (issue 5): each statekit
strategy >= 0.9x its counterpart on Redis; the middleware adds < 50 us per update on memory.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio
from limits import RateLimitItemPerSecond
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.storage import storage_from_string

from middleware import Rate, RateLimiter, RateLimitMiddleware
from statekit import BaseStorage, MemoryStorage, RedisStorage
from statekit.testing import RedisServer
from tests.benchmarks._harness import Result, best_of, measure, print_table, write_json

KEYS = 1000
PAIRS = (("fixed", "fixed window"), ("sliding", "sliding counter"), ("gcra", "moving window"))
LIMITS_CLASSES: dict[str, Any] = {
    "fixed window": FixedWindowRateLimiter,
    "sliding counter": SlidingWindowCounterRateLimiter,
    "moving window": MovingWindowRateLimiter,
}
_INCR_EXPIRE = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n
"""

Op = Callable[[int], Awaitable[Any]]


def statekit_op(storage: BaseStorage, strategy: str, rate: Rate, scope: str, hot: bool) -> Op:
    limiter = RateLimiter(storage, rate, strategy=strategy, prefix=f"bench-{scope}-{strategy}")  # type: ignore[arg-type]
    keys = [f"user:{i}" for i in range(KEYS)]
    turn = itertools.count()

    async def hit(i: int) -> Any:
        return await limiter.hit("hot" if hot else keys[next(turn) % KEYS])

    return hit


def limits_op(storage: Any, name: str, limit: int, scope: str, hot: bool) -> Op:
    limiter = LIMITS_CLASSES[name](storage)
    item = RateLimitItemPerSecond(limit, 1)
    keys = [f"user:{i}" for i in range(KEYS)]
    tag = f"{scope}-{name}"  # keys of their own per strategy and scenario
    turn = itertools.count()

    async def hit(i: int) -> Any:
        return await limiter.hit(item, tag, "hot" if hot else keys[next(turn) % KEYS])

    return hit


def redispy_op(client: redis.asyncio.Redis, scope: str, hot: bool) -> Op:
    script = client.register_script(_INCR_EXPIRE)
    keys = [f"raw:{scope}:user:{i}" for i in range(KEYS)]
    turn = itertools.count()

    async def hit(i: int) -> Any:
        key = f"raw:{scope}:hot" if hot else keys[next(turn) % KEYS]
        return await script(keys=[key], args=[1, 1000])

    return hit


async def compare(
    group: str, tasks: int, ops: list[tuple[str, str, Op]], seconds: float, rounds: int
) -> list[Result]:
    """Measure ``ops`` (subject, operation, op) interleaved; statekit rows get their ratio to
    the paired ``limits`` row."""
    rates = await best_of(
        rounds, *(lambda op=op: measure(op, concurrency=tasks, seconds=seconds) for _, _, op in ops)
    )
    found = {(subject, operation): rate for (subject, operation, _), rate in zip(ops, rates, strict=True)}
    rows = []
    for (subject, operation, _), rate in zip(ops, rates, strict=True):
        row = Result(group, subject, operation, tasks, rate)
        if subject == "statekit":
            counterpart = dict(PAIRS)[operation]
            row.baseline = f"limits {counterpart}"
            row.ratio = rate / found[("limits", counterpart)]
        rows.append(row)
    return rows


async def limiter_rows(url: str, redis_url: str, seconds: float, rounds: int) -> list[Result]:
    rows: list[Result] = []
    sk_memory = MemoryStorage(namespace="bench")
    sk_redis = RedisStorage(url, namespace="bench")
    await sk_memory.start()
    await sk_redis.start()
    lim_memory = storage_from_string("async+memory://")
    lim_redis = storage_from_string(redis_url, implementation="redispy")
    raw = redis.asyncio.Redis.from_url(url)
    try:
        for backend, sk, lim in (("memory", sk_memory, lim_memory), ("redis", sk_redis, lim_redis)):
            scenarios = [("sequential", 1, False), ("100 tasks", 100, False)]
            if backend == "redis":
                scenarios.append(("hot key", 100, True))
            for scenario, tasks, hot in scenarios:
                rate = Rate(10**9, 1) if hot else Rate(1000, 1)
                scope = scenario.replace(" ", "-")
                ops: list[tuple[str, str, Op]] = []
                for strategy, counterpart in PAIRS:
                    ops.append(("statekit", strategy, statekit_op(sk, strategy, rate, scope, hot)))
                    ops.append(("limits", counterpart, limits_op(lim, counterpart, rate.limit, scope, hot)))
                if backend == "redis":
                    ops.append(("redis-py", "fixed window", redispy_op(raw, scope, hot)))
                rows += await compare(f"{backend} · {scenario}", tasks, ops, seconds, rounds)
        await sk_redis.clear_namespace()
        await raw.flushdb()
    finally:
        await sk_memory.stop()
        await sk_redis.stop()
        await raw.aclose()
    return rows


class _Event:
    """A minimal update: the middleware reads ``from_user.id``."""

    class _User:
        def __init__(self, uid: int) -> None:
            self.id = uid

    def __init__(self, uid: int) -> None:
        self.from_user = self._User(uid)


async def middleware_rows(seconds: float, rounds: int) -> list[Result]:
    """Per-update cost of ``RateLimitMiddleware.wrap`` on memory: guarded vs bare handler."""
    events = [_Event(i) for i in range(KEYS)]

    async def handler(event: _Event) -> int:
        return event.from_user.id

    async def bare(i: int) -> Any:
        return await handler(events[i % KEYS])

    ops: list[tuple[str, Op]] = [("bare handler", bare)]
    for strategy, _ in PAIRS:
        storage = MemoryStorage(namespace=f"mw-{strategy}")
        await storage.start()
        guarded = RateLimitMiddleware(storage, Rate(1000, 1), strategy=strategy).wrap(handler)  # type: ignore[arg-type]

        async def run(i: int, guarded: Any = guarded) -> Any:
            return await guarded(events[i % KEYS])

        ops.append((f"middleware {strategy}", run))
    rates = await best_of(rounds, *(lambda op=op: measure(op, seconds=seconds) for _, op in ops))
    base = rates[0]
    rows = [Result("memory · middleware", "handler", ops[0][0], 1, base, note="baseline")]
    for (name, _), rate in zip(ops[1:], rates[1:], strict=True):
        added_us = (1 / rate - 1 / base) * 1e6
        rows.append(
            Result("memory · middleware", "statekit", name, 1, rate, note=f"+{added_us:.1f} µs/update")
        )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.8, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (best kept)")
    parser.add_argument("--json", help="also write the results as JSON to this path")
    args = parser.parse_args()
    started = time.perf_counter()
    with RedisServer() as server:
        redis_url = f"async+redis://127.0.0.1:{server.port}/0"
        rows = await limiter_rows(server.url, redis_url, args.seconds, args.rounds)
    rows += await middleware_rows(args.seconds, args.rounds)
    print_table("Rate limiting: RateLimiter.hit vs limits; middleware cost per update", rows)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    write_json(args.json, "ratelimit", rows)


if __name__ == "__main__":
    asyncio.run(main())
