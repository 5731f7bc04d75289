"""``statekit session inspect`` / ``convert`` as subprocesses, checked against the real libraries."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from clitools import Run, assert_one_line_error, load_json

from statekit.session import Peer, SessionData, SessionSnapshot, UpdateState
from statekit.session.files import export_file, import_file
from statekit.session.strings import export_string, import_string

KEY = bytes((i * 37 + 11) % 256 for i in range(256))
PHONE = "15550123456"


def snapshot() -> SessionSnapshot:
    data = SessionData(
        dc_id=2,
        auth_key=KEY,
        server_address="149.154.167.51",
        port=443,
        api_id=94575,
        date=1_700_000_000,
        user_id=777000123,
        is_bot=False,
    )
    peers = [
        Peer(
            id=100001,
            access_hash=5_000_000_000_000_000_001,
            type="user",
            usernames=("alice",),
            phone_number=PHONE,
            last_update_on=1_700_000_000,
        ),
        Peer(
            id=-1001000000001,
            access_hash=-42,
            type="channel",
            usernames=("news",),
            last_update_on=1_700_000_000,
        ),
    ]
    states = [UpdateState(id=0, pts=10, qts=2, date=1_700_000_000, seq=5)]
    return SessionSnapshot(data, peers, states)


@pytest.fixture
def kurigram_file(tmp_path: Path) -> Path:
    return export_file(snapshot(), tmp_path / "account.session", "kurigram")


def test_inspect_file_masks_secrets(cli: Run, kurigram_file: Path) -> None:
    for args in ([], ["--peers"], ["--json"], ["--json", "--peers"]):
        proc = cli("session", "inspect", str(kurigram_file), *args)
        assert proc.returncode == 0, proc.stderr
        assert KEY.hex() not in proc.stdout
        assert KEY.hex()[:32] not in proc.stdout
        assert PHONE not in proc.stdout
        assert "5000000000000000001" not in proc.stdout
    doc = load_json(cli("session", "inspect", str(kurigram_file), "--json", "--peers"))
    assert doc["kind"] == "file" and doc["format"] == "kurigram" and doc["schema"] == 7
    assert doc["session"]["auth_key"] is None
    assert doc["session"]["dc_id"] == 2 and doc["session"]["user_id"] == 777000123
    assert doc["session"]["api_id"] == 94575
    assert doc["peer_count"] == 2 and doc["peer_types"] == {"channel": 1, "user": 1}
    assert doc["update_states"] == [{"id": 0, "pts": 10, "qts": 2, "date": 1_700_000_000, "seq": 5}]
    assert {p["id"] for p in doc["peers"]} == {100001, -1001000000001}


def test_inspect_show_secrets(cli: Run, kurigram_file: Path) -> None:
    doc = load_json(
        cli("session", "inspect", str(kurigram_file), "--json", "--peers", "--show-secrets")
    )
    assert doc["session"]["auth_key"] == KEY.hex()
    assert PHONE in [p["phone_number"] for p in doc["peers"]]
    text = cli("session", "inspect", str(kurigram_file), "--show-secrets")
    assert KEY.hex() in text.stdout


def test_auth_key_id_matches_telethon(cli: Run, kurigram_file: Path) -> None:
    from telethon.crypto import AuthKey

    doc = load_json(cli("session", "inspect", str(kurigram_file), "--json"))
    assert int(doc["session"]["auth_key_id"], 16) == AuthKey(KEY).key_id


@pytest.mark.parametrize("fmt", ["pyrogram", "telethon", "statekit"])
def test_inspect_strings_from_argument_stdin_and_file(cli: Run, tmp_path: Path, fmt: str) -> None:
    text = export_string(snapshot(), fmt)
    (tmp_path / "s.txt").write_text(text + "\n")
    for args, stdin in (([text], None), (["-"], text + "\n"), ([str(tmp_path / "s.txt")], None)):
        doc = load_json(cli("session", "inspect", *args, "--json", input=stdin))
        assert doc["kind"] == "string" and doc["format"] == fmt
        assert doc["session"]["dc_id"] == 2
        assert doc["session"]["auth_key"] is None
    plain = cli("session", "inspect", text)
    assert text not in plain.stdout and KEY.hex() not in plain.stdout


@pytest.mark.parametrize("fmt", ["pyrogram", "telethon", "statekit"])
def test_convert_to_strings(cli: Run, kurigram_file: Path, fmt: str) -> None:
    proc = cli("session", "convert", str(kurigram_file), "--to", f"{fmt}-string")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip()
    back = import_string(out)
    assert back.data.auth_key == KEY and back.data.dc_id == 2
    if fmt == "statekit":
        assert back.data == snapshot().data
        assert sorted(back.peers, key=lambda p: p.id) == sorted(
            snapshot().peers, key=lambda p: p.id
        )
        assert back.update_states == snapshot().update_states
    else:
        assert out == export_string(snapshot(), fmt)


def test_convert_to_telethon_file_opens_in_telethon(
    cli: Run, kurigram_file: Path, tmp_path: Path
) -> None:
    from telethon.sessions import SQLiteSession

    out = tmp_path / "tele.session"
    proc = cli("session", "convert", str(kurigram_file), "--to", "telethon-file", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "wrote telethon-file" in proc.stderr
    assert "(2 peers, 1 update state)" in proc.stderr  # counted in words that agree
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    session = SQLiteSession(str(out))
    try:
        assert session.auth_key is not None and session.auth_key.key == KEY
        assert session.dc_id == 2 and session.server_address == "149.154.167.51"
        assert session.get_input_entity(100001).access_hash == 5_000_000_000_000_000_001
    finally:
        session.close()


def test_convert_chain_through_every_file_format(
    cli: Run, kurigram_file: Path, tmp_path: Path
) -> None:
    src = kurigram_file
    for fmt in ("telethon", "kurigram", "pyrogram"):
        out = tmp_path / f"via-{fmt}.session"
        extra = ["--api-id", "94575"] if fmt != "telethon" else []  # Telethon files have no api_id
        proc = cli("session", "convert", str(src), "--to", f"{fmt}-file", "-o", str(out), *extra)
        assert proc.returncode == 0, proc.stderr
        back = import_file(out)
        assert back.data.auth_key == KEY and back.data.user_id == 777000123
        assert {p.id for p in back.peers} == {100001, -1001000000001}
        src = out


def test_convert_from_telethon_string_needs_ids(cli: Run, tmp_path: Path) -> None:
    text = export_string(snapshot(), "telethon")  # holds no api_id and no user_id
    out = tmp_path / "p.session"
    proc = cli("session", "convert", "-", "--to", "pyrogram-file", "-o", str(out), input=text)
    assert_one_line_error(proc, "--api-id", "--user-id")
    assert not out.exists()
    proc = cli(
        "session",
        "convert",
        "-",
        "--to",
        "pyrogram-file",
        "-o",
        str(out),
        "--api-id",
        "5",
        "--user-id",
        "42",
        "--is-bot",
        input=text,
    )
    assert proc.returncode == 0, proc.stderr
    data = import_file(out).data
    assert (data.api_id, data.user_id, data.is_bot, data.auth_key) == (5, 42, True, KEY)


def test_convert_string_to_file_with_output(cli: Run, kurigram_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "backup.txt"
    proc = cli("session", "convert", str(kurigram_file), "--to", "statekit-string", "-o", str(out))
    assert proc.returncode == 0 and proc.stdout == ""
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert import_string(out.read_text()).data.auth_key == KEY
    again = cli("session", "convert", str(kurigram_file), "--to", "statekit-string", "-o", str(out))
    assert_one_line_error(again, "exists", "--overwrite")


def test_existing_output_file_is_not_replaced(
    cli: Run, kurigram_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "taken.session"
    out.write_bytes(b"precious")
    proc = cli("session", "convert", str(kurigram_file), "--to", "telethon-file", "-o", str(out))
    assert_one_line_error(proc, "exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    proc = cli(
        "session",
        "convert",
        str(kurigram_file),
        "--to",
        "telethon-file",
        "-o",
        str(out),
        "--overwrite",
    )
    assert proc.returncode == 0 and import_file(out).data.auth_key == KEY


def test_file_format_needs_output(cli: Run, kurigram_file: Path) -> None:
    proc = cli("session", "convert", str(kurigram_file), "--to", "kurigram-file")
    assert_one_line_error(proc, "-o")


def test_directory_as_session_file(cli: Run, tmp_path: Path) -> None:
    (tmp_path / "sessions").mkdir()
    assert_one_line_error(cli("session", "inspect", str(tmp_path / "sessions")), "directory")
    assert_one_line_error(
        cli("session", "convert", str(tmp_path / "sessions"), "--to", "telethon-string"),
        "directory",
    )


def test_unknown_session_strings(cli: Run) -> None:
    line = assert_one_line_error(cli("session", "inspect", "Q" * 200), "200 characters", "tried")
    assert "Q" * 20 not in line  # the string itself is never echoed
    assert_one_line_error(cli("session", "inspect", "-", input="not a session\n"))
    assert_one_line_error(cli("session", "inspect", "short"), "no session file")


def test_unreadable_files(cli: Run, tmp_path: Path) -> None:
    (tmp_path / "notes.session").write_text("hello\n")
    assert_one_line_error(cli("session", "inspect", str(tmp_path / "notes.session")), "SQLite")
    assert_one_line_error(
        cli("session", "inspect", str(tmp_path / "missing.session")), "no session file"
    )
    other = tmp_path / "other.db"
    import sqlite3

    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    assert_one_line_error(cli("session", "inspect", str(other)))


def test_unknown_target_format(cli: Run, kurigram_file: Path) -> None:
    proc = cli("session", "convert", str(kurigram_file), "--to", "json")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "invalid choice" in proc.stderr


# --- hostile or mistaken sources (issue 14 items 1 and 5, issue 19 item 7) ---------------------


def _assert_not_echoed(text: str, output: str) -> None:
    for start in range(0, max(len(text) - 16, 1), 8):
        assert text[start : start + 16] not in output
    assert KEY.hex()[:16] not in output


def test_standard_alphabet_pyrogram_string_is_read_and_never_shown(cli: Run) -> None:
    text = export_string(snapshot(), "pyrogram").translate(str.maketrans("-_", "+/"))
    assert "/" in text or "+" in text
    proc = cli("session", "inspect", text)
    assert proc.returncode == 0, proc.stderr
    assert "pyrogram string" in proc.stdout
    _assert_not_echoed(text, proc.stdout + proc.stderr)


def test_value_neither_file_nor_string_is_described_not_echoed(cli: Run) -> None:
    good = export_string(snapshot(), "pyrogram").translate(str.maketrans("-_", "+/"))
    for text in (good[:-5], good[:200] + "-" + good[201:], "sk1:" + good[4:], good + " x"):
        for command in (("inspect",), ("convert", "--to", "telethon-string")):
            proc = cli("session", command[0], text, *command[1:])
            line = assert_one_line_error(proc, f"{len(text)} characters", "sha256")
            _assert_not_echoed(text, proc.stdout + proc.stderr)
            assert "not shown" in line


def test_a_missing_path_is_named(cli: Run) -> None:
    proc = cli("session", "inspect", "nothing/here.session")
    assert_one_line_error(proc, "'nothing/here.session'")


def test_a_fifo_is_refused_at_once(cli: Run, tmp_path: Path) -> None:
    fifo = tmp_path / "bot.session"
    os.mkfifo(fifo)
    for command in (("inspect",), ("convert", "--to", "telethon-string")):
        proc = cli("session", command[0], str(fifo), *command[1:], timeout=60)
        assert_one_line_error(proc, "named pipe (FIFO)")


def test_convert_to_gramjs_string_and_back(cli: Run, kurigram_file: Path) -> None:
    proc = cli("session", "convert", str(kurigram_file), "--to", "gramjs-string")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.strip()
    assert text.startswith("1") and len(text) == 369
    back = import_string(text).data
    assert (back.server_address, back.port, back.auth_key) == ("149.154.167.51", 443, KEY)
    doc = load_json(cli("session", "inspect", "-", "--json", input=text))
    assert doc["format"] == "gramjs"


def test_a_large_statekit_string_file_written_by_convert_reads_back(
    cli: Run, tmp_path: Path
) -> None:
    import random

    rng = random.Random(5)
    base = snapshot()
    peers = [
        Peer(i + 1, rng.getrandbits(63), "user", (f"u{rng.getrandbits(40):x}",), None, 1)
        for i in range(10_000)
    ]
    source = export_file(
        SessionSnapshot(base.data, peers, base.update_states), tmp_path / "big.session", "kurigram"
    )
    out = tmp_path / "backup.txt"
    proc = cli("session", "convert", str(source), "--to", "statekit-string", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 64 * 1024
    doc = load_json(cli("session", "inspect", str(out), "--json"))
    assert doc["format"] == "statekit" and doc["peer_count"] == 10_000
