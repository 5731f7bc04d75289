"""Worker processes for cross-process tests: ``python -m statekit.testing.workers JOB URL KEY N``.

Jobs: ``increment`` (N increments of KEY) and ``cas`` (N compare-and-set retry loops adding 1 to
the ``{"n": int}`` record under KEY). Each worker waits for the file named by ``--go`` to exist
(if given) so that all workers start together, then prints ``done <retries>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from statekit.storage.url import open_storage

__all__ = ["main", "run_job"]


async def run_job(job: str, url: str, key: str, count: int) -> int:
    """Run ``job`` ``count`` times against ``url``; return how many CAS retries it needed."""
    retries = 0
    async with open_storage(url) as storage:
        for _ in range(count):
            if job == "increment":
                await storage.increment(key)
            elif job == "cas":
                while True:
                    current = await storage.get_state(key)
                    new = {"n": (current or {"n": 0})["n"] + 1}
                    if await storage.compare_and_set(key, new, expected=current):
                        break
                    retries += 1
            else:
                raise ValueError(f"unknown job {job!r}")
    return retries


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point of a worker process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job", choices=["increment", "cas"])
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("count", type=int)
    parser.add_argument("--go", help="wait until this file exists before starting")
    args = parser.parse_args(argv)
    if args.go:
        deadline = time.monotonic() + 30
        while not os.path.exists(args.go) and time.monotonic() < deadline:
            time.sleep(0.005)
    retries = asyncio.run(run_job(args.job, args.url, args.key, args.count))
    print(f"done {retries}", flush=True)


if __name__ == "__main__":
    main()
