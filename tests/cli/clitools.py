"""Helpers of the command-line tests: run ``statekit`` as a subprocess, check its errors, fill and
read stores in this process."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

from statekit import open_storage

Run = Callable[..., subprocess.CompletedProcess[str]]


def statekit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "statekit.cli", *args]


def interruptible() -> None:
    """``preexec_fn`` of a command a test interrupts with SIGINT: a shell starts background jobs
    with SIGINT ignored, a child inherits that, and Python then raises no KeyboardInterrupt, so
    a suite run in the background would see the command finish instead."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The process failed with exactly one line on stderr, no traceback; return that line."""
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("statekit: error: "), line
    for needle in needles:
        assert needle in line, line
    return line


def load_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def fill(url: str, values: Mapping[str, Any], ttl: float | None = None) -> None:
    """Write ``values`` into the store at ``url`` (in this process)."""

    async def main() -> None:
        async with open_storage(url) as storage:
            await storage.set_many(dict(values), ttl=ttl)

    asyncio.run(main())


def dump(url: str) -> dict[str, tuple[Any, float | None]]:
    """Every key of the store at ``url`` with (value, remaining TTL)."""

    async def main() -> dict[str, tuple[Any, float | None]]:
        async with open_storage(url) as storage:
            out = {}
            for key in await storage.list_keys():
                out[key] = (await storage.get_state(key), await storage.get_ttl(key))
            return out

    return asyncio.run(main())


def clear(url: str) -> None:
    async def main() -> None:
        async with open_storage(url) as storage:
            await storage.clear_namespace()

    asyncio.run(main())
