"""The one exception tree of statekit.

::

    StatekitError
    ├── StorageUnavailableError      backend unreachable (names the backend, never its password)
    │   └── StorageClosedError       operation on a stopped storage
    ├── SerializationError           value of a type the codec cannot store (names key and type)
    ├── CorruptValueError            stored bytes that cannot be decoded (names the key)
    ├── WrongTypeError               increment of a value that is not an integer (names the key)
    ├── SessionFormatError           unreadable session string or file (formats tried, what was seen)
    ├── SessionLockedError           another process holds the session (host, pid, since)
    └── RateLimitedError             a rate limit refused the call

Argument errors are plain ``ValueError`` / ``TypeError``.
"""

from __future__ import annotations

__all__ = [
    "CorruptValueError",
    "RateLimitedError",
    "SerializationError",
    "SessionFormatError",
    "SessionLockedError",
    "StatekitError",
    "StorageClosedError",
    "StorageUnavailableError",
    "WrongTypeError",
]


class StatekitError(Exception):
    """Base class of every error statekit raises on purpose."""


class StorageUnavailableError(StatekitError):
    """The backend cannot be reached now (connection refused, timed out, disk unavailable)."""


class StorageClosedError(StorageUnavailableError):
    """The storage was stopped; call ``start()`` again before using it."""


class SerializationError(StatekitError, TypeError):
    """A value (or a value nested in it) has a type the codec cannot store."""


class CorruptValueError(StatekitError):
    """The bytes stored under a key cannot be decoded."""


class WrongTypeError(StatekitError, TypeError):
    """``increment`` was called on a key whose value is not an integer."""


class SessionFormatError(StatekitError, ValueError):
    """A session string or file is in no format statekit can read."""


class SessionLockedError(StatekitError):
    """Another process holds the ownership lease of a session."""


class RateLimitedError(StatekitError):
    """A rate limit refused the call; ``retry_after`` says how long to wait (seconds)."""

    def __init__(self, message: str, *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
