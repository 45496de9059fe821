"""``tagkeeper prune --env`` against the GHCR emulator: what prod runs and would roll back
to survives, whole, and the plan says why.

The deploy ledger is a real SQLite file written by ``tagkeeper record``; the registry
state afterwards is read back through the emulator and pulled through ``/v2``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import tagkeeper.registries.ghcr as ghcr_adapter
from tagkeeper.cli import main
from tagkeeper.registries.pacing import PacerSettings
from tests.emulators import images
from tests.integration.ghcr.test_prune_ghcr import OWNER, days, digests, resolve_all, tag_map

if TYPE_CHECKING:
    from tests.emulators.ghcr import GhcrEmulator

pytestmark = pytest.mark.integration

REPO = f"ghcr.io/{OWNER}/app"


@pytest.fixture
def token(ghcr: GhcrEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    # GitHub's delete pacing is tested in tests/unit/test_pacing.py; here it only slows
    monkeypatch.setattr(
        ghcr_adapter,
        "DEFAULT_PACER_SETTINGS",
        PacerSettings(max_rate=60_000, start_rate=30_000, min_rate=3_000, default_wait=0.2),
    )
    monkeypatch.chdir(tmp_path)  # no stray tagkeeper.toml
    for name in (
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GITHUB_API_URL",
        "GITHUB_OUTPUT",
        "GITHUB_REPOSITORY",
    ):
        monkeypatch.delenv(name, raising=False)
    ghcr.add_user(OWNER)
    value = ghcr.add_token(login=OWNER)
    monkeypatch.setenv("GITHUB_TOKEN", value)
    return value


def run(ghcr: GhcrEmulator, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["prune", "--api-url", ghcr.api_url, "--registry-url", ghcr.registry_url, *args])
    out, err = capsys.readouterr()
    assert out.strip(), f"no output (exit {code}): {err}"
    return code, json.loads(out)


def record(ledger: Path, tag: str, status: str, digest: str | None = None) -> None:
    argv = ["record", "--ledger", str(ledger), "--env", "prod", "--image", f"{REPO}:{tag}"]
    argv += ["--status", status] + (["--digest", digest] if digest else [])
    assert main(argv) == 0


def test_what_prod_runs_and_would_roll_back_to_survives_keep_1(
    ghcr: GhcrEmulator, token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    releases = {}
    for i in range(4):  # v1.0.0 .. v1.3.0, multi-arch with attestations
        tag = f"v1.{i}.0"
        releases[tag] = images.multiarch(label=tag)
        ghcr.push_built(OWNER, "app", releases[tag], tags=[tag], created=days(i))
    ledger = tmp_path / "ledger.db"
    record(ledger, "v1.0.0", "succeeded")  # by tag only
    record(ledger, "v1.1.0", "succeeded", releases["v1.1.0"].digest)  # runs now, pinned
    record(ledger, "v1.3.0", "failed")  # tried after v1.1.0 and failed: it may still run
    args = (
        *("--image", REPO, "--keep", "1", "--min-age", "0"),
        *("--env", "prod", "--ledger", str(ledger), "--format", "json"),
    )

    code, dry = run(ghcr, capsys, *args, "--dry-run")
    assert code == 0
    (entry,) = dry["images"]
    kept = {tag: item["reason"] for item in entry["keep"] for tag in item["tags"]}
    assert "current in prod (ledger)" in kept["v1.1.0"]
    assert "rollback target for prod (ledger)" in kept["v1.0.0"]
    assert "failed deploy to prod, may still run (ledger)" in kept["v1.3.0"]
    assert {t for item in entry["delete"] for t in item["tags"]} == {"v1.2.0"}

    code, real = run(ghcr, capsys, *args, "--yes")
    assert code == 0
    assert real["images"][0]["keep"] == entry["keep"]  # the dry run showed this plan
    assert sorted(tag_map(ghcr)) == ["v1.0.0", "v1.1.0", "v1.3.0"]
    for tag in ("v1.0.0", "v1.1.0"):  # index, 2 platform images, 2 attestations
        assert len(resolve_all(ghcr, token, "app", tag)) == 5
    assert not {c.digest for c in releases["v1.2.0"].children} & digests(ghcr)


def test_a_ghcr_dry_run_never_imports_the_docker_sdk(
    ghcr: GhcrEmulator, token: str, tmp_path: Path
) -> None:
    ghcr.push_built(OWNER, "app", images.image(label="a"), tags=["v1.0.0"], created=days(1))
    ghcr.push_built(OWNER, "app", images.image(label="b"), tags=["v1.1.0"], created=days(2))
    script = (
        "import sys\n"
        "from tagkeeper.cli import main\n"
        f"code = main(['prune', '--image', {REPO!r}, '--keep', '1', '--min-age', '0',\n"
        f"             '--api-url', {ghcr.api_url!r}, '--registry-url', {ghcr.registry_url!r},\n"
        "             '--dry-run', '--format', 'json'])\n"
        "loaded = [m for m in ('docker', 'tagkeeper.registries.local') if m in sys.modules]\n"
        "sys.stderr.write('LOADED=' + ','.join(loaded) + '\\n')\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"][0]["delete"][0]["tags"] == ["v1.0.0"]
    assert "LOADED=\n" in result.stderr


def test_a_refused_multiarch_release_keeps_its_platforms_and_other_garbage_goes(
    ghcr: GhcrEmulator, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ghcr.create_package(OWNER, "app", visibility="public")
    popular = images.multiarch(label="popular")  # GitHub refuses to delete it
    ghcr.push_built(OWNER, "app", popular, tags=["v1.0.0"], created=days(1))
    ghcr.set_downloads(OWNER, "app", popular.digest, 6000)
    newest = images.image(label="new")
    ghcr.push_built(OWNER, "app", newest, tags=["v2.0.0"], created=days(5))
    garbage = images.image(label="garbage")  # untagged, reachable from nothing
    ghcr.push_built(OWNER, "app", garbage, created=days(2))
    args = ("--image", REPO, "--keep", "1", "--min-age", "0", "--yes", "--format", "json")

    code, payload = run(ghcr, capsys, *args)

    assert code == 6  # partial: the refusal is reported; a rerun cannot change it
    applied = payload["images"][0]["applied"]
    statuses = {r["digest"]: r["status"] for r in applied["results"]}
    assert statuses[popular.digest] == "refused"
    assert statuses[garbage.digest] == "deleted"
    left = digests(ghcr)
    assert garbage.digest not in left
    # v1.0.0 still exists, so it must still pull whole: index, platforms, attestations
    assert len(resolve_all(ghcr, token, "app", "v1.0.0")) == 5
    assert {r["digest"] for r in applied["skipped"]} == {c.digest for c in popular.children}
    assert "v1.0.0 (refused)" in applied["replanned"]
