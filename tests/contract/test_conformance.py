"""The conformance suite (statekit.testing.conformance), applied to every backend."""

from statekit.testing.conformance import StorageConformance


class TestStorageConformance(StorageConformance):
    """Runs over every backend of the ``backend`` fixture (tests/conftest.py)."""
