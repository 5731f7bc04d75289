"""The stored form of one conversation: ``{"state": str | None, "data": dict}`` under one key.

An empty conversation (no state, no data) is not stored at all. A record in a state with a
declared timeout also carries its timer under ``"t"`` (``statekit.fsm._timers``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from statekit.errors import CorruptValueError

__all__ = ["FSMRecord", "check_data", "fresh", "pack", "unpack"]


@dataclass(frozen=True)
class FSMRecord:
    """A conversation's state name and data, read or written together."""

    state: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def pack(state: str | None, data: dict[str, Any]) -> dict[str, Any] | None:
    """The stored value of a conversation (``None``: nothing to store)."""
    if state is None and not data:
        return None
    return {"state": state, "data": data}


def unpack(where: str, value: Any) -> tuple[str | None, dict[str, Any]]:
    """Split a stored value into (state, data); raise ``CorruptValueError`` naming ``where``."""
    if value is None:
        return None, {}
    if type(value) is dict and (len(value) == 2 or (len(value) == 3 and "t" in value)):
        state = value.get("state", 0)
        data = value.get("data")
        if (state is None or (type(state) is str and state)) and type(data) is dict:
            return state, data
    raise CorruptValueError(
        f"conversation {where}: the stored value is not an FSM record "
        f"({{'state': str | None, 'data': dict}}); got a {type(value).__name__}. "
        "Nothing was changed; clear() removes it"
    )


def check_data(where: str, data: object) -> dict[str, Any]:
    """Return ``data`` as a new ``dict``; ``TypeError`` naming ``where`` unless a str-keyed mapping.

    ``str`` subclasses (Pyrogram's message texts are one) become plain ``str`` at any depth, so
    they can be stored; other values are left for the codec to accept or refuse.
    """
    if not isinstance(data, Mapping):
        raise TypeError(
            f"conversation {where}: FSM data must be a mapping (dict), not {type(data).__name__}"
        )
    out: dict[str, Any] = {}
    for k, v in data.items():
        if not isinstance(k, str):
            raise TypeError(
                f"conversation {where}: FSM data keys must be str, got {k!r} ({type(k).__name__})"
            )
        out[k if type(k) is str else str.__str__(k)] = _plain(v)
    return out


def _plain(value: Any) -> Any:
    """``value`` with ``str`` subclasses turned into ``str`` (containers rebuilt only if needed)."""
    t = type(value)
    if t is str or t is int or t is float or t is bool or t is bytes or value is None:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if t is dict:
        return {(str.__str__(k) if isinstance(k, str) else k): _plain(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [_plain(v) for v in value]
    return value


_CONTAINERS = (dict, list, tuple)


def fresh(value: Any) -> Any:
    """A deep copy of a stored value (dicts and lists copied, tuples become lists)."""
    t = type(value)
    if t is dict:
        out = value.copy()
        for k, v in value.items():
            if type(v) in _CONTAINERS:
                out[k] = fresh(v)
        return out
    if t is list or t is tuple:
        return [fresh(v) if type(v) in _CONTAINERS else v for v in value]
    return value
