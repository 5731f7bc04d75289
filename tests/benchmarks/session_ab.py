"""Same-run A/B of a session benchmark: this tree against another checkout of statekit (the
previous commit), interleaved round by round.

Run: ``python -m tests.benchmarks.session_ab --base /path/to/old/checkout [--script session |
telethon_session] [--size 100000] [--rounds 6] [--postgres] [--json out.json]``.

Each round runs the script (``tests/benchmarks/session.py`` or ``telethon_session.py``, one round
of one size, with its own kurigram or Telethon baseline, its own redis-server and its own
lookup processes) once in each tree, one after the other, the order alternating from round to
round, so both trees meet the same phases of a shared machine. The table gives, for every
statekit row of the script, each tree's median rate over the rounds and median ratio against
the baseline measured in the same invocation, the worst event-loop stall over the rounds, and
the median of the round-by-round rate ratio this tree / base.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tests.benchmarks._harness import machine
from tests.benchmarks.script_ab import run_in_tree

HERE = Path(__file__).resolve().parents[2]
UNITS = {"session": "peers", "telethon_session": "entities"}


def one_round(tree: Path, script: str, size: int, out: Path, extra: list[str]) -> list[dict[str, Any]]:
    """The statekit and baseline rows of one round of ``script`` (arguments ``extra`` added) run
    in ``tree``."""
    return run_in_tree(tree, script, [f"--{UNITS[script]}", str(size), "--rounds", "1", *extra], out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base", required=True, help="checkout of the statekit to compare with")
    parser.add_argument("--script", choices=sorted(UNITS), default="session")
    parser.add_argument("--size", type=int, default=100_000, help="peers or entities")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--json", help="write the rows here as well")
    parser.add_argument("--postgres", action="store_true",
                        help="also statekit over PostgreSQL (the script's --postgres, in both trees)")
    args = parser.parse_args(argv)
    extra = ["--postgres"] if args.postgres else []
    trees = {"this": HERE, "base": Path(args.base).resolve()}
    tmp = Path(tempfile.mkdtemp(prefix="statekit-session-ab-"))
    runs: dict[str, list[list[dict[str, Any]]]] = {"this": [], "base": []}
    for n in range(args.rounds):
        for side in ("this", "base") if n % 2 == 0 else ("base", "this"):
            runs[side].append(one_round(trees[side], args.script, args.size, tmp / f"{side}-{n}.json", extra))
        print(f"round {n + 1}/{args.rounds} done", file=sys.stderr)

    def key(row: dict[str, Any]) -> tuple[str, str, str]:
        return row["group"], row["subject"], row["operation"]

    keys = [key(row) for row in runs["this"][0] if row.get("ratio") is not None and "staged" not in row["operation"]]
    found = {side: [{key(row): row for row in rows} for rows in per_round] for side, per_round in runs.items()}
    table = []
    for k in keys:
        cell: dict[str, Any] = {"group": k[0], "subject": k[1], "operation": k[2]}
        for side in ("base", "this"):
            rows = [by_key[k] for by_key in found[side]]
            cell[f"{side}_ops_per_s"] = statistics.median(r["ops_per_s"] for r in rows)
            cell[f"{side}_ratio"] = statistics.median(r["ratio"] for r in rows)
            stalls = [r["stall_ms"] for r in rows if r.get("stall_ms") is not None]
            cell[f"{side}_stall_ms"] = max(stalls) if stalls else None
        cell["this_vs_base"] = statistics.median(
            this[k]["ops_per_s"] / base[k]["ops_per_s"] for this, base in zip(found["this"], found["base"], strict=True)
        )
        table.append(cell)

    def stall(ms: float | None) -> str:
        return "" if ms is None else f", stall {ms:.1f} ms"

    print(f"### {args.script}: this tree against {args.base} ({args.size:,}; {args.rounds} interleaved rounds)\n")
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {machine()}\n")
    print("| group | subject | operation | base: median/s (× baseline) | this: median/s (× baseline) | this / base, median of rounds |")
    print("|---|---|---|---|---|---:|")
    for c in table:
        print(
            f"| {c['group']} | {c['subject']} | {c['operation']} "
            f"| {c['base_ops_per_s']:,.0f} ({c['base_ratio']:.2f}×{stall(c['base_stall_ms'])}) "
            f"| {c['this_ops_per_s']:,.0f} ({c['this_ratio']:.2f}×{stall(c['this_stall_ms'])}) "
            f"| {c['this_vs_base']:.2f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"benchmark": f"{args.script}_ab", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "machine": machine(), "base": str(trees["base"]), "rows": table},
            indent=2,
        ))


if __name__ == "__main__":
    main()
