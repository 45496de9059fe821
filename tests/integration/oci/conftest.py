"""Fixtures for the OCI registry tests: real ``docker-registry`` servers and real images.

- ``registry``: distribution 2.8 with ``storage.delete.enabled: true`` on 127.0.0.1;
- ``registry_nodelete``: the same with deletes disabled (the default of distribution);
- ``registry_basic``: deletes enabled, htpasswd basic auth (bcrypt from crypt(3));
- ``engine_images``: images built once per module by the real Docker engine,
  ``FROM scratch`` with the static busybox, each with its own label (own config digest).

Every fixture fails (never skips) when its service or binary is missing.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.oci.registry import Pusher, Registry, RegistryStartError, start_registry
from tests.services import require_binary, require_docker

if TYPE_CHECKING:
    from collections.abc import Iterator

BUSYBOX = Path("/usr/bin/busybox")
ENGINE_IMAGES = 5


def _start(tmp_path: Path, **kw: Any) -> Iterator[Registry]:
    require_binary("docker-registry", "the OCI tests run distribution 2.8")
    try:
        with start_registry(tmp_path, **kw) as running:
            yield running
    except RegistryStartError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    yield from _start(tmp_path / "registry", delete=True)


@pytest.fixture
def registry_nodelete(tmp_path: Path) -> Iterator[Registry]:
    yield from _start(tmp_path / "registry-nodelete", delete=False)


@pytest.fixture
def registry_basic(tmp_path: Path) -> Iterator[Registry]:
    yield from _start(tmp_path / "registry-basic", delete=True, auth=("ci-bot", "s3cr3t-PW"))


@pytest.fixture
def pusher(registry: Registry) -> Iterator[Pusher]:
    p = Pusher(registry)
    try:
        yield p
    finally:
        p.close()


def _context(label: str) -> io.BytesIO:
    dockerfile = (
        f"FROM scratch\nCOPY busybox /bin/busybox\nLABEL org.tagkeeper.test={label}\n"
    ).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(BUSYBOX, arcname="busybox")
    buffer.seek(0)
    return buffer


@dataclass
class EngineImages:
    """Images built by the engine, oldest first, and the refs tests tagged them with."""

    client: Any
    ids: list[str]
    refs: set[str] = field(default_factory=set)

    def push(self, image_id: str, ref: str) -> None:
        """Tag ``image_id`` as ``ref`` (``127.0.0.1:PORT/repo:tag``) and push it."""
        repo, _, tag = ref.rpartition(":")
        assert self.client.api.tag(image_id, repo, tag, force=True)
        self.refs.add(ref)
        for line in self.client.api.push(repo, tag, stream=True, decode=True):
            if "error" in line:
                pytest.fail(f"docker push {ref} failed: {line['error']}")

    def untag(self, ref: str) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.APIError):
            self.client.api.remove_image(ref)


@pytest.fixture(scope="module")
def engine_images() -> Iterator[EngineImages]:
    require_docker()
    require_binary("busybox", "test images copy the static busybox into FROM scratch")
    import docker
    import docker.errors

    client = docker.from_env(timeout=120)
    ids: list[str] = []
    record = EngineImages(client, ids)
    try:
        for _ in range(ENGINE_IMAGES):  # built in order: each is newer than the one before
            image, _logs = client.images.build(
                fileobj=_context(uuid.uuid4().hex), custom_context=True, rm=True, forcerm=True
            )
            ids.append(str(image.id))
        yield record
    finally:
        for ref in record.refs:
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_image(ref)
        for image_id in ids:
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_image(image_id, force=True)
        client.close()


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    """Run skopeo (fails the test when it is missing)."""
    binary = require_binary("skopeo", "kept images are pulled back with skopeo")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)
