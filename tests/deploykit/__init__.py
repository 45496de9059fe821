"""Real components for the deploy tests and benchmarks, as plain functions and classes.

One module per component (the test app, each proxy, the metrics server, the load
clients), each starting its service in its own folder on free 127.0.0.1 ports.
Nothing here imports pytest: a missing binary or a service that does not come up
raises :class:`ServiceError`, which the fixtures in ``tests/integration/deploy``
turn into a failed test (never a skip) and the benchmarks print.
"""

from __future__ import annotations


class ServiceError(RuntimeError):
    """A binary is missing, or a service did not start or answer as expected."""
