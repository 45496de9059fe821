"""Guard rails for the unit tests: no real network, no Docker engine.

Unit tests exercise the pure core and the adapters' contracts through fakes and
pytest-httpx; a unit test that opens a real socket (a TCP connection, the Docker socket)
is a mistake, so every connection attempt fails loudly here instead of reaching whatever
happens to listen on this machine. Tests that need real services live in
``tests/integration``.
"""

from __future__ import annotations

import socket
from typing import Any, NoReturn

import pytest


class RealIOForbidden(AssertionError):
    """A unit test tried to reach a real network service or the Docker engine."""


def _forbid(kind: str) -> Any:
    def refuse(self: socket.socket, address: object, *args: object) -> NoReturn:
        del self, args
        raise RealIOForbidden(
            f"unit tests may not {kind} {address!r}; use a fake or pytest-httpx, or move "
            "the test to tests/integration"
        )

    return refuse


@pytest.fixture(autouse=True)
def _no_real_io(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _forbid("connect to"))
    monkeypatch.setattr(socket.socket, "connect_ex", _forbid("connect to"))
    monkeypatch.setattr(socket.socket, "bind", _forbid("listen on"))
    monkeypatch.setattr(socket.socket, "sendto", _forbid("send to"))
