"""Conversation timeouts for MTProto bot clients: the Pyrogram family (kurigram, irenogram,
pyrofork, pyrogram 2.0) and Telethon. No framework import: any client object works.

``setup_timeouts(timeouts, client)`` hands the client to every timeout handler that has a
``client`` parameter; start and stop the timeouts with the client::

    setup_timeouts(timeouts, app)

    @timeouts.on(Form.name, after=300)
    async def expired(event: TimeoutEvent, client: Client) -> None:
        if await event.clear():
            await client.send_message(event.key.chat_id, "Your form expired; /start to begin again.")

    async with storage, app, timeouts:
        await idle()

``event.context`` is the conversation's statekit ``FSMContext``: what ``PyrogramFSM.inject`` gives
message handlers.
"""

from __future__ import annotations

from typing import Any

from statekit.fsm.timeouts import Timeouts

__all__ = ["setup_timeouts"]


def setup_timeouts(timeouts: Timeouts, client: Any) -> None:
    """Give ``timeouts``' handlers ``client`` (parameter ``client``).

    Raises ``TypeError`` if ``timeouts`` is not a ``Timeouts`` or ``client`` is ``None``.
    """
    if not isinstance(timeouts, Timeouts):
        raise TypeError(f"setup_timeouts needs a statekit.fsm.Timeouts, not {type(timeouts).__name__}")
    if client is None:
        raise TypeError("setup_timeouts needs a client, not None")
    timeouts.provide("client", lambda event: client)
