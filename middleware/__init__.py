"""Rate limiting built on statekit's ``increment`` and compare-and-set, and its framework mounts."""

__all__: list[str] = []
