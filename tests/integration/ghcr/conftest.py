"""Fixtures: a GHCR emulator per test on 127.0.0.1 (random port).

``ghcr`` is an emulator with default options (no latency, GitHub's documented limits);
``make_ghcr(**options)`` starts one with other options (see ``tests/emulators/ghcr/``).
Both are stopped after the test, and the test fails if a handler raised (an emulator bug).
These fixtures never skip: the emulator needs nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.emulators.ghcr import GhcrEmulator

MakeGhcr = Callable[..., GhcrEmulator]


@pytest.fixture
def make_ghcr() -> Iterator[MakeGhcr]:
    started: list[GhcrEmulator] = []

    def make(**options: Any) -> GhcrEmulator:
        emulator = GhcrEmulator(**options).start()
        started.append(emulator)
        return emulator

    yield make
    errors: list[str] = []
    for emulator in started:
        emulator.stop()
        errors.extend(emulator.errors)
    if errors:
        pytest.fail("the GHCR emulator raised inside a handler: " + "; ".join(errors))


@pytest.fixture
def ghcr(make_ghcr: MakeGhcr) -> GhcrEmulator:
    return make_ghcr()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A plain loopback client (no proxies from the environment: this also keeps it fast)."""
    with httpx.Client(trust_env=False, timeout=10) as client:
        yield client


class FakeClock:
    """A clock for limit windows that a test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
