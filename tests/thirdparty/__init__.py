"""A backend written the way a third party would: outside ``statekit/``, public API only."""
