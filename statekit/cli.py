"""The ``statekit`` command: the demo, and the chores around stored state.

``statekit demo`` runs a simulated bot on the real FSM and rate-limiting code; ``keys`` / ``get``
look inside a store; ``migrate`` copies a store to another (TTLs kept, resumable); ``session
inspect`` / ``session convert`` read and write MTProto session strings and files; ``bench``
measures a store. Every error is one line on stderr and a non-zero exit status (1: the command
failed, 2: bad usage, 130: interrupted); ``STATEKIT_DEBUG=1`` shows tracebacks instead.
"""

from __future__ import annotations

# Only the standard library at import time: ``main`` catches Ctrl-C from its first line, so the
# command modules (which import the storage drivers, the slow part) are imported inside it.
import argparse
import os
import signal
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

_EPILOG = """\
examples:
  statekit demo                                   # 1,000 simulated users on sqlite:///statekit-demo.db
  statekit keys sqlite:///statekit-demo.db 'demo:profile:*' --limit 5
  statekit get sqlite:///statekit-demo.db demo:profile:1000007
  statekit migrate sqlite:///bot.db redis://127.0.0.1:6379/0
  statekit session inspect my_account.session
  statekit bench redis://127.0.0.1:6379/0

Run 'statekit COMMAND --help' for the options and an example of each command."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    from statekit import __version__
    from statekit._cli import bench, demo, keys, migrate, session

    parser = argparse.ArgumentParser(
        prog="statekit",
        description="statekit: the state a Telegram bot lives on (FSM state, MTProto sessions, "
        "rate-limit counters) over memory, SQLite or Redis.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"statekit {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    demo.add_parser(sub)
    keys.add_parsers(sub)
    migrate.add_parser(sub)
    session.add_parser(sub)
    bench.add_parser(sub)
    return parser


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"statekit: error: {message}\n")
    sys.stderr.flush()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Ctrl-C at any moment of the call (even while the command modules are being imported) ends
    the command with one line on stderr and status 130, never a traceback; a second Ctrl-C while
    that line is being written is ignored.
    """
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return _interrupted()


def _interrupted() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the process is ending: no second interrupt
    return _fail("interrupted", 130)


def _main(argv: Sequence[str] | None) -> int:
    from statekit._cli._common import CLIError, one_line, setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    debug = os.environ.get("STATEKIT_DEBUG") == "1"
    setup_logging(debug)
    try:
        return int(func(args))
    except CLIError as exc:
        if exc.code == 130:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return _fail(one_line(exc), exc.code)
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        # the reader of our output went away (e.g. `statekit keys URL | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:  # noqa: BLE001 - the command line reports every error as one line
        if debug:
            raise
        from statekit.errors import StatekitError

        if isinstance(exc, StatekitError | ValueError | OSError):
            return _fail(one_line(exc), 1)
        return _fail(
            f"unexpected {type(exc).__name__}: {one_line(exc)} (STATEKIT_DEBUG=1 shows the traceback)",
            1,
        )


if __name__ == "__main__":
    sys.exit(main())
