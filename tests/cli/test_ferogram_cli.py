"""``statekit session inspect`` / ``convert`` with ferogram's formats, as subprocesses."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from clitools import Run, load_json

from statekit.session import _ferogram as fero
from statekit.session.files import detect_file_format, import_file
from statekit.session.strings import import_string

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ferogram"


def test_inspect_ferogram_file_store_and_both_string_forms(cli: Run, tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "v8.session", tmp_path / "fg.session")
    shutil.copy(FIXTURES / "store.db", tmp_path / "fg.db")
    exported = (FIXTURES / "string.txt").read_text().strip()  # standard base64: has '/' or '+'
    url_safe = fero.export_string(import_string(exported))
    for args, stdin, fmt, kind in (
        ([str(tmp_path / "fg.session")], None, "ferogram", "file"),
        ([str(tmp_path / "fg.db")], None, "ferogram-sqlite", "file"),
        ([exported], None, "ferogram", "string"),
        (["-"], url_safe + "\n", "ferogram", "string"),
    ):
        doc = load_json(cli("session", "inspect", *args, "--json", "--peers", input=stdin))
        assert (doc["format"], doc["kind"]) == (fmt, kind)
        assert doc["session"]["dc_id"] == 2 and doc["session"]["auth_key"] is None
        assert doc["peer_count"] == 7
        assert doc["peer_types"] == {
            "channel": 2, "community": 1, "group": 1, "supergroup": 2, "user": 1,
        }
        key_hex = fero.parse_blob((FIXTURES / "v8.session").read_bytes()).dcs[0].auth_key
        assert key_hex is not None and key_hex.hex()[:20] not in str(doc)


def test_convert_to_every_ferogram_format_and_back(cli: Run, tmp_path: Path) -> None:
    src = tmp_path / "fg.session"
    shutil.copy(FIXTURES / "v8.session", src)
    expected = import_file(src)
    proc = cli("session", "convert", str(src), "--to", "ferogram-string")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.strip()
    assert "=" not in text and "+" not in text and "/" not in text
    assert import_string(text) == expected
    for target, name in (("ferogram-file", "out.session"), ("ferogram-sqlite", "out.db")):
        out = tmp_path / name
        proc = cli("session", "convert", str(src), "--to", target, "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        assert "7 peers, 3 update states" in proc.stderr
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
        assert detect_file_format(out)[0] == target.replace("-file", "")
        assert import_file(out) == expected
    # to kurigram: ferogram keeps no api_id / user_id
    proc = cli("session", "convert", str(src), "--to", "kurigram-file", "-o", str(tmp_path / "k"))
    assert proc.returncode != 0 and "--api-id" in proc.stderr
