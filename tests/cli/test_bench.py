"""``statekit bench`` as a subprocess: every operation measured, its keys removed afterwards."""

from __future__ import annotations

import pytest
from clitools import Run, dump, fill, load_json

from statekit._cli.bench import OPERATIONS


def test_bench_measures_every_operation(cli: Run, store_url: str) -> None:
    fill(store_url, {"user:1": {"keep": "me"}, "bench-like": 1})
    doc = load_json(
        cli("bench", store_url, "--seconds", "0.05", "--concurrency", "1", "8", "--json")
    )
    rows = {(r["operation"], r["concurrency"]): r for r in doc["results"]}
    assert set(rows) == {(op, n) for op in OPERATIONS for n in (1, 8)}
    assert all(r["ops_per_s"] > 0 for r in rows.values())
    assert rows[("get_many", 1)]["keys_per_op"] == 100
    assert rows[("scan", 1)]["keys_per_op"] == 135
    # only the bench's own keys were written, and they are gone
    assert dump(store_url) == {"user:1": ({"keep": "me"}, None), "bench-like": (1, None)}


def test_bench_table_on_memory(cli: Run) -> None:
    proc = cli("bench", "memory://", "--seconds", "0.02", "--operations", "get", "set")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].split() == ["operation", "tasks", "ops/s", "keys/s"]
    assert [line.split()[:2] for line in lines[3:]] == [
        ["get", "1"],
        ["get", "50"],
        ["set", "1"],
        ["set", "50"],
    ]


@pytest.mark.parametrize("bad", [["--seconds", "0"], ["--operations", "fly"]])
def test_bench_bad_options(cli: Run, bad: list[str]) -> None:
    proc = cli("bench", "memory://", *bad)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
