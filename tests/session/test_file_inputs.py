"""Session files that are not what they seem (issue 14 items 5-7): anything but a regular file is
refused at once, a bad path or an out-of-range field is a ``SessionFormatError`` naming it, and
reading a file changes nothing beside it."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

import pytest

from statekit.errors import SessionFormatError
from statekit.session import (
    Peer,
    SessionData,
    SessionSnapshot,
    UpdateState,
    detect_file_format,
    export_file,
    export_string,
    import_file,
)

KEY = bytes((i * 13 + 1) % 256 for i in range(256))
SNAP = SessionSnapshot(
    SessionData(2, KEY, api_id=5, user_id=7, date=1_700_000_000),
    [Peer(11, 12, "user", ("ann",), "123", 1_700_000_000)],
    [UpdateState(0, 1, 2, 3, 4)],
)
READERS = [import_file, detect_file_format]


def _call_in_thread(func: object, path: object) -> BaseException | None:
    """Run ``func(path)`` in a daemon thread; fail the test if it does not return within 10 s
    (a reader blocked on a FIFO never would)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            func(path)  # type: ignore[operator]
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert outcome, f"{getattr(func, '__name__', func)} blocked on {path!r}"
    return outcome[0]


@pytest.mark.parametrize("reader", READERS)
def test_a_fifo_is_refused_without_opening_it(tmp_path: Path, reader: object) -> None:
    fifo = tmp_path / "bot.session"
    os.mkfifo(fifo)
    exc = _call_in_thread(reader, fifo)
    assert isinstance(exc, SessionFormatError)
    assert "named pipe (FIFO)" in str(exc)


@pytest.mark.skipif(not hasattr(os, "O_PATH"), reason="the file is pinned by an O_PATH descriptor (Linux)")
@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("kept", [True, False], ids=["file-moved", "file-deleted"])
def test_a_path_swapped_for_a_fifo_after_the_check_does_not_block(
    tmp_path: Path, reader: object, kept: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the readers check for a regular file, then SQLite opens it: a FIFO put in its place in
    # between must not block SQLite's open (nobody would ever write to it). SQLite reads the
    # file checked, if it still has a name, or fails
    path = _kurigram_file(tmp_path)
    real_connect = sqlite3.connect

    def swap_then_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        if not path.is_fifo():
            if kept:
                path.rename(tmp_path / "moved.session")
            else:
                path.unlink()
            os.mkfifo(path)
        return real_connect(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", swap_then_connect)
    exc = _call_in_thread(reader, path)
    if kept:
        assert exc is None
    else:
        assert isinstance(exc, SessionFormatError)
        assert "cannot be opened" in str(exc)


@pytest.mark.parametrize("reader", READERS)
def test_not_a_regular_file_is_refused(tmp_path: Path, reader: object) -> None:
    loop = tmp_path / "loop.session"
    loop.symlink_to(tmp_path / "loop.session")
    cases = {tmp_path: "a directory", Path("/dev/null"): "a device", loop: "symbolic link loop"}
    for path, said in cases.items():
        exc = _call_in_thread(reader, path)
        assert isinstance(exc, SessionFormatError), path
        assert said in str(exc)


@pytest.mark.parametrize("reader", READERS)
def test_a_path_with_a_nul_byte_is_a_session_format_error(reader: object) -> None:
    exc = _call_in_thread(reader, "bot\x00.session")
    assert isinstance(exc, SessionFormatError)
    assert "NUL byte" in str(exc)


def _kurigram_file(tmp_path: Path) -> Path:
    return export_file(SNAP, tmp_path / "bot.session", "kurigram")


@pytest.mark.parametrize(
    ("sql", "field"),
    [
        ("UPDATE sessions SET date = 1e300", "date"),
        ("UPDATE sessions SET date = 9223372036854775807.0 * 4", "date"),
        ("UPDATE sessions SET port = 70000", "port"),
        ("UPDATE sessions SET server_address = 'e:3134:392e::'", "server address"),
        ("UPDATE peers SET access_hash = -1e300", "access_hash"),
        ("UPDATE update_state SET pts = 99999999999999999999", "pts"),
        ("UPDATE update_state SET date = 1e300", "date"),
    ],
)
def test_an_out_of_range_field_is_refused_naming_it(tmp_path: Path, sql: str, field: str) -> None:
    path = _kurigram_file(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute(sql)
    conn.close()
    with pytest.raises(SessionFormatError, match=field):
        import_file(path)


def test_a_float_date_in_range_gives_a_record_every_later_step_accepts(tmp_path: Path) -> None:
    path = _kurigram_file(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE sessions SET date = 1700000000.75")
    conn.close()
    snap = import_file(path)
    assert snap.data.date == 1_700_000_000
    for fmt in ("statekit", "telethon", "gramjs"):
        export_string(snap, fmt)


ROW_SHAPES = {  # peers row values a reader accepts, and the peer each gives
    "int phone": ("UPDATE peers SET phone_number = 4412345", {"phone_number": "4412345"}),
    "real stamp": ("UPDATE peers SET last_update_on = 1700000000.75", {"last_update_on": 1_700_000_000}),
    "no access hash": ("UPDATE peers SET access_hash = NULL", {"access_hash": 0}),
    "two usernames": ("INSERT INTO usernames VALUES (11, 'bea')", {"usernames": ("ann", "bea")}),
    "an @ username": ("UPDATE usernames SET username = '@ann'", {"usernames": ("ann",)}),
    "no username": ("DELETE FROM usernames", {"usernames": ()}),
}


@pytest.mark.parametrize("shape", sorted(ROW_SHAPES))
def test_every_accepted_peer_row_shape_reads_as_the_peer_it_holds(tmp_path: Path, shape: str) -> None:
    # the common row is checked inline, any other takes the full path: both give the same peer
    sql, changed = ROW_SHAPES[shape]
    path = _kurigram_file(tmp_path)
    (unchanged,) = import_file(path).peers
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP TRIGGER trg_peers_last_update_on")  # it would stamp the row anew
        conn.execute(sql)
    assert import_file(path).peers == [dataclasses.replace(unchanged, **changed)]


def test_every_accepted_telethon_entity_shape_reads_as_the_peer_it_holds(tmp_path: Path) -> None:
    path = export_file(SNAP, tmp_path / "t.session", "telethon")
    with closing(sqlite3.connect(path)) as conn, conn:
        rows = [
            (12, 0, None, None, None, None),  # nothing but an id
            (13, 5, "@cid", 4412345, 1700000000.75, "Cid"),  # a phone (an INTEGER column), real date
            (16, 8, "dee", 4412346, 1_700_000_002, None),  # a phone
            (-14, 6, "", None, 1_700_000_001, ""),  # a group, empty texts
            (-1000000000015, 7, "chan", None, None, "C"),  # a channel
        ]
        conn.executemany("INSERT INTO entities (id, hash, username, phone, date, name) VALUES (?, ?, ?, ?, ?, ?)", rows)
    assert import_file(path).peers == [
        Peer(-1000000000015, 7, "channel", ("chan",), None, None, "C"),
        Peer(-14, 6, "group", (), None, 1_700_000_001, None),
        Peer(11, 12, "user", ("ann",), "123", 1_700_000_000),
        Peer(12, 0, "user", (), None, None),
        Peer(13, 5, "user", ("cid",), "4412345", 1_700_000_000, "Cid"),
        Peer(16, 8, "user", ("dee",), "4412346", 1_700_000_002),
    ]


def _listing(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in directory.iterdir()}


def test_reading_a_wal_mode_file_changes_nothing_beside_it(tmp_path: Path) -> None:
    path = _kurigram_file(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    before = _listing(tmp_path)
    assert before.keys() == {"bot.session"}
    assert import_file(path) == import_file(path)
    assert detect_file_format(path) == ("kurigram", 7)
    assert _listing(tmp_path) == before


def test_a_wal_file_beside_the_session_is_read_and_left_as_it_is(tmp_path: Path) -> None:
    path = _kurigram_file(tmp_path)
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("UPDATE sessions SET user_id = 4242")
    writer.commit()  # the change lives only in bot.session-wal while the writer is open
    try:
        before = _listing(tmp_path)
        assert "bot.session-wal" in before
        assert import_file(path).data.user_id == 4242
        assert _listing(tmp_path) == before
    finally:
        writer.close()


def test_a_rollback_journal_beside_the_session_is_left_as_it_is(tmp_path: Path) -> None:
    path = _kurigram_file(tmp_path)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE sessions SET user_id = 4242")  # uncommitted: its journal lies beside
    try:
        before = _listing(tmp_path)
        assert "bot.session-journal" in before
        assert import_file(path).data.user_id == 7  # only what was committed
        assert _listing(tmp_path) == before
    finally:
        writer.execute("ROLLBACK")
        writer.close()


_OTHER_PROCESS = (  # what another process sharing the file does; prints what came of it
    "import sqlite3, sys\n"
    "db = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
    "try:\n"
    "    db.execute(sys.argv[2])\n"
    "except sqlite3.OperationalError as exc:\n"
    "    print(exc)\n"
    "else:\n"
    "    print('done')\n"
    "db.close()\n"
)


def _other_process(path: Path, sql: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS, str(path), sql],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return done.stdout.strip()


@pytest.mark.parametrize("reader", READERS)
def test_a_client_of_this_process_keeps_its_write_lock_through_a_read(
    tmp_path: Path, reader: object
) -> None:
    # kurigram and Telethon keep a transaction open between their writes and save(): closing a
    # descriptor of the file drops every POSIX lock the process holds on it, and another
    # process could then write under the client (SQLite's "How To Corrupt", 2.2)
    path = _kurigram_file(tmp_path)
    client = sqlite3.connect(path, isolation_level=None)
    try:
        client.execute("BEGIN IMMEDIATE")
        client.execute("UPDATE sessions SET user_id = 4242")
        if reader is import_file:
            assert import_file(path).data.user_id == 7  # only what was committed
        else:
            assert detect_file_format(path) == ("kurigram", 7)
        assert _other_process(path, "BEGIN IMMEDIATE") == "database is locked"
        client.execute("COMMIT")
    finally:
        client.close()
    assert import_file(path).data.user_id == 4242


@pytest.mark.parametrize("reader", READERS)
def test_a_client_of_this_process_keeps_its_wal_through_a_read(tmp_path: Path, reader: object) -> None:
    # a WAL-mode client's shared lock on the file tells another process closing its connection
    # that it is not the last one; without it that process deletes the WAL under the client
    path = _kurigram_file(tmp_path)
    client = sqlite3.connect(path, isolation_level=None)
    try:
        client.execute("PRAGMA journal_mode = WAL")
        client.execute("PRAGMA wal_autocheckpoint = 0")
        client.execute("UPDATE sessions SET user_id = 4242")  # committed, in the WAL only
        if reader is import_file:
            assert import_file(path).data.user_id == 4242
        else:
            assert detect_file_format(path) == ("kurigram", 7)
        assert _other_process(path, "UPDATE sessions SET api_id = 6") == "done"
        assert Path(f"{path}-wal").exists(), "the other process took itself for the last user"
        assert client.execute("SELECT user_id, api_id FROM sessions").fetchone() == (4242, 6)
    finally:
        client.close()


def test_a_file_with_more_rows_than_any_session_is_refused_before_reading_them(
    tmp_path: Path,
) -> None:
    from statekit.session.strings import MAX_UPDATE_STATES

    path = _kurigram_file(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO update_state VALUES (?, 1, 1, 1, 1)",
            ((-(10**12) - i,) for i in range(1, MAX_UPDATE_STATES + 1)),
        )
    conn.close()
    with pytest.raises(SessionFormatError, match="65537 rows in table 'update_state'"):
        import_file(path)
