"""Session strings: read and write the Pyrogram family's, Telethon's and statekit's own.

Layouts (all URL-safe base64):

* Pyrogram family, current: ``>BI?256sQ?`` (dc_id, api_id, test_mode, auth_key, user_id, is_bot),
  362 characters without padding. Older layouts, read only: ``>B?256sI?`` (351 characters, 32-bit
  user id) and ``>B?256sQ?`` (356 characters), without api_id.
* Telethon: ``'1'`` + base64 of ``>B4sH256s`` (IPv4, 352 characters) or ``>B16sH256s`` (IPv6,
  368 characters): dc_id, packed address, port, auth_key.
* statekit: ``'sk1:'`` + base64 (no padding) of zlib-compressed msgpack holding the session
  data, the peers and the update states.

:func:`import_string` detects which one it is given; anything else raises ``SessionFormatError``
saying which formats were tried and the length seen, never showing the string itself.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import struct
import zlib
from typing import Any, Final, Literal

import msgpack

from statekit.errors import SessionFormatError
from statekit.session import _ferogram as fero
from statekit.session import _formats as fmt
from statekit.session.records import Peer, SessionData, SessionSnapshot, UpdateState

__all__ = ["STRING_FORMATS", "StringFormat", "export_string", "import_string"]

StringFormat = Literal["pyrogram", "telethon", "statekit", "ferogram"]
STRING_FORMATS: Final[tuple[str, ...]] = ("pyrogram", "telethon", "statekit", "ferogram")

_PYRO = struct.Struct(">BI?256sQ?")
_PYRO_OLD32 = struct.Struct(">B?256sI?")
_PYRO_OLD64 = struct.Struct(">B?256sQ?")
_TELE_V4 = struct.Struct(">B4sH256s")
_TELE_V6 = struct.Struct(">B16sH256s")
_TELETHON_VERSION = "1"
_STATEKIT_PREFIX = "sk"
_STATEKIT_VERSION = 1
_STATEKIT_MAX_PAYLOAD = 128 * 1024 * 1024  # decompressed bytes; a guard against zip bombs

_B64_BODY = re.compile(r"[A-Za-z0-9_-]*")
_STATEKIT_HEAD = re.compile(r"sk([0-9]{1,6}):")


def _b64_len(size: int) -> int:
    """Characters of unpadded base64 for ``size`` bytes."""
    return (size * 4 + 2) // 3


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


def _padded(n: int) -> int:
    return n + (-n % 4)


_TRIED = (
    f"tried statekit ('sk1:' prefix), Pyrogram family ({_b64_len(_PYRO.size)} characters; older layouts {_b64_len(_PYRO_OLD32.size)} and {_b64_len(_PYRO_OLD64.size)}), "
    f"Telethon ('1' followed by {_padded(_b64_len(_TELE_V4.size))} or {_padded(_b64_len(_TELE_V6.size))} characters), "
    "ferogram ('A'-'C' followed by 373 or more characters)"
)


# ---------------------------------------------------------------------------------------------
# import


def import_string(text: str | bytes) -> SessionSnapshot:
    """Read a Pyrogram-family, Telethon, statekit or ferogram session string (detected).

    Surrounding whitespace is ignored; base64 padding is optional. Returns a snapshot (peers and
    update states only from statekit and ferogram strings). Raises ``SessionFormatError``
    (saying which formats were tried and the length seen) for anything else; ``TypeError`` if
    ``text`` is not a string.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise SessionFormatError(
                f"session string of {len(text)} bytes is not ASCII; {_TRIED}"
            ) from None
    if not isinstance(text, str):
        raise TypeError(f"a session string must be str, got {type(text).__name__}")
    s = text.strip()
    if not s:
        raise SessionFormatError(f"empty session string; {_TRIED}")
    head = _STATEKIT_HEAD.match(s)
    if head is not None:
        return _import_statekit(s, int(head.group(1)), head.end())
    if s.startswith(_STATEKIT_PREFIX) and ":" in s[:9]:
        raise SessionFormatError("statekit session string with a malformed version prefix")

    body = s.rstrip("=")
    padding = len(s) - len(body)
    if not body:
        raise SessionFormatError(f"session string of {len(s)} characters holds only padding")
    if len(body) in _PYRO_LAYOUTS:
        layout, layout_struct = _PYRO_LAYOUTS[len(body)]
        raw = _decode_b64(body, padding, f"Pyrogram-family session string ({layout} layout)")
        return SessionSnapshot(_read_pyrogram(raw, layout_struct, layout))
    if body[0] == _TELETHON_VERSION and len(body) - 1 in _TELE_LAYOUTS:
        layout_struct = _TELE_LAYOUTS[len(body) - 1]
        raw = _decode_b64(body[1:], padding, "Telethon session string")
        return SessionSnapshot(_read_telethon(raw, layout_struct))
    if fero.is_string_candidate(body):
        return fero.import_string(s)
    if body[0] != _TELETHON_VERSION and len(body) - 1 in _TELE_LAYOUTS:
        raise SessionFormatError(
            f"session string of {len(s)} characters has a Telethon length but starts with "
            f"{body[0]!r} instead of Telethon's version '1'"
        )
    raise SessionFormatError(
        f"session string of {len(s)} characters matches no known format; {_TRIED}"
    )


def _decode_b64(body: str, padding: int, what: str) -> bytes:
    """Decode unpadded URL-safe base64 strictly: alphabet, padding and canonical trailing bits."""
    if not _B64_BODY.fullmatch(body):
        bad = next(i for i, c in enumerate(body) if not _B64_BODY.fullmatch(c))
        hint = " (standard base64; expected URL-safe '-' and '_')" if body[bad] in "+/" else ""
        raise SessionFormatError(
            f"{what}: character {body[bad]!r} at position {bad} is outside the URL-safe base64 "
            f"alphabet{hint}"
        )
    needed = -len(body) % 4
    if padding not in (0, needed):
        raise SessionFormatError(
            f"{what}: {padding} padding characters, expected {needed} (or none)"
        )
    try:
        raw = base64.urlsafe_b64decode(body + "=" * needed)
    except (binascii.Error, ValueError) as exc:
        raise SessionFormatError(f"{what}: not valid base64 ({exc})") from None
    if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != body:
        raise SessionFormatError(f"{what}: not canonical base64 (the last character was altered)")
    return raw


def _flag(value: int, name: str, where: str) -> bool:
    if value not in (0, 1):
        raise SessionFormatError(f"{where}: {name} byte is {value}, expected 0 or 1")
    return bool(value)


def _read_pyrogram(raw: bytes, layout_struct: struct.Struct, layout: str) -> SessionData:
    where = f"Pyrogram-family session string ({layout} layout)"
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
    return fmt.make_session_data(
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


def _read_telethon(raw: bytes, layout_struct: struct.Struct) -> SessionData:
    where = f"Telethon session string (IPv{4 if layout_struct is _TELE_V4 else 6})"
    dc_id, ip, port, auth_key = layout_struct.unpack(raw)
    fmt.check_auth_key(auth_key, where)
    address = ipaddress.ip_address(ip).compressed
    return fmt.make_session_data(
        where,
        dc_id=dc_id,
        auth_key=auth_key,
        server_address=address,
        port=port,
        test_mode=fmt.is_test_host(address),
    )


def _import_statekit(s: str, version: int, start: int) -> SessionSnapshot:
    where = "statekit session string"
    if version != _STATEKIT_VERSION:
        newer = "newer than" if version > _STATEKIT_VERSION else "not"
        raise SessionFormatError(
            f"{where} has version {version}, {newer} the version this statekit reads "
            f"({_STATEKIT_VERSION})"
        )
    body = s[start:]
    stripped = body.rstrip("=")
    if not stripped:
        raise SessionFormatError(f"{where} of {len(s)} characters is empty after its prefix")
    if len(stripped) % 4 == 1:
        raise SessionFormatError(
            f"{where}: {len(s)} characters is not a possible length (truncated?)"
        )
    compressed = _decode_b64(stripped, len(body) - len(stripped), where)
    inflater = zlib.decompressobj()
    try:
        packed = inflater.decompress(compressed, _STATEKIT_MAX_PAYLOAD)
    except zlib.error as exc:
        raise SessionFormatError(f"{where}: damaged or truncated ({exc})") from None
    if inflater.unconsumed_tail:
        raise SessionFormatError(f"{where}: payload exceeds {_STATEKIT_MAX_PAYLOAD} bytes")
    if not inflater.eof:
        raise SessionFormatError(f"{where}: truncated (compressed stream does not end)")
    if inflater.unused_data:
        raise SessionFormatError(f"{where}: {len(inflater.unused_data)} unexpected trailing bytes")
    try:
        payload = msgpack.unpackb(packed, raw=False, strict_map_key=True)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise SessionFormatError(
            f"{where}: payload is not msgpack ({type(exc).__name__})"
        ) from None
    return _snapshot_from_payload(payload, where)


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


def _snapshot_from_payload(payload: object, where: str) -> SessionSnapshot:
    if not isinstance(payload, dict):
        raise SessionFormatError(f"{where}: payload is a {type(payload).__name__}, expected a map")
    session = payload.get("session")
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
    if not fmt.in_int64(kw["port"], kw["api_id"], kw["date"], kw["user_id"]):
        raise SessionFormatError(f"{where}: a session field exceeds 64 bits")
    data = fmt.make_session_data(where, **kw)

    peers_raw = payload.get("peers", [])
    states_raw = payload.get("update_states", [])
    if not isinstance(peers_raw, list) or not isinstance(states_raw, list):
        raise SessionFormatError(f"{where}: peers and update_states must be lists")
    peers = [_peer_from_row(row, where) for row in peers_raw]
    states = [_state_from_row(row, where) for row in states_raw]
    return SessionSnapshot(data, peers, states)


def _peer_from_row(row: object, where: str) -> Peer:
    if not isinstance(row, list) or len(row) != 6:
        raise SessionFormatError(f"{where}: a peer entry is not a 6-item list")
    peer_id, access_hash, kind, usernames, phone, updated = row
    if type(peer_id) is not int or type(access_hash) is not int:
        raise SessionFormatError(f"{where}: a peer's id or access hash is not an integer")
    if type(kind) is not str:
        raise SessionFormatError(f"{where}: peer {peer_id}: type is not a string")
    if not isinstance(usernames, list) or not all(type(u) is str for u in usernames):
        raise SessionFormatError(f"{where}: peer {peer_id}: usernames is not a list of strings")
    if phone is not None and type(phone) is not str:
        raise SessionFormatError(f"{where}: peer {peer_id}: phone number is not a string")
    if updated is not None and type(updated) is not int:
        raise SessionFormatError(f"{where}: peer {peer_id}: last_update_on is not an integer")
    if not fmt.in_int64(peer_id, access_hash, updated):
        raise SessionFormatError(f"{where}: peer {peer_id}: a value exceeds 64 bits")
    return Peer(peer_id, access_hash, kind, tuple(usernames), phone, updated)


def _state_from_row(row: object, where: str) -> UpdateState:
    if not isinstance(row, list) or len(row) != 5:
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
    ``"statekit"`` or ``"ferogram"``: URL-safe unpadded base64, what ferogram's ``StringSession``
    reads).

    ``api_id``, ``user_id`` and ``is_bot``, when given, replace the snapshot's values. A Pyrogram
    string needs ``api_id`` and ``user_id``; a Telethon string needs a server address and port
    (the data centre's default is used when the snapshot has none; so does a ferogram string).
    Only the statekit and ferogram strings carry peers and update states. Raises ``ValueError``
    when the target needs a field the snapshot lacks (naming it) or for an unknown format.
    """
    snap = fmt.to_snapshot(snapshot)
    data = fmt.apply_overrides(snap.data, api_id=api_id, user_id=user_id, is_bot=is_bot)
    if format == "pyrogram":
        return _export_pyrogram(data)
    if format == "telethon":
        return _export_telethon(data)
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
    if not 0 <= port < 65536:
        raise ValueError(f"cannot write a {target}: port {port} is out of range")
    layout_struct = _TELE_V4 if len(ip) == 4 else _TELE_V6
    packed = layout_struct.pack(data.dc_id, ip, port, data.auth_key)
    return _TELETHON_VERSION + base64.urlsafe_b64encode(packed).decode("ascii")


def _export_statekit(snap: SessionSnapshot) -> str:
    payload = {
        "session": snap.data.to_dict(),
        "peers": [
            [p.id, p.access_hash, p.type, list(p.usernames), p.phone_number, p.last_update_on]
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
