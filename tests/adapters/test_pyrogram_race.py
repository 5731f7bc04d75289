"""PyrogramStorage against kurigram's own SQLiteStorage under random, back-to-back peer updates:
the same ``Client.fetch_peers`` calls (users seen with a username, then without one, then with
another, ...) with lookups in between at random, never a pause; every lookup answers the same.

A username staged but not written yet must survive the next update of its peer without usernames
(kurigram's ``update_peers`` never touches the usernames table)."""

from __future__ import annotations

import base64
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyrogram import Client, raw

from statekit import BaseStorage
from statekit.adapters.pyrogram import PyrogramStorage
from statekit.session import SessionData, SessionStore

AUTH_KEY = bytes(range(256))
API_HASH = "0123456789abcdef0123456789abcdef"
SESSION = SessionData(dc_id=2, auth_key=AUTH_KEY, api_id=12345, user_id=777, is_bot=True, date=0)
SESSION_STRING = (
    base64.urlsafe_b64encode(struct.pack(">BI?256sQ?", 2, 12345, False, AUTH_KEY, 777, True))
    .decode()
    .rstrip("=")
)
PEERS = range(1, 7)
STEPS = 400


def user(rng: random.Random, uid: int) -> Any:
    """User ``uid`` as the server may send it: no username, one, or a list; a phone or none.
    Each user's names are its own, so which peer owns a name is never ambiguous."""
    shape = rng.randrange(4)
    phone = rng.choice([None, f"1555{uid:04d}"])
    if shape == 0:
        return raw.types.User(id=uid, access_hash=uid * 10, first_name="u", phone=phone)
    if shape == 1:
        name = rng.choice([f"U{uid}a", f"u{uid}b"])
        return raw.types.User(id=uid, access_hash=uid * 10, first_name="u", username=name, phone=phone)
    names = [raw.types.Username(username=f"u{uid}{c}", active=True) for c in rng.sample("abc", 2)]
    return raw.types.User(id=uid, access_hash=uid * 10, first_name="u", usernames=names, phone=phone)


async def answer(storage: Any, method: str, key: Any) -> str:
    try:
        return repr(await getattr(storage, method)(key))
    except KeyError as exc:
        return f"KeyError {exc}"


async def test_random_back_to_back_updates_answer_as_kurigram(
    make_storage: Callable[..., BaseStorage], backend: str, tmp_path: Path
) -> None:
    storage = make_storage()
    await SessionStore(storage, "bot").save(SESSION)
    ours = Client(
        "bot", api_id=12345, api_hash=API_HASH, workdir=str(tmp_path),
        storage_engine=PyrogramStorage(storage, "bot"),
    )
    theirs = Client("ref", session_string=SESSION_STRING, in_memory=True, workdir=str(tmp_path))
    for client in (ours, theirs):
        await client.load_session()
    rng = random.Random(f"race-{backend}")
    lookups = [("get_peer_by_id", uid) for uid in PEERS]
    lookups += [("get_peer_by_username", f"u{uid}{c}") for uid in PEERS for c in "abc"]
    lookups += [("get_peer_by_phone_number", f"1555{uid:04d}") for uid in PEERS]
    compared = 0
    try:
        for step in range(STEPS):
            if rng.random() < 0.6:  # a burst of updates, not a lookup in between
                batch = [user(rng, uid) for uid in rng.sample(PEERS, rng.randint(1, 3))]
                for client in (ours, theirs):
                    await client.fetch_peers(batch)
                continue
            method, key = rng.choice(lookups)
            got = await answer(ours.storage, method, key)
            expected = await answer(theirs.storage, method, key)
            assert got == expected, f"step {step}: {method}({key!r})"
            compared += 1
        for method, key in lookups:  # and at the end, everything
            assert await answer(ours.storage, method, key) == await answer(theirs.storage, method, key)
        assert compared > STEPS // 4
    finally:
        for client in (ours, theirs):
            await client.storage.close()
