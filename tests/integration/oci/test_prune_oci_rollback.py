"""A rollback target pinned by digest stays whole on a real distribution registry.

``previous --digest`` answers ``v1.0.0@B``; ``v1.0.0`` was re-pushed since, so B is
untagged and the tag listing does not show it. B shares its platform images with an old
dev index that the plan deletes. ``prune --env prod`` must read B (it is protected by
digest) and keep everything it reaches; B still pulls in full afterwards, by digest.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.cli import main
from tagkeeper.errors import ExitCode
from tests.emulators import images as im
from tests.integration.oci.conftest import skopeo

if TYPE_CHECKING:
    from pathlib import Path

    from tests.integration.oci.registry import Pusher, Registry

pytestmark = pytest.mark.integration

REPO = "team/rollback"


def when(month: int) -> datetime:
    return datetime(2024, month, 1, tzinfo=UTC)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def pulls_by_digest(registry: Registry, digest: str, tmp_path: Path) -> bool:
    """Whether ``skopeo copy --all`` gets ``REPO@digest`` whole (every platform, every blob)."""
    dest = tmp_path / f"pull-{digest[7:19]}"
    done = skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--quiet",
        f"docker://{registry.image(REPO)}@{digest}",
        f"dir:{dest}",
    )
    return done.returncode == 0


def test_a_rollback_target_pinned_by_digest_keeps_its_shared_platform_images(
    registry: Registry, pusher: Pusher, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shared = [
        im.image("linux/amd64", created=when(1), label="shared"),
        im.image("linux/arm64", created=when(1), label="shared"),
    ]
    old_dev = im.index(shared)
    target = im.index([*shared, im.attestation(shared[0], label="B")])  # B
    current = im.multiarch(created=when(3), label="v1.1.0")
    pusher.push(REPO, old_dev, "dev-0000d0d0")
    pusher.push(REPO, target, "v1.0.0")
    pusher.push(REPO, current, "v1.1.0")
    ledger = tmp_path / "ledger.db"
    image = registry.image(REPO)
    for tag, built in (("v1.0.0", target), ("v1.1.0", current)):
        code, _, err = run(
            capsys,
            "record",
            "--ledger",
            str(ledger),
            "--env",
            "prod",
            "--image",
            f"{image}:{tag}@{built.digest}",
            "--status",
            "succeeded",
        )
        assert code == ExitCode.OK, err
    code, out, err = run(
        capsys, "previous", "--ledger", str(ledger), "--env", "prod", "--image", image, "--digest"
    )
    assert code == ExitCode.OK, err
    assert out.strip() == f"{image}:v1.0.0@{target.digest}"
    # v1.0.0 is re-pushed: B is now untagged, and invisible in the tag listing
    pusher.push(REPO, im.multiarch(created=when(4), label="repushed"), "v1.0.0")

    argv = [
        "prune",
        "--image",
        image,
        "--keep-dev",
        "0",
        "--keep-release",
        "1",
        "--min-age",
        "0",
        "--env",
        "prod",
        "--ledger",
        str(ledger),
        "--format",
        "json",
    ]
    code, out, err = run(capsys, *argv, "--yes")
    assert code == ExitCode.OK, err
    (entry,) = json.loads(out)["images"]
    deleted = {d["digest"] for d in entry["delete"]}
    assert deleted == {old_dev.digest}  # the dev index goes, its children stay
    kept: dict[str, Any] = {d["digest"]: d for d in entry["keep"]}
    for part in shared:
        assert kept[part.digest]["rule"] == "reachable"
        assert "rollback target for prod" in kept[part.digest]["reason"]
        assert pusher.status(REPO, part.digest) == 200
    assert pusher.status(REPO, "dev-0000d0d0") == 404
    assert pulls_by_digest(registry, target.digest, tmp_path)
    assert pulls_by_digest(registry, current.digest, tmp_path)
    # a rerun converges: nothing more to delete
    code, out, err = run(capsys, *argv, "--yes")
    assert code == ExitCode.OK, err
    assert json.loads(out)["images"][0]["delete"] == []
