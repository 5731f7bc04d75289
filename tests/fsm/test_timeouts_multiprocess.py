"""Conversation timeouts across processes sharing one SQLite file, one Redis or one Redis Cluster
(SPEC 5.1).

Three worker processes (this file run as a script) each run ``Timeouts``; the test process writes
the conversations. Assertions are about exactly-once and ordering facts ("fired once, never
before its deadline", "fired again only after the lease"), with generous waits for completion.
A conversation whose own writes took so long that the deadline may have passed in between (a
loaded machine) is left out of the facts that depend on it, never counted as a failure.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from statekit import BaseStorage, open_storage
from statekit.fsm import FSMContext, State, StatesGroup, StorageKey, TimeoutEvent, Timeouts

AFTER = 0.5
LEASE = 2.0
WORKERS = 3
MAIN = range(0, 1000)  # 0-299 re-written before the deadline, 300-499 cleared
REWRITTEN = range(0, 300)
CLEARED = range(300, 500)
RESTART = range(2000, 2050)  # due before any worker runs
RACE = range(3000, 3050)  # the timeout races the user's own transition
KILL = 4000  # its handler hangs in the first process that fires it; that process is killed
WAIT = 90.0


class Form(StatesGroup):
    name = State()
    age = State()
    done = State()


def key(user: int) -> StorageKey:
    return StorageKey(9, user, user)


def declare(storage: BaseStorage) -> Timeouts:
    """The timeouts every process declares (the workers also fire them)."""
    timeouts = Timeouts(storage, lease=LEASE, poll_interval=0.05)

    @timeouts.on(Form.name, after=AFTER)
    async def expired(event: TimeoutEvent) -> None:
        user = event.key.user_id
        if user in RACE:
            if await event.transition(Form.done):
                await storage.increment(f"moved:{user}")
            return
        n = await storage.increment(f"log:n:{user}")
        await storage.set_state(
            f"log:e:{user}:{n}",
            [event.fired_at, event.due_at, os.getpid(), event.attempt, event.data.get("re", 0)],
        )
        if user == KILL and event.attempt == 1:
            await storage.set_state("log:hang", os.getpid())
            await asyncio.sleep(3600)

    return timeouts


async def _worker(url: str, namespace: str) -> None:
    async with open_storage(url, namespace=namespace) as storage:
        async with declare(storage):
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


@pytest.fixture(params=["sqlite", "redis", "redis-cluster", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    if request.param == "redis-cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(request.getfixturevalue("redis_server").url)


async def _until(check, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + WAIT
    while not await check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _counts(storage: BaseStorage, users: list[int], prefix: str = "log:n") -> dict[int, int]:
    found = await storage.get_many([f"{prefix}:{u}" for u in users])
    return {u: int(found.get(f"{prefix}:{u}", 0)) for u in users}  # type: ignore[arg-type]


@pytest.mark.slow
async def test_three_processes_fire_each_timeout_once(shared_url: str) -> None:
    namespace = f"tmo-{uuid.uuid4().hex[:8]}"
    procs: list[subprocess.Popen[str]] = []
    async with open_storage(shared_url, namespace=namespace) as storage:
        declare(storage)  # this process writes conversations: it declares, it does not fire
        try:
            # 1. deadlines that fall due while no process fires
            restart_written = time.time()
            await asyncio.gather(*(FSMContext(storage, key(u)).set_state(Form.name) for u in RESTART))
            await asyncio.sleep(AFTER + 0.2)
            for _ in range(WORKERS):
                procs.append(
                    subprocess.Popen(
                        [sys.executable, __file__, shared_url, namespace],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                    )
                )
            for proc in procs:
                assert proc.stdout is not None
                line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
                assert line.strip() == "ready"

            # 2. 1,000 conversations: 300 re-written before their deadline, 200 cleared
            started: dict[int, float] = {}
            unsure: set[int] = set()

            async def write(user: int) -> None:
                ctx = FSMContext(storage, key(user))
                t0 = time.time()
                await ctx.set_state(Form.name)
                if user in REWRITTEN:
                    started[user] = time.time()
                    await ctx.update_data(re=1)
                elif user in CLEARED:
                    await ctx.clear()
                else:
                    started[user] = t0
                if time.time() - t0 > AFTER * 0.8:  # the first deadline may have passed meanwhile
                    unsure.add(user)

            for i in range(0, len(MAIN), 50):
                await asyncio.gather(*(write(u) for u in MAIN[i : i + 50]))
            expected = [u for u in [*MAIN, *RESTART] if u not in CLEARED and u not in unsure]

            async def all_fired() -> bool:
                return all(n >= 1 for n in (await _counts(storage, expected)).values())

            await _until(all_fired, "every expected timeout to fire")

            # 3. the user's own transition races the timeout
            await asyncio.gather(*(FSMContext(storage, key(u)).set_state(Form.name) for u in RACE))
            await asyncio.sleep(AFTER)
            user_moved = dict(zip(RACE, await asyncio.gather(
                *(FSMContext(storage, key(u)).transition(Form.name, Form.age) for u in RACE)
            ), strict=True))

            async def all_moved() -> bool:
                counts = await _counts(storage, list(RACE), "moved")
                return all(user_moved[u] or counts[u] for u in RACE)

            await _until(all_moved, "every raced conversation to move")

            # 4. a process dies while its handler runs: fired again elsewhere after the lease
            await FSMContext(storage, key(KILL)).set_state(Form.name)

            async def hung() -> bool:
                return await storage.get_state("log:hang") is not None

            await _until(hung, "the hanging handler")
            victim = await storage.get_state("log:hang")
            os.kill(int(victim), signal.SIGKILL)  # type: ignore[arg-type]

            async def refired() -> bool:
                return (await _counts(storage, [KILL]))[KILL] >= 2

            await _until(refired, "the killed handler's timeout to fire again")
            await asyncio.sleep(AFTER + LEASE)  # room for anything that would fire twice

            # what fired, once, and when
            counts = await _counts(storage, [*MAIN, *RESTART, KILL])
            for user in expected:
                assert counts[user] == 1, f"user {user} fired {counts[user]} times"
            for user in CLEARED:
                assert counts[user] <= (1 if user in unsure else 0), f"cleared user {user} fired"
            assert counts[KILL] == 2
            logs = await storage.get_many(
                [f"log:e:{u}:1" for u in [*expected, KILL]] + [f"log:e:{KILL}:2"]
            )
            for user in expected:
                fired_at, due_at, _, attempt, re = logs[f"log:e:{user}:1"]  # type: ignore[misc]
                assert attempt == 1
                assert fired_at >= due_at, f"user {user} fired before its deadline"
                if user in RESTART:
                    assert due_at >= restart_written + AFTER - 0.002
                    assert fired_at - due_at > 0  # late: nobody was running at the deadline
                else:
                    assert due_at >= started[user] + AFTER - 0.002, f"user {user}: early deadline"
                    assert re == (1 if user in REWRITTEN else 0)
            first, second = logs[f"log:e:{KILL}:1"], logs[f"log:e:{KILL}:2"]
            assert first[2] == victim and second[2] != victim  # type: ignore[index]
            assert (first[3], second[3]) == (1, 2)  # type: ignore[index]
            assert second[0] - first[0] >= LEASE / 2  # type: ignore[index,operator]
            # exactly one of the user and the timeout moved each raced conversation
            moved = await _counts(storage, list(RACE), "moved")
            for user in RACE:
                assert moved[user] + int(user_moved[user]) == 1, f"race user {user}"
                state = await FSMContext(storage, key(user)).get_state()
                assert state == ("Form:age" if user_moved[user] else "Form:done")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    assert proc.stdin is not None
                    proc.stdin.close()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            await storage.clear_namespace()


if __name__ == "__main__":
    asyncio.run(_worker(sys.argv[1], sys.argv[2]))
