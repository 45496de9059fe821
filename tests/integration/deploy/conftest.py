"""Fixtures for the deploy tests: the test app, a registry, nginx, Traefik, Prometheus.

Each wraps a plain helper of :mod:`tests.deploykit` (usable from ``bench/`` too) and
turns :class:`~tests.deploykit.ServiceError` (a missing binary, a service that did not
come up) into a failed test, never a skip. Services run in the test's own temporary
folder on free 127.0.0.1 ports and stop at teardown; every container and image made
here is removed, and nothing else is touched.

- ``docker_client`` (session): the engine; fails when none answers.
- ``app_images`` (session): :class:`AppImages`, one build per version (``.get("1.0.0")``).
- ``apps``: :class:`AppFleet`; ``apps.run(image, port=..., env={...})`` starts a container.
- ``registry``: a real ``docker-registry`` (deletes enabled) from
  :func:`tests.integration.oci.registry.start_registry`.
- ``nginx(upstream, **conf)``, ``traefik(weights)``, ``prometheus(targets)``: starters.
- ``load(url, **kw)``: a :class:`LoadClient`, stopped at teardown if still running.
"""

from __future__ import annotations

import itertools
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest

from tests.deploykit import ServiceError
from tests.deploykit.app import AppContainer, AppFleet, AppImages
from tests.deploykit.load import LoadClient
from tests.deploykit.nginx import Nginx, start_nginx
from tests.deploykit.prometheus import Prometheus, start_prometheus
from tests.deploykit.traefik import Traefik, start_traefik
from tests.integration.oci.registry import Registry, RegistryStartError, start_registry
from tests.services import require_docker

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


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


def _starter(tmp_path: Path, name: str, start: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    counter = itertools.count(1)
    with ExitStack() as stack:

        def run(*args: Any, **kw: Any) -> Any:
            folder = tmp_path / f"{name}-{next(counter)}"
            try:
                return stack.enter_context(start(folder, *args, **kw))
            except ServiceError as exc:
                pytest.fail(str(exc))

        yield run


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    """``nginx(upstream, **conf)``: a started :class:`Nginx` (see :func:`start_nginx`)."""
    yield from _starter(tmp_path, "nginx", start_nginx)


@pytest.fixture
def traefik(tmp_path: Path) -> Iterator[Callable[..., Traefik]]:
    """``traefik(weights=None)``: a started :class:`Traefik` (see :func:`start_traefik`)."""
    yield from _starter(tmp_path, "traefik", start_traefik)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """``prometheus(targets)``: a started :class:`Prometheus` (``{slot: address}``)."""
    yield from _starter(tmp_path, "prometheus", start_prometheus)


@pytest.fixture
def load() -> Iterator[Callable[..., LoadClient]]:
    """``load(url, rate=..., duration=... | count=..., keepalive=...)``: not started yet."""
    made: list[LoadClient] = []

    def make(url: str, **kw: Any) -> LoadClient:
        client = LoadClient(url, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop()
        client.join(timeout=10)
