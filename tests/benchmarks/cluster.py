"""Redis Cluster vs a single Redis node: ops/s of get / set / CAS / increment, 100 tasks per client
process, with 1, 2 and 4 client processes, both topologies measured side by side in one run.

Run: ``python -m tests.benchmarks.cluster [--json PATH] [--ops N] [--rounds R]``. Starts a
throwaway single redis-server and a three-primary cluster on loopback (statekit.testing). Each
client process runs ``--ops`` operations per measurement; the processes start each measurement
together (a barrier) and the aggregate rate is all their operations over the wall time from the
first start to the last finish. Goal (issue 7): cluster >= 0.8x single node per client process.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
from typing import Any

from statekit import open_storage
from statekit.testing import RedisClusterSetup, RedisServer
from tests.benchmarks._harness import Result, print_table, write_json

OPERATIONS = ("get", "set", "cas", "increment")
TASKS = 100
KEYS = 1000
PROCESS_COUNTS = (1, 2, 4)


async def _client(url: str, index: int, ops: int, rounds: int, barrier: Any, out: Any) -> None:
    async with open_storage(url, namespace="bench") as storage:
        await storage.set_many({f"k{i}": {"v": i, "name": f"user{i}"} for i in range(KEYS)})
        cas_values = [0] * TASKS
        for t in range(TASKS):
            await storage.set_state(f"cas:{index}:{t}", 0)
        per_task = ops // TASKS

        async def task(op: str, t: int) -> None:
            base = t * 7919 + index * 104729
            for n in range(per_task):
                key = f"k{(base + n) % KEYS}"
                if op == "get":
                    await storage.get_state(key)
                elif op == "set":
                    await storage.set_state(key, {"v": n, "name": "x"})
                elif op == "cas":
                    current = cas_values[t]
                    if not await storage.compare_and_set(f"cas:{index}:{t}", current + 1, expected=current):
                        raise AssertionError("uncontended CAS failed")
                    cas_values[t] = current + 1
                else:
                    await storage.increment(f"ctr:{(base + n) % KEYS}")

        for _ in range(rounds):
            for op in OPERATIONS:
                await asyncio.to_thread(barrier.wait)
                start = time.perf_counter()
                await asyncio.gather(*(task(op, t) for t in range(TASKS)))
                out.put((op, per_task * TASKS, start, time.perf_counter()))
        if index == 0:
            await asyncio.to_thread(barrier.wait)  # every client is done writing
            await storage.clear_namespace()
        else:
            await asyncio.to_thread(barrier.wait)


def _client_process(url: str, index: int, ops: int, rounds: int, barrier: Any, out: Any) -> None:
    asyncio.run(_client(url, index, ops, rounds, barrier, out))


def run_clients(url: str, processes: int, ops: int, rounds: int) -> dict[str, float]:
    """Aggregate ops/s per operation (best round) of ``processes`` client processes on ``url``."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    out: Any = ctx.Queue()
    procs = [
        ctx.Process(target=_client_process, args=(url, i, ops, rounds, barrier, out))
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    samples: list[tuple[str, int, float, float]] = [
        out.get(timeout=300) for _ in range(processes * rounds * len(OPERATIONS))
    ]
    for proc in procs:
        proc.join(timeout=60)
        if proc.exitcode != 0:
            raise RuntimeError(f"benchmark client exited with {proc.exitcode}")
    best: dict[str, float] = {}
    for r in range(rounds):
        for op in OPERATIONS:
            mine = [s for s in samples if s[0] == op]
            batch = mine[r * processes:(r + 1) * processes]
            total = sum(s[1] for s in batch)
            wall = max(s[3] for s in batch) - min(s[2] for s in batch)
            best[op] = max(best.get(op, 0.0), total / wall)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="also write the results as JSON to this path")
    parser.add_argument("--ops", type=int, default=4000, help="operations per client process (default 4000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the best is kept (default 2)")
    args = parser.parse_args()

    rows: list[Result] = []
    with RedisServer() as single, RedisClusterSetup() as cluster:
        for processes in PROCESS_COUNTS:
            # interleaved: the single node, then the cluster, for each process count
            single_rates = run_clients(single.url, processes, args.ops, args.rounds)
            cluster_rates = run_clients(cluster.url, processes, args.ops, args.rounds)
            for op in OPERATIONS:
                rows.append(Result(f"{processes} proc", "single node", op, TASKS * processes, single_rates[op]))
                per_proc = cluster_rates[op] / single_rates[op]
                rows.append(
                    Result(
                        f"{processes} proc",
                        "cluster (3 primaries)",
                        op,
                        TASKS * processes,
                        cluster_rates[op],
                        baseline="single node",
                        ratio=per_proc,
                        note="goal >= 0.8" if per_proc < 0.8 else "",
                    )
                )
    # scaling: the aggregate rate of N processes relative to one process, per topology
    for subject in ("single node", "cluster (3 primaries)"):
        for op in OPERATIONS:
            one = next(r.ops_per_s for r in rows if r.subject == subject and r.operation == op and r.group == "1 proc")
            for processes in PROCESS_COUNTS[1:]:
                many = next(
                    r.ops_per_s for r in rows
                    if r.subject == subject and r.operation == op and r.group == f"{processes} proc"
                )
                rows.append(
                    Result("scaling", subject, op, TASKS * processes, many,
                           baseline="1 process", ratio=many / one, note=f"{processes} processes")
                )
    title = (
        f"Redis Cluster vs single node: {TASKS} tasks per client process, "
        f"{args.ops} ops per process, best of {args.rounds} (nproc {os.cpu_count()})"
    )
    print_table(title, rows)
    write_json(args.json, "cluster", rows)


if __name__ == "__main__":
    main()
