"""ferogram's session files: the SQLite store of its ``SqliteSession`` (tables ``meta``, ``dcs``,
``update_state``, ``channel_pts``, ``peers``, ``min_peers``; WAL; no version table) and the
binary file of its ``FileSession``. Read both, write both (completely or not at all, mode 0600,
never over an existing file unless asked).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from contextlib import closing
from pathlib import Path

from statekit.errors import SessionFormatError
from statekit.session import _ferogram as fero
from statekit.session import _formats as fmt
from statekit.session.records import SessionData, SessionSnapshot

__all__ = [
    "MAX_BLOB_FILE",
    "STORE_TABLES",
    "export_ferogram_file",
    "is_store",
    "read_blob_file",
    "read_store",
    "write_store",
]

STORE_TABLES = ("meta", "dcs", "update_state", "channel_pts", "peers", "min_peers")
# the largest blob ferogram can write: 255 data centres, 65535 channels / peers / min-peers and
# a 64 KiB token are under 4 MiB
MAX_BLOB_FILE = 8 * 1024 * 1024

# The schema ferogram 0.5's SqliteSession creates (column names, types, keys and defaults).
_SCHEMA = """
CREATE TABLE meta (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE dcs (
    dc_id       INTEGER NOT NULL,
    flags       INTEGER NOT NULL DEFAULT 0,
    addr        TEXT    NOT NULL,
    auth_key    BLOB,
    first_salt  INTEGER NOT NULL DEFAULT 0,
    time_offset INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (dc_id, flags)
);
CREATE TABLE update_state (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    pts  INTEGER NOT NULL DEFAULT 0,
    qts  INTEGER NOT NULL DEFAULT 0,
    date INTEGER NOT NULL DEFAULT 0,
    seq  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE channel_pts (
    channel_id INTEGER PRIMARY KEY,
    pts        INTEGER NOT NULL
);
CREATE TABLE peers (
    id           INTEGER PRIMARY KEY,
    access_hash  INTEGER NOT NULL,
    is_channel   INTEGER NOT NULL DEFAULT 0,
    is_chat      INTEGER NOT NULL DEFAULT 0,
    channel_kind INTEGER,
    is_community INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE min_peers (
    user_id INTEGER PRIMARY KEY,
    peer_id INTEGER NOT NULL,
    msg_id  INTEGER NOT NULL
);
"""


# ---------------------------------------------------------------------------------------------
# reading


def is_store(conn: sqlite3.Connection) -> bool:
    """True if the database has ferogram's ``meta``, ``dcs`` and ``peers`` tables and no
    ``version`` table (which every Pyrogram-family and Telethon file has)."""
    names = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    return {"meta", "dcs", "peers"} <= names and "version" not in names


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {str(col[1]) for col in conn.execute(f'PRAGMA table_info("{table}")')}


def _int(value: object, where: str) -> int:
    return fmt.read_required_int(value, where)


def read_store(conn: sqlite3.Connection, where: str) -> fero.FerogramSession:
    """Read a ferogram SQLite store into a :class:`FerogramSession`.

    Columns added by later ferogram releases (``is_chat``, ``channel_kind``, ``is_community``,
    the ``min_peers`` table) default as ferogram's own migration does when missing. Raises
    ``SessionFormatError`` for a missing table or column or a value of the wrong type.
    """
    tables = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    for table in ("meta", "dcs", "update_state", "channel_pts", "peers"):
        if table not in tables:
            raise SessionFormatError(f"{where}: a ferogram store lacks its {table!r} table")
    needed = {
        "dcs": {"dc_id", "flags", "addr", "auth_key", "first_salt", "time_offset"},
        "peers": {"id", "access_hash", "is_channel"},
        "meta": {"key", "value"},
        "update_state": {"id", "pts", "qts", "date", "seq"},
        "channel_pts": {"channel_id", "pts"},
    }
    for table, cols in needed.items():
        missing = cols - _columns(conn, table)
        if missing:
            raise SessionFormatError(
                f"{where}: ferogram store table {table!r} lacks column(s) "
                + ", ".join(sorted(missing))
            )
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    home = meta.get("home_dc_id", 0)
    token = meta.get("future_auth_token")
    if token is not None and not isinstance(token, bytes):
        raise SessionFormatError(f"{where}: future auth token is a {type(token).__name__}")
    session = fero.FerogramSession(
        home_dc_id=_int(home, f"{where}: meta home_dc_id"), future_auth_token=token
    )
    for row in conn.execute(
        "SELECT dc_id, flags, addr, auth_key, first_salt, time_offset FROM dcs ORDER BY rowid"
    ):
        dc_id = _int(row[0], f"{where}: dcs dc_id")
        name = f"{where}: data centre {dc_id}"
        key = row[3]
        if key is not None and (not isinstance(key, bytes) or len(key) != 256):
            size = len(key) if isinstance(key, bytes) else type(key).__name__
            raise SessionFormatError(f"{name}: auth key is {size} bytes, expected 256")
        if not isinstance(row[2], str):
            raise SessionFormatError(f"{name}: address is a {type(row[2]).__name__}")
        fero.split_address(row[2], name)
        session.dcs.append(
            fero.FerogramDc(
                dc_id,
                row[2],
                key or None,
                _int(row[4], f"{name} first_salt"),
                _int(row[5], f"{name} time_offset"),
                _int(row[1], f"{name} flags"),
            )
        )
    state = conn.execute("SELECT pts, qts, date, seq FROM update_state WHERE id = 1").fetchone()
    if state is not None:
        values = [_int(v, f"{where}: update_state") for v in state]
        session.pts, session.qts, session.date, session.seq = values
    for cid, cpts in conn.execute("SELECT channel_id, pts FROM channel_pts ORDER BY channel_id"):
        session.channels.append(
            (_int(cid, f"{where}: channel_pts id"), _int(cpts, f"{where}: channel_pts pts"))
        )
    cols = _columns(conn, "peers")
    select = ", ".join(
        c if c in cols else default
        for c, default in (
            ("id", ""),
            ("access_hash", ""),
            ("is_channel", ""),
            ("is_chat", "0"),
            ("channel_kind", "NULL"),
            ("is_community", "0"),
        )
    )
    for row in conn.execute(f"SELECT {select} FROM peers ORDER BY rowid"):
        pid = _int(row[0], f"{where}: peer id")
        name = f"{where}: peer {pid}"
        kind = fmt.read_int(row[4], f"{name} channel_kind")
        if kind is not None and kind not in (0, 1, 2):
            raise SessionFormatError(f"{name}: unknown channel kind {kind}")
        is_chat = bool(_int(row[3], f"{name} is_chat"))
        is_channel = bool(_int(row[2], f"{name} is_channel"))
        session.peers.append(
            fero.FerogramPeer(
                pid,
                _int(row[1], f"{name} access_hash"),
                2 if is_chat else 1 if is_channel else 0,
                kind,
                bool(_int(row[5], f"{name} is_community")),
            )
        )
    if "min_peers" in tables:
        for uid, peer_id, msg_id in conn.execute(
            "SELECT user_id, peer_id, msg_id FROM min_peers ORDER BY rowid"
        ):
            session.min_peers.append(
                (
                    _int(uid, f"{where}: min_peers user_id"),
                    _int(peer_id, f"{where}: min_peers peer_id"),
                    _int(msg_id, f"{where}: min_peers msg_id"),
                )
            )
    return session


def read_blob_file(path: Path, size: int) -> fero.FerogramSession:
    """Read a ferogram binary session file of ``size`` bytes (``SessionFormatError`` if it is
    larger than any ferogram session, or not one)."""
    where = f"ferogram session file {path}"
    if size > MAX_BLOB_FILE:
        raise SessionFormatError(
            f"{path} is not an SQLite database, and at {size} bytes too large for a ferogram "
            "session file"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SessionFormatError(
            f"session file {path} cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    return fero.parse_blob(data, where)


# ---------------------------------------------------------------------------------------------
# writing


def write_store(conn: sqlite3.Connection, session: fero.FerogramSession) -> None:
    """Create ferogram's schema in the empty database ``conn`` and write ``session`` into it."""
    conn.executescript(_SCHEMA)
    conn.execute("INSERT INTO meta (key, value) VALUES ('home_dc_id', ?)", (session.home_dc_id,))
    if session.future_auth_token is not None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('future_auth_token', ?)",
            (session.future_auth_token,),
        )
    conn.executemany(
        "INSERT OR REPLACE INTO dcs (dc_id, flags, addr, auth_key, first_salt, time_offset)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (d.dc_id, d.flags, d.address, d.auth_key, d.first_salt, d.time_offset)
            for d in session.dcs
        ],
    )
    conn.execute(
        "INSERT INTO update_state (id, pts, qts, date, seq) VALUES (1, ?, ?, ?, ?)",
        (session.pts, session.qts, session.date, session.seq),
    )
    conn.executemany(
        "INSERT OR REPLACE INTO channel_pts (channel_id, pts) VALUES (?, ?)", session.channels
    )
    conn.executemany(
        "INSERT OR REPLACE INTO peers (id, access_hash, is_channel, is_chat, channel_kind,"
        " is_community) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (p.id, p.access_hash, int(p.type == 1), int(p.type == 2), p.channel_kind,
             int(p.community))
            for p in session.peers
        ],
    )
    conn.executemany(
        "INSERT OR REPLACE INTO min_peers (user_id, peer_id, msg_id) VALUES (?, ?, ?)",
        session.min_peers,
    )


def export_ferogram_file(
    snapshot: SessionSnapshot | SessionData,
    path: str | os.PathLike[str],
    format: str,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``snapshot`` as a ferogram binary session file (``format="ferogram"``, version 8)
    or SQLite store (``"ferogram-sqlite"``) at exactly ``path``; return the path.

    Raises ``ValueError`` when the snapshot has no address for its data centre or a value does
    not fit, or when replacing a store whose write-ahead log holds changes (it is open);
    ``FileExistsError`` if ``path`` exists and ``overwrite`` is False. The file is
    created with mode 0600 and appears complete or not at all.
    """

    session = fero.from_snapshot(snapshot)
    blob = fero.build_blob(session)  # checks every range before anything is created
    target = Path(path)
    if not overwrite and (target.exists() or target.is_symlink()):
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    wal = target.with_name(target.name + "-wal")
    if format == "ferogram-sqlite" and wal.exists() and wal.stat().st_size > 0:
        # SQLite would replay that log onto the new file
        raise ValueError(
            f"cannot replace {target}: {wal.name} holds changes not yet in it (the store is "
            "open, or was not closed cleanly); close the client first"
        )
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.chmod(tmp, 0o600)
        if format == "ferogram":
            with os.fdopen(fd, "wb") as out:
                fd = -1
                out.write(blob)
                out.flush()
                os.fsync(out.fileno())
        else:
            os.close(fd)
            fd = -1
            with closing(sqlite3.connect(tmp)) as conn:
                conn.execute("PRAGMA journal_mode = WAL")
                with conn:
                    write_store(conn, session)
        fmt.publish_file(tmp, target, overwrite)
    finally:
        if fd >= 0:
            os.close(fd)
        for suffix in ("", "-wal", "-shm", "-journal"):
            tmp.with_name(tmp.name + suffix).unlink(missing_ok=True)
    return target
