"""``statekit demo``: a simulated bot on the real FSM and rate-limiting code, with a summary.

The bot is a three-step form (name, age, city) written the way a real bot would be: one
``statekit.fsm.FSMContext`` per conversation, every handler guarded by
``middleware.RateLimitMiddleware`` (5 updates per 3 s per user, fixed window). Simulated users,
``--concurrency`` at a time, each send ``/start`` and then answer the questions; every 10th user
floods the bot with 12 messages at once after giving their name (the rate limit drops most of
them, and that user's next answer too: they wait the ``retry_after`` the bot reported and send it
again), and every 7th user (from the 4th) first answers the age question with a word, which the
bot rejects.

Resuming: a finished form is saved under ``demo:profile:<user>`` and its conversation cleared. A
run skips users whose profile exists and whose conversation is closed, and continues a
conversation left open (for example by Ctrl-C) from the state stored in its FSM record. ``--fresh`` deletes the demo's keys first (only
``demo:*`` and the demo bot's ``fsm:{<bot>:*`` conversations; nothing else in the store).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

from statekit._cli._common import (
    CLIError,
    add_json,
    add_progress,
    describe_store,
    format_pairs,
    human_count,
    open_url,
    print_json,
    run_async,
    sqlite_path,
)
from statekit._cli._progress import Progress
from statekit.fsm import FSMContext, FSMRecord, State, StatesGroup, StorageKey
from statekit.storage.base import BaseStorage
from statekit.storage.url import mask_url

__all__ = ["DEFAULT_URL", "DemoBot", "Form", "add_parser", "expected_counts"]

DEFAULT_URL = "sqlite:///statekit-demo.db"
BOT_ID = 424242
FIRST_USER = 1_000_000
FLOOD_EVERY = 10  # users 0, 10, 20, ... (counted from the first) flood
FLOOD_SIZE = 12
TYPO_EVERY = 7  # users 3, 10, 17, ... first answer the age question with a word
TYPO_AT = 3
RATE_LIMIT = 5
RATE_PERIOD = 3.0
CONVERSATION_TTL = 24 * 3600
CITIES = ("Lisbon", "Nairobi", "Osaka", "Lima", "Oslo", "Perth", "Quito", "Riga")

_PROFILE = "demo:profile:"
_DEFAULT_USERS = 1000
_DEFAULT_CONCURRENCY = 100


class Form(StatesGroup):
    """The demo's three questions."""

    name = State()
    age = State()
    city = State()


@dataclass(frozen=True)
class User:
    """The sender of an update (the attribute names of aiogram and Pyrogram)."""

    id: int


@dataclass(frozen=True)
class Update:
    """One incoming message: who sent it, in which chat, and its text."""

    from_user: User
    chat: User
    text: str


@dataclass
class Stats:
    """What a run counted."""

    users: int = 0
    already_completed: int = 0
    completed: int = 0
    simulated: int = 0  # users whose walk through the form this run returned
    sent: int = 0
    handled: int = 0
    limited: int = 0
    rejected_answers: int = 0
    notices: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    completed_total: int | None = None  # forms saved in the store at the end (None: not counted)

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile of the handling latencies, in milliseconds (0 if none)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[index] * 1000


class DemoBot:
    """The bot: handlers over ``storage``, guarded by the rate-limit middleware.

    ``await bot.handle(update)`` returns the bot's reply text, or ``None`` when the rate limit
    dropped the update (``bot.retry_after[user_id]`` then says how long that user must wait).
    """

    def __init__(self, storage: BaseStorage, stats: Stats) -> None:
        from middleware import Rate, RateLimitMiddleware, RateLimitResult

        self.storage = storage
        self.stats = stats
        self.retry_after: dict[int, float] = {}

        def on_limited(event: Update, result: RateLimitResult) -> None:
            stats.limited += 1
            self.retry_after[event.from_user.id] = result.retry_after

        async def reply(event: Update, text: str) -> None:  # the middleware's notice to the user
            stats.notices += 1

        self.middleware = RateLimitMiddleware(
            storage,
            Rate(RATE_LIMIT, RATE_PERIOD),
            scope="user",
            on_limited=on_limited,
            reply=reply,
            prefix="demo:ratelimit",
            name="form",
        )
        self.handle = self.middleware.wrap(self._handle)

    def context(self, user_id: int) -> FSMContext:
        """The FSM context of ``user_id``'s private chat with the bot."""
        key = StorageKey(bot_id=BOT_ID, chat_id=user_id, user_id=user_id)
        return FSMContext(self.storage, key, ttl=CONVERSATION_TTL)

    async def _handle(self, update: Update) -> str:
        self.stats.handled += 1
        user_id = update.from_user.id
        text = update.text.strip()
        fsm = self.context(user_id)
        if text == "/start":
            await fsm.update(lambda _: FSMRecord(Form.name.name, {}))
            return "Hi! What is your name?"
        state = await fsm.get_state()
        if state == Form.name.name:
            await fsm.update(lambda r: FSMRecord(Form.age.name, {**r.data, "name": text}))
            return f"Nice to meet you, {text}. How old are you?"
        if state == Form.age.name:
            if not text.isdigit() or not 0 < int(text) < 150:
                self.stats.rejected_answers += 1
                return "Please send your age as a number."
            await fsm.update(lambda r: FSMRecord(Form.city.name, {**r.data, "age": int(text)}))
            return "Which city do you live in?"
        if state == Form.city.name:
            data = await fsm.get_data()
            profile = {**data, "city": text, "completed_at": round(time.time(), 3)}
            await self.storage.set_state(_PROFILE + str(user_id), profile, ttl=None)
            await fsm.clear()
            return f"Thanks, {data.get('name')}! Your form is complete."
        return "Send /start to fill in the form."


def _answers(index: int, user_id: int) -> dict[str, str]:
    return {
        "name": f"user{user_id}",
        "age": str(18 + index % 60),
        "city": CITIES[index % len(CITIES)],
    }


def expected_counts(users: int) -> dict[str, int]:
    """Counts of a fresh, uninterrupted run of ``users`` users (the windows never lapse mid-burst).

    A normal user sends 4 updates (5 with the rejected age), all handled. A flooder's /start and
    name pass, 3 of the 12 flood messages pass and 9 are dropped, the next answer is dropped and
    sent again after the window: 17 sent (18 with the typo), 7 handled (8), 10 dropped; the 3
    flood messages that pass are rejected as answers to the age question. Each flooder is told to
    slow down once (one notice per user per window).
    """
    sent = handled = limited = rejected = 0
    for i in range(users):
        typo = i % TYPO_EVERY == TYPO_AT
        rejected += typo
        if i % FLOOD_EVERY == 0:
            rejected += RATE_LIMIT - 2  # the flood messages that pass are not an age
            dropped = FLOOD_SIZE - (RATE_LIMIT - 2) + 1
            passed = 2 + (RATE_LIMIT - 2) + 2 + typo
            sent, handled, limited = sent + passed + dropped, handled + passed, limited + dropped
        else:
            sent, handled = sent + 4 + typo, handled + 4 + typo
    return {
        "completed": users,
        "updates_sent": sent,
        "updates_handled": handled,
        "updates_rate_limited": limited,
        "answers_rejected": rejected,
        "rate_limit_notices": len(range(0, users, FLOOD_EVERY)),
    }


class _Simulation:
    def __init__(self, bot: DemoBot, stats: Stats) -> None:
        self.bot = bot
        self.stats = stats

    async def send(self, user_id: int, text: str) -> str | None:
        update = Update(User(user_id), User(user_id), text)
        started = time.perf_counter()
        reply = await self.bot.handle(update)
        self.stats.latencies.append(time.perf_counter() - started)
        self.stats.sent += 1
        return reply

    async def send_until_answered(self, user_id: int, text: str) -> str:
        """Send ``text``; while the rate limit drops it, wait as told and send it again."""
        while True:
            reply = await self.send(user_id, text)
            if reply is not None:
                return reply
            await asyncio.sleep(self.bot.retry_after.get(user_id, RATE_PERIOD) + 0.01)

    async def user(self, index: int) -> None:
        """Walk user ``index`` through the form, from wherever their conversation stands."""
        user_id = FIRST_USER + index
        answers = _answers(index, user_id)
        state = await self.bot.context(user_id).get_state()
        if state not in (Form.name.name, Form.age.name, Form.city.name):
            await self.send_until_answered(user_id, "/start")
            state = Form.name.name
        if state == Form.name.name:
            await self.send_until_answered(user_id, answers["name"])
            state = Form.age.name
            if index % FLOOD_EVERY == 0:
                await asyncio.gather(
                    *(self.send(user_id, f"hello?? {n}") for n in range(FLOOD_SIZE))
                )
        if state == Form.age.name:
            if index % TYPO_EVERY == TYPO_AT:
                await self.send_until_answered(user_id, "forty")
            await self.send_until_answered(user_id, answers["age"])
            state = Form.city.name
        await self.send_until_answered(user_id, answers["city"])
        self.stats.simulated += 1


def _conversation_key(user_id: int) -> str:
    return StorageKey(bot_id=BOT_ID, chat_id=user_id, user_id=user_id).storage_key


async def _pending(storage: BaseStorage, users: int) -> tuple[list[int], int]:
    """Indexes of the users whose form is not finished (no saved profile, or a conversation still
    open: a run interrupted between saving the profile and clearing the conversation), and how
    many of the ``users`` have a saved profile (a completed form)."""
    todo: list[int] = []
    saved = 0
    for start in range(0, users, 1000):
        indexes = range(start, min(users, start + 1000))
        profiles = await storage.get_many(f"{_PROFILE}{FIRST_USER + i}" for i in indexes)
        open_ = await storage.get_many(_conversation_key(FIRST_USER + i) for i in indexes)
        saved += len(profiles)
        todo.extend(
            i
            for i in indexes
            if f"{_PROFILE}{FIRST_USER + i}" not in profiles
            or _conversation_key(FIRST_USER + i) in open_
        )
    return todo, saved


async def clear_demo(storage: BaseStorage) -> int:
    """Delete the demo's keys (and nothing else); return how many."""
    removed = 0
    for pattern in ("demo:*", "fsm:{" + str(BOT_ID) + ":*"):
        batch: list[str] = []
        async for key in storage.scan_keys(pattern):
            batch.append(key)
            if len(batch) >= 1000:
                removed += await storage.delete_many(batch)
                batch = []
        if batch:
            removed += await storage.delete_many(batch)
    return removed


async def _count(storage: BaseStorage, pattern: str) -> int:
    return sum([1 async for _ in storage.scan_keys(pattern)])


async def _run(
    args: argparse.Namespace,
    storage: BaseStorage,
    stats: Stats,
    progress: Progress,
    keys: dict[str, int],
) -> None:
    """Simulate the pending users; fill ``stats`` and ``keys`` with what the store holds at the
    end, also when interrupted (Ctrl-C cancels this coroutine: the count is taken, then the
    cancellation goes on)."""
    await storage.start()
    try:
        if args.fresh:
            await clear_demo(storage)
        todo, saved = await _pending(storage, args.users)
        stats.users = args.users
        stats.already_completed = saved
        progress.start(len(todo))
        bot = DemoBot(storage, stats)
        sim = _Simulation(bot, stats)
        queue = iter(todo)
        started = time.perf_counter()

        async def worker() -> None:
            for index in queue:
                await sim.user(index)
                progress.advance()

        try:
            with progress:
                await asyncio.gather(
                    *(worker() for _ in range(min(args.concurrency, len(todo) or 1)))
                )
        finally:
            stats.seconds = time.perf_counter() - started
            # count what is stored, not what the simulation saw finish: a form saved just before
            # an interrupt is complete although its user's task was cancelled
            stats.completed_total = (await _pending(storage, args.users))[1]
            stats.completed = stats.completed_total - stats.already_completed
            keys.update(
                profiles=await _count(storage, _PROFILE + "*"),
                conversations_in_progress=await _count(storage, "fsm:{" + str(BOT_ID) + ":*"),
                rate_limit_keys=await _count(storage, "demo:ratelimit:*"),
            )
    finally:
        await storage.stop()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``demo``."""
    p = sub.add_parser(
        "demo",
        help="run a simulated bot: users filling in a form under rate limits",
        description="Run a simulated bot built from statekit's FSM and rate-limiting code: "
        "--users users each fill in a three-step form (name, age, city); every 10th floods the "
        f"bot and is rate limited ({RATE_LIMIT} updates per {RATE_PERIOD:g} s per user). Prints a "
        "summary: conversations completed, updates handled and rate-limited, updates/s, handling "
        f"latency, where the data lives. Data goes to {DEFAULT_URL} in the current directory "
        "unless --url. Running it again resumes: finished forms (demo:profile:*) are not redone "
        "and half-filled ones continue from their stored state; --fresh deletes the demo's keys "
        "(demo:* and the demo bot's conversations, nothing else) and starts over.",
        epilog="examples:\n"
        "  statekit demo\n"
        "  statekit demo --users 10000 --fresh\n"
        "  statekit demo --url redis://127.0.0.1:6379/0 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", default=DEFAULT_URL, help=f"storage URL (default: {DEFAULT_URL})")
    p.add_argument(
        "--users",
        type=int,
        default=_DEFAULT_USERS,
        help=f"simulated users (default: {_DEFAULT_USERS})",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=_DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"users talking to the bot at the same time (default: {_DEFAULT_CONCURRENCY})",
    )
    p.add_argument("--fresh", action="store_true", help="delete the demo's data first")
    add_progress(p)
    add_json(p)
    p.set_defaults(func=run)


def _summary(
    args: argparse.Namespace, where: str, stats: Stats, keys: dict[str, int], interrupted: bool
) -> dict[str, Any]:
    completed, total_done = stats.completed, stats.completed_total
    if total_done is None:  # interrupted again before the store could be counted
        completed = stats.simulated
        total_done = stats.already_completed + completed
    return {
        "url": where,
        "interrupted": interrupted,
        "users": stats.users,
        "completed": completed,
        "already_completed": stats.already_completed,
        "completed_total": total_done,
        "updates_sent": stats.sent,
        "updates_handled": stats.handled,
        "updates_rate_limited": stats.limited,
        "answers_rejected": stats.rejected_answers,
        "rate_limit_notices": stats.notices,
        "seconds": round(stats.seconds, 3),
        "updates_per_s": round(stats.sent / stats.seconds, 1) if stats.seconds > 0 else 0.0,
        "latency_ms": {
            "p50": round(stats.percentile(50), 3),
            "p99": round(stats.percentile(99), 3),
        },
        "keys": keys,
    }


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its summary (or ``--json``); 130 if interrupted."""
    if args.users < 0:
        raise CLIError("--users must be >= 0", 2)
    if args.concurrency < 1:
        raise CLIError("--concurrency must be >= 1", 2)
    storage = open_url(args.url, must_exist=False)
    where = describe_store(storage)
    stats = Stats()
    progress = Progress("demo", unit="users", enabled=args.progress)
    keys: dict[str, int] = {}
    interrupted = False
    try:
        run_async(_run(args, storage, stats, progress, keys))
    except KeyboardInterrupt:
        interrupted = True
    summary = _summary(args, where, stats, keys, interrupted)
    volatile = sqlite_path(storage) is None and storage.backend_name in ("memory", "sqlite")
    if args.json:
        print_json(summary)
    else:
        _print_summary(args, summary, volatile)
    if interrupted:
        done = f"interrupted after {summary['completed']:,} conversations"
        if volatile:
            raise CLIError(f"{done}; the store was in memory and is gone: nothing to resume", 130)
        raise CLIError(f"{done}; to resume, run: {_resume_command(args)}", 130)
    return 0


def _resume_command(args: argparse.Namespace) -> str:
    """The ``statekit demo`` command that continues where ``args``' run stopped (its options
    without ``--fresh``, which would start over; a password in the URL masked)."""
    parts = ["statekit demo"]
    if args.users != _DEFAULT_USERS:
        parts.append(f"--users {args.users}")
    if args.url != DEFAULT_URL:
        parts.append(f"--url {_quote(mask_url(args.url))}")
    if args.concurrency != _DEFAULT_CONCURRENCY:
        parts.append(f"--concurrency {args.concurrency}")
    if args.json:
        parts.append("--json")
    return " ".join(parts)


def _print_summary(args: argparse.Namespace, s: dict[str, Any], volatile: bool) -> None:
    """The summary as text; ``volatile``: the store lives in this process only."""
    lat = s["latency_ms"]
    rows = [
        (
            "conversations completed",
            f"{s['completed']:,} this run, {s['completed_total']:,} of {s['users']:,} in total",
        ),
        ("updates received", human_count(s["updates_sent"])),
        ("updates handled", human_count(s["updates_handled"])),
        (
            "updates rate-limited",
            f"{s['updates_rate_limited']:,} dropped; {s['rate_limit_notices']:,} notices "
            "to slow down (one per user per window)",
        ),
        ("answers rejected", f"{s['answers_rejected']:,} (an age that is not a number)"),
        ("updates/s", f"{human_count(s['updates_per_s'])} ({s['seconds']:.2f} s)"),
        ("handling latency", f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms"),
        ("data", s["url"]),
    ]
    if s["keys"]:
        k = s["keys"]
        rows.append(
            (
                "keys",
                f"{k['profiles']:,} demo:profile:*, {k['conversations_in_progress']:,} "
                f"conversations in progress, {k['rate_limit_keys']:,} rate-limit counters",
            )
        )
    print("statekit demo" + (" (interrupted)" if s["interrupted"] else ""))
    print(format_pairs(rows))
    if not s["interrupted"] and s["completed"] == 0 and s["users"]:
        print(
            f"\nAll {s['users']:,} forms were already complete in this store; "
            "add --fresh to start over (or --users to add users)."
        )
    if volatile:
        print(
            f"\nThe store was in this process's memory ({mask_url(args.url)}): it is gone now "
            "that the command has ended. Keep the data with --url sqlite:///demo.db (or a "
            "redis:// URL) to look inside it."
        )
        return
    url = _quote(mask_url(args.url))
    print(f"\nLook inside: statekit keys {url} 'demo:profile:*' --limit 5")
    print(f"             statekit get {url} {_PROFILE}{FIRST_USER}")


def _quote(text: str) -> str:
    return text if all(c.isalnum() or c in ":/._-" for c in text) else f"'{text}'"
