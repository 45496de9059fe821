"""Fixtures for the local-engine prune tests: a real Docker engine, tiny scratch images.

Images are built ``FROM scratch`` with the static ``busybox`` copied in and a unique
label each, so every build has its own image id. Every image, tag and container a test
creates is removed at teardown. A throwaway ``docker-registry`` on 127.0.0.1 gives
images the ``REPO@sha256:...`` references that ``docker push`` records.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.services import free_port, require_binary, require_docker, wait_for_port

if TYPE_CHECKING:
    from collections.abc import Iterator

BUSYBOX = Path("/usr/bin/busybox")


def _context(label: str) -> io.BytesIO:
    """A build context in memory: a Dockerfile and busybox, nothing else."""
    # The COPY step is cached and shared by this suite's builds only (its own path):
    # another suite's cleanup prunes the untagged parents of its images, and a shared
    # cache entry would race that.
    dockerfile = (
        f"FROM scratch\nCOPY busybox /usr/local/bin/busybox\nLABEL org.tagkeeper.test={label}\n"
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
class Engine:
    """The real engine plus a record of what this test made, for teardown."""

    client: Any
    images: set[str] = field(default_factory=set)
    refs: set[str] = field(default_factory=set)
    containers: list[str] = field(default_factory=list)

    def build(self, *refs: str) -> str:
        """Build a new image tagged with every ``repo:tag`` in ``refs``; its id."""
        image, _ = self.client.images.build(
            fileobj=_context(uuid.uuid4().hex), custom_context=True, rm=True, forcerm=True
        )
        image_id: str = image.id
        self.images.add(image_id)
        for ref in refs:
            self.tag(image_id, ref)
        return image_id

    def tag(self, image_id: str, ref: str) -> None:
        repo, _, tag = ref.rpartition(":")
        assert self.client.api.tag(image_id, repo, tag, force=True)
        self.refs.add(ref)

    def run(self, image_id: str, name: str, *, start: bool, wait: bool = False) -> str:
        """A container of ``image_id`` on the host network, running ``busybox sleep``."""
        command = ["busybox", "true"] if wait else ["busybox", "sleep", "300"]
        container = self.client.containers.create(
            image_id, command=command, name=name, network_mode="host"
        )
        self.containers.append(container.id)
        if start:
            container.start()
        if wait:
            container.wait(timeout=30)
        container.reload()
        return str(container.id)

    def push(self, ref: str) -> None:
        repo, _, tag = ref.rpartition(":")
        for line in self.client.api.push(repo, tag, stream=True, decode=True):
            if "error" in line:
                pytest.fail(f"pushing {ref} failed: {line['error']}")

    def tags_of(self, image_id: str) -> list[str] | None:
        """The image's RepoTags (every repository), ``None`` when it is gone."""
        import docker.errors

        try:
            data = self.client.api.inspect_image(image_id)
        except docker.errors.ImageNotFound:
            return None
        return sorted(data.get("RepoTags") or [])

    def repo_tags(self, repo: str) -> set[str]:
        """Every tag of ``repo`` on the engine now."""
        out: set[str] = set()
        for entry in self.client.api.images(name=repo):
            for ref in entry.get("RepoTags") or []:
                name, _, tag = ref.rpartition(":")
                if name == repo:
                    out.add(tag)
        return out

    def cleanup(self) -> None:
        import docker.errors

        for container_id in self.containers:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(container_id, force=True, v=True)
        for ref in self.refs:  # already gone, or its image goes below
            with contextlib.suppress(docker.errors.APIError):
                self.client.api.remove_image(ref)
        for image_id in self.images:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_image(image_id, force=True)


@pytest.fixture
def engine() -> Iterator[Engine]:
    require_docker()
    require_binary("busybox", "test images copy the static busybox into FROM scratch")
    if not BUSYBOX.is_file():
        pytest.fail(f"{BUSYBOX} is missing; .ci/run installs busybox-static")
    import docker

    client = docker.from_env(timeout=60)
    record = Engine(client)
    try:
        yield record
    finally:
        record.cleanup()
        client.close()


@pytest.fixture
def unique() -> str:
    """A name component no other test (or run) uses."""
    return f"tk{uuid.uuid4().hex[:10]}"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A ``docker-registry`` (distribution 2.8) on 127.0.0.1; yields ``127.0.0.1:PORT``."""
    binary = require_binary("docker-registry", "pushes give images their repo digests")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n",
        encoding="utf-8",
    )
    log = (tmp_path / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        wait_for_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def next_second() -> None:
    """Sleep past the next whole second: the engine lists creation times in seconds."""
    time.sleep(1.02 - (time.time() % 1.0))
