"""``deploy`` and ``rollback`` with a [deploy.ENV] strategy, in-process on a fake engine."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.cli import deploy_engine, main, rollback_cmd
from tagkeeper.deploy.lock import DeployLock, Holder, lock_path
from tagkeeper.errors import ExitCode
from tagkeeper.rollback.ledger import Ledger
from tagkeeper.rollback.resolve import DeployStatus
from tests.unit.deploy_fakes import PORT, REPO, App, FakeClock, FakeRuntime

if TYPE_CHECKING:
    from pathlib import Path

CONFIG = f"""
[deploy.prod]
image = "{REPO}"
container = "app"
port = {PORT}
network = "host"
port-env = "SERVER_PORT"
interval = "10ms"
successes = 2
health-timeout = "1s"
stop-timeout = "5s"
"""


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeRuntime:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tagkeeper.toml").write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(tmp_path / "ledger.db"))
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    runtime = FakeRuntime(FakeClock())
    monkeypatch.setattr(deploy_engine, "runtime", lambda: runtime)
    monkeypatch.setattr(
        deploy_engine, "http_client", lambda: httpx.Client(transport=runtime.transport())
    )
    return runtime


def _records(tmp_path: Path) -> list[tuple[str, DeployStatus, str | None]]:
    with Ledger(tmp_path / "ledger.db", create=False) as ledger:
        return [(r.tag, r.status, r.reason) for r in ledger.history(environment="prod")]


def test_deploy_with_recreate_replaces_the_container_and_reports_the_gap(
    host: FakeRuntime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host.publish(f"{REPO}:v1.0.0", App(version="v1"))
    host.publish(f"{REPO}:v1.1.0", App(version="v1.1"))
    assert main(["deploy", "--env", "prod", "--image", f"{REPO}:v1.0.0"]) == 0
    capsys.readouterr()
    code = main(["deploy", "--env", "prod", "--image", f"{REPO}:v1.1.0", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    payload = json.loads(out)
    assert payload["status"] == "succeeded"
    assert payload["strategy"] == "recreate"
    assert payload["gap_seconds"] == payload["numbers"]["gap_seconds"]
    assert payload["gap_seconds"] > 0
    assert [s["phase"] for s in payload["steps"]][:2] == ["pull", "pull"]
    assert "pre-check: done: healthy" in err
    assert "unavailable for" in err
    assert host.version_of("app") == "v1.1"
    assert host.version_of("app-previous") == "v1"
    assert _records(tmp_path)[0] == ("v1.1.0", DeployStatus.SUCCEEDED, None)


def test_a_failed_pre_check_exits_13_with_the_log_and_the_old_container_serves(
    host: FakeRuntime,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host.publish(f"{REPO}:v1.0.0", App(version="v1"))
    host.publish(f"{REPO}:v2.0.0", App(exit_after=0.005))
    assert main(["deploy", "--env", "prod", "--image", f"{REPO}:v1.0.0"]) == 0
    output = tmp_path / "out"
    summary = tmp_path / "summary.md"
    code = main(
        ["deploy", "--env", "prod", "--image", f"{REPO}:v2.0.0", "--format", "github"],
    )
    assert code == ExitCode.USAGE  # --format github needs the Actions files
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    capsys.readouterr()
    code = main(["deploy", "--env", "prod", "--image", f"{REPO}:v2.0.0", "-f", "github"])
    err = capsys.readouterr().err
    assert code == ExitCode.VERIFY
    assert "failed (pre-check)" in err
    assert "  | APPLICATION FAILED TO START" in err
    assert "nothing was switched" in err
    assert host.version_of("app") == "v1"
    assert "ok=false\n" in output.read_text(encoding="utf-8")
    assert "reason=pre-check\n" in output.read_text(encoding="utf-8")
    text = summary.read_text(encoding="utf-8")
    assert "| pre-check | failed |" in text
    assert _records(tmp_path)[0] == ("v2.0.0", DeployStatus.FAILED, "pre-check")


def test_rollback_takes_the_image_from_the_table_and_restarts_the_previous_container(
    host: FakeRuntime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host.publish(f"{REPO}:v1.0.0", App(version="v1"))
    host.publish(f"{REPO}:v1.1.0", App(version="v1.1"))
    for tag in ("v1.0.0", "v1.1.0"):
        assert main(["deploy", "--env", "prod", "--image", f"{REPO}:{tag}"]) == 0
    assert main(["rollback", "--env", "prod", "--dry-run"]) == 0
    assert "would roll prod back to" in capsys.readouterr().out
    assert main(["rollback", "--env", "prod"]) == 0
    err = capsys.readouterr().err
    assert "restarted from app-previous" in err
    assert host.version_of("app") == "v1"
    assert [r[:2] for r in _records(tmp_path)] == [
        ("v1.0.0", DeployStatus.SUCCEEDED),
        ("v1.1.0", DeployStatus.ROLLED_BACK),
        ("v1.0.0", DeployStatus.SUCCEEDED),
    ]


def test_a_held_lock_is_exit_15_naming_the_holder_and_lock_wait_gives_up_after_a_while(
    host: FakeRuntime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host.publish(f"{REPO}:v1.0.0", App())
    holder = Holder.current(["tagkeeper", "deploy", "--env", "prod"], "bob")
    with DeployLock(lock_path(tmp_path / "ledger.db", "prod", "app"), holder, what="prod"):
        code = main(["deploy", "--env", "prod", "--image", f"{REPO}:v1.0.0"])
        err = capsys.readouterr().err
        assert code == ExitCode.LOCKED
        assert "another deploy of prod (container app) is running: pid" in err
        assert "by bob" in err
        code = main(
            ["deploy", "--env", "prod", "--image", f"{REPO}:v1.0.0", "--lock-wait", "300ms"]
        )
        assert code == ExitCode.LOCKED
    assert host.history == []
    assert main(["deploy", "--env", "prod", "--image", f"{REPO}:v1.0.0"]) == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--image", f"{REPO}:latest"], "refusing to deploy"),
        (["--image", "ghcr.io/other/app:v1.0.0"], "is not an image of"),
        (["--image", f"{REPO}:v1.0.0", "--", "./deploy.sh"], "takes no COMMAND"),
        (["--image", f"{REPO}:v1.0.0", "--no-resolve-digest"], "pulls the image"),
        (["--image", f"{REPO}:v1.0.0", "--timeout", "1.5m"], "--timeout '1.5m' is not a duration"),
        (["--image", f"{REPO}:v1.0.0", "--lock-wait", "x"], "--lock-wait 'x' is not a duration"),
        (["--image", f"{REPO}:v1.0.0", "--env", "staging", "--strategy", "recreate"],
         "needs a [deploy.staging] table"),
    ],
)  # fmt: skip
def test_bad_deploy_input_changes_nothing(
    host: FakeRuntime,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    words: str,
) -> None:
    host.publish(f"{REPO}:v1.0.0", App())
    env = [] if "--env" in args else ["--env", "prod"]
    code = main(["deploy", *env, *args])
    assert code in (ExitCode.USAGE, ExitCode.POLICY)
    assert words in capsys.readouterr().err
    assert host.history == []


def test_script_deploys_keep_todays_behaviour_and_refuse_engine_flags(
    host: FakeRuntime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["deploy", "--env", "prod", "--image", f"{REPO}:v1.0.0", "--strategy", "script",
         "--no-resolve-digest", "--", "true"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert host.history == []
    assert _records(tmp_path) == [("v1.0.0", DeployStatus.SUCCEEDED, None)]
    code = main(
        ["deploy", "--env", "dev", "--image", f"{REPO}:v1.0.0", "--timeout", "5s",
         "--no-resolve-digest", "--", "true"]
    )  # fmt: skip
    assert code == ExitCode.USAGE
    assert "--timeout applies to the recreate" in capsys.readouterr().err


@dataclass
class FakeDeployments:
    """GitHub Deployments as the engine path records in it."""

    recorded: list[dict[str, object]] = field(default_factory=list)

    def record(self, **kw: object) -> None:
        self.recorded.append(kw)


def test_deploy_github_records_how_the_engine_deploy_ended(
    host: FakeRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeDeployments()
    monkeypatch.setattr(rollback_cmd, "_github", lambda *a, **kw: fake)
    digest = host.publish(f"{REPO}:v1.0.0", App())
    host.publish(f"{REPO}:v2.0.0", App(health="down"))
    monkeypatch.setenv("GITHUB_SHA", "f" * 40)
    assert main(["deploy", "--env", "prod", "--image", f"{REPO}:v1.0.0", "--github"]) == 0
    code = main(["deploy", "--env", "prod", "--image", f"{REPO}:v2.0.0", "--github"])
    assert code == ExitCode.VERIFY
    first, second = fake.recorded
    assert first["status"] is DeployStatus.SUCCEEDED
    assert (first["tag"], first["digest"], first["ref"]) == ("v1.0.0", digest, "f" * 40)
    assert first["environment"] == "prod"
    assert second["status"] is DeployStatus.FAILED
    assert second["tag"] == "v2.0.0"
