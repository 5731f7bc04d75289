"""Call-by-call parity with Telethon's own SQLite session: a real, never-connected
``TelegramClient`` on each side drives the session calls a client makes (data centre and auth key
as a login writes them, entities from real TL types, lookups by id, username, phone, display name
and peer, the signed-in user's record and update states written by the client's own disconnect,
the string export, reopen, renames, log out), once on ``SQLiteSession`` and once on
``TelethonSession`` per backend; every answer is compared.

The deliberate differences are listed in ``DIFFERENCES`` with the reason (explained in
docs/sessions.md, "Parity with the libraries' own sessions"); any other difference fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from telethon import TelegramClient, types, utils
from telethon._updates import ChannelState, SessionState
from telethon.crypto import AuthKey
from telethon.sessions import SQLiteSession, StringSession

from statekit import BaseStorage
from statekit.adapters.telethon import TelethonSession

pytestmark = pytest.mark.filterwarnings("ignore:Using async sessions support:UserWarning")

API_HASH = "0123456789abcdef0123456789abcdef"
AUTH_KEY = bytes((i * 5 + 1) % 256 for i in range(256))


def extra_usernames(label: str, got: str, expected: str) -> bool:
    return "'collect'" in label or "'second'" in label


def delete_result(label: str, got: str, expected: str) -> bool:
    return label == "delete()" and got == "None" and expected == "True"


# name -> (why statekit answers differently, which differences it covers)
DIFFERENCES: dict[str, tuple[str, Callable[[str, str, str], bool]]] = {
    "every active username": (
        "statekit stores every active username of an entity (User.usernames / "
        "Channel.usernames), Telethon only the main .username; a peer resolves by any of them",
        extra_usernames,
    ),
    "delete() result": (
        "SQLiteSession.delete() answers True once the file is removed; TelethonSession.delete() "
        "returns an awaitable (Telethon awaits it) that deletes the session from the store and "
        "answers None",
        delete_result,
    ),
}


def entities() -> Any:
    users = [
        types.User(id=101, access_hash=1001, first_name="Ann", last_name="Lee", username="Alice", phone="15550101"),
        types.User(id=102, access_hash=1002, first_name="Helper", bot=True, username="helper_bot"),
        types.User(
            id=103, access_hash=1003, first_name="Col",
            usernames=[types.Username("collect", active=True), types.Username("second", active=True)],
        ),
        types.User(id=104, access_hash=None, first_name="NoHash", username="nohash"),
        types.User(id=105, access_hash=1005, first_name="Min", min=True, username="minny"),
    ]
    chats = [
        types.Chat(id=201, title="Family", photo=types.ChatPhotoEmpty(), participants_count=2, date=None, version=1),
        types.ChatForbidden(id=202, title="Gone"),
        types.Channel(
            id=301, title="Daily News", photo=types.ChatPhotoEmpty(), date=None, access_hash=3001,
            username="NewsChan", broadcast=True,
        ),
        types.Channel(id=302, title="Talk", photo=types.ChatPhotoEmpty(), date=None, access_hash=3002, megagroup=True),
        types.ChannelForbidden(id=305, access_hash=3005, title="Banned", broadcast=True),
    ]
    return types.contacts.ResolvedPeer(peer=types.PeerUser(101), users=users, chats=chats)


KEYS: list[Any] = [
    101, 102, 103, 104, 105, -201, -202, -1000000000301, -1000000000302, -1000000000305, 301, 0, 999,
    "alice", "Alice", "@alice", "@ALICE", "alicia", "helper_bot", "collect", "second", "newschan",
    "t.me/newschan", "https://t.me/NewsChan", "nohash", "minny", "nobody",
    "+1 555 0101", "15550101", "+15550101",
    "Ann Lee", "Daily News", "Family", "Gone", "Nobody",
    types.PeerUser(101), types.PeerChannel(302), types.PeerChat(201), types.InputPeerUser(5, 6),
]


def show(value: Any) -> str:
    return re.sub(r"\s+", " ", str(value))


def state(box: int, found: Any) -> str:
    """An update state as compared: a channel's date is left out, because Telethon writes its
    clock there (``datetime.now()``: "any datetime works; channels don't need it")."""
    if found is None or box == 0:
        return show(found)
    return f"State(pts={found.pts}, qts={found.qts}, seq={found.seq})"


def name(key: Any) -> str:
    return repr(key) if isinstance(key, int | str) else show(key)


async def maybe(value: Any) -> Any:
    return await value if hasattr(value, "__await__") else value


async def scenario(make: Callable[[], Any], log: list[tuple[str, str]]) -> None:
    """The calls, in a client's order; each answer appended to ``log`` under a label."""

    def lookups(label: str, session: Any) -> None:
        for key in KEYS:
            try:
                got = show(session.get_input_entity(key))
            except ValueError as exc:
                got = f"ValueError {exc.args}"
            log.append((f"{label} get_input_entity({name(key)})", got))

    def fields(label: str, session: Any) -> None:
        for name in ("dc_id", "server_address", "port", "takeout_id"):
            log.append((f"{label} {name}", repr(getattr(session, name))))
        key = session.auth_key
        log.append((f"{label} auth_key", "None" if key is None else key.key.hex()))

    session = await make()
    client = TelegramClient(session, 12345, API_HASH)  # sets the default data centre
    fields("fresh", session)
    session.set_dc(4, "149.154.167.91", 443)  # what a login does
    session.auth_key = AuthKey(AUTH_KEY)
    await maybe(session.save())
    fields("login", session)
    session.process_entities(entities())
    lookups("1", session)
    for key in ("alice", -1000000000301, types.PeerUser(102), "me"):  # the client's own path
        got = show(await client.get_input_entity(key))
        log.append((f"client get_input_entity({name(key)})", got))
    client._message_box.load(
        SessionState(0, 0, False, 10, 3, 100, 7, None), [ChannelState(301, 55), ChannelState(302, 5)]
    )
    client._mb_entity_cache.set_self_user(777, False, 999)
    await client.disconnect()  # writes update states and the self record, then closes

    session = await make()
    client = TelegramClient(session, 12345, API_HASH)
    fields("reopened", session)
    lookups("reopened", session)
    states = sorted((eid, state(eid, s)) for eid, s in await maybe(session.get_update_states()))
    log.append(("reopened get_update_states()", repr(states)))
    for box in (0, 301, 999):
        log.append((f"reopened get_update_state({box})", state(box, session.get_update_state(box))))
    log.append(("StringSession.save", StringSession.save(session)))
    session.process_entities(
        [types.User(id=101, access_hash=1001, first_name="Ann", last_name="Lee", username="Alicia")]
    )
    await maybe(session.save())
    await maybe(session.close())

    session = await make()
    lookups("renamed", session)
    log.append(("delete()", repr(await maybe(session.delete()))))  # log_out
    await maybe(session.close())

    session = await make()
    fields("after delete", session)
    lookups("after delete", session)
    await maybe(session.close())


async def test_telethon_calls_answer_as_on_telethons_own_session(
    make_storage: Callable[..., BaseStorage], tmp_path: Path
) -> None:
    storage = make_storage()
    theirs_log: list[tuple[str, str]] = []
    ours_log: list[tuple[str, str]] = []

    async def theirs() -> Any:
        return SQLiteSession(str(tmp_path / "theirs"))

    async def ours() -> Any:
        return await TelethonSession(storage, "ours").open()

    await scenario(theirs, theirs_log)
    await scenario(ours, ours_log)
    assert [label for label, _ in ours_log] == [label for label, _ in theirs_log]
    assert len(ours_log) > 150
    used: set[str] = set()
    unexpected = []
    for (label, got), (_, expected) in zip(ours_log, theirs_log, strict=True):
        if got == expected:
            continue
        covered = [name for name, (_why, covers) in DIFFERENCES.items() if covers(label, got, expected)]
        if covered:
            used.update(covered)
        else:
            unexpected.append(f"{label}: statekit {got} / Telethon {expected}")
    assert not unexpected, "\n".join(unexpected)
    assert used == set(DIFFERENCES)  # every listed difference still exists
    assert utils.get_peer_id(types.PeerChannel(301)) == -1000000000301
