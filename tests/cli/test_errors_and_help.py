"""Every command: ``--help`` with an example; bad input is one line on stderr, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from clitools import Run, assert_one_line_error, fill

from statekit.testing.servers import free_port

COMMANDS = [
    ["demo"],
    ["keys"],
    ["get"],
    ["migrate"],
    ["bench"],
    ["session"],
    ["session", "inspect"],
    ["session", "convert"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_explains_with_an_example(cli: Run, command: list[str]) -> None:
    proc = cli(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: statekit " + " ".join(command) in proc.stdout
    assert "example" in proc.stdout
    assert "statekit " + command[0] in proc.stdout.split("example", 1)[1]


def test_top_level_help_lists_every_command(cli: Run) -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for name in ("demo", "keys", "get", "migrate", "session", "bench"):
        assert f"    {name} " in proc.stdout


def test_no_command_prints_usage_and_fails(cli: Run) -> None:
    proc = cli()
    assert proc.returncode == 2
    assert "usage: statekit" in proc.stderr


def _closed_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


URL_COMMANDS = [
    ("keys", lambda url: ["keys", url]),
    ("get", lambda url: ["get", url, "k"]),
    ("bench", lambda url: ["bench", url, "--seconds", "0.01"]),
    ("demo", lambda url: ["demo", "--users", "3", "--url", url]),
    ("migrate-src", lambda url: ["migrate", url, "memory://"]),
    ("migrate-dst", lambda url: ["migrate", "memory://", url]),
]


@pytest.mark.parametrize("name,args", URL_COMMANDS, ids=[n for n, _ in URL_COMMANDS])
def test_unknown_scheme_is_one_line(cli: Run, name: str, args: object) -> None:
    proc = cli(*args("mongodb://127.0.0.1/x"))  # type: ignore[operator]
    line = assert_one_line_error(proc, "mongodb", "accepted schemes")
    assert proc.returncode == 2, line


@pytest.mark.parametrize("name,args", URL_COMMANDS, ids=[n for n, _ in URL_COMMANDS])
def test_unreachable_redis_is_one_line(cli: Run, name: str, args: object) -> None:
    if name == "migrate-dst":
        pytest.skip("an empty memory source copies nothing, so the destination is never used")
    proc = cli(*args(_closed_redis()), timeout=60)  # type: ignore[operator]
    line = assert_one_line_error(proc)
    assert "127.0.0.1" in line or "redis" in line.lower(), line


def test_unreachable_redis_destination_of_migrate(cli: Run, sqlite_url: str) -> None:
    fill(sqlite_url, {"k": 1})
    assert_one_line_error(cli("migrate", sqlite_url, _closed_redis()))


def test_password_never_shown_in_errors(cli: Run) -> None:
    url = f"redis://user:hunter2secret@127.0.0.1:{free_port()}/0"
    for args in (["keys", url], ["get", url, "k"], ["demo", "--users", "2", "--url", url]):
        proc = cli(*args)
        assert_one_line_error(proc)
        assert "hunter2secret" not in proc.stderr + proc.stdout


def test_malformed_urls(cli: Run) -> None:
    for url in ("not a url", "redis://127.0.0.1:notaport/0", "sqlite://relative.db"):
        assert_one_line_error(cli("keys", url))


def test_directory_as_sqlite_database(cli: Run, tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    assert_one_line_error(cli("keys", "sqlite:///dir.db"), "directory")
    assert_one_line_error(cli("demo", "--users", "2", "--url", "sqlite:///dir.db"), "directory")


def test_sqlite_file_that_is_not_a_database(cli: Run, tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("hello, this is not SQLite\n" * 100)
    assert_one_line_error(cli("keys", "sqlite:///notes.db"))


def test_bad_option_values(cli: Run, sqlite_url: str) -> None:
    assert_one_line_error(cli("demo", "--users", "-1", "--url", sqlite_url), "--users")
    assert_one_line_error(
        cli("migrate", sqlite_url, "memory://", "--batch-size", "0"), "--batch-size"
    )
    assert_one_line_error(cli("bench", "memory://", "--concurrency", "0"), "--concurrency")
