"""Helpers for tests that need real services: they fail, never skip, when one is missing.

``.ci/run`` installs and starts the Docker engine and puts the registry and ``act``
binaries on the machine; fixtures built on these helpers start per-test servers on
127.0.0.1 only.
"""

from __future__ import annotations

import shutil
import socket
import time

import pytest


def require_binary(name: str, why: str) -> str:
    """The path of ``name``, or fail the test saying how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed ({why}); run .ci/run, which installs it")
    return path


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    """Wait until something listens on 127.0.0.1:``port``, or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def require_docker() -> None:
    """Fail unless a Docker engine answers (``DOCKER_HOST`` or the default socket)."""
    import docker

    try:
        client = docker.from_env(timeout=10)
    except Exception as exc:  # the SDK raises several unrelated types here
        pytest.fail(f"no Docker engine is configured ({exc}); .ci/run starts one")
    try:
        client.ping()
    except Exception as exc:
        pytest.fail(
            f"no Docker engine answers ({exc}); .ci/run starts one with "
            "'dockerd --bridge=none --iptables=false'"
        )
    finally:
        client.close()
