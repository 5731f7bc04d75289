"""What of a stored session is secret, and the one function that hides it.

The auth key of a session record grants the whole Telegram account: it is never shown by a
``repr``, a message, a log record or the command line unless asked for (``--show-secrets``).
Peer records hold an access hash and a phone number, shown only on request as well (what
``statekit session inspect`` masks). Generic commands (``statekit get``) pass every value they
print through :func:`mask_secrets`, and key names through :func:`mask_key` (a peer's phone number
is part of its index key).
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgpack

from statekit.errors import CorruptValueError
from statekit.session._packed import PackedIndex, PackedPeers, is_packed_index, is_packed_peers

__all__ = [
    "SECRET_FIELDS",
    "SECRET_PEER_FIELDS",
    "SESSION_KEY",
    "mask_key",
    "mask_secrets",
    "readable",
]

SECRET_FIELDS: Final = frozenset({"auth_key"})
"""Fields that grant the account: in the session record (``session:{NAME}:data``) and in any
mapping of any stored value (a ``SessionData.to_dict()`` stored by hand is masked too)."""

SECRET_PEER_FIELDS: Final = ("access_hash", "phone_number")
"""Fields of a peer row (in ``session:{NAME}:peers:N`` buckets, and the one-key-a-peer records
of statekit 0.1) shown only on request; the phone numbers a phone index bucket
(``session:{NAME}:phones:N``) maps are masked too."""

SESSION_KEY: Final = re.compile(
    r"session:\{[^{}]+\}:(data|peers:.*|names:.*|phones:.*|peer:.*|un:.*|ph:.*|states|lease|layout)"
)
"""Keys a ``SessionStore`` writes or wrote (group 1: which record)."""

_PEER_ROW_SIZES = (6, 7)  # id, access_hash, type, usernames, phone_number, last_update_on[, name]


def _hidden(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<secret: {len(value)} bytes hidden>"
    return "<secret: hidden>"


def _mask_phone(phone: Any) -> Any:
    if type(phone) is not str:
        return phone if phone is None else _hidden(phone)
    return "*" * max(len(phone) - 2, 1) + phone[-2:] if len(phone) > 4 else "****"


def _mask_tree(value: Any, depth: int = 0) -> Any:
    if depth > 64:
        return value
    if isinstance(value, dict):
        return {
            k: _hidden(v) if k in SECRET_FIELDS and v is not None else _mask_tree(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_mask_tree(v, depth + 1) for v in value)
    return value


def _mask_peer(value: Any) -> Any:
    row = value
    if isinstance(row, bytes):  # rows written by statekit 0.1: msgpack inside a bytes value
        try:
            row = msgpack.unpackb(row)
        except (ValueError, msgpack.UnpackException):
            return value
    if not isinstance(row, list | tuple) or len(row) not in _PEER_ROW_SIZES:
        return _mask_tree(value)
    shown = list(row)
    shown[1] = _hidden(shown[1])
    shown[4] = _mask_phone(shown[4])
    return shown


def _kind(key: object) -> str | None:
    """Which session record ``key`` is (``data``, ``peers``, ``names``...), or None."""
    match = SESSION_KEY.fullmatch(key) if isinstance(key, str) else None
    return match.group(1).split(":", 1)[0] if match is not None else None


def readable(key: str, value: Any) -> Any:
    """``value`` as stored under ``key``, with a packed peer or index bucket of a session
    (``statekit.session._packed``) decoded to the form older buckets were stored in: an array of
    rows, a map of username or phone to peer id. Any other value, or a packed bucket that does
    not decode, is returned as it is."""
    peers, index = is_packed_peers(value), is_packed_index(value)
    if not (peers or index):
        return value
    kind = _kind(key)
    try:
        if peers and kind == "peers":
            return [[peer_id, *msgpack.unpackb(row)] for peer_id, row in PackedPeers(key, value).items()]
        if index and kind in ("names", "phones"):
            return PackedIndex(key, value).to_dict()
    except (CorruptValueError, ValueError, TypeError, msgpack.UnpackException):
        pass
    return value


def mask_secrets(key: str, value: Any) -> Any:
    """``value`` as stored under ``key`` with every secret replaced by a ``"<secret: ...>"``
    marker (peer phone numbers keep their last two digits).

    Masked: the fields of :data:`SECRET_FIELDS` in any mapping of any value, and the fields of
    :data:`SECRET_PEER_FIELDS` of a peer record. A packed peer or index bucket is shown decoded
    (an array of rows, a map), or hidden whole if it does not decode. A record sealed with a
    ``SessionCipher`` is ciphertext and stays as it is. Returns a new value; ``value`` itself is
    not changed.
    """
    kind = _kind(key)
    value = readable(key, value)
    if kind in ("peers", "phones") and type(value) is bytes:
        return _hidden(value)  # not a bucket that decodes: it may still hold secrets
    if kind in ("peer", "un", "ph"):
        return _mask_peer(value)
    if kind == "peers" and isinstance(value, list):
        return [_mask_peer(row) for row in value]
    if kind == "phones" and isinstance(value, dict):
        return {_mask_phone(phone): _mask_tree(peer) for phone, peer in value.items()}
    return _mask_tree(value)


_PHONE_KEY = re.compile(r"(session:\{[^{}]+\}:ph:)(.*)", re.DOTALL)


def mask_key(key: str) -> str:
    """``key`` as it may be shown: the phone number in a peer's phone index key
    (``session:{NAME}:ph:PHONE``) keeps only its last two digits; other keys are unchanged."""
    match = _PHONE_KEY.fullmatch(key)
    if match is None:
        return key
    return f"{match.group(1)}{_mask_phone(match.group(2))}"
