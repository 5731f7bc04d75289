"""Library log records on the command line: one line each, no traceback, no password, and a
message repeated during an outage shown once per 10 s."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest

from statekit._cli import _common


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    _common.setup_logging(debug=False)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def test_exceptions_are_folded_into_one_line(stderr: io.StringIO) -> None:
    log = logging.getLogger("middleware.ratelimit")
    try:
        raise ConnectionError("redis://u:hunter2@127.0.0.1:1/0 refused\nsecond line")
    except ConnectionError:
        log.exception("could not tell a rate-limited user to wait")
    lines = stderr.getvalue().splitlines()
    assert lines == [
        "statekit: error: could not tell a rate-limited user to wait "
        "(ConnectionError: redis://***@127.0.0.1:1/0 refused second line)"
    ]


def test_repeats_are_shown_once(stderr: io.StringIO) -> None:
    log = logging.getLogger("middleware.ratelimit")
    for _ in range(50):
        log.warning("rate limiting unavailable (%s)", "x")
    log.warning("something else")
    assert len(stderr.getvalue().splitlines()) == 2
