"""ferogram's binary session (its ``FileSession`` file, ``CustomSession`` blob and, in base64, its
string session): read versions 1-8, write version 8, and convert to and from the neutral record.

Layout (little-endian), as ferogram 0.5 reads and writes it:

* version byte 2-8 then ``i32`` home data centre; version 1 has no version byte (the blob starts
  with the home data centre, so a version-1 blob whose home data centre is 2-8 cannot exist).
* ``u8`` number of data centres, each: ``i32`` id, ``u8`` has-key (0/1) [+ 256-byte auth key],
  ``i64`` first salt, ``i32`` time offset, ``u8`` address length + address (``"ip:port"`` or
  ``"[ipv6]:port"``), from version 3 ``u8`` flags (bit 0 IPv6, 1 media-only, 2 TCPO, 3 CDN,
  4 static).
* from version 2: ``i32`` pts, qts, date, seq; ``u16`` number of channels, each ``i64`` channel
  id + ``i32`` pts; ``u16`` number of peers, each ``i64`` bare id, ``i64`` access hash, ``u8``
  type (0 user, 1 channel, 2 basic group from 5), from 6 ``u8`` channel kind (0 broadcast,
  1 megagroup, 2 gigagroup, 255 unknown), from 8 ``u8`` community flag.
* from version 4: ``u16`` number of min-peers, each ``i64`` user id, ``i64`` peer id, ``i32``
  message id. From version 7: ``u8`` has-token (0/1) [+ ``u16`` length + future auth token].

Every count and length is checked against the bytes that remain before anything is allocated;
anything else is a ``SessionFormatError`` that never shows key material.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass, field, replace

from statekit.errors import SessionFormatError
from statekit.session import _formats as fmt
from statekit.session.records import AUTH_KEY_SIZE, Peer, SessionData, SessionSnapshot, UpdateState

__all__ = [
    "CURRENT_VERSION",
    "FerogramDc",
    "FerogramPeer",
    "FerogramSession",
    "build_blob",
    "export_string",
    "ferogram_peer",
    "from_snapshot",
    "import_blob",
    "import_string",
    "is_string_candidate",
    "join_address",
    "neutral_peer",
    "parse_blob",
    "parse_string",
    "split_address",
    "to_snapshot",
]

CURRENT_VERSION = 8
FLAG_IPV6 = 1
KIND_UNKNOWN = 0xFF
_CHANNEL_ZERO = 1_000_000_000_000
_I32 = (-(1 << 31), (1 << 31) - 1)
_I64 = (-(1 << 63), (1 << 63) - 1)

# fixed part of one data-centre entry without its key and address: id, has-key, salt, offset,
# address length (+ flags from version 3)
_DC_MIN = 4 + 1 + 8 + 4 + 1
_CHANNEL_SIZE = 12
_MIN_PEER_SIZE = 20
_ADDRESS = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[0-9A-Za-z.\-]+)):(?P<port>[0-9]{1,5})"
)
# the shortest string that can hold a session with an auth key: one data centre with a key
_MIN_STRING_BYTES = 1 + 4 + 1 + _DC_MIN + AUTH_KEY_SIZE
_B64_STD = re.compile(r"[A-Za-z0-9+/]*")
_B64_URL = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(slots=True)
class FerogramDc:
    """One data-centre entry: its id, ``"ip:port"`` address, auth key (or None), first salt,
    time offset and flags. ``repr`` never shows the key."""

    dc_id: int
    address: str
    auth_key: bytes | None = field(default=None, repr=False)
    first_salt: int = 0
    time_offset: int = 0
    flags: int = 0


@dataclass(slots=True)
class FerogramPeer:
    """One cached peer as ferogram keeps it: bare id, access hash, type (0 user, 1 channel,
    2 basic group), channel kind (0 broadcast, 1 megagroup, 2 gigagroup, None unknown) and the
    community flag."""

    id: int
    access_hash: int
    type: int = 0
    channel_kind: int | None = None
    community: bool = False


@dataclass(slots=True)
class FerogramSession:
    """Everything a ferogram session blob holds (``repr`` never shows keys or the token)."""

    home_dc_id: int
    dcs: list[FerogramDc] = field(default_factory=list)
    pts: int = 0
    qts: int = 0
    date: int = 0
    seq: int = 0
    channels: list[tuple[int, int]] = field(default_factory=list)
    peers: list[FerogramPeer] = field(default_factory=list)
    min_peers: list[tuple[int, int, int]] = field(default_factory=list)
    future_auth_token: bytes | None = field(default=None, repr=False)
    version: int = CURRENT_VERSION


# ---------------------------------------------------------------------------------------------
# the binary blob


class _Reader:
    """Bounded little-endian reads over ``data``; every overrun is a ``SessionFormatError``."""

    __slots__ = ("data", "pos", "where")

    def __init__(self, data: bytes, where: str) -> None:
        self.data = data
        self.pos = 0
        self.where = where

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.left():
            raise SessionFormatError(
                f"{self.where}: truncated: {what} needs {n} bytes at offset {self.pos}, "
                f"{self.left()} left"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, spec: str, what: str) -> tuple[int, ...]:
        s = struct.Struct("<" + spec)
        return s.unpack(self.take(s.size, what))

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def count(self, spec: str, item_size: int, what: str) -> int:
        """A count (``B`` or ``H``) of items of at least ``item_size`` bytes each, checked
        against what remains."""
        (n,) = self.unpack(spec, f"number of {what}")
        if n * item_size > self.left():
            raise SessionFormatError(
                f"{self.where}: {n} {what} need at least {n * item_size} bytes, only "
                f"{self.left()} left (oversized count or truncated)"
            )
        return n

    def flag(self, what: str) -> bool:
        value = self.u8(what)
        if value not in (0, 1):
            raise SessionFormatError(
                f"{self.where}: {what} byte is {value} at offset {self.pos - 1}, expected 0 or 1"
            )
        return bool(value)


def _version_of(data: bytes, where: str) -> int:
    if not data:
        raise SessionFormatError(f"{where} is empty")
    first = data[0]
    return first if 2 <= first <= CURRENT_VERSION else 1


def parse_blob(data: bytes, where: str = "ferogram session") -> FerogramSession:
    """Parse a ferogram session blob of version 1-8 (see the module docstring).

    Raises ``SessionFormatError`` for anything that is not exactly one such blob: truncated, a
    count or length past the end, a flag byte other than 0/1, an unknown peer type or channel
    kind, an address that is not ``host:port``, or bytes left over.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"a ferogram session blob must be bytes, not {type(data).__name__}")
    data = bytes(data)
    version = _version_of(data, where)
    r = _Reader(data, where)
    if version == 1:
        (home,) = r.unpack("i", "home data centre")
        if not 0 < home < 1000:
            raise SessionFormatError(
                f"{where}: first byte {data[0]} is no version 2-{CURRENT_VERSION}, and as a "
                f"version-1 blob its home data centre would be {home}"
            )
    else:
        r.take(1, "version")
        (home,) = r.unpack("i", "home data centre")
    session = FerogramSession(home_dc_id=home, version=version)
    dc_min = _DC_MIN + (1 if version >= 3 else 0)
    for i in range(r.count("B", dc_min, "data centres")):
        what = f"data centre entry {i}"
        (dc_id,) = r.unpack("i", f"{what} id")
        key = r.take(AUTH_KEY_SIZE, f"{what} auth key") if r.flag(f"{what} has-key") else None
        salt, offset = r.unpack("qi", f"{what} salt and time offset")
        length = r.u8(f"{what} address length")
        raw_address = r.take(length, f"{what} address")
        try:
            address = raw_address.decode("utf-8")
        except UnicodeDecodeError:
            raise SessionFormatError(f"{where}: {what} address is not UTF-8") from None
        if not _ADDRESS.fullmatch(address):
            raise SessionFormatError(
                f"{where}: {what} address {address[:60]!r} is not host:port"
            )
        flags = r.u8(f"{what} flags") if version >= 3 else 0
        session.dcs.append(FerogramDc(dc_id, address, key, salt, offset, flags))
    if version >= 2:
        session.pts, session.qts, session.date, session.seq = r.unpack("iiii", "update state")
        n = r.count("H", _CHANNEL_SIZE, "channels")
        session.channels = list(struct.iter_unpack("<qi", r.take(n * _CHANNEL_SIZE, "channels")))
        _read_peers(r, session, version)
        if version >= 4:
            n = r.count("H", _MIN_PEER_SIZE, "min-peers")
            chunk = r.take(n * _MIN_PEER_SIZE, "min-peers")
            session.min_peers = list(struct.iter_unpack("<qqi", chunk))
        if version >= 7 and r.flag("future auth token presence"):
            (length,) = r.unpack("H", "future auth token length")
            session.future_auth_token = r.take(length, "future auth token")
    if r.left():
        raise SessionFormatError(
            f"{where}: {r.left()} unexpected bytes after the version-{version} session"
        )
    return session


def _read_peers(r: _Reader, session: FerogramSession, version: int) -> None:
    """The peers of a version-2+ blob: one fixed-size record each, read in one slice."""
    layout = "<qqB" + ("B" if version >= 6 else "") + ("B" if version >= 8 else "")
    size = struct.calcsize(layout)
    n = r.count("H", size, "peers")
    max_type = 2 if version >= 5 else 1
    kinds = (0, 1, 2, KIND_UNKNOWN)
    where = r.where
    peers = session.peers
    for item in struct.iter_unpack(layout, r.take(n * size, "peers")):
        pid, access_hash, kind = item[0], item[1], item[2]
        if kind > max_type:
            raise SessionFormatError(f"{where}: peer {pid} has unknown type byte {kind}")
        channel_kind: int | None = None
        if version >= 6:
            raw_kind = item[3]
            if raw_kind not in kinds:
                raise SessionFormatError(f"{where}: peer {pid} has unknown channel kind {raw_kind}")
            channel_kind = None if raw_kind == KIND_UNKNOWN else raw_kind
        community = False
        if version >= 8:
            if item[4] > 1:
                raise SessionFormatError(
                    f"{where}: peer {pid} community byte is {item[4]}, expected 0 or 1"
                )
            community = item[4] == 1
        peers.append(FerogramPeer(pid, access_hash, kind, channel_kind, community))


def _check(value: int, bounds: tuple[int, int], what: str) -> None:
    if type(value) is not int or not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"cannot write a ferogram session: {what} {value!r} is out of range")


def build_blob(session: FerogramSession) -> bytes:
    """Serialise ``session`` as a version-8 blob (what ferogram 0.5 writes).

    Raises ``ValueError`` naming a value that does not fit its field (more than 255 data
    centres, 65535 channels / peers / min-peers, an address over 255 bytes, a number out of
    range, an auth key that is not 256 bytes).
    """
    out = bytearray([CURRENT_VERSION])
    _check(session.home_dc_id, _I32, "home data centre")
    out += struct.pack("<i", session.home_dc_id)
    if len(session.dcs) > 255:
        raise ValueError("cannot write a ferogram session: more than 255 data centres")
    out.append(len(session.dcs))
    for dc in session.dcs:
        _check(dc.dc_id, _I32, "data centre id")
        _check(dc.first_salt, _I64, "first salt")
        _check(dc.time_offset, _I32, "time offset")
        _check(dc.flags, (0, 255), "data centre flags")
        out += struct.pack("<i", dc.dc_id)
        if dc.auth_key is None:
            out.append(0)
        else:
            if len(dc.auth_key) != AUTH_KEY_SIZE:
                raise ValueError(
                    f"cannot write a ferogram session: data centre {dc.dc_id} auth key is "
                    f"{len(dc.auth_key)} bytes, expected {AUTH_KEY_SIZE}"
                )
            out += b"\x01" + dc.auth_key
        address = dc.address.encode("utf-8")
        if len(address) > 255:
            raise ValueError("cannot write a ferogram session: an address is over 255 bytes")
        out += struct.pack("<qiB", dc.first_salt, dc.time_offset, len(address)) + address
        out.append(dc.flags)
    for name in ("pts", "qts", "date", "seq"):
        _check(getattr(session, name), _I32, name)
    out += struct.pack("<iiii", session.pts, session.qts, session.date, session.seq)
    for items, what in (
        (session.channels, "channels"),
        (session.peers, "peers"),
        (session.min_peers, "min-peers"),
    ):
        if len(items) > 0xFFFF:
            raise ValueError(f"cannot write a ferogram session: more than 65535 {what}")
    out += struct.pack("<H", len(session.channels))
    for cid, cpts in session.channels:
        _check(cid, _I64, "channel id")
        _check(cpts, _I32, "channel pts")
        out += struct.pack("<qi", cid, cpts)
    out += struct.pack("<H", len(session.peers))
    for p in session.peers:
        _check(p.id, _I64, "peer id")
        _check(p.access_hash, _I64, "access hash")
        _check(p.type, (0, 2), "peer type")
        kind = KIND_UNKNOWN if p.channel_kind is None else p.channel_kind
        _check(kind, (0, 255), "channel kind")
        out += struct.pack("<qqBBB", p.id, p.access_hash, p.type, kind, 1 if p.community else 0)
    out += struct.pack("<H", len(session.min_peers))
    for uid, peer_id, msg_id in session.min_peers:
        _check(uid, _I64, "min-peer user id")
        _check(peer_id, _I64, "min-peer peer id")
        _check(msg_id, _I32, "min-peer message id")
        out += struct.pack("<qqi", uid, peer_id, msg_id)
    token = session.future_auth_token
    if token is None:
        out.append(0)
    else:
        if len(token) > 0xFFFF:
            raise ValueError("cannot write a ferogram session: future auth token over 65535 bytes")
        out += b"\x01" + struct.pack("<H", len(token)) + token
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# the neutral record


def split_address(address: str, where: str) -> tuple[str, int]:
    """``"ip:port"`` / ``"[ipv6]:port"`` as ``(host, port)``; ``SessionFormatError`` if not."""
    m = _ADDRESS.fullmatch(address)
    port = int(m.group("port")) if m else 0
    if m is None or not 0 < port < 65536:
        raise SessionFormatError(f"{where}: address {address[:60]!r} is not host:port")
    return m.group("v6") or m.group("host"), port


def join_address(host: str, port: int) -> str:
    """``(host, port)`` as ferogram stores it (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _home_entry(session: FerogramSession, where: str) -> FerogramDc:
    keyed = [dc for dc in session.dcs if dc.auth_key is not None]
    home = [dc for dc in keyed if dc.dc_id == session.home_dc_id]
    if not home and session.home_dc_id == 0 and len({dc.dc_id for dc in keyed}) == 1:
        home = keyed  # no home data centre recorded yet, but only one holds a key
    if not home:
        raise SessionFormatError(
            f"{where} holds no auth key for its home data centre {session.home_dc_id} "
            "(the session was never logged in)"
        )
    home.sort(key=lambda dc: dc.flags & FLAG_IPV6)  # IPv4 first, as ferogram prefers by default
    return home[0]


def neutral_peer(p: FerogramPeer) -> Peer | None:
    """The neutral record of one ferogram peer (Bot-API id), or None for an id it cannot be."""
    if p.id <= 0:
        return None
    if p.type == 2:
        return Peer(-p.id, 0, "group")
    if p.community:
        return Peer(-_CHANNEL_ZERO - p.id, p.access_hash, "community")
    if p.type == 1:
        kind = "supergroup" if p.channel_kind in (1, 2) else "channel"
        return Peer(-_CHANNEL_ZERO - p.id, p.access_hash, kind)
    return Peer(p.id, p.access_hash, "user")


def to_snapshot(
    session: FerogramSession, where: str = "ferogram session", *, with_peers: bool = True
) -> SessionSnapshot:
    """The neutral record of a ferogram session: the home data centre's key and address, peers
    with Bot-API ids, update states (box 0 and one per channel, under its Bot-API id).

    ferogram does not store ``api_id``, ``user_id``, ``is_bot`` or a date: they are None /
    False. ``test_mode`` is True when the address is one of Telegram's test data centres.
    Raises ``SessionFormatError`` if there is no auth key for the home data centre.
    ``with_peers=False`` leaves the peers out.
    """
    home = _home_entry(session, where)
    key = fmt.check_auth_key(home.auth_key, where)
    host, port = split_address(home.address, where)
    data = fmt.make_session_data(
        where,
        dc_id=home.dc_id,
        auth_key=key,
        server_address=host,
        port=port,
        test_mode=fmt.is_test_host(host),
    )
    peers = [p for p in map(neutral_peer, session.peers) if p is not None] if with_peers else []
    peers.sort(key=lambda p: p.id)  # as the other file readers give them
    states: list[UpdateState] = []
    if any((session.pts, session.qts, session.date, session.seq)):
        states.append(UpdateState(0, session.pts, session.qts, session.date, session.seq))
    for cid, cpts in session.channels:
        if cid > 0:
            states.append(UpdateState(fmt.channel_box_from_raw(cid), pts=cpts))
    states.sort(key=lambda s: s.id)
    return SessionSnapshot(data, peers, states)


def ferogram_peer(peer: Peer, base: dict[int, FerogramPeer] | None = None) -> FerogramPeer | None:
    """``peer`` as ferogram keeps it (None for an id it cannot hold); a channel kind recorded
    in ``base`` (bare id -> peer) is kept when it agrees with the neutral type."""
    if peer.id > 0:
        return FerogramPeer(peer.id, peer.access_hash, 0)
    if peer.id <= -_CHANNEL_ZERO:
        bare = -_CHANNEL_ZERO - peer.id
        if bare <= 0:
            return None
        if peer.type == "community":
            return FerogramPeer(bare, peer.access_hash, 0, None, True)
        kind: int | None = 1 if peer.type in ("supergroup", "forum") else None
        known = base.get(bare) if base else None
        if known is not None and known.type == 1 and not known.community:
            # keep the kind ferogram recorded when it agrees with the neutral type
            if (known.channel_kind in (1, 2)) == (kind == 1):
                kind = known.channel_kind
        return FerogramPeer(bare, peer.access_hash, 1, kind)
    if peer.id < 0:
        return FerogramPeer(-peer.id, 0, 2)
    return None


def from_snapshot(
    snapshot: SessionSnapshot | SessionData, base: FerogramSession | None = None
) -> FerogramSession:
    """A ferogram session holding ``snapshot``: its key as the home data centre (address from
    the snapshot, else the data centre's default), its peers and update states.

    ``base``: a ferogram session this one replaces; what the neutral record cannot hold (other
    data centres, the home entry's salt, time offset and flags, min-peers, the future auth
    token, channel kinds) is taken from it. Raises ``ValueError`` when there is no address for
    the data centre or a value does not fit.
    """
    snap = fmt.to_snapshot(snapshot)
    d = snap.data
    host, port = fmt.telethon_address(d, "ferogram session")
    address = join_address(host, port)
    flags = FLAG_IPV6 if ":" in host else 0
    home = FerogramDc(d.dc_id, address, d.auth_key, 0, 0, flags)
    dcs: list[FerogramDc] = []
    min_peers: list[tuple[int, int, int]] = []
    token: bytes | None = None
    known: dict[int, FerogramPeer] = {}
    if base is not None:
        for dc in base.dcs:
            same_family = (dc.flags & FLAG_IPV6) == flags
            if dc.dc_id == d.dc_id and same_family:
                if dc.auth_key == d.auth_key:  # salt and offset belong to that key
                    home = replace(dc, address=address)
            else:
                dcs.append(dc)
        min_peers = list(base.min_peers)
        token = base.future_auth_token
        known = {p.id: p for p in base.peers}
    dcs.insert(0, home)
    peers: dict[int, FerogramPeer] = {}
    for peer in snap.peers:
        converted = ferogram_peer(peer, known)
        if converted is not None:
            peers[converted.id] = converted
    out = FerogramSession(
        home_dc_id=d.dc_id,
        dcs=dcs,
        peers=list(peers.values()),
        min_peers=min_peers,
        future_auth_token=token,
    )
    for state in snap.update_states:
        if state.id == 0:
            out.pts, out.qts = state.pts or 0, state.qts or 0
            out.date, out.seq = state.date or 0, state.seq or 0
        elif state.id <= -_CHANNEL_ZERO:
            out.channels.append((fmt.channel_box_to_raw(state.id), state.pts or 0))
    return out


# ---------------------------------------------------------------------------------------------
# files and strings


def import_blob(data: bytes, where: str = "ferogram session") -> SessionSnapshot:
    """:func:`parse_blob` then :func:`to_snapshot`."""
    return to_snapshot(parse_blob(data, where), where)


def is_string_candidate(body: str) -> bool:
    """True if ``body`` (stripped, without padding) could be a ferogram string: its first
    character encodes a version byte 1-8 (``A``-``C``) and it is longer than every other
    format's fixed-length string."""
    return body[:1] in ("A", "B", "C") and len(body) * 3 // 4 >= _MIN_STRING_BYTES


def parse_string(text: str, where: str = "ferogram session string") -> FerogramSession:
    """Decode a ferogram string session: URL-safe base64 without padding (what ferogram's
    ``StringSession`` reads) or standard base64 with padding (what its
    ``export_session_string()`` writes); either alphabet, padding optional but exact.

    Raises ``SessionFormatError`` (the string never shown) if it is not base64 of a ferogram
    session blob.
    """
    s = text.strip()
    body = s.rstrip("=")
    padding = len(s) - len(body)
    if _B64_URL.fullmatch(body):
        alphabet = "url"
    elif _B64_STD.fullmatch(body):
        alphabet = "std"
    else:
        bad = next(
            (i for i, c in enumerate(body) if not (_B64_URL.fullmatch(c) or c in "+/")), None
        )
        if bad is None:
            raise SessionFormatError(
                f"{where} of {len(s)} characters mixes the standard ('+', '/') and URL-safe "
                "('-', '_') base64 alphabets"
            )
        raise SessionFormatError(
            f"{where}: character {body[bad]!r} at position {bad} is not base64"
        )
    needed = -len(body) % 4
    if needed == 3 or padding not in (0, needed):
        raise SessionFormatError(
            f"{where} of {len(s)} characters has a length or padding base64 does not allow"
        )
    try:
        decode = base64.urlsafe_b64decode if alphabet == "url" else base64.standard_b64decode
        raw = decode(body + "=" * needed)
    except (binascii.Error, ValueError):
        raise SessionFormatError(f"{where} is not valid base64") from None
    encode = base64.urlsafe_b64encode if alphabet == "url" else base64.standard_b64encode
    if encode(raw).decode("ascii").rstrip("=") != body:
        raise SessionFormatError(f"{where}: not canonical base64 (the last character was altered)")
    return parse_blob(raw, where)


def import_string(text: str) -> SessionSnapshot:
    """:func:`parse_string` then :func:`to_snapshot`."""
    where = "ferogram session string"
    return to_snapshot(parse_string(text, where), where)


def export_string(snapshot: SessionSnapshot | SessionData) -> str:
    """A ferogram string session of ``snapshot``: URL-safe base64 without padding of a
    version-8 blob, which ferogram's ``StringSession`` loads. Raises ``ValueError`` like
    :func:`from_snapshot` / :func:`build_blob`."""
    blob = build_blob(from_snapshot(snapshot))
    return base64.urlsafe_b64encode(blob).decode("ascii").rstrip("=")

