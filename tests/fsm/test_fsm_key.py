"""StorageKey: validation, rendering, one hash tag per conversation, no collisions."""

from __future__ import annotations

import pytest

from statekit.fsm import StorageKey


def _hash_tag(key: str) -> str:
    """The part of a Redis key that Redis Cluster hashes (the first non-empty {...})."""
    start = key.index("{")
    end = key.index("}", start + 1)
    assert end > start + 1
    return key[start + 1 : end]


def test_renders_every_field_inside_one_hash_tag() -> None:
    key = StorageKey(1, -100123, 42, thread_id=7, business_connection_id="bc", destiny="quiz")
    rendered = key.storage_key
    assert rendered == "fsm:{1:-100123:42:7:bc:quiz}"
    assert _hash_tag(rendered) == "1:-100123:42:7:bc:quiz"
    assert str(key) == rendered


def test_user_in_group_chat_has_own_key() -> None:
    a = StorageKey(1, -500, 10)
    b = StorageKey(1, -500, 11)
    assert a.storage_key != b.storage_key
    assert a != b


def test_structural_characters_are_escaped_so_keys_never_collide() -> None:
    a = StorageKey(1, 2, 3, business_connection_id="x:y", destiny="z")
    b = StorageKey(1, 2, 3, business_connection_id="x", destiny="y:z")
    assert a.storage_key != b.storage_key
    weird = StorageKey(1, 2, 3, business_connection_id="}{%", destiny="{d}")
    rendered = weird.storage_key
    assert rendered.count("{") == 1 and rendered.count("}") == 1
    assert _hash_tag(rendered).endswith("%7D%7B%25:%7Bd%7D")


def test_every_field_separates_conversations() -> None:
    base = StorageKey(1, 2, 3)
    variants = [
        StorageKey(9, 2, 3),
        StorageKey(1, 9, 3),
        StorageKey(1, 2, 9),
        StorageKey(1, 2, 3, thread_id=1),
        StorageKey(1, 2, 3, business_connection_id="b"),
        StorageKey(1, 2, 3, destiny="other"),
    ]
    rendered = {k.storage_key for k in [base, *variants]}
    assert len(rendered) == 7


def test_equal_keys_are_equal_and_hashable() -> None:
    assert StorageKey(1, 2, 3) == StorageKey(1, 2, 3)
    assert {StorageKey(1, 2, 3): "x"}[StorageKey(1, 2, 3)] == "x"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"bot_id": "1", "chat_id": 2, "user_id": 3}, TypeError),
        ({"bot_id": 1, "chat_id": 2.0, "user_id": 3}, TypeError),
        ({"bot_id": 1, "chat_id": 2, "user_id": True}, TypeError),
        ({"bot_id": 1, "chat_id": 2, "user_id": 2**63}, ValueError),
        ({"bot_id": 1, "chat_id": 2, "user_id": 3, "thread_id": "7"}, TypeError),
        ({"bot_id": 1, "chat_id": 2, "user_id": 3, "business_connection_id": ""}, ValueError),
        ({"bot_id": 1, "chat_id": 2, "user_id": 3, "destiny": ""}, ValueError),
    ],
)
def test_bad_fields_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        StorageKey(**kwargs)  # type: ignore[arg-type]
