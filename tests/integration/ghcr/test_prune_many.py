"""Many packages in one run on the GHCR emulator: globs and --all through the Packages
API, one shared rate-limit budget that stops between packages, and the next run starting
with what the last one left."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

import tagkeeper.registries.ghcr as ghcr_adapter
from tagkeeper.cli import main
from tagkeeper.registries.factory import BackendOptions
from tagkeeper.registries.pacing import PacerSettings
from tagkeeper.retention.packages import PruneState, prune_packages
from tagkeeper.retention.planner import Policy
from tagkeeper.retention.runner import PruneListener
from tagkeeper.secret import Secret
from tests.emulators import images

if TYPE_CHECKING:
    from pathlib import Path

    from tagkeeper.retention.planner import Plan
    from tests.emulators.ghcr import GhcrEmulator
    from tests.integration.ghcr.conftest import MakeGhcr

pytestmark = pytest.mark.integration

ORG = "acme"
BASE = datetime.now(UTC) - timedelta(days=30)


@pytest.fixture(autouse=True)
def fast_pacing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(
        ghcr_adapter,
        "DEFAULT_PACER_SETTINGS",
        PacerSettings(max_rate=60_000, start_rate=30_000, min_rate=3_000, default_wait=0.2),
    )
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_API_URL", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)


def seed(emu: GhcrEmulator, packages: dict[str, int]) -> str:
    """An organisation with ``packages`` (name -> dev versions); a token that administers
    them (set as GITHUB_TOKEN by the caller)."""
    emu.add_org(ORG)
    token = emu.add_token(login="octo", default="admin")
    for name, count in packages.items():
        for i in range(count):
            emu.push_built(
                ORG,
                name,
                images.image(label=f"{name}-{i}"),
                tags=[f"dev-{i:07x}"],
                created=BASE + timedelta(hours=i),
            )
    return token


def prune(
    emu: GhcrEmulator, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, Any, str]:
    argv = ["prune", "--api-url", emu.api_url, "--registry-url", emu.registry_url]
    code = main([*argv, "--keep", "1", "--min-age", "0", "--format", "json", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out else None, captured.err


def tags(emu: GhcrEmulator, name: str) -> set[str]:
    return {t for v in emu.versions(ORG, name) for t in v.tags}


def kinds(emu: GhcrEmulator) -> Counter[str]:
    return Counter(entry.kind for entry in emu.log)


def test_globs_and_excludes_prune_the_matching_packages_with_totals(
    ghcr: GhcrEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    names = {"api": 3, "api-cache": 3, "team/web": 3, "team/deep/worker": 3, "tools": 2}
    monkeypatch.setenv("GITHUB_TOKEN", seed(ghcr, names))
    ghcr.reset_counters()
    code, doc, err = prune(
        ghcr,
        capsys,
        "--image", f"ghcr.io/{ORG}/*",
        "--image", f"ghcr.io/{ORG}/team/*",
        "--exclude", f"ghcr.io/{ORG}/*-cache",
        "--exclude", f"ghcr.io/{ORG}/tools",
        "--yes",
    )  # fmt: skip
    assert code == 0, err
    pruned = [entry["image"] for entry in doc["images"]]
    assert pruned == [f"ghcr.io/{ORG}/api", f"ghcr.io/{ORG}/team/web"]
    assert doc["total"]["images"] == 2
    assert doc["total"]["deleted"] == 4
    assert doc["total"]["kept"] == 2
    assert doc["left"] == []
    assert tags(ghcr, "api") == {"dev-0000002"}
    assert tags(ghcr, "team/web") == {"dev-0000002"}
    for untouched in ("api-cache", "team/deep/worker", "tools"):  # excluded or not matched
        assert len(tags(ghcr, untouched)) == names[untouched]
    seen = kinds(ghcr)
    # the owner and the token once per run, one page of packages
    assert seen["rest.user"] == 1
    assert seen["rest.users"] == 1
    assert seen["rest.packages.list"] == 1


def test_all_prunes_every_package_of_the_owner_nested_ones_too(
    ghcr: GhcrEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    names = {f"svc-{i:03d}": 2 for i in range(105)} | {"team/web": 2}  # two listing pages
    monkeypatch.setenv("GITHUB_TOKEN", seed(ghcr, names))
    ghcr.reset_counters()
    code, doc, err = prune(ghcr, capsys, "--all", f"ghcr.io/{ORG}", "--dry-run")
    assert code == 0, err
    assert len(doc["images"]) == 106
    assert doc["total"]["planned"] == 106
    assert doc["dry_run"] is True
    assert kinds(ghcr)["rest.packages.list"] == 2
    assert len(tags(ghcr, "team/web")) == 2  # a dry run deletes nothing


def test_a_pattern_that_matches_nothing_is_a_usage_error_and_the_owner_must_be_named(
    ghcr: GhcrEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", seed(ghcr, {"api": 2}))
    code, _, err = prune(ghcr, capsys, "--image", f"ghcr.io/{ORG}/nothing-*", "--yes")
    assert code == 2
    assert "matches no repository" in err
    code, _, err = prune(ghcr, capsys, "--image", "ghcr.io/*/api", "--yes")
    assert code == 2
    assert "owner part" in err
    assert len(tags(ghcr, "api")) == 2


def test_the_budget_stops_between_packages_and_the_next_run_starts_with_what_is_left(
    make_ghcr: MakeGhcr,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # 3 lookups, then per package 1 listing page, a look at the versions and 3 deletes;
    # each package may need 1 + 2 x 4 = 9 requests, +10 kept back: 19.
    emu = make_ghcr(primary_limit=28, primary_window=3.0)
    monkeypatch.setenv("GITHUB_TOKEN", seed(emu, {"a": 4, "b": 4, "c": 4}))
    state = tmp_path / "prune-state.json"
    args = ("--image", f"ghcr.io/{ORG}/*", "--state", str(state), "--yes", "--max-wait", "1s")
    code, doc, err = prune(emu, capsys, *args)
    assert code == 10, err
    done = [entry["image"] for entry in doc["images"]]
    assert done
    assert doc["left"]
    assert done + doc["left"] == [f"ghcr.io/{ORG}/{n}" for n in "abc"]
    assert "stopped before" in doc["stopped"]
    assert "left for the next run" in err
    for entry in doc["images"]:
        assert entry["error"] is None
        assert entry["applied"]["counts"]["deleted"] == 3  # whole packages only
    recorded = json.loads(state.read_text())["pruned"]
    assert sorted(recorded) == done
    for name in doc["left"]:
        assert len(tags(emu, name.rsplit("/", 1)[1])) == 4  # not started
    # after the reset, the next run starts with what was left
    time.sleep(3.2)
    code, again, err = prune(emu, capsys, *args)
    assert code == 0, err
    assert [e["image"] for e in again["images"]][: len(doc["left"])] == doc["left"]
    for name in "abc":
        assert tags(emu, name) == {"dev-0000003"}


def test_a_limit_that_runs_out_inside_a_package_stops_with_what_was_deleted(
    make_ghcr: MakeGhcr,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    emu = make_ghcr(primary_limit=12, primary_window=60.0)
    monkeypatch.setenv("GITHUB_TOKEN", seed(emu, {"big": 12, "small": 2}))
    state = tmp_path / "state.json"
    code, doc, err = prune(
        emu, capsys, "--all", f"ghcr.io/{ORG}", "--state", str(state), "--yes", "--max-wait", "1s"
    )
    assert code == 10, err
    first = doc["images"][0]
    assert first["image"] == f"ghcr.io/{ORG}/big"  # always started: every run progresses
    deleted = first["applied"]["counts"]["deleted"]
    assert 0 < deleted < 11
    assert len(emu.versions(ORG, "big")) == 12 - deleted
    assert doc["left"] == [f"ghcr.io/{ORG}/big", f"ghcr.io/{ORG}/small"]
    assert doc["stopped"].startswith(f"stopped in ghcr.io/{ORG}/big")
    assert not state.exists() or "big" not in state.read_text()


class _Meddler(PruneListener):
    """Deletes one package and creates another while the first is being pruned."""

    def __init__(self, emu: GhcrEmulator) -> None:
        self.emu = emu

    def planned(self, image: str, plan: Plan) -> None:
        if image.endswith("/a"):
            self.emu.delete_package(ORG, "b")
            self.emu.push_built(ORG, "a2", images.image(label="new"), tags=["dev-0000000"])


def test_packages_that_appear_or_disappear_during_the_run(
    ghcr: GhcrEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = seed(ghcr, {"a": 3, "b": 3, "c": 3})
    options = BackendOptions(
        token=Secret(token), api_url=ghcr.api_url, registry_url=ghcr.registry_url
    )
    with httpx.Client(trust_env=False, timeout=10) as client:
        run = prune_packages(
            [f"ghcr.io/{ORG}/*"],
            Policy.uniform(1, min_age=timedelta(0)),
            options=options,
            client=client,
            clock=lambda: datetime.now(UTC),
            state=PruneState(),
            listener=_Meddler(ghcr),
        )
    by_image = {r.image: r for r in run.results}
    assert sorted(by_image) == [f"ghcr.io/{ORG}/{n}" for n in "abc"]  # a2 came too late
    vanished = by_image[f"ghcr.io/{ORG}/b"]
    assert vanished.error is not None
    assert "not found" in vanished.error.message
    assert int(run.exit_code) == 5
    assert tags(ghcr, "a") == {"dev-0000002"}
    assert tags(ghcr, "c") == {"dev-0000002"}  # the run went on after the vanished one
    assert tags(ghcr, "a2") == {"dev-0000000"}


def test_ctrl_c_in_one_package_reports_the_whole_run_and_leaves_the_later_ones(
    ghcr: GhcrEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", seed(ghcr, {"a": 3, "b": 3, "c": 3}))
    real = ghcr_adapter.GhcrBackend.delete
    calls: list[str] = []

    def delete(self: ghcr_adapter.GhcrBackend, version: Any) -> Any:
        calls.append(self.display)
        if self.display.endswith("/b"):
            raise KeyboardInterrupt
        return real(self, version)

    monkeypatch.setattr(ghcr_adapter.GhcrBackend, "delete", delete)
    code, doc, err = prune(ghcr, capsys, "--image", f"ghcr.io/{ORG}/*", "--yes")
    assert code == 130, err
    assert [e["image"] for e in doc["images"]] == [f"ghcr.io/{ORG}/a", f"ghcr.io/{ORG}/b"]
    assert doc["left"] == [f"ghcr.io/{ORG}/c"]
    assert f"ghcr.io/{ORG}/c: not started" in err
    assert tags(ghcr, "a") == {"dev-0000002"}
    assert len(tags(ghcr, "c")) == 3
    assert not [c for c in calls if c.endswith("/c")]
