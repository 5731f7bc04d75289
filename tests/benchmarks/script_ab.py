"""Same-run A/B of any benchmark script: this tree against another checkout of statekit,
interleaved run by run.

Run: ``python -m tests.benchmarks.script_ab --base /path/to/old/checkout --script fsm
[--runs 5] [--json out.json] [-- SCRIPT ARGUMENTS...]``, e.g. ``--script fsm -- --rounds 1
--seconds 0.5``.

Each run invokes ``python -m tests.benchmarks.SCRIPT ARGUMENTS --json FILE`` once in each tree
(its own ``statekit`` and its own copy of the script first on ``sys.path``), one after the other,
the order alternating from run to run, so both trees meet the same phases of a shared machine.
Every row the script reports is compared by (group, subject, operation, tasks): each tree's
median rate over the runs and the median [range] of the run-by-run ratio this tree / base.
Rows of a baseline (aiogram, ``limits``, raw redis-py: the same code in both trees) show how far
two runs of identical code differ here, which is the noise to read the statekit rows against.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tests.benchmarks._harness import machine

HERE = Path(__file__).resolve().parents[2]


def run_in_tree(tree: Path, script: str, arguments: list[str], out: Path) -> list[dict[str, Any]]:
    """The rows ``python -m tests.benchmarks.<script> <arguments> --json <out>`` reports when run
    in ``tree`` (raises ``RuntimeError`` with the end of its stderr if it fails)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, "-m", f"tests.benchmarks.{script}", *arguments, "--json", str(out)]
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(f"{script} in {tree} failed:\n{done.stderr[-3000:]}")
    rows: list[dict[str, Any]] = json.loads(out.read_text())["rows"]
    return rows


def interleaved(trees: dict[str, Path], script: str, arguments: list[str], runs: int) -> dict[str, list[list[dict[str, Any]]]]:
    """``runs`` runs of ``script`` in each of ``trees`` ("this", "base"), alternating which goes
    first; the rows of each run by tree."""
    tmp = Path(tempfile.mkdtemp(prefix=f"statekit-{script}-ab-"))
    print(f"the runs' own JSON go to {tmp}", file=sys.stderr)
    found: dict[str, list[list[dict[str, Any]]]] = {side: [] for side in trees}
    for n in range(runs):
        for side in ("this", "base") if n % 2 == 0 else ("base", "this"):
            found[side].append(run_in_tree(trees[side], script, arguments, tmp / f"{side}-{n}.json"))
        print(f"run {n + 1}/{runs} done", file=sys.stderr)
    return found


def row_key(row: dict[str, Any]) -> tuple[str, str, str, int]:
    return row["group"], row["subject"], row["operation"], int(row.get("concurrency") or 1)


def compared(found: dict[str, list[list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One cell per row reported in every run of both trees, in the order of the first run."""
    by_key = {side: [{row_key(r): r for r in rows if r.get("ops_per_s")} for rows in per_run]
              for side, per_run in found.items()}
    table = []
    for row in found["this"][0]:
        k = row_key(row)
        if not all(k in run for side in by_key.values() for run in side):
            continue
        ratios = [this[k]["ops_per_s"] / base[k]["ops_per_s"]
                  for this, base in zip(by_key["this"], by_key["base"], strict=True)]
        table.append({
            "group": k[0], "subject": k[1], "operation": k[2], "concurrency": k[3],
            "base_ops_per_s": statistics.median(run[k]["ops_per_s"] for run in by_key["base"]),
            "this_ops_per_s": statistics.median(run[k]["ops_per_s"] for run in by_key["this"]),
            "this_vs_base": statistics.median(ratios), "low": min(ratios), "high": max(ratios),
        })
        for side, runs in by_key.items():  # against the baseline of the same invocation
            against = [run[k]["ratio"] for run in runs if isinstance(run[k].get("ratio"), int | float)]
            table[-1][f"{side}_ratio"] = statistics.median(against) if len(against) == len(runs) else None
    return table


def rows_of(where: Path) -> dict[str, list[list[dict[str, Any]]]]:
    """The runs ``interleaved`` left in ``where`` (``this-N.json``, ``base-N.json``), by tree."""
    found: dict[str, list[list[dict[str, Any]]]] = {}
    for side in ("this", "base"):
        paths = sorted(where.glob(f"{side}-*.json"), key=lambda p: int(p.stem.split("-")[1]))
        found[side] = [json.loads(p.read_text())["rows"] for p in paths]
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base", required=True, help="checkout of the statekit to compare with")
    parser.add_argument("--script", required=True, help="a module of tests/benchmarks, e.g. fsm")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="write the rows here as well")
    parser.add_argument("--rows", type=Path, help="tabulate the runs left in this directory instead of running")
    parser.add_argument("arguments", nargs="*", help="the script's own arguments (after --)")
    args = parser.parse_args(argv)
    trees = {"this": HERE, "base": Path(args.base).resolve()}
    runs = rows_of(args.rows) if args.rows else interleaved(trees, args.script, args.arguments, args.runs)
    if not runs["this"] or len(runs["this"]) != len(runs["base"]):
        parser.error(f"no pairs of runs (this-N.json and base-N.json) in {args.rows}")
    args.runs = len(runs["this"])
    table = compared(runs)
    print(f"### {args.script} {' '.join(args.arguments)}: this tree against {args.base} ({args.runs} interleaved runs)\n")
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {machine()}\n")
    print("| group | subject | operation | tasks | base: median/s (× its baseline) | this: median/s (× its baseline) "
          "| this / base, median [range] of runs |")
    print("|---|---|---|---:|---:|---:|---|")

    def against(ratio: float | None) -> str:
        return "" if ratio is None else f" ({ratio:.2f}×)"

    for c in table:
        print(f"| {c['group']} | {c['subject']} | {c['operation']} | {c['concurrency']} "
              f"| {c['base_ops_per_s']:,.0f}{against(c['base_ratio'])} | {c['this_ops_per_s']:,.0f}{against(c['this_ratio'])} "
              f"| {c['this_vs_base']:.2f} [{c['low']:.2f}–{c['high']:.2f}] |")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"benchmark": f"{args.script}_ab", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "machine": machine(), "base": str(trees["base"]), "arguments": args.arguments, "rows": table},
            indent=2,
        ) + "\n")


if __name__ == "__main__":
    main()
