"""``docs/plot_benchmarks.py``: one PNG per benchmark JSON (needs the ``docs`` extra)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "plot_benchmarks.py"


def _row(group: str, subject: str, ops: float, ratio: float | None = None) -> dict[str, object]:
    return {
        "group": group,
        "subject": subject,
        "operation": "get",
        "concurrency": 1,
        "ops_per_s": ops,
        "baseline": "raw" if ratio is not None else None,
        "ratio": ratio,
        "note": "",
    }


def test_one_png_per_benchmark(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    for name, rows in {
        "alpha": [_row("redis", "raw", 50_000), _row("redis", "statekit", 45_000, 0.9)],
        "beta": [_row("sqlite", "statekit", 12.5), _row("memory", "statekit", 900_000)],
    }.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({"benchmark": name, "rows": rows}))
    files = sorted(str(p) for p in tmp_path.glob("*.json"))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *files], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("alpha", "beta"):
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 5000


def test_malformed_json_is_reported(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": [{"group": "x"}]}))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(bad)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert "row 0 lacks" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "bad.png").exists()


def test_a_same_run_ab_gets_its_two_panel_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    row = {
        "group": "restarted", "subject": "statekit", "operation": "save()",
        "base_ops_per_s": 100.0, "this_ops_per_s": 102.0, "this_vs_base": 1.02,
        "base_stall_ms": 52.3, "this_stall_ms": 9.6,
    }
    good, bad = tmp_path / "session_ab.json", tmp_path / "broken_ab.json"
    good.write_text(json.dumps({"benchmark": "session_ab", "base": "abc1234", "rows": [row]}))
    bad.write_text(json.dumps({"benchmark": "session_ab", "rows": [{"group": "x", "ops_per_s": 1}]}))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(good), str(bad)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1  # the broken one is reported, the good one still drawn
    assert "row 0 lacks subject, operation, base_ops_per_s" in proc.stderr
    assert (tmp_path / "session_ab.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "broken_ab.png").exists()


def test_an_ab_without_stalls_gets_its_ratios_with_their_range(tmp_path: Path) -> None:
    """script_ab's rows (no stall measured) are drawn as one panel of ratios, a line for the
    range over the runs."""
    pytest.importorskip("matplotlib")
    rows = [
        {"group": "sequential", "subject": subject, "operation": "update_data", "concurrency": tasks,
         "base_ops_per_s": 100.0, "this_ops_per_s": 100.0 * ratio, "this_vs_base": ratio,
         "low": ratio - 0.1, "high": ratio + 0.1}
        for subject, tasks, ratio in (("statekit", 1, 1.02), ("aiogram", 100, 0.97))
    ]
    doc = tmp_path / "fsm_ab.json"
    doc.write_text(json.dumps({"benchmark": "fsm_ab", "base": "4947638", "rows": rows}))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(doc)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    png = tmp_path / "fsm_ab.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
