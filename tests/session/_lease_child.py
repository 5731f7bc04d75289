"""A process that opens one session, for the lease tests: ``python _lease_child.py URL NAME TTL
MODE [WAIT]``. MODE ``hold`` opens it, prints ``HELD <pid>`` and sleeps until killed; MODE ``try``
opens it (waiting up to WAIT seconds), prints ``OPENED <seconds>`` or ``LOCKED <message>``."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from statekit import open_storage
from statekit.errors import SessionLockedError
from statekit.session import SessionStore


async def main(url: str, name: str, ttl: float, mode: str, wait: float) -> int:
    async with open_storage(url) as storage:
        store = SessionStore(storage, name, lease_ttl=ttl)
        started = time.monotonic()
        try:
            await store.open(wait=wait)
        except SessionLockedError as exc:
            print(f"LOCKED {exc}", flush=True)
            return 3
        if mode == "hold":
            print(f"HELD {os.getpid()}", flush=True)
            await asyncio.sleep(3600)
        print(f"OPENED {time.monotonic() - started:.3f}", flush=True)
        await store.close()
    return 0


if __name__ == "__main__":
    url, name, ttl, mode = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    wait = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    sys.exit(asyncio.run(main(url, name, ttl, mode, wait)))
