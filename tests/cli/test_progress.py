"""The progress bar: shown only on a terminal unless forced, counts and percentage, final line."""

from __future__ import annotations

import io

from statekit._cli._progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_hidden_when_not_a_terminal() -> None:
    out = io.StringIO()
    with Progress("copy", total=10, unit="keys", stream=out) as bar:
        bar.advance(10)
    assert out.getvalue() == ""


def test_forced_when_not_a_terminal_writes_lines_and_one_final_state() -> None:
    out = io.StringIO()
    with Progress("copy", total=4, unit="keys", enabled=True, stream=out) as bar:
        for _ in range(4):
            bar.advance()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("copy [") and "1/4 keys" in lines[0]  # first draw is immediate
    assert "4/4 keys 100%" in lines[-1]
    assert sum("4/4" in line for line in lines) == 1  # the final state is not drawn twice


def test_terminal_redraws_in_place_and_ends_the_line() -> None:
    out = Terminal()
    with Progress("demo", unit="users", stream=out) as bar:
        bar.start(2)
        bar.advance(2)
    text = out.getvalue()
    assert text.startswith("\r\x1b[2K") and text.endswith("\n")
    assert "2/2 users 100%" in text


def test_unknown_total_shows_count_and_rate() -> None:
    bar = Progress("scan", unit="keys", enabled=False)
    bar.advance(1234)
    assert bar.render().startswith("scan 1,234 keys")
