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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tests.benchmarks._harness import machine
from tests.benchmarks.script_ab import compared, interleaved, row_key

HERE = Path(__file__).resolve().parents[2]
UNITS = {"session": "peers", "telethon_session": "entities"}


def session_table(found: dict[str, list[list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """``script_ab.compared`` of statekit's rows (those with a ratio against the baseline of the
    same run) but the staged steps, each with the worst stall of each tree over the rounds."""
    table = [c for c in compared(found) if c["this_ratio"] is not None and "staged" not in c["operation"]]
    for cell in table:
        key = (cell["group"], cell["subject"], cell["operation"], cell["concurrency"])
        for side, runs in found.items():
            stalls = [r["stall_ms"] for rows in runs for r in rows
                      if row_key(r) == key and r.get("stall_ms") is not None]
            cell[f"{side}_stall_ms"] = max(stalls) if stalls else None
    return table


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
    arguments = [f"--{UNITS[args.script]}", str(args.size), "--rounds", "1"]
    if args.postgres:
        arguments.append("--postgres")
    trees = {"this": HERE, "base": Path(args.base).resolve()}
    table = session_table(interleaved(trees, args.script, arguments, args.rounds))

    def stall(ms: float | None) -> str:
        return "" if ms is None else f", stall {ms:.1f} ms"

    print(f"### {args.script}: this tree against {args.base} ({args.size:,}; {args.rounds} interleaved rounds)\n")
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {machine()}\n")
    print("| group | subject | operation | base: median/s (× baseline) | this: median/s (× baseline) "
          "| this / base, median [range] of rounds |")
    print("|---|---|---|---|---|---:|")
    for c in table:
        print(
            f"| {c['group']} | {c['subject']} | {c['operation']} "
            f"| {c['base_ops_per_s']:,.0f} ({c['base_ratio']:.2f}×{stall(c['base_stall_ms'])}) "
            f"| {c['this_ops_per_s']:,.0f} ({c['this_ratio']:.2f}×{stall(c['this_stall_ms'])}) "
            f"| {c['this_vs_base']:.2f} [{c['low']:.2f}–{c['high']:.2f}] |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"benchmark": f"{args.script}_ab", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "machine": machine(), "base": str(trees["base"]), "rows": table},
            indent=2,
        ))


if __name__ == "__main__":
    main()
