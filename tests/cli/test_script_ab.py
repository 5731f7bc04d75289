"""``tests/benchmarks/script_ab.py`` and ``session_ab.py``: the comparison of two trees' runs, row by row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.benchmarks.script_ab import compared, main
from tests.benchmarks.session_ab import session_table


def _row(subject: str, ops: float | None, tasks: int = 1) -> dict[str, Any]:
    return {"group": "g", "subject": subject, "operation": "op", "concurrency": tasks, "ops_per_s": ops}


def test_rows_are_paired_by_run_and_summarised_by_their_median() -> None:
    found = {
        "this": [[_row("statekit", 110), _row("aiogram", 50), _row("statekit", 900, 100)],
                 [_row("statekit", 90), _row("aiogram", 50), _row("statekit", 1000, 100)],
                 [_row("statekit", 120), _row("aiogram", 40), _row("statekit", 1100, 100)]],
        "base": [[_row("statekit", 100), _row("aiogram", 50), _row("statekit", 1000, 100)],
                 [_row("statekit", 100), _row("aiogram", 50), _row("statekit", 1000, 100)],
                 [_row("statekit", 100), _row("aiogram", 50), _row("statekit", 1000, 100)]],
    }
    table = compared(found)
    assert [(c["subject"], c["concurrency"]) for c in table] == [("statekit", 1), ("aiogram", 1), ("statekit", 100)]
    first = table[0]
    assert first["this_vs_base"] == pytest.approx(1.1)  # median of 1.1, 0.9, 1.2
    assert (first["low"], first["high"]) == (pytest.approx(0.9), pytest.approx(1.2))
    assert (first["base_ops_per_s"], first["this_ops_per_s"]) == (100, 110)
    assert table[1]["this_vs_base"] == pytest.approx(1.0)  # the same code: the noise
    assert table[2]["this_vs_base"] == pytest.approx(1.0)


def test_a_row_missing_from_one_run_or_without_a_rate_is_left_out() -> None:
    found = {
        "this": [[_row("statekit", 10), _row("gone", 5), _row("rateless", None)], [_row("statekit", 10)]],
        "base": [[_row("statekit", 10), _row("gone", 5), _row("rateless", None)],
                 [_row("statekit", 10), _row("gone", 5)]],
    }
    assert [c["subject"] for c in compared(found)] == ["statekit"]


def test_tabulating_a_directory_without_runs_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--base", str(tmp_path), "--script", "fsm", "--rows", str(tmp_path)])
    assert exited.value.code == 2
    assert "no pairs of runs" in capsys.readouterr().err


def test_the_session_table_keeps_statekit_durable_rows_with_each_trees_worst_stall() -> None:
    def row(subject: str, operation: str, ops: float, ratio: float | None, stall: float | None) -> dict[str, Any]:
        return {**_row(subject, ops), "operation": operation, "ratio": ratio, "stall_ms": stall}

    def run(ops: float, stall: float) -> list[dict[str, Any]]:
        return [row("kurigram", "save", 100, None, 500.0), row("statekit", "update_peers (staged)", 900, 9.0, None),
                row("statekit", "save", ops, ops / 100, stall)]

    found = {"this": [run(160, 4.0), run(140, 9.5)], "base": [run(150, 6.0), run(150, 3.0)]}
    (cell,) = session_table(found)
    assert (cell["subject"], cell["operation"]) == ("statekit", "save")  # no baseline, no staged row
    assert (cell["this_stall_ms"], cell["base_stall_ms"]) == (9.5, 6.0)
    assert cell["this_vs_base"] == pytest.approx(1.0)  # median of 160/150 and 140/150
    assert (cell["this_ratio"], cell["base_ratio"]) == (pytest.approx(1.5), pytest.approx(1.5))
