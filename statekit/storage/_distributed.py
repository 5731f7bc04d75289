"""Redis Cluster and Sentinel URLs (``redis+cluster://``, ``redis+sentinel://``)."""

from __future__ import annotations

from typing import Any

from statekit.storage.base import BaseStorage

__all__ = ["open_distributed"]


def open_distributed(url: str, scheme: str, params: dict[str, Any]) -> BaseStorage:
    """Return a RedisStorage for a cluster or sentinel URL."""
    raise NotImplementedError(f"{scheme}:// URLs are not supported yet")
