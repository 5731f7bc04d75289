"""Redis storage (single node, Redis Cluster, Sentinel, Valkey) over redis-py's asyncio client.

``_urls`` parses every Redis URL; ``_client`` builds every redis-py client and maps redis-py
errors; ``_storage`` is ``RedisStorage``; ``_lanes`` / ``_cluster_lanes`` pipeline concurrent
commands. Imported only when a Redis storage is used (``open_storage`` of a Redis scheme, or
``statekit.RedisStorage``).
"""

from statekit.storage.redis._storage import RedisStorage, redis_key_prefix

__all__ = ["RedisStorage", "redis_key_prefix"]
