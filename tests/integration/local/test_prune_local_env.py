"""``tagkeeper prune --local --env``: the deploy ledger keeps what prod runs and what it
would roll back to on the host's own engine, even when no container uses them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tagkeeper.cli import main
from tests.integration.local.conftest import Engine, next_second

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def record(ledger: Path, repo: str, tag: str, status: str) -> None:
    argv = ["record", "--ledger", str(ledger), "--env", "prod", "--image", f"{repo}:{tag}"]
    assert main([*argv, "--status", status]) == 0


def test_the_ledger_keeps_current_and_rollback_target_on_the_engine(
    engine: Engine,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray tagkeeper.toml
    repo = f"ghcr.io/{unique}/app"
    ids: dict[str, str] = {}
    for tag in ("v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"):
        ids[tag] = engine.build(f"{repo}:{tag}")
        next_second()  # the engine lists creation times in whole seconds
    ledger = tmp_path / "ledger.db"
    record(ledger, repo, "v1.0.0", "succeeded")
    record(ledger, repo, "v1.2.0", "failed")  # never a rollback target, and v1.1.0 replaced it
    record(ledger, repo, "v1.1.0", "succeeded")  # what prod runs (its container is gone)
    capsys.readouterr()

    argv = ["prune", "--local", "--image", repo, "--keep", "1", "--min-age", "0"]
    code = main([*argv, "--env", "prod", "--ledger", str(ledger), "--yes", "--format", "json"])
    out, err = capsys.readouterr()

    assert code == 0, err
    (entry,) = json.loads(out)["images"]
    assert entry["error"] is None
    kept = {item["digest"]: item["reason"] for item in entry["keep"]}
    assert "current in prod (ledger)" in kept[ids["v1.1.0"]]
    assert "rollback target for prod (ledger)" in kept[ids["v1.0.0"]]
    assert [item["digest"] for item in entry["delete"]] == [ids["v1.2.0"]]
    assert engine.repo_tags(repo) == {"v1.0.0", "v1.1.0", "v1.3.0"}
    assert engine.tags_of(ids["v1.2.0"]) is None  # the image itself is gone


def test_without_env_the_same_prune_removes_them(
    engine: Engine,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the control: the ledger is what kept v1.0.0 above, not some other rule
    monkeypatch.chdir(tmp_path)
    repo = f"ghcr.io/{unique}/app"
    for tag in ("v1.0.0", "v1.1.0"):
        engine.build(f"{repo}:{tag}")
        next_second()
    ledger = tmp_path / "ledger.db"
    record(ledger, repo, "v1.0.0", "succeeded")
    capsys.readouterr()
    argv = ["prune", "--local", "--image", repo, "--keep", "1", "--min-age", "0", "--yes"]
    assert main(argv) == 0
    assert engine.repo_tags(repo) == {"v1.1.0"}
