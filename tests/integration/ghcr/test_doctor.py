"""``tagkeeper doctor`` against the GHCR emulator: what the token can do, what is missing.

Doctor must never delete anything and never print the token, whatever it finds.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.cli import main
from tests.emulators import images

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.emulators.ghcr import GhcrEmulator

pytestmark = pytest.mark.integration


@pytest.fixture
def emu(ghcr: GhcrEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> GhcrEmulator:
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_API_URL"):
        monkeypatch.delenv(name, raising=False)
    ghcr.add_user("octo")
    ghcr.add_org("acme")
    ghcr.push_built("octo", "app", images.image(label="mine"), tags=["v1.0.0"])
    ghcr.push_built("acme", "team/app", images.image(label="org"), tags=["v1.0.0"])
    return ghcr


class Doctor:
    def __init__(self, emu: GhcrEmulator, capsys: pytest.CaptureFixture[str]) -> None:
        self.emu = emu
        self.capsys = capsys
        self.text = ""

    def __call__(self, image: str, *extra: str) -> tuple[int, dict[str, Any]]:
        code = main(
            [
                "doctor",
                "--image",
                image,
                "--api-url",
                self.emu.api_url,
                "--registry-url",
                self.emu.registry_url,
                "--format",
                "json",
                *extra,
            ]
        )
        out, err = self.capsys.readouterr()
        self.text += out + err
        return code, json.loads(out)


@pytest.fixture
def doctor(emu: GhcrEmulator, capsys: pytest.CaptureFixture[str]) -> Iterator[Doctor]:
    runner = Doctor(emu, capsys)
    yield runner
    snapshot = emu.snapshot()
    assert snapshot["counters"].get("rest.version.delete", 0) == 0  # never deletes
    assert len(emu.versions("octo", "app")) == 1


def checks(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in report["checks"]}


def test_a_classic_token_with_every_scope_on_its_own_package_is_fine(
    emu: GhcrEmulator, doctor: Doctor, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = emu.add_token(login="octo")
    monkeypatch.setenv("GITHUB_TOKEN", token)
    code, report = doctor("ghcr.io/octo/app")
    assert code == 0
    assert report["token_kind"] == "classic"
    assert report["owner_kind"] == "self"
    assert {c["status"] for c in report["checks"]} == {"ok"}
    assert token not in doctor.text


def test_a_classic_token_without_delete_scope_is_told_exactly_that(
    emu: GhcrEmulator, doctor: Doctor
) -> None:
    token = emu.add_token(login="octo", scopes={"read:packages"})
    code, report = doctor("ghcr.io/octo/app", "--token", token)
    assert code == 4
    found = checks(report)
    assert found["list"]["status"] == "ok"
    assert found["delete"]["status"] == "missing"
    assert "delete:packages" in found["delete"]["fix"]
    assert token not in doctor.text


def test_a_workflow_token_with_access_lists_and_says_delete_cannot_be_verified(
    emu: GhcrEmulator, doctor: Doctor, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = emu.add_token(login="ci", kind="github_token", packages={"acme/team/app": "admin"})
    monkeypatch.setenv("GH_TOKEN", token)
    code, report = doctor("ghcr.io/acme/team/app")
    assert code == 0
    assert report["token_kind"] == "github-token"
    assert report["owner_kind"] == "org"
    found = checks(report)
    assert found["list"]["status"] == "ok"
    assert found["delete"]["status"] == "unknown"
    assert "Manage Actions access" in found["delete"]["fix"]
    assert "packages: write" in found["delete"]["fix"]
    assert token not in doctor.text


def test_a_workflow_token_without_package_access_is_missing_the_actions_access(
    emu: GhcrEmulator, doctor: Doctor, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = emu.add_token(login="ci", kind="github_token")
    monkeypatch.setenv("GITHUB_TOKEN", token)
    code, report = doctor("ghcr.io/acme/team/app")
    assert code == 4
    found = checks(report)
    assert found["list"]["status"] == "missing"
    assert "Manage Actions access" in found["list"]["fix"]


def test_no_token_is_missing(doctor: Doctor) -> None:
    code, report = doctor("ghcr.io/octo/app")
    assert code == 4
    assert report["token_kind"] == "none"
    assert checks(report)["token"]["status"] == "missing"


def test_a_fine_grained_token_is_not_accepted_by_github_packages(
    emu: GhcrEmulator, doctor: Doctor
) -> None:
    token = emu.add_token(login="octo", kind="fine_grained", default="admin")
    code, report = doctor("ghcr.io/octo/app", "--token", token)
    assert code == 4
    assert report["token_kind"] == "fine-grained"
    assert checks(report)["token-kind"]["status"] == "missing"
    assert "classic" in checks(report)["token-kind"]["fix"]
    assert token not in doctor.text


def test_a_rejected_token_is_reported_without_showing_it(doctor: Doctor) -> None:
    bad = "ghp_definitelyNotValid0123456789"
    code, report = doctor("ghcr.io/octo/app", "--token", bad)
    assert code == 4
    assert checks(report)["credentials"]["status"] == "missing"
    assert bad not in doctor.text


def test_text_output_names_each_check(
    emu: GhcrEmulator, capsys: pytest.CaptureFixture[str], doctor: Doctor
) -> None:
    token = emu.add_token(login="octo", scopes={"read:packages"})
    code = main(
        [
            "doctor",
            "--image",
            "ghcr.io/octo/app",
            "--api-url",
            emu.api_url,
            "--registry-url",
            emu.registry_url,
            "--token",
            token,
        ]
    )
    out = capsys.readouterr().out
    assert code == 4
    assert "MISSING" in out
    assert "delete:packages" in out
    assert token not in out


def test_github_format_sets_outputs_a_summary_and_an_annotation_per_missing_piece(
    emu: GhcrEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = emu.add_token(login="octo", scopes={"read:packages"})
    monkeypatch.setenv("GITHUB_TOKEN", token)
    outputs, summary = tmp_path / "output", tmp_path / "summary"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code = main(
        [
            "doctor",
            "--image",
            "ghcr.io/octo/app",
            "--api-url",
            emu.api_url,
            "--registry-url",
            emu.registry_url,
            "--format",
            "github",
        ]
    )
    out = capsys.readouterr().out
    assert code == 4
    written = outputs.read_text()
    assert "ok=false\n" in written
    payload = json.loads(written.split("json=", 1)[1].splitlines()[0])
    missing = [c["name"] for c in payload["checks"] if c["status"] == "missing"]
    assert missing, payload
    for name in missing:
        assert f"::error title=tagkeeper doctor%3A {name}::" in out
    assert "| check | status | detail |" in summary.read_text()
    assert token not in out + written + summary.read_text()


def test_prune_without_a_token_says_so_before_sending_anything(
    emu: GhcrEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sum(emu.snapshot()["counters"].values())
    code = main(
        [
            "prune",
            "--image",
            "ghcr.io/octo/app",
            "--api-url",
            emu.api_url,
            "--registry-url",
            emu.registry_url,
            "--keep",
            "1",
            "--dry-run",
        ]
    )
    err = capsys.readouterr().err
    assert code == 4
    assert "no GitHub token" in err
    assert "GITHUB_TOKEN" in err
    assert sum(emu.snapshot()["counters"].values()) == before
