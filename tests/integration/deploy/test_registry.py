"""The app image comes from a real registry, as a deploy pulls it."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import docker.errors
import pytest

from tests.deploykit.app import AppFleet, AppImages, publish, untag
from tests.services import free_port

if TYPE_CHECKING:
    from tests.integration.oci.registry import Registry

pytestmark = pytest.mark.integration


def test_published_versions_pull_and_run(
    docker_client: Any, app_images: AppImages, registry: Registry, apps: AppFleet
) -> None:
    repo = registry.image("acme/webapp")
    published = {
        version: publish(docker_client, app_images.get(version).id, f"{repo}:v{version}")
        for version in ("1.0.0", "1.1.0")
    }
    assert published["1.0.0"].digest != published["1.1.0"].digest
    # a second tag on the same image: the same digest
    again = app_images.publish(f"{repo}:dev-abc1234", "1.1.0")
    assert again.digest == published["1.1.0"].digest

    ref = published["1.0.0"].ref
    with pytest.raises(docker.errors.ImageNotFound):  # publish left nothing local
        docker_client.images.get(ref)
    docker_bin = shutil.which("docker")
    if docker_bin is not None:  # the CLI a deploy script would use, when installed
        pulled = subprocess.run(
            [docker_bin, "pull", ref], capture_output=True, text=True, timeout=120, check=False
        )
        assert pulled.returncode == 0, pulled.stderr
        assert published["1.0.0"].digest in pulled.stdout
        untag(docker_client, ref)
    image = docker_client.images.pull(published["1.0.0"].pinned)
    assert published["1.0.0"].pinned in image.attrs["RepoDigests"]
    try:
        app = apps.run(published["1.0.0"].pinned, port=free_port())
        assert app.get("/version").json()["version"] == "1.0.0"
    finally:
        untag(docker_client, published["1.0.0"].pinned)
