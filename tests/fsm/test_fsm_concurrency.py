"""Concurrent writers of one conversation on every backend: no update is ever lost, transitions
happen once, reads never see a torn record."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from statekit import BaseStorage
from statekit.fsm import FSMConflictError, FSMContext, FSMRecord, StorageKey

KEY = StorageKey(bot_id=7, chat_id=-100, user_id=5)
NOT_SHARED = ("memory", "sqlite-memory")  # two storage objects of these never share data


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "cas-only"])
async def test_100_concurrent_update_data_all_land(storage: BaseStorage, coalesce: bool) -> None:
    ctx = FSMContext(storage, KEY, coalesce=coalesce)
    await ctx.set_state("Form:busy")
    results = await asyncio.gather(*(ctx.update_data({f"k{i}": i}) for i in range(100)))
    for i, result in enumerate(results):
        assert result[f"k{i}"] == i  # each caller sees its own update in its result
    record = await ctx.get_record()
    assert record == FSMRecord("Form:busy", {f"k{i}": i for i in range(100)})


async def test_100_concurrent_writers_through_separate_contexts(storage: BaseStorage) -> None:
    # aiogram makes a new context per update: coalescing and memory are per storage, not per context
    async def write(i: int) -> None:
        await FSMContext(storage, KEY).update_data({f"k{i}": i})

    await asyncio.gather(*(write(i) for i in range(100)))
    assert await FSMContext(storage, KEY).get_data() == {f"k{i}": i for i in range(100)}


async def test_writers_in_two_storages_sharing_one_store(
    backend: str, make_storage: Callable[..., BaseStorage]
) -> None:
    if backend in NOT_SHARED:
        pytest.skip(f"two {backend} storages do not share data")
    first = make_storage()
    second = make_storage(namespace=first.namespace)  # another "process" on the same store
    contexts = [FSMContext(first, KEY), FSMContext(second, KEY)]
    await asyncio.gather(
        *(contexts[i % 2].update_data({f"k{i}": i}) for i in range(100))
    )
    assert await contexts[0].get_data() == {f"k{i}": i for i in range(100)}
    assert await contexts[1].get_data() == {f"k{i}": i for i in range(100)}


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "cas-only"])
async def test_100_concurrent_transitions_succeed_exactly_once(
    storage: BaseStorage, coalesce: bool
) -> None:
    ctx = FSMContext(storage, KEY, coalesce=coalesce)
    await ctx.set_state("A")
    await ctx.update_data(kept=True)
    outcomes = await asyncio.gather(*(ctx.transition("A", "B") for _ in range(100)))
    assert outcomes.count(True) == 1
    assert await ctx.get_record() == FSMRecord("B", {"kept": True})


async def test_transitions_from_two_storages_succeed_exactly_once(
    backend: str, make_storage: Callable[..., BaseStorage]
) -> None:
    if backend in NOT_SHARED:
        pytest.skip(f"two {backend} storages do not share data")
    first = make_storage()
    second = make_storage(namespace=first.namespace)
    await FSMContext(first, KEY).set_state("A")
    contexts = [FSMContext(first, KEY), FSMContext(second, KEY)]
    outcomes = await asyncio.gather(*(contexts[i % 2].transition("A", "B") for i in range(100)))
    assert outcomes.count(True) == 1
    assert await contexts[1].get_state() == "B"


async def test_reads_never_see_a_torn_record(storage: BaseStorage) -> None:
    writer = FSMContext(storage, KEY)
    seen: list[FSMRecord] = []
    stop = asyncio.Event()

    async def write(n: int) -> None:
        await writer.update(lambda r: FSMRecord(f"S{n}", {"n": n, "tag": f"t{n}"}))

    async def read() -> None:
        reader = FSMContext(storage, KEY)
        while not stop.is_set():
            seen.append(await reader.get_record())
            await asyncio.sleep(0)

    readers = [asyncio.create_task(read()) for _ in range(4)]
    for round_ in range(10):
        await asyncio.gather(*(write(round_ * 10 + i) for i in random.sample(range(10), 10)))
    stop.set()
    await asyncio.gather(*readers)
    assert len(seen) > 10
    for record in seen:
        if record.state is None:
            assert record.data == {}
        else:
            n = record.data["n"]
            assert record.state == f"S{n}" and record.data["tag"] == f"t{n}"


async def test_cancelled_writers_leave_the_conversation_usable(storage: BaseStorage) -> None:
    ctx = FSMContext(storage, KEY)
    tasks = [asyncio.create_task(ctx.update_data({f"k{i}": i})) for i in range(50)]
    await asyncio.sleep(0)
    for task in tasks[10:20]:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    landed = await ctx.get_data()
    for i, outcome in enumerate(done):
        if not isinstance(outcome, BaseException):
            assert landed[f"k{i}"] == i  # every call that returned has landed
    assert await ctx.update_data(after=1) == {**landed, "after": 1}


async def test_retry_bound_raises_a_clear_error(storage: BaseStorage) -> None:
    ctx = FSMContext(storage, KEY, max_tries=1)
    await ctx.update_data(a=1)
    # another writer changes the record behind this context's memory: its one try conflicts
    await storage.set_state(KEY.storage_key, {"state": None, "data": {"other": 1}})
    with pytest.raises(FSMConflictError, match=r"fsm:\{7:-100:5:::default\}"):
        await ctx.update_data(b=2)
    assert await storage.get_state(KEY.storage_key) == {"state": None, "data": {"other": 1}}
    assert await ctx.update_data(b=2) == {"other": 1, "b": 2}  # its read refreshed the memory


_CHILD = """
import asyncio, sys
from statekit import open_storage
from statekit.fsm import FSMContext, StorageKey

async def main(url, namespace, tag):
    async with open_storage(url, namespace=namespace) as storage:
        ctx = FSMContext(storage, StorageKey(7, -100, 5))
        await asyncio.gather(*(ctx.update_data({f"{tag}-{i}": i}) for i in range(40)))
        ok = await ctx.transition("A", "B")
        print("won" if ok else "lost")

asyncio.run(main(*sys.argv[1:]))
"""


async def test_real_processes_share_one_conversation(
    backend: str, make_storage: Callable[..., BaseStorage], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite-file":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    elif backend == "redis":
        url = request.getfixturevalue("redis_server").url
    elif backend == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        pytest.skip("processes share a SQLite file, a real Redis or PostgreSQL")
    storage = make_storage()
    await FSMContext(storage, KEY).set_state("A")
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, url, storage.namespace, f"p{n}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for n in range(3)
    ]
    outputs = [await child.communicate() for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err.decode()
    assert sorted(out.decode().strip() for out, _ in outputs) == ["lost", "lost", "won"]
    data = await FSMContext(storage, KEY).get_data()
    assert data == {f"p{n}-{i}": i for n in range(3) for i in range(40)}
    assert await FSMContext(storage, KEY).get_state() == "B"


async def test_concurrent_writers_share_few_round_trips(backend: str, storage: BaseStorage) -> None:
    if backend == "memory":
        pytest.skip("memory writes complete without yielding, so there is nothing to coalesce")
    ctx = FSMContext(storage, KEY)
    await ctx.get_state()  # the record is now remembered
    real = storage.compare_and_set
    calls = 0

    async def counting(*args: Any, **kwargs: Any) -> bool:
        nonlocal calls
        calls += 1
        return await real(*args, **kwargs)

    storage.compare_and_set = counting  # type: ignore[method-assign]
    await asyncio.gather(*(ctx.update_data({f"k{i}": i}) for i in range(50)))
    assert calls <= 3  # the first writer, then everyone who queued behind it, in one batch
    assert len(await ctx.get_data()) == 50
