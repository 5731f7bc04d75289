"""No statekit storage keeps a finished program alive: a program whose ``main()`` returns without
stopping its storage (as the README's kurigram quickstart does) exits. Each case runs in its own
Python process; the bound is generous (a hang is forever, a loaded machine is seconds)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from statekit.testing import RedisServer

PROGRAM = textwrap.dedent(
    """
    import asyncio, sys
    from statekit import open_storage
    from statekit.fsm import FSMContext, StorageKey

    async def main() -> None:
        storage = open_storage(sys.argv[1])
        await storage.set_state("k", 1)
        await FSMContext(storage, StorageKey(1, 2, 3)).update_data(a=1)
        if sys.argv[3] == "adapters":  # the README's kurigram quickstart, and aiogram's adapter
            from aiogram.fsm.storage.base import StorageKey as AiogramKey
            from statekit.adapters.aiogram import AiogramStorage
            from statekit.adapters.pyrogram import PyrogramFSM, PyrogramStorage

            await AiogramStorage(storage).get_state(AiogramKey(1, 2, 3))
            session = PyrogramStorage(storage, "bot")
            await session.open()      # takes the session lease, as a connecting client does
            await session.dc_id(2)
            await session.save()
            await session.close()     # kurigram's stop(): the statekit storage is left running
            PyrogramFSM(storage)
        # the storage is never stopped

    if sys.argv[2] == "asyncio.run":
        asyncio.run(main())
    else:                             # kurigram's app.run() drives its own loop like this
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
    print("main returned", flush=True)
    """
)


def run_program(tmp_path: Path, url: str, runner: str, what: str = "plain") -> None:
    script = tmp_path / "bot.py"
    script.write_text(PROGRAM)
    try:
        done = subprocess.run(
            [sys.executable, str(script), url, runner, what],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the program did not exit after main() returned (output: {exc.stdout!r})")
    assert done.returncode == 0, done.stderr
    assert "main returned" in done.stdout


@pytest.mark.parametrize(
    ("where", "runner"),
    [("file", "asyncio.run"), ("file", "run_until_complete"), ("memory", "asyncio.run")],
)
def test_unstopped_sqlite_storage_lets_the_program_exit(
    tmp_path: Path, runner: str, where: str
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}" if where == "file" else "sqlite://:memory:"
    run_program(tmp_path, url, runner, "adapters" if runner == "run_until_complete" else "plain")


def test_unstopped_redis_storage_lets_the_program_exit(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    run_program(tmp_path, redis_server.url, "run_until_complete")


def test_unstopped_memory_storage_lets_the_program_exit(tmp_path: Path) -> None:
    run_program(tmp_path, "memory://", "asyncio.run")
