"""Session strings (SPEC section 6): Pyrogram family, Telethon and statekit's own, read and
written, checked against the real libraries in both directions and against fixtures made by
pyrogram 1.4.16 / 2.0.106, irenogram and Telethon 1.34 (tests/fixtures/make_session_fixtures.py)."""

from __future__ import annotations

import base64
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from pyrogram.storage import SQLiteStorage as KurigramStorage
from telethon.crypto import AuthKey
from telethon.sessions import MemorySession, StringSession

from statekit.errors import SessionFormatError
from statekit.session import (
    Peer,
    SessionData,
    SessionSnapshot,
    UpdateState,
    export_string,
    import_string,
)
from statekit.session._peers import SHARED_TYPES

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sessions"
MANIFEST: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text())
KEY = bytes((i * 7 + 3) % 256 for i in range(256))


def as_manifest(data: SessionData) -> dict[str, Any]:
    fields = data.to_dict()
    fields["auth_key"] = fields["auth_key"].hex()
    return fields


def bot(**over: Any) -> SessionData:
    fields: dict[str, Any] = {
        "dc_id": 4,
        "auth_key": KEY,
        "server_address": "149.154.167.91",
        "port": 443,
        "api_id": 611335,
        "test_mode": False,
        "user_id": 6_000_000_123,
        "is_bot": True,
    }
    fields.update(over)
    return SessionData(**fields)


# --- strings made by the libraries themselves (fixtures) ---------------------------------------


@pytest.mark.parametrize("name", sorted(MANIFEST["strings"]))
def test_fixture_string_made_by_the_library_reads_with_every_field(name: str) -> None:
    entry = MANIFEST["strings"][name]
    snapshot = import_string(entry["string"])
    assert as_manifest(snapshot.data) == entry["session"]
    assert snapshot.peers == [] and snapshot.update_states == []


@pytest.mark.parametrize("name", ["pyrogram1_old32", "pyrogram1_old64"])
async def test_old_pyrogram_layouts_read_as_kurigram_reads_them(name: str) -> None:
    text = MANIFEST["strings"][name]["string"]
    assert len(text) == {"pyrogram1_old32": 351, "pyrogram1_old64": 356}[name]
    storage = KurigramStorage("old", workdir=Path("."), session_string=text, in_memory=True)
    await storage.open()
    try:
        data = import_string(text).data
        assert data.dc_id == await storage.dc_id()
        assert data.auth_key == await storage.auth_key()
        assert data.user_id == await storage.user_id()
        assert data.test_mode == bool(await storage.test_mode())
        assert data.is_bot == bool(await storage.is_bot())
        assert data.api_id is None
    finally:
        await storage.close()


# --- kurigram, live -----------------------------------------------------------------------------


@pytest.mark.parametrize("test_mode", [False, True])
async def test_statekit_pyrogram_string_opens_in_kurigram_with_every_field(test_mode: bool) -> None:
    data = bot(dc_id=2, test_mode=test_mode, is_bot=not test_mode, user_id=5_123_456_789)
    text = export_string(data, "pyrogram")
    assert len(text) == 362 and "=" not in text
    storage = KurigramStorage("k", workdir=Path("."), session_string=text, in_memory=True)
    await storage.open()
    try:
        assert await storage.dc_id() == 2
        assert await storage.api_id() == data.api_id
        assert bool(await storage.test_mode()) is test_mode
        assert await storage.auth_key() == KEY
        assert await storage.user_id() == 5_123_456_789
        assert bool(await storage.is_bot()) is (not test_mode)
        # kurigram fills the address in from its table, as statekit does when reading
        assert await storage.server_address() == import_string(text).data.server_address
        assert await storage.port() == import_string(text).data.port
        # and kurigram's own export gives the very same string back
        assert await storage.export_session_string() == text
    finally:
        await storage.close()


async def test_kurigram_string_reads_in_statekit_with_every_field() -> None:
    storage = KurigramStorage("k", workdir=Path("."), in_memory=True)
    await storage.open()
    try:
        await storage.dc_id(5)
        await storage.api_id(2040)
        await storage.test_mode(False)
        await storage.auth_key(KEY)
        await storage.user_id(42)
        await storage.is_bot(False)
        text = await storage.export_session_string()
    finally:
        await storage.close()
    data = import_string(text).data
    assert (data.dc_id, data.api_id, data.test_mode, data.auth_key, data.user_id, data.is_bot) == (
        5,
        2040,
        False,
        KEY,
        42,
        False,
    )
    assert (data.server_address, data.port) == ("91.108.56.130", 443)
    assert export_string(data, "pyrogram") == text


# --- Telethon, live -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "length"), [("149.154.167.91", 353), ("2001:67c:4e8:f002::a", 369)]
)
def test_statekit_telethon_string_opens_in_telethon(address: str, length: int) -> None:
    text = export_string(bot(server_address=address, port=443), "telethon")
    assert len(text) == length and text[0] == "1"
    session = StringSession(text)
    assert (session.dc_id, session.server_address, session.port) == (4, address, 443)
    assert session.auth_key.key == KEY
    assert StringSession.save(session) == text


@pytest.mark.parametrize("address", ["149.154.175.53", "2001:b28:f23d:f001::a", "149.154.167.40"])
def test_telethon_string_reads_in_statekit(address: str) -> None:
    session = MemorySession()
    session.set_dc(1, address, 80)
    session.auth_key = AuthKey(KEY)
    data = import_string(StringSession.save(session)).data
    assert (data.dc_id, data.server_address, data.port, data.auth_key) == (1, address, 80, KEY)
    # Telethon does not store these: test_mode is inferred from Telegram's test addresses
    assert data.test_mode is (address == "149.154.167.40")
    assert (data.api_id, data.user_id, data.is_bot, data.date) == (None, None, False, None)


def test_telethon_string_without_padding_is_accepted() -> None:
    text = export_string(bot(), "telethon")
    assert text.endswith("=")
    assert import_string(text.rstrip("=")).data == import_string(text).data


def test_pyrogram_to_telethon_and_back_keeps_what_telethon_can_hold() -> None:
    pyro = export_string(bot(dc_id=2), "pyrogram")
    telethon = export_string(import_string(pyro), "telethon")
    back = import_string(telethon).data
    assert (back.dc_id, back.auth_key, back.server_address, back.port) == (
        2,
        KEY,
        "149.154.167.51",
        443,
    )
    # Telethon strings lack api_id and user_id: going back needs them, and says so
    with pytest.raises(ValueError, match="api_id or user_id"):
        export_string(back, "pyrogram")
    again = export_string(back, "pyrogram", api_id=611335, user_id=6_000_000_123, is_bot=True)
    assert again == pyro


# --- statekit's own string ----------------------------------------------------------------------


def full_snapshot() -> SessionSnapshot:
    return SessionSnapshot(
        bot(date=1_700_000_000),
        peers=[
            Peer(1, 2**63 - 1, "user", ("Zoë", "alt_name"), "+15550000", 1_700_000_001),
            Peer(-1001234567890, -(2**63), "supergroup", ("chan",)),
            Peer(-42, 0, "group"),
        ],
        update_states=[
            UpdateState(0, 10, 20, 1_700_000_000, 5),
            UpdateState(-1001234567890, 99, None, None, None),
        ],
    )


def test_statekit_string_carries_peers_and_update_states() -> None:
    snapshot = full_snapshot()
    text = export_string(snapshot, "statekit")
    assert text.startswith("sk1:")
    assert import_string(text) == snapshot
    assert import_string(f"  {text}\n") == snapshot


def test_statekit_string_of_many_peers_is_compressed() -> None:
    peers = [Peer(i, i * 31, "user", (f"user{i}",)) for i in range(1, 2001)]
    text = export_string(SessionSnapshot(bot(), peers), "statekit")
    assert import_string(text).peers == peers
    assert len(text) < 2000 * 20


def test_a_statekit_string_s_peers_share_the_common_types_and_intern_no_other() -> None:
    """Peers read from a string hold the common types as one shared str each; any other type is
    kept as read, not interned (on some Pythons an interned str is never freed)."""
    peers = [Peer(1, 5, "user"), Peer(2, 6, "user"), Peer(3, 7, "forum"), Peer(4, 8, "forum")]
    got = import_string(export_string(SessionSnapshot(bot(), peers), "statekit")).peers
    assert got == peers
    assert got[0].type is got[1].type is SHARED_TYPES["user"]
    assert got[2].type == got[3].type == "forum" and got[2].type is not got[3].type


def test_statekit_string_of_a_newer_version_says_so() -> None:
    body = export_string(full_snapshot(), "statekit").split(":", 1)[1]
    with pytest.raises(SessionFormatError, match="version 2, newer"):
        import_string(f"sk2:{body}")


def test_overrides_replace_fields_in_every_format() -> None:
    text = export_string(bot(user_id=None, api_id=None), "statekit", user_id=9, api_id=8)
    data = import_string(text).data
    assert (data.user_id, data.api_id) == (9, 8)
    with pytest.raises(ValueError, match="user_id must be a positive int"):
        export_string(bot(), "pyrogram", user_id=-1)


def test_unknown_export_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown session string format 'pyro'"):
        export_string(bot(), "pyro")
    with pytest.raises(TypeError):
        export_string("not a snapshot", "pyrogram")  # type: ignore[arg-type]


def test_telethon_export_without_an_address_uses_the_dc_default_or_refuses() -> None:
    data = bot(server_address=None, port=None)
    assert StringSession(export_string(data, "telethon")).server_address == "149.154.167.91"
    with pytest.raises(ValueError, match="no server address"):
        export_string(bot(dc_id=7, server_address=None, port=None), "telethon")
    with pytest.raises(ValueError, match="not an IP address"):
        export_string(bot(server_address="dc4.example"), "telethon")


# --- bad input -----------------------------------------------------------------------------------


def pyro_string() -> str:
    return export_string(bot(), "pyrogram")


def telethon_string() -> str:
    return export_string(bot(), "telethon")


def _swap_last(text: str) -> str:
    return text[:-1] + ("B" if text[-1] != "B" else "C")


BAD_STRINGS: dict[str, tuple[Any, str]] = {
    "empty": (lambda: "", "empty session string"),
    "blank": (lambda: " \n\t", "empty session string"),
    "truncated": (lambda: pyro_string()[:-1], "361 characters matches no known format"),
    "truncated telethon": (lambda: telethon_string()[:-3], "350 characters matches no known"),
    "extra characters": (lambda: pyro_string() + "AAAA", "366 characters"),
    "bad padding": (lambda: pyro_string() + "=", "1 padding characters, expected 2"),
    "mixed alphabets": (
        lambda: "A-" + pyro_string().translate(str.maketrans("-_", "+/"))[2:].replace("A", "+"),
        r"mixes the standard \('\+', '/'\) and URL-safe",
    ),
    "space inside": (lambda: pyro_string()[:50] + " " + pyro_string()[51:], "position 50"),
    "non-canonical end": (lambda: _swap_last(pyro_string()), "not canonical base64"),
    "telethon version": (lambda: "2" + telethon_string()[1:], "starts with '2'"),
    "random": (lambda: base64.urlsafe_b64encode(os.urandom(100)).decode(), "matches no known"),
    "zero auth key": (
        lambda: (
            base64.urlsafe_b64encode(_PYRO.pack(2, 1, False, bytes(256), 1, False))
            .decode()
            .rstrip("=")
        ),
        "all zero bytes",
    ),
    "dc zero": (
        lambda: (
            base64.urlsafe_b64encode(_PYRO.pack(0, 1, False, KEY, 1, False)).decode().rstrip("=")
        ),
        "data centre id 0",
    ),
    "flag byte 2": (
        lambda: (
            base64.urlsafe_b64encode(_PYRO.pack(2, 1, False, KEY, 1, False)[:-1] + b"\x02")
            .decode()
            .rstrip("=")
        ),
        "is_bot byte is 2",
    ),
    "statekit garbage": (lambda: "sk1:AAAAAAAA", "damaged or truncated"),
    "statekit truncated": (
        lambda: export_string(full_snapshot(), "statekit")[:-6],
        "truncated|damaged",
    ),
    "statekit empty": (lambda: "sk1:", "empty after its prefix"),
    "statekit not a map": (
        lambda: "sk1:" + _sk_body([1, 2, 3]),
        "payload is not a map",
    ),
    "statekit wrong field type": (
        lambda: "sk1:" + _sk_body({"session": {"dc_id": "2", "auth_key": KEY}}),
        "field 'dc_id' is a str",
    ),
    "statekit short key": (
        lambda: "sk1:" + _sk_body({"session": {"dc_id": 2, "auth_key": b"\x01" * 255}}),
        "255 bytes, expected 256",
    ),
}
_PYRO = struct.Struct(">BI?256sQ?")


def _sk_body(payload: Any) -> str:
    import zlib

    import msgpack

    return base64.urlsafe_b64encode(zlib.compress(msgpack.packb(payload))).decode().rstrip("=")


@pytest.mark.parametrize("case", sorted(BAD_STRINGS))
def test_bad_strings_raise_session_format_error_without_leaking(case: str) -> None:
    make, message = BAD_STRINGS[case]
    text = make()
    with pytest.raises(SessionFormatError, match=message) as info:
        import_string(text)
    shown = str(info.value)
    # the error never shows the string (a secret) nor the auth key
    for start in range(0, max(len(text) - 12, 0), 12):
        assert text[start : start + 12] not in shown
    assert KEY.hex()[:16] not in shown


def test_no_known_format_error_lists_what_was_tried_and_the_length() -> None:
    with pytest.raises(SessionFormatError) as info:
        import_string("A" * 100)
    message = str(info.value)
    assert "100 characters" in message
    for tried in ("statekit", "Pyrogram", "Telethon", "362", "351", "356"):
        assert tried in message


def test_session_format_error_is_a_value_error_and_bytes_input_works() -> None:
    text = pyro_string()
    assert import_string(text.encode()) == import_string(text)
    with pytest.raises(ValueError):
        import_string(b"\xff\xfe")
    with pytest.raises(TypeError):
        import_string(12345)  # type: ignore[arg-type]
