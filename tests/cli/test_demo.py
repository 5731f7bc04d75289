"""``statekit demo`` as a subprocess: expected counts, resuming, --fresh, every backend."""

from __future__ import annotations

import asyncio
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from clitools import Run, assert_one_line_error, interruptible, load_json, statekit_cmd

from statekit import open_storage
from statekit._cli.demo import BOT_ID, expected_counts
from statekit.testing import RedisServer

USERS = 30


def _counts(doc: dict[str, object]) -> dict[str, object]:
    return {k: doc[k] for k in expected_counts(0)}


def test_expected_counts_follow_the_documented_rules() -> None:
    # users 0 and 10 flood, user 3 and 10 send a word for their age
    assert expected_counts(11) == {
        "completed": 11,
        "updates_sent": 9 * 4 + 1 + 17 + 18,
        "updates_handled": 9 * 4 + 1 + 7 + 8,
        "updates_rate_limited": 20,
        "answers_rejected": 2 + 2 * 3,
        "rate_limit_notices": 2,
    }


def test_demo_on_sqlite_finishes_with_expected_counts(cli: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    doc = load_json(cli("demo", "--users", str(USERS), "--url", url, "--json"))
    assert _counts(doc) == expected_counts(USERS)
    assert doc["completed_total"] == USERS and doc["already_completed"] == 0
    assert doc["updates_per_s"] > 0
    assert 0 < doc["latency_ms"]["p50"] <= doc["latency_ms"]["p99"]
    assert doc["keys"]["profiles"] == USERS
    assert doc["keys"]["conversations_in_progress"] == 0
    assert str(tmp_path / "demo.db") in doc["url"]


def test_default_url_is_a_file_in_the_current_directory(cli: Run, tmp_path: Path) -> None:
    proc = cli("demo", "--users", "12")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "statekit-demo.db").is_file()
    for label in (
        "conversations completed",
        "updates handled",
        "updates rate-limited",
        "updates/s",
        "p50",
        "p99",
        str(tmp_path / "statekit-demo.db"),
    ):
        assert label in proc.stdout, label
    assert proc.stderr == ""  # no progress bar: stderr is not a terminal


def test_second_run_resumes_and_fresh_starts_over(cli: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    load_json(cli("demo", "--users", "10", "--url", url, "--json"))
    again = load_json(cli("demo", "--users", "10", "--url", url, "--json"))
    assert again["completed"] == 0 and again["already_completed"] == 10
    assert again["updates_sent"] == 0
    more = load_json(cli("demo", "--users", "25", "--url", url, "--json"))
    assert more["completed"] == 15 and more["completed_total"] == 25
    fresh = load_json(cli("demo", "--users", "10", "--url", url, "--fresh", "--json"))
    assert _counts(fresh) == expected_counts(10)
    assert fresh["keys"]["profiles"] == 10  # --fresh removed the 25 of before
    text = cli("demo", "--users", "10", "--url", url)
    assert "already complete" in text.stdout and "--fresh" in text.stdout


def test_fresh_removes_only_the_demos_keys(cli: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"

    async def setup() -> None:
        async with open_storage(url) as storage:
            await storage.set_state("mybot:user:1", {"keep": True})
            await storage.set_state("fsm:{1:2:3:::default}", {"state": None, "data": {"a": 1}})

    asyncio.run(setup())
    load_json(cli("demo", "--users", "5", "--url", url, "--json"))
    load_json(cli("demo", "--users", "5", "--url", url, "--fresh", "--json"))

    async def check() -> list[str]:
        async with open_storage(url) as storage:
            return sorted(k for k in await storage.list_keys() if not k.startswith("demo:"))

    assert asyncio.run(check()) == ["fsm:{1:2:3:::default}", "mybot:user:1"]


def test_interrupted_demo_resumes_half_filled_forms(cli: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    users = 3000
    proc = subprocess.Popen(
        statekit_cmd("demo", "--users", str(users), "--url", url, "--fresh", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 60
    while not _has_profiles(url):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    first = load_json(subprocess.CompletedProcess([], 0, out, ""))
    assert first["interrupted"] is True and 0 < first["completed"] < users
    # the counts are what the store holds: every saved profile is a completed form
    assert first["completed_total"] == first["completed"] == first["keys"]["profiles"]
    assert last.startswith(f"statekit: error: interrupted after {first['completed']:,} ")
    # the error says the command that resumes: the same options, without --fresh
    resume = last.split("to resume, run: ", 1)[1]
    assert resume == f"statekit demo --users {users} --url {url} --json"
    in_progress = _conversations(url)
    assert in_progress > 0  # interrupted half-way through some forms
    second = load_json(cli(*shlex.split(resume)[1:]))
    assert second["already_completed"] == first["completed_total"]
    assert second["completed"] == users - first["completed_total"]
    assert second["completed_total"] == users
    assert second["keys"]["profiles"] == users
    assert second["keys"]["conversations_in_progress"] == 0
    # the resumed users continued from their stored step: fewer /start messages than users
    assert second["updates_handled"] < 4 * (users - first["completed"]) + 8 * (users // 10)


def test_memory_store_is_said_to_be_gone_at_exit(cli: Run) -> None:
    proc = cli("demo", "--users", "5", "--url", "memory://")
    assert proc.returncode == 0, proc.stderr
    assert "gone now that the command has ended" in proc.stdout
    assert "statekit keys memory://" not in proc.stdout  # it could only print nothing


def test_help_examples_work_on_the_demos_data(cli: Run, tmp_path: Path) -> None:
    """Every example in a --help that looks into the demo's store prints something after a
    finished demo (default users and URL ids: demo:profile:1000000 ...)."""
    assert cli("demo", "--users", "10").returncode == 0
    examples = []
    for command in ([], ["keys"], ["get"], ["demo"], ["migrate"], ["bench"]):
        text = cli(*command, "--help").stdout
        for line in text.splitlines():
            if not line.strip().startswith("statekit ") or "statekit-demo.db" not in line:
                continue
            words = shlex.split(line.split("#", 1)[0])
            if words[1] in ("keys", "get"):
                examples.append(words[1:])
    assert len(examples) >= 3, examples
    for args in examples:
        proc = cli(*args)
        assert proc.returncode == 0 and proc.stdout.strip(), (args, proc.stdout, proc.stderr)


def _has_profiles(url: str) -> bool:
    async def main() -> bool:
        async with open_storage(url) as storage:
            return len(await storage.list_keys("demo:profile:*")) > 200

    try:
        return asyncio.run(main())
    except Exception:  # noqa: BLE001 - the demo may not have created the file yet
        return False


def _conversations(url: str) -> int:
    async def main() -> int:
        async with open_storage(url) as storage:
            return len(await storage.list_keys("fsm:{" + str(BOT_ID) + ":*"))

    return asyncio.run(main())


@pytest.mark.parametrize("where", ["redis", "memory"])
def test_demo_on_redis_and_memory(cli: Run, where: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("redis_url") if where == "redis" else "memory://"
    doc = load_json(cli("demo", "--users", str(USERS), "--url", url, "--json"))
    assert _counts(doc) == expected_counts(USERS)
    assert doc["keys"]["profiles"] == USERS


def test_progress_bar_when_forced(cli: Run, tmp_path: Path) -> None:
    proc = cli("demo", "--users", "10", "--url", f"sqlite:///{tmp_path / 'd.db'}", "--progress")
    assert proc.returncode == 0
    assert "10/10 users" in proc.stderr
    assert "conversations completed" in proc.stdout


def test_unwritable_location_is_one_line(cli: Run, tmp_path: Path) -> None:
    assert_one_line_error(cli("demo", "--users", "2", "--url", "sqlite:////nonexistent-dir/x.db"))


def test_redis_going_away_mid_run_is_reported_in_one_line(
    fresh_redis_server: RedisServer, tmp_path: Path
) -> None:
    url = f"{fresh_redis_server.url}?namespace=outage"
    proc = subprocess.Popen(
        statekit_cmd("demo", "--users", "20000", "--url", url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    time.sleep(2.0)
    assert proc.poll() is None, proc.communicate()
    fresh_redis_server.stop()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert all(line.startswith("statekit: ") for line in lines), err  # warnings: one line each
    assert lines[-1].startswith("statekit: error: Redis at ") and "unavailable" in lines[-1]


def test_resume_command_drops_fresh_and_never_shows_a_password() -> None:
    from statekit._cli.demo import _resume_command
    from statekit.cli import build_parser

    url = "redis://bot:hunter2secret@127.0.0.1:6379/0"
    args = build_parser().parse_args(
        ["demo", "--fresh", "--users", "50", "--url", url, "--concurrency", "7"]
    )
    command = _resume_command(args)
    assert command.startswith("statekit demo --users 50 --url ")
    assert command.endswith(" --concurrency 7")
    assert "--fresh" not in command and "hunter2secret" not in command
    defaults = build_parser().parse_args(["demo", "--fresh"])
    assert _resume_command(defaults) == "statekit demo"  # the same store: sqlite:///statekit-demo.db
