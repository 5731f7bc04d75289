"""``statekit session inspect`` and ``statekit session convert``: MTProto session strings and files.

A source is a session file (Pyrogram 2.0, kurigram / irenogram, Telethon; schema detected), a
session string (Pyrogram family, Telethon, GramJS, statekit; format detected) or ``-`` to read a
string from standard input (keeps it out of the shell history and the process list).
"""

from __future__ import annotations

import argparse
import datetime
import errno
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from statekit._cli._common import CLIError, add_json, format_pairs, format_table, print_json

__all__ = ["FORMATS", "add_parser"]

FORMATS = (
    "pyrogram-string",
    "telethon-string",
    "gramjs-string",
    "statekit-string",
    "pyrogram-file",
    "kurigram-file",
    "telethon-file",
    "ferogram-string",
    "ferogram-file",
    "ferogram-sqlite",
)

_SQLITE_HEADER = b"SQLite format 3\x00"
_MAX_STRING = 128 * 1024 * 1024  # characters: no session string is longer (a million peers: 16 M)

_SOURCE_HELP = (
    "a session file (.session of Pyrogram 2.0, kurigram/irenogram or Telethon), a session "
    "string (Pyrogram family, Telethon, GramJS or statekit), or - to read a string from stdin"
)

if TYPE_CHECKING:
    from statekit.session.records import SessionSnapshot


@dataclass
class Source:
    """A session read from the command line: what it was and what it holds."""

    snapshot: SessionSnapshot
    kind: str  # "file" or "string"
    format: str
    schema: int | None
    where: str


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``session`` with ``inspect`` and ``convert``."""
    session = sub.add_parser(
        "session",
        help="inspect or convert MTProto session strings and files",
        description="Inspect or convert the sessions of Pyrogram-family clients (Pyrogram 2.0, "
        "kurigram, irenogram) and Telethon: session strings and SQLite session files.",
        epilog="examples:\n"
        "  statekit session inspect my_account.session\n"
        "  statekit session convert my_account.session --to telethon-string",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inner = session.add_subparsers(title="session commands", metavar="COMMAND")
    session.set_defaults(func=lambda _args: _usage(session))

    inspect = inner.add_parser(
        "inspect",
        help="show what a session string or file holds (secrets masked)",
        description="Show the format and contents of a session: data centre, server, api_id, "
        "user, bot or not, date, cached peers and update states. The auth key is shown only as "
        "its public key id, phone numbers and access hashes are masked, unless --show-secrets. "
        "Source: " + _SOURCE_HELP + ".",
        epilog="examples:\n"
        "  statekit session inspect my_account.session --peers\n"
        "  statekit session inspect - --json < session.txt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect.add_argument("source", metavar="PATH_OR_STRING", help=_SOURCE_HELP)
    inspect.add_argument("--peers", action="store_true", help="list the cached peers")
    inspect.add_argument(
        "--show-secrets",
        action="store_true",
        help="print the auth key (hex), phone numbers and access hashes",
    )
    add_json(inspect)
    inspect.set_defaults(func=run_inspect)

    convert = inner.add_parser(
        "convert",
        help="convert a session string or file to another format",
        description="Convert a session to FORMAT: "
        + ", ".join(FORMATS)
        + ". Strings go to standard output (or to -o FILE); files need -o and are created with "
        "mode 0600, never over an existing file unless --overwrite. Peers and update states "
        "are carried into files and statekit strings (Pyrogram and Telethon strings hold only "
        "the authorization). A target that needs a field the source lacks (Pyrogram needs "
        "api_id and user_id; a Telethon string has neither) is refused unless it is given "
        "with --api-id / --user-id. Source: " + _SOURCE_HELP + ".",
        epilog="examples:\n"
        "  statekit session convert my_account.session --to telethon-string\n"
        "  statekit session convert - --to kurigram-file -o my_account.session "
        "--api-id 12345 --user-id 777000 < telethon.txt\n"
        "  statekit session convert old.session --to statekit-string -o backup.txt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument("source", metavar="SRC", help=_SOURCE_HELP)
    convert.add_argument(
        "--to",
        required=True,
        choices=FORMATS,
        metavar="FORMAT",
        help="target format: " + ", ".join(FORMATS),
    )
    convert.add_argument(
        "-o", "--output", metavar="OUT", help="file to write (required for file formats)"
    )
    convert.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    convert.add_argument("--api-id", type=int, help="api_id to write (when the source lacks it)")
    convert.add_argument("--user-id", type=int, help="user id to write (when the source lacks it)")
    convert.add_argument(
        "--is-bot",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mark the session as a bot's (or not, with --no-is-bot)",
    )
    convert.set_defaults(func=run_convert)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# ---------------------------------------------------------------------------------------------
# reading a source


def _exists(text: str) -> bool:
    try:
        return os.path.lexists(text)
    except (OSError, ValueError):  # a long string is not a file name (ENAMETOOLONG), NUL bytes
        return False


_BASE64ISH = re.compile(r"[A-Za-z0-9+/_=-]{32,}")


def _shown(text: str) -> str:
    """``text`` quoted when it cannot be a session string (a path), else only its length and a
    short hash: a value that is neither a file nor a valid string may still be a secret."""
    harmless = not any(c.isspace() or not c.isprintable() for c in text) and (
        (("." in text or text.startswith("~")) and not text.startswith("sk")) or len(text) < 24
    )
    if harmless:
        return repr(text)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"the argument ({len(text)} characters, sha256 {digest}..., not shown)"


def _not_a_session(source: str, exc: Exception) -> CLIError:
    shown = _shown(source)
    if _BASE64ISH.fullmatch(source.strip()):
        return CLIError(f"{shown} looks like a base64 session string but is not one: {exc}")
    return CLIError(
        f"no session file at {shown}, and it is not a session string either ({exc}); "
        "pass - to read a string from standard input"
    )


def load(source: str) -> Source:
    """Read ``source`` (a file, a string, or ``-`` for stdin).

    Raises ``CLIError`` for a value that is neither a file nor a session string (a value that
    may be a secret is described by its length and a short hash, never shown) and
    ``SessionFormatError`` for an unreadable session file (a FIFO, directory or device is
    refused without opening it).
    """
    from statekit.errors import SessionFormatError
    from statekit.session.strings import parse_string

    if source == "-":
        text = sys.stdin.read(_MAX_STRING + 1)
        if len(text) > _MAX_STRING:
            raise CLIError(
                f"standard input holds more than {_MAX_STRING} characters; no session string "
                "is that long"
            )
        format_, snapshot = parse_string(text)
        return Source(snapshot, "string", format_, None, "standard input")
    if _exists(source):
        return _load_path(Path(source))
    try:
        format_, snapshot = parse_string(source)
    except SessionFormatError as exc:
        raise _not_a_session(source, exc) from None
    return Source(snapshot, "string", format_, None, "argument")


def _load_path(path: Path) -> Source:
    from statekit.errors import SessionFormatError
    from statekit.session.files import detect_file_format, import_file, read_regular_file
    from statekit.session.strings import parse_string

    head, size = read_regular_file(path, len(_SQLITE_HEADER))
    is_ferogram = bool(head) and 1 <= head[0] <= 8  # ferogram's binary file: a version byte
    if not head.startswith(_SQLITE_HEADER) and size <= _MAX_STRING and not is_ferogram:
        # not a database: a file holding a session string?
        text = read_regular_file(path, _MAX_STRING)[0].decode("ascii", errors="replace")
        try:
            format_, snapshot = parse_string(text)
        except SessionFormatError as exc:
            raise SessionFormatError(
                f"{path} is neither a session file (it is not an SQLite database) nor a "
                f"file holding a session string: {exc}"
            ) from None
        return Source(snapshot, "string", format_, None, str(path))
    file_format, schema = detect_file_format(path)
    return Source(import_file(path), "file", file_format, schema, str(path))


# ---------------------------------------------------------------------------------------------
# inspect


def auth_key_id(auth_key: bytes) -> str:
    """Telegram's public id of an auth key (the low 64 bits of its SHA-1), as hex."""
    return hashlib.sha1(auth_key).digest()[-8:][::-1].hex()


def _mask(text: str | None, show: bool) -> str | None:
    if text is None or show:
        return text
    return "*" * max(len(text) - 2, 1) + text[-2:] if len(text) > 4 else "****"


def _iso(ts: int | None) -> str | None:
    if ts is None:
        return None
    try:
        return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def describe(src: Source, *, show_secrets: bool, peers: bool) -> dict[str, Any]:
    """The ``--json`` document of ``session inspect``."""
    snap = src.snapshot
    data = snap.data
    types: dict[str, int] = {}
    for peer in snap.peers:
        types[peer.type] = types.get(peer.type, 0) + 1
    doc: dict[str, Any] = {
        "source": src.where,
        "kind": src.kind,
        "format": src.format,
        "schema": src.schema,
        "session": {
            "dc_id": data.dc_id,
            "server_address": data.server_address,
            "port": data.port,
            "test_mode": data.test_mode,
            "api_id": data.api_id,
            "user_id": data.user_id,
            "is_bot": data.is_bot,
            "date": data.date,
            "date_iso": _iso(data.date),
            "auth_key_id": auth_key_id(data.auth_key),
            "auth_key": data.auth_key.hex() if show_secrets else None,
        },
        "peer_count": len(snap.peers),
        "peer_types": dict(sorted(types.items())),
        "update_states": [s.to_dict() for s in snap.update_states],
        "secrets_shown": show_secrets,
    }
    if peers:
        doc["peers"] = [
            {
                "id": p.id,
                "type": p.type,
                "usernames": list(p.usernames),
                "phone_number": _mask(p.phone_number, show_secrets),
                "access_hash": p.access_hash if show_secrets else None,
                "last_update_on": p.last_update_on,
            }
            for p in snap.peers
        ]
    return doc


def run_inspect(args: argparse.Namespace) -> int:
    """Print what a session holds."""
    doc = describe(load(args.source), show_secrets=args.show_secrets, peers=args.peers)
    if args.json:
        print_json(doc)
        return 0
    s = doc["session"]
    kind = f"{doc['format']} {doc['kind']}" + (f", schema {doc['schema']}" if doc["schema"] else "")
    server = "-" if s["server_address"] is None else f"{s['server_address']}:{s['port']}"
    key = (
        s["auth_key"]
        if args.show_secrets
        else f"hidden (256 bytes, key id {s['auth_key_id']}; --show-secrets prints it)"
    )
    types = ", ".join(f"{n} {t}" for t, n in doc["peer_types"].items())
    rows = [
        ("source", f"{doc['source']} ({kind})"),
        ("data centre", f"{s['dc_id']}" + (" (test servers)" if s["test_mode"] else "")),
        ("server", server),
        ("api_id", "-" if s["api_id"] is None else str(s["api_id"])),
        ("user_id", "-" if s["user_id"] is None else str(s["user_id"])),
        ("bot", "yes" if s["is_bot"] else "no"),
        ("date", "-" if s["date"] is None else f"{s['date_iso'] or s['date']}"),
        ("auth key", key),
        ("peers", f"{doc['peer_count']:,}" + (f" ({types})" if types else "")),
        ("update states", str(len(doc["update_states"]))),
    ]
    print(format_pairs(rows))
    if args.peers and doc["peers"]:
        table = [
            (
                str(p["id"]),
                p["type"],
                ", ".join(p["usernames"]) or "-",
                p["phone_number"] or "-",
                str(p["access_hash"]) if p["access_hash"] is not None else "***",
            )
            for p in doc["peers"]
        ]
        print()
        print(format_table(("id", "type", "usernames", "phone", "access_hash"), table, "rllll"))
    return 0


# ---------------------------------------------------------------------------------------------
# convert


def run_convert(args: argparse.Namespace) -> int:
    """Convert; strings to stdout unless ``-o``."""
    from statekit.session.files import export_file
    from statekit.session.strings import export_string

    name, _, kind = args.to.partition("-")
    if args.to == "ferogram-sqlite":
        name, kind = "ferogram-sqlite", "file"
    if kind == "file" and not args.output:
        raise CLIError(f"--to {args.to} writes a file: give its path with -o OUT", 2)
    src = load(args.source)
    overrides = {"api_id": args.api_id, "user_id": args.user_id, "is_bot": args.is_bot}
    try:
        if kind == "string":
            text = export_string(src.snapshot, name, **overrides)
            if not args.output:
                sys.stdout.write(text + "\n")
                return 0
            _write_private(Path(args.output), text + "\n", args.overwrite)
        else:
            export_file(src.snapshot, args.output, name, overwrite=args.overwrite, **overrides)
    except ValueError as exc:
        raise CLIError(_with_hint(str(exc))) from None
    except FileExistsError:
        raise CLIError(f"{args.output!r} exists; pass --overwrite to replace it") from None
    snap = src.snapshot
    carried = ""
    if kind == "file" or name == "statekit":
        states = 0 if name == "pyrogram" else len(snap.update_states)
        carried = f" ({_count(len(snap.peers), 'peer')}, {_count(states, 'update state')})"
    sys.stderr.write(f"statekit: wrote {args.to} to {args.output}{carried}\n")
    return 0


def _count(n: int, thing: str) -> str:
    """``1 peer``, ``2 peers``, ``1,000 peers``."""
    return f"{n:,} {thing}" + ("" if n == 1 else "s")


def _with_hint(message: str) -> str:
    hints = [
        opt for field, opt in (("api_id", "--api-id"), ("user_id", "--user-id")) if field in message
    ]
    if hints and "--" not in message:
        return f"{message} (give it with {' / '.join(hints)})"
    return message


def _write_private(path: Path, text: str, overwrite: bool) -> None:
    """Write ``text`` to ``path`` with mode 0600; never over a file unless ``overwrite``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise CLIError(f"{str(path)!r} is a directory") from None
        raise CLIError(f"cannot write {str(path)!r}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as out:
        out.write(text)
