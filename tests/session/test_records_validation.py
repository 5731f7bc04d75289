"""``SessionData`` accepts only records every format and storage can hold (issue 14 item 6)."""

from __future__ import annotations

from typing import Any

import pytest

from statekit.session import Peer, SessionData, SessionSnapshot, export_string, import_string

KEY = bytes((i * 3 + 1) % 256 for i in range(256))


@pytest.mark.parametrize(
    ("field", "value", "error", "said"),
    [
        ("date", 10**300, ValueError, "date"),
        ("date", 1e300, TypeError, "date"),
        ("user_id", 2**63, ValueError, "user_id"),
        ("api_id", "5", TypeError, "api_id"),
        ("port", 70000, ValueError, "port"),
        ("port", -1, ValueError, "port"),
        ("server_address", b"1.2.3.4", TypeError, "server_address"),
        ("is_bot", 2, TypeError, "is_bot"),
        ("test_mode", "yes", TypeError, "test_mode"),
    ],
)
def test_a_field_out_of_range_or_of_the_wrong_type_is_refused_naming_it(
    field: str, value: Any, error: type[Exception], said: str
) -> None:
    with pytest.raises(error, match=said) as info:
        SessionData(dc_id=2, auth_key=KEY, **{field: value})
    assert KEY.hex()[:16] not in str(info.value)


def test_flags_given_as_0_or_1_become_bools_and_the_record_round_trips() -> None:
    flags: dict[str, Any] = {"is_bot": 1, "test_mode": 0}
    data = SessionData(dc_id=2, auth_key=KEY, date=2**63 - 1, port=65535, **flags)
    assert data.is_bot is True and data.test_mode is False
    assert import_string(export_string(SessionSnapshot(data), "statekit")).data == data


def test_a_key_passed_in_the_wrong_place_is_not_shown() -> None:
    from statekit.session._record import check_field

    calls = [
        lambda: SessionData(dc_id=KEY, auth_key=KEY),  # type: ignore[arg-type]
        lambda: SessionData(dc_id=2, auth_key=KEY, is_bot=KEY),  # type: ignore[arg-type]
        lambda: check_field("date", KEY),
        lambda: check_field("user_id", KEY.hex()),
    ]
    for call in calls:
        with pytest.raises((TypeError, ValueError)) as info:
            call()
        assert "bytes" in str(info.value) or "str" in str(info.value)
        assert KEY.hex()[:16] not in str(info.value) and repr(KEY)[2:20] not in str(info.value)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ((), ()),
        (("ann",), ("ann",)),
        (("@ann",), ("ann",)),
        (("",), ()),
        ("@ann", ("ann",)),
        ("ann", ("ann",)),
        (["ann", "@bob", ""], ("ann", "bob")),
        (("ann", "@bob"), ("ann", "bob")),
        (("@",), ()),
        (("ann", None), ("ann",)),
    ],
)
def test_a_peer_keeps_its_usernames_as_a_tuple_without_at_or_empty_names(given: Any, kept: tuple[str, ...]) -> None:
    assert Peer(1, usernames=given).usernames == kept
    assert type(Peer(1, usernames=given).usernames) is tuple


def test_a_peer_given_clean_usernames_keeps_the_tuple_it_was_given() -> None:
    names = ("ann",)
    assert Peer(1, usernames=names).usernames is names  # a peer read from the store: not rebuilt


@pytest.mark.parametrize("given", [("ann", 5), [b"ann"], 5, b"ann", ["ann", KEY], (KEY,)])
def test_a_peer_given_usernames_that_are_not_str_is_refused_naming_it(given: Any) -> None:
    with pytest.raises(TypeError, match="peer 7: usernames must be") as info:
        Peer(7, usernames=given)
    # an auth key passed as a username is named by its type, never shown
    assert KEY.hex()[:16] not in str(info.value) and repr(KEY)[2:20] not in str(info.value)
