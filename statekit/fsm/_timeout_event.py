"""``TimeoutEvent`` (what a timeout handler gets) and the small helpers of ``statekit.fsm.timeouts``:
argument checks, reading a conversation key back from its storage key, a record's timer."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from statekit.fsm._writer import Step
from statekit.fsm.context import FSMContext
from statekit.fsm.key import StorageKey
from statekit.fsm.state import StateSpec, state_name

__all__ = ["TimeoutEvent", "parse_key", "seconds", "state_of", "timer_of"]


def seconds(value: object, what: str, *, zero: bool) -> float:
    """``value`` (seconds or timedelta) in seconds; ``TypeError`` / ``ValueError`` naming
    ``what`` unless finite and > 0 (>= 0 with ``zero``)."""
    if isinstance(value, timedelta):
        secs = value.total_seconds()
    elif type(value) in (int, float):
        secs = float(value)  # type: ignore[arg-type]
    else:
        raise TypeError(f"{what} must be seconds (int or float) or a timedelta, not {type(value).__name__}")
    if not math.isfinite(secs) or secs < 0 or (secs == 0 and not zero):
        raise ValueError(f"{what} must be a finite number of seconds {'>=' if zero else '>'} 0, got {value!r}")
    return secs


def state_of(state: object) -> str | None:
    """The name of a statekit ``State``, a name, ``None``, or an aiogram ``State`` (whose full
    name is its ``state`` attribute; aiogram and statekit name states alike)."""
    try:
        return state_name(state)
    except TypeError:
        name = getattr(state, "state", None)
        if type(name) is str and name and name != "*" and type(state).__module__.startswith("aiogram"):
            return name
        raise


def _unescape(text: str) -> str:
    return text.replace("%7D", "}").replace("%7B", "{").replace("%3A", ":").replace("%25", "%")


def parse_key(rendered: str) -> StorageKey | None:
    """The ``StorageKey`` whose ``storage_key`` is ``rendered`` (None if it is not one)."""
    if not rendered.startswith("fsm:{") or not rendered.endswith("}"):
        return None
    parts = rendered[5:-1].split(":")
    if len(parts) != 6:
        return None
    try:
        bot, chat, user = int(parts[0]), int(parts[1]), int(parts[2])
        thread = int(parts[3]) if parts[3] else None
        key = StorageKey(bot, chat, user, thread, _unescape(parts[4]) or None, _unescape(parts[5]))
    except ValueError:
        return None
    return key if key.storage_key == rendered else None


def timer_of(record: object) -> list[int] | None:
    """The timer ``[version, arm, due_ms]`` a stored conversation record carries, or None."""
    if type(record) is dict:
        timer = record.get("t")
        if type(timer) is list and len(timer) == 3 and all(type(x) is int for x in timer):
            return timer
    return None


class TimeoutEvent:
    """A due timeout, handed to its handler.

    ``key``: the conversation; ``state`` / ``data``: what it held when the timeout fired;
    ``due_at`` / ``fired_at``: epoch seconds; ``late``: seconds past due; ``attempt``: 1-based
    delivery count; ``context``: an ``FSMContext`` of the conversation for anything else.
    ``transition()`` and ``clear()`` apply only if the conversation has not been written since
    the record this event carries was written (for ``since="write"``: since the deadline was armed).
    """

    __slots__ = ("_version", "attempt", "context", "data", "due_at", "fired_at", "key", "late", "state")

    def __init__(
        self,
        *,
        key: StorageKey,
        state: str,
        data: dict[str, Any],
        due_at: float,
        fired_at: float,
        attempt: int,
        context: FSMContext,
        version: int,
    ) -> None:
        self.key = key
        self.state = state
        self.data = data
        self.due_at = due_at
        self.fired_at = fired_at
        self.late = max(0.0, fired_at - due_at)
        self.attempt = attempt
        self.context = context
        self._version = version

    def __repr__(self) -> str:
        return (
            f"TimeoutEvent({self.key.storage_key!r}, state={self.state!r}, "
            f"late={self.late:.3f}, attempt={self.attempt})"
        )

    async def _guarded(self, new_state: str | None, keep_data: bool) -> bool:
        version = self._version

        def guard(value: Any) -> bool:
            timer = timer_of(value)
            return timer is not None and timer[0] == version

        def apply(_: str | None, data: dict[str, Any]) -> Step:
            return new_state, data if keep_data else {}, True, True

        return bool(await self.context._submit(apply, guard))

    async def transition(self, new_state: StateSpec) -> bool:
        """Move the conversation to ``new_state`` (data kept) if it is still as this event saw
        it; return True if it moved. ``TypeError`` / ``ValueError`` for a bad state."""
        return await self._guarded(state_name(new_state), True)

    async def clear(self) -> bool:
        """Forget the conversation (state and data) if it is still as this event saw it;
        return True if it was cleared."""
        return await self._guarded(None, False)
