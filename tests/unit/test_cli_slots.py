"""``deploy``, ``rollback``, ``status``, ``watch`` and ``switch`` with a bluegreen or canary
[deploy.ENV], in-process on a fake engine, proxy and metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.cli import deploy_engine, main
from tagkeeper.deploy.metrics.model import Reading, SlotStats
from tagkeeper.deploy.metrics.prometheus import TimeMark
from tagkeeper.deploy.proxies.model import Weights
from tagkeeper.errors import ExitCode
from tagkeeper.rollback.ledger import Ledger
from tagkeeper.rollback.resolve import DeployStatus
from tests.unit.deploy_fakes import REPO, App, FakeClock, FakeRuntime, KillSwitch
from tests.unit.slot_fakes import BLUE, NAMES, FakeProxy

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

CONFIG = f"""
[deploy.prod]
strategy = "bluegreen"
image = "{REPO}"
container = "app"
port = {BLUE}
network = "host"
port-env = "SERVER_PORT"
interval = "10ms"
successes = 2
health-timeout = "1s"
stop-timeout = "5s"
proxy = "nginx"
proxy-config = "app.conf"
proxy-url = "http://127.0.0.1:8080"
metrics = "prometheus:http://127.0.0.1:9090"
watch = "0s"
watch-interval = "100ms"

[deploy.staging]
image = "{REPO}"
container = "app-staging"
port = 9520
network = "host"
port-env = "SERVER_PORT"
"""


@dataclass
class Metrics:
    """Every window: ``stats`` for every slot (real time: the CLI's clock is real)."""

    stats: SlotStats = field(default_factory=lambda: SlotStats(200, 0, 0.05))

    def mark(self) -> TimeMark:
        return TimeMark(0.0)

    def ready(self, instance: str, since: float) -> str | None:
        return None

    def read(self, mark: TimeMark, slots: Mapping[str, str]) -> Reading:
        return Reading(dict.fromkeys(slots, self.stats), 1.0)


@dataclass
class Host:
    runtime: FakeRuntime
    proxy: FakeProxy
    metrics: Metrics
    tmp: Path

    def records(self) -> list[tuple[str, DeployStatus, str | None]]:
        with Ledger(self.tmp / "ledger.db", create=False) as ledger:
            return [(r.tag, r.status, r.reason) for r in ledger.history(environment="prod")]


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tagkeeper.toml").write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(tmp_path / "ledger.db"))
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    clock = FakeClock()
    kill = KillSwitch()
    runtime = FakeRuntime(clock, kill)
    proxy = FakeProxy(clock, kill, tmp_path / "app.conf")
    metrics = Metrics()
    monkeypatch.setattr(deploy_engine, "runtime", lambda: runtime)
    monkeypatch.setattr(
        deploy_engine, "http_client", lambda: httpx.Client(transport=runtime.transport())
    )
    monkeypatch.setattr(deploy_engine, "slot_tools",
                        lambda spec, client: {"proxy": proxy, "metrics": metrics})  # fmt: skip
    runtime.publish(f"{REPO}:v1.0.0", App(version="v1"))
    runtime.publish(f"{REPO}:v2.0.0", App(version="v2"))
    return Host(runtime, proxy, metrics, tmp_path)


def deploy(tag: str, *extra: str) -> int:
    return main(["deploy", "--env", "prod", "--image", f"{REPO}:{tag}", *extra])


def test_a_bluegreen_deploy_reports_its_slot_and_status_shows_the_weights(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy("v1.0.0") == 0
    capsys.readouterr()
    assert deploy("v2.0.0", "--format", "json") == 0
    out, err = capsys.readouterr()
    payload = json.loads(out)
    assert payload["strategy"] == "bluegreen"
    assert payload["slot"] == "blue"
    assert payload["numbers"]["switch_seconds"] > 0
    assert "slot blue; the switch took" in err
    assert main(["status", "--env", "prod", "--format", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["live_slot"] == "blue"
    assert status["proxy"]["weights"] == {"blue": 100, "green": 0}
    assert status["live"]["name"] == "app-blue"
    assert [s["container"]["name"] for s in status["slots"]] == ["app-blue", "app-green"]
    assert status["drift"] == []
    assert main(["status", "--env", "prod"]) == 0
    text = capsys.readouterr().out
    assert "live slot: blue" in text
    assert "weights: blue=100, green=0" in text


def test_a_release_the_watch_rolls_back_exits_14(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy("v1.0.0") == 0
    host.metrics.stats = SlotStats(200, 150, 0.05)
    capsys.readouterr()
    code = deploy("v2.0.0", "--watch", "1s", "--format", "json")
    out, err = capsys.readouterr()
    assert code == ExitCode.ROLLED_BACK
    assert "was rolled back automatically (watch)" in err
    payload = json.loads(out)
    assert payload["status"] == "rolled_back"
    assert payload["rolled_back_to"]["rollback"] is True
    assert payload["rolled_back_to"]["slot"] == "green"
    assert payload["exit_code"] == 14
    assert host.proxy.running == Weights.all_to("green", NAMES)
    assert host.records()[:2] == [("v1.0.0", DeployStatus.SUCCEEDED, "watch"),
                                  ("v2.0.0", DeployStatus.ROLLED_BACK, "watch")]  # fmt: skip


def test_a_rolled_back_deploy_writes_its_reason_for_a_workflow(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert deploy("v1.0.0") == 0
    host.metrics.stats = SlotStats(200, 150, 0.05)
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "out"))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    assert deploy("v2.0.0", "--watch", "1s", "--format", "github") == ExitCode.ROLLED_BACK
    outputs = (tmp_path / "out").read_text(encoding="utf-8")
    assert "ok=false\n" in outputs
    assert "reason=watch\n" in outputs
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "rolled_back" in summary
    assert "#### rolled back to" in summary


def test_watch_passes_or_rolls_back_with_its_exit_code(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy("v1.0.0") == 0
    assert deploy("v2.0.0") == 0
    capsys.readouterr()
    assert main(["watch", "--env", "prod", "--for", "300ms", "--interval", "100ms"]) == 0
    assert "passed" in capsys.readouterr().err
    host.metrics.stats = SlotStats(200, 150, 0.05)
    code = main(["watch", "--env", "prod", "--for", "2s", "--interval", "100ms",
                 "--format", "json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == ExitCode.ROLLED_BACK
    payload = json.loads(out)
    assert payload["status"] == "rolled_back"
    assert payload["watch"]["rollback"] is True
    assert payload["rolled_back_to"]["image"] == f"{REPO}:v1.0.0"
    assert "the watch rolled prod back" in err
    assert host.proxy.running == Weights.all_to("green", NAMES)


def test_watch_flags_are_checked(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", "--env", "prod", "--for", "0s"]) == ExitCode.USAGE
    assert main(["watch", "--env", "prod", "--interval", "soon"]) == ExitCode.USAGE
    assert main(["watch", "--env", "staging"]) == ExitCode.USAGE
    assert "bluegreen and canary" in capsys.readouterr().err
    assert main(["deploy", "--env", "staging", "--image", f"{REPO}:v1.0.0",
                 "--watch", "1m"]) == ExitCode.USAGE  # fmt: skip


def test_switch_to_a_slot_and_split(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy("v1.0.0") == 0
    assert deploy("v2.0.0") == 0
    capsys.readouterr()
    assert main(["switch", "--env", "prod", "--to", "green", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["weights"] == {"blue": 0, "green": 100}
    assert payload["deploy_id"] is not None
    assert main(["switch", "--env", "prod", "--weights", "90,10"]) == 0
    assert host.proxy.running == Weights.of({"blue": 90, "green": 10})
    assert "confirmed through the proxy" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ([], ExitCode.USAGE),
        (["--to", "blue", "--weights", "50,50"], ExitCode.USAGE),
        (["--to", "purple"], ExitCode.USAGE),
        (["--weights", "50"], ExitCode.USAGE),
        (["--weights", "0,0"], ExitCode.USAGE),
        (["--weights", "60,60"], ExitCode.USAGE),
        (["--to", "blue"], ExitCode.VERIFY),  # blue holds nothing
    ],
)
def test_switch_refuses_what_it_cannot_do(
    host: Host, args: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy("v1.0.0") == 0  # green
    before = list(host.proxy.timeline)
    assert main(["switch", "--env", "prod", *args]) == code
    assert host.proxy.timeline == before
    assert capsys.readouterr().err


def test_rollback_dry_run_says_it_would_switch(
    host: Host, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy("v1.0.0") == 0
    assert deploy("v2.0.0") == 0
    assert main(["rollback", "--env", "prod", "--dry-run"]) == 0
    assert "switch every request to the idle slot" in capsys.readouterr().out
    assert main(["rollback", "--env", "prod"]) == 0
    assert host.proxy.running == Weights.all_to("green", NAMES)
