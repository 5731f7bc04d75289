"""The conformance suite (statekit.testing.conformance), applied to every backend."""

import pytest

from statekit.testing.conformance import RawAccess, StorageConformance
from statekit.testing.raw import InTreeRawAccess


class TestStorageConformance(StorageConformance):
    """Runs over every backend of the ``backend`` fixture (tests/conftest.py)."""

    @pytest.fixture
    def raw_access(self) -> RawAccess:
        return InTreeRawAccess()
