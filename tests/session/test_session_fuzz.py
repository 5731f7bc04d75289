"""Fuzzing the session string and file readers: whatever they are given, they return a snapshot
or raise ``SessionFormatError`` — never ``struct.error``, ``binascii.Error``, ``sqlite3`` errors,
``KeyError``, ``UnicodeDecodeError`` or anything else (SPEC sections 4 and 6)."""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
import string
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statekit.errors import SessionFormatError
from statekit.session import (
    Peer,
    SessionData,
    SessionSnapshot,
    UpdateState,
    export_string,
    import_file,
    import_string,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sessions"
FIXTURE_FILES = sorted(p.name for p in FIXTURES.glob("*.session"))
URLSAFE = string.ascii_letters + string.digits + "-_"
KEY = bytes(range(256))[::-1]

SNAPSHOT = SessionSnapshot(
    SessionData(dc_id=2, auth_key=bytes(255) + b"\x01", api_id=1, user_id=2, is_bot=True),
    [Peer(1, 2, "user", ("a",), "1", 3), Peer(-100, 0, "group")],
    [UpdateState(0, 1, 2, 3, 4), UpdateState(-1001, None, None, None, None)],
)
VALID = {
    "pyrogram": export_string(SNAPSHOT, "pyrogram"),
    "telethon": export_string(
        SessionSnapshot(SessionData(dc_id=2, auth_key=KEY, server_address="::1", port=1)),
        "telethon",
    ),
    "statekit": export_string(SNAPSHOT, "statekit"),
    "gramjs": export_string(
        SessionSnapshot(SessionData(dc_id=2, auth_key=KEY, server_address="10.0.0.1", port=443)),
        "gramjs",
    ),
}

# STATEKIT_FUZZ_EXAMPLES=5000 for a longer run
FUZZ = settings(
    max_examples=int(os.environ.get("STATEKIT_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def read_string(text: str) -> None:
    try:
        result = import_string(text)
    except SessionFormatError:
        return
    assert isinstance(result, SessionSnapshot)
    assert len(result.data.auth_key) == 256


def read_file(path: Path) -> None:
    try:
        result = import_file(path)
    except SessionFormatError:
        return
    assert isinstance(result, SessionSnapshot)
    assert len(result.data.auth_key) == 256


# --- strings -------------------------------------------------------------------------------------


@FUZZ
@given(st.text())
def test_any_text(text: str) -> None:
    read_string(text)


@FUZZ
@given(
    st.sampled_from(["", "1", "sk1:", "sk2:", "sk1", "sk:"]),
    st.sampled_from([351, 352, 356, 362, 364, 367, 368, 20, 0]),
    st.text(alphabet=URLSAFE + "=+/ ", min_size=0, max_size=3),
    st.data(),
)
def test_base64_text_of_the_lengths_that_reach_the_decoders(
    prefix: str, length: int, tail: str, data: st.DataObject
) -> None:
    body = data.draw(st.text(alphabet=URLSAFE, min_size=length, max_size=length))
    read_string(prefix + body + tail)


@FUZZ
@given(st.sampled_from(sorted(VALID)), st.data())
def test_mutated_valid_strings(kind: str, data: st.DataObject) -> None:
    text = VALID[kind]
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.integers(0, len(text) - 1))
        action = data.draw(st.sampled_from(["replace", "delete", "insert"]))
        char = data.draw(st.sampled_from(URLSAFE + "=+/:"))
        if action == "replace":
            text = text[:where] + char + text[where + 1 :]
        elif action == "delete":
            text = text[:where] + text[where + 1 :]
        else:
            text = text[:where] + char + text[where:]
    read_string(text)


@FUZZ
@given(st.binary(min_size=250, max_size=280), st.sampled_from(["", "1"]))
def test_random_bytes_at_the_struct_sizes(raw: bytes, prefix: str) -> None:
    read_string(prefix + base64.urlsafe_b64encode(raw).decode().rstrip("="))


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.binary(max_size=300),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(
            st.sampled_from(
                [
                    "session",
                    "peers",
                    "update_states",
                    "dc_id",
                    "auth_key",
                    "port",
                    "api_id",
                    "test_mode",
                    "is_bot",
                    "user_id",
                    "date",
                    "server_address",
                    "x",
                ]
            ),
            children,
            max_size=8,
        )
    ),
    max_leaves=30,
)


@FUZZ
@given(msgpack_values, st.booleans())
def test_statekit_strings_holding_any_msgpack(payload: Any, with_valid_session: bool) -> None:
    if with_valid_session and isinstance(payload, dict):
        payload["session"] = {"dc_id": 2, "auth_key": KEY}
    packed = msgpack.packb(payload, use_bin_type=True)
    body = base64.urlsafe_b64encode(zlib.compress(packed)).decode().rstrip("=")
    read_string("sk1:" + body)


@FUZZ
@given(st.binary(max_size=600))
def test_statekit_strings_holding_any_bytes(raw: bytes) -> None:
    read_string("sk1:" + base64.urlsafe_b64encode(raw).decode().rstrip("="))
    read_string("sk1:" + base64.urlsafe_b64encode(zlib.compress(raw)).decode().rstrip("="))


# --- files ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="statekit-fuzz-") as tmp:
        yield Path(tmp)


@FUZZ
@given(st.binary(max_size=2000), st.booleans())
def test_any_bytes_as_a_file(workdir: Path, raw: bytes, with_header: bool) -> None:
    path = workdir / "bytes.session"
    path.write_bytes((b"SQLite format 3\x00" if with_header else b"") + raw)
    read_file(path)


@FUZZ
@given(st.sampled_from(FIXTURE_FILES), st.data())
def test_fixture_files_with_corrupted_bytes(workdir: Path, name: str, data: st.DataObject) -> None:
    content = bytearray((FIXTURES / name).read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        where = data.draw(st.integers(0, len(content) - 1))
        content[where] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(content))))
    path = workdir / "corrupt.session"
    path.write_bytes(bytes(content[:cut]))
    read_file(path)


sqlite_values = (
    st.none()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=300)
    | st.just(KEY)
)


@FUZZ
@given(st.sampled_from(FIXTURE_FILES), st.data())
def test_fixture_files_with_values_of_any_type(
    workdir: Path, name: str, data: st.DataObject
) -> None:
    path = workdir / "values.session"
    shutil.copyfile(FIXTURES / name, path)
    conn = sqlite3.connect(path)
    try:
        tables = [
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not row[0].startswith("sqlite_")
        ]
        for _ in range(data.draw(st.integers(1, 4))):
            table = data.draw(st.sampled_from(tables))
            columns = [c[1] for c in conn.execute(f'PRAGMA table_info("{table}")')]
            column = data.draw(st.sampled_from(columns))
            value = data.draw(sqlite_values)
            try:
                conn.execute(f'UPDATE "{table}" SET "{column}" = ?', (value,))
            except sqlite3.IntegrityError:
                pass  # a value the column refuses (NOT NULL, INTEGER PRIMARY KEY): skip it
        conn.commit()
    finally:
        conn.close()
    read_file(path)
