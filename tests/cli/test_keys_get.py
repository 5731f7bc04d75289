"""``statekit keys`` and ``statekit get`` as subprocesses, on SQLite, real Redis and memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clitools import Run, assert_one_line_error, fill, load_json


def test_keys_lists_matching_keys_sorted(cli: Run, store_url: str) -> None:
    fill(store_url, {"user:2": 2, "user:10": 10, "user:1": {"a": 1}, "chat:1": "x"})
    proc = cli("keys", store_url, "user:*")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["user:1", "user:10", "user:2"]
    assert load_json(cli("keys", store_url, "--json")) == ["chat:1", "user:1", "user:10", "user:2"]
    assert load_json(cli("keys", store_url, "user:?", "--json")) == ["user:1", "user:2"]
    assert load_json(cli("keys", store_url, "--json", "--limit", "1")) == ["chat:1"]


def test_keys_shows_ttls(cli: Run, store_url: str) -> None:
    fill(store_url, {"forever": 1})
    fill(store_url, {"soon": 2}, ttl=100)
    rows = {r["key"]: r["ttl"] for r in load_json(cli("keys", store_url, "--ttl", "--json"))}
    assert rows["forever"] is None
    assert 95 < rows["soon"] <= 100


def test_namespace_comes_from_the_url(cli: Run, tmp_path: Path) -> None:
    base = f"sqlite:///{tmp_path / 'ns.db'}"
    fill(base + "?namespace=bot_a", {"k": 1})
    fill(base + "?namespace=bot_b", {"other": 2})
    assert load_json(cli("keys", base + "?namespace=bot_a", "--json")) == ["k"]
    assert load_json(cli("keys", base + "?namespace=bot_b", "--json")) == ["other"]
    assert load_json(cli("keys", base, "--json")) == []


def test_keys_of_an_empty_memory_store(cli: Run) -> None:
    proc = cli("keys", "memory://")
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""


def test_get_prints_value_and_ttl(cli: Run, store_url: str) -> None:
    value = {"state": "Form:age", "data": {"name": "Ada", "raw": b"\x00\xff", "n": [1, 2.5, None]}}
    fill(store_url, {"user:1": value}, ttl=60)
    doc = load_json(cli("get", store_url, "user:1", "--json"))
    assert doc["key"] == "user:1"
    assert 55 < doc["ttl"] <= 60
    assert doc["value"] == {
        "state": "Form:age",
        "data": {"name": "Ada", "raw": {"$bytes": "AP8="}, "n": [1, 2.5, None]},
    }
    text = cli("get", store_url, "user:1")
    assert text.returncode == 0
    assert "'name': 'Ada'" in text.stdout and "b'\\x00\\xff'" in text.stdout
    assert "ttl:" in text.stdout


def test_get_of_a_counter_and_of_a_key_without_expiry(cli: Run, store_url: str) -> None:
    fill(store_url, {"hits": 41})
    doc = load_json(cli("get", store_url, "hits", "--json"))
    assert doc == {"key": "hits", "ttl": None, "value": 41}


def test_get_of_a_missing_key_fails_with_one_line(cli: Run, store_url: str) -> None:
    fill(store_url, {"present": 1})
    proc = cli("get", store_url, "absent")
    assert_one_line_error(proc, "'absent'")
    assert proc.returncode == 1 and proc.stdout == ""


def test_keys_does_not_create_a_missing_sqlite_file(cli: Run, tmp_path: Path) -> None:
    proc = cli("keys", "sqlite:///typo.db")
    assert_one_line_error(proc, "no SQLite database", "typo.db")
    assert not (tmp_path / "typo.db").exists()


@pytest.mark.parametrize("command", ["keys", "get"])
def test_json_output_is_one_document(cli: Run, sqlite_url: str, command: str) -> None:
    fill(sqlite_url, {"k": "v"})
    args = [command, sqlite_url] + (["k"] if command == "get" else []) + ["--json"]
    proc = cli(*args)
    json.loads(proc.stdout)  # exactly one JSON document on stdout
    assert proc.stderr == ""
