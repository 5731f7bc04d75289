"""Auto-pipelined command lanes: the single-key commands of one ``RedisStorage`` sent over a few
connections it holds from its redis-py pool.

A command issued while a lane is idle goes out at once on that lane. A command issued while every
lane is busy waits; when a lane frees up, all waiting commands go out together as one pipelined
write and their replies are read in order (like the SQLite backend's group commit). Under load
this costs one socket write and one wake-up per batch instead of one per command; alone, a
command skips redis-py's per-command pool checkout.

Lane connections do without redis-py's per-write ``socket_timeout`` (an ``asyncio.wait_for`` on
every write, which creates a task); instead one timer per storage checks the exchanges in flight
every half ``socket_timeout`` and ends those past their deadline with ``asyncio.TimeoutError``
(so a timeout fires after 1 to 1.5 times ``socket_timeout``). The setting is put back when the
connection returns to the pool. Commands are packed by ``hiredis.pack_command`` when hiredis is
installed. A command of more than ``_MANY_ARGS`` arguments and ``_PIECE_BYTES`` (a large ``MSET``)
is packed and sent ``_PIECE_BYTES`` at a time, the event loop running in between (packing
megabytes at once held the loop for 5-15 ms); if that send stops part-way, the connection is
dropped.

Replies are redis-py's raw replies (no response callbacks). An error reply raises its redis-py
exception for that command only. Connection errors are retried with the connection's own
``Retry`` policy, as redis-py does for ``execute_command``; a retry sends again only the commands
of a batch whose replies had not been read.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is an optional extra
    _hiredis_pack = None

__all__ = ["CommandLanes"]

# "has the server sent something (or closed) while this connection sat idle": ``can_read`` from
# redis-py 8 on, ``can_read_destructive`` before (deprecated in 8)
_HAS_DATA = "can_read" if hasattr(AbstractConnection, "can_read") else "can_read_destructive"


def _has_data(conn: AbstractConnection) -> Awaitable[bool]:
    # looked up on the connection: its class may override it (fakeredis does)
    return getattr(conn, _HAS_DATA)()  # type: ignore[no-any-return]

Command = tuple[Any, ...]


class _Pending:
    """A command waiting for a lane, and the future its caller awaits."""

    __slots__ = ("command", "future")

    def __init__(self, command: Command, future: asyncio.Future[Any]) -> None:
        self.command = command
        self.future = future


class _Deadlines:
    """The exchanges in flight (by task) and their deadlines, checked by one timer that runs
    every half ``timeout`` while any is in flight: a task past its deadline is cancelled, and the
    exchange turns that cancellation into ``asyncio.TimeoutError``. One dict entry per exchange
    instead of a timer created and cancelled per command, as ``asyncio.timeout`` does."""

    __slots__ = ("_expired", "_inflight", "_timer", "timeout")

    def __init__(self) -> None:
        self.timeout: float | None = None
        self._inflight: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def enter(self) -> asyncio.Task[Any] | None:
        """Start the clock of the current task's exchange (None: no timeout is set)."""
        timeout = self.timeout
        if timeout is None:
            return None
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - lanes are used from coroutines only
            return None
        loop = task.get_loop()
        self._inflight[task] = loop.time() + timeout
        if self._timer is None:
            self._timer = loop.call_later(timeout / 2, self._check, loop)
        return task

    def leave(self, task: asyncio.Task[Any]) -> None:
        del self._inflight[task]
        self._expired.discard(task)  # expired while its reply came in: nothing more to do here

    def timed_out(self, task: asyncio.Task[Any]) -> bool:
        """Whether the cancellation ``task`` just met was this timer's (and only this timer's)."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        if sys.version_info >= (3, 11):
            return task.uncancel() == 0  # also cancelled by someone else: let that through
        return True  # pragma: no cover - Python 3.10 counts no cancellations

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        for task, deadline in list(self._inflight.items()):
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        if self._inflight and self.timeout is not None:
            self._timer = loop.call_later(self.timeout / 2, self._check, loop)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class CommandLanes:
    """Up to ``size`` connections of ``pool``, taken when first needed and kept until ``close()``."""

    __slots__ = ("_deadlines", "_held", "_idle", "_opened", "_pending", "_pool", "_size", "_tasks", "_timeout")

    def __init__(self, pool: ConnectionPool | Any, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size!r}")
        self._pool: Any = pool
        self._size = size
        self._held: list[AbstractConnection] = []
        self._opened = 0
        self._idle: list[AbstractConnection] = []
        self._pending: list[_Pending] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._timeout: float | None = None
        self._deadlines = _Deadlines()

    @property
    def size(self) -> int:
        """How many connections the lanes may hold."""
        return self._size

    async def call(self, *command: Any) -> Any:
        """Send ``command`` and return its raw reply (raises redis-py's exception for an error
        reply, a connection failure or a timeout)."""
        idle = self._idle
        if idle:
            conn = idle.pop()
        elif self._opened < self._size:
            self._opened += 1  # counted before the await: concurrent callers must not overshoot
            try:
                conn = await self._open()
            except BaseException as exc:
                self._opened -= 1
                if not self._opened and self._pending:  # no lane left to serve the queued commands
                    if isinstance(exc, Exception):
                        self._fail_pending(exc)
                    else:  # this caller was cancelled: open a lane for the others
                        self._opened += 1
                        self._spawn(self._open_and_drain())
                raise
        else:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._pending.append(_Pending(command, future))
            return await future
        try:
            replies = await conn.retry.call_with_retry(
                lambda: _exchange(conn, [command], [_UNREAD], self._deadlines),
                lambda _: conn.disconnect(),
            )
        finally:
            self._release(conn)
        reply = replies[0]
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    def _release(self, conn: AbstractConnection) -> None:
        """Give ``conn`` to the waiting commands, or back to the idle lanes."""
        if not self._pending:
            self._idle.append(conn)
            return
        self._spawn(self._drain(conn))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open_and_drain(self) -> None:
        try:
            conn = await self._open()
        except Exception as exc:  # noqa: BLE001 - handed to the waiting callers
            self._opened -= 1
            self._fail_pending(exc)
            return
        await self._drain(conn)

    async def _open(self) -> AbstractConnection:
        conn: AbstractConnection = await self._pool.get_connection()
        self._timeout = self._deadlines.timeout = conn.socket_timeout
        conn.socket_timeout = None
        self._held.append(conn)
        return conn

    def _fail_pending(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, []
        for p in pending:
            if not p.future.done():
                p.future.set_exception(exc)

    async def _drain(self, conn: AbstractConnection) -> None:
        """Send the waiting commands on ``conn``, batch after batch, until none is left."""
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                live = [p for p in batch if not p.future.done()]  # skip cancelled callers
                if live:
                    await self._send_batch(conn, live)
        finally:
            self._idle.append(conn)

    async def _send_batch(self, conn: AbstractConnection, batch: list[_Pending]) -> None:
        commands = [p.command for p in batch]
        replies: list[Any] = [_UNREAD] * len(batch)
        try:
            await conn.retry.call_with_retry(
                lambda: _exchange(conn, commands, replies, self._deadlines),
                lambda _: conn.disconnect(),
            )
        except Exception as exc:  # noqa: BLE001 - every unanswered caller gets the failure
            for p, reply in zip(batch, replies, strict=True):
                if reply is _UNREAD and not p.future.done():
                    p.future.set_exception(exc)
        for p, reply in zip(batch, replies, strict=True):
            if reply is _UNREAD or p.future.done():
                continue
            if isinstance(reply, ResponseError):
                p.future.set_exception(reply)
            else:
                p.future.set_result(reply)

    async def close(self) -> None:
        """Wait for batches in flight, then give every held connection back to the pool."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._deadlines.close()
        held, self._held, self._idle, self._opened = self._held, [], [], 0
        for conn in held:
            conn.socket_timeout = self._timeout
            await self._pool.release(conn)


_UNREAD: Any = object()
_MANY_ARGS = 256  # a command with more arguments is packed and sent in pieces
_PIECE_BYTES = 256 * 1024  # bytes of such a command packed and sent in one turn of the loop


def _is_large(command: Command) -> bool:
    """Whether ``command`` has more than ``_MANY_ARGS`` arguments and ``_PIECE_BYTES`` of them."""
    if len(command) <= _MANY_ARGS:
        return False
    return sum(len(arg) for arg in command if isinstance(arg, bytes | str)) > _PIECE_BYTES


def _pieces(conn: AbstractConnection, command: Command) -> Iterator[bytes]:
    """``command`` in the Redis protocol (an array of bulk strings, its arguments encoded as the
    connection encodes them), about ``_PIECE_BYTES`` at a time. redis-py and hiredis pack a command
    in one go; this packs it as it is sent. A command name of several words (``"CLIENT LIST"``)
    is sent as separate arguments, as redis-py sends it."""
    encode: Callable[[Any], bytes] = conn.encoder.encode
    name = command[0]
    if isinstance(name, str | bytes):
        command = (*name.split(), *command[1:])
    parts: list[bytes] = [b"*%d\r\n" % len(command)]
    size = 0
    for arg in command:
        data = encode(arg)
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
        size += len(data) + 16
        if size >= _PIECE_BYTES:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)


async def _exchange(
    conn: AbstractConnection, commands: Sequence[Command], replies: list[Any], deadlines: _Deadlines
) -> list[Any]:
    """Send the commands whose reply is still ``_UNREAD`` in one write and read their replies into
    ``replies`` (an error reply is stored as its exception), before the deadline (else
    ``asyncio.TimeoutError``; the connection is dropped). Returns ``replies``."""
    if conn.is_connected:
        try:
            stale = await _has_data(conn)
        except (RedisConnectionError, RedisTimeoutError, OSError):  # redis-py < 8 raises here
            stale = True
        if stale:
            await conn.disconnect()  # closed by the server while idle (or unread data): start afresh
    todo = [i for i, reply in enumerate(replies) if reply is _UNREAD]
    packed: Any = None
    if len(todo) == 1 and _is_large(commands[todo[0]]):
        pass  # sent in pieces below
    elif _hiredis_pack is not None:
        packed = b"".join([_hiredis_pack(commands[i]) for i in todo])
    elif len(todo) == 1:
        packed = conn.pack_command(*commands[todo[0]])
    else:
        packed = conn.pack_commands([commands[i] for i in todo])
    task = deadlines.enter()
    try:
        if packed is not None:
            await conn.send_packed_command(packed, check_health=False)
        else:
            await _send_in_pieces(conn, commands[todo[0]])
        for i in todo:
            try:
                replies[i] = await conn.read_response()
            except ResponseError as exc:
                replies[i] = exc
    except asyncio.CancelledError:
        if task is not None and deadlines.timed_out(task):
            await conn.disconnect()
            raise asyncio.TimeoutError(
                f"no reply from Redis within {deadlines.timeout} s (socket_timeout)"
            ) from None
        raise
    finally:
        if task is not None:
            deadlines.leave(task)
    return replies


async def _send_in_pieces(conn: AbstractConnection, command: Command) -> None:
    """Send a large ``command`` piece by piece, the event loop running between pieces. If the
    send stops part-way (an error, a cancellation) the connection is dropped: the next command on
    it would otherwise be read by the server as the rest of this one."""
    sent = False
    try:
        for n, piece in enumerate(_pieces(conn, command)):
            if n:
                await asyncio.sleep(0)
            await conn.send_packed_command(piece, check_health=False)
        sent = True
    finally:
        if not sent:
            await conn.disconnect()
