"""Encryption at rest of the session record (SPEC section 6, extra ``crypto``)."""

from __future__ import annotations

import pytest

from statekit import BaseStorage, MemoryStorage
from statekit.errors import SessionFormatError
from statekit.session import SessionCipher, SessionData, SessionStore

AUTH_KEY = bytes(range(256))
KEY = SessionCipher.generate_key()


def data() -> SessionData:
    return SessionData(dc_id=2, auth_key=AUTH_KEY, api_id=1, user_id=42, is_bot=True)


def _contains(value: object, needle: bytes) -> bool:
    if isinstance(value, bytes):
        return needle in value
    if isinstance(value, dict):
        return any(_contains(v, needle) for v in value.values())
    if isinstance(value, list):
        return any(_contains(v, needle) for v in value)
    return False


async def test_sealed_record_round_trips_and_the_auth_key_is_not_stored_in_clear(
    storage: BaseStorage,
) -> None:
    store = SessionStore(storage, "secret", cipher=KEY)
    await store.save(data())
    await store.update(date=5)
    raw = await storage.get_state("session:{secret}:data")
    assert raw is not None and not _contains(raw, AUTH_KEY[:32])
    assert "sealed" in raw and "fields" not in raw
    loaded = await SessionStore(storage, "secret", cipher=SessionCipher(KEY)).load()
    assert loaded is not None and loaded.auth_key == AUTH_KEY and loaded.date == 5


async def test_without_the_key_the_record_is_unreadable_and_the_error_says_a_key_is_needed(
    storage: BaseStorage,
) -> None:
    await SessionStore(storage, "secret", cipher=KEY).save(data())
    plain = SessionStore(storage, "secret")
    with pytest.raises(SessionFormatError, match="encrypted at rest: a key is needed"):
        await plain.load()
    with pytest.raises(SessionFormatError, match="a key is needed"):
        await plain.update(dc_id=4)
    wrong = SessionStore(storage, "secret", cipher=SessionCipher.generate_key())
    with pytest.raises(SessionFormatError, match="wrong key"):
        await wrong.load()
    # nothing was overwritten by the failed attempts
    assert await SessionStore(storage, "secret", cipher=KEY).load() == data()


async def test_a_sealed_record_cannot_be_moved_to_another_session(storage: BaseStorage) -> None:
    await SessionStore(storage, "alice", cipher=KEY).save(data())
    await storage.set_state("session:{mallory}:data", await storage.get_state("session:{alice}:data"))
    with pytest.raises(SessionFormatError, match="wrong key, or the record was altered"):
        await SessionStore(storage, "mallory", cipher=KEY).load()


async def test_a_plain_record_is_read_with_a_key_and_sealed_on_the_next_write() -> None:
    storage = MemoryStorage()
    await SessionStore(storage, "s").save(data())
    store = SessionStore(storage, "s", cipher=KEY)
    assert await store.load() == data()
    await store.update(date=9)
    raw = await storage.get_state("session:{s}:data")
    assert "sealed" in raw and not _contains(raw, AUTH_KEY[:32])


def test_keys_are_checked_and_never_shown() -> None:
    with pytest.raises(ValueError, match="16, 24 or 32 bytes.*got 10 bytes"):
        SessionCipher(b"0123456789")
    with pytest.raises(TypeError, match="must be bytes, not str"):
        SessionCipher("k" * 32)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bits"):
        SessionCipher.generate_key(100)
    assert len(SessionCipher.generate_key(128)) == 16
    cipher = SessionCipher(KEY)
    assert KEY.hex() not in repr(cipher) and "hidden" in repr(cipher)
    store = SessionStore(MemoryStorage(), "s", cipher=KEY)
    assert KEY.hex() not in repr(store) and "encrypted" in repr(store)


async def test_tampered_sealed_bytes_are_refused(storage: BaseStorage) -> None:
    await SessionStore(storage, "s", cipher=KEY).save(data())
    raw = await storage.get_state("session:{s}:data")
    sealed = bytearray(raw["sealed"])
    sealed[-1] ^= 1
    await storage.set_state("session:{s}:data", {**raw, "sealed": bytes(sealed)})
    with pytest.raises(SessionFormatError, match="cannot be decrypted"):
        await SessionStore(storage, "s", cipher=KEY).load()
    await storage.set_state("session:{s}:data", {**raw, "sealed": b"short"})
    with pytest.raises(SessionFormatError, match="too short"):
        await SessionStore(storage, "s", cipher=KEY).load()
    await storage.set_state("session:{s}:data", ["not", "a", "record"])
    with pytest.raises(SessionFormatError, match="not a statekit session record"):
        await SessionStore(storage, "s", cipher=KEY).load()
