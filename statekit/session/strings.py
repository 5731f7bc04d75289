"""Session strings: read and write the Pyrogram family's, Telethon's, GramJS's and statekit's own.

Layouts:

* Pyrogram family, current: ``>BI?256sQ?`` (dc_id, api_id, test_mode, auth_key, user_id, is_bot),
  362 characters of base64 without padding. Older layouts, read only: ``>B?256sI?`` (351
  characters, 32-bit user id) and ``>B?256sQ?`` (356 characters), without api_id.
* Telethon: ``'1'`` + base64 of ``>B4sH256s`` (IPv4, 352 characters) or ``>B16sH256s`` (IPv6,
  368 characters): dc_id, packed address, port, auth_key.
* GramJS (``StringSession`` of the JavaScript client): ``'1'`` + standard base64 (padded) of
  dc_id (1 byte), the address length (2 bytes, big-endian), the address as text, the port
  (2 bytes) and the auth key.
* statekit: ``'sk1:'`` + base64 (no padding) of zlib-compressed msgpack holding the session
  data, the peers and the update states.

Pyrogram, Telethon and statekit strings are written with the URL-safe alphabet, GramJS strings
with the standard one; like the libraries themselves, the reader takes either alphabet (not both
in one string). :func:`import_string` tries every format of ``_CANDIDATES`` and accepts the one
whose structure the string has: a string that fits none raises ``SessionFormatError`` saying
what each format expected and the length seen; one that fits two (or fits one but holds a
nonsense address) is refused too. Messages never show the string itself.

Bounds on a statekit string (a hostile one fails fast with ``SessionFormatError``): at most
``MAX_STATEKIT_PAYLOAD`` bytes once decompressed, ``MAX_PEERS`` peers, ``MAX_UPDATE_STATES``
update states, ``MAX_USERNAMES`` usernames per peer and ``MAX_USERNAMES_TOTAL`` in all; the
payload is read one peer at a time, each checked as it is read.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import struct
import zlib
from collections.abc import Callable
from typing import Any, Final, Literal

import msgpack

from statekit.errors import SessionFormatError
from statekit.session import _ferogram as fero
from statekit.session import _formats as fmt
from statekit.session._formats import (
    MAX_PEERS,
    MAX_UPDATE_STATES,
    MAX_USERNAMES,
    MAX_USERNAMES_TOTAL,
)
from statekit.session._peers import SHARED_TYPES
from statekit.session.records import (
    AUTH_KEY_SIZE,
    Peer,
    SessionData,
    SessionSnapshot,
    UpdateState,
)

__all__ = [
    "MAX_PEERS",
    "MAX_STATEKIT_PAYLOAD",
    "MAX_UPDATE_STATES",
    "MAX_USERNAMES",
    "MAX_USERNAMES_TOTAL",
    "STRING_FORMATS",
    "StringFormat",
    "export_string",
    "import_string",
    "parse_string",
]

StringFormat = Literal["pyrogram", "telethon", "gramjs", "statekit", "ferogram"]
STRING_FORMATS: Final[tuple[str, ...]] = ("pyrogram", "telethon", "gramjs", "statekit", "ferogram")

MAX_STATEKIT_PAYLOAD: Final = 128 * 1024 * 1024
"""Bytes a statekit string may expand to (a million peers with usernames take about 40 MB)."""

_PYRO = struct.Struct(">BI?256sQ?")
_PYRO_OLD32 = struct.Struct(">B?256sI?")
_PYRO_OLD64 = struct.Struct(">B?256sQ?")
_TELE_V4 = struct.Struct(">B4sH256s")
_TELE_V6 = struct.Struct(">B16sH256s")
_GRAMJS_HEAD = struct.Struct(">BH")
_VERSION_1 = "1"  # Telethon's and GramJS's string version
_STATEKIT_PREFIX = "sk"
_STATEKIT_VERSION = 1
_MAX_OBJECT = 64 * 1024  # bytes of one msgpack object of a statekit payload (a row, the session)
_READ_SIZE = 16 * 1024  # decompressed bytes the reader asks for at a time

_URLSAFE = re.compile(r"[A-Za-z0-9_-]*")
_STANDARD = re.compile(r"[A-Za-z0-9+/]*")
_ANY_B64 = re.compile(r"[A-Za-z0-9+/_-]")
_STATEKIT_HEAD = re.compile(r"sk([0-9]{1,6}):")


class _NotThisFormat(Exception):
    """The string does not have the structure of a format (why, without showing it)."""


def _b64_len(size: int) -> int:
    """Characters of unpadded base64 for ``size`` bytes."""
    return (size * 4 + 2) // 3


def _padded(n: int) -> int:
    return n + (-n % 4)


# unpadded body length -> (layout name, struct)
_PYRO_LAYOUTS: dict[int, tuple[str, struct.Struct]] = {
    _b64_len(_PYRO.size): ("current", _PYRO),
    _b64_len(_PYRO_OLD32.size): ("old 32-bit", _PYRO_OLD32),
    _b64_len(_PYRO_OLD64.size): ("old 64-bit", _PYRO_OLD64),
}
_TELE_LAYOUTS: dict[int, struct.Struct] = {
    _b64_len(_TELE_V4.size): _TELE_V4,
    _b64_len(_TELE_V6.size): _TELE_V6,
}

_TRIED = (
    f"tried statekit ('sk1:' prefix), Pyrogram family ({_b64_len(_PYRO.size)} characters; older "
    f"layouts {_b64_len(_PYRO_OLD32.size)} and {_b64_len(_PYRO_OLD64.size)}), Telethon ('1' "
    f"followed by {_padded(_b64_len(_TELE_V4.size))} or {_padded(_b64_len(_TELE_V6.size))} "
    "characters), GramJS ('1' followed by base64 of data centre, address, port and auth key), ferogram ('A'-'C' followed by 373 or more characters)"
)


# ---------------------------------------------------------------------------------------------
# import


def import_string(text: str | bytes) -> SessionSnapshot:
    """Read a Pyrogram-family, Telethon, GramJS, statekit or ferogram session string (detected).

    Surrounding whitespace is ignored; base64 padding is optional. Returns a snapshot (peers and
    update states only from statekit and ferogram strings). Raises ``SessionFormatError``
    (saying which formats were tried and the length seen, never the string) for a string of no
    known format, of two formats at once, or of a known format with a bad field; ``TypeError``
    if ``text`` is not a string.
    """
    return parse_string(text)[1]


def parse_string(text: str | bytes) -> tuple[str, SessionSnapshot]:
    """:func:`import_string`, also returning the format detected (one of ``STRING_FORMATS``)."""
    s = _clean(text)
    found: list[tuple[str, SessionSnapshot]] = []
    problems: list[tuple[str, SessionFormatError]] = []
    for name, parser in _CANDIDATES:
        try:
            found.append((name, parser(s)))
        except _NotThisFormat:
            continue
        except SessionFormatError as exc:
            problems.append((name, exc))
    if len(found) == 1:
        return found[0]
    if found:
        names = " and ".join(name for name, _ in found)
        raise SessionFormatError(
            f"session string of {len(s)} characters reads as {names} alike; refusing to guess "
            "which one it is"
        )
    if len(problems) == 1:
        raise problems[0][1]
    if problems:
        raise SessionFormatError(
            f"session string of {len(s)} characters has the shape of "
            + " and ".join(name for name, _ in problems)
            + " but reads as neither: "
            + "; ".join(str(exc) for _, exc in problems)
        )
    raise SessionFormatError(
        f"session string of {len(s)} characters matches no known format; {_TRIED}"
    )


def _clean(text: object) -> str:
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise SessionFormatError(
                f"session string of {len(text)} bytes is not ASCII; {_TRIED}"
            ) from None
    if not isinstance(text, str):
        raise TypeError(f"a session string must be str, not {type(text).__name__}")
    s = text.strip()
    if not s:
        raise SessionFormatError(f"empty session string; {_TRIED}")
    return s


def _decode_b64(body: str, padding: int, what: str) -> bytes:
    """Decode unpadded base64 of either alphabet strictly: one alphabet, padding and canonical
    trailing bits; ``SessionFormatError`` naming the problem (never the text)."""
    standard = "+" in body or "/" in body
    if standard and ("-" in body or "_" in body):
        raise SessionFormatError(
            f"{what}: mixes the standard ('+', '/') and URL-safe ('-', '_') base64 alphabets"
        )
    pattern = _STANDARD if standard else _URLSAFE
    if not pattern.fullmatch(body):
        bad = next(i for i, c in enumerate(body) if not _ANY_B64.fullmatch(c))
        shown = repr(body[bad]) if body[bad].isprintable() else f"U+{ord(body[bad]):04X}"
        raise SessionFormatError(
            f"{what}: character {shown} at position {bad} is outside the base64 alphabet"
        )
    if len(body) % 4 == 1:
        raise SessionFormatError(f"{what}: {len(body)} base64 characters is not a possible length")
    needed = -len(body) % 4
    if padding not in (0, needed):
        raise SessionFormatError(
            f"{what}: {padding} padding characters, expected {needed} (or none)"
        )
    canonical = body if standard else body.translate(_TO_STANDARD)
    try:
        raw = base64.b64decode(canonical + "=" * needed, validate=True)
    except (binascii.Error, ValueError):
        raise SessionFormatError(f"{what}: not valid base64") from None
    if base64.b64encode(raw).decode("ascii").rstrip("=") != canonical:
        raise SessionFormatError(f"{what}: not canonical base64 (the last character was altered)")
    return raw


_TO_STANDARD = str.maketrans("-_", "+/")


def _flag(value: int, name: str, where: str) -> bool:
    if value not in (0, 1):
        raise SessionFormatError(f"{where}: {name} byte is {value}, expected 0 or 1")
    return bool(value)


def _parse_pyrogram(s: str) -> SessionSnapshot:
    body = s.rstrip("=")
    if len(body) not in _PYRO_LAYOUTS:
        raise _NotThisFormat
    layout, layout_struct = _PYRO_LAYOUTS[len(body)]
    where = f"Pyrogram-family session string ({layout} layout)"
    raw = _decode_b64(body, len(s) - len(body), where)
    api_id: int | None = None
    # the flags are read as bytes, not with struct's '?' (which takes any byte for True)
    if layout_struct is _PYRO:
        dc_id, api_id, _, auth_key, user_id, _ = layout_struct.unpack(raw)
    else:
        dc_id, _, auth_key, user_id, _ = layout_struct.unpack(raw)
    test_mode = _flag(raw[5 if layout_struct is _PYRO else 1], "test_mode", where)
    is_bot = _flag(raw[-1], "is_bot", where)
    fmt.check_auth_key(auth_key, where)
    address = fmt.default_address(dc_id, test_mode)
    return SessionSnapshot(
        fmt.make_session_data(
            where,
            dc_id=dc_id,
            auth_key=auth_key,
            server_address=address[0] if address else None,
            port=address[1] if address else None,
            api_id=api_id,
            test_mode=test_mode,
            user_id=user_id,
            is_bot=is_bot,
        )
    )


def _parse_telethon(s: str) -> SessionSnapshot:
    body = s.rstrip("=")
    layout_struct = _TELE_LAYOUTS.get(len(body) - 1)
    if layout_struct is None:
        raise _NotThisFormat
    if body[0] != _VERSION_1:
        shown = repr(body[0]) if body[0].isprintable() else "a control character"
        raise SessionFormatError(
            f"session string of {len(s)} characters has a Telethon length but starts with "
            f"{shown} instead of Telethon's version '1'"
        )
    where = f"Telethon session string (IPv{4 if layout_struct is _TELE_V4 else 6})"
    raw = _decode_b64(body[1:], len(s) - len(body), where)
    dc_id, ip, port, auth_key = layout_struct.unpack(raw)
    fmt.check_auth_key(auth_key, where)
    address = fmt.check_address(ip, where)
    return SessionSnapshot(
        fmt.make_session_data(
            where,
            dc_id=dc_id,
            auth_key=auth_key,
            server_address=address,
            port=port,
            test_mode=fmt.is_test_host(address),
        )
    )


def _parse_gramjs(s: str) -> SessionSnapshot:
    if s[0] != _VERSION_1:
        raise _NotThisFormat
    body = s[1:].rstrip("=")
    if not body or len(body) % 4 == 1 or _ANY_B64.sub("", body):
        raise _NotThisFormat
    try:
        raw = _decode_b64(body, len(s) - 1 - len(body), "GramJS session string")
    except SessionFormatError:
        raise _NotThisFormat from None
    if len(raw) < _GRAMJS_HEAD.size + 2 + AUTH_KEY_SIZE:
        raise _NotThisFormat
    dc_id, length = _GRAMJS_HEAD.unpack_from(raw)
    if len(raw) != _GRAMJS_HEAD.size + length + 2 + AUTH_KEY_SIZE:
        raise _NotThisFormat
    where = "GramJS session string"
    end = _GRAMJS_HEAD.size + length
    address = fmt.check_address(raw[_GRAMJS_HEAD.size : end], where)
    (port,) = struct.unpack_from(">H", raw, end)
    auth_key = raw[end + 2 :]
    fmt.check_auth_key(auth_key, where)
    return SessionSnapshot(
        fmt.make_session_data(
            where,
            dc_id=dc_id,
            auth_key=auth_key,
            server_address=address,
            port=port,
            test_mode=fmt.is_test_host(address),
        )
    )


def _parse_statekit(s: str) -> SessionSnapshot:
    head = _STATEKIT_HEAD.match(s)
    if head is None:
        if s.startswith(_STATEKIT_PREFIX) and ":" in s[:9]:
            raise SessionFormatError("statekit session string with a malformed version prefix")
        raise _NotThisFormat
    where = "statekit session string"
    version = int(head.group(1))
    if version != _STATEKIT_VERSION:
        newer = "newer than" if version > _STATEKIT_VERSION else "not"
        raise SessionFormatError(
            f"{where} has version {version}, {newer} the version this statekit reads "
            f"({_STATEKIT_VERSION})"
        )
    body = s[head.end() :]
    stripped = body.rstrip("=")
    if not stripped:
        raise SessionFormatError(f"{where} of {len(s)} characters is empty after its prefix")
    if len(stripped) % 4 == 1:
        raise SessionFormatError(
            f"{where}: {len(s)} characters is not a possible length (truncated?)"
        )
    compressed = _decode_b64(stripped, len(body) - len(stripped), where)
    return _StatekitReader(compressed, where).read_snapshot()


def _parse_ferogram(s: str) -> SessionSnapshot:
    if not fero.is_string_candidate(s.rstrip("=")):
        raise _NotThisFormat
    return fero.import_string(s)


_CANDIDATES: tuple[tuple[str, Callable[[str], SessionSnapshot]], ...] = (
    ("statekit", _parse_statekit),
    ("pyrogram", _parse_pyrogram),
    ("telethon", _parse_telethon),
    ("gramjs", _parse_gramjs),
    ("ferogram", _parse_ferogram),
)
"""Every string format as (name, parser). A parser returns the snapshot, raises
``_NotThisFormat`` when the string lacks the format's structure, or ``SessionFormatError`` when
it has the structure but a bad field. Adding a format is adding its entry."""


class _StatekitReader:
    """Reads a statekit payload from its compressed form one object at a time, within bounds."""

    def __init__(self, compressed: bytes, where: str) -> None:
        self.where = where
        self._inflater = zlib.decompressobj()
        self._pending = compressed
        self.total = 0
        self._object_start: int | None = None  # where the object being read began
        self._unpacker = msgpack.Unpacker(
            self,
            read_size=_READ_SIZE,
            raw=False,
            strict_map_key=True,
            max_buffer_size=_MAX_OBJECT,
            max_str_len=_MAX_OBJECT,
            max_bin_len=4096,
            max_array_len=MAX_USERNAMES,
            max_map_len=64,
            max_ext_len=0,
        )

    def read(self, size: int = -1) -> bytes:  # the Unpacker's file: decompressed bytes
        """Up to ``size`` more decompressed bytes (b"" at the end of the stream)."""
        size = _MAX_OBJECT if size < 0 else min(max(size, 1), _MAX_OBJECT)
        chunk = b""
        while not self._inflater.eof:
            # output may still be pending inside zlib once all input is taken: ask until an
            # empty answer with no input left (a truncated stream)
            try:
                chunk = self._inflater.decompress(self._pending, size)
            except zlib.error as exc:
                raise SessionFormatError(f"{self.where}: damaged or truncated ({exc})") from None
            self._pending = self._inflater.unconsumed_tail
            if chunk or not self._pending:
                break
        self.total += len(chunk)
        start = self._object_start
        if start is not None and self.total - start > _MAX_OBJECT + _READ_SIZE:
            raise SessionFormatError(
                f"{self.where}: one object of the payload exceeds {_MAX_OBJECT} bytes"
            )
        if self.total > MAX_STATEKIT_PAYLOAD:
            raise SessionFormatError(
                f"{self.where}: payload exceeds {MAX_STATEKIT_PAYLOAD} bytes once decompressed"
            )
        return chunk

    def _next(self, what: str) -> Any:
        self._object_start = self._unpacker.tell()
        try:
            return self._unpacker.unpack()
        except SessionFormatError:
            raise
        except msgpack.OutOfData:
            raise SessionFormatError(f"{self.where}: truncated (the payload ends early)") from None
        except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
            raise SessionFormatError(
                f"{self.where}: {what} is not readable msgpack within bounds ({type(exc).__name__})"
            ) from None

    def _header(self, read: Callable[[], int], what: str) -> int:
        try:
            return read()
        except SessionFormatError:
            raise
        except msgpack.OutOfData:
            raise SessionFormatError(f"{self.where}: truncated (the payload ends early)") from None
        except (ValueError, TypeError, msgpack.UnpackException):
            raise SessionFormatError(f"{self.where}: {what}") from None

    def read_snapshot(self) -> SessionSnapshot:
        """The snapshot the payload holds; ``SessionFormatError`` for anything else."""
        where = self.where
        entries = self._header(self._unpacker.read_map_header, "payload is not a map")
        session: object = None
        peers: list[Peer] = []
        states: list[UpdateState] = []
        for _ in range(entries):
            key = self._next("a payload key")
            if key == "session":
                session = self._next("the session map")
            elif key == "peers":
                count = self._header(self._unpacker.read_array_header, "peers must be a list")
                if count > MAX_PEERS:
                    raise SessionFormatError(f"{where}: {count} peers, more than {MAX_PEERS}")
                peers = []
                names = 0
                for _ in range(count):
                    peer = _peer_from_row(self._next("a peer"), where)
                    names += len(peer.usernames)
                    if names > MAX_USERNAMES_TOTAL:
                        raise SessionFormatError(
                            f"{where}: more than {MAX_USERNAMES_TOTAL} usernames in all"
                        )
                    peers.append(peer)
            elif key == "update_states":
                count = self._header(
                    self._unpacker.read_array_header, "update_states must be a list"
                )
                if count > MAX_UPDATE_STATES:
                    raise SessionFormatError(
                        f"{where}: {count} update states, more than {MAX_UPDATE_STATES}"
                    )
                states = [
                    _state_from_row(self._next("an update state"), where) for _ in range(count)
                ]
            else:
                raise SessionFormatError(f"{where}: the payload holds an unknown entry")
        data = _session_from_map(session, where)
        self._object_start = None
        while self.read(_MAX_OBJECT):  # the rest of the stream: nothing may follow the payload
            pass
        if not self._inflater.eof:
            raise SessionFormatError(f"{where}: truncated (compressed stream does not end)")
        trailing = len(self._inflater.unused_data) + self.total - self._unpacker.tell()
        if trailing:
            raise SessionFormatError(f"{where}: {trailing} unexpected trailing bytes")
        return SessionSnapshot(data, peers, states)


def _field(mapping: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = mapping.get(name)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if type(value) not in kinds:
        raise SessionFormatError(
            f"{where}: field {name!r} is a {type(value).__name__}, expected "
            + " or ".join(k.__name__ for k in kinds)
        )
    return value


def _session_from_map(session: object, where: str) -> SessionData:
    if not isinstance(session, dict):
        raise SessionFormatError(f"{where}: has no session map")
    kw: dict[str, Any] = {}
    for name, kind in (
        ("dc_id", int),
        ("auth_key", bytes),
        ("server_address", str),
        ("port", int),
        ("api_id", int),
        ("date", int),
        ("user_id", int),
    ):
        kw[name] = _field(session, name, kind, where)
    for name in ("test_mode", "is_bot"):
        kw[name] = bool(_field(session, name, bool, where))
    fmt.check_auth_key(kw["auth_key"], where)
    if kw["server_address"] is not None:
        kw["server_address"] = fmt.check_address(kw["server_address"], where)
    return fmt.make_session_data(where, **kw)


def _peer_from_row(row: object, where: str) -> Peer:
    if type(row) is not list or len(row) not in (6, 7):
        raise SessionFormatError(f"{where}: a peer entry is not a 6- or 7-item list")
    peer_id, access_hash, kind, usernames, phone, updated = row[:6]
    name = row[6] if len(row) == 7 else None  # the display name: a 7th item when there is one
    if type(peer_id) is not int or type(access_hash) is not int:
        raise SessionFormatError(f"{where}: a peer's id or access hash is not an integer")
    if type(kind) is not str or not kind:
        raise SessionFormatError(f"{where}: peer {peer_id}: type is not a non-empty string")
    if type(usernames) is not list or not all(type(u) is str for u in usernames):
        raise SessionFormatError(f"{where}: peer {peer_id}: usernames is not a list of strings")
    if len(usernames) > MAX_USERNAMES:
        raise SessionFormatError(
            f"{where}: peer {peer_id}: {len(usernames)} usernames, more than {MAX_USERNAMES}"
        )
    if phone is not None and type(phone) is not str:
        raise SessionFormatError(f"{where}: peer {peer_id}: phone number is not a string")
    if updated is not None and type(updated) is not int:
        raise SessionFormatError(f"{where}: peer {peer_id}: last_update_on is not an integer")
    if not fmt.in_int64(peer_id, access_hash, updated):
        raise SessionFormatError(f"{where}: peer {peer_id}: a value exceeds 64 bits")
    if name is not None and type(name) is not str:
        raise SessionFormatError(f"{where}: peer {peer_id}: name is not a string")
    return Peer(peer_id, access_hash, SHARED_TYPES.get(kind, kind), tuple(usernames), phone, updated, name)


def _state_from_row(row: object, where: str) -> UpdateState:
    if type(row) is not list or len(row) != 5:
        raise SessionFormatError(f"{where}: an update state entry is not a 5-item list")
    if type(row[0]) is not int or any(v is not None and type(v) is not int for v in row[1:]):
        raise SessionFormatError(f"{where}: an update state holds a value that is not an integer")
    if not fmt.in_int64(*row):
        raise SessionFormatError(f"{where}: update state {row[0]}: a value exceeds 64 bits")
    return UpdateState(*row)


# ---------------------------------------------------------------------------------------------
# export


def export_string(
    snapshot: SessionSnapshot | SessionData,
    format: str,
    *,
    api_id: int | None = None,
    user_id: int | None = None,
    is_bot: bool | None = None,
) -> str:
    """Write ``snapshot`` as a session string of ``format`` (``"pyrogram"``, ``"telethon"``,
    ``"gramjs"``, ``"statekit"`` or ``"ferogram"``: URL-safe unpadded base64, what ferogram's
    ``StringSession`` reads).

    ``api_id``, ``user_id`` and ``is_bot``, when given, replace the snapshot's values. A Pyrogram
    string needs ``api_id`` and ``user_id``; Telethon, GramJS and ferogram strings need a server
    address and port (the data centre's default is used when the snapshot has none). Only the
    statekit and ferogram strings carry peers and update states. Raises ``ValueError`` when the
    target needs a field the snapshot lacks or cannot hold a value (naming it), or for an
    unknown format.
    """
    snap = fmt.to_snapshot(snapshot)
    data = fmt.apply_overrides(snap.data, api_id=api_id, user_id=user_id, is_bot=is_bot)
    if format == "pyrogram":
        return _export_pyrogram(data)
    if format == "telethon":
        return _export_telethon(data)
    if format == "gramjs":
        return _export_gramjs(data)
    if format == "statekit":
        return _export_statekit(SessionSnapshot(data, snap.peers, snap.update_states))
    if format == "ferogram":
        return fero.export_string(SessionSnapshot(data, snap.peers, snap.update_states))
    raise ValueError(f"unknown session string format {format!r}; expected one of {STRING_FORMATS}")


def _export_pyrogram(data: SessionData) -> str:
    target = "Pyrogram session string"
    fmt.require(data, target, "api_id", "user_id")
    fmt.check_range(data, target, "dc_id", 8)
    fmt.check_range(data, target, "api_id", 32)
    fmt.check_range(data, target, "user_id", 64)
    packed = _PYRO.pack(
        data.dc_id, data.api_id, data.test_mode, data.auth_key, data.user_id, data.is_bot
    )
    return base64.urlsafe_b64encode(packed).decode("ascii").rstrip("=")


def _export_telethon(data: SessionData) -> str:
    target = "Telethon session string"
    fmt.check_range(data, target, "dc_id", 8)
    address, port = fmt.telethon_address(data, target)
    try:
        ip = ipaddress.ip_address(address).packed
    except ValueError:
        raise ValueError(
            f"cannot write a {target}: server address {address!r} is not an IP address"
        ) from None
    if not 0 < port < 65536:
        raise ValueError(f"cannot write a {target}: port {port} is out of range")
    layout_struct = _TELE_V4 if len(ip) == 4 else _TELE_V6
    packed = layout_struct.pack(data.dc_id, ip, port, data.auth_key)
    return _VERSION_1 + base64.urlsafe_b64encode(packed).decode("ascii")


def _export_gramjs(data: SessionData) -> str:
    target = "GramJS session string"
    fmt.check_range(data, target, "dc_id", 8)
    address, port = fmt.telethon_address(data, target)
    if not 0 < port < 32768:  # GramJS writes the port as a signed 16-bit number
        raise ValueError(f"cannot write a {target}: port {port} is out of its range (1-32767)")
    problem = fmt.address_problem(address)
    if problem is not None:
        raise ValueError(f"cannot write a {target}: the server address {problem}")
    text = address.encode("ascii")
    packed = (
        _GRAMJS_HEAD.pack(data.dc_id, len(text)) + text + struct.pack(">H", port) + data.auth_key
    )
    return _VERSION_1 + base64.b64encode(packed).decode("ascii")


def _export_statekit(snap: SessionSnapshot) -> str:
    if len(snap.peers) > MAX_PEERS or len(snap.update_states) > MAX_UPDATE_STATES:
        raise ValueError(
            f"cannot write a statekit session string of more than {MAX_PEERS} peers or "
            f"{MAX_UPDATE_STATES} update states"
        )
    names = 0
    for peer in snap.peers:
        names += len(peer.usernames)
        if len(peer.usernames) > MAX_USERNAMES or names > MAX_USERNAMES_TOTAL:
            raise ValueError(
                f"cannot write a statekit session string: more than {MAX_USERNAMES} usernames "
                f"for peer {peer.id}, or more than {MAX_USERNAMES_TOTAL} in all"
            )
    payload = {
        "session": snap.data.to_dict(),
        "peers": [
            [p.id, p.access_hash, p.type, list(p.usernames), p.phone_number, p.last_update_on]
            + ([p.name] if p.name is not None else [])
            for p in snap.peers
        ],
        "update_states": [[u.id, u.pts, u.qts, u.date, u.seq] for u in snap.update_states],
    }
    try:
        packed = msgpack.packb(payload, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"cannot write a statekit session string: {exc}") from None
    body = base64.urlsafe_b64encode(zlib.compress(packed, 9)).decode("ascii").rstrip("=")
    return f"{_STATEKIT_PREFIX}{_STATEKIT_VERSION}:{body}"
