"""Prune's rough edges, in-process: a mistyped OCI repository, Ctrl-C during the deletes,
and ``--format json`` on a terminal."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from tagkeeper.cli import main
from tagkeeper.errors import ExitCode
from tests.emulators import images as im
from tests.unit.oci_fake import HOST, FakeRegistry, serve

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_httpx import HTTPXMock


@pytest.fixture
def registry(
    httpx_mock: HTTPXMock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FakeRegistry:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tagkeeper.toml").write_text("", encoding="utf-8")
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_TOKEN",
                 "TAGKEEPER_REGISTRY_PASSWORD"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    return serve(httpx_mock)


def push_versions(registry: FakeRegistry, count: int) -> None:
    for n in range(1, count + 1):
        built = im.image(created=datetime(2024, 1, n, tzinfo=UTC), label=f"v{n}")
        registry.push(built, f"dev-{n:04d}")


PRUNE = ["prune", "--kind", "oci", "--min-age", "0", "--keep", "1"]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_mistyped_oci_repository_is_a_registry_error_not_nothing_to_delete(
    fmt: str, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    push_versions(registry, 2)
    code = main([*PRUNE, "--image", f"{HOST}/ap", "--dry-run", "--format", fmt])
    captured = capsys.readouterr()
    assert code == ExitCode.REGISTRY, captured.err
    assert "nothing to delete" not in captured.err
    assert f"{HOST}/ap" in captured.err
    assert "check the image name" in captured.err
    if fmt == "json":
        [entry] = json.loads(captured.out)["images"]
        assert entry["error"]["code"] == ExitCode.REGISTRY
    assert not [m for m, _ in registry.log if m == "DELETE"]
