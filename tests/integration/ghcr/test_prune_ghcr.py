"""``tagkeeper prune`` end to end against the GHCR emulator (real HTTP on 127.0.0.1).

The CLI runs in-process (``tagkeeper.cli.main``) with ``--api-url``/``--registry-url``
pointing at the emulator. What is checked is the registry's state afterwards, read back
through the emulator and through ghcr.io's ``/v2`` surface, not the command's own claims.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

import tagkeeper.registries.ghcr as ghcr_adapter
import tagkeeper.retention.executor
from tagkeeper.cli import main
from tagkeeper.registries.pacing import PacerSettings
from tests.emulators import images

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tagkeeper.inventory import Backend
    from tagkeeper.retention.executor import ApplyReport
    from tagkeeper.retention.planner import Plan
    from tests.emulators.ghcr import GhcrEmulator
    from tests.integration.ghcr.conftest import MakeGhcr

pytestmark = pytest.mark.integration

OWNER = "octo"
ACCEPT = ", ".join(
    (images.OCI_INDEX, images.OCI_MANIFEST, images.DOCKER_LIST, images.DOCKER_MANIFEST)
)
BASE = datetime.now(UTC) - timedelta(days=90)


@pytest.fixture(autouse=True)
def fast_pacing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The emulator answers in microseconds; GitHub's pacing (60-180 deletes a minute)
    # would make every test take minutes. The pacing itself is tested in
    # tests/unit/test_pacing.py and measured in bench/ghcr_prune_bench.py.
    monkeypatch.setattr(
        ghcr_adapter,
        "DEFAULT_PACER_SETTINGS",
        PacerSettings(max_rate=60_000, start_rate=30_000, min_rate=3_000, default_wait=0.2),
    )
    monkeypatch.chdir(tmp_path)  # no stray tagkeeper.toml
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_API_URL", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    def __init__(self, emu: GhcrEmulator, capsys: pytest.CaptureFixture[str]) -> None:
        self.emu = emu
        self.capsys = capsys
        self.outputs: list[str] = []

    def __call__(self, *args: str) -> Result:
        argv = ["prune", "--api-url", self.emu.api_url, "--registry-url", self.emu.registry_url]
        code = main([*argv, *args])
        captured = self.capsys.readouterr()
        self.outputs.extend((captured.out, captured.err))
        return Result(code, captured.out, captured.err)


@pytest.fixture
def token(ghcr: GhcrEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    ghcr.add_user(OWNER)
    value = ghcr.add_token(login=OWNER)
    monkeypatch.setenv("GITHUB_TOKEN", value)
    return value


@pytest.fixture
def cli(
    ghcr: GhcrEmulator,
    token: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> Iterator[Cli]:
    runner = Cli(ghcr, capsys)
    yield runner
    for text in (*runner.outputs, caplog.text):  # tokens never show, in any test
        assert token not in text


def days(n: float) -> datetime:
    return BASE + timedelta(days=n)


def digests(emu: GhcrEmulator, package: str = "app") -> set[str]:
    return {v.digest for v in emu.versions(OWNER, package)}


def tag_map(emu: GhcrEmulator, package: str = "app") -> dict[str, str]:
    return {t: v.digest for v in emu.versions(OWNER, package) for t in v.tags}


def resolve_all(emu: GhcrEmulator, token: str, package: str, tag: str) -> list[str]:
    """Pull ``tag`` through /v2 as a client would: the manifest and every manifest it lists
    (recursively). Returns the digests; fails the test on any 'manifest unknown'."""
    with httpx.Client(base_url=emu.registry_url) as client:
        answer = client.get(
            "/token",
            params={"scope": f"repository:{OWNER}/{package}:pull", "service": "ghcr.io"},
            auth=("x", token),
        )
        bearer = answer.json()["token"]
        headers = {"Accept": ACCEPT, "Authorization": f"Bearer {bearer}"}
        seen: list[str] = []
        todo = [tag]
        while todo:
            ref = todo.pop()
            got = client.get(f"/v2/{OWNER}/{package}/manifests/{ref}", headers=headers)
            assert got.status_code == 200, f"{package}:{tag} -> {ref}: {got.status_code} {got.text}"
            seen.append(got.headers["docker-content-digest"])
            todo.extend(m["digest"] for m in got.json().get("manifests", []))
        return seen


def referrers_index(subject: str, *referrers: images.Built) -> images.Built:
    """The OCI referrers tag schema index an OCI 1.1 client pushes to a registry without
    the referrers API (as ghcr.io): tagged ``sha256-<hex of subject>``."""
    return images.index(list(referrers))


@dataclass
class Seeded:
    releases: dict[str, images.Built]
    devs: dict[str, images.Built]
    shared_child: str
    signature_kept: str
    signature_gone: str
    referrer: str
    orphan_index: str


def seed_app(emu: GhcrEmulator) -> Seeded:
    """A realistic package: multi-arch releases with buildx attestations, dev images,
    cosign signatures, an OCI 1.1 referrer, a child shared between a kept and a deleted
    index, an index whose children are gone, and untagged garbage."""
    releases: dict[str, images.Built] = {}
    for i in range(6):
        tag = f"v1.{i}.0"
        releases[tag] = images.multiarch(label=tag)
        emu.push_built(OWNER, "app", releases[tag], tags=[tag], created=days(i * 10))
    devs: dict[str, images.Built] = {}
    for i in range(6):
        tag = f"dev-{i:07x}"
        devs[tag] = images.image(label=tag)
        emu.push_built(OWNER, "app", devs[tag], tags=[tag], created=days(i * 10 + 1))
    # a platform image shared by an old (deleted) dev index and a kept release-candidate
    shared = images.image("linux/s390x", label="shared")
    old = images.index([shared, images.image("linux/amd64", label="old")])
    emu.push_built(OWNER, "app", old, tags=["dev-00000aa"], created=days(0.5))
    kept = images.index([shared, images.image("linux/amd64", label="new")])
    emu.push_built(OWNER, "app", kept, tags=["v2.0.0-rc.1"], created=days(70))
    # cosign signatures of the newest release (kept) and of the oldest one (deleted)
    newest, oldest = releases["v1.5.0"], releases["v1.0.0"]
    for subject, when in ((newest, 51), (oldest, 1)):
        sig = images.cosign_signature(subject)
        emu.push_built(
            OWNER, "app", sig, tags=[images.cosign_tag(subject.digest)], created=days(when)
        )
    # an OCI 1.1 SBOM referrer of v1.4.0 and its tag schema index
    subject = releases["v1.4.0"]
    sbom = images.referrer(subject, label="sbom")
    emu.push_built(OWNER, "app", sbom, created=days(42))
    schema = referrers_index(subject.digest, sbom)
    emu.push(
        OWNER,
        "app",
        schema.data,
        schema.media_type,
        tags=["sha256-" + subject.digest.split(":")[1]],
        created=days(42),
    )
    # an index whose children were deleted by hand (the UI lets people do that)
    orphan = images.multiarch(("linux/amd64",), attest=False, label="orphan")
    emu.push_built(OWNER, "app", orphan, tags=["nightly"], created=days(-5))
    for child in orphan.children:
        emu.delete_version(OWNER, "app", child.digest)
    # untagged garbage: an image whose tag moved away
    for i in range(3):
        garbage = images.image(label=f"garbage{i}")
        emu.push_built(OWNER, "app", garbage, created=days(i))
    return Seeded(
        releases=releases,
        devs=devs,
        shared_child=shared.digest,
        signature_kept=images.cosign_tag(newest.digest),
        signature_gone=images.cosign_tag(oldest.digest),
        referrer=sbom.digest,
        orphan_index=orphan.digest,
    )


KEEP3 = ("--image", f"ghcr.io/{OWNER}/app", "--keep", "3", "--min-age", "0")


def test_prune_keeps_every_kept_image_whole(cli: Cli, ghcr: GhcrEmulator, token: str) -> None:
    seeded = seed_app(ghcr)
    before = digests(ghcr)
    dry = cli(*KEEP3, "--dry-run", "--format", "json")
    assert dry.code == 0, dry.err
    assert digests(ghcr) == before  # a dry run deletes nothing
    real = cli(*KEEP3, "--yes", "--format", "json")
    assert real.code == 0, real.err
    dry_image, real_image = dry.json()["images"][0], real.json()["images"][0]
    assert dry.json()["dry_run"] is True
    assert real.json()["dry_run"] is False
    for key in ("keep", "delete", "warnings", "unreadable"):
        assert dry_image[key] == real_image[key]  # the dry run showed exactly this plan
    for item in real_image["delete"] + real_image["keep"]:
        assert {"digest", "tags", "reason"} <= set(item)

    tags = tag_map(ghcr)
    # the newest 3 releases and dev images, the prerelease, the unmatched-free rest
    for tag in (
        "v1.5.0",
        "v1.4.0",
        "v1.3.0",
        "dev-0000005",
        "dev-0000004",
        "dev-0000003",
        "v2.0.0-rc.1",
        "nightly",
        seeded.signature_kept,
    ):
        assert tag in tags, f"{tag} was deleted"
    for tag in ("v1.2.0", "v1.0.0", "dev-0000000", "dev-00000aa", seeded.signature_gone):
        assert tag not in tags, f"{tag} was kept"
    # every kept tag still pulls with all its children (platforms and attestations)
    for tag in tags:
        if tag.startswith("v") or tag.startswith("dev-"):
            if tag == "nightly":
                continue  # its children were already gone before the run
            pulled = resolve_all(ghcr, token, "app", tag)
            assert len(pulled) >= 1
    for tag in ("v1.5.0", "v1.4.0", "v1.3.0"):
        assert len(resolve_all(ghcr, token, "app", tag)) == 5  # index + 2 images + 2 attest.
    after = digests(ghcr)
    assert seeded.shared_child in after  # shared by a kept and a deleted index
    assert seeded.referrer in after  # OCI 1.1 referrer of a kept image
    assert seeded.orphan_index in after
    for release in ("v1.2.0", "v1.1.0", "v1.0.0"):  # deleted images leave no children behind
        for child in seeded.releases[release].children:
            assert child.digest not in after
    assert real_image["applied"]["counts"]["deleted"] == len(before - after)
    # a second run finds nothing to do
    again = cli(*KEEP3, "--yes", "--format", "json")
    assert again.code == 0
    assert again.json()["images"][0]["delete"] == []


def test_text_output_is_a_table_and_nothing_to_delete_is_success(
    cli: Cli, ghcr: GhcrEmulator
) -> None:
    ghcr.push_built(OWNER, "app", images.image(label="a"), tags=["v1.0.0"], created=days(1))
    result = cli("--image", f"ghcr.io/{OWNER}/app", "--keep", "3", "--min-age", "0", "--yes")
    assert result.code == 0
    assert "KEEP" in result.out
    assert "v1.0.0" in result.out
    assert "nothing to delete" in result.err


def test_more_than_100_versions_are_listed_in_parallel_pages(cli: Cli, ghcr: GhcrEmulator) -> None:
    for i in range(130):
        ghcr.push_built(
            OWNER,
            "app",
            images.image(label=f"d{i}"),
            tags=[f"dev-{i:07x}"],
            created=days(i / 10),
        )
    result = cli(
        "--image",
        f"ghcr.io/{OWNER}/app",
        "--keep",
        "5",
        "--min-age",
        "0",
        "--yes",
        "--format",
        "json",
    )
    assert result.code == 0, result.err
    image = result.json()["images"][0]
    assert len(image["delete"]) == 125
    assert image["requests"]["list"] == 2  # 130 versions: two pages of 100
    assert sorted(tag_map(ghcr)) == [f"dev-{i:07x}" for i in range(125, 130)]


def test_a_tag_pushed_between_plan_and_apply_is_skipped_then_kept(
    cli: Cli, ghcr: GhcrEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    olds = []
    for i in range(4):
        built = images.image(label=f"r{i}")
        olds.append(built)
        ghcr.push_built(OWNER, "app", built, tags=[f"v1.{i}.0"], created=days(i))
    real_apply = tagkeeper.retention.executor.apply_plan

    def push_meanwhile(plan: Plan, backend: Backend, **kw: Any) -> ApplyReport:
        # a CI job tags the oldest release "stable" while the plan is being applied
        ghcr.tag(OWNER, "app", "stable", olds[0].digest)
        return real_apply(plan, backend, **kw)

    monkeypatch.setattr(tagkeeper.retention.executor, "apply_plan", push_meanwhile)
    first = cli(
        "--image",
        f"ghcr.io/{OWNER}/app",
        "--keep",
        "2",
        "--min-age",
        "0",
        "--yes",
        "--format",
        "json",
    )
    assert first.code == 6  # partial: rerun
    results = first.json()["images"][0]["applied"]["results"]
    by_digest = {r["digest"]: r for r in results}
    assert by_digest[olds[0].digest]["status"] == "changed"
    assert "stable" in by_digest[olds[0].digest]["detail"]
    assert by_digest[olds[1].digest]["status"] == "deleted"
    assert olds[0].digest in digests(ghcr)
    monkeypatch.setattr(tagkeeper.retention.executor, "apply_plan", real_apply)
    second = cli(
        "--image",
        f"ghcr.io/{OWNER}/app",
        "--keep",
        "2",
        "--min-age",
        "0",
        "--yes",
        "--format",
        "json",
    )
    assert second.code == 0
    assert tag_map(ghcr)["stable"] == olds[0].digest  # 'stable' matches no channel: kept


def test_faults_and_limits_converge_over_reruns(
    make_ghcr: MakeGhcr, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = make_ghcr(delete_limit=6, delete_window=1.0, primary_limit=150, primary_window=3.0)
    emu.add_user(OWNER)
    token = emu.add_token(login=OWNER)
    monkeypatch.setenv("GITHUB_TOKEN", token)
    for i in range(24):
        emu.push_built(
            OWNER,
            "app",
            images.multiarch(("linux/amd64",), attest=False, label=f"d{i}"),
            tags=[f"dev-{i:07x}"],
            created=days(i),
        )
    emu.fail_randomly(0.15, statuses=(500, 502, 503), surface="rest")
    cli = Cli(emu, capsys)
    codes = []
    for _ in range(12):
        result = cli(
            "--image",
            f"ghcr.io/{OWNER}/app",
            "--keep",
            "4",
            "--min-age",
            "0",
            "--yes",
            "--format",
            "json",
        )
        codes.append(result.code)
        if result.code == 0:
            break
        assert result.code in (5, 6, 10), result.err  # registry, partial, rate limited
        if result.code == 10:
            assert "rerun" in result.err
            time.sleep(3.0)  # the primary window resets
    assert codes[-1] == 0, codes
    emu.fail_randomly(0.0)
    assert sorted(tag_map(emu)) == [f"dev-{i:07x}" for i in range(20, 24)]
    assert len(digests(emu)) == 8  # 4 kept indexes and their 4 platform images
    snapshot = emu.snapshot()
    assert snapshot["limited"].get("secondary.delete", 0) > 0  # the limit was really hit
    for text in cli.outputs:
        assert token not in text


def test_the_primary_limit_stops_cleanly_and_max_wait_waits_it_out(
    make_ghcr: MakeGhcr, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = make_ghcr(primary_limit=12, primary_window=2.0)
    emu.add_user(OWNER)
    monkeypatch.setenv("GITHUB_TOKEN", emu.add_token(login=OWNER))
    for i in range(16):  # 15 deletes: more than the 12 requests the window allows
        emu.push_built(
            OWNER, "app", images.image(label=f"d{i}"), tags=[f"dev-{i:07x}"], created=days(i)
        )
    cli = Cli(emu, capsys)
    args = (
        "--image",
        f"ghcr.io/{OWNER}/app",
        "--keep",
        "1",
        "--min-age",
        "0",
        "--yes",
        "--format",
        "json",
    )
    stopped = cli(*args, "--max-wait", "0s")  # waiting not allowed: stop at once
    assert stopped.code == 10
    applied = stopped.json()["images"][0]["applied"]
    assert applied["stopped"]
    assert "left" in applied["stopped"]
    done = applied["counts"]["deleted"]
    assert len(applied["skipped"]) == 15 - done
    assert len(digests(emu)) == 16 - done
    waited = cli(*args)  # the default --max-wait (5m) covers a reset 2 s away
    assert waited.code == 0, waited.err
    assert sorted(tag_map(emu)) == ["dev-000000f"]


def test_a_secondary_limit_asking_for_days_stops_cleanly_within_max_wait(
    make_ghcr: MakeGhcr, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GitHub says "retry-after: 99999999": waiting that long is no run; stop (exit 10)
    emu = make_ghcr(delete_limit=1, delete_window=60.0, retry_after=99_999_999)
    emu.add_user(OWNER)
    monkeypatch.setenv("GITHUB_TOKEN", emu.add_token(login=OWNER))
    for i in range(4):
        emu.push_built(
            OWNER, "app", images.image(label=f"w{i}"), tags=[f"dev-{i:07x}"], created=days(i)
        )
    started = time.monotonic()
    result = Cli(emu, capsys)(
        "--image", f"ghcr.io/{OWNER}/app", "--keep", "1", "--min-age", "0", "--yes",
        "--max-wait", "1m", "--format", "json",
    )  # fmt: skip
    assert time.monotonic() - started < 30
    assert result.code == 10
    applied = result.json()["images"][0]["applied"]
    assert applied["counts"]["deleted"] == 1
    assert "--max-wait" in applied["stopped"] + (applied["error"]["hint"] or "")


def test_github_refusals_are_reported_and_the_rest_goes_on(cli: Cli, ghcr: GhcrEmulator) -> None:
    solo = images.image(label="solo")
    ghcr.push_built(OWNER, "solo", solo, tags=["dev-0000001"], created=days(1))
    ghcr.create_package(OWNER, "pub", visibility="public")
    popular = images.image(label="popular")
    for i, built in enumerate([popular, *(images.image(label=f"p{i}") for i in range(4))]):
        ghcr.push_built(OWNER, "pub", built, tags=[f"dev-{i:07x}"], created=days(i))
    ghcr.set_downloads(OWNER, "pub", popular.digest, 6000)
    latest = images.image(label="latest")  # matches no channel: kept
    ghcr.push_built(OWNER, "pub", latest, tags=["latest"], created=days(10))
    result = cli(
        "--image",
        f"ghcr.io/{OWNER}/solo",
        "--image",
        f"ghcr.io/{OWNER}/pub",
        "--keep",
        "1",
        "--keep-dev",
        "0",
        "--min-age",
        "0",
        "--yes",
        "--format",
        "json",
    )
    assert result.code == 6  # partial: some deletes were refused
    solo_entry, pub_entry = result.json()["images"]
    (solo_result,) = solo_entry["applied"]["results"]
    assert solo_result["status"] == "refused"
    assert "last version" in solo_result["detail"]
    assert digests(ghcr, "solo") == {solo.digest}
    statuses = {r["digest"]: r["status"] for r in pub_entry["applied"]["results"]}
    assert statuses.pop(popular.digest) == "refused"
    assert set(statuses.values()) == {"deleted"}
    assert len(statuses) == 4  # the others went on
    assert digests(ghcr, "pub") == {popular.digest, latest.digest}
    assert "GitHub Support" in result.err


def test_max_delete_refuses_and_deletes_nothing(cli: Cli, ghcr: GhcrEmulator) -> None:
    for i in range(6):
        ghcr.push_built(
            OWNER, "app", images.image(label=f"d{i}"), tags=[f"dev-{i:07x}"], created=days(i)
        )
    before = digests(ghcr)
    result = cli(
        "--image",
        f"ghcr.io/{OWNER}/app",
        "--keep",
        "1",
        "--min-age",
        "0",
        "--max-delete",
        "3",
        "--yes",
        "--format",
        "json",
    )
    assert result.code == 7
    assert digests(ghcr) == before
    entry = result.json()["images"][0]
    assert len(entry["delete"]) == 5
    assert entry["applied"] is None
    assert "--max-delete" in result.err
    assert ghcr.snapshot()["counters"].get("rest.version.delete", 0) == 0


def test_non_interactive_runs_need_yes(cli: Cli, ghcr: GhcrEmulator) -> None:
    ghcr.push_built(OWNER, "app", images.image(label="a"), tags=["dev-0000001"], created=days(1))
    result = cli("--image", f"ghcr.io/{OWNER}/app", "--keep", "0", "--min-age", "0")
    assert result.code == 2
    assert "--yes" in result.err
    assert ghcr.snapshot()["counters"].get("rest.versions.list", 0) == 0  # nothing was asked


def test_a_bad_token_is_an_auth_error_that_never_shows_the_token(
    ghcr: GhcrEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = "ghp_notARealToken0123456789abcdef"
    monkeypatch.setenv("GITHUB_TOKEN", bad)
    cli = Cli(ghcr, capsys)
    result = cli("--image", f"ghcr.io/{OWNER}/app", "--dry-run", "--format", "json")
    assert result.code == 4
    assert result.json()["images"][0]["error"]["code"] == 4
    assert bad not in result.out + result.err


def test_github_format_writes_outputs_and_a_summary(
    cli: Cli, ghcr: GhcrEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        ghcr.push_built(
            OWNER, "app", images.image(label=f"d{i}"), tags=[f"dev-{i:07x}"], created=days(i)
        )
    outputs, summary = tmp_path / "out", tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = cli(
        "--image",
        f"ghcr.io/{OWNER}/app",
        "--keep",
        "1",
        "--min-age",
        "0",
        "--yes",
        "--format",
        "github",
    )
    assert result.code == 0
    text = outputs.read_text()
    assert "deleted=2\n" in text
    assert "kept=1\n" in text
    assert "json<<ghadelimiter_" in text or "json={" in text
    assert "| `ghcr.io/octo/app` | 1 | 2 | 2 |" in summary.read_text()


def test_untagged_keep_keeps_the_tagged_platform_images_of_the_lists_it_keeps(
    cli: Cli, ghcr: GhcrEmulator, token: str
) -> None:
    """``docker manifest create app:latest app:v1.N.0-amd64 app:v1.N.0-arm64`` for three
    releases: ``latest`` moved on, so the two older lists are untagged. ``--untagged keep``
    keeps them, so it must keep the tagged platform images they list."""
    lists = []
    for n in range(3):
        platforms = []
        for arch in ("amd64", "arm64"):
            built = images.image(f"linux/{arch}", label=f"v1.{n}.0")
            ghcr.push_built(OWNER, "app", built, tags=[f"v1.{n}.0-{arch}"], created=days(n))
            platforms.append(built)
        manifest_list = images.index(platforms, docker=True)
        ghcr.push_built(OWNER, "app", manifest_list, tags=["latest"], created=days(n + 0.5))
        lists.append(manifest_list)
    args = ("--image", f"ghcr.io/{OWNER}/app", "--keep-prerelease", "2", "--min-age", "0")
    result = cli(*args, "--untagged", "keep", "--yes", "--format", "json")
    assert result.code == 0, result.err
    assert result.json()["images"][0]["delete"] == []
    for manifest_list in lists:  # every list still pulls in full, by digest
        assert len(resolve_all(ghcr, token, "app", manifest_list.digest)) == 3
    # with --untagged delete the old lists go, and so do the platform images they list
    result = cli(*args, "--yes", "--format", "json")
    assert result.code == 0, result.err
    assert sorted(tag_map(ghcr)) == ["latest", "v1.2.0-amd64", "v1.2.0-arm64"]
    assert len(resolve_all(ghcr, token, "app", "latest")) == 3
    assert len(digests(ghcr)) == 3
