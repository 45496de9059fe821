"""``tagkeeper verify`` and ``tagkeeper status`` in-process, on a fake engine."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.cli import deploy_engine, main
from tagkeeper.errors import ExitCode
from tests.unit.deploy_fakes import PORT, REPO, App, FakeClock, FakeRuntime, World, new_world

if TYPE_CHECKING:
    from collections.abc import Iterator
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
health-timeout = "2s"
"""


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "TAGKEEPER_LEDGER"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def use_runtime(monkeypatch: pytest.MonkeyPatch, runtime: FakeRuntime) -> None:
    monkeypatch.setattr(deploy_engine, "runtime", lambda: runtime)
    monkeypatch.setattr(
        deploy_engine, "http_client", lambda: httpx.Client(transport=runtime.transport())
    )


# -- verify --url ----------------------------------------------------------------------------


def test_verify_url_of_a_healthy_service_exits_0_and_lists_its_checks(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = FakeRuntime(FakeClock())
    runtime.publish(f"{REPO}:v1", App())
    runtime.pull(f"{REPO}:v1")
    from tagkeeper.deploy.containers import RunOptions

    runtime.create(RunOptions("svc", runtime.local[next(iter(runtime.local))].image_id, 18700))
    runtime.start("svc")
    use_runtime(monkeypatch, runtime)
    code = main(["verify", "--url", "http://127.0.0.1:18700", "--interval", "10ms"])
    out, err = capsys.readouterr()
    assert code == 0
    assert out.splitlines()[0].startswith("ok    health /actuator/health  ")
    assert "verify http://127.0.0.1:18700: passed: healthy" in err


def test_verify_url_of_an_unhealthy_service_exits_13_with_json(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_runtime(monkeypatch, FakeRuntime(FakeClock()))  # nothing listens
    code = main(
        ["verify", "--url", "http://127.0.0.1:18701", "--interval", "10ms", "--timeout", "50ms",
         "--format", "json"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == ExitCode.VERIFY
    payload = json.loads(out)
    assert payload["ok"] is False
    assert payload["reason"].startswith("not healthy within 0.05s: /actuator/health connection")
    assert "verification of http://127.0.0.1:18701 failed" in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "give either --url or --image"),
        (["--url", "http://x", "--image", "a:b"], "give either --url or --image"),
        (["--url", "127.0.0.1:80"], "not an http:// or https:// URL"),
        (["--url", "http://x", "--timeout", "soon"], "--timeout 'soon' is not a duration"),
        (["--url", "http://x", "--interval", "0"], "must be longer than 0"),
        (["--url", "http://x", "--health", "health"], "not a path"),
        (["--url", "http://x", "--deploy-env", "prod"], "no [deploy.prod] table"),
    ],
)
def test_bad_verify_input_is_exit_2(
    isolated: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    assert main(["verify", *args]) == ExitCode.USAGE
    assert words in capsys.readouterr().err


# -- verify --image --------------------------------------------------------------------------


def test_verify_image_failing_shows_the_log_in_a_summary_and_masks_secrets(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = FakeRuntime(FakeClock())
    runtime.publish(f"{REPO}:v2", App(api_status=500))
    use_runtime(monkeypatch, runtime)
    smoke = isolated / "smoke.toml"
    smoke.write_text(
        '[[check]]\nname = "stats"\npath = "/api/stats"\nheaders = { X-Token = "${API_TOKEN}" }\n',
        encoding="utf-8",
    )
    output = isolated / "output"
    summary = isolated / "summary.md"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("API_TOKEN", "t0ken-value-123")
    code = main(
        ["verify", "--image", f"{REPO}:v2", "--network", "host", "--port", "18702",
         "--port-env", "SERVER_PORT", "--interval", "10ms", "--smoke", str(smoke),
         "-e", "DB_PASSWORD=hunter2-pass", "--format", "github"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == ExitCode.VERIFY
    assert runtime.containers == {}  # removed
    [container] = runtime.removed
    assert container.options.env["DB_PASSWORD"] == "hunter2-pass"
    assert container.options.env["SERVER_PORT"] == "18702"
    outputs = output.read_text(encoding="utf-8")
    assert "ok=false\n" in outputs
    assert "reason=smoke check 'stats' failed: answered 500" in outputs
    text = summary.read_text(encoding="utf-8")
    assert "| check | result | seconds | detail |" in text
    assert "| stats | **failed** |" in text
    assert "<details><summary>log of tagkeeper-verify-" in text
    assert "::error title=tagkeeper verify::smoke check 'stats' failed" in err
    for place in (out, err, outputs, text):
        assert "t0ken-value-123" not in place
        assert "hunter2-pass" not in place


def test_verify_image_takes_its_defaults_from_the_deploy_table(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated / "tagkeeper.toml").write_text(
        CONFIG + 'env = { SPRING_PROFILES_ACTIVE = "ci" }\n', encoding="utf-8"
    )
    runtime = FakeRuntime(FakeClock())
    runtime.publish(f"{REPO}:v3", App())
    use_runtime(monkeypatch, runtime)
    code = main(["verify", "--image", f"{REPO}:v3", "--deploy-env", "prod", "--format", "json"])
    assert code == 0, capsys.readouterr().err
    [container] = runtime.removed
    assert container.options.port == PORT
    assert container.options.network == "host"
    assert container.options.env == {"SPRING_PROFILES_ACTIVE": "ci", "SERVER_PORT": str(PORT)}
    assert json.loads(capsys.readouterr().out)["ok"] is True


# -- status ----------------------------------------------------------------------------------


@pytest.fixture
def deployed(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    (isolated / "tagkeeper.toml").write_text(CONFIG, encoding="utf-8")
    with new_world(isolated) as world:
        monkeypatch.setenv("TAGKEEPER_LEDGER", str(isolated / "ledger.db"))
        world.publish("v1.0.0")
        world.deploy("v1.0.0")
        world.publish("v1.1.0")
        world.deploy("v1.1.0")
        use_runtime(monkeypatch, world.runtime)
        yield world


def test_status_says_what_runs_and_that_nothing_drifted(
    deployed: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--env", "prod"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"prod: app (recreate) {REPO}"
    assert lines[1].split()[:3] == ["live", "app", "running"]
    assert lines[1].endswith("healthy")
    assert lines[2].split()[:3] == ["previous", "app-previous", "exited"]
    assert "lock: free" in lines
    assert "drift: none" in lines
    assert any(" v1.1.0 succeeded gap " in line for line in lines)


def test_status_json_lists_drift_and_still_exits_0(
    deployed: World, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed.runtime.stop("app", 1)
    assert main(["status", "--env", "prod", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [d["code"] for d in payload["drift"]] == ["stopped"]
    assert payload["live"]["status"] == "exited"
    assert [d["tag"] for d in payload["deploys"]] == ["v1.1.0", "v1.0.0"]
    assert payload["lock"] is None


def test_status_without_a_deploy_table_is_exit_2(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--env", "prod"]) == ExitCode.USAGE
    assert "no [deploy.prod] table" in capsys.readouterr().err
