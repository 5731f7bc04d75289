"""The Pyrogram-family FSM helpers driven by a real kurigram Client offline: raw updates go through
the client's own dispatcher, which parses them into real Message objects for the handlers."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import pytest
from offline_bots import load_example
from pyrogram import Client, filters, raw
from pyrogram.handlers import MessageHandler
from pyrogram.types import CallbackQuery, Chat, Message, User

from statekit import BaseStorage
from statekit.adapters.pyrogram import FSMStateFilter, PyrogramFSM
from statekit.fsm import ANY_STATE, FSMContext, FSMRecord, State, StatesGroup, StorageKey

BOT_ID = 777000


class OfflineBot:
    """A kurigram Client that is never connected: updates are fed to its dispatcher, and what
    the handlers send is recorded instead of going to Telegram."""

    def __init__(self) -> None:
        self.app = Client("offline", api_id=1, api_hash="0" * 32, in_memory=True, workers=4)
        self.app.me = User(id=BOT_ID, is_bot=True, first_name="Form", username="formbot")
        self.sent: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self._ids = itertools.count(1)

        async def send_message(chat_id: int, text: str, **_: Any) -> None:
            await self.sent.put((chat_id, text))

        self.app.send_message = send_message  # type: ignore[method-assign]

    async def start(self) -> None:
        await asyncio.sleep(0)  # add_handler() registers from a task
        await self.app.dispatcher.start()

    async def stop(self) -> None:
        await self.app.dispatcher.stop()

    def raw_update(self, text: str, *, user_id: int, group_id: int | None = None) -> tuple[Any, ...]:
        n = next(self._ids)
        peer = raw.types.PeerUser(user_id=user_id) if group_id is None else raw.types.PeerChat(chat_id=group_id)
        message = raw.types.Message(
            id=n,
            peer_id=peer,
            date=int(time.time()),
            message=text,
            from_id=raw.types.PeerUser(user_id=user_id),
            restriction_reason=[],
        )
        users = {user_id: raw.types.User(id=user_id, first_name=f"user{user_id}", access_hash=user_id)}
        chats = {}
        if group_id is not None:
            chats[group_id] = raw.types.Chat(
                id=group_id, title="group", photo=raw.types.ChatPhotoEmpty(),
                participants_count=2, date=0, version=1,
            )
        return raw.types.UpdateNewMessage(message=message, pts=n, pts_count=1), users, chats

    async def send(self, text: str, *, user_id: int, group_id: int | None = None) -> str:
        """Feed one message and return the bot's reply."""
        await self.app.dispatcher.updates_queue.put(self.raw_update(text, user_id=user_id, group_id=group_id))
        chat_id, reply = await asyncio.wait_for(self.sent.get(), 5)
        assert chat_id == (user_id if group_id is None else -group_id)
        return reply


@pytest.fixture
async def offline_bot() -> AsyncIterator[OfflineBot]:
    bot = OfflineBot()
    yield bot
    await bot.stop()


@pytest.fixture(scope="module")
def form_bot() -> ModuleType:
    return load_example("kurigram_form_bot")


async def test_form_bot_walks_a_user_through_the_form(
    storage: BaseStorage, offline_bot: OfflineBot, form_bot: ModuleType
) -> None:
    form_bot.register(offline_bot.app, PyrogramFSM(storage))
    await offline_bot.start()
    send = offline_bot.send
    assert await send("/start", user_id=1) == "Hi! What is your name?"
    assert await send("Ann", user_id=1) == "Nice to meet you, Ann. How old are you?"
    key = StorageKey(BOT_ID, 1, 1)
    assert await FSMContext(storage, key).get_record() == FSMRecord("Form:age", {"name": "Ann"})
    assert await send("old", user_id=1) == "Please send your age as a number."
    assert await send("31", user_id=1) == "Ann, 31. Is that right? (yes/no)"
    assert await send("no", user_id=1) == "Let's start again. What is your name?"
    assert await send("Bo", user_id=1) == "Nice to meet you, Bo. How old are you?"
    assert await send("7", user_id=1) == "Bo, 7. Is that right? (yes/no)"
    assert await storage.get_state(key.storage_key) == {"state": "Form:confirm", "data": {"name": "Bo", "age": 7}}
    assert await send("Yes", user_id=1) == "Saved: Bo, 7."
    assert await storage.list_keys() == []
    assert await send("/cancel", user_id=1) == "Nothing to cancel."


async def test_users_in_one_group_chat_have_their_own_forms(
    storage: BaseStorage, offline_bot: OfflineBot, form_bot: ModuleType
) -> None:
    form_bot.register(offline_bot.app, PyrogramFSM(storage))
    await offline_bot.start()
    send = offline_bot.send
    await send("/start", user_id=10, group_id=500)
    assert await send("Dee", user_id=10, group_id=500) == "Nice to meet you, Dee. How old are you?"
    await send("/start", user_id=11, group_id=500)
    assert await send("Eve", user_id=11, group_id=500) == "Nice to meet you, Eve. How old are you?"
    assert await send("30", user_id=10, group_id=500) == "Dee, 30. Is that right? (yes/no)"
    assert await send("/cancel", user_id=11, group_id=500) == "Cancelled."
    assert await FSMContext(storage, StorageKey(BOT_ID, -500, 10)).get_state() == "Form:confirm"
    assert await FSMContext(storage, StorageKey(BOT_ID, -500, 11)).get_state() is None


class Quiz(StatesGroup):
    q1 = State()

    class Extra(StatesGroup):
        q2 = State()


async def test_state_filter_kinds(storage: BaseStorage, offline_bot: OfflineBot) -> None:
    fsm = PyrogramFSM(storage)
    groups: list[str] = []

    def route(name: str, flt: FSMStateFilter) -> None:
        # one handler group each, so every matching handler runs
        async def handler(client: Client, message: Message, state: FSMContext) -> None:
            assert state.key == StorageKey(BOT_ID, 4, 4)
            await offline_bot.sent.put((message.chat.id, name))

        offline_bot.app.add_handler(MessageHandler(fsm.inject(handler), flt), group=len(groups))
        groups.append(name)

    route("no-state", fsm.in_state(None))
    route("q1", fsm.in_state(Quiz.q1))
    route("group", fsm.in_state(Quiz))
    route("by-name", fsm.in_state("custom"))
    route("any", fsm.in_state(ANY_STATE))

    async def done(client: Client, message: Message) -> None:
        await offline_bot.sent.put((message.chat.id, "done"))

    # the dispatcher runs an update's handler groups one after another, so the last group's
    # reply says every group before it has run (no waiting for a silence)
    offline_bot.app.add_handler(MessageHandler(done, filters.all), group=len(groups))
    await offline_bot.start()
    ctx = FSMContext(storage, StorageKey(BOT_ID, 4, 4))

    async def replies(text: str) -> set[str]:
        await offline_bot.app.dispatcher.updates_queue.put(offline_bot.raw_update(text, user_id=4))
        got = set()
        while (name := (await asyncio.wait_for(offline_bot.sent.get(), 5))[1]) != "done":
            got.add(name)
        return got

    assert await replies("a") == {"no-state", "any"}
    await ctx.set_state(Quiz.q1)
    assert await replies("b") == {"q1", "group", "any"}
    await ctx.set_state(Quiz.Extra.q2)
    assert await replies("c") == {"group", "any"}
    await ctx.set_state("custom")
    assert await replies("d") == {"by-name", "any"}


async def test_keys_of_messages_and_callback_queries(storage: BaseStorage) -> None:
    fsm = PyrogramFSM(storage, bot_id=5, destiny="form")
    client = Client("k", api_id=1, api_hash="0" * 32, in_memory=True)
    user = User(id=42, first_name="u")
    group = Chat(id=-1009, type=None)
    message = Message(id=1, chat=group, from_user=user, text="x")
    assert fsm.key_for(client, message) == StorageKey(5, -1009, 42, destiny="form")
    query = CallbackQuery(id="q", from_user=user, chat_instance="c", message=message, data="d")
    assert fsm.key_for(client, query) == StorageKey(5, -1009, 42, destiny="form")
    inline = CallbackQuery(id="q", from_user=user, chat_instance="c", inline_message_id="i")
    assert fsm.key_for(client, inline) == StorageKey(5, 42, 42, destiny="form")
    assert fsm.key_for(client, Message(id=2, chat=group)) is None  # no sender
    with pytest.raises(ValueError, match="sender"):
        fsm.context(client, Message(id=2, chat=group))
    ctx = fsm.context(client, message)
    await ctx.update_data(a=1)
    assert await FSMContext(storage, StorageKey(5, -1009, 42, destiny="form")).get_data() == {"a": 1}


def test_bot_id_comes_from_the_started_client_or_must_be_given(storage: BaseStorage) -> None:
    client = Client("k2", api_id=1, api_hash="0" * 32, in_memory=True)
    message = Message(id=1, chat=Chat(id=3), from_user=User(id=3), text="x")
    with pytest.raises(ValueError, match="bot id"):
        PyrogramFSM(storage).key_for(client, message)
    client.me = User(id=99, is_bot=True)
    assert PyrogramFSM(storage).key_for(client, message) == StorageKey(99, 3, 3)


def test_in_state_refuses_bad_arguments(storage: BaseStorage) -> None:
    fsm = PyrogramFSM(storage)
    with pytest.raises(ValueError):
        fsm.in_state()
    with pytest.raises(TypeError):
        fsm.in_state(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fsm.in_state(State())
    with pytest.raises(TypeError):
        PyrogramFSM(object())  # type: ignore[arg-type]
