"""The ownership lease of a session (SPEC section 6): one holder at a time, the holder named in
the error, a dead holder's lease lapsing by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from statekit import BaseStorage
from statekit.errors import SessionLockedError
from statekit.session import LeaseHolder, SessionData, SessionLease, SessionStore
from statekit.testing import RedisServer

CHILD = Path(__file__).with_name("_lease_child.py")
KEY = bytes(256)


async def test_a_second_holder_is_refused_with_host_pid_and_since(storage: BaseStorage) -> None:
    first = SessionStore(storage, "bot", lease_ttl=5)
    before = time.time()
    await first.open()
    second = SessionStore(storage, "bot", lease_ttl=5)
    with pytest.raises(SessionLockedError) as caught:
        await second.open()
    message = str(caught.value)
    assert f"pid {os.getpid()}" in message
    assert repr(socket.gethostname()) in message
    assert "since 20" in message and "UTC" in message
    holder = await second.holder()
    assert holder is not None and holder.pid == os.getpid() and before <= holder.since <= time.time()
    assert holder == first.lease.holder  # type: ignore[union-attr]
    await first.close()
    await second.open()  # released: the next one gets it
    await second.close()


async def test_release_deletes_only_our_own_lease(storage: BaseStorage) -> None:
    lease = SessionLease(storage, "lease-key", ttl=5)
    await lease.acquire()
    assert lease.held
    with pytest.raises(RuntimeError, match="already acquired"):
        await lease.acquire()
    assert await lease.release()
    assert not lease.held and await storage.get_state("lease-key") is None
    assert not await lease.release()


async def test_a_lease_that_is_not_renewed_lapses_and_can_be_taken(
    storage: BaseStorage, clock: Any
) -> None:
    # 1 s: on real time (Redis) a stall of the machine well under a second cannot let it lapse
    # before the second open below
    dead = SessionStore(storage, "bot", lease_ttl=1.0)
    await dead.open()
    assert dead.lease is not None and dead.lease._task is not None
    dead.lease._task.cancel()  # the holder "dies": nothing renews its lease any more
    with pytest.raises(SessionLockedError):
        await SessionStore(storage, "bot", lease_ttl=1.0).open()
    await clock.advance(1.2)
    heir = SessionStore(storage, "bot", lease_ttl=5)
    await heir.open()
    # the old holder notices on its next renewal: its writes are refused from then on
    assert not await dead.lease.renew()
    assert dead.lease.lost
    with pytest.raises(SessionLockedError, match=f"pid {os.getpid()}"):
        await dead.update(dc_id=2)
    await heir.close()


async def test_a_renewed_lease_outlives_its_ttl(storage: BaseStorage, clock: Any) -> None:
    # on real time (Redis) the lease is 1.2 s, renewed every 0.4 s, so that a stall of the machine
    # shorter than 0.8 s does not let it lapse; on a fake clock storage time moves by 0.1 s while
    # the renewing task (every 0.1 s of real time) gets 0.12 s
    ttl = 1.2 if clock.fake is None else 0.3
    holder = SessionStore(storage, "bot", lease_ttl=ttl)
    await holder.open()
    for _ in range(6):  # twice the TTL of storage time
        await clock.advance(ttl / 3)
        if clock.fake is not None:
            await asyncio.sleep(0.12)
    with pytest.raises(SessionLockedError):
        await SessionStore(storage, "bot", lease_ttl=ttl).open()
    assert holder.lease is not None and holder.lease.held
    await holder.close()


async def test_open_can_wait_for_the_holder_to_leave(storage: BaseStorage) -> None:
    holder = SessionStore(storage, "bot", lease_ttl=5)
    await holder.open()

    async def leave_soon() -> None:
        await asyncio.sleep(0.2)
        await holder.close()

    task = asyncio.create_task(leave_soon())
    waiter = SessionStore(storage, "bot", lease_ttl=5)
    await waiter.open(wait=3)
    await task
    assert waiter.lease is not None and waiter.lease.held
    await waiter.close()


async def test_a_retaken_lease_drops_what_the_store_cached(
    make_storage: Callable[..., BaseStorage], clock: Any
) -> None:
    storage = make_storage()
    store = SessionStore(storage, "bot", lease_ttl=1.0)  # 1 s: see the test above
    await store.open()
    await store.save(SessionData(dc_id=2, auth_key=KEY))
    assert (await store.load()).dc_id == 2  # type: ignore[union-attr]
    assert store.lease is not None and store.lease._task is not None
    store.lease._task.cancel()
    await clock.advance(1.2)
    # meanwhile another process takes the session, changes it, and leaves
    other = SessionStore(storage, "bot", lease_ttl=5)
    await other.open()
    await other.update(dc_id=5)
    await other.close()
    assert await store.lease.renew()  # free again: taken again, cache dropped
    assert (await store.load()).dc_id == 5  # type: ignore[union-attr]
    await store.close()


def test_holder_records_that_are_not_ours_are_ignored() -> None:
    assert LeaseHolder.from_value({"host": "h", "pid": "1", "since": 0, "token": "t"}) is None
    assert LeaseHolder.from_value([1, 2]) is None
    assert LeaseHolder.from_value({"host": "h", "pid": 1, "since": 1.5, "token": "t"}) == LeaseHolder(
        "h", 1, 1.5, "t"
    )


# ---------------------------------------------------------------------- real processes


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sessions.db'}?namespace=lease"
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_url')}?namespace=lease-{tmp_path.name}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return f"{server.url}?namespace=lease-{tmp_path.name}"


def _child(url: str, mode: str, wait: float = 0.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        # a 3 s lease, renewed every second: after the holder is killed it lives on for at least
        # 2 s, longer than the next child takes to start even on a busy machine
        [sys.executable, str(CHILD), url, "bot", "3.0", mode, str(wait)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_second_process_fails_fast_and_a_third_gets_in_after_the_first_is_killed(
    shared_url: str,
) -> None:
    first = _child(shared_url, "hold")
    try:
        assert first.stdout is not None
        line = first.stdout.readline().strip()
        assert line == f"HELD {first.pid}", first.stderr.read() if first.stderr else line

        started = time.monotonic()
        second = _child(shared_url, "try")
        out, err = second.communicate(timeout=60)
        assert second.returncode == 3, err
        assert out.startswith("LOCKED ")
        assert f"pid {first.pid} on host {socket.gethostname()!r} since " in out
        assert time.monotonic() - started < 20  # fails fast: no waiting on a lock

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed = time.monotonic()
        third = _child(shared_url, "try", wait=15)
        out, err = third.communicate(timeout=60)
        assert third.returncode == 0, out + err
        assert out.startswith("OPENED ")
        assert float(out.split()[1]) > 0.2  # it had to wait: the lease was not released...
        assert time.monotonic() - killed < 15  # ...it lapsed by itself (3 s ttl)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
