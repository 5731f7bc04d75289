"""Conversation state for bots: states declared as classes, one record (state and data) per
conversation, and writes that never lose each other's updates (SPEC section 5).

``FSMContext(storage, StorageKey(bot_id, chat_id, user_id))`` works over any statekit storage;
``statekit.adapters.aiogram`` and ``statekit.adapters.pyrogram`` plug it into the frameworks.
``Timeouts`` fires a handler when a conversation stays too long in a state (section 5.1).
"""

from statekit.fsm._record import FSMRecord
from statekit.fsm._writer import FSMConflictError
from statekit.fsm.context import FSMContext
from statekit.fsm.key import DEFAULT_DESTINY, StorageKey
from statekit.fsm.state import ANY_STATE, State, StatesGroup, StateSpec, state_name
from statekit.fsm.timeouts import TimeoutEvent, Timeouts

__all__ = [
    "ANY_STATE",
    "DEFAULT_DESTINY",
    "FSMConflictError",
    "FSMContext",
    "FSMRecord",
    "State",
    "StateSpec",
    "StatesGroup",
    "StorageKey",
    "TimeoutEvent",
    "Timeouts",
    "state_name",
]
