"""Session files: read and write the SQLite session files of the Pyrogram family and Telethon.

Read (schema detected): Pyrogram 2.0 (``version.number`` 2-3: one username per peer, no update
state), kurigram / irenogram (4-7: a ``usernames`` table, ``update_state`` from 5, server address
from 7) and Telethon (``version.version`` 7-8). Written: ``"pyrogram"`` (schema 3),
``"kurigram"`` (schema 7) and ``"telethon"`` (schema 8). Every problem with a file to read is a
``SessionFormatError`` saying what was expected and what was found; files are written with mode
0600, completely or not at all, and never over an existing file unless ``overwrite=True``.

These are one-shot conversions on the stdlib ``sqlite3``; :func:`import_file_async` and
:func:`export_file_async` run them in a worker thread.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import sqlite3
import stat
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Final, Literal

from statekit.errors import SessionFormatError
from statekit.session import _ferogram as fero
from statekit.session import _ferogram_sqlite as fero_files
from statekit.session import _formats as fmt
from statekit.session._file_schemas import KURIGRAM_7, PYROGRAM_3, TELETHON_8
from statekit.session.records import Peer, SessionData, SessionSnapshot, UpdateState

__all__ = [
    "FILE_FORMATS",
    "FileFormat",
    "detect_file_format",
    "export_file",
    "export_file_async",
    "import_file",
    "import_file_async",
    "read_regular_file",
]

FileFormat = Literal["pyrogram", "kurigram", "telethon", "ferogram", "ferogram-sqlite"]
FILE_FORMATS: Final[tuple[str, ...]] = (
    "pyrogram",
    "kurigram",
    "telethon",
    "ferogram",
    "ferogram-sqlite",
)

_SQLITE_HEADER = b"SQLite format 3\x00"
_SQLITE_NOTADB = 26  # sqlite3.SQLITE_NOTADB from Python 3.11
_PYROGRAM_VERSIONS = range(2, 8)  # 2-3 Pyrogram 2.0, 4-7 kurigram / irenogram
_TELETHON_VERSIONS = (7, 8)
_EXPECTED = "a Pyrogram-family (schema 2-7) or Telethon (schema 7-8) session file"

_PeerRow = tuple[object, ...]

_PYROGRAM_2_TYPES = frozenset({"user", "bot", "group", "channel", "supergroup"})


# ---------------------------------------------------------------------------------------------
# import


def import_file(path: str | os.PathLike[str]) -> SessionSnapshot:
    """Read a Pyrogram-family, Telethon or ferogram session file (schema detected) without
    changing it (ferogram: its binary file, versions 1-8, or its SQLite store).

    Returns the session data, every cached peer and every update state the file holds.
    Nothing beside the file is created or changed (a file with a write-ahead log or a hot
    journal beside it is read from a private copy, holding what was committed). A client of
    this process may have the file open, even in the middle of a write: the file is opened by
    SQLite alone, so the client keeps its locks.
    Raises ``SessionFormatError`` saying what was expected and found when the path is missing,
    holds a NUL byte, is not a regular file (a directory, FIFO, device, symlink loop), is not an
    SQLite database, a database of another schema or of a newer version, holds no usable
    session, or holds a field out of range (naming it).
    """
    p = Path(path)
    try:
        with _open_readonly(p) as conn:
            where = f"session file {p}"
            try:
                if fero_files.is_store(conn):
                    return fero.to_snapshot(fero_files.read_store(conn, where), where)
                family, version, tables = _detect(conn, where)
                _check_sizes(conn, tables, where)
                if family == "telethon":
                    return _read_telethon(conn, tables, version, where)
                return _read_pyrogram(conn, tables, version, where)
            except (sqlite3.Error, UnicodeDecodeError) as exc:
                raise SessionFormatError(f"{where} cannot be read as SQLite ({exc})") from None
    except _NotSQLite as not_sqlite:
        blob = _ferogram_blob(p, not_sqlite)
    return fero.to_snapshot(blob, f"ferogram session file {p}")


def detect_file_format(path: str | os.PathLike[str]) -> tuple[str, int]:
    """Return ``(format, schema_version)`` of a session file: format ``"pyrogram"`` (schema 2-3),
    ``"kurigram"`` (4-7), ``"telethon"`` (7-8), ``"ferogram"`` (the binary file's version 1-8) or
    ``"ferogram-sqlite"`` (0: the store has no version). Raises ``SessionFormatError`` like
    :func:`import_file`."""
    p = Path(path)
    try:
        with _open_readonly(p) as conn:
            try:
                if fero_files.is_store(conn):
                    return "ferogram-sqlite", 0
                family, version, _ = _detect(conn, f"session file {p}")
            except (sqlite3.Error, UnicodeDecodeError) as exc:
                raise SessionFormatError(f"session file {p} cannot be read as SQLite ({exc})") from None
    except _NotSQLite as not_sqlite:
        return "ferogram", _ferogram_blob(p, not_sqlite).version
    if family == "pyrogram" and version > 3:
        family = "kurigram"
    return family, version


class _NotSQLite(SessionFormatError):
    """The file is not an SQLite database (it may still be a ferogram binary session)."""


def _ferogram_blob(p: Path, not_sqlite: _NotSQLite) -> fero.FerogramSession:
    """The ferogram binary session in ``p``, a file SQLite found no database in (so no SQLite
    connection of this process holds a lock on it, and it may be read directly); ``not_sqlite``
    is raised if ``p`` does not start like one (a first byte that is no ferogram version 1-8),
    ``SessionFormatError`` saying both if it starts like one but is not."""
    head, size = read_regular_file(p, 1)
    if not head or not 1 <= head[0] <= fero.CURRENT_VERSION:
        raise not_sqlite
    try:
        return fero_files.read_blob_file(p, size)
    except SessionFormatError as exc:
        raise SessionFormatError(
            f"{p} is not an SQLite database, and not a ferogram session file either: {exc}"
        ) from None


async def import_file_async(path: str | os.PathLike[str]) -> SessionSnapshot:
    """:func:`import_file` in a worker thread."""
    return await asyncio.to_thread(import_file, path)


def _describe_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _not_regular(p: Path, mode: int) -> SessionFormatError:
    """The error for ``p``, found to be no regular file (``mode``: its ``st_mode``)."""
    return SessionFormatError(f"{p} is {_describe_kind(mode)}; expected {_EXPECTED}")


@contextmanager
def _path_errors(p: Path, original: object) -> Iterator[None]:
    """Turn the ``OSError``/``ValueError`` of looking up or opening ``p`` into the documented
    ``SessionFormatError`` (missing, a NUL byte, a symlink loop, unreadable)."""
    try:
        yield
    except FileNotFoundError:
        raise SessionFormatError(f"session file {p} does not exist") from None
    except ValueError as exc:
        if isinstance(exc, SessionFormatError):
            raise
        raise SessionFormatError(  # an embedded NUL byte
            f"session file path of {len(str(original))} characters holds a NUL byte"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SessionFormatError(f"session file {p} is a symbolic link loop") from None
        raise SessionFormatError(
            f"session file {p} cannot be opened ({exc.strerror or type(exc).__name__})"
        ) from None


def _regular_status(p: Path, original: object) -> os.stat_result:
    """The status of the regular file ``p``, taken without opening it; ``SessionFormatError``
    for anything else."""
    with _path_errors(p, original):
        info = os.stat(p)
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(p, info.st_mode)
    return info


def _open_regular(p: Path, original: object) -> tuple[int, os.stat_result]:
    """A read-only descriptor of the regular file ``p`` and its status; ``SessionFormatError``
    at once for anything else (nothing but a regular file is opened, and never blocking)."""
    _regular_status(p, original)
    with _path_errors(p, original):
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # replaced between stat and open
        os.close(fd)
        raise _not_regular(p, info.st_mode)
    return fd, info


def _chunks(fd: int, p: Path, limit: int) -> Iterator[bytes]:
    left = limit
    try:
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
    except OSError as exc:
        raise SessionFormatError(
            f"session file {p} cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None


def read_regular_file(path: str | os.PathLike[str], limit: int) -> tuple[bytes, int]:
    """The first ``limit`` bytes of the regular file at ``path`` and its size, read without
    ever blocking. A FIFO, directory, device, socket, symlink loop, missing path or a path with
    a NUL byte raises ``SessionFormatError`` at once (nothing but a regular file is opened).

    It reads through a descriptor of its own, whose closing drops every POSIX lock this process
    holds on the file: never use it on an SQLite database a connection of this process may have
    open (session files are read by :func:`import_file`, which does not)."""
    p = Path(path)
    fd, info = _open_regular(p, path)
    try:
        return b"".join(_chunks(fd, p, limit)), info.st_size
    finally:
        os.close(fd)


@contextmanager
def _open_readonly(p: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to session file ``p`` that creates, changes and deletes nothing
    beside it: the file is opened immutable, or, when a write-ahead log or a hot rollback
    journal lies beside it (which an immutable reader would ignore), the file (page by page,
    through SQLite's backup) and that log are copied into a private temporary directory and the
    copy is read.

    The database file itself is only ever opened by SQLite. Closing a descriptor of a file
    drops every POSIX lock this process holds on it, the locks of a client's live connection to
    the same file included (SQLite's "How To Corrupt", 2.2); SQLite's own connections keep each
    other's. A log or journal beside it carries no lock and is copied directly.

    Raises ``_NotSQLite`` for a file SQLite finds no database in (empty, or without its
    header) and ``SessionFormatError`` for anything else that is not a readable SQLite file.
    The path is checked to be a regular file first, without opening it (see ``_immutable_uri``
    for a path swapped after that check).
    """
    info = _regular_status(p, p)
    if info.st_size == 0:
        raise _NotSQLite(f"{p} is not an SQLite database; expected {_EXPECTED}, found an empty file")
    beside = []  # a write-ahead log or a hot rollback journal, whose content counts
    for suffix in ("-wal", "-journal"):
        try:
            found = os.lstat(p.with_name(p.name + suffix))
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(found.st_mode) and found.st_size > 0:
            beside.append(suffix)
    with ExitStack() as stack:
        uri = _immutable_uri(p, stack)
        try:
            source = stack.enter_context(closing(sqlite3.connect(uri, uri=True)))
            source.execute("PRAGMA schema_version").fetchone()  # reads the header
        except sqlite3.OperationalError as exc:  # opening or reading the file failed
            raise SessionFormatError(f"session file {p} cannot be opened ({exc})") from None
        except sqlite3.DatabaseError as exc:
            if _is_not_a_database(exc):
                raise _not_sqlite(p) from None
            raise SessionFormatError(f"session file {p} cannot be read as SQLite ({exc})") from None
        except sqlite3.Error as exc:
            raise SessionFormatError(f"session file {p} cannot be opened ({exc})") from None
        if not beside:
            yield source
            return
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="statekit-")))
        copy = tmp / "session"
        try:
            with closing(sqlite3.connect(copy)) as target:
                source.backup(target)  # the same pages at the same numbers: the log applies
        except sqlite3.Error as exc:
            raise SessionFormatError(f"session file {p} cannot be read as SQLite ({exc})") from None
        for suffix in beside:
            _copy_regular(p.with_name(p.name + suffix), tmp / f"session{suffix}")
        try:
            conn = stack.enter_context(closing(sqlite3.connect(copy.as_uri(), uri=True)))
        except sqlite3.Error as exc:
            raise SessionFormatError(f"session file {p} cannot be opened ({exc})") from None
        yield conn


def _immutable_uri(p: Path, stack: ExitStack) -> str:
    """The URI by which SQLite opens the regular file ``p`` immutable.

    On Linux the file is pinned first by an ``O_PATH`` descriptor (it opens nothing for reading,
    never blocks, and its closing drops no lock; closed with ``stack``), checked again to be a
    regular file, and SQLite opens it through ``/proc/self/fd``, which it turns into the file's
    current name just before its open: a path swapped after the check (for a FIFO, whose open
    would block) leaves SQLite the checked file under its new name, or its deleted name, which
    fails with an error. Elsewhere SQLite opens the path checked before, and a path swapped for a
    FIFO in between would block its open. ``SessionFormatError`` for a path that is not (or no
    longer) a regular file."""
    o_path = getattr(os, "O_PATH", 0)
    if o_path and os.path.isdir("/proc/self/fd"):
        with _path_errors(p, p):
            fd = os.open(p, o_path | getattr(os, "O_CLOEXEC", 0))
        stack.callback(os.close, fd)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # replaced since the first check
            raise _not_regular(p, mode)
        return f"file:/proc/self/fd/{fd}?mode=ro&immutable=1"
    with _path_errors(p, p):  # pragma: no cover - platforms without O_PATH
        return f"{p.resolve().as_uri()}?mode=ro&immutable=1"


def _is_not_a_database(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite found no database in the file (SQLITE_NOTADB)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return code == _SQLITE_NOTADB if code is not None else str(exc) == "file is not a database"


def _not_sqlite(p: Path) -> _NotSQLite:
    """The error for a file SQLite found no database in, saying what its first bytes are (read
    directly: no connection of this process can hold a lock on a file that is no database)."""
    header, size = read_regular_file(p, len(_SQLITE_HEADER))
    if header == _SQLITE_HEADER:
        found = f"a {size}-byte file with the SQLite header but no readable database header"
    else:
        found = f"a {size}-byte file without the SQLite header"
    return _NotSQLite(f"{p} is not an SQLite database; expected {_EXPECTED}, found {found}")


def _copy_regular(src: Path, dst: Path) -> None:
    """Copy the regular file ``src`` to a new private file ``dst`` (never opening anything else)."""
    fd, _ = _open_regular(src, src)
    try:
        out_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(out_fd, "wb") as out:
            for chunk in _chunks(fd, src, 1 << 62):
                out.write(chunk)
    finally:
        os.close(fd)


def _detect(conn: sqlite3.Connection, where: str) -> tuple[str, int, dict[str, set[str]]]:
    names = [
        row[0]
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if isinstance(row[0], str)
    ]
    tables = {
        name: {str(col[1]) for col in conn.execute(f'PRAGMA table_info("{name}")')}
        for name in names
        if name in {"version", "sessions", "peers", "usernames", "update_state", "entities"}
    }
    version_cols = tables.get("version", set())
    if "number" in version_cols:
        family, column = "pyrogram", "number"
    elif "version" in version_cols:
        family, column = "telethon", "version"
    else:
        shown = f"tables {', '.join(sorted(names)[:10])}" if names else "no tables"
        raise SessionFormatError(
            f"{where} is an SQLite database but not a session file; expected {_EXPECTED} "
            f"(a 'version' table), found {shown}"
        )
    row = conn.execute(f"SELECT {column} FROM version").fetchone()
    if row is None or type(row[0]) is not int:
        raise SessionFormatError(f"{where}: its version table holds no version number")
    version: int = row[0]
    known = _TELETHON_VERSIONS if family == "telethon" else _PYROGRAM_VERSIONS
    if version not in known:
        label = "Telethon" if family == "telethon" else "Pyrogram-family"
        reads = f"{known[0]}-{known[-1]}"
        if version > known[-1]:
            problem = f"a newer {label} schema, version {version}, unknown to this statekit"
        else:
            library = "Telethon" if family == "telethon" else "Pyrogram"
            problem = (
                f"an old {label} schema, version {version} (open it once with {library} "
                "to upgrade it)"
            )
        raise SessionFormatError(f"{where} has {problem}; statekit reads {label} versions {reads}")
    return family, version, tables


_ROW_LIMITS = {
    "peers": fmt.MAX_PEERS,
    "entities": fmt.MAX_PEERS,
    "usernames": fmt.MAX_USERNAMES_TOTAL,
    "update_state": fmt.MAX_UPDATE_STATES,
}


def _check_sizes(conn: sqlite3.Connection, tables: dict[str, set[str]], where: str) -> None:
    """Refuse a file holding more rows than the largest real session (before reading them)."""
    for table, limit in _ROW_LIMITS.items():
        if table in tables:
            (count,) = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
            if count > limit:
                raise SessionFormatError(
                    f"{where}: {count} rows in table {table!r}, more than a session holds "
                    f"({limit})"
                )


def _need(
    tables: dict[str, set[str]], table: str, cols: Sequence[str], where: str, what: str
) -> None:
    if table not in tables:
        raise SessionFormatError(f"{where}: {what} lacks its {table!r} table")
    missing = [c for c in cols if c not in tables[table]]
    if missing:
        raise SessionFormatError(
            f"{where}: {what} expects column(s) {', '.join(missing)} in table {table!r}"
        )


def _text(value: object, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise SessionFormatError(f"{where} is a {type(value).__name__}, expected text")


def _phone(value: object, where: str) -> str | None:
    if type(value) is int:
        return str(value)
    return _text(value, where)


def _flag(value: object, where: str) -> bool:
    return bool(fmt.read_int(value, where))


def _read_states(
    conn: sqlite3.Connection, where: str, *, raw_channel_ids: bool
) -> list[UpdateState]:
    states = []
    for row in conn.execute("SELECT id, pts, qts, date, seq FROM update_state ORDER BY id"):
        box = fmt.read_required_int(row[0], f"{where}: update_state id")
        name = f"{where}: update_state {box}"
        states.append(
            UpdateState(
                id=fmt.channel_box_from_raw(box) if raw_channel_ids else box,
                pts=fmt.read_int(row[1], f"{name} pts"),
                qts=fmt.read_int(row[2], f"{name} qts"),
                date=fmt.read_int(row[3], f"{name} date", lossy_float=True),
                seq=fmt.read_int(row[4], f"{name} seq"),
            )
        )
    states.sort(key=lambda state: state.id)
    return states


def _read_pyrogram(
    conn: sqlite3.Connection, tables: dict[str, set[str]], version: int, where: str
) -> SessionSnapshot:
    what = f"Pyrogram-family schema {version}"
    cols = ["dc_id", "test_mode", "auth_key", "date", "user_id", "is_bot"]
    if version >= 3:
        cols.append("api_id")
    if version >= 7:
        cols += ["server_address", "port"]
    _need(tables, "sessions", cols, where, what)
    row = conn.execute(f"SELECT {', '.join(cols)} FROM sessions LIMIT 1").fetchone()
    if row is None:
        raise SessionFormatError(f"{where} holds no session row")
    values = dict(zip(cols, row, strict=True))
    fmt.check_auth_key(values["auth_key"], where)
    dc_id = fmt.read_required_int(values["dc_id"], f"{where}: dc_id")
    test_mode = _flag(values["test_mode"], f"{where}: test_mode")
    if version >= 7:
        address = _text(values["server_address"], f"{where}: server_address")
        port = fmt.read_int(values["port"], f"{where}: port")
    else:
        address, port = fmt.default_address(dc_id, test_mode) or (None, None)
    data = fmt.make_session_data(
        where,
        dc_id=dc_id,
        auth_key=values["auth_key"],
        server_address=address,
        port=port,
        api_id=fmt.read_int(values.get("api_id"), f"{where}: api_id"),
        test_mode=test_mode,
        date=fmt.read_int(values["date"], f"{where}: date", lossy_float=True),
        user_id=fmt.read_int(values["user_id"], f"{where}: user_id"),
        is_bot=_flag(values["is_bot"], f"{where}: is_bot"),
    )

    peer_cols = ["id", "access_hash", "type", "phone_number", "last_update_on"]
    # a Pyrogram 2.0 file (schema 3) upgraded by kurigram keeps its usernames in peers.username
    # (the upgrade adds an empty usernames table): read both, the usernames table first
    if version <= 3 or "username" in tables.get("peers", set()):
        peer_cols.append("username")
    _need(tables, "peers", peer_cols, where, what)
    usernames: dict[int, tuple[str, ...]] = {}
    if version >= 4:
        _need(tables, "usernames", ["id", "username"], where, what)
        column = f"{where}: usernames.username"
        for uid, name in conn.execute("SELECT id, username FROM usernames ORDER BY rowid"):
            text = name if type(name) is str else _text(name, column)
            if type(uid) is int and text:
                had = usernames.get(uid)
                usernames[uid] = (text,) if had is None else (*had, text)
    peers = [
        _pyrogram_peer(row, usernames, where)
        for row in conn.execute(f"SELECT {', '.join(peer_cols)} FROM peers ORDER BY id")
    ]
    states: list[UpdateState] = []
    if version >= 5:
        _need(tables, "update_state", ["id", "pts", "qts", "date", "seq"], where, what)
        states = _read_states(conn, where, raw_channel_ids=False)
    return SessionSnapshot(data, peers, states)


def _pyrogram_peer(row: _PeerRow, usernames: dict[int, tuple[str, ...]], where: str) -> Peer:
    """The peer of a Pyrogram-family ``peers`` row (id, access_hash, type, phone_number,
    last_update_on[, username]), its usernames from the ``usernames`` table first;
    ``SessionFormatError`` naming the peer and field for a value of the wrong type."""
    peer_id, access_hash, kind, phone, stamp = row[0], row[1], row[2], row[3], row[4]
    if (  # the common row, checked inline (an int SQLite returns is 64-bit)
        type(peer_id) is int
        and (type(access_hash) is int or access_hash is None)
        and type(kind) is str
        and kind
        and (phone is None or type(phone) is str)
        and (stamp is None or type(stamp) is int)
    ):
        names = usernames.get(peer_id)
        if names is not None:
            return Peer(peer_id, access_hash or 0, kind, names, phone, stamp)
        if len(row) == 5 or row[5] is None:
            return Peer(peer_id, access_hash or 0, kind, (), phone, stamp)
        if type(row[5]) is str:
            return Peer(peer_id, access_hash or 0, kind, (row[5],) if row[5] else (), phone, stamp)
    peer_id = fmt.read_required_int(peer_id, f"{where}: peer id")
    name = f"{where}: peer {peer_id}"
    kind = _text(kind, f"{name} type")
    if not kind:
        raise SessionFormatError(f"{name} has no type")
    found: list[str | None] = list(usernames.get(peer_id, ()))
    if not found and len(row) > 5:
        found = [_text(row[5], f"{name} username")]
    return Peer(
        id=peer_id,
        access_hash=fmt.read_int(access_hash, f"{name} access_hash") or 0,
        type=kind,
        usernames=tuple(n for n in found if n),
        phone_number=_phone(phone, f"{name} phone_number"),
        last_update_on=fmt.read_int(stamp, f"{name} last_update_on", lossy_float=True),
    )


def _read_telethon(
    conn: sqlite3.Connection, tables: dict[str, set[str]], version: int, where: str
) -> SessionSnapshot:
    what = f"Telethon schema {version}"
    _need(tables, "sessions", ["dc_id", "server_address", "port", "auth_key"], where, what)
    _need(tables, "entities", ["id", "hash", "username", "phone", "date"], where, what)
    _need(tables, "update_state", ["id", "pts", "qts", "date", "seq"], where, what)
    row = conn.execute(
        "SELECT dc_id, server_address, port, auth_key FROM sessions LIMIT 1"
    ).fetchone()
    if row is None:
        raise SessionFormatError(f"{where} holds no session row")
    fmt.check_auth_key(row[3], where)
    address = _text(row[1], f"{where}: server_address")
    user_id: int | None = None
    peers = []
    name_col = "name" if "name" in tables["entities"] else "NULL"
    for ent in conn.execute(
        f"SELECT id, hash, username, phone, date, {name_col} FROM entities ORDER BY id"
    ):
        if type(ent[0]) is int and ent[0] == 0:  # the logged-in user's record: its id in the hash
            user_id = fmt.read_int(ent[1], f"{where}: entity 0 hash") or None
            continue
        peers.append(_telethon_peer(ent, where))
    data = fmt.make_session_data(
        where,
        dc_id=fmt.read_required_int(row[0], f"{where}: dc_id"),
        auth_key=row[3],
        server_address=address,
        port=fmt.read_int(row[2], f"{where}: port"),
        test_mode=fmt.is_test_host(address),
        user_id=user_id,
    )
    return SessionSnapshot(data, peers, _read_states(conn, where, raw_channel_ids=True))


def _telethon_type(peer_id: int) -> str:
    """The peer type a Telethon entity id implies (Telethon keeps no type)."""
    return "user" if peer_id > 0 else "channel" if peer_id < -(10**12) else "group"


def _telethon_peer(ent: _PeerRow, where: str) -> Peer:
    """The peer of a Telethon ``entities`` row (id, hash, username, phone, date, name) other
    than the logged-in user's (id 0); ``SessionFormatError`` naming the entity and field for a
    value of the wrong type."""
    peer_id, access_hash, username, phone, stamp, name = ent
    if (  # the common row, checked inline (an int SQLite returns is 64-bit)
        type(peer_id) is int
        and (type(access_hash) is int or access_hash is None)
        and (username is None or type(username) is str)
        and (phone is None or type(phone) is int or type(phone) is str)  # an INTEGER column
        and (stamp is None or type(stamp) is int)
        and (name is None or type(name) is str)
    ):
        text = phone if phone is None or isinstance(phone, str) else str(phone)
        return Peer(
            peer_id,
            access_hash or 0,
            _telethon_type(peer_id),
            (username,) if username else (),
            text,
            stamp,
            name or None,
        )
    peer_id = fmt.read_required_int(peer_id, f"{where}: entity id")
    where = f"{where}: entity {peer_id}"
    username = _text(username, f"{where} username")
    return Peer(
        id=peer_id,
        access_hash=fmt.read_int(access_hash, f"{where} hash") or 0,
        type=_telethon_type(peer_id),
        usernames=(username,) if username else (),
        phone_number=_phone(phone, f"{where} phone"),
        last_update_on=fmt.read_int(stamp, f"{where} date", lossy_float=True),
        name=_text(name, f"{where} name") or None,
    )


# ---------------------------------------------------------------------------------------------
# export


def export_file(
    snapshot: SessionSnapshot | SessionData,
    path: str | os.PathLike[str],
    format: str,
    *,
    overwrite: bool = False,
    api_id: int | None = None,
    user_id: int | None = None,
    is_bot: bool | None = None,
) -> Path:
    """Write ``snapshot`` as a session file of ``format`` at exactly ``path``; return the path.

    ``format``: ``"pyrogram"`` (Pyrogram 2.0, schema 3: one username per peer, no update states),
    ``"kurigram"`` (kurigram / irenogram, schema 7), ``"telethon"`` (schema 8), ``"ferogram"``
    (ferogram's binary session file, version 8) or ``"ferogram-sqlite"`` (its SQLite store;
    ferogram keeps no api_id / user_id, so neither is needed). The libraries
    look for ``NAME.session``: name the file accordingly. ``api_id``, ``user_id`` and ``is_bot``,
    when given, replace the snapshot's values; Pyrogram-family files need ``api_id`` and
    ``user_id``. Raises ``ValueError`` for an unknown format or a missing / unwritable field,
    ``FileExistsError`` if ``path`` exists and ``overwrite`` is False; on any error nothing is
    left at ``path``. The file is created with mode 0600.
    """
    if format not in FILE_FORMATS:
        raise ValueError(f"unknown session file format {format!r}; expected one of {FILE_FORMATS}")
    snap = fmt.to_snapshot(snapshot)
    data = fmt.apply_overrides(snap.data, api_id=api_id, user_id=user_id, is_bot=is_bot)
    snap = SessionSnapshot(data, snap.peers, snap.update_states)
    if format in ("ferogram", "ferogram-sqlite"):
        return fero_files.export_ferogram_file(snap, path, format, overwrite=overwrite)
    _check_writable(snap, format)
    target = Path(path)
    if not overwrite and (target.exists() or target.is_symlink()):
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        os.chmod(tmp, 0o600)
        with closing(sqlite3.connect(tmp)) as conn:
            try:
                with conn:
                    _WRITERS[format](conn, snap)
            except (sqlite3.InterfaceError, sqlite3.ProgrammingError) as exc:
                raise ValueError(
                    f"cannot write a {format} session file: a value cannot be stored ({exc})"
                ) from None
        fmt.publish_file(tmp, target, overwrite)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            leftover.unlink(missing_ok=True)
    return target


async def export_file_async(
    snapshot: SessionSnapshot | SessionData,
    path: str | os.PathLike[str],
    format: str,
    *,
    overwrite: bool = False,
    api_id: int | None = None,
    user_id: int | None = None,
    is_bot: bool | None = None,
) -> Path:
    """:func:`export_file` in a worker thread."""
    return await asyncio.to_thread(
        export_file,
        snapshot,
        path,
        format,
        overwrite=overwrite,
        api_id=api_id,
        user_id=user_id,
        is_bot=is_bot,
    )


def _check_writable(snap: SessionSnapshot, format: str) -> None:
    data = snap.data
    target = f"{format} session file"
    if format in ("pyrogram", "kurigram"):
        fmt.require(data, target, "api_id", "user_id")
    if format == "kurigram" and data.server_address is None:
        if fmt.default_address(data.dc_id, data.test_mode) is None:
            raise ValueError(
                f"cannot write a {target}: the source session has no server address and data "
                f"centre {data.dc_id} has no known default address"
            )
    if format == "telethon":
        fmt.telethon_address(data, target)
    if not fmt.in_int64(data.api_id, data.user_id, data.port, data.date):
        raise ValueError(f"cannot write a {target}: a session field exceeds 64 bits")
    for peer in snap.peers:
        if not fmt.in_int64(peer.id, peer.access_hash, peer.last_update_on):
            raise ValueError(f"cannot write a {target}: peer {peer.id} has a value over 64 bits")
    for state in snap.update_states:
        if not fmt.in_int64(state.id, state.pts, state.qts, state.date, state.seq):
            raise ValueError(f"cannot write a {target}: update state {state.id} exceeds 64 bits")


def _unique_peers(peers: Sequence[Peer]) -> list[Peer]:
    by_id: dict[int, Peer] = {}
    for peer in peers:
        by_id[peer.id] = peer  # the last one of an id wins, as REPLACE would
    return list(by_id.values())


def _pyrogram_2_type(peer: Peer) -> str:
    if peer.type in _PYROGRAM_2_TYPES:
        return peer.type
    if peer.id > 0:
        return "user"
    if peer.id < -(10**12):
        return "supergroup" if peer.type in ("forum", "community") else "channel"
    return "group"


def _write_pyrogram(conn: sqlite3.Connection, snap: SessionSnapshot) -> None:
    d, now = snap.data, int(time.time())
    conn.executescript(PYROGRAM_3)
    conn.execute("INSERT INTO version VALUES (3)")
    conn.execute(
        "INSERT INTO sessions (dc_id, api_id, test_mode, auth_key, date, user_id, is_bot)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (d.dc_id, d.api_id, d.test_mode, d.auth_key, d.date or 0, d.user_id, d.is_bot),
    )
    conn.executemany(
        "INSERT INTO peers (id, access_hash, type, username, phone_number, last_update_on)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                p.id,
                p.access_hash,
                _pyrogram_2_type(p),
                p.username,
                p.phone_number,
                now if p.last_update_on is None else p.last_update_on,
            )
            for p in _unique_peers(snap.peers)
        ],
    )


def _write_kurigram(conn: sqlite3.Connection, snap: SessionSnapshot) -> None:
    d, now = snap.data, int(time.time())
    address, port = d.server_address, d.port
    if address is None:
        address, port = fmt.default_address(d.dc_id, d.test_mode) or (None, None)
    conn.executescript(KURIGRAM_7)
    conn.execute("INSERT INTO version VALUES (7)")
    conn.execute(
        "INSERT INTO sessions (dc_id, server_address, port, api_id, test_mode, auth_key, date,"
        " user_id, is_bot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            d.dc_id,
            address,
            port,
            d.api_id,
            d.test_mode,
            d.auth_key,
            d.date or 0,
            d.user_id,
            d.is_bot,
        ),
    )
    peers = _unique_peers(snap.peers)
    conn.executemany(
        "INSERT INTO peers (id, access_hash, type, phone_number, last_update_on)"
        " VALUES (?, ?, ?, ?, ?)",
        [
            (
                p.id,
                p.access_hash,
                p.type,
                p.phone_number,
                now if p.last_update_on is None else p.last_update_on,
            )
            for p in peers
        ],
    )
    conn.executemany(
        "INSERT INTO usernames (id, username) VALUES (?, ?)",
        [(p.id, name) for p in peers for name in p.usernames],
    )
    conn.executemany(
        "REPLACE INTO update_state (id, pts, qts, date, seq) VALUES (?, ?, ?, ?, ?)",
        [(u.id, u.pts, u.qts, u.date, u.seq) for u in snap.update_states],
    )


def _telethon_phone(phone: str | None) -> int | str | None:
    return int(phone) if phone is not None and phone.isascii() and phone.isdigit() else phone


def _write_telethon(conn: sqlite3.Connection, snap: SessionSnapshot) -> None:
    d = snap.data
    address, port = fmt.telethon_address(d, "telethon session file")
    conn.executescript(TELETHON_8)
    conn.execute("INSERT INTO version VALUES (8)")
    conn.execute(
        "INSERT INTO sessions VALUES (?, ?, ?, ?, NULL, ?)",
        (d.dc_id, address, port, d.auth_key, b""),
    )
    rows: list[_PeerRow] = [
        (
            p.id,
            p.access_hash,
            p.username.lower() if p.username else None,
            _telethon_phone(p.phone_number),
            p.name,
            p.last_update_on,
        )
        for p in _unique_peers(snap.peers)
        if p.id != 0
    ]
    if d.user_id is not None:  # where Telethon looks for the logged-in user's id
        rows.append((0, d.user_id, None, None, None, d.date or int(time.time())))
    conn.executemany("INSERT INTO entities VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.executemany(
        "REPLACE INTO update_state VALUES (?, ?, ?, ?, ?)",
        [
            (fmt.channel_box_to_raw(u.id), u.pts or 0, u.qts or 0, u.date or 0, u.seq or 0)
            for u in snap.update_states
        ],
    )


_WRITERS = {"pyrogram": _write_pyrogram, "kurigram": _write_kurigram, "telethon": _write_telethon}
