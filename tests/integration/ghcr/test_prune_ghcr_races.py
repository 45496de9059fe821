"""``tagkeeper prune`` on GHCR while other jobs push and delete, and with a token that
can read but not delete (the GHCR emulator over real HTTP on 127.0.0.1).

Another job acts *between two requests of the prune* through the emulator's
``before_next`` hook: it deletes a version while the listing is read page by page, or
pushes an image that reuses a platform manifest the plan deletes as garbage. What is
checked is the registry afterwards: every image still there pulls in full through
``/v2``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

import tagkeeper.registries.ghcr as ghcr_adapter
from tagkeeper.registries.pacing import PacerSettings
from tests.emulators import images
from tests.integration.ghcr.test_prune_ghcr import (
    OWNER,
    Cli,
    days,
    digests,
    resolve_all,
    tag_map,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.emulators.ghcr import GhcrEmulator

pytestmark = pytest.mark.integration

IMAGE = f"ghcr.io/{OWNER}/app"
WINDOW = 0.5  # seconds: the re-check window of these tests


def push_then_outlast_the_window(emu: GhcrEmulator, built: images.Built, tag: str) -> None:
    """CI pushes ``built``; then the DELETE it came before waits out the re-check window,
    so the next delete's look must be renewed and see the push."""
    emu.push_built(OWNER, "app", built, tags=[tag])
    time.sleep(WINDOW + 0.2)


@pytest.fixture(autouse=True)
def fast_pacing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # GitHub's pacing is tested in tests/unit/test_pacing.py; here it would only slow
    monkeypatch.setattr(
        ghcr_adapter,
        "DEFAULT_PACER_SETTINGS",
        PacerSettings(max_rate=60_000, start_rate=30_000, min_rate=3_000, default_wait=0.2),
    )
    # a short re-check window, so that a push can outlast it within a test
    monkeypatch.setattr(ghcr_adapter, "DEFAULT_RECHECK_WINDOW", WINDOW)
    monkeypatch.chdir(tmp_path)  # no stray tagkeeper.toml
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_API_URL", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def token(ghcr: GhcrEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    ghcr.add_user(OWNER)
    value = ghcr.add_token(login=OWNER)
    monkeypatch.setenv("GITHUB_TOKEN", value)
    return value


@pytest.fixture
def cli(ghcr: GhcrEmulator, token: str, capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    runner = Cli(ghcr, capsys)
    yield runner
    for text in runner.outputs:  # tokens never show
        assert token not in text


def seed_release_at_the_top_of_page_2(emu: GhcrEmulator) -> images.Built:
    """v1.0.0 (a buildx index: 5 versions), then 100 newer dev images: newest first, the
    release index is the 101st version, the first one of page 2."""
    release = images.multiarch(label="v1.0.0")
    emu.push_built(OWNER, "app", release, tags=["v1.0.0"], created=days(0))
    for i in range(100):
        emu.push_built(
            OWNER, "app", images.image(label=f"d{i}"), tags=[f"dev-{i:07x}"], created=days(1 + i)
        )
    order = [v.digest for v in emu.versions(OWNER, "app")]
    assert order.index(release.digest) == 100
    return release


KEEP_ALL_DEV = ("--image", IMAGE, "--keep-dev", "100", "--keep-release", "1", "--min-age", "0")


def test_a_delete_while_the_listing_is_read_never_makes_a_kept_index_look_like_garbage(
    cli: Cli, ghcr: GhcrEmulator, token: str
) -> None:
    release = seed_release_at_the_top_of_page_2(ghcr)
    # another job deletes a dev image on page 1 after page 1 was read: page 2 shifts up
    # one place, and its first version (the release index) is not on it any more
    victim = tag_map(ghcr)["dev-0000032"]
    ghcr.before_next(
        1,
        lambda: ghcr.delete_version(OWNER, "app", victim),
        kinds=["rest.versions.list"],
        query={"page": "2"},
    )
    result = cli(*KEEP_ALL_DEV, "--yes", "--format", "json")
    assert result.code == 0, result.err
    entry = result.json()["images"][0]
    assert entry["delete"] == []
    kept = {d["digest"]: d["rule"] for d in entry["keep"]}
    assert kept[release.digest] == "newest-release"
    assert len(resolve_all(ghcr, token, "app", "v1.0.0")) == 5  # whole
    assert {c.digest for c in release.children} <= digests(ghcr)
    requests = entry["requests"]
    assert requests["list"] == 2
    assert requests["list-verify"] >= 4  # the listing that disagreed, and its confirmation


def test_a_package_that_keeps_changing_while_listed_is_not_pruned(
    cli: Cli, ghcr: GhcrEmulator
) -> None:
    release = seed_release_at_the_top_of_page_2(ghcr)
    victims = iter(sorted(tag_map(ghcr).items()))

    def another_prune() -> None:
        tag, digest = next(victims)
        if tag.startswith("dev-"):
            ghcr.delete_version(OWNER, "app", digest)

    ghcr.before_next(10, another_prune, kinds=["rest.versions.list"], query={"page": "2"})
    before = digests(ghcr)
    result = cli(*KEEP_ALL_DEV, "--keep-dev", "3", "--yes", "--format", "json")
    assert result.code == 5, result.err
    error = result.json()["images"][0]["error"]
    assert "changed during each of 4 listings" in error["message"]
    assert "nothing was planned or deleted" in error["message"]
    with ghcr.lock:
        assert ghcr.counters["rest.version.delete"] == 0
    assert release.digest in digests(ghcr)
    assert digests(ghcr) <= before


def buildx_dev(label: str) -> images.Built:
    return images.multiarch(("linux/amd64", "linux/arm64"), attest=False, label=label)


def test_a_push_during_apply_that_reuses_a_planned_garbage_manifest_stops_its_delete(
    cli: Cli, ghcr: GhcrEmulator, token: str
) -> None:
    old, new = buildx_dev("old"), buildx_dev("new")
    ghcr.push_built(OWNER, "app", old, tags=["dev-0000001"], created=days(1))
    ghcr.push_built(OWNER, "app", new, tags=["dev-0000002"], created=days(2))
    reused = old.children[0]  # linux/amd64 did not change: buildx pushes the same manifest
    ci_push = images.index([reused, images.image("linux/arm64", label="ci")])

    # CI pushes dev-9999999 while the prune deletes: right before the first DELETE (the
    # old index), so the platform images of the old index are still to be deleted; the
    # look that covered that DELETE began before the push, and is older than the window
    # by the next one
    ghcr.before_next(
        1,
        lambda: push_then_outlast_the_window(ghcr, ci_push, "dev-9999999"),
        kinds=["rest.version.delete"],
    )
    args = ("--image", IMAGE, "--keep-dev", "1", "--min-age", "0", "--yes", "--format", "json")
    first = cli(*args)
    assert first.code == 6, first.err  # partial: the reused manifest was skipped
    results = {r["digest"]: r for r in first.json()["images"][0]["applied"]["results"]}
    assert results[old.digest]["status"] == "deleted"
    assert results[reused.digest]["status"] == "changed"
    assert ci_push.digest[:19] in results[reused.digest]["detail"]
    assert "dev-9999999" in results[reused.digest]["detail"]
    assert results[old.children[1].digest]["status"] == "deleted"  # the other one goes
    assert len(resolve_all(ghcr, token, "app", "dev-9999999")) == 3  # whole
    assert len(resolve_all(ghcr, token, "app", "dev-0000002")) == 3
    second = cli(*args)
    assert second.code == 0, second.err
    assert sorted(tag_map(ghcr)) == ["dev-9999999"]
    assert len(resolve_all(ghcr, token, "app", "dev-9999999")) == 3


def test_a_push_during_apply_keeps_the_signature_of_the_manifest_it_reuses(
    cli: Cli, ghcr: GhcrEmulator, token: str
) -> None:
    old, new = buildx_dev("old-signed"), buildx_dev("new-signed")
    ghcr.push_built(OWNER, "app", old, tags=["dev-0000001"], created=days(1))
    reused = old.children[0]
    signature = images.referrer(reused, label="sbom of amd64")  # OCI 1.1, subject: reused
    ghcr.push_built(OWNER, "app", signature, created=days(1))
    ghcr.push_built(OWNER, "app", new, tags=["dev-0000002"], created=days(2))
    ci_push = images.index([reused, images.image("linux/arm64", label="ci-signed")])
    ghcr.before_next(
        1,
        lambda: push_then_outlast_the_window(ghcr, ci_push, "dev-9999999"),
        kinds=["rest.version.delete"],
    )
    args = ("--image", IMAGE, "--keep-dev", "1", "--min-age", "0", "--yes", "--format", "json")
    first = cli(*args)
    assert first.code == 6, first.err
    results = {r["digest"]: r for r in first.json()["images"][0]["applied"]["results"]}
    assert results[signature.digest]["status"] == "changed"  # what the push reuses keeps
    assert reused.digest[:19] in results[signature.digest]["detail"]  # its SBOM
    left = {v.digest for v in ghcr.versions(OWNER, "app")}
    assert {reused.digest, signature.digest, ci_push.digest} <= left


def test_the_re_check_costs_one_look_per_window_not_a_request_per_delete(
    cli: Cli, ghcr: GhcrEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ghcr_adapter, "DEFAULT_RECHECK_WINDOW", 600.0)  # one look covers all
    for i in range(30):
        ghcr.push_built(
            OWNER, "app", images.image(label=f"d{i}"), tags=[f"dev-{i:07x}"], created=days(i)
        )
    result = cli("--image", IMAGE, "--keep", "20", "--min-age", "0", "--yes", "--format", "json")
    assert result.code == 0, result.err
    entry = result.json()["images"][0]
    assert entry["applied"]["counts"]["deleted"] == 10
    # page 1 (100 per page) shows the tags of all 10 and that nothing was pushed
    assert entry["requests"]["list-recheck"] == 1
    assert "version-get" not in entry["requests"]
    assert "list-new" not in entry["requests"]
    assert entry["requests"]["delete"] == 10
    with ghcr.lock:
        assert ghcr.counters["rest.version.get"] == 0


def test_a_tag_moved_onto_a_planned_delete_outside_the_window_stops_it(
    cli: Cli, ghcr: GhcrEmulator
) -> None:
    for i in range(4):
        ghcr.push_built(
            OWNER, "app", images.image(label=f"m{i}"), tags=[f"dev-{i:07x}"], created=days(i)
        )
    by_tag = {t: v.digest for v in ghcr.versions(OWNER, "app") for t in v.tags}

    def retag_then_wait() -> None:  # another job tags dev-0000001's image 'stable'
        ghcr.tag(OWNER, "app", "stable", by_tag["dev-0000001"])
        time.sleep(WINDOW + 0.2)

    # deletes go newest first: dev-0000002, dev-0000001, dev-0000000
    ghcr.before_next(1, retag_then_wait, kinds=["rest.version.delete"])
    result = cli("--image", IMAGE, "--keep", "1", "--min-age", "0", "--yes", "--format", "json")
    assert result.code == 6, result.err
    results = {r["digest"]: r for r in result.json()["images"][0]["applied"]["results"]}
    assert results[by_tag["dev-0000001"]]["status"] == "changed"
    assert "now tagged stable" in results[by_tag["dev-0000001"]]["detail"]
    assert results[by_tag["dev-0000000"]]["status"] == "deleted"
    assert sorted(tag_map(ghcr)) == ["dev-0000001", "dev-0000003", "stable"]


# ------------------------------------------------------------------ permissions


def add_package(emu: GhcrEmulator, count: int = 10) -> None:
    for i in range(count):
        emu.push_built(
            OWNER, "app", images.image(label=f"d{i}"), tags=[f"dev-{i:07x}"], created=days(i)
        )


def test_a_workflow_token_without_the_admin_role_stops_at_the_first_refusal(
    ghcr: GhcrEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ghcr.add_user(OWNER)
    add_package(ghcr)
    token = ghcr.add_token(
        login="github-actions[bot]", kind="github_token", packages={f"{OWNER}/app": "write"}
    )
    monkeypatch.setenv("GITHUB_TOKEN", token)
    cli = Cli(ghcr, capsys)
    before = digests(ghcr)
    result = cli("--image", IMAGE, "--keep", "1", "--min-age", "0", "--yes", "--format", "json")
    assert result.code == 4, result.err
    with ghcr.lock:
        assert ghcr.counters["rest.version.delete"] == 1  # one refusal, no more
    assert digests(ghcr) == before
    applied = result.json()["images"][0]["applied"]
    assert applied["counts"]["refused"] == 0
    assert len(applied["skipped"]) == 9
    assert "Manage Actions access" in applied["stopped"]
    lines = [line for line in result.err.splitlines() if "Manage Actions access" in line]
    assert len(lines) == 2  # the line that stopped the run, and its hint
    assert token not in result.out + result.err


def test_a_workflow_token_without_packages_write_says_so(
    ghcr: GhcrEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ghcr.add_user(OWNER)
    add_package(ghcr, 3)
    token = ghcr.add_token(
        login="github-actions[bot]",
        kind="github_token",
        packages={f"{OWNER}/app": "admin"},
        packages_permission="read",
    )
    monkeypatch.setenv("GITHUB_TOKEN", token)
    result = Cli(ghcr, capsys)("--image", IMAGE, "--keep", "1", "--min-age", "0", "--yes")
    assert result.code == 4
    assert "lacks 'packages: write'" in result.err
    assert "permissions: packages: write" in result.err


def test_a_classic_token_without_delete_scope_is_refused_before_anything_is_deleted(
    ghcr: GhcrEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ghcr.add_user(OWNER)
    add_package(ghcr)
    token = ghcr.add_token(login=OWNER, scopes={"read:packages", "write:packages"})
    monkeypatch.setenv("GITHUB_TOKEN", token)
    cli = Cli(ghcr, capsys)
    dry = cli("--image", IMAGE, "--keep", "1", "--min-age", "0", "--dry-run")
    assert dry.code == 0  # planning needs read:packages only
    result = cli("--image", IMAGE, "--keep", "1", "--min-age", "0", "--yes", "--format", "json")
    assert result.code == 4
    with ghcr.lock:
        assert ghcr.counters["rest.version.delete"] == 0
    error = result.json()["images"][0]["error"]
    assert "lacks the delete:packages scope" in error["message"]
    assert "nothing was deleted" in error["message"]
