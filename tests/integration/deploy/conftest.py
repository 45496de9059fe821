"""Fixtures for the deploy tests: the test app and a registry.

Each wraps a plain helper of :mod:`tests.deploykit` (usable from ``bench/`` too) and
turns :class:`~tests.deploykit.ServiceError` (a missing binary, a service that did not
come up) into a failed test, never a skip. Every container and image made
here is removed, and nothing else is touched.

- ``docker_client`` (session): the engine; fails when none answers.
- ``app_images`` (session): :class:`AppImages`, one build per version (``.get("1.0.0")``).
- ``apps``: :class:`AppFleet`; ``apps.run(image, port=..., env={...})`` starts a container.
- ``registry``: a real ``docker-registry`` (deletes enabled) from
  :func:`tests.integration.oci.registry.start_registry`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploykit import ServiceError
from tests.deploykit.app import AppContainer, AppFleet, AppImages
from tests.integration.oci.registry import Registry, RegistryStartError, start_registry
from tests.services import require_docker


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    require_docker()
    import docker

    client = docker.from_env(timeout=120)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def app_images(docker_client: Any) -> Iterator[AppImages]:
    images = AppImages(docker_client)
    try:
        yield images
    finally:
        images.cleanup()


class FailingFleet(AppFleet):
    """An :class:`AppFleet` whose start-up errors fail the test."""

    def run(self, image: str, *, port: int, **kw: Any) -> AppContainer:
        try:
            return super().run(image, port=port, **kw)
        except ServiceError as exc:
            pytest.fail(str(exc))


@pytest.fixture
def apps(docker_client: Any) -> Iterator[AppFleet]:
    fleet = FailingFleet(docker_client)
    try:
        yield fleet
    finally:
        fleet.cleanup()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    try:
        with start_registry(tmp_path / "registry", delete=True) as running:
            yield running
    except RegistryStartError as exc:
        pytest.fail(str(exc))
