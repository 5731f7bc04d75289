"""Session files (SPEC section 6): Pyrogram 2.0 (schema 3), kurigram / irenogram (schema 7) and
Telethon (schemas 7 and 8), read and written, checked against the real libraries both ways and
against fixtures written by pyrogram 1.4.16 / 2.0.106, irenogram and Telethon 1.34."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from pyrogram import raw
from pyrogram.storage import SQLiteStorage as KurigramStorage
from pyrogram.storage import UpdateState as KurigramState
from telethon.crypto import AuthKey
from telethon.sessions import SQLiteSession
from telethon.tl import types as tl

from statekit.errors import SessionFormatError
from statekit.session import (
    Peer,
    SessionData,
    SessionSnapshot,
    UpdateState,
    detect_file_format,
    export_file,
    export_file_async,
    import_file,
    import_file_async,
)
from statekit.session import files as files_module

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sessions"
MANIFEST: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text())
KEY = bytes((i * 11 + 5) % 256 for i in range(256))
NOW = int(datetime.datetime.now(datetime.timezone.utc).timestamp())


def expected(entry: dict[str, Any]) -> SessionSnapshot:
    session = dict(entry["session"], auth_key=bytes.fromhex(entry["session"]["auth_key"]))
    return SessionSnapshot(
        SessionData(**session),
        sorted((Peer.from_dict(p) for p in entry["peers"]), key=lambda p: p.id),
        sorted((UpdateState.from_dict(u) for u in entry["update_states"]), key=lambda u: u.id),
    )


def sample(**over: Any) -> SessionSnapshot:
    fields: dict[str, Any] = {
        "dc_id": 2,
        "auth_key": KEY,
        "server_address": "149.154.167.51",
        "port": 443,
        "api_id": 94575,
        "test_mode": False,
        "date": 1_700_000_000,
        "user_id": 5_987_654_321,
        "is_bot": False,
    }
    fields.update(over)
    return SessionSnapshot(
        SessionData(**fields),
        [
            Peer(100, 5555, "user", ("Alice", "alice_alt"), "15551234567", NOW),
            Peer(200, -7, "bot", ("helper_bot",), None, NOW),
            Peer(-1001234567890, -42, "supergroup", ("Chatters",), None, NOW),
            Peer(-123, 0, "group", (), None, NOW),
        ],
        [UpdateState(0, 10, 20, 1_700_000_000, 5), UpdateState(-1001234567890, 99, 0, 0, 0)],
    )


def copy_fixture(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copyfile(FIXTURES / name, target)
    return target


# --- fixtures written by the libraries -----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MANIFEST["files"]))
def test_fixture_file_made_by_the_library_reads_with_every_field(name: str) -> None:
    entry = MANIFEST["files"][name]
    snapshot = import_file(FIXTURES / name)
    assert snapshot == expected(entry)
    assert detect_file_format(FIXTURES / name) == (entry["format"], entry["schema"])


@pytest.mark.parametrize("name", sorted(MANIFEST["files"]))
@pytest.mark.parametrize("target", ["pyrogram", "kurigram", "telethon"])
def test_fixture_file_converts_to_every_format_and_back(
    name: str, target: str, tmp_path: Path
) -> None:
    source = import_file(FIXTURES / name)
    out = export_file(source, tmp_path / "out.session", target, api_id=source.data.api_id or 1)
    back = import_file(out)
    assert detect_file_format(out)[0] == target
    want = source.data
    got = back.data
    assert (got.dc_id, got.auth_key, got.user_id) == (want.dc_id, want.auth_key, want.user_id)
    assert {p.id: p.access_hash for p in back.peers} == {p.id: p.access_hash for p in source.peers}
    if target != "telethon":
        assert (got.test_mode, got.is_bot) == (want.test_mode, want.is_bot)
        assert got.api_id == (want.api_id or 1)
        assert {p.id: p.phone_number for p in back.peers} == {
            p.id: p.phone_number for p in source.peers
        }
    if target == "kurigram":  # a kurigram file keeps no display names (Telethon's entities.name)
        assert back.peers == [dataclasses.replace(p, name=None) for p in source.peers]
        assert back.update_states == source.update_states
    if target == "telethon":
        assert (got.server_address, got.port) == (want.server_address, want.port)
        assert {p.id: p.username and p.username.lower() for p in back.peers} == {
            p.id: p.username and p.username.lower() for p in source.peers
        }
        assert [u.id for u in back.update_states] == [u.id for u in source.update_states]


async def test_telethon_upgrades_the_v7_fixture_and_statekit_reads_v8_the_same(
    tmp_path: Path,
) -> None:
    path = copy_fixture("telethon_v7.session", tmp_path)
    session = SQLiteSession(str(path))  # Telethon migrates schema 7 to 8 on open
    session.close()
    assert detect_file_format(path) == ("telethon", 8)
    assert import_file(path) == expected(MANIFEST["files"]["telethon_v7.session"])


@pytest.mark.parametrize("name", ["pyrogram1_v2.session", "pyrogram2_v3.session"])
async def test_kurigram_migrates_old_fixtures_and_statekit_reads_the_result(
    name: str, tmp_path: Path
) -> None:
    path = copy_fixture(name, tmp_path)
    storage = KurigramStorage(path.stem, workdir=tmp_path)
    await storage.open()  # migrates up to schema 7
    await storage.close()
    assert detect_file_format(path) == ("kurigram", 7)
    migrated = import_file(path)
    want = expected(MANIFEST["files"][name])
    assert migrated.data == want.data
    # kurigram's migration keeps the peers but not their usernames (a kurigram limitation)
    assert [(p.id, p.access_hash, p.type) for p in migrated.peers] == [
        (p.id, p.access_hash, p.type) for p in want.peers
    ]


# --- kurigram, live --------------------------------------------------------------------------------


async def write_with_kurigram(tmp_path: Path, name: str) -> Path:
    storage = KurigramStorage(name, workdir=tmp_path)
    await storage.open()
    await storage.dc_id(4)
    await storage.api_id(611335)
    await storage.test_mode(False)
    await storage.server_address("149.154.167.91")
    await storage.port(443)
    await storage.auth_key(KEY)
    await storage.user_id(6_000_000_123)
    await storage.is_bot(True)
    await storage.update_peers(
        [
            (100, 5555, "user", "15551234567"),
            (-1001234567890, -42, "forum", None),
            (-123, 0, "group", None),
        ]
    )
    await storage.update_usernames([(100, ["Alice", "alice_alt"]), (-1001234567890, ["chan"])])
    await storage.set_update_state(
        [
            KurigramState(0, 10, 20, 1_700_000_000, 5),
            KurigramState(-1001234567890, 99, None, None, None),
        ]
    )
    await storage.save()
    await storage.close()
    return tmp_path / f"{name}.session"


async def test_kurigram_file_reads_in_statekit_with_every_field(tmp_path: Path) -> None:
    path = await write_with_kurigram(tmp_path, "made_by_kurigram")
    snapshot = import_file(path)
    data = snapshot.data
    assert data == SessionData(
        dc_id=4,
        auth_key=KEY,
        server_address="149.154.167.91",
        port=443,
        api_id=611335,
        test_mode=False,
        date=data.date,
        user_id=6_000_000_123,
        is_bot=True,
    )
    assert data.date is not None and abs(data.date - NOW) < 3600
    stamps = {p.id: p.last_update_on for p in snapshot.peers}
    assert all(s is not None and abs(s - NOW) < 3600 for s in stamps.values())
    assert snapshot.peers == [
        Peer(-1001234567890, -42, "forum", ("chan",), None, stamps[-1001234567890]),
        Peer(-123, 0, "group", (), None, stamps[-123]),
        Peer(100, 5555, "user", ("Alice", "alice_alt"), "15551234567", stamps[100]),
    ]
    assert snapshot.update_states == [
        UpdateState(-1001234567890, 99, None, None, None),
        UpdateState(0, 10, 20, 1_700_000_000, 5),
    ]


async def test_statekit_kurigram_file_opens_in_kurigram_with_every_field(tmp_path: Path) -> None:
    snapshot = sample()
    export_file(snapshot, tmp_path / "ours.session", "kurigram")
    storage = KurigramStorage("ours", workdir=tmp_path)
    await storage.open()
    try:
        d = snapshot.data
        assert await storage.dc_id() == d.dc_id
        assert await storage.server_address() == d.server_address
        assert await storage.port() == d.port
        assert await storage.api_id() == d.api_id
        assert bool(await storage.test_mode()) is d.test_mode
        assert await storage.auth_key() == KEY
        assert await storage.date() == d.date
        assert await storage.user_id() == d.user_id
        assert bool(await storage.is_bot()) is d.is_bot
        assert await storage.get_peer_by_id(100) == raw.types.InputPeerUser(
            user_id=100, access_hash=5555
        )
        assert await storage.get_peer_by_id(-1001234567890) == raw.types.InputPeerChannel(
            channel_id=1234567890, access_hash=-42
        )
        assert await storage.get_peer_by_id(-123) == raw.types.InputPeerChat(chat_id=123)
        for username in ("Alice", "alice_alt"):
            assert (await storage.get_peer_by_username(username)).user_id == 100
        assert (await storage.get_peer_by_username("helper_bot")).user_id == 200
        assert (await storage.get_peer_by_phone_number("15551234567")).user_id == 100
        states = {s.id: (s.pts, s.qts, s.date, s.seq) for s in await storage.get_update_states()}
        assert states == {0: (10, 20, 1_700_000_000, 5), -1001234567890: (99, 0, 0, 0)}
        with pytest.raises(KeyError):
            await storage.get_peer_by_id(999)
    finally:
        await storage.close()
    # kurigram's own session string of the converted file equals statekit's
    from statekit.session import export_string

    reopened = KurigramStorage("ours", workdir=tmp_path)
    await reopened.open()
    try:
        assert await reopened.export_session_string() == export_string(snapshot, "pyrogram")
    finally:
        await reopened.close()


async def test_statekit_pyrogram_file_is_pyrogram_2_and_keeps_one_username(tmp_path: Path) -> None:
    snapshot = sample()
    snapshot.peers.append(Peer(-1009999999999, 1, "forum", ("topics",)))
    path = export_file(snapshot, tmp_path / "p2.session", "pyrogram")
    back = import_file(path)
    assert back.data == snapshot.data
    assert back.update_states == []  # Pyrogram 2.0 keeps no update state
    by_id = {p.id: p for p in back.peers}
    assert by_id[100].usernames == ("Alice",)
    # Pyrogram 2.0 knows user/bot/group/channel/supergroup only
    assert by_id[-1009999999999].type == "supergroup"
    assert by_id[200].type == "bot"


# --- Telethon, live --------------------------------------------------------------------------------


def write_with_telethon(path: Path, *, self_id: int | None) -> None:
    session = SQLiteSession(str(path))
    session.set_dc(4, "149.154.167.91", 443)
    session.auth_key = AuthKey(KEY)
    user = tl.User(id=100, access_hash=5555, first_name="A", username="Alice", phone="15551234567")
    channel = tl.Channel(
        id=1234567890,
        title="C",
        photo=tl.ChatPhotoEmpty(),
        date=None,
        access_hash=-42,
        username="Chan",
        megagroup=True,
    )
    chat = tl.Chat(
        id=123, title="G", photo=tl.ChatPhotoEmpty(), participants_count=2, date=None, version=1
    )
    session.process_entities(tl.contacts.ResolvedPeer(None, [], [user, channel, chat]))
    if self_id is not None:
        marker = tl.InputPeerUser(0, self_id)  # as TelegramClient records the logged-in user
        session.process_entities(tl.contacts.ResolvedPeer(None, [marker], []))
    when = datetime.datetime.fromtimestamp(1_700_000_000, tz=datetime.timezone.utc)
    session.set_update_state(0, tl.updates.State(10, 20, when, 5, unread_count=0))
    session.set_update_state(1234567890, tl.updates.State(99, 0, when, 0, unread_count=0))
    session.save()
    session.close()


async def test_telethon_file_reads_in_statekit_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "made_by_telethon.session"
    write_with_telethon(path, self_id=6_000_000_123)
    snapshot = import_file(path)
    assert detect_file_format(path) == ("telethon", 8)
    assert snapshot.data == SessionData(
        dc_id=4, auth_key=KEY, server_address="149.154.167.91", port=443, user_id=6_000_000_123
    )
    stamps = {p.id: p.last_update_on for p in snapshot.peers}
    assert all(s is not None and abs(s - NOW) < 3600 for s in stamps.values())
    assert snapshot.peers == [
        Peer(-1001234567890, -42, "channel", ("chan",), None, stamps[-1001234567890], "C"),
        Peer(-123, 0, "group", (), None, stamps[-123], "G"),
        Peer(100, 5555, "user", ("alice",), "15551234567", stamps[100], "A"),
    ]
    assert snapshot.update_states == [
        UpdateState(-1001234567890, 99, 0, 1_700_000_000, 0),
        UpdateState(0, 10, 20, 1_700_000_000, 5),
    ]


async def test_statekit_telethon_file_opens_in_telethon_with_every_field(tmp_path: Path) -> None:
    snapshot = sample()
    path = export_file(snapshot, tmp_path / "ours.session", "telethon")
    session = SQLiteSession(str(path))
    try:
        assert (session.dc_id, session.server_address, session.port) == (
            2,
            "149.154.167.51",
            443,
        )
        assert session.auth_key.key == KEY
        assert session.get_input_entity(100) == tl.InputPeerUser(100, 5555)
        assert session.get_input_entity("@alice") == tl.InputPeerUser(100, 5555)
        assert session.get_input_entity("alice") == tl.InputPeerUser(100, 5555)
        assert session.get_input_entity("+15551234567") == tl.InputPeerUser(100, 5555)
        assert session.get_input_entity("chatters") == tl.InputPeerChannel(1234567890, -42)
        assert session.get_input_entity(-1001234567890) == tl.InputPeerChannel(1234567890, -42)
        assert session.get_input_entity(-123) == tl.InputPeerChat(123)
        # the logged-in user, where TelegramClient looks for it
        assert session.get_input_entity(0).access_hash == 5_987_654_321
        states = {
            box: (s.pts, s.qts, int(s.date.timestamp()), s.seq)
            for box, s in session.get_update_states()
        }
        assert states == {0: (10, 20, 1_700_000_000, 5), 1234567890: (99, 0, 0, 0)}
    finally:
        session.close()
    back = import_file(path)
    assert back.data.user_id == snapshot.data.user_id
    assert back.update_states == sorted(snapshot.update_states, key=lambda u: u.id)


def test_written_telethon_update_states_without_values_become_zero(tmp_path: Path) -> None:
    snapshot = SessionSnapshot(sample().data, [], [UpdateState(-1001234567890, 5)])
    path = export_file(snapshot, tmp_path / "t.session", "telethon")
    session = SQLiteSession(str(path))
    try:
        [(box, state)] = list(session.get_update_states())
        assert (box, state.pts, state.qts, state.seq) == (1234567890, 5, 0, 0)
    finally:
        session.close()


# --- the schema written is the library's ---------------------------------------------------------


def schema_of(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        objects = sorted(
            (kind, name)
            for kind, name in conn.execute("SELECT type, name FROM sqlite_master")
            if not name.startswith("sqlite_")
        )
        tables = {
            name: [tuple(col[1:]) for col in conn.execute(f'PRAGMA table_info("{name}")')]
            for kind, name in objects
            if kind == "table"
        }
        version_table = "version" if "version" in tables else None
        version = (
            conn.execute(f"SELECT * FROM {version_table}").fetchone() if version_table else None
        )
    finally:
        conn.close()
    return {"objects": objects, "tables": tables, "version": version}


async def library_file(kind: str, tmp_path: Path) -> Path:
    if kind == "pyrogram":  # written by pyrogram 2.0.106 (fixture)
        return FIXTURES / "pyrogram2_v3.session"
    if kind == "kurigram":
        storage = KurigramStorage("lib", workdir=tmp_path)
        await storage.open()
        await storage.close()
        return tmp_path / "lib.session"
    session = SQLiteSession(str(tmp_path / "lib"))
    session.close()
    return tmp_path / "lib.session"


@pytest.mark.parametrize("kind", ["pyrogram", "kurigram", "telethon"])
async def test_written_schema_is_exactly_the_librarys(kind: str, tmp_path: Path) -> None:
    ours = export_file(sample(), tmp_path / "ours.session", kind)
    assert schema_of(ours) == schema_of(await library_file(kind, tmp_path))


def test_written_kurigram_schema_matches_irenogram_too(tmp_path: Path) -> None:
    ours = export_file(sample(), tmp_path / "ours.session", "kurigram")
    assert schema_of(ours) == schema_of(FIXTURES / "irenogram_v7.session")


# --- conversion refusals and file safety ---------------------------------------------------------


def test_conversion_refuses_when_the_target_needs_a_missing_field(tmp_path: Path) -> None:
    path = tmp_path / "t.session"
    write_with_telethon(path, self_id=None)
    source = import_file(path)
    assert source.data.user_id is None and source.data.api_id is None
    for target in ("pyrogram", "kurigram"):
        out = tmp_path / f"{target}.session"
        with pytest.raises(ValueError, match=r"no api_id or user_id.*api_id=\.\.\., user_id="):
            export_file(source, out, target)
        assert not out.exists()
        export_file(source, out, target, api_id=611335, user_id=42, is_bot=True)
        data = import_file(out).data
        assert (data.api_id, data.user_id, data.is_bot) == (611335, 42, True)
    # Telethon needs neither, but an address: the data centre's default is used if absent
    bare = SessionSnapshot(SessionData(dc_id=3, auth_key=KEY))
    telethon = export_file(bare, tmp_path / "bare.session", "telethon")
    assert (import_file(telethon).data.server_address, import_file(telethon).data.port) == (
        "149.154.175.100",
        443,
    )
    with pytest.raises(ValueError, match="data centre 9 has no known default address"):
        export_file(SessionData(dc_id=9, auth_key=KEY), tmp_path / "x.session", "telethon")


def test_unknown_format_and_out_of_range_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown session file format 'sqlite'"):
        export_file(sample(), tmp_path / "a.session", "sqlite")
    bad = sample()
    bad.peers.append(Peer(2**64, 1))
    with pytest.raises(ValueError, match="over 64 bits"):
        export_file(bad, tmp_path / "b.session", "kurigram")
    assert list(tmp_path.iterdir()) == []
    odd = sample()
    odd.peers.append(Peer(7, 1, "user", (), ["not", "a", "phone"]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a value cannot be stored"):
        export_file(odd, tmp_path / "c.session", "kurigram")
    assert list(tmp_path.iterdir()) == []


def test_export_never_overwrites_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "s.session"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_file(sample(), path, "kurigram")
    assert path.read_bytes() == b"precious"
    export_file(sample(), path, "kurigram", overwrite=True)
    assert import_file(path).data == sample().data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.session"]


@pytest.mark.parametrize("kind", ["pyrogram", "kurigram", "telethon"])
def test_written_file_has_mode_0600_even_with_a_permissive_umask(kind: str, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = export_file(sample(), tmp_path / "s.session", kind)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_failure_while_writing_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(conn: sqlite3.Connection, snapshot: SessionSnapshot) -> None:
        conn.execute("CREATE TABLE half (x)")
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(files_module._WRITERS, "kurigram", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_file(sample(), tmp_path / "s.session", "kurigram")
    assert list(tmp_path.iterdir()) == []


def test_import_does_not_change_the_file(tmp_path: Path) -> None:
    path = copy_fixture("irenogram_v7.session", tmp_path)
    before = path.read_bytes()
    import_file(path)
    detect_file_format(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["irenogram_v7.session"]


async def test_async_wrappers(tmp_path: Path) -> None:
    path = await export_file_async(sample(), tmp_path / "a.session", "telethon")
    assert (await import_file_async(path)).data.auth_key == KEY


# --- bad files -----------------------------------------------------------------------------------


def _db(path: Path, script: str, *params: tuple[str, tuple[Any, ...]]) -> Path:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(script)
        for sql, args in params:
            conn.execute(sql, args)
        conn.commit()
    finally:
        conn.close()
    return path


def _edited(name: str, sql: str, args: tuple[Any, ...] = ()) -> Any:
    def make(tmp_path: Path) -> Path:
        path = copy_fixture(name, tmp_path)
        return _db(path, "", (sql, args))

    return make


BAD_FILES: dict[str, tuple[Any, str]] = {
    "missing": (lambda t: t / "nope.session", "does not exist"),
    "directory": (lambda t: t, "is a directory; expected a Pyrogram-family"),
    "empty": (
        lambda t: (t / "e.session", (t / "e.session").write_bytes(b""))[0],
        "not an SQLite database.*found an empty file",
    ),
    "text file": (
        lambda t: (t / "x.session", (t / "x.session").write_text("hello " * 40))[0],
        "not an SQLite database.*240-byte file without the SQLite header",
    ),
    "truncated": (
        lambda t: (
            t / "h.session",
            (t / "h.session").write_bytes((FIXTURES / "irenogram_v7.session").read_bytes()[:1500]),
        )[0],
        "cannot be read as SQLite|holds no",
    ),
    "other schema": (
        lambda t: _db(t / "o.db", "CREATE TABLE kv (k TEXT, v BLOB);"),
        "not a session file.*found tables kv",
    ),
    "newer pyrogram": (
        _edited("irenogram_v7.session", "UPDATE version SET number = 8"),
        "newer Pyrogram-family schema, version 8, unknown",
    ),
    "newer telethon": (
        _edited("telethon_v7.session", "UPDATE version SET version = 9"),
        "newer Telethon schema, version 9",
    ),
    "old telethon": (
        _edited("telethon_v7.session", "UPDATE version SET version = 6"),
        "old Telethon schema, version 6",
    ),
    "no session row": (_edited("pyrogram2_v3.session", "DELETE FROM sessions"), "no session row"),
    "no auth key": (
        _edited("pyrogram2_v3.session", "UPDATE sessions SET auth_key = NULL"),
        "holds no auth key",
    ),
    "short auth key": (
        _edited("telethon_v7.session", "UPDATE sessions SET auth_key = ?", (b"k" * 255,)),
        "auth key is 255 bytes, expected 256",
    ),
    "text user id": (
        _edited("irenogram_v7.session", "UPDATE sessions SET user_id = 'me'"),
        "user_id is a str, expected an integer",
    ),
    "blob access hash": (
        _edited("irenogram_v7.session", "UPDATE peers SET access_hash = x'01' WHERE id = -400003"),
        "peer -400003 access_hash is a bytes",
    ),
    "float peer id in telethon": (
        _edited("telethon_v7.session", "UPDATE entities SET hash = 1.5 WHERE id = 100005"),
        "entity 100005 hash is a float",
    ),
    "missing column": (
        _edited("irenogram_v7.session", "ALTER TABLE sessions DROP COLUMN port"),
        "expects column\\(s\\) port in table 'sessions'",
    ),
    "missing table": (
        _edited("irenogram_v7.session", "DROP TABLE usernames"),
        "lacks its 'usernames' table",
    ),
}


# what detect_file_format (which reads no rows) refuses as well
STRUCTURAL = {
    "missing",
    "directory",
    "empty",
    "text file",
    "other schema",
    "newer pyrogram",
    "newer telethon",
    "old telethon",
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_raise_session_format_error(case: str, tmp_path: Path) -> None:
    make, message = BAD_FILES[case]
    path = make(tmp_path)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(SessionFormatError, match=message):
        import_file(path)
    if case in STRUCTURAL:
        with pytest.raises(SessionFormatError):
            detect_file_format(path)
    # reading changed nothing and created nothing
    if before is not None:
        assert path.read_bytes() == before
    else:
        assert path.is_dir() or not path.exists()
