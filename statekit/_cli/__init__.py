"""The ``statekit`` command line, one module per command; ``statekit.cli.main`` is the entry point.

Private: the command line (its options and output) is the public interface, not these modules.
"""
