"""Conversation timeouts (SPEC 5.1) on every backend, in one process.

Time is real (leases are storage TTLs), but no test asserts how soon something fires: they assert
that it fired, once, never before its deadline, and that what must not fire did not, waiting with
generous bounds for completion.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from statekit import BaseStorage
from statekit.fsm import FSMContext, State, StatesGroup, StorageKey, TimeoutEvent, Timeouts

AFTER = 0.3
WAIT = 30.0  # generous bound for "eventually"; tests finish as soon as the condition holds


class Form(StatesGroup):
    name = State()
    age = State()
    done = State()


CORE_ONLY = ("sqlite-memory", "redis-cluster", "redis-sentinel")
CORE = {
    "test_fires_once_after_the_deadline_with_what_the_conversation_held",
    "test_a_write_re_arms_and_the_old_deadline_never_fires",
    "test_leaving_the_state_or_clearing_cancels",
    "test_a_timeout_racing_a_message_moves_the_conversation_once",
    "test_deadlines_due_while_nothing_ran_fire_on_start_late",
}


@pytest.fixture
async def tstorage(
    make_storage: Callable[..., BaseStorage], backend: str, request: pytest.FixtureRequest
) -> BaseStorage:
    """A started storage with a real clock (leases expire in real time).

    On the backends that only repeat another's code path (SQLite in memory) or are slow to drive
    (cluster, Sentinel), only the ``CORE`` tests run (time budget of the suite).
    """
    if backend in CORE_ONLY and request.node.originalname not in CORE:
        pytest.skip(f"the full timeout suite runs on the other backends; core tests run on {backend}")
    if backend in ("memory", "sqlite-file", "sqlite-memory", "postgres"):
        storage = make_storage(clock=time.monotonic if backend == "memory" else time.time)
    else:
        storage = make_storage()
    await storage.start()
    return storage


def key(user: int) -> StorageKey:
    return StorageKey(7, user, user)


async def eventually(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def quiet(timeouts: Timeouts, seconds: float) -> None:
    """Let ``timeouts`` poll for at least ``seconds`` and at least three polls."""
    await asyncio.sleep(max(seconds, 3 * timeouts.poll_interval))


async def test_fires_once_after_the_deadline_with_what_the_conversation_held(
    tstorage: BaseStorage,
) -> None:
    timeouts = Timeouts(tstorage, poll_interval=0.05)
    events: list[TimeoutEvent] = []

    @timeouts.on(Form.name, after=AFTER)
    async def expired(event: TimeoutEvent) -> None:
        events.append(event)

    ctx = FSMContext(tstorage, key(1))
    async with timeouts:
        written = time.time()
        await ctx.set_state(Form.name)
        await ctx.update_data(name="Ann")
        await eventually(lambda: len(events) == 1, "the timeout")
        await quiet(timeouts, AFTER)
    assert len(events) == 1
    event = events[0]
    assert event.key == key(1)
    assert (event.state, event.data, event.attempt) == ("Form:name", {"name": "Ann"}, 1)
    assert event.due_at >= written + AFTER - 0.002
    assert event.fired_at >= event.due_at
    assert event.late == pytest.approx(event.fired_at - event.due_at)
    assert await FSMContext(tstorage, key(1)).get_record() == (await ctx.get_record())


async def test_a_write_re_arms_and_the_old_deadline_never_fires(tstorage: BaseStorage) -> None:
    timeouts = Timeouts(tstorage, poll_interval=0.05)
    fired: list[tuple[dict[str, Any], float]] = []

    @timeouts.on(Form.name, after=0.4)
    async def expired(event: TimeoutEvent) -> None:
        fired.append((event.data, event.due_at))

    ctx = FSMContext(tstorage, key(2))
    async with timeouts:
        await ctx.set_state(Form.name)
        first_due = time.time() + 0.4
        await asyncio.sleep(0.2)
        rewritten = time.time()
        await ctx.update_data(n=1)  # re-arms: since="write"
        await eventually(lambda: len(fired) == 1, "the re-armed timeout")
        await quiet(timeouts, 0.3)
    assert len(fired) == 1
    data, due = fired[0]
    assert data == {"n": 1}
    assert due >= rewritten + 0.4 - 0.002 > first_due


async def test_leaving_the_state_or_clearing_cancels(tstorage: BaseStorage) -> None:
    timeouts = Timeouts(tstorage, poll_interval=0.05)
    fired: list[StorageKey] = []

    @timeouts.on(Form.name, after=AFTER)
    async def expired(event: TimeoutEvent) -> None:
        fired.append(event.key)

    async with timeouts:
        for user in (3, 4, 5, 6):
            await FSMContext(tstorage, key(user)).set_state(Form.name)
        await FSMContext(tstorage, key(3)).set_state(Form.age)  # left the state
        await FSMContext(tstorage, key(4)).clear()
        await FSMContext(tstorage, key(5)).set_state(None)
        await eventually(lambda: key(6) in fired, "the untouched conversation's timeout")
        await quiet(timeouts, 0.4)
    assert fired == [key(6)]


async def test_since_entry_counts_from_entering_the_state(tstorage: BaseStorage) -> None:
    timeouts = Timeouts(tstorage, poll_interval=0.05)
    fired: list[TimeoutEvent] = []

    @timeouts.on(Form.age, after=0.5, since="entry")
    async def expired(event: TimeoutEvent) -> None:
        fired.append(event)

    ctx = FSMContext(tstorage, key(8))
    async with timeouts:
        before = time.time()
        await ctx.set_state(Form.age)
        entered = time.time()
        await asyncio.sleep(0.2)
        await ctx.update_data(a=1)  # a write in the state: not an entry
        await ctx.set_state(Form.age)  # set_state to the same state: not an entry
        await eventually(lambda: len(fired) == 1, "the entry timeout")
        await quiet(timeouts, 0.3)
    assert len(fired) == 1
    # counted from the entering write, not from the later writes (which came >= 0.2 s after it)
    assert before + 0.5 - 0.002 <= fired[0].due_at <= entered + 0.5 + 0.002
    assert fired[0].data == {"a": 1}
    # the event's transition applies: nothing was written after the event read the conversation
    assert await fired[0].transition(Form.done) is True
    assert await ctx.get_state() == "Form:done"


async def test_transition_applies_only_if_nothing_was_written_since(
    tstorage: BaseStorage,
) -> None:
    timeouts = Timeouts(tstorage, poll_interval=0.05)
    events: list[TimeoutEvent] = []
    gate = asyncio.Event()
    results: list[bool] = []

    @timeouts.on(Form.name, after=AFTER)
    async def expired(event: TimeoutEvent) -> None:
        events.append(event)
        await gate.wait()
        results.append(await event.transition(Form.done))

    ctx = FSMContext(tstorage, key(9))
    async with timeouts:
        await ctx.set_state(Form.name)
        await eventually(lambda: len(events) == 1, "the handler to start")
        await ctx.update_data(answer="late")  # the user's message lands first
        gate.set()
        await eventually(lambda: len(results) == 1, "the handler to finish")
    assert results == [False]
    assert await ctx.get_state() == "Form:name"  # the user's write stands
    assert await events[0].clear() is False


async def test_a_timeout_racing_a_message_moves_the_conversation_once(
    tstorage: BaseStorage,
) -> None:
    timeouts = Timeouts(tstorage, poll_interval=0.02)
    moved: dict[int, str] = {}

    @timeouts.on(Form.name, after=0.05)
    async def expired(event: TimeoutEvent) -> None:
        if await event.transition(Form.done):
            moved[event.key.user_id] = "timeout"

    async def user_answers(user: int) -> None:
        if await FSMContext(tstorage, key(user)).transition(Form.name, Form.age):
            moved[user] = "user"

    users = range(100, 140)
    async with timeouts:
        for user in users:
            await FSMContext(tstorage, key(user)).set_state(Form.name)
        await asyncio.sleep(0.05)
        await asyncio.gather(*(user_answers(u) for u in users))
        await eventually(lambda: len(moved) == len(users), "every conversation to move")
        await quiet(timeouts, 0.2)
    for user in users:
        state = await FSMContext(tstorage, key(user)).get_state()
        assert state == {"timeout": "Form:done", "user": "Form:age"}[moved[user]]


async def test_a_raising_handler_is_retried_then_dropped_with_one_error_log(
    tstorage: BaseStorage, caplog: pytest.LogCaptureFixture
) -> None:
    timeouts = Timeouts(tstorage, poll_interval=0.05, max_attempts=3)
    timeouts.retry_base = 0.1
    attempts: dict[int, list[int]] = {10: [], 11: []}

    @timeouts.on(Form.name, after=0.1)
    async def expired(event: TimeoutEvent) -> None:
        attempts[event.key.user_id].append(event.attempt)
        if event.key.user_id == 10 or event.attempt < 2:
            raise RuntimeError("boom")

    caplog.set_level(logging.WARNING, logger="statekit.fsm.timeouts")
    async with timeouts:
        await FSMContext(tstorage, key(10)).update_data(secret="s3cr3t-value")
        await FSMContext(tstorage, key(10)).set_state(Form.name)
        await FSMContext(tstorage, key(11)).set_state(Form.name)
        await eventually(
            lambda: len(attempts[10]) == 3 and len(attempts[11]) == 2, "the retries"
        )
        await eventually(
            lambda: any(r.levelno == logging.ERROR for r in caplog.records), "the error log"
        )
        await quiet(timeouts, 0.5)
    assert attempts == {10: [1, 2, 3], 11: [1, 2]}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert key(10).storage_key in message and "3 attempts" in message
    assert all("s3cr3t" not in r.getMessage() for r in caplog.records)


async def test_deadlines_due_while_nothing_ran_fire_on_start_late(tstorage: BaseStorage) -> None:
    timeouts = Timeouts(tstorage, poll_interval=0.05)
    fired: list[TimeoutEvent] = []

    @timeouts.on(Form.name, after=0.1)
    async def expired(event: TimeoutEvent) -> None:
        fired.append(event)

    for user in range(20, 30):
        await FSMContext(tstorage, key(user)).set_state(Form.name)
    await asyncio.sleep(0.4)  # all due, nobody polling
    async with timeouts:
        await eventually(lambda: len(fired) == 10, "the missed timeouts")
        await quiet(timeouts, 0.3)
    assert sorted(e.key.user_id for e in fired) == list(range(20, 30))
    assert all(e.late > 0 and e.attempt == 1 for e in fired)


async def test_max_late_drops_instead_of_firing(tstorage: BaseStorage) -> None:
    timeouts = Timeouts(tstorage, poll_interval=0.05, max_late=0.2)
    fired: list[int] = []

    @timeouts.on(Form.name, after=0.1)
    async def expired(event: TimeoutEvent) -> None:
        fired.append(event.key.user_id)

    await FSMContext(tstorage, key(31)).set_state(Form.name)
    await asyncio.sleep(0.45)  # 0.35 s late, over max_late
    async with timeouts:
        await FSMContext(tstorage, key(32)).set_state(Form.name)  # fires in time
        await eventually(lambda: 32 in fired, "the in-time timeout")
        await quiet(timeouts, 0.3)
    assert fired == [32]


async def test_stop_waits_for_running_handlers_then_cancels(tstorage: BaseStorage) -> None:
    timeouts = Timeouts(tstorage, poll_interval=0.05, lease=0.5)
    started = asyncio.Event()
    finished: list[str] = []

    @timeouts.on(Form.name, after=0.05)
    async def expired(event: TimeoutEvent) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            finished.append("cancelled")
            raise

    await timeouts.start()
    await FSMContext(tstorage, key(40)).set_state(Form.name)
    await asyncio.wait_for(started.wait(), WAIT)
    await asyncio.wait_for(timeouts.stop(), WAIT)
    assert finished == ["cancelled"]
    assert not timeouts.started


async def test_handlers_get_provided_values_and_the_context(tstorage: BaseStorage) -> None:
    timeouts = Timeouts(tstorage, poll_interval=0.05)
    timeouts.provide("bot", lambda event: f"bot-for-{event.key.user_id}")
    got: list[tuple[str, str | None]] = []

    @timeouts.on(Form.name, after=0.05)
    async def expired(event: TimeoutEvent, bot: str) -> None:
        await event.context.update_data(expired=True)  # a write through the context
        got.append((bot, await event.context.get_state()))

    async with timeouts:
        await FSMContext(tstorage, key(41)).set_state(Form.name)
        await eventually(lambda: len(got) >= 1, "the handler")
        await quiet(timeouts, 0.3)  # its own write re-armed: it fires again, later
    assert got[0] == ("bot-for-41", "Form:name")
    assert await FSMContext(tstorage, key(41)).get_data() == {"expired": True}


async def test_without_declared_timeouts_records_are_unchanged(tstorage: BaseStorage) -> None:
    ctx = FSMContext(tstorage, key(50))
    await ctx.set_state(Form.name)
    assert await tstorage.get_state(key(50).storage_key) == {"state": "Form:name", "data": {}}
    assert await tstorage.list_keys() == [key(50).storage_key]


async def test_a_state_without_a_timeout_carries_no_timer(tstorage: BaseStorage) -> None:
    timeouts = Timeouts(tstorage)

    @timeouts.on(Form.name, after=60)
    async def expired(event: TimeoutEvent) -> None:  # pragma: no cover - never due
        pass

    ctx = FSMContext(tstorage, key(51))
    await ctx.set_state(Form.name)
    record = await tstorage.get_state(key(51).storage_key)
    assert record["state"] == "Form:name" and len(record["t"]) == 3
    await ctx.set_state(Form.age)
    assert await tstorage.get_state(key(51).storage_key) == {"state": "Form:age", "data": {}}
    assert await ctx.get_record() == (await ctx.get_record())


def test_bad_declarations_are_refused(make_storage: Callable[..., BaseStorage]) -> None:
    storage = make_storage()
    timeouts = Timeouts(storage)

    async def handler(event: TimeoutEvent) -> None:  # pragma: no cover - never called
        pass

    def plain(event: TimeoutEvent) -> None:  # pragma: no cover - never called
        pass

    with pytest.raises(ValueError, match="since"):
        timeouts.on(Form.name, after=1, since="read")
    with pytest.raises(ValueError, match="after"):
        timeouts.on(Form.name, after=-1)
    with pytest.raises(TypeError, match="after"):
        timeouts.on(Form.name, after="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="state"):
        timeouts.on(None, after=1)
    with pytest.raises(TypeError, match="async def"):
        timeouts.on(Form.name, after=1)(plain)  # type: ignore[arg-type]
    timeouts.on(Form.name, after=1)(handler)
    with pytest.raises(ValueError, match="already has a timeout"):
        Timeouts(storage).on("Form:name", after=2)(handler)
    with pytest.raises(ValueError, match="lease"):
        Timeouts(storage, lease=0)
    with pytest.raises(ValueError, match="max_attempts"):
        Timeouts(storage, max_attempts=0)
    with pytest.raises(TypeError, match="statekit storage"):
        Timeouts(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="event"):
        timeouts.provide("event", lambda e: None)




async def test_a_crowded_second_is_indexed_and_every_deadline_fires_once(
    tstorage: BaseStorage,
) -> None:
    timeouts = Timeouts(tstorage, poll_interval=0.05)
    fired: dict[int, int] = {}

    @timeouts.on(Form.name, after=0.2)
    async def expired(event: TimeoutEvent) -> None:
        fired[event.key.user_id] = fired.get(event.key.user_id, 0) + 1

    users = range(1000, 2100)  # written concurrently: appends of one process go together
    await asyncio.gather(*(FSMContext(tstorage, key(u)).set_state(Form.name) for u in users))
    batches = await tstorage.get_many(await tstorage.list_keys("tmo:e:*"))
    indexed = {e[0] for batch in batches.values() for e in batch}  # type: ignore[union-attr]
    assert indexed == {key(u).storage_key for u in users}  # (an append that landed late is repeated)
    assert len(batches) < len(users)  # concurrent appends were written together
    counts = await tstorage.get_many(await tstorage.list_keys("tmo:b:*"))
    assert sum(counts.values()) == len(batches)  # type: ignore[arg-type]
    async with timeouts:
        await eventually(lambda: len(fired) == len(users), "every deadline")
        await quiet(timeouts, 0.3)
    assert set(fired) == set(users) and set(fired.values()) == {1}


def test_every_conversation_key_reads_back_from_its_storage_key() -> None:
    from statekit.fsm.timeouts import parse_key

    keys = [
        StorageKey(1, -100123, 42),
        StorageKey(-5, 6, 7, thread_id=99, business_connection_id="a:b{c}%d", destiny="x:y"),
        StorageKey(2**63 - 1, -(2**63), 0, thread_id=0, destiny="default"),
    ]
    for k in keys:
        assert parse_key(k.storage_key) == k
    assert parse_key("user:1") is None
    assert parse_key("fsm:{1:2}") is None


async def test_more_due_than_handler_room_all_fire_once_oldest_first(tstorage: BaseStorage) -> None:
    timeouts = Timeouts(tstorage, poll_interval=0.05)
    timeouts.max_running = 3
    fired: list[int] = []

    @timeouts.on(Form.name, after=0.05)
    async def expired(event: TimeoutEvent) -> None:
        fired.append(event.key.user_id)
        await asyncio.sleep(0.01)

    for user in range(60, 90):  # one at a time: each falls due after the one before
        await FSMContext(tstorage, key(user)).set_state(Form.name)
    await asyncio.sleep(0.1)
    async with timeouts:
        await eventually(lambda: len(fired) >= 30, "every timeout")
        await quiet(timeouts, 0.3)
    assert sorted(fired) == list(range(60, 90))
    assert set(fired[:3]) == {60, 61, 62}  # the first room goes to the oldest deadlines


async def test_a_writer_lists_itself_again_when_the_store_lost_the_list(
    tstorage: BaseStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from statekit.fsm import _timers

    timeouts = Timeouts(tstorage, poll_interval=0.05)
    fired: list[int] = []

    @timeouts.on(Form.name, after=0.05)
    async def expired(event: TimeoutEvent) -> None:
        fired.append(event.key.user_id)

    await FSMContext(tstorage, key(70)).set_state(Form.age)  # lists this process
    await tstorage.delete_many(["tmo:writers", "tmo:lw"])  # e.g. a flushed store
    monkeypatch.setattr(_timers, "_RECHECK_S", 0.0)  # (every minute otherwise)
    async with timeouts:
        await FSMContext(tstorage, key(71)).set_state(Form.name)
        await eventually(lambda: fired == [71], "the timeout armed after the list was lost")
