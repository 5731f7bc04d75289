"""ferogram glue: ``FerogramSession``, the object behind a ferogram ``CustomSession`` that keeps a
client's session in any statekit storage (memory, SQLite, Redis, ...), with the ownership lease
and optional encryption at rest. Needs the ``ferogram`` extra.

::

    session = FerogramSession(SQLiteStorage("bot.db"), "me")
    with session:                                   # or: async with session:
        client = ferogram.Client(session=session.custom_session(), api_id=..., api_hash=...)
        ...

ferogram's Rust core calls ``save(bytes)``, ``load()`` and ``delete()`` synchronously, from its
own threads (and may call them from any thread). So the storage is driven by an event loop of
this object's own, running in a background thread: the storage is started, used and stopped on
that loop (give this object a storage instance of its own; open another one on the same database
or URL for other uses), and the ownership lease is renewed there, whatever the calling threads
do. ``load()`` never waits for the storage: the session is read into memory by ``open()``.
``save()`` hands the blob to that loop and waits for it to be written, at most ``timeout``
seconds; writes are applied in order and coalesced (a save that waited while a newer one was
queued is covered by that newer write). On a slow store a ``save()`` that takes longer than
``timeout`` raises ``TimeoutError`` to ferogram (which logs it and carries on) while the write
still completes in the background; ``close()`` waits for every outstanding write. A call from
the adapter's own loop thread raises ``RuntimeError`` instead of deadlocking.

Stored: the home data centre's key and address as the session record of ``SessionStore``, the
peers (Bot-API ids) and update states as its peers and update states (so other statekit
adapters and ``statekit session`` read the same session), and what only ferogram has (other data
centres' keys, salts and time offsets, min-peers, the future auth token, channel kinds) under
``session:{NAME}:ferogram``, sealed with the cipher when one is given. Each ``save()`` writes
only what changed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any, TypeVar

from statekit.errors import SessionFormatError
from statekit.session import SessionCipher
from statekit.session.records import Peer, SessionSnapshot, UpdateState
from statekit.session.store import SessionStore
from statekit.session.support import ferogram_format as fero
from statekit.storage.base import BaseStorage

__all__ = ["FerogramSession"]

T = TypeVar("T")

_PeerSig = tuple[int, int, int, "int | None", bool]
_MAX_PEERS = 0xFFFF  # a ferogram blob holds at most this many peers
_RECORD_FIELDS = ("dc_id", "server_address", "port", "auth_key", "test_mode")


def _sig(p: fero.FerogramPeer) -> _PeerSig:
    return (p.id, p.access_hash, p.type, p.channel_kind, p.community)


def _merge(old: Peer | None, new: Peer) -> Peer | None:
    """The peer to write for ``new`` (as ferogram reported it), or None if ``old`` (stored,
    maybe by another client) already says the same to ferogram. What ferogram does not know is
    kept: usernames, phone number, and a finer type (``bot``, ``forum``) that maps to the same."""
    if old is None:
        return new
    was, now = fero.ferogram_peer(old), fero.ferogram_peer(new)
    if was == now:
        return None
    same_kind = (
        was is not None
        and now is not None
        and (was.type, was.channel_kind, was.community)
        == (now.type, now.channel_kind, now.community)
    )
    return Peer(
        new.id,
        new.access_hash,
        old.type if same_kind else new.type,
        old.usernames,
        old.phone_number,
    )


class _LoopThread:
    """An event loop running forever in a daemon thread; ``call`` runs a coroutine on it and
    waits for the result from another thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def on_loop(self) -> bool:
        return threading.get_ident() == self.thread.ident

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self.on_loop():
            coro.close()
            raise RuntimeError(
                "FerogramSession called from its own storage loop thread; this would deadlock"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"{what} did not finish within {timeout} s (slow storage); it goes on in the "
                "background"
            ) from None

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()


class FerogramSession:
    """A ferogram session backend (``CustomSession`` object) keeping session ``name`` in a
    statekit ``storage``.

    ``open()`` (or ``with`` / ``async with``) starts the storage on this object's own loop
    thread, takes the ownership lease (``SessionLockedError`` naming the holder if another
    process has it; ``lease_wait`` seconds are waited for it) and reads the session into memory;
    until then ``load()`` / ``save()`` / ``delete()`` raise ``RuntimeError``, so a client never
    starts a fresh login by mistake. ``cipher`` (a ``SessionCipher`` or its key) keeps the
    session record and ferogram's extra record encrypted at rest. ``timeout``: seconds a
    ``save()`` / ``delete()`` waits for the storage (see the module docstring).
    """

    def __init__(
        self,
        storage: BaseStorage,
        name: str,
        *,
        cipher: SessionCipher | bytes | None = None,
        lease_ttl: float = 30.0,
        lease_wait: float = 0.0,
        timeout: float = 10.0,
    ) -> None:
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise ValueError(f"timeout must be seconds > 0, got {timeout!r}")
        self._cipher = (
            cipher if isinstance(cipher, SessionCipher) or cipher is None else SessionCipher(cipher)
        )
        self.store = SessionStore(
            storage, name, cipher=self._cipher, lease_ttl=lease_ttl, peer_cache=0
        )
        self.session_name = name
        self.lease_wait = lease_wait
        self.timeout = float(timeout)
        self._extra_key = f"session:{{{name}}}:ferogram"
        self._aad = f"statekit ferogram session {name}".encode()
        self._runner: _LoopThread | None = None
        self._state_lock = threading.Lock()
        self._opened = False
        self._blob: bytes | None = None
        # what the storage holds (the baseline each save is compared with)
        self._fields: dict[str, Any] = {}
        self._peers: dict[int, Peer] = {}
        self._states: dict[int, UpdateState] = {}
        self._extra: bytes | None = None  # ferogram's own record as stored, in plain
        # coalesced writes: the newest blob handed in, its generation, the last one written
        self._latest: fero.FerogramSession | None = None
        # the peers of the last blob written (or read), as ferogram keeps them: a save whose
        # peers are the same writes none
        self._peer_sig: set[_PeerSig] = set()
        self._latest_gen = 0
        self._written_gen = 0
        self._write_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        state = "open" if self._opened else "not open"
        return f"FerogramSession({self.session_name!r}, {self.store.storage!r}, {state})"

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> FerogramSession:
        """Start the storage (on this object's loop thread), take the ownership lease and read
        the session into memory; return self. Blocks the calling thread (use ``aopen`` from a
        coroutine). Raises ``SessionLockedError`` naming the holder, ``SessionFormatError`` if
        the stored session cannot be read."""
        if self._opened:
            return self
        if self._runner is None:
            self._runner = _LoopThread(f"statekit-ferogram-{self.session_name}")
        try:
            self._runner.call(self._open(), None, "opening the session")
        except BaseException:
            self._stop_runner()
            raise
        self._opened = True
        return self

    async def aopen(self) -> FerogramSession:
        """:meth:`open` without blocking the running event loop."""
        return await asyncio.to_thread(self.open)

    def close(self) -> None:
        """Wait for outstanding writes, release the lease, stop the storage and the loop
        thread; idempotent."""
        if self._runner is None:
            return
        try:
            if self._opened:
                self._runner.call(self._close(), None, "closing the session")
        finally:
            self._opened = False
            self._stop_runner()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the running event loop."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> FerogramSession:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> FerogramSession:
        return await self.aopen()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _stop_runner(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop()

    def custom_session(self) -> Any:
        """``ferogram.CustomSession(self)``, to pass as ``Client(session=...)``."""
        from ferogram import CustomSession

        return CustomSession(self)

    async def _open(self) -> None:
        self._write_lock = asyncio.Lock()
        await self.store.storage.start()
        try:
            await self.store.open(wait=self.lease_wait)
            try:
                await self._read()
            except BaseException:
                await self.store.close()
                raise
        except BaseException:
            await self.store.storage.stop()
            raise

    async def _close(self) -> None:
        try:
            if self._write_lock is not None:
                async with self._write_lock:  # every queued write has run
                    pass
        finally:
            try:
                await self.store.close()
            finally:
                await self.store.storage.stop()

    # ------------------------------------------------------------------ reading

    async def _read_extra(self) -> fero.FerogramSession | None:
        value = await self.store.storage.get_state(self._extra_key)
        self._extra = None
        if value is None:
            return None
        if not isinstance(value, bytes):
            raise SessionFormatError(
                f"ferogram record of session {self.session_name!r} is a "
                f"{type(value).__name__}, expected bytes"
            )
        blob = value
        if self._cipher is not None:
            blob = self._cipher.decrypt(
                value, self._aad, f"ferogram record of session {self.session_name!r}"
            )
        elif blob[:1] not in (bytes([fero.CURRENT_VERSION]),):
            raise SessionFormatError(
                f"ferogram record of session {self.session_name!r} is encrypted at rest: "
                "a cipher key is needed to read it"
            )
        what = f"ferogram record of session {self.session_name!r}"
        try:
            extra = fero.parse_blob(blob, what)
        except SessionFormatError as exc:
            if self._cipher is not None:
                raise
            # an encrypted record starts with a random byte: one in 256 starts like a plain one
            raise SessionFormatError(
                f"{what} is encrypted at rest or damaged: a cipher key is needed to read an "
                f"encrypted one ({exc})"
            ) from None
        self._extra = blob
        return extra

    async def _read(self) -> None:
        extra = await self._read_extra()
        fields = await self.store.get_fields()
        self._fields = {k: fields.get(k) for k in _RECORD_FIELDS}
        data = await self.store.load()
        peers = [peer async for peer in self.store.iter_peers()]
        self._peers = {p.id: p for p in peers}
        states = await self.store.get_update_states()
        self._states = {s.id: s for s in states}
        if data is None:
            # never logged in (or not through a client statekit knows): all there is, if
            # anything, is ferogram's own record
            self._blob = None if extra is None else fero.build_blob(extra)
            return
        if len(peers) > _MAX_PEERS:  # a blob holds at most 65535: keep the latest seen
            peers.sort(key=lambda p: p.last_update_on or 0, reverse=True)
            peers = peers[:_MAX_PEERS]
        snap = SessionSnapshot(data, peers, states)
        built = fero.from_snapshot(snap, base=extra)
        self._blob = fero.build_blob(built)
        self._peer_sig = {_sig(p) for p in built.peers}

    # ------------------------------------------------------------------ writing

    def _split(self, session: fero.FerogramSession) -> tuple[SessionSnapshot | None, bytes]:
        """The neutral part of ``session`` (None if it has no key for its home data centre yet)
        and the plain blob of what only ferogram keeps."""
        try:
            snap: SessionSnapshot | None = fero.to_snapshot(session, with_peers=False)
        except SessionFormatError:
            snap = None
        if snap is None:
            return None, fero.build_blob(session)  # everything stays in ferogram's record
        keep: list[fero.FerogramPeer] = []
        for p in session.peers:
            # channel kinds the neutral type does not carry (broadcast, gigagroup)
            if p.type == 1 and not p.community and p.channel_kind in (0, 2):
                keep.append(p)
        extra = replace(
            session, pts=0, qts=0, date=0, seq=0, channels=[], peers=keep, version=8
        )
        return snap, fero.build_blob(extra)

    async def _write(self, gen: int) -> None:
        lock = self._write_lock
        if lock is None:  # pragma: no cover - set by open()
            raise RuntimeError("FerogramSession is not open")
        async with lock:
            if gen <= self._written_gen:
                return  # a newer blob, written meanwhile, already holds this one's state
            with self._state_lock:
                session, latest = self._latest, self._latest_gen
            if session is None:
                return
            snap, extra_plain = self._split(session)
            if snap is not None:
                await self._write_neutral(snap, session.peers)
            if extra_plain != self._extra:
                value = extra_plain
                if self._cipher is not None:
                    value = self._cipher.encrypt(extra_plain, self._aad)
                if self.store.lease is not None:
                    self.store.lease.check()
                await self.store.storage.set_state(self._extra_key, value, ttl=None)
                self._extra = extra_plain
            self._written_gen = max(self._written_gen, latest)

    async def _write_neutral(
        self, snap: SessionSnapshot, ferogram_peers: list[fero.FerogramPeer]
    ) -> None:
        d = snap.data
        fields = {
            "dc_id": d.dc_id,
            "server_address": d.server_address,
            "port": d.port,
            "auth_key": d.auth_key,
            "test_mode": d.test_mode,
        }
        changed = {k: v for k, v in fields.items() if self._fields.get(k) != v}
        if changed:
            await self.store.update(**changed)
            self._fields.update(changed)
        sig = {_sig(p) for p in ferogram_peers}
        fresh = [p for p in ferogram_peers if _sig(p) not in self._peer_sig]  # usually none
        peers = [
            merged
            for f in fresh
            if (p := fero.neutral_peer(f)) is not None
            and (merged := _merge(self._peers.get(p.id), p)) is not None
        ]
        if peers:
            await self.store.update_peers(peers, keep_usernames=True)
            for p in peers:
                self._peers[p.id] = p
        self._peer_sig = sig
        states = {s.id: s for s in snap.update_states}
        changed_states = [s for box, s in states.items() if self._states.get(box) != s]
        gone = [box for box in self._states if box not in states]
        if changed_states:
            await self.store.set_update_state(changed_states)
        if gone:
            await self.store.delete_update_state(gone)
        self._states = states

    # ------------------------------------------------------------------ ferogram's interface

    def _runner_open(self) -> _LoopThread:
        runner = self._runner
        if not self._opened or runner is None:
            raise RuntimeError(
                f"FerogramSession {self.session_name!r} is not open: call open() (or use "
                "'with' / 'async with') before starting the client"
            )
        return runner

    def name(self) -> str:
        """The backend name ferogram shows in its logs."""
        return f"statekit:{self.session_name}"

    def load(self) -> bytes | None:
        """The session blob (version 8), or None if the storage holds no session; served from
        memory."""
        self._runner_open()
        with self._state_lock:
            return self._blob

    def save(self, data: bytes) -> None:
        """Write ferogram's session blob to the storage; wait up to ``timeout`` seconds.

        Raises ``SessionFormatError`` if ``data`` is not a ferogram blob, ``TimeoutError`` on a
        slow storage (the write goes on), ``SessionLockedError`` if the lease was lost.
        """
        runner = self._runner_open()
        blob = bytes(data)
        session = fero.parse_blob(blob, "blob saved by ferogram")  # garbage is refused here
        with self._state_lock:
            self._blob = blob
            self._latest = session
            self._latest_gen += 1
            gen = self._latest_gen
        runner.call(self._write(gen), self.timeout, "saving the ferogram session")

    def delete(self) -> None:
        """Delete the session and everything it owns from the storage (the lease is kept)."""
        runner = self._runner_open()
        runner.call(self._delete(), self.timeout, "deleting the ferogram session")

    async def _delete(self) -> None:
        lock = self._write_lock
        if lock is None:  # pragma: no cover - set by open()
            raise RuntimeError("FerogramSession is not open")
        async with lock:
            await self.store.delete()
            with self._state_lock:
                self._blob = None
                self._latest = None
                self._written_gen = self._latest_gen
            self._fields, self._peers, self._states = {}, {}, {}
            self._peer_sig = set()
            self._extra = None
