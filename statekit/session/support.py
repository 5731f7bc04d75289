"""What a client adapter (``statekit.adapters``) needs from the session layer, public and checked:
peer rows as the store keeps them, the data-center address tables, and ferogram's session blob
(``ferogram_format``: parse, build and convert the binary session ferogram hands its
``CustomSession``).

``make_row`` checks one row (``TypeError`` naming the peer and the field); ``username_pair`` checks
one ``(peer_id, usernames)`` pair; ``SessionStore.update_peer_rows`` writes rows, checking each;
``write_checked_rows`` writes rows an adapter has already checked, without checking them again;
``YoungCollector`` keeps the young generations small while an adapter replaces many rows it holds;
``empty_in_slices`` lets go of a large map of rows a slice at a time, the event loop running between.
"""

from __future__ import annotations

import time

from statekit._release import empty_in_slices
from statekit.session import _ferogram as ferogram_format
from statekit.session._collector import YoungCollector
from statekit.session._formats import PROD_ADDRESSES, TEST_ADDRESSES
from statekit.session._peers import PeerRow, make_row, normalize_phone, username_pair
from statekit.session.store import SessionStore


async def write_checked_rows(
    store: SessionStore, rows: dict[int, PeerRow], *, keep_usernames: bool = False
) -> None:
    """``store.update_peer_rows(rows.values(), keep_usernames=...)`` for rows by id that are
    already what ``make_row`` returns, each with its ``last_update_on`` set: nothing is checked
    again, so a row that is not (a wrong type, an unclean username) is stored as it is and later
    reads of its bucket raise ``CorruptValueError``. For adapters that check rows as they stage
    them."""
    await store._update_peer_rows(rows, int(time.time()), keep_usernames=keep_usernames)

__all__ = [
    "PROD_ADDRESSES",
    "PeerRow",
    "TEST_ADDRESSES",
    "YoungCollector",
    "empty_in_slices",
    "ferogram_format",
    "make_row",
    "normalize_phone",
    "username_pair",
    "write_checked_rows",
]
