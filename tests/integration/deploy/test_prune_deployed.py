"""Pruning a deploy host keeps what the recreate strategy needs: the images of CONTAINER and
CONTAINER-previous (containers use them) and of the rollback target (the ledger names it),
even though the deploys pulled every image by digest."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.deploy.engine_host import DeployHost, deploy_host

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.deploykit.app import AppImages
    from tests.integration.oci.registry import Registry

pytestmark = pytest.mark.integration


@pytest.fixture
def host(
    tmp_path: Path, docker_client: Any, registry: Registry, app_images: AppImages
) -> Iterator[DeployHost]:
    with deploy_host(tmp_path / "host", docker_client, registry, app_images) as made:
        yield made


def test_local_prune_keeps_container_previous_and_the_rollback_target(
    host: DeployHost, docker_client: Any
) -> None:
    tags = ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"]
    for tag in tags:
        # an image of its own (no tag of another repository keeps it): after the push the
        # host has none of them; every deploy pulls its image by digest
        host.publish(tag, version=tag.lstrip("v"), RELEASE=tag)
    for tag in tags:
        done = host.deploy(tag)
        assert done.returncode == 0, done.stderr
    done = host.run("rollback", "--env", "prod")
    assert done.returncode == 0, done.stderr
    # app runs v1.2.0 (restarted), app-previous holds v1.3.0, the rollback target of
    # v1.2.0 is v1.1.0 (no container has it any more), v1.0.0 is needed by nothing
    live, previous = host.inspect(), host.inspect("previous")
    assert live is not None
    assert previous is not None
    assert live["Config"]["Labels"]["org.tagkeeper.digest"] == host.published["v1.2.0"]
    assert previous["Config"]["Labels"]["org.tagkeeper.digest"] == host.published["v1.3.0"]
    image_of = {
        tag: docker_client.api.inspect_image(f"{host.repo}@{digest}")["Id"]
        for tag, digest in host.published.items()
    }
    done = host.run(
        "prune", "--local", "--image", host.repo, "--keep", "0", "--min-age", "0",
        "--env", "prod", "--dangling", "--yes", "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    [report] = json.loads(done.stdout)["images"]
    deleted = {item["digest"] for item in report["delete"]}
    assert deleted == {image_of["v1.0.0"]}
    kept = {item["digest"]: item["reason"] for item in report["keep"]}
    assert image_of["v1.2.0"] in kept  # CONTAINER's (and the current deploy's)
    assert f"{host.container}-previous" in kept[image_of["v1.3.0"]]
    assert "rollback target for prod" in kept[image_of["v1.1.0"]]
    for tag in ("v1.1.0", "v1.2.0", "v1.3.0"):
        assert docker_client.api.inspect_image(image_of[tag])["Id"] == image_of[tag]
