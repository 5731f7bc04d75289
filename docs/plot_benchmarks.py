"""Draw one PNG bar chart per benchmark from the JSON the benchmark scripts write.

Run from the repository root (needs the ``docs`` extra, i.e. matplotlib)::

    python docs/plot_benchmarks.py                 # every docs/bench/*.json -> docs/bench/*.png
    python docs/plot_benchmarks.py docs/bench/storage.json --out-dir /tmp

Each JSON file is what ``python -m tests.benchmarks.NAME --json PATH`` writes: ``benchmark``,
``date``, ``machine`` and ``rows`` with the fields ``group``, ``subject``, ``operation``,
``concurrency``, ``ops_per_s``, ``baseline``, ``ratio`` and ``note``. The chart has one
horizontal bar per row (ops/s, logarithmic when the figures span more than 50x), coloured by
group, with the ratio against the row's baseline written after the bar. Rows measured once per
round (the session scripts) may also carry ``median`` (drawn as a black tick on the bar) and
``median_ratio`` (the median of the round-by-round ratios, written after the best one).

A same-run A/B (``tests/benchmarks/session_ab.py --json``, ``benchmark`` ending in ``_ab``) is
drawn as two panels: each row's worst event-loop stall in the base tree and in this one, and the
median round-by-round rate ratio this / base.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH_DIR = HERE / "bench"
FIELDS = ("group", "subject", "operation", "concurrency", "ops_per_s")
AB_FIELDS = ("group", "subject", "operation", "base_ops_per_s", "this_ops_per_s", "this_vs_base")


def load(path: Path) -> dict[str, Any]:
    """The benchmark document in ``path``; ``ValueError`` naming the file if it is malformed."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read benchmark JSON ({exc})") from None
    rows = doc.get("rows") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: no 'rows' list")
    fields = AB_FIELDS if str(doc.get("benchmark", "")).endswith("_ab") else FIELDS
    for n, row in enumerate(rows):
        missing = [f for f in fields if not isinstance(row, dict) or f not in row]
        if missing:
            raise ValueError(f"{path}: row {n} lacks {', '.join(missing)}")
    return dict(doc)


def _label(row: dict[str, Any]) -> str:
    tasks = row["concurrency"]
    return f"{row['subject']} · {row['operation']}" + (f" · {tasks} tasks" if tasks != 1 else "")


def _annotation(row: dict[str, Any]) -> str:
    text = f"{row['ops_per_s']:,.0f}/s"
    if row.get("ratio") is not None and row.get("baseline"):
        median = row.get("median_ratio")
        text += f"  ({row['ratio']:.2f}× {row['baseline']}" + (
            f", median {median:.2f}×)" if isinstance(median, int | float) else ")"
        )
    return text


def _median(row: dict[str, Any]) -> float | None:
    value = row.get("median")
    return float(value) if isinstance(value, int | float) and value > 0 else None


def plot(doc: dict[str, Any], name: str, out: Path) -> Path:
    """Write the chart of one benchmark to ``out`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    rows = [
        r for r in doc["rows"] if isinstance(r["ops_per_s"], int | float) and r["ops_per_s"] > 0
    ]
    if not rows:
        raise ValueError(f"benchmark {name!r} has no row with a positive ops_per_s")
    groups = list(dict.fromkeys(r["group"] for r in rows))
    palette = plt.get_cmap("tab10")
    colours = {g: palette(i % 10) for i, g in enumerate(groups)}
    values = [float(r["ops_per_s"]) for r in rows]
    height = max(2.5, 0.38 * len(rows) + 1.6)
    fig, ax = plt.subplots(figsize=(12, height))
    positions = list(range(len(rows)))[::-1]
    ax.barh(positions, values, color=[colours[r["group"]] for r in rows])
    ax.set_yticks(positions, [_label(r) for r in rows], fontsize=8)
    if max(values) / min(values) > 50:
        ax.set_xscale("log")
    ax.set_xlim(right=max(values) * (25 if ax.get_xscale() == "log" else 1.6))
    for pos, row, value in zip(positions, rows, values, strict=True):
        ax.text(value, pos, "  " + _annotation(row), va="center", fontsize=7)
    ax.set_xlabel("operations per second (higher is better)")
    title = doc.get("benchmark", name)
    subtitle = " · ".join(str(doc[k]) for k in ("date", "machine") if doc.get(k))
    ax.set_title(f"{title}\n{subtitle}", fontsize=10)
    handles: list[Any] = [Rectangle((0, 0), 1, 1, color=colours[g]) for g in groups]
    labels = list(groups)
    medians = [(m, pos) for pos, row in zip(positions, rows, strict=True) if (m := _median(row))]
    if medians:
        (tick,) = ax.plot(*zip(*medians, strict=True), "k|", markersize=12, markeredgewidth=2)
        handles.append(tick)
        labels.append("median of the rounds")
    ax.legend(handles, labels, fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_ab(doc: dict[str, Any], name: str, out: Path) -> Path:
    """Write the two-panel chart of a same-run A/B to ``out`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["rows"]
    labels = [f"{r['group']} · {r['subject']} · {r['operation']}"
              + (f" ×{r['concurrency']}" if r.get("concurrency", 1) != 1 else "") for r in rows]
    positions = list(range(len(rows)))[::-1]
    height = max(2.5, 0.45 * len(rows) + 1.6)
    if not any(r.get("base_stall_ms") or r.get("this_stall_ms") for r in rows):
        # no stalls measured (script_ab): the ratios alone, with the range over the runs
        fig, ratios = plt.subplots(figsize=(10, height))
        ratios.set_yticks(positions, labels, fontsize=8)
        _draw_ratios(ratios, rows, positions)
        return _save(fig, doc, name, out)
    fig, (stalls, ratios) = plt.subplots(
        1, 2, figsize=(14, height), sharey=True, gridspec_kw={"width_ratios": [3, 2]},
    )
    for offset, side, colour in ((0.2, "base", "tab:gray"), (-0.2, "this", "tab:blue")):
        values = [float(r.get(f"{side}_stall_ms") or 0.0) for r in rows]
        stalls.barh([p + offset for p in positions], values, height=0.4, color=colour,
                    label=f"{side} tree")
        for pos, value in zip(positions, values, strict=True):
            stalls.text(value, pos + offset, f" {value:.1f}", va="center", fontsize=7)
    stalls.axvline(20, color="tab:red", linestyle="--", linewidth=1, label="20 ms target")
    stalls.set_xscale("log")
    stalls.set_xlabel("worst event-loop stall over the rounds, ms\n(lower is better, log scale)")
    stalls.set_yticks(positions, labels, fontsize=8)
    stalls.legend(fontsize=7, loc="lower right")
    _draw_ratios(ratios, rows, positions)
    return _save(fig, doc, name, out)


def _draw_ratios(ratios: Any, rows: list[dict[str, Any]], positions: list[int]) -> None:
    """The panel of rate ratios this / base (with the range over the runs where given)."""
    change = [float(r["this_vs_base"]) for r in rows]
    shade = ["tab:green" if c > 1.03 else "tab:orange" if c < 0.97 else "tab:gray" for c in change]
    ratios.barh(positions, change, color=shade)
    ranged = [(pos, r) for pos, r in zip(positions, rows, strict=True) if "low" in r and "high" in r]
    if ranged:
        ratios.hlines([pos for pos, _ in ranged], [float(r["low"]) for _, r in ranged],
                      [float(r["high"]) for _, r in ranged], color="black", linewidth=1)
    ratios.axvline(1, color="black", linewidth=1)
    for pos, value in zip(positions, change, strict=True):
        ratios.text(value, pos, f" {value:.2f}×", va="center", fontsize=7)
    ratios.set_xlim(0, max([*change, *(float(r["high"]) for _, r in ranged)]) * 1.2)
    ratios.set_xlabel("rate this / base, median of rounds (line: range)\n(higher is better; grey: within 3 %)")


def _save(fig: Any, doc: dict[str, Any], name: str, out: Path) -> Path:
    import matplotlib.pyplot as plt

    subtitle = " · ".join(str(doc[k]) for k in ("date", "machine") if doc.get(k))
    fig.suptitle(f"{doc.get('benchmark', name)}: this tree against {doc.get('base', 'base')}\n{subtitle}",
                 fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Plot docs/bench/*.json as PNG bar charts.")
    parser.add_argument(
        "files", nargs="*", type=Path, help="JSON files (default: docs/bench/*.json)"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="where PNGs go (default: next to each JSON)"
    )
    args = parser.parse_args(argv)
    files = args.files or sorted(BENCH_DIR.glob("*.json"))
    if not files:
        print(f"plot_benchmarks: no JSON files in {BENCH_DIR}", file=sys.stderr)
        return 1
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot_benchmarks: needs matplotlib (pip install 'statekit[docs]')", file=sys.stderr)
        return 1
    status = 0
    for path in files:
        try:
            doc = load(path)
            out = (args.out_dir or path.parent) / f"{path.stem}.png"
            draw = plot_ab if str(doc.get("benchmark", "")).endswith("_ab") else plot
            print(draw(doc, path.stem, out))
        except ValueError as exc:
            print(f"plot_benchmarks: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
