"""Encryption at rest of session records: AES-GCM through ``cryptography`` (extra ``crypto``).

A ``SessionCipher`` seals the session record (auth key, data centre, user) before it reaches the
storage and opens it on the way back; a record sealed for one session name cannot be moved under
another. ``cryptography`` is imported when a cipher is built, not when statekit is imported.
"""

from __future__ import annotations

import os
from typing import Any

from statekit.errors import SessionFormatError

__all__ = ["NONCE_SIZE", "SessionCipher"]

NONCE_SIZE = 12
_KEY_SIZES = (16, 24, 32)


def _aesgcm_class() -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:  # pragma: no cover - cryptography is a test dependency
        raise ImportError(
            "encryption at rest needs the 'cryptography' package: "
            "pip install 'statekit[crypto]'"
        ) from exc
    return AESGCM


class SessionCipher:
    """AES-GCM with a 128-, 192- or 256-bit key; ``repr`` never shows the key.

    Raises ``TypeError`` if ``key`` is not bytes, ``ValueError`` if it is not 16, 24 or 32 bytes
    long and ``ImportError`` (naming the ``crypto`` extra) if ``cryptography`` is not installed.
    """

    __slots__ = ("_aead", "_bits")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray | memoryview):
            raise TypeError(f"cipher key must be bytes, not {type(key).__name__}")
        key = bytes(key)
        if len(key) not in _KEY_SIZES:
            raise ValueError(
                f"AES-GCM key must be 16, 24 or 32 bytes (128/192/256 bits), got {len(key)} bytes"
            )
        self._aead = _aesgcm_class()(key)
        self._bits = len(key) * 8

    @staticmethod
    def generate_key(bits: int = 256) -> bytes:
        """Return a new random key of ``bits`` (128, 192 or 256) bits; keep it out of the storage."""
        if bits not in (128, 192, 256):
            raise ValueError(f"bits must be 128, 192 or 256, got {bits!r}")
        return os.urandom(bits // 8)

    def encrypt(self, plaintext: bytes, associated: bytes) -> bytes:
        """Return nonce + ciphertext + tag of ``plaintext``, bound to ``associated`` data."""
        nonce = os.urandom(NONCE_SIZE)
        return nonce + bytes(self._aead.encrypt(nonce, plaintext, associated))

    def decrypt(self, sealed: bytes, associated: bytes, what: str) -> bytes:
        """Return the plaintext of ``sealed``.

        Raises ``SessionFormatError`` naming ``what`` if the key is wrong, the data was altered or
        it was sealed for other ``associated`` data.
        """
        from cryptography.exceptions import InvalidTag

        if len(sealed) < NONCE_SIZE + 16:
            raise SessionFormatError(f"{what}: sealed data is {len(sealed)} bytes, too short")
        try:
            return bytes(self._aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], associated))
        except InvalidTag:
            raise SessionFormatError(
                f"{what} cannot be decrypted: wrong key, or the record was altered"
            ) from None

    def __repr__(self) -> str:
        return f"SessionCipher(AES-{self._bits}-GCM, key hidden)"
