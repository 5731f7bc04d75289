"""Ctrl-C at any moment of ``statekit.cli.main``: one line on stderr and exit status 130."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from statekit import cli


@pytest.fixture(autouse=True)
def _restore_sigint() -> Iterator[None]:
    """``main`` ignores a second Ctrl-C once interrupted; give pytest its handler back."""
    saved = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, saved)


def _ctrl_c(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["build_parser", "setup_logging", "the command"])
def test_ctrl_c_at_any_step_is_one_line_and_130(
    where: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if where == "build_parser":  # while the command modules (and the drivers) are imported
        monkeypatch.setattr(cli, "build_parser", _ctrl_c)
    elif where == "setup_logging":
        monkeypatch.setattr("statekit._cli._common.setup_logging", _ctrl_c)
    else:
        monkeypatch.setattr("statekit._cli.keys.run_keys", _ctrl_c)  # what `keys` calls
    status = cli.main(["keys", "memory://"])
    err = capsys.readouterr().err
    assert status == 130
    assert err == "statekit: error: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # a second Ctrl-C changes nothing
