"""Shared by the session string and file codecs: data-centre tables, peer id forms, the checks
a conversion target makes, and the checks every value read from a foreign source goes through."""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import math
import os
import re
from pathlib import Path
from typing import Final

from statekit.errors import SessionFormatError
from statekit.session.records import AUTH_KEY_SIZE, SessionData, SessionSnapshot

__all__ = [
    "publish_file",
    "MAX_PEERS",
    "MAX_UPDATE_STATES",
    "MAX_USERNAMES",
    "MAX_USERNAMES_TOTAL",
    "PROD_ADDRESSES",
    "TEST_ADDRESSES",
    "apply_overrides",
    "channel_box_from_raw",
    "channel_box_to_raw",
    "address_problem",
    "check_address",
    "check_auth_key",
    "check_range",
    "in_int64",
    "default_address",
    "is_test_host",
    "make_session_data",
    "read_int",
    "read_required_int",
    "telethon_address",
    "require",
    "to_snapshot",
]

MAX_PEERS: Final = 1 << 20
"""Peers a session string or file may hold (1,048,576: the largest real case is a million)."""
MAX_UPDATE_STATES: Final = 1 << 16
"""Update states a session may hold (one per channel; a client is in at most 1,000)."""
MAX_USERNAMES: Final = 256
"""Usernames one peer may have."""
MAX_USERNAMES_TOTAL: Final = 1 << 22
"""Usernames all peers of a session may have together (four per peer of a million)."""

# Telegram's data-centre addresses as the Pyrogram family fills them in when a session string or
# an old file carries only the data-centre number (port 443 in production, 80 on test servers).
PROD_ADDRESSES: dict[int, str] = {
    1: "149.154.175.53",
    2: "149.154.167.51",
    3: "149.154.175.100",
    4: "149.154.167.91",
    5: "91.108.56.130",
    203: "91.105.192.100",
}
TEST_ADDRESSES: dict[int, str] = {1: "149.154.175.10", 2: "149.154.167.40", 3: "149.154.175.117"}
# Addresses that mean "test servers" when a format (Telethon) does not store test_mode itself.
_TEST_HOSTS = frozenset(
    {
        *TEST_ADDRESSES.values(),
        "2001:b28:f23d:f001::e",
        "2001:67c:4e8:f002::e",
        "2001:b28:f23d:f003::e",
    }
)
PROD_PORT = 443
TEST_PORT = 80

# Bot-API ids of channels are -(10**12 + raw channel id).
_CHANNEL_ZERO = -1_000_000_000_000


def default_address(dc_id: int, test_mode: bool) -> tuple[str, int] | None:
    """The (address, port) the Pyrogram family uses for a data centre, or None if unknown."""
    table = TEST_ADDRESSES if test_mode else PROD_ADDRESSES
    address = table.get(dc_id)
    if address is None:
        return None
    return address, TEST_PORT if test_mode else PROD_PORT


def telethon_address(data: SessionData, target: str) -> tuple[str, int]:
    """The (address, port) to write for Telethon: the session's, else the data centre default."""
    if data.server_address is not None and data.port is not None:
        return data.server_address, data.port
    default = default_address(data.dc_id, data.test_mode)
    if default is None:
        raise ValueError(
            f"cannot write a {target}: the source session has no server address and data "
            f"centre {data.dc_id} has no known default address"
        )
    return default


def is_test_host(address: str | None) -> bool:
    """True if ``address`` is one of Telegram's test data centres."""
    return address in _TEST_HOSTS


def channel_box_to_raw(box_id: int) -> int:
    """Telethon keeps channel update boxes under the raw channel id; statekit (like the Pyrogram
    family) under the Bot-API id. 0 (the common box) and ids not in channel form pass through."""
    if box_id < _CHANNEL_ZERO:
        return _CHANNEL_ZERO - box_id
    return box_id


def channel_box_from_raw(box_id: int) -> int:
    """Inverse of :func:`channel_box_to_raw`: a positive raw channel id becomes its Bot-API id."""
    if box_id > 0:
        return _CHANNEL_ZERO - box_id
    return box_id


def to_snapshot(source: SessionSnapshot | SessionData) -> SessionSnapshot:
    """Accept a snapshot or bare session data; raise ``TypeError`` for anything else."""
    if isinstance(source, SessionSnapshot):
        return source
    if isinstance(source, SessionData):
        return SessionSnapshot(source)
    raise TypeError(f"expected a SessionSnapshot or SessionData, got {type(source).__name__}")


def apply_overrides(
    data: SessionData,
    *,
    api_id: int | None,
    user_id: int | None,
    is_bot: bool | None,
) -> SessionData:
    """A copy of ``data`` with the given (non-None) fields replaced; ``TypeError`` on bad types."""
    changes: dict[str, object] = {}
    for name, value in (("api_id", api_id), ("user_id", user_id)):
        if value is not None:
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
            changes[name] = value
    if is_bot is not None:
        if type(is_bot) is not bool:
            raise TypeError(f"is_bot must be a bool, got {type(is_bot).__name__}")
        changes["is_bot"] = is_bot
    return dataclasses.replace(data, **changes) if changes else data  # type: ignore[arg-type]


def require(data: SessionData, target: str, *names: str) -> None:
    """Raise ``ValueError`` naming every field in ``names`` that ``data`` lacks for ``target``."""
    missing = [name for name in names if getattr(data, name) is None]
    if missing:
        given = ", ".join(f"{name}=..." for name in missing)
        raise ValueError(
            f"cannot write a {target}: the source session has no {' or '.join(missing)}, "
            f"which {target} needs; pass it explicitly ({given})"
        )


def check_range(data: SessionData, target: str, name: str, bits: int) -> None:
    """Raise ``ValueError`` if field ``name`` does not fit an unsigned ``bits``-bit field."""
    value = getattr(data, name)
    if value is not None and not 0 <= value < (1 << bits):
        raise ValueError(f"{name}={value} does not fit the {bits}-bit field of a {target}")


def in_int64(*values: int | None) -> bool:
    """True if every non-None value fits a signed 64-bit integer (an SQLite INTEGER)."""
    return all(v is None or -(1 << 63) <= v < (1 << 63) for v in values)


def check_auth_key(key: object, where: str) -> bytes:
    """Return ``key`` if it is a usable 256-byte auth key, else raise ``SessionFormatError``."""
    if key is None or key == b"":
        raise SessionFormatError(f"{where} holds no auth key (the session was never logged in)")
    if not isinstance(key, bytes):
        raise SessionFormatError(
            f"{where}: auth key is a {type(key).__name__}, expected {AUTH_KEY_SIZE} bytes"
        )
    if len(key) != AUTH_KEY_SIZE:
        raise SessionFormatError(f"{where}: auth key is {len(key)} bytes, expected {AUTH_KEY_SIZE}")
    if not any(key):
        raise SessionFormatError(f"{where}: auth key is all zero bytes (no authorization)")
    return key


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def address_problem(address: str) -> str | None:
    """Why ``address`` cannot be a Telegram server address (None if it can be one): an IPv4 or
    IPv6 address other than unspecified, multicast or reserved (loopback allowed), or a host
    name of two or more labels whose last one is not numeric."""
    if not address or len(address) > 253 or not address.isascii():
        return "is not a host name or IP address"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        labels = address.rstrip(".").split(".")
        if (
            len(labels) < 2
            or not all(_HOST_LABEL.fullmatch(label) for label in labels)
            or labels[-1].isdigit()
        ):
            return "is not a host name or IP address"
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        return f"is a {'multicast' if ip.is_multicast else 'unspecified'} IP address"
    if ip.is_reserved and not ip.is_loopback:
        return "is a reserved IP address (no server has it)"
    if isinstance(ip, ipaddress.IPv4Address) and ip.packed[0] == 0:
        return "is a reserved IP address (no server has it)"
    return None


def check_address(value: object, where: str) -> str:
    """The server address ``value`` (text, or a packed 4- or 16-byte IP) as text; raise
    ``SessionFormatError`` naming ``where`` if it is no plausible address (the value is shown
    only when it is short ASCII text)."""
    if isinstance(value, bytes):
        if len(value) in (4, 16):
            text = ipaddress.ip_address(value).compressed
        else:
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                raise SessionFormatError(
                    f"{where}: server address is not ASCII text (a nonsense address)"
                ) from None
    elif isinstance(value, str):
        text = value
    else:
        raise SessionFormatError(f"{where}: server address is a {type(value).__name__}")
    problem = address_problem(text)
    if problem is not None:
        shown = repr(text) if len(text) <= 64 and text.isprintable() and text.isascii() else (
            f"of {len(text)} characters"
        )
        raise SessionFormatError(f"{where}: server address {shown} {problem} (a nonsense address)")
    return text


def read_int(
    value: object, where: str, *, nullable: bool = True, lossy_float: bool = False
) -> int | None:
    """Check one integer read from a foreign source; raise ``SessionFormatError`` if it is not.

    ``lossy_float`` accepts finite floats (timestamps some writers store as REAL), truncated.
    """
    if value is None:
        if nullable:
            return None
        raise SessionFormatError(f"{where} is missing (NULL), expected an integer")
    if lossy_float and type(value) is float and math.isfinite(value):
        value = int(value)
    if type(value) is int:
        if not -(1 << 63) <= value < (1 << 63):
            raise SessionFormatError(f"{where} is out of range (more than 64 bits)")
        return value
    raise SessionFormatError(f"{where} is a {type(value).__name__}, expected an integer")


def read_required_int(value: object, where: str, *, lossy_float: bool = False) -> int:
    """:func:`read_int` for a value that must be present."""
    result = read_int(value, where, nullable=False, lossy_float=lossy_float)
    if result is None:  # unreachable: nullable=False raises instead
        raise SessionFormatError(f"{where} is missing (NULL), expected an integer")
    return result


def make_session_data(where: str, **fields: object) -> SessionData:
    """Build ``SessionData``; a value it rejects becomes ``SessionFormatError`` naming ``where``."""
    dc_id = fields.get("dc_id")
    if type(dc_id) is not int or not 0 < dc_id < 1000:
        raise SessionFormatError(f"{where}: data centre id {dc_id!r} is not a positive number")
    for name in ("api_id", "date", "user_id"):
        value = fields.get(name)
        if value is not None and (type(value) is not int or not in_int64(value)):
            raise SessionFormatError(f"{where}: {name} is not a 64-bit integer")
    port = fields.get("port")
    if port is not None and (type(port) is not int or not 0 < port < 65536):
        raise SessionFormatError(f"{where}: port {port!r} is not a port number (1-65535)")
    if fields.get("server_address") is not None:
        check_address(fields["server_address"], where)
    try:
        return SessionData(**fields)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise SessionFormatError(f"{where}: {exc}") from None


def publish_file(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move the finished file ``tmp`` to ``target``: atomically, and without clobbering unless
    ``overwrite`` (``FileExistsError`` then)."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # fails with FileExistsError if someone created it meanwhile
    except FileExistsError:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it") from None
    except OSError as exc:
        if exc.errno not in (
            errno.EPERM,
            errno.ENOTSUP,
            errno.EOPNOTSUPP,
            errno.EMLINK,
            errno.EXDEV,
        ):
            raise
        if target.exists():  # no hard links on this file system: check, then rename
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it") from None
        os.replace(tmp, target)
