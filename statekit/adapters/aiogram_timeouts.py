"""aiogram 3 glue for conversation timeouts (``statekit.fsm.Timeouts``). Needs the ``aiogram`` extra.

``setup_timeouts(dispatcher, timeouts)`` starts ``timeouts`` with the dispatcher's startup and stops
it at shutdown, and lets a timeout handler ask for what a message handler gets::

    @timeouts.on(Form.name, after=300)
    async def expired(event: TimeoutEvent, bot: Bot, state: FSMContext) -> None:
        if await event.transition(None):
            await bot.send_message(event.key.chat_id, "Your form expired; /start to begin again.")

``bot`` (the bot whose id the conversation carries), ``state`` (aiogram's ``FSMContext`` of the
conversation, over the dispatcher's storage), ``dispatcher``, and any workflow data of the
dispatcher, by parameter name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.fsm.context import FSMContext as AiogramFSMContext
from aiogram.fsm.storage.base import StorageKey as AiogramStorageKey

from statekit.adapters.aiogram import AiogramStorage
from statekit.fsm.timeouts import TimeoutEvent, Timeouts

__all__ = ["aiogram_key", "setup_timeouts"]


def aiogram_key(event: TimeoutEvent) -> AiogramStorageKey:
    """aiogram's ``StorageKey`` of the conversation that timed out."""
    key = event.key
    return AiogramStorageKey(
        bot_id=key.bot_id,
        chat_id=key.chat_id,
        user_id=key.user_id,
        thread_id=key.thread_id,
        business_connection_id=key.business_connection_id,
        destiny=key.destiny,
    )


def setup_timeouts(dispatcher: Dispatcher, timeouts: Timeouts, *, bot: Bot | None = None) -> None:
    """Tie ``timeouts`` to ``dispatcher``'s lifecycle and give its handlers aiogram's objects.

    ``bot``: the bot to hand handlers before the dispatcher has started one (otherwise the bots
    given to ``start_polling`` / the webhook startup are used, matched by id). Raises
    ``ValueError`` if the dispatcher's FSM storage is an ``AiogramStorage`` over another statekit
    storage (the timeouts would never be armed by its writes).
    """
    storage = dispatcher.fsm.storage
    if isinstance(storage, AiogramStorage) and storage.storage is not timeouts.storage:
        raise ValueError(
            "the dispatcher's AiogramStorage and the Timeouts use different statekit storages; "
            "declare the timeouts on the storage the dispatcher writes"
        )
    bots: dict[int, Bot] = {}
    last: list[Bot] = [] if bot is None else [bot]
    if bot is not None:
        bots[bot.id] = bot

    async def on_startup(**kwargs: Any) -> None:
        given = [b for b in [*(kwargs.get("bots") or ()), kwargs.get("bot")] if isinstance(b, Bot)]
        for b in given:
            bots[b.id] = b
        if given:
            last[:] = [given[-1]]
        await timeouts.start()

    async def on_shutdown(**kwargs: Any) -> None:
        await timeouts.stop()

    def bot_for(event: TimeoutEvent) -> Bot | None:
        return bots.get(event.key.bot_id) or (last[0] if last else None)

    def state_for(event: TimeoutEvent) -> AiogramFSMContext:
        return AiogramFSMContext(storage=dispatcher.fsm.storage, key=aiogram_key(event))

    dispatcher.startup.register(on_startup)
    # before the dispatcher's own shutdown handler closes the FSM storage: running timeout
    # handlers still write through it while stop() waits for them
    dispatcher.shutdown.register(on_shutdown)
    dispatcher.shutdown.handlers.insert(0, dispatcher.shutdown.handlers.pop())
    timeouts.provide("bot", bot_for)
    timeouts.provide("state", state_for)
    timeouts.provide("dispatcher", lambda event: dispatcher)
    for name in dispatcher.workflow_data:
        if name.isidentifier() and name not in ("bot", "state", "dispatcher", "event"):
            timeouts.provide(name, _workflow_value(dispatcher, name))


def _workflow_value(dispatcher: Dispatcher, name: str) -> Callable[[TimeoutEvent], Any]:
    def value(event: TimeoutEvent) -> Any:
        return dispatcher.workflow_data.get(name)

    return value
