"""``tagkeeper prune --image 'HOST/team/*'`` and ``--all HOST`` on a real distribution 2.8
registry, through its ``/v2/_catalog`` (pages followed through ``Link``), and the clear
usage error where a registry offers no catalog (the GHCR emulator's ``/v2``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tagkeeper.cli import main
from tagkeeper.registries import catalog
from tagkeeper.registries.factory import BackendOptions
from tagkeeper.retention.packages import prune_packages
from tagkeeper.retention.planner import Policy
from tagkeeper.retention.runner import PruneListener
from tests.emulators import images as im
from tests.emulators.ghcr import GhcrEmulator

if TYPE_CHECKING:
    from tagkeeper.retention.planner import Plan
    from tests.integration.oci.registry import Pusher, Registry

pytestmark = pytest.mark.integration

REPOS = ("team/a", "team/b", "team/sub/c", "other/d")


def fill(pusher: Pusher) -> None:
    for repo in REPOS:
        for month in (1, 2, 3):
            built = im.image(created=datetime(2024, month, 1, tzinfo=UTC), label=f"{repo}{month}")
            pusher.push(repo, built, f"dev-{month:07x}")


def prune(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    capsys.readouterr()
    code = main(["prune", "--keep", "1", "--min-age", "0", "--format", "json", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out else None, captured.err


def test_a_pattern_prunes_the_matching_repositories_of_the_catalog(
    registry: Registry,
    pusher: Pusher,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fill(pusher)
    monkeypatch.setattr(catalog, "PAGE", 2)  # several catalog pages, through Link
    code, doc, err = prune(capsys, "--image", f"{registry.host}/team/*", "--yes")
    assert code == 0, err
    assert [e["image"] for e in doc["images"]] == [
        f"{registry.host}/team/a",
        f"{registry.host}/team/b",
    ]
    assert doc["total"]["deleted"] == 4
    assert pusher.tags("team/a") == ["dev-0000003"]
    assert pusher.tags("team/b") == ["dev-0000003"]
    assert len(pusher.tags("team/sub/c")) == 3  # '*' stays inside one segment
    assert len(pusher.tags("other/d")) == 3


def test_all_lists_the_whole_catalog_and_exclude_leaves_some_out(
    registry: Registry,
    pusher: Pusher,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fill(pusher)
    monkeypatch.setattr(catalog, "PAGE", 3)
    code, doc, err = prune(
        capsys, "--all", registry.host, "--exclude", f"{registry.host}/other/**", "--dry-run"
    )
    assert code == 0, err
    assert [e["image"] for e in doc["images"]] == [
        f"{registry.host}/team/a",
        f"{registry.host}/team/b",
        f"{registry.host}/team/sub/c",
    ]
    assert doc["total"]["planned"] == 6
    assert all(len(pusher.tags(r)) == 3 for r in REPOS)  # a dry run


def test_a_registry_without_a_catalog_is_a_usage_error_and_nothing_changes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator = GhcrEmulator().start()  # ghcr.io's /v2 has no _catalog
    try:
        _no_catalog(emulator, capsys)
    finally:
        emulator.stop()
    assert emulator.errors == []


def _no_catalog(ghcr: GhcrEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    ghcr.add_user("octo")
    ghcr.push_built("octo", "app", im.image(label="x"), tags=["dev-0000001"])
    ghcr.push_built("octo", "app", im.image(label="y"), tags=["dev-0000002"])
    host = ghcr.registry_url.removeprefix("http://")
    code, doc, err = prune(capsys, "--kind", "oci", "--image", f"{host}/octo/*", "--yes")
    assert code == 2, err
    assert doc is None
    assert "does not list its repositories" in err
    assert "--image" in err  # what to do instead
    assert len(ghcr.versions("octo", "app")) == 2


class _Meddler(PruneListener):
    """While team/a is planned: every manifest of team/b is deleted, team/new is pushed."""

    def __init__(self, registry: Registry, pusher: Pusher) -> None:
        self.registry = registry
        self.pusher = pusher

    def planned(self, image: str, plan: Plan) -> None:
        if not image.endswith("/team/a"):
            return
        with httpx.Client(timeout=10) as client:
            for tag in self.pusher.tags("team/b"):
                url = f"{self.registry.url}/v2/team/b/manifests/{tag}"
                head = client.head(url, headers={"Accept": im.OCI_MANIFEST})
                digest = head.headers["Docker-Content-Digest"]
                gone = client.delete(f"{self.registry.url}/v2/team/b/manifests/{digest}")
                assert gone.status_code == 202
        self.pusher.push("team/new", im.image(label="new"), "dev-0000001")


def test_repositories_that_appear_or_empty_during_the_run(
    registry: Registry, pusher: Pusher
) -> None:
    fill(pusher)
    with httpx.Client(trust_env=False, timeout=10) as client:
        run = prune_packages(
            [f"{registry.host}/team/*"],
            Policy.uniform(1, min_age=timedelta(0)),
            options=BackendOptions(),
            client=client,
            clock=lambda: datetime.now(UTC),
            listener=_Meddler(registry, pusher),
        )
    by_image = {r.image: r for r in run.results}
    assert sorted(by_image) == [f"{registry.host}/team/a", f"{registry.host}/team/b"]
    emptied = by_image[f"{registry.host}/team/b"]
    assert emptied.error is None  # an emptied repository has nothing to prune
    assert emptied.plan is not None
    assert emptied.plan.decisions == ()
    assert int(run.exit_code) == 0
    assert pusher.tags("team/a") == ["dev-0000003"]
    assert pusher.tags("team/new") == ["dev-0000001"]  # listed too late: untouched
