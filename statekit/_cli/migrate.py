"""``statekit migrate SRC_URL DST_URL``: copy every key of a store, with its remaining TTL.

Two passes over the source's keys (``scan_keys``, streamed in batches): the first counts them and
compares against the destination (so a conflict is refused before anything is written), the
second copies. Each batch: the destination's ``get_many`` (a key it already holds with an equal
value is left alone, so a re-run after an interruption copies only what is missing; a different
value stops the copy unless ``--overwrite``), then ``get_ttl`` of each key still to copy, then
their values (``get_many``); keys without expiry go in one ``set_many``, keys with one are
written with their remaining TTL (together when they expire within the same 10 ms). The next
batch is read while one is written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field

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
from statekit.codec import Value, encode_stored
from statekit.session.masking import mask_key
from statekit.storage.base import BaseStorage, same_stored
from statekit.storage.memory import MemoryStorage

__all__ = ["add_parser"]

_TTL_BUCKET_MS = 10
_TEST_DELAY_ENV = "_STATEKIT_TEST_BATCH_DELAY"  # test hook: seconds to sleep after each batch

_DESCRIPTION = """\
Copy every key of SRC_URL (one namespace) that matches --pattern into DST_URL, with the time it
has left to live (a key without expiry stays without expiry). Keys are read and written in
batches (--batch-size). Before writing anything, every source key is compared with the
destination: if the destination holds a different value under the same key, nothing is written
and the command fails, unless --overwrite. Keys the destination already holds with the same
value are skipped, so the command is safe to run again after an interruption: it copies only
what is missing. Namespaces come from the URLs (?namespace=NAME, default statekit), so a
namespace can be copied into another one."""


@dataclass
class Summary:
    """What a migration did (the ``--json`` document)."""

    source: str
    destination: str
    pattern: str
    dry_run: bool
    keys: int = 0
    copied: int = 0
    unchanged: int = 0
    overwritten: int = 0
    conflicts: int = 0
    expired: int = 0
    with_ttl: int = 0
    seconds: float = 0.0

    @property
    def keys_per_s(self) -> float:
        return self.keys / self.seconds if self.seconds > 0 else 0.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``migrate``."""
    p = sub.add_parser(
        "migrate",
        help="copy a store into another, TTLs kept (resumable)",
        description=_DESCRIPTION,
        epilog="examples:\n"
        "  statekit migrate sqlite:///bot.db redis://127.0.0.1:6379/0\n"
        "  statekit migrate 'redis://10.0.0.5:6379/0?namespace=mybot' sqlite:///backup.db --json\n"
        "  statekit migrate sqlite:///bot.db redis://127.0.0.1:6379/0 --dry-run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", metavar="SRC_URL", help="the store to copy from (never changed)")
    p.add_argument("dst", metavar="DST_URL", help="the store to copy into")
    p.add_argument("--pattern", default="*", help="copy only keys matching this glob (default: *)")
    p.add_argument(
        "--batch-size", type=int, default=1000, metavar="N", help="keys per batch (default: 1000)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace destination values that differ from the source's",
    )
    p.add_argument("--dry-run", action="store_true", help="compare and count only; write nothing")
    add_progress(p)
    add_json(p)
    p.set_defaults(func=run)


def _same(storage: BaseStorage, key: str, a: Value, b: Value) -> bool:
    """Value equality as compare-and-set sees it (canonical encodings compared)."""
    return same_stored(encode_stored(storage.codec, key, a), encode_stored(storage.codec, key, b))


async def _batches(storage: BaseStorage, pattern: str, size: int) -> AsyncIterator[list[str]]:
    """The keys of ``storage`` matching ``pattern``, ``size`` at a time, as they are scanned."""
    batch: list[str] = []
    async for key in storage.scan_keys(pattern):
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Migration:
    def __init__(
        self, src: BaseStorage, dst: BaseStorage, args: argparse.Namespace, summary: Summary
    ) -> None:
        self.src = src
        self.dst = dst
        self.args = args
        self.summary = summary
        self.delay = float(os.environ.get(_TEST_DELAY_ENV, "0") or 0)

    async def _conflicts(self, keys: Sequence[str]) -> tuple[int, int, str | None]:
        """(equal, different, first different key) among ``keys`` present in the destination."""
        present = await self.dst.get_many(keys)
        if not present:
            return 0, 0, None
        values = await self.src.get_many(list(present))
        equal = different = 0
        first: str | None = None
        for key, theirs in present.items():
            if key not in values:
                continue
            if _same(self.src, key, values[key], theirs):
                equal += 1
            else:
                different += 1
                first = first or key
        return equal, different, first

    async def check(self) -> None:
        """First pass: count the keys and refuse (before writing) if values differ."""
        s = self.summary
        first: str | None = None
        async for batch in _batches(self.src, s.pattern, self.args.batch_size):
            s.keys += len(batch)
            equal, different, key = await self._conflicts(batch)
            s.unchanged += equal
            s.conflicts += different
            first = first or key
        if s.conflicts and not self.args.overwrite and not s.dry_run:
            raise CLIError(
                f"destination {s.destination} already holds different values for "
                f"{s.conflicts:,} of the {s.keys:,} keys (first: {mask_key(first or '')!r}); "
                "nothing was written. "
                "Pass --overwrite to replace them"
            )

    async def copy(self, progress: Progress) -> None:
        """Second pass: copy every batch; the next batch is read while one is being written."""
        self.summary.unchanged = 0
        writing: asyncio.Task[None] | None = None
        try:
            async for batch in _batches(self.src, self.summary.pattern, self.args.batch_size):
                plan = await self._prepare(batch)
                if writing is not None:
                    # shielded: Ctrl-C (a cancellation) must not tear the batch being written,
                    # so that the count of copied keys is what the destination holds
                    await asyncio.shield(writing)
                writing = asyncio.ensure_future(self._write(plan, progress))
            if writing is not None:
                await asyncio.shield(writing)
        finally:
            if writing is not None and not writing.done():
                await asyncio.wait([writing])  # a batch being written is finished, never torn

    async def _deadline(self, key: str) -> float | None:
        """When ``key`` expires on this process's monotonic clock (``None``: never / absent)."""
        ttl = await self.src.get_ttl(key)
        return None if ttl is None else time.monotonic() + ttl

    async def _prepare(self, keys: Sequence[str]) -> _Plan:
        """Read a batch and decide what to write; ``CLIError`` if the destination differs."""
        s = self.summary
        plan = _Plan(len(keys))
        existing = await self.dst.get_many(keys)
        replace: set[str] = set()
        if existing:
            current = await self.src.get_many(list(existing))
            for key, theirs in existing.items():
                if key not in current:
                    continue  # gone from the source meanwhile; counted as expired below
                if _same(self.src, key, current[key], theirs):
                    s.unchanged += 1
                elif not self.args.overwrite:
                    raise CLIError(
                        f"destination {s.destination} got a different value for "
                        f"{mask_key(key)!r} while "
                        f"migrating; {s.copied:,} keys were copied before it and this batch was "
                        "not written. Pass --overwrite to replace it, or run again"
                    )
                else:
                    replace.add(key)
        todo = [k for k in keys if k not in existing or k in replace]
        if not todo:
            return plan
        # TTLs before values: a key that expires between the two reads is then absent from the
        # values, never copied without its expiry
        deadlines = await asyncio.gather(*(self._deadline(k) for k in todo))
        values = await self.src.get_many(todo)
        s.expired += len(todo) - len(values)
        for key, deadline in zip(todo, deadlines, strict=True):
            if key not in values:
                continue
            plan.replaced += key in replace
            if deadline is None:
                plan.plain[key] = values[key]
            else:
                # keys expiring within the same 10 ms are written together
                bucket = round(deadline * 1000 / _TTL_BUCKET_MS)
                plan.timed.setdefault(bucket, {})[key] = values[key]
        return plan

    async def _write(self, plan: _Plan, progress: Progress) -> None:
        """Write a batch: keys without expiry in one ``set_many``, the others with the time they
        have left (computed now)."""
        s = self.summary
        now_ms = time.monotonic() * 1000
        writes = []
        if plan.plain:
            writes.append(self.dst.set_many(plan.plain, ttl=None))
        written = len(plan.plain)
        for bucket, items in plan.timed.items():
            left_ms = bucket * _TTL_BUCKET_MS - now_ms
            if left_ms < 1:
                s.expired += len(items)
                continue
            written += len(items)
            s.with_ttl += len(items)
            if len(items) == 1:  # one command instead of a transaction of one
                [(key, value)] = items.items()
                writes.append(self.dst.set_state(key, value, ttl=left_ms / 1000))
            else:
                writes.append(self.dst.set_many(items, ttl=left_ms / 1000))
        await asyncio.gather(*writes)
        s.copied += written
        s.overwritten += plan.replaced
        progress.advance(plan.size)
        if self.delay:
            await asyncio.sleep(self.delay)


@dataclass
class _Plan:
    """What to write of one batch."""

    size: int
    plain: dict[str, Value] = field(default_factory=dict)
    timed: dict[int, dict[str, Value]] = field(default_factory=dict)
    replaced: int = 0


def _same_store(src: BaseStorage, dst: BaseStorage) -> bool:
    return describe_store(src) == describe_store(dst) and src.backend_name != "memory"


def run(args: argparse.Namespace) -> int:
    """Migrate; print a summary (or ``--json``)."""
    if args.batch_size < 1:
        raise CLIError("--batch-size must be >= 1", 2)
    src = open_url(args.src, must_exist=True)
    dst = open_url(args.dst, must_exist=False)
    if _same_store(src, dst):
        raise CLIError(f"source and destination are the same store: {describe_store(src)}", 2)
    summary = Summary(
        source=describe_store(src),
        destination=describe_store(dst),
        pattern=args.pattern,
        dry_run=args.dry_run,
    )
    path = sqlite_path(dst)
    if args.dry_run and path is not None and not os.path.exists(path):
        # a dry run must not create the destination file: compare against an empty store
        dst = MemoryStorage(namespace=dst.namespace)
    started = time.monotonic()
    progress = Progress("migrate", unit="keys", enabled=args.progress)
    copying = False

    async def main() -> None:
        nonlocal copying
        try:
            await src.start()
            await dst.start()
            migration = _Migration(src, dst, args, summary)
            await migration.check()
            if args.dry_run or summary.unchanged == summary.keys:
                return  # nothing to write (a re-run of a finished migration ends here)
            # the bar's clock is the summary's: both rates are keys over the same seconds
            progress.start(summary.keys, started=started)
            copying = True
            await migration.copy(progress)
        finally:
            try:
                await src.stop()
                await dst.stop()
            finally:
                summary.seconds = time.monotonic() - started
                if copying:  # no bar when nothing was to be copied or the command failed first
                    progress.close(now=started + summary.seconds)

    try:
        run_async(main())
    except KeyboardInterrupt:
        raise CLIError(
            f"interrupted after copying {summary.copied:,} keys; run the same command again to "
            "copy the rest (keys already copied are skipped)",
            130,
        ) from None
    if args.json:
        document = {**asdict(summary), "seconds": round(summary.seconds, 3)}
        print_json({**document, "keys_per_s": round(summary.keys_per_s, 1)})
        return 0
    rows = [
        ("source", summary.source),
        ("destination", summary.destination),
        ("keys in source", human_count(summary.keys)),
    ]
    if args.dry_run:
        rows += [
            ("already identical", human_count(summary.unchanged)),
            ("different in destination", human_count(summary.conflicts)),
            ("would copy", human_count(summary.keys - summary.unchanged)),
        ]
    else:
        rows += [
            ("copied", human_count(summary.copied)),
            ("  of which with a TTL", human_count(summary.with_ttl)),
            ("  of which overwritten", human_count(summary.overwritten)),
            ("already identical (skipped)", human_count(summary.unchanged)),
            ("expired while copying", human_count(summary.expired)),
        ]
    rows += [("time", f"{summary.seconds:.2f} s ({human_count(summary.keys_per_s)} keys/s)")]
    title = "migrate (dry run: nothing written)" if args.dry_run else "migrate: done"
    print(title)
    print(format_pairs(rows))
    return 0
