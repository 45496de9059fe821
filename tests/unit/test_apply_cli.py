"""How ``tagkeeper prune`` renders an apply that stopped on an error, and exits.

The registry is the in-memory fake (it implements the real ``Backend``), handed to prune
through ``open_backend``; it raises an error of the chosen kind after two deletes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

import tagkeeper.registries.factory
from tagkeeper.cli import main
from tagkeeper.errors import AuthError, RegistryError, TagkeeperError
from tests.unit.fakes import FakeRegistry

if TYPE_CHECKING:
    from pathlib import Path

IMAGE = "registry.test/acme/app"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    """Five dev images, long past the grace period; prune keeps one."""
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_REPOSITORY", "GITHUB_TOKEN", "GH_TOKEN", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    reg = FakeRegistry(display=IMAGE)
    for minute in range(5):
        reg.add(f"d{minute}", tags=[f"dev-000000{minute}"], created=minute)

    def open_fake(image: str, options: object, client: object) -> FakeRegistry:
        assert image == IMAGE
        return reg

    monkeypatch.setattr(tagkeeper.registries.factory, "open_backend", open_fake)
    return reg


def prune(capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    capsys.readouterr()
    args = ["prune", "--image", IMAGE, "--keep", "1", "--min-age", "0", "--yes"]
    code = main([*args, "--format", "json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RegistryError("connection reset by the registry", hint="check the network"), 5),
        (AuthError("401: the token expired", hint="refresh the token"), 4),
    ],
)
def test_an_error_midway_exits_with_its_code_and_reports_what_was_deleted(
    registry: FakeRegistry, capsys: pytest.CaptureFixture[str], error: TagkeeperError, code: int
) -> None:
    registry.error_after = 2
    registry.error = error
    exit_code, payload, err = prune(capsys)
    assert exit_code == code
    (entry,) = payload["images"]
    applied = entry["applied"]
    assert applied is not None  # the record of what was deleted survives the error
    assert applied["counts"]["deleted"] == 2 == len(registry.deleted)
    assert len(applied["skipped"]) == 2  # 4 planned: the one that raised and the last
    assert {r["digest"] for r in applied["results"]} == set(registry.deleted)
    assert entry["error"] == {
        "code": code,
        "message": applied["stopped"],
        "hint": error.hint,
    }
    assert error.message in applied["stopped"]
    assert "after 2 deletes, 2 left" in err
    assert f"hint: {error.hint}" in err


def test_a_complete_run_exits_0_with_no_error(
    registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code, payload, _ = prune(capsys)
    assert exit_code == 0
    (entry,) = payload["images"]
    assert entry["error"] is None
    assert entry["applied"]["error"] is None
    assert entry["applied"]["counts"]["deleted"] == 4
