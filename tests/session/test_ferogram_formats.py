"""ferogram's session formats (SPEC section 6, "More formats"): its binary file (versions 1-8),
its string session and its SQLite store, read exactly as ferogram itself reads the fixtures it
made (tests/fixtures/ferogram), written so that ferogram 0.5 loads them, converted to and from
Telethon and kurigram, and never confused with another format.

ferogram runs offline here: every connection goes to a TCP listener on 127.0.0.1 (``dc_addr``),
which resumes the saved auth key without a handshake."""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyrogram import raw
from pyrogram.storage import SQLiteStorage as KurigramStorage
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
    export_string,
    import_file,
    import_string,
)
from statekit.session import _ferogram as fero

from ferogram_tools import (  # isort: skip
    FIXTURES,
    MANIFEST,
    Listener,
    blob_view,
    connect,
    ferogram_view,
    manifest_view,
)

ferogram = pytest.importorskip("ferogram")
from ferogram._ferogram import (  # noqa: E402
    FileSession,
    SqliteSession,
    StringSession,
)

BLOBS = [f"v{n}.bin" for n in range(1, 8)] + ["v8.session"]
KEY = bytes((i * 7 + 3) % 256 for i in range(256))


@pytest.fixture(scope="module")
def dc() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


def sample() -> SessionSnapshot:
    return SessionSnapshot(
        SessionData(dc_id=2, auth_key=KEY, server_address="149.154.167.51", port=443),
        [
            Peer(100, 5555, "user", ("alice",)),
            Peer(200, 6666, "bot"),
            Peer(-1001234567890, -42, "channel"),
            Peer(-1001234567891, 43, "supergroup"),
            Peer(-1001234567892, 44, "forum"),
            Peer(-1001234567893, 45, "community"),
            Peer(-123, 0, "group"),
        ],
        [
            UpdateState(0, 10, 20, 1_700_000_000, 5),
            UpdateState(-1001234567890, 99),
            UpdateState(-1001234567891, 7),
        ],
    )


def at(snapshot: SessionSnapshot, dc: Listener) -> SessionSnapshot:
    """``snapshot`` with the listener as its data centre's address."""
    d = snapshot.data
    data = SessionData(d.dc_id, d.auth_key, "127.0.0.1", dc.port)
    return SessionSnapshot(data, snapshot.peers, snapshot.update_states)


# --- fixtures made by ferogram, read exactly --------------------------------------------------


@pytest.mark.parametrize("name", BLOBS)
def test_binary_fixtures_read_as_ferogram_reads_them(name: str) -> None:
    entry = MANIFEST["files"][name]
    parsed = fero.parse_blob((FIXTURES / name).read_bytes())
    assert parsed.version == entry["version"]
    assert blob_view(parsed) == manifest_view(entry)
    home = next(d for d in parsed.dcs if d.dc_id == parsed.home_dc_id)
    assert home.address == entry["address"]


def test_the_v8_file_holds_both_data_centres_with_salt_offset_and_flags() -> None:
    parsed = fero.parse_blob((FIXTURES / "v8.session").read_bytes())
    assert [(d.dc_id, d.address, d.time_offset) for d in parsed.dcs] == [
        (2, MANIFEST["files"]["v8.session"]["address"], -3),
        (4, "[2001:b28:f23d:f001::a]:443", 5),
    ]
    assert parsed.dcs[0].first_salt == 0x1122334455667788
    assert parsed.dcs[1].first_salt == 77
    assert "auth_key" not in repr(parsed) and "future" not in repr(parsed)


@pytest.mark.parametrize("name", [*BLOBS, "store.db"])
def test_fixture_files_import_as_the_neutral_record(tmp_path: Path, name: str) -> None:
    entry = MANIFEST["files"][name]
    path = tmp_path / name
    shutil.copy(FIXTURES / name, path)
    fmt, schema = detect_file_format(path)
    assert fmt == ("ferogram-sqlite" if name == "store.db" else "ferogram")
    assert schema == (0 if name == "store.db" else entry["version"])
    snap = import_file(path)
    host, port = entry["address"].rsplit(":", 1)
    assert snap.data == SessionData(
        dc_id=entry["dc_id"],
        auth_key=bytes.fromhex(entry["auth_key"]),
        server_address=host,
        port=int(port),
    )
    bare = {p[0]: p for p in entry["peers"]}
    expect_peers = []
    for pid, ah, is_channel, is_chat, kind, community in bare.values():
        if is_chat:
            expect_peers.append((-pid, 0, "group"))
        elif community:
            expect_peers.append((-(10**12) - pid, ah, "community"))
        elif is_channel:
            kind_name = "supergroup" if kind in (1, 2) else "channel"
            expect_peers.append((-(10**12) - pid, ah, kind_name))
        else:
            expect_peers.append((pid, ah, "user"))
    assert sorted((p.id, p.access_hash, p.type) for p in snap.peers) == sorted(expect_peers)
    pts, qts, date, seq, channels = entry["update_state"]
    expect_states = [UpdateState(-(10**12) - cid, pts=cpts) for cid, cpts in channels]
    if pts:
        expect_states.append(UpdateState(0, pts, qts, date, seq))
    assert snap.update_states == sorted(expect_states, key=lambda s: s.id)


def test_store_fixture_reads_as_ferogram_reads_it(tmp_path: Path) -> None:
    from statekit.session._ferogram_sqlite import read_store

    path = tmp_path / "store.db"
    shutil.copy(FIXTURES / "store.db", path)
    with sqlite3.connect(path) as conn:
        parsed = read_store(conn, "store")
    assert blob_view(parsed) == manifest_view(MANIFEST["files"]["store.db"])


def test_exported_string_fixture_and_its_url_safe_form_read_the_same() -> None:
    text = (FIXTURES / "string.txt").read_text().strip()
    assert "=" in text or "+" in text or "/" in text  # standard base64, as ferogram exports
    url_safe = base64.urlsafe_b64encode(base64.b64decode(text)).decode().rstrip("=")
    from_file = import_file_copy("v8.session")
    for s in (text, url_safe, "  " + url_safe + "\n"):
        snap = import_string(s)
        assert snap == from_file
    parsed = fero.parse_string(text)
    assert blob_view(parsed) == manifest_view(MANIFEST["files"]["v8.session"])


def import_file_copy(name: str) -> SessionSnapshot:
    return fero.import_blob((FIXTURES / name).read_bytes())


# --- written by statekit, loaded by ferogram -------------------------------------------------


async def test_written_file_loads_in_ferogram_with_everything(tmp_path: Path, dc: Listener) -> None:
    snap = at(sample(), dc)
    path = export_file(snap, tmp_path / "ours.session", "ferogram")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes()[0] == 8
    view = await ferogram_view(await connect(FileSession(str(path)), dc))
    assert view["dc_id"] == 2 and view["auth_key"] == KEY
    assert view["update_state"] == (10, 20, 1_700_000_000, 5, [(1234567890, 99), (1234567891, 7)])
    assert view["peers"] == [
        (100, 5555, False, False, None, False),
        (123, 0, False, True, None, False),
        (200, 6666, False, False, None, False),
        (1234567890, -42, True, False, None, False),
        (1234567891, 43, True, False, 1, False),
        (1234567892, 44, True, False, 1, False),
        (1234567893, 45, False, False, None, True),
    ]


async def test_written_sqlite_store_loads_in_ferogram(tmp_path: Path, dc: Listener) -> None:
    snap = at(sample(), dc)
    path = export_file(snap, tmp_path / "ours.db", "ferogram-sqlite")
    assert not (tmp_path / "ours.db-wal").exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"meta", "dcs", "update_state", "channel_pts", "peers", "min_peers"}
    view = await ferogram_view(await connect(SqliteSession(str(path)), dc))
    assert view["dc_id"] == 2 and view["auth_key"] == KEY
    assert view["update_state"] == (10, 20, 1_700_000_000, 5, [(1234567890, 99), (1234567891, 7)])
    assert len(view["peers"]) == 7


async def test_written_string_loads_in_ferogram_string_session(dc: Listener) -> None:
    text = export_string(at(sample(), dc), "ferogram")
    assert "=" not in text and "+" not in text and "/" not in text
    view = await ferogram_view(await connect(StringSession(text), dc))
    assert view["dc_id"] == 2 and view["auth_key"] == KEY
    assert view["update_state"][:4] == (10, 20, 1_700_000_000, 5)


async def test_what_ferogram_exports_does_not_load_back_but_statekit_fixes_it(dc: Listener) -> None:
    conn = await connect(StringSession(export_string(at(sample(), dc), "ferogram")), dc)
    exported = await conn.export_string()  # ferogram's own export: standard padded base64
    assert import_string(exported).data.auth_key == KEY
    fixed = export_string(import_string(exported), "ferogram")
    view = await ferogram_view(await connect(StringSession(fixed), dc))
    assert view["auth_key"] == KEY


async def test_fixture_round_trip_through_statekit_keeps_what_ferogram_sees(
    tmp_path: Path, dc: Listener
) -> None:
    """ferogram file -> statekit -> ferogram file: home DC, key, update state and peers as
    ferogram saw them (channel kinds 0 and 2 are not in the neutral record: 0 becomes unknown,
    2 becomes 1; min-peers, other data centres and the token are not carried)."""
    snap = at(import_file_copy("v8.session"), dc)
    path = export_file(snap, tmp_path / "again.session", "ferogram")
    view = await ferogram_view(await connect(FileSession(str(path)), dc))
    entry = manifest_view(MANIFEST["files"]["v8.session"])
    assert view["dc_id"] == entry["dc_id"] and view["auth_key"] == entry["auth_key"]
    assert view["update_state"] == entry["update_state"]
    kinds = {0: None, 1: 1, 2: 1, None: None}
    assert view["peers"] == sorted((*p[:4], kinds[p[4]], p[5]) for p in entry["peers"])


def test_parse_and_build_round_trip_keeps_everything() -> None:
    raw_bytes = (FIXTURES / "v8.session").read_bytes()
    assert fero.build_blob(fero.parse_blob(raw_bytes)) == raw_bytes
    for name in BLOBS[:-1]:  # older versions are rewritten as version 8, values kept
        parsed = fero.parse_blob((FIXTURES / name).read_bytes())
        again = fero.parse_blob(fero.build_blob(parsed))
        assert blob_view(again) == blob_view(parsed) and again.version == 8


def test_base_keeps_what_the_neutral_record_cannot_hold() -> None:
    base = fero.parse_blob((FIXTURES / "v8.session").read_bytes())
    out = fero.from_snapshot(fero.to_snapshot(base), base=base)
    assert blob_view(out) == blob_view(base)
    assert [(d.dc_id, d.first_salt, d.time_offset) for d in out.dcs] == [
        (d.dc_id, d.first_salt, d.time_offset) for d in base.dcs
    ]
    # a new auth key for the home data centre drops the old key's salt and offset
    snap = fero.to_snapshot(base)
    snap.data.auth_key = KEY
    out = fero.from_snapshot(snap, base=base)
    assert (out.dcs[0].auth_key, out.dcs[0].first_salt, out.dcs[0].time_offset) == (KEY, 0, 0)


# --- ferogram to Telethon and kurigram -------------------------------------------------------


async def test_ferogram_file_converts_to_telethon_and_kurigram(tmp_path: Path) -> None:
    snap = import_file_copy("v8.session")
    entry = MANIFEST["files"]["v8.session"]
    key = bytes.fromhex(entry["auth_key"])
    port = int(entry["address"].rsplit(":", 1)[1])

    path = export_file(snap, tmp_path / "tele.session", "telethon")
    session = SQLiteSession(str(path))
    try:
        assert (session.dc_id, session.server_address, session.port) == (2, "127.0.0.1", port)
        assert session.auth_key.key == key
        assert session.get_input_entity(100001) == tl.InputPeerUser(100001, 5550001)
        assert session.get_input_entity(-1001000000003) == tl.InputPeerChannel(1000000003, -31337)
        assert session.get_input_entity(-400003) == tl.InputPeerChat(400003)
        state = session.get_update_state(1000000003)
        assert state is not None and state.pts == 9001
        assert session.get_update_state(0).pts == 4242
    finally:
        session.close()

    with pytest.raises(ValueError, match="api_id"):
        export_file(snap, tmp_path / "kuri.session", "kurigram")
    export_file(snap, tmp_path / "kuri.session", "kurigram", api_id=12345, user_id=777)
    storage = KurigramStorage("kuri", workdir=tmp_path)
    await storage.open()
    try:
        assert await storage.dc_id() == 2
        assert await storage.auth_key() == key
        assert (await storage.server_address(), await storage.port()) == ("127.0.0.1", port)
        assert await storage.get_peer_by_id(-1001000000004) == raw.types.InputPeerChannel(
            channel_id=1000000004, access_hash=8080
        )
        assert await storage.get_peer_by_id(-1001000000007) == raw.types.InputPeerChannel(
            channel_id=1000000007, access_hash=7070
        )
        states = {s.id: s.pts for s in await storage.get_update_states()}
        assert states == {0: 4242, -1001000000003: 9001, -1001000000004: 12}
    finally:
        await storage.close()


# --- detection --------------------------------------------------------------------------------


def test_no_string_parses_as_two_formats() -> None:
    snap = sample()
    strings = {
        "pyrogram": export_string(snap, "pyrogram", api_id=1, user_id=2),
        "telethon": export_string(snap, "telethon"),
        "statekit": export_string(snap, "statekit"),
        "ferogram": export_string(snap, "ferogram"),
        "ferogram-std": base64.b64encode(
            base64.urlsafe_b64decode(export_string(snap, "ferogram") + "==")
        ).decode(),
    }
    for name, text in strings.items():
        body = text.strip().rstrip("=")
        assert fero.is_string_candidate(body) == name.startswith("ferogram"), name
        if not name.startswith("ferogram"):
            with pytest.raises(SessionFormatError):
                fero.parse_string(text)
        got = import_string(text)
        assert got.data.auth_key == KEY
        assert bool(got.peers) == (name in ("statekit", "ferogram", "ferogram-std")), name


def test_no_file_parses_as_two_formats(tmp_path: Path) -> None:
    snap = sample()
    seen = {}
    for target in ("pyrogram", "kurigram", "telethon", "ferogram", "ferogram-sqlite"):
        path = export_file(snap, tmp_path / f"{target}.session", target, api_id=1, user_id=2)
        seen[target] = detect_file_format(path)[0]
        if target != "ferogram":
            with pytest.raises(SessionFormatError):
                fero.parse_blob(path.read_bytes())
    assert seen == {t: t for t in seen}


# --- refused ----------------------------------------------------------------------------------


def v8() -> bytes:
    return (FIXTURES / "v8.session").read_bytes()


def test_every_truncation_is_refused() -> None:
    data = v8()
    for cut in range(len(data)):
        with pytest.raises(SessionFormatError):
            fero.parse_blob(data[:cut])


def _peer_count_offset(data: bytes) -> int:
    s = fero.parse_blob(data)
    pos = 6
    for d in s.dcs:
        pos += 4 + 1 + (256 if d.auth_key else 0) + 12 + 1 + len(d.address.encode()) + 1
    return pos + 16 + 2 + 12 * len(s.channels)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda b: b[:5] + b"\xff" + b[6:], "255 data centres need"),
        (lambda b: b[:_peer_count_offset(b)] + b"\xff\xff" + b[_peer_count_offset(b) + 2 :],
         "65535 peers need"),
        (lambda b: b + b"\x00", "1 unexpected bytes"),
        (lambda b: b[:10] + b"\x02" + b[11:], "has-key byte is 2"),
        (lambda b: b[:-24] + b"\xff\x00" + b[-22:], "future auth token needs 255 bytes"),
        (lambda b: b"\x09" + b[1:3] + b"\x10" + b[4:], "no version 2-8"),
    ],
)
def test_hostile_blobs_are_refused_by_name(edit: Any, message: str) -> None:
    with pytest.raises(SessionFormatError, match=message) as err:
        fero.parse_blob(edit(v8()))
    key_hex = bytes.fromhex(MANIFEST["files"]["v8.session"]["auth_key"]).hex()
    assert key_hex[:16] not in str(err.value)


def test_address_length_past_the_end_is_refused() -> None:
    data = bytearray(struct.pack("<Bi", 8, 2) + b"\x01" + struct.pack("<i", 2) + b"\x01" + KEY)
    data += struct.pack("<qiB", 0, 0, 200) + b"1.2.3.4:443"
    with pytest.raises(SessionFormatError, match="address needs 200 bytes"):
        fero.parse_blob(bytes(data))


def test_bad_strings_are_refused_without_showing_them() -> None:
    good = export_string(sample(), "ferogram")
    for bad in (good[:-1], good[:-2] + "+" + good[-1], good + "===", good[:200] + "!" + good[201:]):
        with pytest.raises(SessionFormatError) as err:
            import_string(bad)
        assert good[10:40] not in str(err.value)


def test_no_key_for_the_home_data_centre_is_refused() -> None:
    s = fero.parse_blob(v8())
    s.dcs = [d for d in s.dcs if d.dc_id != 2]
    with pytest.raises(SessionFormatError, match="no auth key for its home data centre 2"):
        fero.to_snapshot(s)


def test_sqlite_store_with_a_wrong_value_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    shutil.copy(FIXTURES / "store.db", path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE dcs SET auth_key = x'00' WHERE dc_id = 2")
    with pytest.raises(SessionFormatError, match="auth key is 1 bytes"):
        import_file(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE dcs SET auth_key = ?, addr = 'nowhere' WHERE dc_id = 2", (KEY,))
    with pytest.raises(SessionFormatError, match="not host:port"):
        import_file(path)


def test_writing_refuses_values_that_do_not_fit(tmp_path: Path) -> None:
    snap = sample()
    snap.update_states.append(UpdateState(0, 2**31))
    with pytest.raises(ValueError, match="pts"):
        export_file(snap, tmp_path / "x.session", "ferogram")
    assert not (tmp_path / "x.session").exists()
    no_address = SessionSnapshot(SessionData(dc_id=77, auth_key=KEY))
    with pytest.raises(ValueError, match="no server address"):
        export_string(no_address, "ferogram")


@pytest.mark.parametrize(
    "name",
    ["pyrogram1_v2.session", "pyrogram2_v3.session", "irenogram_v7.session", "telethon_v7.session"],
)
async def test_other_libraries_files_convert_to_ferogram_and_load_there(
    tmp_path: Path, name: str, dc: Listener
) -> None:
    source = tmp_path / name
    shutil.copy(FIXTURES.parent / "sessions" / name, source)
    snap = import_file(source)
    path = export_file(at(snap, dc), tmp_path / "fero.session", "ferogram")
    view = await ferogram_view(await connect(FileSession(str(path)), dc))
    assert view["dc_id"] == snap.data.dc_id and view["auth_key"] == snap.data.auth_key
    common = [s for s in snap.update_states if s.id == 0]
    if common:
        c = common[0]
        assert view["update_state"][:4] == (c.pts or 0, c.qts or 0, c.date or 0, c.seq or 0)
    channels = sorted((-(10**12) - s.id, s.pts or 0) for s in snap.update_states if s.id != 0)
    assert view["update_state"][4] == channels
    bare = {p.id if p.id > 0 else -p.id if p.id > -(10**12) else -(10**12) - p.id for p in snap.peers}
    assert {p[0] for p in view["peers"]} == bare


def test_a_store_with_pending_wal_changes_is_not_replaced(tmp_path: Path) -> None:
    path = export_file(sample(), tmp_path / "live.db", "ferogram-sqlite")
    holder = sqlite3.connect(path)  # an open writer keeps its log
    try:
        holder.execute("PRAGMA wal_autocheckpoint = 0")
        holder.execute("UPDATE update_state SET pts = 11")
        holder.commit()
        with pytest.raises(ValueError, match="live.db-wal holds changes"):
            export_file(sample(), path, "ferogram-sqlite", overwrite=True)
    finally:
        holder.close()
    assert import_file(path).update_states[-1].pts == 11
    export_file(sample(), path, "ferogram-sqlite", overwrite=True)  # closed: replaced
    assert import_file(path).update_states[-1].pts == 10
