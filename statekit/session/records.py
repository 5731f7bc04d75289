"""MTProto session records: what a client keeps between runs, independent of any library."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AUTH_KEY_SIZE", "Peer", "SessionData", "SessionSnapshot", "UpdateState"]

AUTH_KEY_SIZE = 256
_INT64 = 1 << 63


def _shown(value: object) -> str:
    """``value`` as a message may show it: numbers, bools and None as such, anything else only
    by its type (it may be a secret passed in the wrong place)."""
    if value is None or type(value) in (int, bool, float):
        return repr(value)
    return f"a {type(value).__name__}"


def _clean_usernames(peer_id: int, names: Iterable[Any]) -> tuple[str, ...]:
    """``names`` without None entries, ``@`` prefixes and empty names; ``TypeError`` naming the
    peer if ``names`` is not a list (or other iterable) of str and None, e.g. a single str."""
    if isinstance(names, str | bytes) or not isinstance(names, Iterable):
        raise TypeError(
            f"peer {peer_id}: usernames must be a list of str, not {type(names).__name__}"
        )
    listed = tuple(names)
    for name in listed:
        if type(name) is not str or not name or name[0] == "@":
            break
    else:
        return listed  # the common case: every name is already clean
    cleaned: list[str] = []
    for name in listed:
        if type(name) is str:
            name = name.lstrip("@")
            if name:
                cleaned.append(name)
        elif name is not None:
            # the entry is named by its type only: it may be a secret passed in the wrong place
            raise TypeError(f"peer {peer_id}: usernames must be str or None, got {_shown(name)}")
    return tuple(cleaned)


@dataclass(slots=True)
class SessionData:
    """The authorization of one client: data centre, auth key and who it belongs to.

    ``auth_key`` must be exactly 256 bytes; ``repr`` never shows it. ``test_mode`` and ``is_bot``
    are False when a source lacks them (0 and 1 are taken for False and True); ``api_id``,
    ``user_id`` and ``date`` are None when unknown, else 64-bit ints; ``port`` is None or 0-65535;
    ``server_address`` None or a str. A value outside that raises ``ValueError`` (wrong range) or
    ``TypeError`` (wrong type) naming the field, so every record is one that every format and
    storage accepts.
    """

    dc_id: int
    auth_key: bytes = field(repr=False)
    server_address: str | None = None
    port: int | None = None
    api_id: int | None = None
    test_mode: bool = False
    date: int | None = None
    user_id: int | None = None
    is_bot: bool = False

    def __post_init__(self) -> None:
        if type(self.dc_id) is not int or not 0 < self.dc_id < 1000:
            raise ValueError(
                f"dc_id must be a positive int (data centre), got {_shown(self.dc_id)}"
            )
        if not isinstance(self.auth_key, bytes | bytearray) or len(self.auth_key) != AUTH_KEY_SIZE:
            size = len(self.auth_key) if isinstance(self.auth_key, bytes | bytearray) else None
            raise ValueError(
                f"auth_key must be {AUTH_KEY_SIZE} bytes, got "
                + (f"{size} bytes" if size is not None else type(self.auth_key).__name__)
            )
        self.auth_key = bytes(self.auth_key)
        for name in ("api_id", "date", "user_id", "port"):
            value = getattr(self, name)
            if value is None:
                continue
            if type(value) is not int:
                raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
            low, high = (0, 65536) if name == "port" else (-_INT64, _INT64)
            if not low <= value < high:
                raise ValueError(f"{name} {value} is out of range ({low} to {high - 1})")
        if self.server_address is not None and type(self.server_address) is not str:
            raise TypeError(
                f"server_address must be a str or None, not {type(self.server_address).__name__}"
            )
        for name in ("test_mode", "is_bot"):
            value = getattr(self, name)
            if type(value) is not bool:
                if type(value) is not int or value not in (0, 1):
                    raise TypeError(f"{name} must be a bool, not {_shown(value)}")
                setattr(self, name, bool(value))

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr
        )
        return f"SessionData({shown}, auth_key=<{AUTH_KEY_SIZE} bytes hidden>)"

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (auth key included: treat it as a secret)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionData:
        """Build a record from ``to_dict()`` output; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(slots=True)
class Peer:
    """One cached peer: id in Bot-API form (users > 0, chats < 0, channels -100…), access hash,
    type (``"user"``, ``"bot"``, ``"group"``, ``"channel"``, ``"supergroup"``), usernames (without @),
    phone number, the Unix time of the last update and the display name (Telethon keeps one per
    entity; None when unknown). ``usernames`` may be given as one str or any iterable of str and
    None; it is kept as a tuple without ``@`` prefixes, None or empty names (``TypeError`` naming
    the peer for anything else)."""

    id: int
    access_hash: int = 0
    type: str = "user"
    usernames: tuple[str, ...] = ()
    phone_number: str | None = None
    last_update_on: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        names = self.usernames
        if type(names) is tuple and (
            not names or (len(names) == 1 and type(one := names[0]) is str and one and one[0] != "@")
        ):
            return  # already clean (a peer read from the store): kept as it is, not rebuilt
        # one username may be given as a str; TypeError naming the peer for anything else
        self.usernames = _clean_usernames(self.id, (names,) if isinstance(names, str) else names)

    @property
    def username(self) -> str | None:
        """The first (main) username, or None."""
        return self.usernames[0] if self.usernames else None

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict."""
        return {
            "id": self.id,
            "access_hash": self.access_hash,
            "type": self.type,
            "usernames": list(self.usernames),
            "phone_number": self.phone_number,
            "last_update_on": self.last_update_on,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Peer:
        """Build a record from ``to_dict()`` output."""
        return cls(
            id=data["id"],
            access_hash=data.get("access_hash", 0),
            type=data.get("type", "user"),
            usernames=tuple(data.get("usernames") or ()),
            phone_number=data.get("phone_number"),
            last_update_on=data.get("last_update_on"),
            name=data.get("name"),
        )


@dataclass(slots=True)
class UpdateState:
    """Update state of one box: ``id`` 0 for the common box, else the channel id; any field but
    ``id`` may be None."""

    id: int
    pts: int | None = None
    qts: int | None = None
    date: int | None = None
    seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpdateState:
        """Build a record from ``to_dict()`` output."""
        return cls(
            id=int(data["id"]),
            pts=data.get("pts"),
            qts=data.get("qts"),
            date=data.get("date"),
            seq=data.get("seq"),
        )


@dataclass(slots=True)
class SessionSnapshot:
    """A whole session: its data, its peer cache and its update states."""

    data: SessionData
    peers: list[Peer] = field(default_factory=list)
    update_states: list[UpdateState] = field(default_factory=list)
