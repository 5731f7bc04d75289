"""A small progress bar on stderr: counts, percentage and rate, redrawn at most 10 times a second.

Shown only when enabled: ``enabled=None`` means "when the stream is a terminal"; ``True`` forces
it (each redraw is then its own line when the stream is not a terminal, so logs stay readable).
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

__all__ = ["Progress"]

_WIDTH = 24
_INTERVAL = 0.1


class Progress:
    """Counts ``done`` out of ``total`` (``None``: unknown) things called ``unit``."""

    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        unit: str = "items",
        enabled: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = is_tty if enabled is None else enabled
        self._tty = is_tty
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._drawn_done = -1

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, total: int | None, *, started: float | None = None) -> None:
        """(Re)start the count with ``total`` things to do; the clock starts at ``started``
        (a ``time.monotonic()`` reading; default: now)."""
        self.total = total
        self.done = 0
        self.started = time.monotonic() if started is None else started

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more done and redraw if it is time (the final state is left to
        ``close``, which draws it with the time the work ended)."""
        self.done += n
        if self.enabled and (self.total is None or self.done < self.total):
            now = time.monotonic()
            if now - self._last_draw >= _INTERVAL:
                self._last_draw = now
                self._draw(now)

    def render(self, now: float | None = None) -> str:
        """The bar as text, e.g. ``migrate [######------]  500/1,000 keys  50%  2,000/s``."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * _WIDTH)
            bar = "#" * filled + "-" * (_WIDTH - filled)
            return (
                f"{self.label} [{bar}] {self.done:,}/{self.total:,} {self.unit} "
                f"{fraction * 100:3.0f}%  {rate:,.0f}/s  {elapsed:,.1f}s"
            )
        return f"{self.label} {self.done:,} {self.unit}  {rate:,.0f}/s  {elapsed:,.1f}s"

    def _draw(self, now: float) -> None:
        text = self.render(now)
        if self._tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._drawn_done = self.done

    def close(self, now: float | None = None) -> None:
        """Draw the final state as of ``now`` (a ``time.monotonic()`` reading; default: now) and
        end the line (if the bar is shown)."""
        if self.enabled:
            if self._tty or self._drawn_done != self.done:
                self._draw(time.monotonic() if now is None else now)
            if self._tty:
                self.stream.write("\n")
                self.stream.flush()
            self.enabled = False
