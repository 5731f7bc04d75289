"""What a client adapter (``statekit.adapters``) needs from the session layer, public and checked:
peer rows as the store keeps them, the data-center address tables, and ferogram's session blob
(``ferogram_format``: parse, build and convert the binary session ferogram hands its
``CustomSession``).

``make_row`` checks one row (``TypeError`` naming the peer and the field); ``username_pair`` checks
one ``(peer_id, usernames)`` pair; ``SessionStore.update_peer_rows`` writes rows, checking each.
"""

from statekit.session import _ferogram as ferogram_format
from statekit.session._formats import PROD_ADDRESSES, TEST_ADDRESSES
from statekit.session._peers import PeerRow, make_row, username_pair

__all__ = [
    "PROD_ADDRESSES",
    "PeerRow",
    "TEST_ADDRESSES",
    "ferogram_format",
    "make_row",
    "username_pair",
]
