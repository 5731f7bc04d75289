"""MTProto sessions: records, a session store over any statekit storage, and the session strings
and files of Pyrogram-family clients and Telethon."""

from statekit.session.records import AUTH_KEY_SIZE, Peer, SessionData, SessionSnapshot, UpdateState

__all__ = ["AUTH_KEY_SIZE", "Peer", "SessionData", "SessionSnapshot", "UpdateState"]
