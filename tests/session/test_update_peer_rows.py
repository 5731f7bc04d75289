"""``SessionStore.update_peer_rows``: the public, checked way for adapters to write peer rows."""

from __future__ import annotations

from typing import Any

import pytest

from statekit import MemoryStorage, SessionStore


async def test_rows_are_written_and_normalized() -> None:
    store = SessionStore(MemoryStorage(), "acct")
    await store.update_peer_rows([
        (10, 5, "user", (), None, None),
        (11, 6, "bot", ("@Helper",), "+1 (555) 000", 1_700_000_000),
    ])
    assert (await store.get_peer_by_id(10)).access_hash == 5  # type: ignore[union-attr]
    helper = await store.get_peer_by_username("helper")
    assert helper is not None and helper.id == 11 and helper.phone_number == "1555000"


@pytest.mark.parametrize(
    "bad",
    [
        (10, 5, "user", (), None),  # 5 items
        (2**63, 5, "user", (), None, None),
        (10, "5", "user", (), None, None),
        (10, 5, 3, (), None, None),
        (10, 5, "user", (1,), None, None),
        (10, 5, "user", (), 555, None),
        (10, 5, "user", (), None, 1.5),
        "not a row",
    ],
)
async def test_a_bad_row_writes_nothing(bad: Any) -> None:
    storage = MemoryStorage()
    store = SessionStore(storage, "acct")
    with pytest.raises(TypeError):
        await store.update_peer_rows([(1, 1, "user", (), None, None), bad])
    assert await storage.list_keys() == []


@pytest.mark.parametrize(
    ("bad", "said"),
    [((10, 8_765_432_101, "user", ("ann",), "15550001"), "tuple of 5 items"), (8_765_432_101, "int")],
)
async def test_a_row_of_the_wrong_shape_is_described_not_shown(bad: Any, said: str) -> None:
    """A malformed row may hold an access hash and a phone number: the error gives its shape."""
    store = SessionStore(MemoryStorage(), "acct")
    with pytest.raises(TypeError, match=said) as caught:
        await store.update_peer_rows([bad])
    assert "8765432101" not in str(caught.value) and "15550001" not in str(caught.value)
