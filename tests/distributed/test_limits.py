"""Limits that protect a bot from its own users, on every backend: the maximum encoded value size
(default 1 MiB) and key length (default 1,024 UTF-8 bytes) are enforced with a clear error before
anything is written."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from statekit import BaseStorage, SerializationError

MIB = 1024 * 1024


async def _started(make_storage: Callable[..., BaseStorage], **options: int) -> BaseStorage:
    storage = make_storage(**options)
    await storage.start()
    return storage


async def test_default_value_limit_is_one_mib(make_storage: Callable[..., BaseStorage]) -> None:
    storage = await _started(make_storage)
    assert storage.max_value_bytes == MIB
    # bytes of length n encode to n + 5 bytes (msgpack bin32 header)
    fits = b"\x01" * (MIB - 5)
    await storage.set_state("fits", fits)
    assert await storage.get_state("fits") == fits
    with pytest.raises(SerializationError, match=r"'big'.*1048577 bytes.*limit is 1048576") as info:
        await storage.set_state("big", b"\x01" * (MIB - 4))
    assert "max_value_bytes" in str(info.value)
    assert await storage.get_state("big") is None
    assert sorted(await storage.list_keys()) == ["fits"]


async def test_oversized_value_writes_nothing_through_any_write(make_storage: Callable[..., BaseStorage]) -> None:
    storage = await _started(make_storage, max_value_bytes=64)
    big = {"text": "x" * 100}
    await storage.set_state("kept", "old", ttl=100)

    with pytest.raises(SerializationError, match="'kept'"):
        await storage.set_state("kept", big)
    with pytest.raises(SerializationError, match="'kept'"):
        await storage.set_state("kept", big, keep_ttl=True)
    with pytest.raises(SerializationError, match="'kept'"):
        await storage.compare_and_set("kept", big, expected="old")
    with pytest.raises(SerializationError, match="'new'"):
        await storage.compare_and_set("new", big, expected=None)
    with pytest.raises(SerializationError, match="'b2'"):
        await storage.set_many({"b1": "small", "b2": big, "b3": "small"})

    assert await storage.get_state("kept") == "old"
    ttl = await storage.get_ttl("kept")
    assert ttl is not None and 99 < ttl <= 100
    assert sorted(await storage.list_keys()) == ["kept"], "a rejected batch must write none of it"
    # the storage is not disabled by the rejected calls
    await storage.set_many({"b1": "small", "b3": "small"})
    assert await storage.compare_and_set("kept", "new", expected="old")
    assert sorted(await storage.list_keys()) == ["b1", "b3", "kept"]


async def test_value_limit_counts_encoded_bytes_of_nested_values(make_storage: Callable[..., BaseStorage]) -> None:
    storage = await _started(make_storage, max_value_bytes=200)
    await storage.set_state("ok", {"items": list(range(60))})  # ints < 128 are one byte each
    with pytest.raises(SerializationError, match="limit is 200"):
        await storage.set_state("nested", {"a": [{"b": "y" * 50}] * 4})
    assert await storage.get_state("nested") is None
    # integers are stored natively and are never too big; counters keep working
    assert await storage.increment("counter", 2**62) == 2**62


async def test_default_key_limit_is_1024_utf8_bytes(make_storage: Callable[..., BaseStorage]) -> None:
    storage = await _started(make_storage)
    assert storage.max_key_bytes == 1024
    longest = "k" * 1024
    await storage.set_state(longest, 1)
    assert await storage.get_state(longest) == 1
    assert await storage.list_keys() == [longest]
    accented = "é" * 512  # 1024 bytes in UTF-8
    await storage.set_state(accented, 2)
    assert await storage.get_state(accented) == 2
    for too_long in ("k" * 1025, "é" * 513, "🙂" * 257):
        with pytest.raises(ValueError, match=f"{len(too_long.encode())} UTF-8 bytes; the limit is 1024"):
            await storage.set_state(too_long, 1)
    assert sorted(await storage.list_keys()) == sorted([longest, accented])


async def test_key_limit_applies_to_every_operation(make_storage: Callable[..., BaseStorage]) -> None:
    storage = await _started(make_storage, max_key_bytes=16)
    key = "user:1234567890123"  # 18 bytes
    calls = [
        lambda: storage.get_state(key),
        lambda: storage.set_state(key, 1),
        lambda: storage.delete_state(key),
        lambda: storage.compare_and_set(key, 1, expected=None),
        lambda: storage.increment(key),
        lambda: storage.get_ttl(key),
        lambda: storage.expire(key, 10),
        lambda: storage.get_many(["ok", key]),
        lambda: storage.set_many({"ok": 1, key: 1}),
        lambda: storage.delete_many(["ok", key]),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="limit is 16"):
            await call()
    assert await storage.list_keys() == [], "nothing of a rejected batch is written"
    await storage.set_state("user:12345678901", 1)  # 16 bytes is fine
    assert await storage.get_many(["user:12345678901"]) == {"user:12345678901": 1}


@pytest.mark.parametrize("option", ["max_value_bytes", "max_key_bytes"])
@pytest.mark.parametrize("bad", [0, -1, 1.5, "10"])
def test_limit_options_are_validated(make_storage: Callable[..., BaseStorage], option: str, bad: object) -> None:
    with pytest.raises(ValueError, match=option):
        make_storage(**{option: bad})
