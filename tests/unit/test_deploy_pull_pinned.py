"""A deploy pinned to a digest runs exactly that digest, whatever the strategy.

When the engine pulls something else (a registry that answers another manifest, a tag
re-pushed between the digest's resolution and the pull), the deploy is refused before
any container is created and the one serving is never touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tagkeeper.deploy.containers import PulledImage
from tagkeeper.deploy.spec import Strategy
from tagkeeper.errors import ExitCode, UsageError
from tagkeeper.rollback.resolve import DeployStatus
from tests.unit.deploy_fakes import World, new_world
from tests.unit.slot_fakes import SlotWorld, slot_spec

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path



@pytest.fixture(params=["recreate", "bluegreen", "canary"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if request.param == "recreate":
        with new_world(tmp_path) as w:
            yield w
        return
    strategy = Strategy.BLUEGREEN if request.param == "bluegreen" else Strategy.CANARY
    slots = SlotWorld(tmp_path, spec=slot_spec(tmp_path, strategy))
    try:
        yield slots
    finally:
        slots.close()


def test_a_pull_of_another_digest_is_refused_and_nothing_changes(world: World) -> None:
    world.publish("v1.0.0")
    assert world.deploy("v1.0.0").status is DeployStatus.SUCCEEDED
    pinned = world.publish("v2.0.0")
    other = world.publish("v2.0.0-other")
    real_pull = world.runtime.pull

    def lying_pull(reference: str) -> PulledImage:
        image = real_pull(reference.split("@", 1)[0])
        return PulledImage(image.reference, other, image.image_id)

    world.runtime.pull = lying_pull  # type: ignore[method-assign]
    before = {name: c.id for name, c in world.runtime.containers.items()}
    creates = len(world.ops("create"))
    with pytest.raises(UsageError, match="is pinned to") as refused:
        world.deploy(f"v2.0.0@{pinned}")
    assert refused.value.exit_code == ExitCode.USAGE
    assert len(world.ops("create")) == creates  # no container was even created
    assert {name: c.id for name, c in world.runtime.containers.items()} == before
    assert world.serving() == "v1.0.0"
    assert [s for s in world.statuses() if s[1] is DeployStatus.SUCCEEDED] == [
        ("v1.0.0", DeployStatus.SUCCEEDED, None)
    ]
