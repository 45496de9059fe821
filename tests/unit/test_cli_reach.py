"""The settings a command is given reach the services it asks: no CLI function patched.

``previous --source registry``, ``deploy`` resolving a digest and the GitHub history of
``previous``/``prune --env`` must reach the API and registry named by ``--api-url`` /
``--registry-url`` (or the configuration's ``api-url`` / ``registry-url``) with the
token given by ``--token`` (or ``$GITHUB_TOKEN``), and nowhere else. pytest-httpx plays
GitHub's REST API and the registry and records every request.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
import sys
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tagkeeper.cli import main
from tagkeeper.rollback import github as github_module

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_httpx import HTTPXMock

API = "https://ghe.test/api/v3"
REG = "https://registry.ghe.test"
TOKEN = "ghp_givenToken0123456789abcdef"
IMAGE = "ghcr.io/acme/app"
DIGEST = "sha256:" + "ab" * 32


def fake_digest(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def versions_json() -> list[dict[str, Any]]:
    return [
        {
            "id": n,
            "name": fake_digest(n),
            "created_at": f"2024-01-0{n}T00:00:00Z",
            "metadata": {"package_type": "container", "container": {"tags": [tag]}},
        }
        for n, tag in enumerate(("v1.0.0", "v1.1.0", "v1.2.0"), start=1)
    ]


class Services:
    """GitHub's REST API and the registry, as pytest-httpx callbacks; every request kept."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path
        if request.url.host == "ghe.test":
            if path.endswith("/user"):
                return httpx.Response(200, json={"login": "someone-else"})
            if path.endswith("/users/acme"):
                return httpx.Response(200, json={"login": "acme", "type": "Organization"})
            if path.endswith("/packages/container/app/versions"):
                return httpx.Response(200, json=versions_json())
        if request.url.host == "registry.ghe.test":
            if path == "/token":
                return httpx.Response(200, json={"token": "registry-bearer"})
            if request.method == "HEAD" and path == "/v2/acme/app/manifests/v1.5.0":
                return httpx.Response(200, headers={"docker-content-digest": DIGEST})
        return httpx.Response(404, json={"message": "Not Found"})

    def check_all_went_to_the_given_places_with_the_given_token(self) -> None:
        assert self.seen, "nothing was asked"
        basic = "Basic " + base64.b64encode(f"tagkeeper:{TOKEN}".encode()).decode()
        for request in self.seen:
            where = f"{request.url.scheme}://{request.url.host}"
            assert where in ("https://ghe.test", REG), request.url
            auth = request.headers.get("authorization", "")
            if request.url.host == "ghe.test":
                assert TOKEN in auth, (request.url, auth)
            elif request.url.path == "/token":
                assert auth == basic, (request.url, auth)
            else:
                assert auth == "Bearer registry-bearer", (request.url, auth)


@pytest.fixture
def services(
    httpx_mock: HTTPXMock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Services:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(tmp_path / "ledger.db"))
    for name in ("GITHUB_REPOSITORY", "GITHUB_TOKEN", "GH_TOKEN", "GITHUB_API_URL",
                 "GITHUB_ACTIONS", "GITHUB_OUTPUT", "DOCKER_CONFIG"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    fake = Services()
    httpx_mock.add_callback(fake, is_reusable=True, is_optional=True)
    return fake


def test_previous_source_registry_uses_the_given_api_url_and_token(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["previous", "--image", IMAGE, "--source", "registry", "--current", "v1.2.0"]
    code = main([*args, "--api-url", API, "--registry-url", REG, "--token", TOKEN])
    out, err = capsys.readouterr()
    assert (code, out) == (0, "v1.1.0\n"), err
    services.check_all_went_to_the_given_places_with_the_given_token()
    assert TOKEN not in out + err


def test_previous_source_registry_uses_the_configured_api_url(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    (tmp_path / "tagkeeper.toml").write_text(f'api-url = "{API}"\nregistry-url = "{REG}"\n')
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    code = main(["previous", "--image", IMAGE, "--source", "registry", "--current", "v1.2.0"])
    out, err = capsys.readouterr()
    assert (code, out) == (0, "v1.1.0\n"), err
    services.check_all_went_to_the_given_places_with_the_given_token()


def env_dump(tmp_path: Path) -> list[str]:
    script = f'printf "%s|%s" "$IMAGE" "$IMAGE_DIGEST" > {shlex.quote(str(tmp_path / "env.txt"))}'
    return ["sh", "-c", script] if sys.platform != "win32" else []


@pytest.mark.parametrize("configured", [False, True])
def test_deploy_resolves_the_digest_where_it_is_told_with_the_token_given(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], configured: bool,
) -> None:  # fmt: skip
    args = ["deploy", "--env", "prod", "--image", f"{IMAGE}:v1.5.0"]
    if configured:
        (tmp_path / "tagkeeper.toml").write_text(f'api-url = "{API}"\nregistry-url = "{REG}"\n')
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    else:
        args += ["--api-url", API, "--registry-url", REG, "--token", TOKEN]
    code = main([*args, "--", *env_dump(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert (tmp_path / "env.txt").read_text() == f"{IMAGE}:v1.5.0|{DIGEST}"
    services.check_all_went_to_the_given_places_with_the_given_token()


class Connected:
    """What GitHub Deployments were opened with (PyGithub speaks requests, not httpx)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, repository: str, token: Any, *, api_url: str, **_kw: Any) -> Any:
        self.calls.append((repository, token.reveal(), api_url))
        return FakeRepo()


class FakeRepo:
    def get_deployments(self, **_kw: Any) -> list[Any]:
        return []


@pytest.mark.parametrize("configured", [False, True])
def test_github_history_is_read_at_the_given_api_url_with_the_given_token(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: bool,
) -> None:  # fmt: skip
    connected = Connected()
    monkeypatch.setattr(github_module, "connect", connected)
    args = ["previous", "--image", IMAGE, "--source", "github", "--repo", "acme/app"]
    if configured:
        (tmp_path / "tagkeeper.toml").write_text(f'api-url = "{API}"\n')
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    else:
        args += ["--api-url", API, "--token", TOKEN]
    main(args)  # no deployment: no target (exit 8); what matters is where it asked
    assert connected.calls == [("acme/app", TOKEN, API)]
