"""Fuzzing ferogram's readers (binary blob, string, SQLite store): whatever they are given, they
return a session or raise ``SessionFormatError`` — never ``struct.error``, ``IndexError``,
``MemoryError``, ``UnicodeDecodeError``, ``sqlite3`` errors or anything else; and a blob
claiming more items than it has bytes for is refused before anything is allocated."""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statekit.errors import SessionFormatError
from statekit.session import _ferogram as fero
from statekit.session import import_file, import_string

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ferogram"
BLOBS = sorted(p.name for p in FIXTURES.iterdir() if p.suffix in (".bin", ".session"))

# STATEKIT_FUZZ_EXAMPLES=5000 for a longer run
FUZZ = settings(
    max_examples=int(os.environ.get("STATEKIT_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def read_blob(data: bytes) -> None:
    try:
        fero.import_blob(data)
    except SessionFormatError:
        pass


@FUZZ
@given(st.binary(max_size=3000))
def test_any_bytes_as_a_blob(raw: bytes) -> None:
    read_blob(raw)


@FUZZ
@given(st.sampled_from(BLOBS), st.data())
def test_fixture_blobs_with_corrupted_bytes(name: str, data: st.DataObject) -> None:
    content = bytearray((FIXTURES / name).read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        where = data.draw(st.integers(0, len(content) - 1))
        content[where] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(content))))
    read_blob(bytes(content[:cut]))


@FUZZ
@given(st.sampled_from(BLOBS), st.data())
def test_counts_and_lengths_past_the_end_are_refused(name: str, data: st.DataObject) -> None:
    """Every u8/u16 in the blob set to a large value: parsed within bounds, or refused."""
    content = bytearray((FIXTURES / name).read_bytes())
    where = data.draw(st.integers(0, len(content) - 2))
    content[where : where + 2] = data.draw(st.sampled_from([b"\xff\xff", b"\xff\x00", b"\x00\xff"]))
    read_blob(bytes(content))


@FUZZ
@given(st.sampled_from(BLOBS), st.data())
def test_corrupted_strings(name: str, data: st.DataObject) -> None:
    blob = (FIXTURES / name).read_bytes()
    encode = data.draw(st.sampled_from([base64.b64encode, base64.urlsafe_b64encode]))
    text = list(encode(blob).decode())
    for _ in range(data.draw(st.integers(0, 4))):
        text[data.draw(st.integers(0, len(text) - 1))] = data.draw(
            st.sampled_from("AZaz09+/-_=!. ")
        )
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(text))))
    try:
        import_string("".join(text[:cut]))
    except SessionFormatError:
        pass


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="statekit-fero-fuzz-") as tmp:
        yield Path(tmp)


_STORE_VALUES = (
    st.none()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=300)
)


@FUZZ
@given(
    st.sampled_from(
        [
            ("dcs", "dc_id"),
            ("dcs", "addr"),
            ("dcs", "auth_key"),
            ("dcs", "flags"),
            ("dcs", "first_salt"),
            ("meta", "value"),
            ("update_state", "pts"),
            ("channel_pts", "channel_id"),
            ("peers", "id"),
            ("peers", "channel_kind"),
            ("peers", "is_channel"),
            ("min_peers", "msg_id"),
        ]
    ),
    _STORE_VALUES,
)
def test_store_with_any_value_in_any_column(
    workdir: Path, column: tuple[str, str], value: object
) -> None:
    path = workdir / "store.db"
    shutil.copy(FIXTURES / "store.db", path)
    table, col = column
    try:
        with sqlite3.connect(path) as conn:
            conn.execute(f"UPDATE {table} SET {col} = ?", (value,))
    except sqlite3.IntegrityError:
        return  # the schema itself refuses this value (NOT NULL, PRIMARY KEY)
    try:
        import_file(path)
    except SessionFormatError:
        pass
