"""``tagkeeper prune --env``: what the deploy history protects, wired through the CLI.

The registry is the in-memory fake (it implements the real ``Backend``); the ledger is a
real SQLite file in ``tmp_path``. What is checked is the plan prune prints and what is
left in the fake registry afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import tagkeeper.registries.factory
from tagkeeper.cli import main
from tagkeeper.errors import ExitCode, RegistryError
from tagkeeper.rollback.ledger import Actor, Ledger
from tagkeeper.rollback.resolve import DeployRecord, DeployStatus
from tagkeeper.rollback.sources import HistorySettings
from tests.unit.fakes import FakeRegistry, digest_of

if TYPE_CHECKING:
    from collections.abc import Sequence

IMAGE = "registry.test/acme/app"
OK = DeployStatus.SUCCEEDED
ACTOR = Actor(user="ci", host="deploy-1")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: no config file, no GitHub variables, the ledger path set."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "ledger.db"
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(path))
    for name in ("GITHUB_REPOSITORY", "GITHUB_TOKEN", "GH_TOKEN", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    """Four single-image releases, oldest first, and one dev image; all long past the
    grace period. ``open_backend`` hands prune this fake."""
    reg = FakeRegistry(display=IMAGE)
    for minutes, tag in enumerate(("v0.9.0", "v1.0.0", "v1.1.0", "v1.2.0")):
        reg.add(tag, tags=[tag], created=minutes)
    reg.add("dev", tags=["dev-abcdef1"], created=10)

    def open_fake(image: str, options: object, client: object) -> FakeRegistry:
        assert image == IMAGE
        return reg

    monkeypatch.setattr(tagkeeper.registries.factory, "open_backend", open_fake)
    return reg


def deploy(path: Path, tag: str, status: DeployStatus, *, env: str = "prod") -> None:
    with Ledger(path) as ledger:
        ledger.record(
            environment=env,
            repository=IMAGE,
            tag=tag,
            status=status,
            actor=ACTOR,
            digest=digest_of(tag),
        )


def prod_history(path: Path) -> None:
    """v1.0.0 succeeded, v1.2.0 failed, then v1.1.0 succeeded: v1.1.0 runs now, and the
    failed v1.2.0 (older than what runs) needs nothing kept."""
    deploy(path, "v1.0.0", OK)
    deploy(path, "v1.2.0", DeployStatus.FAILED)
    deploy(path, "v1.1.0", OK)


def prune(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    capsys.readouterr()
    code = main(["prune", "--image", IMAGE, "--keep-release", "0", "--min-age", "0", *args])
    out, err = capsys.readouterr()
    payload = json.loads(out) if "--format" in args and out.strip() else None
    return code, payload, err


def reasons(payload: Any) -> dict[str, str]:
    (entry,) = payload["images"]
    assert entry["error"] is None, entry["error"]
    return {tag: item["reason"] for item in entry["keep"] for tag in item["tags"]}


def deleted_tags(payload: Any) -> set[str]:
    (entry,) = payload["images"]
    return {tag for item in entry["delete"] for tag in item["tags"]}


def test_env_keeps_the_current_release_and_the_rollback_target(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    prod_history(env)
    code, payload, err = prune(capsys, "--env", "prod", "--dry-run", "--format", "json")
    assert code == 0, err
    kept = reasons(payload)
    assert "current in prod (ledger)" in kept["v1.1.0"]
    assert "rollback target for prod (ledger)" in kept["v1.0.0"]
    # keep-release 0 keeps no release by count: the failed v1.2.0 and v0.9.0 go
    assert deleted_tags(payload) == {"v1.2.0", "v0.9.0"}
    (entry,) = payload["images"]
    assert entry["protected"][digest_of("v1.1.0")] == "current in prod (ledger)"
    assert registry.deleted == []  # a dry run


def test_without_env_the_same_run_keeps_no_release(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    prod_history(env)  # a ledger exists, but prune was not told about any environment
    code, payload, err = prune(capsys, "--dry-run", "--format", "json")
    assert code == 0, err
    assert deleted_tags(payload) == {"v0.9.0", "v1.0.0", "v1.1.0", "v1.2.0"}
    assert payload["images"][0]["protected"] == {}


def test_a_real_run_deletes_around_what_prod_needs_and_the_text_plan_says_why(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    prod_history(env)
    deploy(env, "v0.9.0", OK, env="staging")  # staging runs v0.9.0: it stays too
    code, _, err = prune(capsys, "--env", "prod", "--env", "staging", "--yes")
    assert code == 0, err
    left = {tag for v in registry.versions() for tag in v.tags}
    assert left == {"v1.1.0", "v1.0.0", "v0.9.0", "dev-abcdef1"}
    assert registry.deleted == [digest_of("v1.2.0")]


def test_the_text_plan_names_the_reason(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    prod_history(env)
    capsys.readouterr()
    argv = ["prune", "--image", IMAGE, "--keep-release", "0", "--min-age", "0"]
    code = main([*argv, "-e", "prod", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    rows = {line.split()[2]: line for line in out.splitlines() if line.startswith("  KEEP")}
    assert "current in prod (ledger)" in rows["v1.1.0"]
    assert "rollback target for prod (ledger)" in rows["v1.0.0"]
    assert "v1.2.0" not in rows


def test_env_with_no_ledger_is_a_usage_error_that_creates_nothing(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = prune(capsys, "--env", "prod", "--yes", "--format", "json")
    assert code == ExitCode.USAGE
    assert f"no deploy ledger at {env}" in err
    assert "--env prod" in err
    assert "--source github" in err  # the hint names the way out
    assert not env.exists()
    assert registry.stats.total == 0
    assert registry.deleted == []


def test_an_explicit_missing_ledger_is_refused_even_from_config_env(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "tagkeeper.toml").write_text('env = "prod"\n', encoding="utf-8")
    missing = tmp_path / "elsewhere.db"
    code, _, err = prune(capsys, "--ledger", str(missing), "--dry-run")
    assert code == ExitCode.USAGE
    assert str(missing) in err
    assert not missing.exists()


def test_config_env_without_a_ledger_warns_and_prunes(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "tagkeeper.toml").write_text('env = "prod"\n', encoding="utf-8")
    code, payload, err = prune(capsys, "--dry-run", "--format", "json")
    assert code == 0, err
    assert "config env 'prod'" in err
    assert "protects no rollback target" in err
    assert deleted_tags(payload) == {"v0.9.0", "v1.0.0", "v1.1.0", "v1.2.0"}
    assert not env.exists()


def test_config_env_with_a_ledger_protects(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "tagkeeper.toml").write_text('env = "prod"\n', encoding="utf-8")
    prod_history(env)
    code, payload, err = prune(capsys, "--dry-run", "--format", "json")
    assert code == 0, err
    assert set(reasons(payload)) >= {"v1.1.0", "v1.0.0"}


def test_an_environment_named_with_no_deploys_stops_the_run_before_any_request(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    prod_history(env)
    code, payload, err = prune(capsys, "--env", "prod", "--env", "qa", "--yes", "--format", "json")
    assert code == ExitCode.USAGE, err
    assert payload is None  # nothing on stdout
    assert "--env qa: no deploy of registry.test/acme/app to qa" in err
    assert "recorded to prod only" in err
    assert registry.stats.total == 0
    assert registry.deleted == []


def test_ledger_or_source_without_env_is_a_usage_error(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    prod_history(env)
    for extra in (("--ledger", str(env)), ("--source", "auto")):
        code, _, err = prune(capsys, *extra, "--dry-run")
        assert code == ExitCode.USAGE
        assert "--env" in err
    assert registry.stats.total == 0


class FakeDeployments:
    """A GitHub Deployments history source (the ``HistorySource`` protocol)."""

    name = "github"

    def __init__(self, records: Sequence[DeployRecord] = (), down: bool = False) -> None:
        self.records = list(records)
        self.down = down

    def history(self, repository: str, environment: str) -> Sequence[DeployRecord]:
        if self.down:
            raise RegistryError("GitHub Deployments: listing deployments failed: refused")
        return [
            r for r in self.records if r.repository == repository and r.environment == environment
        ]


def use_github(monkeypatch: pytest.MonkeyPatch, fake: FakeDeployments) -> list[HistorySettings]:
    """GitHub Deployments answer from ``fake``; returns the settings each was opened with."""
    opened: list[HistorySettings] = []

    def deployments(settings: HistorySettings) -> FakeDeployments:
        opened.append(settings)
        return fake

    monkeypatch.setattr(HistorySettings, "deployments", deployments)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/app")
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_fake")
    return opened


def test_source_github_protects_from_deployments_and_needs_no_ledger(
    env: Path,
    registry: FakeRegistry,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime

    when = datetime(2026, 1, 1, tzinfo=UTC)
    (tmp := env.parent / "tagkeeper.toml").write_text('api-url = "https://ghe.test/api/v3"\n')
    opened = use_github(
        monkeypatch,
        FakeDeployments(
            [
                DeployRecord("prod", IMAGE, "v1.2.0", OK, when, source="github"),
                DeployRecord("prod", IMAGE, "v0.9.0", OK, when, source="github"),
            ]
        ),
    )
    args = ("--env", "prod", "--source", "github", "--dry-run", "--format", "json")
    code, payload, err = prune(capsys, *args)
    assert code == 0, err
    kept = reasons(payload)
    assert "current in prod (github)" in kept["v1.2.0"]
    assert "rollback target for prod (github)" in kept["v0.9.0"]
    assert not env.exists()
    # the configured API and the token of the environment are the ones GitHub is asked with
    [settings] = opened
    assert settings.api_url == "https://ghe.test/api/v3"
    assert settings.token is not None
    assert settings.token.reveal() == "ghs_fake"
    assert tmp.exists()


def test_source_github_down_stops_the_image_and_deletes_nothing(
    env: Path,
    registry: FakeRegistry,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_github(monkeypatch, FakeDeployments(down=True))
    code, _, err = prune(capsys, "--env", "prod", "--source", "github", "--yes")
    assert code == ExitCode.REGISTRY
    assert "GitHub Deployments" in err
    assert registry.deleted == []


def test_source_auto_with_a_ledger_survives_github_being_down(
    env: Path,
    registry: FakeRegistry,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prod_history(env)
    use_github(monkeypatch, FakeDeployments(down=True))
    args = ("--env", "prod", "--source", "auto", "--dry-run", "--format", "json")
    code, payload, err = prune(capsys, *args)
    assert code == 0, err
    assert "current in prod (ledger)" in reasons(payload)["v1.1.0"]
    assert any(
        "github history of prod could not be read" in w for w in payload["images"][0]["warnings"]
    )


def test_source_auto_with_nothing_to_read_is_a_usage_error(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = prune(capsys, "--env", "prod", "--source", "auto", "--dry-run")
    assert code == ExitCode.USAGE
    assert "no GitHub repository and token" in err


def test_an_unreadable_ledger_is_a_ledger_error(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    env.write_bytes(b"this is not a database" * 100)
    code, _, err = prune(capsys, "--env", "prod", "--dry-run")
    assert code == ExitCode.LEDGER, err
    assert str(env) in err
    assert registry.stats.total == 0


def test_the_prune_command_module_imports_nothing_heavy() -> None:
    # ``--help`` stays fast: the command module leaves docker, httpx and sqlite3 alone
    code = (
        "import sys, tagkeeper.cli.prune_cmd\n"
        "heavy = [m for m in ('docker', 'httpx', 'sqlite3', 'github', "
        "'tagkeeper.registries.local') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert result.stdout.strip() == ""


# -- what runs, and what a rollback needs, under re-pushed tags and prereleases -----------


def fake_registry(
    monkeypatch: pytest.MonkeyPatch, *versions: tuple[str, list[str]]
) -> FakeRegistry:
    """A fake registry holding ``(name, tags)`` in push order (one minute apart); a tag
    pushed again moves off the older version, which is then untagged."""
    reg = FakeRegistry(display=IMAGE)
    for minutes, (name, tags) in enumerate(versions):
        reg.add(name, tags=tags, created=minutes)

    def open_fake(image: str, options: object, client: object) -> FakeRegistry:
        return reg

    monkeypatch.setattr(tagkeeper.registries.factory, "open_backend", open_fake)
    return reg


def deployed(path: Path, tag: str, name: str, status: DeployStatus, env: str = "prod") -> None:
    """Record a deploy of ``tag`` at the digest of ``name`` (as a fake registry names it)."""
    with Ledger(path) as ledger:
        ledger.record(
            environment=env,
            repository=IMAGE,
            tag=tag,
            status=DeployStatus.STARTED,
            actor=ACTOR,
            digest=digest_of(name),
        )
        if status is not DeployStatus.STARTED:
            ledger.record(environment=env, repository=IMAGE, tag=tag, status=status, actor=ACTOR)


@pytest.mark.parametrize("last", [DeployStatus.FAILED, DeployStatus.STARTED])
def test_what_runs_survives_a_failed_redeploy_of_a_repushed_tag(
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    last: DeployStatus,
) -> None:
    # v1.0.0@B, then v1.1.0@A run in prod; v1.1.0 is pushed again (C) and its deploy
    # fails (or is killed): A, untagged now, is what runs.
    reg = fake_registry(
        monkeypatch, ("B", ["v1.0.0"]), ("A", ["v1.1.0"]), ("C", ["v1.1.0"]), ("old", ["v0.1.0"])
    )
    assert reg.version("A").tags == frozenset()
    deployed(env, "v1.0.0", "B", OK)
    deployed(env, "v1.1.0", "A", OK)
    deployed(env, "v1.1.0", "C", last)

    code, payload, err = prune(capsys, "--env", "prod", "--yes", "--format", "json")

    assert code == 0, err
    (entry,) = payload["images"]
    assert "current in prod (ledger)" in entry["protected"][digest_of("A")]
    assert reg.deleted == [digest_of("old")]  # A (runs), B (rollback), C (may run) stay
    left = {v.digest for v in reg.versions()}
    assert {digest_of("A"), digest_of("B"), digest_of("C")} <= left


def test_prune_protects_what_previous_answers_with_and_without_prereleases(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = fake_registry(
        monkeypatch,
        ("one", ["v1.0.0"]),
        ("rc1", ["v2.0.0-rc.1"]),
        ("rc2", ["v2.0.0-rc.2"]),
        ("old", ["v0.9.0"]),
    )
    for tag, name in (("v1.0.0", "one"), ("v2.0.0-rc.1", "rc1"), ("v2.0.0-rc.2", "rc2")):
        deployed(env, tag, name, OK)
    answers = {}
    for flag in ("--allow-prerelease", "--no-allow-prerelease"):
        capsys.readouterr()
        assert main(["previous", "--image", IMAGE, "--env", "prod", flag]) == 0
        answers[flag] = capsys.readouterr().out.strip()
    assert answers == {"--allow-prerelease": "v2.0.0-rc.1", "--no-allow-prerelease": "v1.0.0"}
    base = ("--keep-prerelease", "0", "--env", "prod", "--dry-run", "--format", "json")

    for extra, wanted in (
        ((), {"v1.0.0", "v2.0.0-rc.1"}),  # not told: what either setting answers
        (("--allow-prerelease",), {"v2.0.0-rc.1"}),
        (("--no-allow-prerelease",), {"v1.0.0"}),
    ):
        code, payload, err = prune(capsys, *base, *extra)
        assert code == 0, err
        targets = {
            tag
            for tag, why in reasons(payload).items()
            if "rollback target for prod" in why and tag != "v2.0.0-rc.2"
        }
        assert targets == wanted, extra
        assert "v2.0.0-rc.2" in reasons(payload)  # what runs, whatever the setting
        assert deleted_tags(payload) == {"v0.9.0", "v1.0.0", "v2.0.0-rc.1"} - wanted
    assert reg.deleted == []


def test_an_env_named_on_the_command_line_with_no_history_for_the_image_is_exit_2(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy(env, "v1.0.0", OK, env="production")  # recorded as 'production', not 'prod'
    deploy(env, "v1.1.0", OK, env="staging")

    code, _, err = prune(capsys, "--env", "prod", "--yes")

    assert code == ExitCode.USAGE, err
    assert "prod" in err
    assert "production, staging" in err  # what the ledger does have for that image
    assert registry.stats.total == 0  # nothing was asked, nothing deleted
    assert registry.deleted == []


def test_an_env_with_history_for_another_image_only_is_exit_2(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger(env) as ledger:
        ledger.record(
            environment="prod",
            repository="registry.test/acme/other",
            tag="v1.0.0",
            status=OK,
            actor=ACTOR,
        )

    code, _, err = prune(capsys, "--env", "prod", "--dry-run")

    assert code == ExitCode.USAGE, err
    assert f"no deploy of {IMAGE}" in err
    assert registry.stats.total == 0


def test_a_config_env_with_no_history_for_the_image_warns_and_prunes(
    env: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "tagkeeper.toml").write_text('env = "prod"\n', encoding="utf-8")
    deploy(env, "v1.0.0", OK, env="production")

    code, payload, err = prune(capsys, "--dry-run", "--format", "json")

    assert code == 0, err
    (warning,) = [w for w in payload["images"][0]["warnings"] if "prod" in w]
    assert "nothing is known to be deployed to prod" in warning
    assert "production" in warning
