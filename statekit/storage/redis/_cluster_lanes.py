"""Command lanes on Redis Cluster: the single-key commands of one ``RedisStorage`` go to the
auto-pipelined lanes (``statekit.storage.redis._lanes``) of the primary that owns the key's slot.

Routing is redis-py's: the node comes from ``RedisCluster.get_node_from_key``. A command the lane
cannot complete on that node (a ``MOVED`` / ``ASK`` redirect, ``TRYAGAIN``, ``CLUSTERDOWN``, a
connection error, a slot no node covers) is sent again through ``RedisCluster.execute_command``,
which follows the redirect, refreshes the slot layout and applies the client's retry policy —
the same handling every command had before lanes. Only redirects and errors that redis-py itself
retries are sent again; a command that timed out waiting for its reply is not.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection

from statekit.storage.redis._lanes import CommandLanes

__all__ = ["ClusterLanes"]

_REROUTE = (
    redis.exceptions.AskError,  # MovedError is an AskError
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


class _NodeConnections:
    """A ``ClusterNode`` seen as the pool ``CommandLanes`` takes its connections from."""

    __slots__ = ("node",)

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    async def get_connection(self) -> AbstractConnection:
        return self.node.acquire_connection()

    async def release(self, conn: AbstractConnection) -> None:
        self.node.release(conn)  # type: ignore[arg-type]


class ClusterLanes:
    """``size`` lanes per primary of ``client``, opened when a command first goes to it."""

    __slots__ = ("_client", "_nodes", "_retired", "_size")

    def __init__(self, client: RedisCluster, size: int) -> None:
        self._client = client
        self._size = size
        self._nodes: dict[str, tuple[ClusterNode, CommandLanes]] = {}
        self._retired: list[CommandLanes] = []

    async def call(self, *command: Any) -> Any:
        """Send a single-key ``command`` (its key is the first argument, or the fourth of an
        ``EVALSHA``) to the primary of its slot and return the raw reply."""
        client = self._client
        key = command[3] if command[0] == "EVALSHA" else command[1]
        try:
            node = client.get_node_from_key(key)
            if node is None:  # pragma: no cover - a primary is always returned for replica=False
                raise redis.exceptions.SlotNotCoveredError(f"no node serves key {key!r}")
            entry = self._nodes.get(node.name)
            if entry is None or entry[0] is not node:
                if entry is not None:  # the layout changed: this node was replaced
                    self._retired.append(entry[1])
                entry = self._nodes[node.name] = (node, CommandLanes(_NodeConnections(node), self._size))
            return await entry[1].call(*command)
        except _REROUTE:
            return await client.execute_command(*command)

    async def close(self) -> None:
        """Give every held connection back to its node."""
        lanes = [entry[1] for entry in self._nodes.values()] + self._retired
        self._nodes, self._retired = {}, []
        await asyncio.gather(*(lane.close() for lane in lanes), return_exceptions=True)
