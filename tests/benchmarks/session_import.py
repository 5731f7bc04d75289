"""Importing a kurigram session file (``import_file``) against a plain ``sqlite3`` read of the
same rows, with nothing beside the file, with a live client's WAL beside it, and with a live
client's rollback journal beside it (the two cases read from a private copy); and a Telethon
session file of as many entities.

Run: ``python -m tests.benchmarks.session_import [--peers 100000] [--rounds 7] [--json out.json]``.

The file is written once by ``export_file`` (schema 7, ``--peers`` users with a username each).
In every round, for each state of the file, both subjects read it one after the other, the order
alternating from round to round:
- "plain": no client has the file open;
- "WAL": a client of this process has the file open in WAL mode, with its last commit (1,000
  peers renamed) only in the WAL;
- "journal": a client of this process is in the middle of a write (1,000 peers renamed, not
  committed), its rollback journal beside the file;
- "Telethon": a Telethon file (schema 8) of the same peers, nothing beside it.

The baseline, ``sqlite3`` (an immutable connection, as any reader that changes nothing would
open it), selects every row of ``peers`` and ``usernames`` (Telethon: ``entities``): the least
any import pays. It reads
the database file only, so beside a WAL or a journal it reads older or half-written rows than the
import does, which reads what was committed. The table gives peers per second, the best round of
each, and the ratio to the baseline of the same rounds (median and range in the note).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from statekit.session import Peer, SessionData, SessionSnapshot, export_file, import_file
from statekit.session.files import FileFormat
from tests.benchmarks._harness import Result, print_table, write_json

FIRST_ID = 100_000
RENAMED = 1_000  # peers a live client renames


STATES = ("plain", "WAL", "journal", "Telethon")


def write_file(path: Path, peers: int, file_format: FileFormat = "kurigram") -> None:
    """A session file (``file_format``) of ``peers`` users with a username each."""
    snapshot = SessionSnapshot(
        SessionData(2, bytes(range(256)), api_id=5, user_id=7, date=1_765_000_000),
        [Peer(FIRST_ID + i, 8_000_000_000 + i, "user", (f"user{i}",), None, 1_765_000_000)
         for i in range(peers)],
        [],
    )
    export_file(snapshot, path, file_format)


@contextmanager
def client_state(path: Path, state: str) -> Iterator[int]:
    """The file as ``state`` leaves it while the block runs; yields the user_id an import must
    find (what was committed)."""
    if state in ("plain", "Telethon"):
        yield 7
        return
    with closing(sqlite3.connect(path, isolation_level=None)) as client:
        renames = "UPDATE usernames SET username = 'renamed' || id WHERE id < ?"
        if state == "WAL":
            client.execute("PRAGMA journal_mode = WAL")
            client.execute("PRAGMA wal_autocheckpoint = 0")
            client.execute(renames, (FIRST_ID + RENAMED,))
            client.execute("UPDATE sessions SET user_id = 8")
            yield 8
            client.execute("UPDATE sessions SET user_id = 7")
            client.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            client.execute("PRAGMA journal_mode = DELETE")
        else:
            client.execute("BEGIN IMMEDIATE")
            client.execute(renames, (FIRST_ID + RENAMED,))
            client.execute("UPDATE sessions SET user_id = 8")
            yield 7
            client.execute("ROLLBACK")


def statekit_import(path: Path, user_id: int) -> int:
    snapshot = import_file(path)
    if path.suffix != ".telethon":  # a Telethon file keeps the user id in an entity
        assert snapshot.data.user_id == user_id, "the import reads what was committed"
    return len(snapshot.peers)


def sqlite3_select(path: Path, user_id: int) -> int:
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)) as db:
        if path.suffix == ".telethon":
            return len(db.execute("SELECT * FROM entities WHERE id != 0").fetchall())
        peers = db.execute("SELECT * FROM peers").fetchall()
        db.execute("SELECT * FROM usernames").fetchall()
    return len(peers)


SUBJECTS: dict[str, Callable[[Path, int], int]] = {
    "sqlite3 SELECT (immutable)": sqlite3_select,
    "statekit import_file": statekit_import,
}


def run(peers: int, rounds: int) -> list[Result]:
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="statekit-import-") as workdir:
        path = Path(workdir) / "bot.session"
        write_file(path, peers)
        telethon = Path(workdir) / "bot.telethon"
        write_file(telethon, peers, "telethon")
        for r in range(rounds + 1):  # round 0 warms up and is not counted
            for state in STATES:
                with client_state(path, state) as user_id:
                    read = telethon if state == "Telethon" else path
                    order = list(SUBJECTS) if r % 2 == 0 else list(reversed(SUBJECTS))
                    for name in order:
                        start = time.perf_counter()
                        found = SUBJECTS[name](read, user_id)
                        took = time.perf_counter() - start
                        assert found == peers, f"{name} read {found} peers"
                        if r:
                            rates.setdefault((state, name), []).append(peers / took)
    rows: list[Result] = []
    baseline = next(iter(SUBJECTS))
    for state in STATES:
        base = rates[state, baseline]
        for name in SUBJECTS:
            values = rates[state, name]
            kind = "Telethon" if state == "Telethon" else "kurigram"
            row = Result(state, name, f"read a {peers:,}-peer {kind} file", 1, max(values))
            note = f"median {statistics.median(values):,.0f}/s"
            if name != baseline:
                ratios = [v / b for v, b in zip(values, base, strict=True)]
                row.baseline, row.ratio = baseline, max(values) / max(base)
                note += (f", {statistics.median(ratios):.2f}× [{min(ratios):.2f}–{max(ratios):.2f}]"
                         " round by round")
            row.note = note
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--peers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", help="write the results as JSON to this path")
    args = parser.parse_args(argv)
    rows = run(args.peers, args.rounds)
    print_table(f"Session file import ({args.peers:,} peers; {args.rounds} rounds, best and median)", rows)
    write_json(args.json, "session_import", rows)


if __name__ == "__main__":
    main()
