"""Pyrogram-family glue (kurigram, irenogram, pyrofork, pyrogram 2.0): a session ``Storage`` over
any statekit storage, and the FSM helpers a handler needs. Needs the ``pyrogram`` extra."""

from __future__ import annotations

# The FSM helpers and the session storage live in private modules; their public names are
# re-exported here (each block is added by the module's owner).
# FSM helpers (statekit/adapters/_pyrogram_fsm.py): an FSMContext per update and a state filter.
from statekit.adapters._pyrogram_fsm import FSMStateFilter as FSMStateFilter
from statekit.adapters._pyrogram_fsm import PyrogramFSM as PyrogramFSM

# Session storage (statekit/adapters/_pyrogram_storage.py): a Pyrogram-family Storage over statekit.
from statekit.adapters._pyrogram_storage import PyrogramStorage as PyrogramStorage

__all__ = ["FSMStateFilter", "PyrogramFSM", "PyrogramStorage"]
