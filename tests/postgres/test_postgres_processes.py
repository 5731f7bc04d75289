"""Four processes on one PostgreSQL database: 100 concurrent ``update_data`` calls on one
conversation in each all land (the 4 x 2,000 increments and CAS counters are in
tests/contract/test_multiprocess.py)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest

from statekit.fsm import FSMContext, StorageKey
from statekit.storage.postgres import PostgresStorage

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PROCESSES = 4
KEY = StorageKey(bot_id=7, chat_id=-100, user_id=5)

_CHILD = """
import asyncio, os, sys, time
from statekit.fsm import FSMContext, StorageKey
from statekit.storage.postgres import PostgresStorage

async def main(url, namespace, tag, go):
    async with PostgresStorage.from_url(url, namespace=namespace) as storage:
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        ctx = FSMContext(storage, StorageKey(7, -100, 5))
        results = await asyncio.gather(*(ctx.update_data({f"{tag}-{i}": i}) for i in range(100)))
        assert all(r[f"{tag}-{i}"] == i for i, r in enumerate(results))
        print("done")

asyncio.run(main(*sys.argv[1:]))
"""


async def test_100_concurrent_update_data_in_each_of_4_processes(postgres_url: str, tmp_path: Path) -> None:
    namespace = f"fsm{uuid.uuid4().hex[:8]}"
    go = tmp_path / "go"
    async with PostgresStorage.from_url(postgres_url, namespace=namespace) as storage:
        await FSMContext(storage, KEY).set_state("Form:busy")
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", _CHILD, postgres_url, namespace, f"p{n}", str(go),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            for n in range(PROCESSES)
        ]
        go.touch()
        outputs = [await child.communicate() for child in children]
        for child, (out, err) in zip(children, outputs, strict=True):
            assert child.returncode == 0, err.decode()
            assert out.decode().strip() == "done"
        ctx = FSMContext(storage, KEY)
        assert await ctx.get_state() == "Form:busy"
        assert await ctx.get_data() == {f"p{n}-{i}": i for n in range(PROCESSES) for i in range(100)}
        await storage.clear_namespace()
