"""Where the GitHub token may go inside GitHub Actions: a configuration file from the
checkout cannot send it (or the registry credentials) to a host of its choosing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.cli import main
from tagkeeper.config import Config
from tagkeeper.destinations import allowed_hosts, configured_url
from tagkeeper.errors import ConfigError, ExitCode

if TYPE_CHECKING:
    from pytest_httpx import HTTPXMock

IMAGE = "ghcr.io/o/app"
TOKEN = "ghp_" + "a" * 36
ACTIONS = {"GITHUB_ACTIONS": "true", "GITHUB_API_URL": "https://api.github.com"}
SOURCE = Path("/checkout/tagkeeper.toml")


def config(**values: str) -> Config:
    return Config.from_values({k.replace("_", "-"): v for k, v in values.items()}, SOURCE)


@pytest.mark.parametrize(
    "url",
    [
        "https://collector.example",
        "https://api.github.com.collector.example",
        "https://api.github.com:8443",
        "https://collector.example/api.github.com",
        "https://API.GITHUB.COM@collector.example",
    ],
)
def test_inside_actions_a_configured_api_url_elsewhere_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        configured_url("api-url", None, config(api_url=url), ACTIONS)
    message = caught.value.diagnostics()
    assert str(SOURCE) in message
    assert "api.github.com" in message
    assert "--api-url" in message
    assert caught.value.exit_code is ExitCode.CONFIG


@pytest.mark.parametrize(
    "url", ["https://api.github.com", "https://API.github.com/", "https://api.github.com:443/x"]
)
def test_inside_actions_the_runs_own_api_is_accepted_from_a_file(url: str) -> None:
    assert configured_url("api-url", None, config(api_url=url), ACTIONS) == url


def test_github_enterprise_in_actions_accepts_its_own_api_and_registry() -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": "https://ghe.example.com/api/v3",
        "GITHUB_SERVER_URL": "https://ghe.example.com",
    }
    cfg = config(
        api_url="https://ghe.example.com/api/v3", registry_url="https://containers.ghe.example.com"
    )
    assert configured_url("api-url", None, cfg, env) == "https://ghe.example.com/api/v3"
    assert (
        configured_url("registry-url", None, cfg, env) == "https://containers.ghe.example.com"
    )
    with pytest.raises(ConfigError):  # github.com's registry is not this run's
        configured_url("registry-url", None, config(registry_url="https://ghcr.io"), env)
    with pytest.raises(ConfigError):  # nor api.github.com
        configured_url("api-url", None, config(api_url="https://api.github.com"), env)


def test_registry_url_from_a_file_inside_actions_must_be_ghcr() -> None:
    assert allowed_hosts("registry-url", ACTIONS) == frozenset({("ghcr.io", 443)})
    assert configured_url("registry-url", None, config(registry_url="https://ghcr.io"), ACTIONS)
    with pytest.raises(ConfigError) as caught:
        configured_url("registry-url", None, config(registry_url="https://r.example"), ACTIONS)
    assert "--registry-url" in caught.value.diagnostics()


@pytest.mark.parametrize("key", ["api-url", "registry-url"])
def test_the_command_line_may_name_any_host(key: str) -> None:
    cfg = config(api_url="https://collector.example", registry_url="https://collector.example")
    got = configured_url(key, "https://ghe.example.com", cfg, ACTIONS)  # type: ignore[arg-type]
    assert got == "https://ghe.example.com"


@pytest.mark.parametrize("env", [{}, {"GITHUB_ACTIONS": "false"}])
def test_outside_actions_a_configured_url_is_used_as_written(env: dict[str, str]) -> None:
    cfg = config(api_url="https://ghe.example.com/api/v3", registry_url="https://r.example")
    assert configured_url("api-url", None, cfg, env) == "https://ghe.example.com/api/v3"
    assert configured_url("registry-url", None, cfg, env) == "https://r.example"
    assert configured_url("api-url", None, Config(), ACTIONS) is None


def test_a_hostile_url_is_printed_neutralised() -> None:
    url = "https://collector.example/\n::error::pwned"
    with pytest.raises(ConfigError) as caught:
        configured_url("api-url", None, config(api_url=url), ACTIONS)
    assert "\n::" not in caught.value.message
    assert "\\n" in caught.value.message


# -- through every command that sends the token ----------------------------------------

COMMANDS: dict[str, list[str]] = {
    "prune": ["prune", "--image", IMAGE, "--dry-run"],
    "doctor": ["doctor", "--image", IMAGE],
    "previous-registry": [
        "previous", "--image", IMAGE, "--env", "prod", "--current", "v1.0.1",
        "--source", "registry",
    ],
    "previous-github": [
        "previous", "--image", IMAGE, "--env", "prod", "--current", "v1.0.1",
        "--source", "github",
    ],
    "rollback-github": [
        "rollback", "--env", "prod", "--image", IMAGE, "--current", "v1.0.1",
        "--source", "github", "--", "true",
    ],
    "deploy": ["deploy", "--env", "dev", "--image", f"{IMAGE}:v1.0.1", "--", "true"],
    "deploy-github": [
        "deploy", "--env", "dev", "--image", f"{IMAGE}:v1.0.1", "--github", "--", "true",
    ],
}
USES_REGISTRY = ("prune", "doctor", "previous-registry", "deploy", "deploy-github")


@pytest.fixture
def in_actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name, value in {
        **ACTIONS,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_SERVER_URL": "https://github.com",
        "TAGKEEPER_LEDGER": str(tmp_path / "ledger.db"),
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("GH_TOKEN", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    return tmp_path


@pytest.mark.parametrize(
    ("command", "key"),
    [(c, "api-url") for c in COMMANDS] + [(c, "registry-url") for c in USES_REGISTRY],
)
def test_a_checkout_config_cannot_send_the_token_elsewhere(
    command: str,
    key: str,
    in_actions: Path,
    httpx_mock: HTTPXMock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (in_actions / "tagkeeper.toml").write_text(f'{key} = "https://collector.example"\n')
    code = main(COMMANDS[command])
    err = capsys.readouterr().err
    assert code == ExitCode.CONFIG, err
    assert "collector.example" in err
    assert f"--{key}" in err
    assert httpx_mock.get_requests() == []  # nothing was sent anywhere
    assert not (in_actions / "ledger.db").exists()  # nothing recorded


def test_the_command_line_sends_the_token_where_it_says(
    in_actions: Path, httpx_mock: HTTPXMock, capsys: pytest.CaptureFixture[str]
) -> None:
    (in_actions / "tagkeeper.toml").write_text('api-url = "https://collector.example"\n')
    seen: list[tuple[str, str]] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("authorization", "")))
        return httpx.Response(401, json={"message": "Bad credentials"})

    httpx_mock.add_callback(refuse, is_reusable=True)
    code = main([*COMMANDS["prune"], "--api-url", "https://ghe.example.com/api/v3"])
    capsys.readouterr()
    assert code == ExitCode.AUTH
    assert seen
    assert {host for host, _ in seen} <= {"ghe.example.com", "ghcr.io"}
    assert ("ghe.example.com", f"Bearer {TOKEN}") in seen or (
        "ghe.example.com", f"token {TOKEN}") in seen


def test_a_config_naming_the_runs_own_api_is_used(
    in_actions: Path, httpx_mock: HTTPXMock, capsys: pytest.CaptureFixture[str]
) -> None:
    (in_actions / "tagkeeper.toml").write_text('api-url = "https://api.github.com"\n')
    hosts: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(401, json={"message": "Bad credentials"})

    httpx_mock.add_callback(refuse, is_reusable=True)
    assert main(COMMANDS["prune"]) == ExitCode.AUTH
    capsys.readouterr()
    assert "api.github.com" in hosts


# -- registry passwords that name no host ------------------------------------------------

ELSEWHERE = "collector.example/app"


def _recording(httpx_mock: HTTPXMock) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("authorization", "")))
        return httpx.Response(401)

    httpx_mock.add_callback(refuse, is_reusable=True)
    return seen


def test_a_configured_image_does_not_get_the_environments_registry_password(
    in_actions: Path,
    httpx_mock: HTTPXMock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TAGKEEPER_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("TAGKEEPER_REGISTRY_PASSWORD", "s3cret-registry-password")
    (in_actions / "tagkeeper.toml").write_text(f'image = ["{IMAGE}", "{ELSEWHERE}"]\n')
    code = main(["prune", "--dry-run", "--max-wait", "0"])
    err = capsys.readouterr().err
    assert code == ExitCode.CONFIG, err
    assert "collector.example" in err
    assert "--image" in err
    assert "s3cret" not in err
    assert httpx_mock.get_requests() == []


def test_an_image_on_the_command_line_gets_the_environments_registry_password(
    in_actions: Path,
    httpx_mock: HTTPXMock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TAGKEEPER_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("TAGKEEPER_REGISTRY_PASSWORD", "s3cret-registry-password")
    (in_actions / "tagkeeper.toml").write_text(f'image = "{ELSEWHERE}"\n')
    seen = _recording(httpx_mock)
    code = main(["prune", "--image", ELSEWHERE, "--dry-run", "--max-wait", "0"])
    capsys.readouterr()
    assert code != ExitCode.CONFIG
    assert seen
    assert {host for host, _ in seen} == {"collector.example"}


@pytest.mark.parametrize("actions", [True, False])
def test_without_a_hostless_password_a_configured_image_is_pruned_as_before(
    actions: bool,
    in_actions: Path,
    httpx_mock: HTTPXMock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if actions:
        monkeypatch.delenv("TAGKEEPER_REGISTRY_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("TAGKEEPER_REGISTRY_USERNAME", "ci")
        monkeypatch.setenv("TAGKEEPER_REGISTRY_PASSWORD", "s3cret-registry-password")
        monkeypatch.delenv("GITHUB_ACTIONS")
    (in_actions / "tagkeeper.toml").write_text(f'image = "{ELSEWHERE}"\n')
    seen = _recording(httpx_mock)
    code = main(["prune", "--dry-run", "--max-wait", "0"])
    capsys.readouterr()
    assert code != ExitCode.CONFIG
    assert {host for host, _ in seen} == {"collector.example"}
