"""Shared by the ferogram tests: a stand-in data centre on 127.0.0.1 and views of a session as
ferogram itself reports it, as statekit parses it and as the fixture manifest records it."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path
from typing import Any

from statekit.session import _ferogram as fero

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ferogram"
MANIFEST: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text())


class Listener:
    """A data centre stand-in on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.held: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        for conn in self.held:
            conn.close()


async def connect(session: Any, dc: Listener) -> Any:
    """Open ferogram's connection on ``session``, offline (the listener is the data centre)."""
    from ferogram._ferogram import DcConnection

    return await asyncio.wait_for(
        DcConnection.connect(session, 1, "0" * 32, 0, dc_addr=dc.addr), 30
    )


async def ferogram_view(conn: Any) -> dict[str, Any]:
    pts, qts, date, seq, channels = await conn.get_persisted_update_state()
    peers, min_peers = await conn.get_persisted_peers()
    token = await conn.get_future_auth_token()
    return {
        "dc_id": conn.dc_id,
        "auth_key": bytes(await conn.auth_key_bytes()),
        "update_state": (pts, qts, date, seq, sorted(tuple(c) for c in channels)),
        "peers": sorted(tuple(p) for p in peers),
        "min_peers": sorted(tuple(m) for m in min_peers),
        "token": None if token is None else bytes(token),
    }


def blob_view(s: fero.FerogramSession) -> dict[str, Any]:
    """The same view of a session statekit parsed."""
    home = next(d for d in s.dcs if d.dc_id == s.home_dc_id and d.auth_key is not None)
    return {
        "dc_id": s.home_dc_id,
        "auth_key": home.auth_key,
        "update_state": (s.pts, s.qts, s.date, s.seq, sorted(s.channels)),
        "peers": sorted(
            (p.id, p.access_hash, p.type == 1, p.type == 2, p.channel_kind, p.community)
            for p in s.peers
        ),
        "min_peers": sorted(s.min_peers),
        "token": s.future_auth_token,
    }


def manifest_view(entry: dict[str, Any]) -> dict[str, Any]:
    pts, qts, date, seq, channels = entry["update_state"]
    token = entry["future_auth_token"]
    return {
        "dc_id": entry["dc_id"],
        "auth_key": bytes.fromhex(entry["auth_key"]),
        "update_state": (pts, qts, date, seq, sorted(tuple(c) for c in channels)),
        "peers": sorted(tuple(p) for p in entry["peers"]),
        "min_peers": sorted(tuple(m) for m in entry["min_peers"]),
        "token": None if token is None else bytes.fromhex(token),
    }
