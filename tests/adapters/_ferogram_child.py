"""A second process trying to open a ferogram session held by the tests:
``python _ferogram_child.py URL NAMESPACE NAME``; prints ``OPENED`` or ``LOCKED <message>``."""

from __future__ import annotations

import sys

from statekit import open_storage
from statekit.adapters.ferogram import FerogramSession
from statekit.errors import SessionLockedError


def main(url: str, namespace: str, name: str) -> int:
    session = FerogramSession(open_storage(url, namespace=namespace), name)
    try:
        session.open()
    except SessionLockedError as exc:
        print(f"LOCKED {exc}", flush=True)
        return 3
    print("OPENED", flush=True)
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
