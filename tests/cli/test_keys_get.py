"""``statekit keys`` and ``statekit get`` as subprocesses, on SQLite, real Redis and memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clitools import Run, assert_one_line_error, fill, load_json

from statekit.session._buckets import index_bucket


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


# --- secrets of session records (issue 14 item 3) ----------------------------------------------

SESSION_KEY = bytes((i * 29 + 7) % 256 for i in range(256))
PHONE = "15550007788"
ACCESS_HASH = 8_123_456_789_012_345_678


def _secret_forms() -> list[str]:
    """The auth key as a CLI could print it: hex, base64 (both alphabets), Python bytes repr."""
    import base64

    b64 = base64.b64encode(SESSION_KEY).decode()
    return [
        SESSION_KEY.hex()[:24],
        b64[:24],
        b64.translate(str.maketrans("+/", "-_"))[:24],
        repr(SESSION_KEY)[2:26],
    ]


def _store_session(url: str) -> None:
    import asyncio

    from statekit import open_storage
    from statekit.session import Peer, SessionData, SessionStore

    async def main() -> None:
        async with open_storage(url) as storage:
            store = SessionStore(storage, "bot")
            await store.save(SessionData(2, SESSION_KEY, api_id=5, user_id=7))
            await store.update_peers([Peer(42, ACCESS_HASH, "user", ("ann",), PHONE, 1)])
            # the record stored by hand too: masked wherever an auth_key field appears
            await storage.set_state("backup", {"session": {"auth_key": SESSION_KEY, "dc_id": 2}})

    asyncio.run(main())


def _assert_no_secret(output: str) -> None:
    for form in _secret_forms():
        assert form not in output
    assert PHONE not in output and str(ACCESS_HASH) not in output


def test_get_hides_session_secrets_unless_asked(cli: Run, store_url: str) -> None:
    _store_session(store_url)
    names, phones = f"session:{{bot}}:names:{index_bucket('ann')}", f"session:{{bot}}:phones:{index_bucket(PHONE)}"
    for key in ("session:{bot}:data", "session:{bot}:peers:42", names, phones, "backup"):
        for extra in ([], ["--json"]):
            proc = cli("get", store_url, key, *extra)
            assert proc.returncode == 0, proc.stderr
            _assert_no_secret(proc.stdout + proc.stderr)
            if key != names:  # a username index bucket holds no secret: usernames and peer ids
                assert "<secret:" in proc.stdout or "*********88" in proc.stdout
    doc = load_json(cli("get", store_url, "session:{bot}:data", "--json"))
    assert doc["secrets_hidden"] is True
    assert doc["value"]["fields"]["auth_key"] == "<secret: 256 bytes hidden>"
    assert doc["value"]["fields"]["dc_id"] == 2
    [peer] = load_json(cli("get", store_url, "session:{bot}:peers:42", "--json"))["value"]
    assert peer[0] == 42 and peer[2] == "user" and peer[3] == ["ann"] and peer[4].endswith("88")
    assert load_json(cli("get", store_url, phones, "--json"))["value"] == {"*********88": 42}
    shown_index = load_json(cli("get", store_url, phones, "--json", "--show-secrets"))["value"]
    assert shown_index == {PHONE: 42}
    shown = load_json(cli("get", store_url, "session:{bot}:data", "--json", "--show-secrets"))
    import base64

    assert shown["value"]["fields"]["auth_key"] == {"$bytes": base64.b64encode(SESSION_KEY).decode()}
    assert "secrets_hidden" not in shown


def test_keys_migrate_and_bench_print_no_session_secret(
    cli: Run, sqlite_url: str, tmp_path: Path
) -> None:
    _store_session(sqlite_url)
    outputs = [
        cli("keys", sqlite_url, "--json"),
        cli("keys", sqlite_url, "--ttl"),
        cli("migrate", sqlite_url, f"sqlite:///{tmp_path / 'copy.db'}", "--json"),
        cli("bench", sqlite_url, "--seconds", "0.01", "--concurrency", "1", "--json"),
    ]
    for proc in outputs:
        assert proc.returncode == 0, proc.stderr
        _assert_no_secret(proc.stdout + proc.stderr)
    assert "session:{bot}:data" in outputs[0].stdout
    assert "session:{bot}:peers:42" in outputs[0].stdout
