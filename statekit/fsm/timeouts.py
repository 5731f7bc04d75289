"""Conversation timeouts that fire once, in one process at a time, even after a restart (SPEC 5.1).

``timeouts = Timeouts(storage)`` declares; ``@timeouts.on(Form.name, after=60)`` registers a
handler; every FSM write through statekit on ``storage`` then arms, re-arms or cancels the
conversation's deadline; ``async with timeouts:`` makes this process fire due ones.

How it works (public storage operations only, so every backend behaves the same):

* **Arming** (``statekit.fsm._timers``): a write that enters or stays in a state with a timeout
  stores the timer ``[version, arm, due_ms]`` inside the conversation's record, by the same
  compare-and-set as the state; before that compare-and-set, the entry
  ``[conversation, arm, at_ms, due_ms]`` is appended to this process's shard of the due index
  for that second (``tmo:b:<second>:<pid>``: one ``set_state``, concurrent appends written
  together). Crash between the two: an entry no record arms, dropped when read. No crash window
  stores a timer without its entry.
* **Polling**: a poller reads the shards of the buckets from its cursor to now by key
  (``get_many``; the writers are listed in ``tmo:writers``), so an idle poll costs the same with
  100,000 deadlines pending as with none. A bucket is re-read until ``SETTLE_MS`` after its end
  (late appends are seen; a writer whose append landed later writes it again), then the cursor
  moves on and the shared low watermark ``tmo:lw`` with it (where a starting process begins,
  so deadlines due while no process ran fire on the next start, with ``late`` > 0).
* **Firing**: an entry is dropped unless the record still carries its arm (a stale deadline never
  fires). Otherwise the poller first indexes a re-entry at now + ``lease`` (so the deadline is
  found again if this process dies), then takes the lease key ``<conversation>:tmo:l:<arm>``
  with ``compare_and_set(expected=None, ttl=lease)`` (one process at a time), counts the attempt
  with ``increment`` on ``<conversation>:tmo:n:<arm>``, re-reads the record, and runs the handler.
  Success (or a drop) marks the attempt counter done, unless the conversation has moved on, in
  which case both keys are deleted. A raising handler is retried after a backoff (a re-entry and
  a lease held for the backoff), up to ``max_attempts``, then dropped with one error log.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any

from statekit.fsm._timeout_event import TimeoutEvent, parse_key, seconds, state_of, timer_of
from statekit.fsm._timers import (
    BUCKET_MS,
    LW_KEY,
    RETAIN_MS,
    SETTLE_MS,
    WRITERS_KEY,
    Handler,
    Spec,
    Timers,
    bucket_of,
    entry_key,
    now_ms,
    shard_key,
    timers_for,
)
from statekit.fsm.context import FSMContext
from statekit.fsm.state import StateSpec
from statekit.storage.base import BaseStorage, ttl_to_ms

__all__ = ["TimeoutEvent", "Timeouts"]

logger = logging.getLogger("statekit.fsm.timeouts")

_Item = tuple[int, str, int, list[Any]]
"""A due-index entry as a poller sees it: (bucket, shard key, position, entry)."""

_DONE = -(2**62)  # the attempt counter of a deadline that is finished
_MAX_BUCKETS_PER_POLL = 120
_BATCH_SPAN = 1 << 32  # position of entry j of batch n in a shard: n * _BATCH_SPAN + j
_READ_CHUNK = 500


class Timeouts:
    """Conversation timeouts over ``storage`` (SPEC section 5.1).

    ``lease``: how long a firing process owns a due timeout before another may fire it again;
    ``poll_interval``: seconds between polls (default 0.25; the first poll is at once);
    ``max_attempts``: deliveries before a failing timeout is dropped; ``max_late``: drop (instead
    of firing) a timeout first delivered more than this late; ``ttl``: passed to the
    ``FSMContext`` handlers get (as the bot's own contexts have it). Raises ``TypeError`` /
    ``ValueError`` for bad arguments.
    """

    max_running = 256
    """At most this many handlers run at once in one process (more due ones wait a poll)."""
    retry_base = 0.5
    """Seconds before the first retry of a raising handler (doubled each retry, capped at lease)."""

    def __init__(
        self,
        storage: BaseStorage,
        *,
        lease: int | float | timedelta = 30.0,
        poll_interval: int | float | timedelta | None = None,
        max_attempts: int = 3,
        max_late: int | float | timedelta | None = None,
        ttl: int | float | timedelta | None = None,
    ) -> None:
        if not isinstance(storage, BaseStorage):
            raise TypeError(f"Timeouts needs a statekit storage, not {type(storage).__name__}")
        self.storage = storage
        self.lease = seconds(lease, "lease", zero=False)
        self.poll_interval = 0.25 if poll_interval is None else seconds(
            poll_interval, "poll_interval", zero=False
        )
        if type(max_attempts) is not int or max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        self.max_attempts = max_attempts
        self.max_late = None if max_late is None else seconds(max_late, "max_late", zero=True)
        if ttl is not None:
            ttl_to_ms(ttl)
        self._ttl = ttl
        self._timers: Timers = timers_for(storage)
        self._params: dict[Handler, tuple[frozenset[str], bool]] = {}
        self._providers: dict[str, Callable[[TimeoutEvent], Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._running: set[asyncio.Task[None]] = set()
        self._inflight: set[tuple[str, int]] = set()
        self._cursor: int | None = None
        self._resolved: dict[int, dict[str, set[int]]] = {}
        self._deferred: dict[tuple[str, int], _Item] = {}
        self._entries: dict[tuple[int, str], list[Any]] = {}  # (bucket, shard): batches read
        self._warned: set[str] = set()
        self._pruned_at = 0
        self._starved = False

    def __repr__(self) -> str:
        states = sorted(s for s, spec in self._timers.specs.items() if spec.owner is self)
        return f"Timeouts({self.storage!r}, states={states}, started={self.started})"

    # ------------------------------------------------------------------ declaring

    def on(
        self, state: StateSpec, *, after: int | float | timedelta, since: str = "write"
    ) -> Callable[[Handler], Handler]:
        """Register ``async def handler(event: TimeoutEvent) -> None`` for ``state``.

        ``after``: seconds or timedelta (>= 0); ``since="write"``: counted from the last write of
        the conversation (an idle timeout); ``since="entry"``: from the write that entered the
        state. Raises ``TypeError`` / ``ValueError`` for bad arguments, a handler that is not an
        ``async def``, or a state that already has a timeout on this storage.
        """
        name = state_of(state)
        if name is None:
            raise ValueError("a timeout needs a state (None is 'no conversation')")
        after_ms = round(seconds(after, "after", zero=True) * 1000)
        if since not in ("write", "entry"):
            raise ValueError(f"since must be 'write' or 'entry', got {since!r}")

        def register(handler: Handler) -> Handler:
            if not inspect.iscoroutinefunction(handler):
                raise TypeError(f"timeout handler for {name!r} must be an async def function")
            if name in self._timers.specs:
                raise ValueError(f"state {name!r} already has a timeout on {self.storage!r}")
            params = inspect.signature(handler).parameters.values()
            named = frozenset(p.name for p in params)
            anykw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
            self._params[handler] = (named, anykw)
            self._timers.specs[name] = Spec(name, after_ms, since, handler, self)
            return handler

        return register

    def provide(self, name: str, factory: Callable[[TimeoutEvent], Any]) -> None:
        """Hand handlers that have a parameter ``name`` the value ``factory(event)`` (framework
        glue uses it for ``bot``, ``state``, ``client``). Raises ``ValueError`` for a bad name."""
        if type(name) is not str or not name.isidentifier() or name == "event":
            raise ValueError(f"provide() needs a parameter name other than 'event', got {name!r}")
        self._providers[name] = factory

    # ------------------------------------------------------------------ lifecycle

    @property
    def started(self) -> bool:
        """True while this process takes part in firing."""
        return self._task is not None

    async def start(self) -> None:
        """Take part in firing due timeouts (the first poll runs at once); idempotent."""
        if self._task is not None:
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop claiming, wait for running handlers up to ``lease``, then cancel them; idempotent.

        A cancelled handler's timeout is fired again (by another process, or on the next start)
        once its lease runs out.
        """
        task = self._task
        if task is None:
            return
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        done, _ = await asyncio.wait({task}, timeout=self.lease)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        running = set(self._running)
        if running:
            _, pending = await asyncio.wait(running, timeout=self.lease)
            for t in pending:
                t.cancel()
            if pending:  # a cancel may be swallowed: do not wait for it for ever
                await asyncio.wait(pending, timeout=1.0)
        self._task = None
        self._cursor = None
        self._resolved.clear()
        self._deferred.clear()
        self._entries.clear()

    async def __aenter__(self) -> Timeouts:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ polling

    async def _loop(self) -> None:
        failing = False
        while not self._stopping:
            backlog = False
            try:
                backlog = await self._poll()
                failing = False
            except Exception as exc:  # noqa: BLE001 - logged; the next poll tries again
                if not failing:
                    logger.warning("timeouts: polling %r failed (%s); retrying", self.storage, exc)
                failing = True
            if self._stopping:
                break
            assert self._wake is not None
            if backlog and self._running:  # more is due than runs at once: poll as handlers end
                await asyncio.wait(
                    set(self._running), timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
            elif backlog:
                await asyncio.sleep(0)
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                except asyncio.TimeoutError:
                    pass

    async def _poll(self) -> bool:
        """One poll: fire what is due; return True if more is waiting (older buckets, or due
        timeouts left for lack of room)."""
        storage = self.storage
        now = now_ms()
        got = await storage.get_many([WRITERS_KEY, LW_KEY])
        writers = got.get(WRITERS_KEY)
        writers = writers if type(writers) is dict else {}
        lw = got.get(LW_KEY)
        lw = lw if type(lw) is int else None
        top = bucket_of(now)
        if self._cursor is None or (lw is not None and lw > self._cursor):
            self._cursor = top if lw is None else min(lw, top)
            for b in [b for b in self._resolved if b < self._cursor]:
                del self._resolved[b]
            for k in [k for k in self._entries if k[0] < self._cursor]:
                del self._entries[k]
        first = self._cursor
        last = min(top, first + _MAX_BUCKETS_PER_POLL - 1)
        shards = [
            (b, shard_key(b, pid), pid)
            for b in range(first, last + 1)
            for pid, until in writers.items()
            if type(until) is int and until >= b
        ]
        counts: dict[str, Any] = {}
        for i in range(0, len(shards), _READ_CHUNK):
            counts.update(await storage.get_many([k for _, k, _ in shards[i : i + _READ_CHUNK]]))
        wanted: list[tuple[list[Any], int, str]] = []  # (batches of a shard, seq, key)
        for b, skey, pid in shards:
            count = counts.get(skey)
            if type(count) is not int:
                continue
            seen = self._entries.setdefault((b, skey), [])
            seen += [None] * (count - len(seen))
            wanted += [(seen, n, entry_key(b, pid, n)) for n in range(count) if seen[n] is None]
        for i in range(0, len(wanted), _READ_CHUNK):
            chunk = wanted[i : i + _READ_CHUNK]
            read = await storage.get_many([name for _, _, name in chunk])
            for seen, seq, name in chunk:
                seen[seq] = read.get(name)  # still None: not visible yet, read again next poll
        busy: set[int] = set()  # buckets with entries not yet looked at (not due, or no room)
        due: list[_Item] = list(self._deferred.values())
        for b, skey, _ in shards:
            batches = self._entries.get((b, skey))
            if not batches:
                continue
            done = self._resolved.setdefault(b, {}).setdefault(skey, set())
            for n, batch in enumerate(batches):
                if batch is None:  # written with the count but not visible yet (or expired)
                    if (b + 1) * BUCKET_MS > now - SETTLE_MS:
                        busy.add(b)
                    continue
                if type(batch) is not list:
                    continue
                for j, e in enumerate(batch):
                    i = n * _BATCH_SPAN + j
                    if i in done:
                        continue
                    if not (type(e) is list and len(e) == 4 and type(e[0]) is str
                            and all(type(x) is int for x in e[1:])):
                        done.add(i)
                    elif e[2] > now:
                        busy.add(b)
                    else:
                        due.append((b, skey, i, e))
        starved = False
        if due and not self._stopping:
            held, self._deferred = self._deferred, {}
            try:
                busy |= await self._handle(due, now, held)
            except BaseException:
                self._deferred.update(held)  # still held back: the watermark must not pass them
                raise
            starved = self._starved
        else:
            busy.update(b for b, _, _, _ in due)
        cursor = first
        while cursor <= last and cursor not in busy and (cursor + 1) * BUCKET_MS <= now - SETTLE_MS:
            self._resolved.pop(cursor, None)
            for b, skey in [k for k in self._entries if k[0] == cursor]:
                del self._entries[(b, skey)]
            cursor += 1
        self._cursor = cursor
        # the shared watermark never passes an entry this process still holds back
        mark = min([cursor, *(b for b, _, _, _ in self._deferred.values())])
        if lw is None or mark > lw:
            await storage.compare_and_set(LW_KEY, mark, expected=lw, ttl=None)
            if now - self._pruned_at > 60_000:
                self._pruned_at = now
                await self._prune(mark)
        return last < top or starved

    async def _prune(self, mark: int) -> None:
        """Drop writers whose last bucket is long past from ``tmo:writers`` (one try)."""
        current = await self.storage.get_state(WRITERS_KEY)
        if type(current) is not dict:
            return
        keep = {p: u for p, u in current.items() if type(u) is int and u >= mark - 60}
        if len(keep) < len(current):
            await self.storage.compare_and_set(WRITERS_KEY, keep, expected=current, ttl=None)

    async def _handle(self, due: list[_Item], now: int, held: dict[tuple[str, int], _Item]) -> set[int]:
        """Claim and start what is due, oldest first, as far as there is room for handlers.

        Entries that must be looked at again (their lease is about to run out, or their handler
        still runs here) are held back for the next poll, as are ``held`` ones left for lack of
        room; returns the buckets of the other entries left for lack of room (not read yet).
        """
        storage = self.storage
        groups: dict[tuple[str, int], list[_Item]] = {}
        for item in sorted(due, key=lambda it: it[3][2]):
            groups.setdefault((item[3][0], item[3][1]), []).append(item)
        pending = list(groups.items())
        fire: list[tuple[str, int, int, Spec, list[_Item]]] = []
        room = self.max_running - len(self._running)
        pos = 0
        while pos < len(pending) and len(fire) < room:
            chunk = pending[pos : pos + _READ_CHUNK // 3]
            names: list[str] = []
            for (conv, arm), _ in chunk:
                names += (conv, f"{conv}:tmo:l:{arm}", f"{conv}:tmo:n:{arm}")
            found = await storage.get_many(names)
            for n, ((conv, arm), items) in enumerate(chunk):
                if len(fire) >= room:
                    pos += n
                    break
                record = found.get(conv)
                timer = timer_of(record)
                count = found.get(f"{conv}:tmo:n:{arm}")
                lease = found.get(f"{conv}:tmo:l:{arm}")
                if timer is None or timer[1] != arm or (type(count) is int and count < 0):
                    self._mark(items)  # stale (the conversation moved on), or finished
                elif lease is not None:
                    self._covered(items, lease)
                elif (conv, arm) in self._inflight:
                    self._defer(items)  # its handler overran the lease here: not twice at once
                else:
                    spec = self._timers.specs.get(record["state"]) if type(record) is dict else None
                    if spec is None:
                        self._warn_undeclared(str(record["state"]) if type(record) is dict else "?")
                        self._mark(items)
                    else:
                        fire.append((conv, arm, min(e[3] for _, _, _, e in items), spec, items))
            else:
                pos += len(chunk)
        busy: set[int] = set()
        for _, items in pending[pos:]:  # no room left: next time
            for item in items:
                if (item[1], item[2]) in held:
                    self._deferred[(item[1], item[2])] = item
                else:
                    busy.add(item[0])
        self._starved = pos < len(pending)
        if fire:
            await self._claim_all(fire, now)
        return busy

    def _mark(self, items: list[_Item]) -> None:
        """Done with ``items`` (this process never looks at them again)."""
        for b, skey, i, _ in items:
            self._resolved.setdefault(b, {}).setdefault(skey, set()).add(i)

    def _defer(self, items: list[_Item]) -> None:
        """Look at ``items`` again on the next poll (their buckets are not read again)."""
        self._mark(items)
        for item in items:
            self._deferred[(item[1], item[2])] = item

    def _covered(self, items: list[_Item], lease: Any) -> None:
        """Another delivery holds the lease: entries before its re-entry are covered by it; the
        re-entry itself (or a later one) waits for the lease to run out."""
        ra = lease[1] if type(lease) is list and len(lease) == 2 and type(lease[1]) is int else 0
        self._mark([it for it in items if it[3][2] < ra])
        self._defer([it for it in items if it[3][2] >= ra])

    def _warn_undeclared(self, state: str) -> None:
        if state not in self._warned:
            self._warned.add(state)
            logger.warning(
                "timeouts: a deadline is armed for state %r, which this process does not declare; "
                "dropped here (every process must declare the same timeouts)", state
            )

    async def _claim_all(self, fire: list[tuple[str, int, int, Spec, list[_Item]]], now: int) -> None:
        timers = self._timers
        reentry = now + round(self.lease * 1000)
        # a re-entry first: if this process dies holding the lease, the deadline is found again
        stored = await asyncio.gather(
            *(timers.index(conv, arm, reentry, due) for conv, arm, due, _, _ in fire),
            return_exceptions=True,
        )
        claims = []
        for item, result in zip(fire, stored, strict=True):
            if isinstance(result, BaseException):
                logger.warning("timeouts: indexing a re-entry failed (%s); retrying", result)
                self._defer(item[4])
            else:
                claims.append(item)
        results = await asyncio.gather(
            *(self._claim(conv, arm, due, spec, items, reentry) for conv, arm, due, spec, items in claims),
            return_exceptions=True,
        )
        for item, result in zip(claims, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("timeouts: claiming %s failed (%s); retrying", item[0], result)
                self._defer(item[4])

    async def _claim(
        self, conv: str, arm: int, due: int, spec: Spec, items: list[_Item], reentry: int
    ) -> None:
        """Take the lease of one deadline and start its handler (or drop it, or hold it back)."""
        storage = self.storage
        lease_key, count_key = f"{conv}:tmo:l:{arm}", f"{conv}:tmo:n:{arm}"
        token = f"{self._timers.pid}:{random.getrandbits(32):08x}"
        lease = [token, reentry]
        if not await storage.compare_and_set(lease_key, lease, expected=None, ttl=self.lease):
            held = await storage.get_state(lease_key)
            if held is None:
                self._defer(items)  # ran out meanwhile: try again
            else:
                self._covered(items, held)
            return
        self._mark(items)
        attempt, record = await asyncio.gather(
            storage.increment(count_key, ttl=RETAIN_MS / 1000), storage.get_state(conv)
        )
        timer = timer_of(record)
        if attempt < 0:
            return  # finished meanwhile
        key = parse_key(conv)
        if timer is None or timer[1] != arm or type(record) is not dict or key is None:
            await storage.delete_many([lease_key, count_key])  # the conversation moved on
            return
        fired = now_ms()
        if attempt > self.max_attempts:
            logger.error(
                "timeout of conversation %s in state %s dropped: %d deliveries did not finish "
                "(max_attempts=%d)", conv, spec.state, attempt - 1, self.max_attempts,
            )
            await self._finish(conv, arm, lease_key, count_key)
            return
        if attempt == 1 and self.max_late is not None and fired - due > self.max_late * 1000:
            logger.info(
                "timeout of conversation %s in state %s dropped: %.3f s late (max_late=%s)",
                conv, spec.state, (fired - due) / 1000, self.max_late,
            )
            await self._finish(conv, arm, lease_key, count_key)
            return
        data = record.get("data")
        event = TimeoutEvent(
            key=key,
            state=spec.state,
            data=data if type(data) is dict else {},
            due_at=due / 1000,
            fired_at=fired / 1000,
            attempt=attempt,
            context=FSMContext(storage, key, ttl=self._ttl),
            version=timer[0],
        )
        self._inflight.add((conv, arm))
        task = asyncio.get_running_loop().create_task(
            self._run(spec, event, conv, arm, due, lease_key, count_key, lease)
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(
        self, spec: Spec, event: TimeoutEvent, conv: str, arm: int, due: int,
        lease_key: str, count_key: str, lease: list[Any],
    ) -> None:
        try:
            try:
                await spec.owner._invoke(spec.handler, event)
            except Exception as exc:  # noqa: BLE001 - retried or logged below
                await self._failed(event, exc, conv, arm, due, lease_key, count_key, lease)
            else:
                await self._finish(conv, arm, lease_key, count_key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the lease runs out; another process fires it
            logger.warning("timeouts: recording the outcome for %s failed (%s)", conv, exc)
        finally:
            self._inflight.discard((conv, arm))

    async def _invoke(self, handler: Handler, event: TimeoutEvent) -> None:
        named, anykw = self._params.get(handler, (frozenset(), False))
        kwargs = {
            name: factory(event)
            for name, factory in self._providers.items()
            if anykw or name in named
        }
        await handler(event, **kwargs)

    async def _failed(
        self, event: TimeoutEvent, exc: Exception, conv: str, arm: int, due: int,
        lease_key: str, count_key: str, lease: list[Any],
    ) -> None:
        if event.attempt >= self.max_attempts:
            logger.error(
                "timeout of conversation %s in state %s dropped after %d attempts; last error: %s",
                conv, event.state, event.attempt, type(exc).__name__,
            )
            await self._finish(conv, arm, lease_key, count_key)
            return
        delay = min(self.lease, self.retry_base * 2 ** (event.attempt - 1)) * random.uniform(0.8, 1.2)
        logger.warning(
            "timeout handler of conversation %s in state %s raised %s (attempt %d of %d); "
            "retrying in %.2f s", conv, event.state, type(exc).__name__, event.attempt,
            self.max_attempts, delay,
        )
        retry_at = now_ms() + round(delay * 1000)
        await self._timers.index(conv, arm, retry_at, due)
        await self.storage.compare_and_set(lease_key, ["wait", retry_at], expected=lease, ttl=delay)

    async def _finish(self, conv: str, arm: int, lease_key: str, count_key: str) -> None:
        """Mark a deadline finished (or forget its keys if the conversation moved on)."""
        storage = self.storage
        timer = timer_of(await storage.get_state(conv))
        if timer is not None and timer[1] == arm:
            await storage.set_state(count_key, _DONE, ttl=RETAIN_MS / 1000)
        else:
            await storage.delete_many([lease_key, count_key])
