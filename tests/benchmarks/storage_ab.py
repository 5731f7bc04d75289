"""Same-run A/B of get / set / CAS / increment on every backend: this tree against another
checkout of statekit (the previous commit), interleaved round by round.

Run: ``python -m tests.benchmarks.storage_ab --base /path/to/old/checkout [--rounds 5]
[--seconds 0.4]``. Each round runs, per backend (memory, sqlite file, redis on one throwaway
redis-server), one subprocess per tree at the same time, so that both meet the same background
load (the machine is shared); the table gives the best round of each side and the median over
rounds of the per-round ratio, which is what to read on a loaded machine. ``cas`` is a successful create (expected=None) followed by a delete of that key
(pairs/s); the rows compare statekit with itself, so the pairing costs both sides alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from statekit.testing import RedisServer

HERE = Path(__file__).resolve().parents[2]
BACKENDS = ("memory", "sqlite", "redis")
OPS = ("get", "set", "cas", "increment")
TASKS = (1, 100)

WORKER = r"""
import asyncio, json, sys, time
import statekit
from statekit import MemoryStorage, SQLiteStorage, RedisStorage
backend, seconds, where = sys.argv[1], float(sys.argv[2]), sys.argv[3]
VALUE = {"state": "Form:name", "data": {"name": "Ada", "age": 36, "tags": ["a", "b"]}}
KEYS = [f"k{i}" for i in range(1024)]

async def rate(op, tasks):
    deadline = time.perf_counter() + seconds
    async def worker(w):
        n, i = 0, w
        while time.perf_counter() < deadline:
            await op(i)
            n += 1
            i += tasks
        return n
    start = time.perf_counter()
    done = sum(await asyncio.gather(*(worker(w) for w in range(tasks))))
    return done / (time.perf_counter() - start)

async def main():
    if backend == "memory":
        s = MemoryStorage(namespace="ab")
    elif backend == "sqlite":
        s = SQLiteStorage(where, namespace="ab")
    else:
        s = RedisStorage(where, namespace="ab-" + statekit.__file__[-40:].replace("/", "_"))
    await s.start()
    await s.set_many(dict.fromkeys(KEYS, VALUE))
    async def cas(i):
        key = f"c{i & 1023}"
        await s.compare_and_set(key, i, expected=None)
        await s.delete_state(key)
    ops = {
        "get": lambda i: s.get_state(KEYS[i & 1023]),
        "set": lambda i: s.set_state(KEYS[i & 1023], VALUE),
        "cas": cas,
        "increment": lambda i: s.increment(f"n{i & 1023}"),
    }
    out = {}
    for tasks in (1, 100):
        for name, op in ops.items():
            out[f"{name}/{tasks}"] = await rate(op, tasks)
    await s.clear_namespace()
    await s.stop()
    print(json.dumps({"file": statekit.__file__, "rates": out}))

asyncio.run(main())
"""


def start(tree: Path, backend: str, seconds: float, where: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, backend, str(seconds), where],
        env=env, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(proc: subprocess.Popen[str], tree: Path) -> dict[str, float]:
    out, err = proc.communicate(timeout=600)
    if proc.returncode:
        raise RuntimeError(err)
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["file"].startswith(str(tree)), f"{doc['file']} is not from {tree}"
    return doc["rates"]  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base", required=True, help="checkout of the statekit to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.4)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    trees = {"new": HERE, "base": Path(args.base).resolve()}
    best: dict[tuple[str, str, str], float] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="statekit-ab-"))
    with RedisServer() as server:
        for n in range(args.rounds):
            order = ["new", "base"] if n % 2 == 0 else ["base", "new"]
            for backend in backends:
                procs = {
                    side: start(
                        trees[side], backend, args.seconds,
                        server.url if backend == "redis" else str(tmp / f"{side}-{n}.db"),
                    )
                    for side in order
                }
                rates = {side: finish(proc, trees[side]) for side, proc in procs.items()}
                for row in rates["new"]:
                    ratios.setdefault((backend, row), []).append(rates["new"][row] / rates["base"][row])
                    for side in order:
                        key = (backend, row, side)
                        best[key] = max(best.get(key, 0.0), rates[side][row])
            print(f"round {n + 1}/{args.rounds} done", file=sys.stderr)
    print(f"\n{'backend':8} {'op':10} {'tasks':>5} {'base ops/s':>12} {'new ops/s':>12} {'best/best':>9} {'median ratio':>12}")
    for backend in backends:
        for tasks in TASKS:
            for op in OPS:
                row = f"{op}/{tasks}"
                base, new = best[(backend, row, "base")], best[(backend, row, "new")]
                median = statistics.median(ratios[(backend, row)])
                print(f"{backend:8} {op:10} {tasks:>5} {base:>12,.0f} {new:>12,.0f} {new / base:>9.2f} {median:>12.2f}")


if __name__ == "__main__":
    main()
