"""Conversation state for bots: states declared as classes, one record (state and data) per
conversation, and writes that never lose each other's updates (SPEC section 5).

``FSMContext(storage, StorageKey(bot_id, chat_id, user_id))`` works over any statekit storage;
``statekit.adapters.aiogram`` and ``statekit.adapters.pyrogram`` plug it into the frameworks.
"""

from statekit.fsm._record import FSMRecord
from statekit.fsm._writer import FSMConflictError
from statekit.fsm.context import FSMContext
from statekit.fsm.key import DEFAULT_DESTINY, StorageKey
from statekit.fsm.state import ANY_STATE, State, StatesGroup, StateSpec, state_name

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
    "state_name",
]
