"""Hostile input (issue 14): random and mutated session strings, session files and command lines.

Every call must end with a result or one of the documented errors (``SessionFormatError``, and
``TypeError`` for a wrong argument type), within 2 s of CPU time (and never block: file calls
run in a thread with a generous wall bound), with a peak of traced memory below 500 MiB, and
without any form of the auth key or the cipher key (hex, base64 of either alphabet at any
alignment, raw bytes, ``repr``) in its message, the ``repr`` of what it returns, a log record at
DEBUG, or the command line's output.

``STATEKIT_HOSTILE_EXAMPLES=N`` runs N examples per test instead of the default (about a minute
for the whole module on a loaded 2-core machine).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
import sqlite3
import struct
import threading
import time
import tracemalloc
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statekit import MemoryStorage
from statekit.cli import main as cli_main
from statekit.errors import SessionFormatError
from statekit.session import (
    Peer,
    SessionCipher,
    SessionData,
    SessionSnapshot,
    SessionStore,
    UpdateState,
    detect_file_format,
    export_file,
    export_string,
    import_file,
    import_string,
    mask_secrets,
)
from statekit.session._packed import pack_index, pack_peers
from statekit.session.strings import MAX_PEERS, MAX_STATEKIT_PAYLOAD

AUTH_KEY = bytes((i * 131 + 17) % 251 + 3 for i in range(256))
CIPHER_KEY = bytes((i * 7 + 200) % 256 for i in range(32))
OTHER_CIPHER_KEY = bytes(reversed(CIPHER_KEY))
MAX_CPU_S = 2.0
MAX_WALL_S = 30.0  # only to detect a call that blocks (a FIFO); CPU time is the real bound
MAX_PEAK = 500 * 1024 * 1024

HOSTILE = settings(
    max_examples=int(os.environ.get("STATEKIT_HOSTILE_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

SNAPSHOT = SessionSnapshot(
    SessionData(
        dc_id=2,
        auth_key=AUTH_KEY,
        server_address="149.154.167.51",
        port=443,
        api_id=12345,
        date=1_700_000_000,
        user_id=777,
    ),
    [Peer(1, 2, "user", ("ann",), "15550001", 3), Peer(-1001000000001, -5, "channel")],
    [UpdateState(0, 1, 2, 3, 4)],
)
VALID_STRINGS = {
    fmt: export_string(SNAPSHOT, fmt) for fmt in ("pyrogram", "telethon", "gramjs", "statekit")
}


def _forms(secret: bytes) -> list[str]:
    """Recognisable pieces of ``secret`` as text could carry it."""
    forms = [secret.hex()[8:40], secret.hex().upper()[8:40], repr(secret)[10:34]]
    forms.append(secret.decode("latin-1")[4:16])
    for offset in range(3):  # base64 of a blob holding the secret at any alignment
        std = base64.b64encode(secret[offset:]).decode()[4:28]
        forms += [std, std.translate(str.maketrans("+/", "-_"))]
    return forms


SECRET_FORMS = _forms(AUTH_KEY) + _forms(CIPHER_KEY) + _forms(OTHER_CIPHER_KEY)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for form in SECRET_FORMS:
            assert form not in text, "a secret is shown"


@contextmanager
def bounded() -> Iterator[None]:
    """The block takes under 2 s of this thread's CPU time (other threads of the test process
    do not count) and peaks under 500 MiB of traced memory."""
    tracemalloc.start()
    started = time.thread_time()
    try:
        yield
    finally:
        cpu = time.thread_time() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert cpu < MAX_CPU_S, f"took {cpu:.2f} s of CPU"
        assert peak < MAX_PEAK, f"peaked at {peak / 2**20:.0f} MiB"


def outcome(func: Callable[[], Any], caplog: pytest.LogCaptureFixture) -> Any:
    """``func()`` within bounds: its result, or the documented error it raised (returned)."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG), bounded():
        try:
            result: Any = func()
        except (SessionFormatError, TypeError) as exc:
            result = exc
    for record in caplog.records:
        assert_no_secret(record.getMessage(), record.exc_text or "")
    assert_no_secret(repr(result), str(result))
    return result


def in_thread(func: Callable[[], Any]) -> Any:
    """``func()`` in a daemon thread, failing if it has not returned after ``MAX_WALL_S``."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(func())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(MAX_WALL_S)
    assert box, "the call blocked"
    if isinstance(box[0], AssertionError):
        raise box[0]
    return box[0]


# --- strings ---------------------------------------------------------------------------------

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_="


@st.composite
def mutated_strings(draw: st.DrawFn) -> str:
    text = VALID_STRINGS[draw(st.sampled_from(sorted(VALID_STRINGS)))]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "alphabet", "pad"]))
        pos = draw(st.integers(0, max(len(text) - 1, 0)))
        char = draw(st.sampled_from(B64 + " :\x00é1sk"))
        if op == "replace":
            text = text[:pos] + char + text[pos + 1 :]
        elif op == "insert":
            text = text[:pos] + char + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + 1 :]
        elif op == "truncate":
            text = text[:pos]
        elif op == "alphabet":
            text = text.translate(str.maketrans("-_+/", "+/-_"))
        else:
            text += "=" * draw(st.integers(1, 3))
    return text


def _check_string(text: str | bytes, caplog: pytest.LogCaptureFixture) -> None:
    result = outcome(lambda: import_string(text), caplog)
    if isinstance(result, SessionSnapshot):  # whatever is read, every later step accepts
        again = import_string(export_string(result, "statekit"))
        assert again == result


@HOSTILE
@given(mutated_strings())
def test_mutated_session_strings(caplog: pytest.LogCaptureFixture, text: str) -> None:
    _check_string(text, caplog)


@HOSTILE
@given(st.one_of(st.text(max_size=500), st.text(alphabet=B64, min_size=340, max_size=400)))
def test_random_session_strings(caplog: pytest.LogCaptureFixture, text: str) -> None:
    _check_string(text, caplog)


@HOSTILE
@given(st.binary(min_size=255, max_size=300), st.sampled_from(["", "1"]), st.booleans())
def test_random_bytes_behind_every_prefix(
    caplog: pytest.LogCaptureFixture, raw: bytes, prefix: str, urlsafe: bool
) -> None:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    _check_string(prefix + encode(raw + AUTH_KEY[: len(raw) % 7]).decode(), caplog)


def _statekit(packed: bytes) -> str:
    return "sk1:" + base64.urlsafe_b64encode(zlib.compress(packed, 9)).decode().rstrip("=")


def _compressed_stream(head: bytes, filler: bytes, count: int) -> str:
    """A statekit string of ``head`` followed by ``filler`` ``count`` times, compressed in
    pieces (never held whole in memory)."""
    z = zlib.compressobj(9)
    parts = [z.compress(head)]
    block = filler * (1 << 16)
    for _ in range(count // (1 << 16)):
        parts.append(z.compress(block))
    parts.append(z.compress(filler * (count % (1 << 16))))
    parts.append(z.flush())
    return "sk1:" + base64.urlsafe_b64encode(b"".join(parts)).decode().rstrip("=")


def _object_tree() -> bytes:
    """A payload whose one peer row holds 16.8 million empty lists (17 MB, 16 kB compressed)."""
    inner = b"\xdc\x01\x00" + b"\x90" * 256
    middle = b"\xdc\x01\x00" + inner * 256
    tree = b"\xdc\x01\x00" + middle * 256
    return b"\x81\xa5peers\x91\x96\x01\x02\xa1u\x90" + tree + b"\xc0"


N_128MIB = 128 * 1024 * 1024 - 16
BOMBS: dict[str, Callable[[], str]] = {
    # the audit's case: a 128 MiB array of empty maps (msgpack built ~134 million dicts)
    "array of empty maps": lambda: _compressed_stream(
        b"\xdd" + struct.pack(">I", N_128MIB), b"\x80", N_128MIB
    ),
    "peers of empty maps": lambda: _compressed_stream(
        b"\x81\xa5peers\xdd" + struct.pack(">I", N_128MIB), b"\x80", N_128MIB
    ),
    "over the payload limit": lambda: _compressed_stream(
        msgpack.packb({"session": {"dc_id": 2, "auth_key": AUTH_KEY}}),
        b"\x00",
        MAX_STATEKIT_PAYLOAD + 64,
    ),
    "more peers than allowed": lambda: _statekit(
        b"\x81\xa5peers\xdd" + struct.pack(">I", MAX_PEERS + 1)
    ),
    "a peer with too many usernames": lambda: _statekit(
        msgpack.packb({"peers": [[1, 2, "user", ["a"] * 100_000, None, None]]})
    ),
    "one peer holding millions of objects": lambda: _statekit(_object_tree()),
    "deep nesting": lambda: _statekit(b"\x81\xa7session" + b"\x91" * 100_000 + b"\xc0"),
    "huge binary": lambda: _statekit(
        b"\x81\xa7session\x81\xa8auth_key\xc6" + struct.pack(">I", 1 << 30)
    ),
    "huge string key": lambda: _statekit(b"\x81\xdb" + struct.pack(">I", 1 << 31)),
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_expanding_statekit_strings_fail_fast(caplog: pytest.LogCaptureFixture, case: str) -> None:
    text = BOMBS[case]()
    assert len(text) < 1_000_000
    result = outcome(lambda: import_string(text), caplog)
    assert isinstance(result, SessionFormatError), result
    if case == "over the payload limit":
        assert f"exceeds {MAX_STATEKIT_PAYLOAD} bytes" in str(result)


def test_a_million_peer_payload_fits_the_limits() -> None:
    # the largest legitimate case, measured without building it: one peer row of each shape
    row = [-1_001_234_567_890, -(2**62), "supergroup", ["some_username_12"], "15550001234", 2**31]
    per_peer = len(msgpack.packb(row))
    assert 1_000_000 <= MAX_PEERS
    assert 1_000_000 * per_peer < MAX_STATEKIT_PAYLOAD


# --- files -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Valid session files of every format, as bytes."""
    directory = tmp_path_factory.mktemp("hostile-files")
    out = {}
    for fmt in ("pyrogram", "kurigram", "telethon"):
        path = export_file(SNAPSHOT, directory / f"{fmt}.session", fmt)
        out[fmt] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-work")


def _check_file(path: Path, caplog: pytest.LogCaptureFixture) -> Any:
    for reader in (import_file, detect_file_format):
        result = in_thread(lambda reader=reader: outcome(lambda: reader(path), caplog))
        if isinstance(result, SessionSnapshot):
            _accepted_later(result)
    return result


def _accepted_later(snap: SessionSnapshot) -> None:
    """A snapshot read from anywhere is one every later step accepts."""
    assert import_string(export_string(snap, "statekit")) == snap

    async def restore() -> None:
        async with MemoryStorage() as storage:
            store = SessionStore(storage, "x")
            await store.restore(snap)
            assert (await store.load()) == snap.data

    asyncio.run(restore())


@HOSTILE
@given(st.sampled_from(["pyrogram", "kurigram", "telethon"]), st.data())
def test_mutated_and_truncated_session_files(
    caplog: pytest.LogCaptureFixture,
    files: dict[str, bytes],
    workdir: Path,
    fmt: str,
    data: st.DataObject,
) -> None:
    raw = bytearray(files[fmt])
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw)), label="length")]
    for _ in range(data.draw(st.integers(0, 8), label="flips")):
        if raw:
            pos = data.draw(st.integers(0, len(raw) - 1), label="position")
            raw[pos] = data.draw(st.integers(0, 255), label="byte")
    path = workdir / f"{uuid.uuid4().hex}.session"
    path.write_bytes(bytes(raw))
    try:
        _check_file(path, caplog)
    finally:
        path.unlink()


SQL_VALUES = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70).map(lambda n: n if -(2**63) <= n < 2**63 else float(n)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=300),
    st.just(AUTH_KEY),
)


@HOSTILE
@given(st.sampled_from(["pyrogram", "kurigram", "telethon"]), st.data())
def test_session_files_with_values_of_any_type(
    caplog: pytest.LogCaptureFixture,
    files: dict[str, bytes],
    workdir: Path,
    fmt: str,
    data: st.DataObject,
) -> None:
    path = workdir / f"{uuid.uuid4().hex}.session"
    path.write_bytes(files[fmt])
    try:
        conn = sqlite3.connect(path)
        with conn:
            table = "entities" if fmt == "telethon" and data.draw(st.booleans()) else "sessions"
            if table == "sessions" and data.draw(st.booleans()):
                table = "peers" if fmt != "telethon" else "update_state"
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            column = data.draw(st.sampled_from(columns), label="column")
            conn.execute(f"UPDATE {table} SET {column} = ?", (data.draw(SQL_VALUES, label="v"),))
        conn.close()
        _check_file(path, caplog)
    except sqlite3.IntegrityError:
        pass  # the schema itself refused the value: nothing to read
    finally:
        path.unlink()


@HOSTILE
@given(st.binary(max_size=4096), st.booleans())
def test_random_bytes_as_a_session_file(
    caplog: pytest.LogCaptureFixture, workdir: Path, raw: bytes, sqlite_header: bool
) -> None:
    path = workdir / f"{uuid.uuid4().hex}.session"
    path.write_bytes((b"SQLite format 3\x00" if sqlite_header else b"") + raw)
    try:
        result = _check_file(path, caplog)
        assert isinstance(result, SessionFormatError)
    finally:
        path.unlink()


def _wrong_schema(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE version (number TEXT)")
        conn.execute("INSERT INTO version VALUES ('7')")
    conn.close()
    return path


def _special_paths(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.session"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.session"
    loop.symlink_to(loop)
    dangling = tmp_path / "dangling.session"
    dangling.symlink_to(tmp_path / "nowhere")
    to_fifo = tmp_path / "to-fifo.session"
    to_fifo.symlink_to(fifo)
    return {
        "fifo": fifo,
        "symlink to a fifo": to_fifo,
        "symlink loop": loop,
        "dangling symlink": dangling,
        "directory": tmp_path,
        "device": Path("/dev/zero"),
        "missing": tmp_path / "missing.session",
        "empty": _touch(tmp_path / "empty.session"),
        "wrong schema": _wrong_schema(tmp_path / "schema.session"),
        "nul byte": Path("bot\x00.session"),
    }


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def test_anything_but_a_session_file_is_refused_at_once(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    for name, path in _special_paths(tmp_path).items():
        result = _check_file(path, caplog)
        assert isinstance(result, SessionFormatError), name


def test_the_command_line_refuses_special_files_in_one_line(tmp_path: Path) -> None:
    for name, path in _special_paths(tmp_path).items():
        if name == "nul byte":
            continue  # a command-line argument cannot hold a NUL byte
        code, out, err = in_thread(lambda path=path: _run_cli("session", "inspect", str(path)))
        assert code == 1, name
        assert err.startswith("statekit: error: ") and err.count("\n") == 1, (name, err)


# --- the command line ------------------------------------------------------------------------


def _run_cli(*args: str) -> tuple[int, str, str]:
    """``statekit ARGS`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = cli_main(list(args))
    finally:
        root.handlers[:], root.level = handlers, level
    return code, out.getvalue(), err.getvalue()


@HOSTILE
@given(st.one_of(mutated_strings(), st.text(alphabet=B64, min_size=300, max_size=400)))
def test_the_command_line_never_shows_a_string_or_its_key(text: str) -> None:
    if not text.strip() or "\x00" in text or text.startswith("-"):
        return  # not something a shell passes as one argument
    for args in (
        ("session", "inspect", text),
        ("session", "convert", text, "--to", "telethon-string"),
    ):
        with bounded():
            code, out, err = _run_cli(*args)
        if args[1] == "convert" and code == 0:
            continue  # converting prints the converted session: that is the point of it
        assert_no_secret(out, err)
        if code:
            assert err.startswith("statekit: error: ") and err.count("\n") == 1, err
            if len(text) > 40:
                for start in range(0, len(text) - 16, 16):
                    assert text[start : start + 16] not in err


def test_the_command_line_masks_a_stored_session(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"

    async def fill() -> None:
        from statekit import open_storage

        async with open_storage(url) as storage:
            await SessionStore(storage, "bot").restore(SNAPSHOT)

    asyncio.run(fill())
    for args in (
        ("get", url, "session:{bot}:data"),
        ("get", url, "session:{bot}:data", "--json"),
        ("get", url, "session:{bot}:peers:1", "--json"),
        ("keys", url, "--json", "--ttl"),
        ("session", "inspect", str(export_file(SNAPSHOT, tmp_path / "a.session", "telethon"))),
    ):
        code, out, err = _run_cli(*args)
        assert code == 0, err
        assert_no_secret(out, err)


# --- cipher keys and records -----------------------------------------------------------------


@HOSTILE
@given(st.binary(max_size=400), st.booleans())
def test_sealed_records_never_show_either_cipher_key(
    caplog: pytest.LogCaptureFixture, sealed: bytes, right_key: bool
) -> None:
    pytest.importorskip("cryptography")

    async def read() -> Any:
        async with MemoryStorage() as storage:
            writer = SessionStore(storage, "s", cipher=CIPHER_KEY)
            await writer.save(SNAPSHOT.data)
            if sealed:
                await storage.set_state("session:{s}:data", {"v": 1, "sealed": sealed})
            reader = SessionStore(
                storage, "s", cipher=CIPHER_KEY if right_key else OTHER_CIPHER_KEY
            )
            return await reader.load()

    result = outcome(lambda: asyncio.run(read()), caplog)
    assert_no_secret(repr(SessionCipher(CIPHER_KEY)))
    if not isinstance(result, SessionFormatError):
        assert right_key and not sealed and result == SNAPSHOT.data


def test_mask_secrets_hides_every_secret_and_changes_nothing_else() -> None:
    record = {"v": 1, "fields": {"auth_key": AUTH_KEY, "dc_id": 2}}
    masked = mask_secrets("session:{bot}:data", record)
    assert masked == {"v": 1, "fields": {"auth_key": "<secret: 256 bytes hidden>", "dc_id": 2}}
    assert record["fields"]["auth_key"] == AUTH_KEY  # the value itself is untouched
    row = [42, 8_123_456_789, "user", ["ann"], "15550001", 7]
    assert mask_secrets("session:{bot}:ph:15550001", row) == [
        42,
        "<secret: hidden>",
        "user",
        ["ann"],
        "******01",
        7,
    ]
    named = [*row, "Ann"]
    assert mask_secrets("session:{bot}:peers:42", [row, named]) == [
        [42, "<secret: hidden>", "user", ["ann"], "******01", 7],
        [42, "<secret: hidden>", "user", ["ann"], "******01", 7, "Ann"],
    ]
    assert mask_secrets("session:{bot}:phones:3", {"15550001": 42}) == {"******01": 42}
    assert mask_secrets("session:{bot}:names:9", {"ann": 42}) == {"ann": 42}
    assert mask_secrets("plain", {"a": [1, b"x"]}) == {"a": [1, b"x"]}
    # the packed buckets statekit writes are shown as rows and maps, masked the same way
    packed = pack_peers("k", {42: tuple(named)})
    assert mask_secrets("session:{bot}:peers:42", packed) == [
        [42, "<secret: hidden>", "user", ["ann"], "******01", 7, "Ann"]
    ]
    assert mask_secrets("session:{bot}:phones:3", pack_index({"15550001": 42})) == {"******01": 42}
    assert mask_secrets("session:{bot}:names:9", pack_index({"ann": 42})) == {"ann": 42}
    # a packed bucket that does not decode may still hold secrets: hidden whole
    assert mask_secrets("session:{bot}:peers:42", packed[:-1]) == f"<secret: {len(packed) - 1} bytes hidden>"
    assert mask_secrets("session:{bot}:phones:3", b"skI\x01junk").startswith("<secret:")
    sealed = {"v": 1, "sealed": b"ciphertext"}
    assert mask_secrets("session:{bot}:data", sealed) == sealed
