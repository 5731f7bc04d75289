"""MTProto sessions: records, a session store over any statekit storage, and the session strings
and files of Pyrogram-family clients and Telethon."""

from statekit.session._cipher import SessionCipher
from statekit.session.files import (
    FILE_FORMATS,
    detect_file_format,
    export_file,
    export_file_async,
    import_file,
    import_file_async,
)
from statekit.session.lease import LeaseHolder, SessionLease
from statekit.session.masking import SECRET_FIELDS, SECRET_PEER_FIELDS, mask_key, mask_secrets
from statekit.session.records import AUTH_KEY_SIZE, Peer, SessionData, SessionSnapshot, UpdateState
from statekit.session.store import SessionStore, list_sessions
from statekit.session.strings import STRING_FORMATS, export_string, import_string

__all__ = [
    "AUTH_KEY_SIZE",
    "FILE_FORMATS",
    "LeaseHolder",
    "Peer",
    "SECRET_FIELDS",
    "SECRET_PEER_FIELDS",
    "STRING_FORMATS",
    "SessionCipher",
    "SessionData",
    "SessionLease",
    "SessionSnapshot",
    "SessionStore",
    "UpdateState",
    "detect_file_format",
    "export_file",
    "export_file_async",
    "export_string",
    "import_file",
    "import_file_async",
    "import_string",
    "list_sessions",
    "mask_key",
    "mask_secrets",
]
