"""Test helpers for statekit and for third-party backends: a fake clock, a throwaway
``redis-server`` launcher, and the storage conformance suite (``statekit.testing.conformance``)."""

from statekit.testing.clock import FakeClock
from statekit.testing.cluster import RedisClusterSetup, RedisSentinelSetup
from statekit.testing.servers import RedisServer, RedisServerUnavailable, free_port

__all__ = [
    "FakeClock",
    "RedisClusterSetup",
    "RedisSentinelSetup",
    "RedisServer",
    "RedisServerUnavailable",
    "free_port",
]
