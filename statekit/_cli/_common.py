"""What every command shares: opening a store from a URL, the one-line error, JSON and tables."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO, TypeVar

from statekit.storage.base import BaseStorage
from statekit.storage.url import mask_url, open_storage

__all__ = [
    "CLIError",
    "Command",
    "add_json",
    "add_progress",
    "describe_store",
    "format_pairs",
    "format_table",
    "human_count",
    "jsonable",
    "one_line",
    "opened",
    "print_json",
    "run_async",
    "setup_logging",
    "sqlite_path",
]

T = TypeVar("T")

Command = Callable[[argparse.Namespace], int]
"""A command: gets the parsed arguments, prints, returns the exit status (errors raise)."""


class CLIError(Exception):
    """An error the command line reports as one line on stderr with exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _OneLine(logging.Formatter):
    """``statekit: warning: message (ErrorType: error)``: one line, no traceback, no secrets."""

    def format(self, record: logging.LogRecord) -> str:
        text = " ".join(record.getMessage().split())
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f" ({type(exc).__name__}: {one_line(exc)})"
        return f"statekit: {record.levelname.lower()}: {mask_url(text)}"


class _OncePer(logging.Filter):
    """Lets each distinct message through at most once per ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._seen: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        key = f"{record.name}:{record.msg}"
        if now - self._seen.get(key, -math.inf) < self.seconds:
            return False
        self._seen[key] = now
        return True


def setup_logging(debug: bool) -> None:
    """Library warnings on stderr as one line each, a repeated message at most every 10 s
    (``debug``: with tracebacks, every time)."""
    handler = logging.StreamHandler(sys.stderr)
    if debug:
        handler.setFormatter(logging.Formatter("statekit: %(levelname)s: %(message)s"))
    else:
        handler.setFormatter(_OneLine())
        handler.addFilter(_OncePer(10.0))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def one_line(exc: BaseException) -> str:
    """``exc`` as one line of text, credentials in URLs masked."""
    text = " ".join(str(exc).split())
    if not text:
        text = type(exc).__name__
    return mask_url(text)


def run_async(coro: Awaitable[T]) -> T:
    """Run ``coro`` on a fresh event loop and return its result."""

    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


def sqlite_path(storage: BaseStorage) -> str | None:
    """The file of a SQLite storage (``None`` for other backends and ``:memory:``)."""
    path = getattr(storage, "path", None)
    if storage.backend_name == "sqlite" and isinstance(path, str) and path != ":memory:":
        return path
    return None


def open_url(url: str, *, must_exist: bool) -> BaseStorage:
    """Return an unstarted storage for ``url``.

    ``must_exist``: a SQLite file that does not exist is an error instead of a new empty database
    (for commands that only read). Raises ``CLIError`` for a bad URL.
    """
    try:
        storage = open_storage(url)
    except (ValueError, TypeError) as exc:
        raise CLIError(one_line(exc), 2) from None
    path = sqlite_path(storage)
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise CLIError(f"SQLite database {path!r} is a directory, not a file")
        if must_exist and not p.exists():
            raise CLIError(f"no SQLite database at {str(p.resolve())!r} (from {mask_url(url)!r})")
    return storage


@asynccontextmanager
async def opened(url: str, *, must_exist: bool = False) -> AsyncIterator[BaseStorage]:
    """``open_url(url)`` started for the block, stopped after it."""
    storage = open_url(url, must_exist=must_exist)
    try:
        await storage.start()
        yield storage
    finally:
        await storage.stop()


def describe_store(storage: BaseStorage) -> str:
    """Where a storage keeps its data, for people (absolute path for SQLite files, no secrets)."""
    path = sqlite_path(storage)
    where = f"sqlite:///{os.path.abspath(path)}" if path is not None else storage.describe()
    return f"{mask_url(where)} (namespace {storage.namespace!r})"


# ---------------------------------------------------------------------------------------------
# output


def add_json(parser: argparse.ArgumentParser) -> None:
    """Add ``--json``."""
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout instead of text"
    )


def add_progress(parser: argparse.ArgumentParser) -> None:
    """Add ``--progress`` / ``--no-progress`` (default: only when stderr is a terminal)."""
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: only when stderr is a terminal)",
    )


def jsonable(value: Any) -> Any:
    """``value`` (a stored value) as JSON data.

    ``bytes`` become ``{"$bytes": "<base64>"}``; dict keys that are ``int`` become their decimal
    text and ``bytes`` keys ``"$bytes:<base64>"``; tuples become lists. Floats that JSON cannot
    hold (nan, inf) become strings.
    """
    if isinstance(value, bytes | bytearray):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(k, bytes | bytearray):
                name = "$bytes:" + base64.b64encode(bytes(k)).decode()
            else:
                name = str(k)
            out[name] = jsonable(v)
        return out
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def print_json(document: Any, stream: TextIO | None = None) -> None:
    """Print ``document`` as indented JSON (one document, trailing newline)."""
    out = stream if stream is not None else sys.stdout
    out.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def human_count(n: float) -> str:
    """``n`` with thousands separators (no decimals)."""
    return f"{n:,.0f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A plain-text table; ``align`` holds ``l`` / ``r`` per column (default: first left, rest right)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            a = align[i] if i < len(align) else ("l" if i == 0 else "r")
            parts.append(cell.ljust(widths[i]) if a == "l" else cell.rjust(widths[i]))
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def format_pairs(rows: Sequence[tuple[str, str]]) -> str:
    """``name  value`` lines, names padded to one width."""
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name.ljust(width)}  {value}".rstrip() for name, value in rows)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
