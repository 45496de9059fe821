"""``tagkeeper prune`` against a real distribution 2.8 registry.

The repository holds images pushed by the real Docker engine (Docker v2 manifests, real
configs with build times) and hand-made OCI content pushed over the API: multi-arch
indexes with buildx-style attestations, cosign signatures, an OCI 1.1 referrer reached
through the ``sha256-<hex>`` tag schema. After a prune every kept tag is pulled back in
full (every platform and blob) with ``skopeo copy --all``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tagkeeper.cli import main
from tagkeeper.errors import ExitCode
from tests.emulators import images as im
from tests.integration.oci.conftest import EngineImages, skopeo
from tests.integration.oci.registry import Pusher, Registry

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

REPO = "team/app"


def when(month: int) -> datetime:
    return datetime(2024, month, 1, tzinfo=UTC)


@dataclass
class Scenario:
    """What was pushed, by role."""

    dev: list[str]  # oldest first, engine-built
    releases: dict[str, im.Built]  # v1.0.0 ... v1.4.0, oldest first
    prerelease: im.Built
    signatures: dict[str, im.Built] = field(default_factory=dict)  # release tag -> .sig
    referrer: im.Built | None = None
    schema_tag: str = ""


def fill(registry: Registry, pusher: Pusher, engine: EngineImages) -> Scenario:
    dev_tags = [f"dev-{i:07x}" for i in range(0xA11CE0, 0xA11CE0 + len(engine.ids))]
    for image_id, tag in zip(engine.ids, dev_tags, strict=True):
        engine.push(image_id, f"{registry.image(REPO)}:{tag}")
    # the oldest engine image is also "stable": a tag that keeps the digest
    engine.push(engine.ids[0], f"{registry.image(REPO)}:stable")
    releases = {}
    for month, tag in enumerate(["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0"], start=1):
        releases[tag] = im.multiarch(("linux/amd64", "linux/arm64"), created=when(month), label=tag)
        pusher.push(REPO, releases[tag], tag)
    pre = im.multiarch(("linux/amd64",), created=when(6), label="rc")
    pusher.push(REPO, pre, "v1.5.0-rc.1")
    scenario = Scenario(dev_tags, releases, pre)
    for tag in ("v1.0.0", "v1.4.0"):
        sig = im.cosign_signature(releases[tag])
        pusher.push(REPO, sig, im.cosign_tag(releases[tag].digest))
        scenario.signatures[tag] = sig
    subject = releases["v1.3.0"]
    ref = im.referrer(subject)
    schema = im.index([ref])
    scenario.referrer = ref
    scenario.schema_tag = "sha256-" + subject.digest.split(":", 1)[1]
    pusher.push(REPO, schema, scenario.schema_tag)
    return scenario


def prune(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    """Run the CLI in-process with ``--format json``: (exit code, payload, stderr)."""
    capsys.readouterr()
    code = main(["prune", *args, "--format", "json"])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def plan_of(payload: dict[str, Any]) -> dict[str, list[tuple[str, tuple[str, ...], str]]]:
    image = payload["images"][0]
    return {
        side: sorted((d["digest"], tuple(d["tags"]), d["rule"]) for d in image[side])
        for side in ("keep", "delete")
    }


def pulls(registry: Registry, tag: str, tmp_path: Path) -> bool:
    """Whether ``skopeo copy --all`` gets the whole image (every platform, every blob)."""
    dest = tmp_path / f"pull-{tag}"
    done = skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--quiet",
        f"docker://{registry.image(REPO)}:{tag}",
        f"dir:{dest}",
    )
    return done.returncode == 0


def test_prune_keeps_the_newest_and_every_kept_image_still_pulls(
    registry: Registry,
    pusher: Pusher,
    engine_images: EngineImages,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    s = fill(registry, pusher, engine_images)
    args = ["--image", registry.image(REPO), "--keep", "3", "--min-age", "0"]
    code, dry, _ = prune(capsys, *args, "--dry-run")
    assert code == ExitCode.OK
    code, real, err = prune(capsys, *args, "--yes")
    assert code == ExitCode.OK, err
    assert plan_of(real) == plan_of(dry)  # the dry run printed exactly what was applied

    # dev: the 3 newest engine images, plus the oldest, which "stable" keeps
    kept_dev = {s.dev[0], *s.dev[-3:]}
    deleted_dev = set(s.dev) - kept_dev
    kept_releases = {"v1.2.0", "v1.3.0", "v1.4.0"}
    remaining = set(pusher.tags(REPO))
    assert remaining == kept_dev | kept_releases | {
        "stable",
        "v1.5.0-rc.1",
        im.cosign_tag(s.releases["v1.4.0"].digest),
        s.schema_tag,
    }
    for tag in sorted(deleted_dev | {"v1.0.0", "v1.1.0"}):
        assert pusher.status(REPO, tag) == 404, tag

    # the tag that shares a kept digest was not deleted, and the plan says why
    image = real["images"][0]
    oldest = next(d for d in image["keep"] if s.dev[0] in d["tags"])
    assert "stable" in oldest["tags"]
    assert s.dev[0] in oldest["reason"]
    assert "shares its digest" in oldest["reason"]

    # garbage is gone: children and signature of the deleted releases
    for tag in ("v1.0.0", "v1.1.0"):
        for part in s.releases[tag].walk():
            assert pusher.status(REPO, part.digest) == 404, (tag, part.digest)
    assert pusher.status(REPO, s.signatures["v1.0.0"].digest) == 404

    # every kept tag pulls in full; referrers of kept images are still there
    for tag in sorted(kept_dev | kept_releases | {"stable", "v1.5.0-rc.1"}):
        assert pulls(registry, tag, tmp_path), tag
    for tag in sorted(kept_releases):
        for part in s.releases[tag].walk():
            assert pusher.status(REPO, part.digest) == 200
    assert s.referrer is not None
    assert pusher.status(REPO, s.referrer.digest) == 200
    assert pusher.status(REPO, s.signatures["v1.4.0"].digest) == 200

    # the engine can pull a kept image back (and not a deleted one)
    kept_ref = f"{registry.image(REPO)}:{s.dev[-1]}"
    engine_images.untag(kept_ref)
    engine_images.client.images.pull(registry.image(REPO), tag=s.dev[-1])
    engine_images.refs.add(kept_ref)

    # requests were counted by kind; a rerun converges: nothing left to delete
    assert image["requests"]["delete"] == len(image["delete"])
    code, again, _ = prune(capsys, *args, "--yes")
    assert code == ExitCode.OK
    assert again["images"][0]["delete"] == []


def test_deletes_disabled_is_a_clear_error_before_anything_is_deleted(
    registry_nodelete: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Pusher(registry_nodelete)
    try:
        for month in range(1, 5):
            p.push(REPO, im.image(created=when(month), label=str(month)), f"v1.{month}.0")
        before = {tag: p.status(REPO, tag) for tag in p.tags(REPO)}
        code, payload, err = prune(
            capsys,
            "--image",
            registry_nodelete.image(REPO),
            "--keep",
            "1",
            "--min-age",
            "0",
            "--yes",
        )
        assert code == ExitCode.REGISTRY
        assert "storage.delete.enabled: true" in err
        assert "nothing was deleted" in payload["images"][0]["error"]["message"]
        assert payload["images"][0]["requests"].get("delete", 0) == 0
        assert {tag: p.status(REPO, tag) for tag in p.tags(REPO)} == before
        assert len(before) == 4
    finally:
        p.close()


def test_unknown_creation_time_is_reported_and_kept_by_the_grace_period(
    registry: Registry, pusher: Pusher, capsys: pytest.CaptureFixture[str]
) -> None:
    ko_style = im.image(created=datetime(1970, 1, 1, tzinfo=UTC), label="reproducible")
    pusher.push(REPO, ko_style, "dev-0000beef")
    for month in range(1, 5):
        pusher.push(REPO, im.image(created=when(month), label=str(month)), f"dev-{month:08x}")
    code, payload, _ = prune(capsys, "--image", registry.image(REPO), "--keep", "1", "--yes")
    assert code == ExitCode.OK
    image = payload["images"][0]
    fallback = [w for w in image["warnings"] if "no creation time" in w]
    assert len(fallback) == 1
    assert ko_style.digest[:19] in fallback[0]
    assert "dev-0000beef" in fallback[0]
    assert "created now" in fallback[0]
    # counted as "now": inside the default 1h grace period, and ranked newest
    assert pusher.status(REPO, "dev-0000beef") == 200
    assert set(pusher.tags(REPO)) == {"dev-0000beef"}


def test_a_tag_pushed_between_plan_and_apply_stops_that_delete(
    registry: Registry, pusher: Pusher
) -> None:
    from tagkeeper.inventory import DeleteStatus
    from tagkeeper.registries.oci import OciBackend
    from tagkeeper.retention.executor import apply_plan
    from tagkeeper.retention.planner import Policy, plan
    from tagkeeper.transport import build_client

    old = im.image(created=when(1), label="old")
    new = im.image(created=when(2), label="new")
    pusher.push(REPO, old, "dev-00000001")
    pusher.push(REPO, new, "dev-00000002")
    with build_client() as client:
        backend = OciBackend(registry.image(REPO), client)
        the_plan = plan(
            backend.versions(),
            Policy.uniform(1, min_age=when(1) - when(1)),
            now=datetime.now(UTC),
            reader=backend.reader,
        )
        assert [d.version.digest for d in the_plan.delete] == [old.digest]
        pusher.tag(REPO, old, "hotfix")  # someone tags the old image meanwhile
        report = apply_plan(the_plan, backend)
    assert [r.status for r in report.results] == [DeleteStatus.CHANGED]
    assert pusher.status(REPO, "hotfix") == 200
    assert pusher.status(REPO, "dev-00000001") == 200


@pytest.mark.parametrize("told", [True, False], ids=["expected-deletes", "every-tag"])
def test_a_kept_tag_moved_onto_an_image_being_deleted_stops_that_delete(
    registry: Registry, pusher: Pusher, tmp_path: Path, told: bool
) -> None:
    """A rollback re-points ``stable`` at the image the plan deletes, between plan and apply.

    Deleting that manifest would take ``stable`` with it: the delete is skipped as
    changed, its platform images are held back, and ``stable`` still pulls in full.
    With ``expect_deletes`` only the kept tags are read before each delete; without it,
    every tag is.
    """
    from tagkeeper.inventory import DeleteStatus
    from tagkeeper.registries.oci import OciBackend
    from tagkeeper.retention.executor import apply_plan
    from tagkeeper.retention.planner import Policy, plan
    from tagkeeper.transport import build_client

    # v1.0.0 is newer than the old dev image: the plan deletes it first
    v1 = im.multiarch(("linux/amd64", "linux/arm64"), created=when(3), label="v1")
    v2 = im.multiarch(("linux/amd64", "linux/arm64"), created=when(4), label="v2")
    old_dev = im.image(created=when(1), label="old-dev")
    pusher.push(REPO, v1, "v1.0.0")
    pusher.push(REPO, v2, "v2.0.0", "stable")
    pusher.push(REPO, old_dev, "dev-00000001")
    pusher.push(REPO, im.image(created=when(2), label="new-dev"), "dev-00000002")
    heads: list[int] = []  # HEAD requests sent for each delete
    with build_client() as client:
        backend = OciBackend(registry.image(REPO), client)
        the_plan = plan(
            backend.versions(),
            Policy.uniform(1, min_age=when(1) - when(1)),
            now=datetime.now(UTC),
            reader=backend.reader,
        )
        children = {c.digest for c in v1.children}
        order = [d.version.digest for d in the_plan.delete]
        assert order[:2] == [v1.digest, old_dev.digest]
        assert set(order[2:]) == children
        if told:
            backend.expect_deletes(d.version for d in the_plan.delete)
        pusher.tag(REPO, v1, "stable")  # the rollback: PUT v1's manifest under "stable"
        seen = [backend.stats.by_kind.get("manifest-head", 0)]

        def count(_result: object) -> None:
            seen.append(backend.stats.by_kind.get("manifest-head", 0))
            heads.append(seen[-1] - seen[-2])

        report = apply_plan(the_plan, backend, on_result=count)
    status = [(r.version.digest, r.status) for r in report.results]
    assert status == [(v1.digest, DeleteStatus.CHANGED), (old_dev.digest, DeleteStatus.DELETED)]
    assert "now tagged stable" in report.results[0].detail
    assert {v.digest for v in report.skipped} == children  # held back: stable needs them
    assert pusher.status(REPO, "stable") == 200
    assert pusher.status(REPO, "v1.0.0") == 200
    assert pusher.status(REPO, "dev-00000001") == 404
    assert pulls(registry, "stable", tmp_path)
    assert pulls(registry, "v2.0.0", tmp_path)
    if told:
        # v1.0.0: itself + the kept stable, v2.0.0, dev-00000002; then dev-00000001:
        # itself + those 3 + v1.0.0, which the plan deleted but which stays
        assert heads == [4, 5]
    else:
        assert heads == [5, 5]  # every tag of the repository, before each delete


def test_basic_auth_from_flags_and_from_the_environment(
    registry_basic: Registry,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    p = Pusher(registry_basic)
    try:
        for month in range(1, 5):
            p.push(REPO, im.image(created=when(month), label=str(month)), f"v1.{month}.0")
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
        image = ["--image", registry_basic.image(REPO), "--min-age", "0", "--yes"]
        code, payload, err = prune(capsys, *image, "--keep", "1")
        assert code == ExitCode.AUTH
        assert "anonymous" in err
        assert len(p.tags(REPO)) == 4
        monkeypatch.setattr("sys.stdin", io.StringIO("s3cr3t-PW\n"))
        code, payload, err = prune(
            capsys, *image, "--keep", "3", "--username", "ci-bot", "--password-stdin"
        )
        assert code == ExitCode.OK, err
        assert p.tags(REPO) == ["v1.2.0", "v1.3.0", "v1.4.0"]
        args = [*image, "--keep", "1"]
        monkeypatch.setenv("TAGKEEPER_REGISTRY_USERNAME", "ci-bot")
        monkeypatch.setenv("TAGKEEPER_REGISTRY_PASSWORD", "s3cr3t-PW")
        code, payload, err = prune(capsys, *args)
        assert code == ExitCode.OK, err
        assert p.tags(REPO) == ["v1.4.0"]
        assert "s3cr3t-PW" not in err
        assert "s3cr3t-PW" not in json.dumps(payload)
    finally:
        p.close()


def test_a_loopback_registry_is_reached_over_http_after_https_fails(
    registry: Registry, pusher: Pusher
) -> None:
    """The loopback registry speaks only http: the backend found it after https failed."""
    from tagkeeper.registries.oci import OciBackend
    from tagkeeper.transport import build_client

    pusher.push(REPO, im.image(created=when(1)), "v1.0.0")
    with build_client() as client:
        backend = OciBackend(registry.image(REPO), client)
        assert [sorted(v.tags) for v in backend.versions()] == [["v1.0.0"]]
        assert backend.stats.by_kind["ping"] == 2  # https refused, then http
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://{registry.host}/v2/", timeout=5)
