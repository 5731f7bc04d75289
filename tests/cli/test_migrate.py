"""``statekit migrate`` as a subprocess: TTLs kept, re-runs after an interruption, conflicts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from clitools import (
    Run,
    assert_one_line_error,
    clear,
    dump,
    fill,
    interruptible,
    load_json,
    statekit_cmd,
)

from statekit import open_storage
from statekit.testing import RedisClusterSetup

VALUES = {
    "fsm:{1:2:3::}": {"state": "Form:age", "data": {"name": "Ada", "tags": ["a", "b"]}},
    "blob": b"\x00\x01\xfe\xff",
    "text": "héllo",
    "float": 1.5,
    "flag": True,
    "nested": {"list": [1, [2, {"x": None}]], 7: "int key", b"k": "bytes key"},
}


def _source(url: str) -> None:
    fill(url, VALUES)
    fill(url, {f"counter:{i}": i for i in range(40)}, ttl=500)
    fill(url, {"short": "soon"}, ttl=300)


def _assert_same_store(src: str, dst: str) -> None:
    """Same keys and values; TTLs (read side by side, key by key) within a second of each other
    plus the time the two reads took."""

    async def main() -> None:
        async with open_storage(src) as a, open_storage(dst) as b:
            keys = await a.list_keys()
            assert sorted(keys) == sorted(await b.list_keys())
            for key in keys:
                started = time.monotonic()
                ttl, other_ttl = await a.get_ttl(key), await b.get_ttl(key)
                read = time.monotonic() - started  # the two TTLs are this far apart in time
                value, other_value = await a.get_state(key), await b.get_state(key)
                assert other_value == value and type(other_value) is type(value), key
                if ttl is None:
                    assert other_ttl is None, key
                else:
                    assert other_ttl is not None and abs(other_ttl - ttl) < 1.0 + read, (
                        key,
                        ttl,
                        other_ttl,
                    )

    asyncio.run(main())


def test_sqlite_to_redis_to_sqlite_keeps_values_and_ttls(
    cli: Run, tmp_path: Path, redis_url: str
) -> None:
    src = f"sqlite:///{tmp_path / 'src.db'}"
    back = f"sqlite:///{tmp_path / 'back.db'}"
    _source(src)
    first = load_json(cli("migrate", src, redis_url, "--json", "--batch-size", "7"))
    assert first["keys"] == first["copied"] == len(VALUES) + 41
    assert first["with_ttl"] == 41
    assert first["unchanged"] == 0 and first["overwritten"] == 0
    _assert_same_store(src, redis_url)
    second = load_json(cli("migrate", redis_url, back, "--json"))
    assert second["copied"] == len(VALUES) + 41
    _assert_same_store(src, back)
    _assert_same_store(redis_url, back)


def test_postgres_to_and_from_every_other_backend_keeps_values_and_ttls(
    cli: Run, tmp_path: Path, redis_url: str, pg_url: str
) -> None:
    src = f"sqlite:///{tmp_path / 'src.db'}"
    pg_again = pg_url.replace("namespace=cli", "namespace=again")
    back = f"sqlite:///{tmp_path / 'back.db'}"
    _source(src)
    total = len(VALUES) + 41
    try:
        for a, b in ((src, pg_url), (pg_url, redis_url), (redis_url, pg_again), (pg_again, back)):
            doc = load_json(cli("migrate", a, b, "--json", "--batch-size", "9"))
            assert doc["copied"] == total and doc["with_ttl"] == 41, (a, b, doc)
            _assert_same_store(a, b)
        _assert_same_store(src, back)
        again = load_json(cli("migrate", src, pg_url, "--json"))  # a re-run changes nothing
        assert again["unchanged"] == total and again["copied"] == 0
    finally:
        clear(pg_again)


def test_memory_destination_and_namespaces(cli: Run, tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path / 'one.db'}?namespace=old"
    dst = f"sqlite:///{tmp_path / 'one.db'}?namespace=new"
    _source(src)
    doc = load_json(cli("migrate", src, dst, "--json"))
    assert doc["copied"] == len(VALUES) + 41
    _assert_same_store(src, dst)
    # into memory:// (it lives only in that process): works, counts everything
    doc = load_json(cli("migrate", src, "memory://", "--json"))
    assert doc["copied"] == len(VALUES) + 41


def test_rerun_copies_nothing_twice(cli: Run, sqlite_url: str, redis_url: str) -> None:
    _source(sqlite_url)
    load_json(cli("migrate", sqlite_url, redis_url, "--json"))
    again = load_json(cli("migrate", sqlite_url, redis_url, "--json"))
    assert again["copied"] == 0
    assert again["unchanged"] == len(VALUES) + 41
    _assert_same_store(sqlite_url, redis_url)


def test_pattern_copies_only_matching_keys(cli: Run, sqlite_url: str, tmp_path: Path) -> None:
    _source(sqlite_url)
    dst = f"sqlite:///{tmp_path / 'dst.db'}"
    doc = load_json(cli("migrate", sqlite_url, dst, "--pattern", "counter:*", "--json"))
    assert doc["copied"] == 40
    assert sorted(dump(dst)) == sorted(f"counter:{i}" for i in range(40))


def test_refuses_different_values_and_writes_nothing(
    cli: Run, sqlite_url: str, redis_url: str
) -> None:
    _source(sqlite_url)
    fill(redis_url, {"text": "a different value", "flag": True})  # flag: same value, fine
    proc = cli("migrate", sqlite_url, redis_url, "--batch-size", "5")
    assert_one_line_error(proc, "different values", "1 of the", "'text'", "--overwrite")
    # nothing half-written: the destination is exactly as it was
    assert dump(redis_url) == {"text": ("a different value", None), "flag": (True, None)}
    # a dry run reports the conflict without writing
    dry = load_json(cli("migrate", sqlite_url, redis_url, "--dry-run", "--json"))
    assert dry["conflicts"] == 1 and dry["unchanged"] == 1 and dry["copied"] == 0
    assert len(dump(redis_url)) == 2
    # --overwrite replaces it
    doc = load_json(cli("migrate", sqlite_url, redis_url, "--overwrite", "--json"))
    assert doc["overwritten"] == 1
    assert doc["copied"] == len(VALUES) + 41 - 1  # flag was already there
    _assert_same_store(sqlite_url, redis_url)


def test_true_and_1_are_different_values(cli: Run, sqlite_url: str, tmp_path: Path) -> None:
    dst = f"sqlite:///{tmp_path / 'dst.db'}"
    fill(sqlite_url, {"k": True})
    fill(dst, {"k": 1})
    assert_one_line_error(cli("migrate", sqlite_url, dst), "different values")


def test_same_store_is_refused(cli: Run, sqlite_url: str) -> None:
    fill(sqlite_url, {"k": 1})
    assert_one_line_error(cli("migrate", sqlite_url, sqlite_url), "same store")


def test_missing_source_file_is_refused(cli: Run, tmp_path: Path) -> None:
    proc = cli("migrate", "sqlite:///nope.db", f"sqlite:///{tmp_path / 'dst.db'}")
    assert_one_line_error(proc, "no SQLite database")
    assert not (tmp_path / "nope.db").exists()


def _count(url: str) -> int:
    async def main() -> int:
        async with open_storage(url) as storage:
            return len(await storage.list_keys())

    return asyncio.run(main())


def test_killed_migrate_is_completed_by_a_rerun(
    tmp_path: Path, sqlite_url: str, redis_url: str, cli: Run
) -> None:
    fill(sqlite_url, {f"user:{i}": {"n": i} for i in range(1500)})
    fill(sqlite_url, {f"rl:{i}": i for i in range(500)}, ttl=400)
    proc = subprocess.Popen(
        statekit_cmd("migrate", sqlite_url, redis_url, "--batch-size", "20"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "_STATEKIT_TEST_BATCH_DELAY": "0.05"},
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 60
        while _count(redis_url) < 200:
            assert proc.poll() is None, "migrate finished before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    copied_before = _count(redis_url)
    assert 200 <= copied_before < 2000
    doc = load_json(cli("migrate", sqlite_url, redis_url, "--json"))
    assert doc["unchanged"] >= copied_before
    assert doc["copied"] + doc["unchanged"] == 2000
    _assert_same_store(sqlite_url, redis_url)


def test_interrupt_says_how_to_resume(cli: Run, tmp_path: Path, sqlite_url: str) -> None:
    fill(sqlite_url, {f"user:{i}": i for i in range(400)})
    dst = f"sqlite:///{tmp_path / 'dst.db'}"
    proc = subprocess.Popen(
        statekit_cmd("migrate", sqlite_url, dst, "--batch-size", "10", "--progress"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "_STATEKIT_TEST_BATCH_DELAY": "0.05"},
        cwd=tmp_path,
        preexec_fn=interruptible,
    )
    assert proc.stderr is not None
    # Ctrl-C once the copy runs (its first progress line): 40 batches of >= 50 ms are left, so
    # the interrupt lands mid-copy however slowly the command started
    first = proc.stderr.readline()
    assert first.startswith("migrate ["), first
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    err = first + rest
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("statekit: error: interrupted after copying"), last
    copied = int(last.split("copying ")[1].split(" keys")[0].replace(",", ""))
    assert 0 < copied < 400
    # what it said was copied is what the destination holds, and a re-run copies the rest
    assert len(dump(dst)) == copied
    assert load_json(cli("migrate", sqlite_url, dst, "--json"))["copied"] == 400 - copied


def test_progress_bar_and_summary(cli: Run, sqlite_url: str, tmp_path: Path) -> None:
    fill(sqlite_url, {f"k{i}": i for i in range(50)})
    dst = f"sqlite:///{tmp_path / 'dst.db'}"
    quiet = cli("migrate", sqlite_url, dst)
    assert quiet.returncode == 0 and quiet.stderr == ""  # stderr is not a terminal: no bar
    assert "copied" in quiet.stdout and "50" in quiet.stdout
    forced = cli("migrate", sqlite_url, f"sqlite:///{tmp_path / 'dst2.db'}", "--progress")
    assert forced.returncode == 0
    assert "50/50 keys" in forced.stderr and "100%" in forced.stderr
    # the bar's last rate and the summary's are one figure (keys over the same seconds)
    bar_rate = forced.stderr.strip().splitlines()[-1].split("100%")[1].split("/s")[0].strip()
    time_row = next(line for line in forced.stdout.splitlines() if line.startswith("time"))
    assert f"({bar_rate} keys/s)" in time_row, (forced.stderr, time_row)
    # nothing left to copy, or a failure before the copy: no bar at all
    again = cli("migrate", sqlite_url, f"sqlite:///{tmp_path / 'dst2.db'}", "--progress")
    assert again.returncode == 0 and again.stderr == ""
    failed = cli("migrate", sqlite_url, "mongodb://x", "--progress")
    assert failed.returncode == 2 and "migrate [" not in failed.stderr


def test_json_seconds_are_rounded_to_milliseconds(
    cli: Run, sqlite_url: str, tmp_path: Path
) -> None:
    fill(sqlite_url, {f"k{i}": i for i in range(20)})
    proc = cli("migrate", sqlite_url, f"sqlite:///{tmp_path / 'dst.db'}", "--json")
    doc = load_json(proc)
    assert doc["seconds"] > 0 and doc["seconds"] == round(doc["seconds"], 3)
    assert '"seconds": ' + str(doc["seconds"]) in proc.stdout


def test_dry_run_writes_nothing(cli: Run, sqlite_url: str, tmp_path: Path) -> None:
    _source(sqlite_url)
    doc = load_json(cli("migrate", sqlite_url, "sqlite:///new.db", "--dry-run", "--json"))
    assert doc["dry_run"] is True and doc["keys"] == len(VALUES) + 41
    assert doc["copied"] == 0 and doc["conflicts"] == 0
    assert not (tmp_path / "new.db").exists()
    text = cli("migrate", sqlite_url, "sqlite:///new.db", "--dry-run")
    assert "would copy" in text.stdout and not (tmp_path / "new.db").exists()


def test_keys_expiring_during_the_copy_are_not_resurrected(
    cli: Run, sqlite_url: str, tmp_path: Path
) -> None:
    """200 keys expire while the copy (20 batches, slowed down to outlast their TTL) runs: each is
    either copied with the time it had left or counted as expired, never copied for good. If the
    machine was so slow that every key expired before the command even listed them, the run
    proves nothing and is made again with a longer TTL."""
    for attempt, ttl in enumerate((1.5, 4.5)):
        fill(sqlite_url, {f"k{i}": i for i in range(200)}, ttl=ttl)
        dst = f"sqlite:///{tmp_path / f'dst{attempt}.db'}"
        delay = str(ttl / 15)  # 20 batches take at least 4/3 of the TTL
        env = {"_STATEKIT_TEST_BATCH_DELAY": delay}
        doc = load_json(cli("migrate", sqlite_url, dst, "--batch-size", "10", "--json", env=env))
        assert doc["copied"] + doc["expired"] == doc["keys"] <= 200
        if doc["keys"]:
            break
    else:
        raise AssertionError("every key expired before migrate listed them, twice")
    assert doc["expired"] > 0  # the last batches were read after the keys' end
    for key, (_, left) in dump(dst).items():
        assert left is not None and left <= ttl, key  # copied with what it had left


def test_migrate_into_redis_cluster_and_list_its_keys(
    cli: Run, sqlite_url: str, redis_cluster: RedisClusterSetup
) -> None:
    url = f"{redis_cluster.url}?namespace=cli{uuid.uuid4().hex[:8]}"
    try:
        _source(sqlite_url)
        doc = load_json(cli("migrate", sqlite_url, url, "--json", "--batch-size", "9"))
        assert doc["copied"] == len(VALUES) + 41
        _assert_same_store(sqlite_url, url)
        listed = load_json(cli("keys", url, "counter:*", "--json"))  # scans every primary
        assert listed == sorted(f"counter:{i}" for i in range(40))
    finally:
        clear(url)
