"""A deploy host with only ``docker login`` credentials, against the GHCR emulator.

``deploy``, ``rollback`` and ``previous --digest`` of a ghcr.io image resolve what a tag
points at with one manifest ``HEAD`` on the registry (Docker's ``config.json``, or
anonymously for a public package), never by listing the package through the REST API,
and never ask for ``delete:packages``. ``--registry-url``, ``--api-url``, ``--token`` and
the configuration file are honoured on every path. A digest that comes from GitHub
Deployments is checked against the registry before a rollback runs it.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

import pytest

from tagkeeper.cli import main
from tests.emulators import images
from tests.emulators.deployments import install
from tests.emulators.ghcr import GhcrEmulator

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

IMAGE = "ghcr.io/octo/app"
SCRIPT = ["--pass-env", "OUT", "--", "sh", "-c", 'printf "%s %s" "$IMAGE" "$IMAGE_DIGEST" > "$OUT"']


@pytest.fixture
def emu() -> Iterator[GhcrEmulator]:
    emulator = GhcrEmulator(latency=0.0)
    install(emulator)  # GitHub Deployments routes too
    emulator.start()
    try:
        emulator.add_user("octo")
        yield emulator
    finally:
        emulator.stop()
    if emulator.errors:
        pytest.fail("the emulator raised inside a handler: " + "; ".join(emulator.errors))


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A deploy host: no GitHub token, a ledger of its own, a scratch working folder."""
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_API_URL", "GITHUB_REPOSITORY",
                 "GITHUB_ACTIONS", "GITHUB_OUTPUT", "TAGKEEPER_REGISTRY_USERNAME",
                 "TAGKEEPER_REGISTRY_PASSWORD"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(tmp_path / "ledger.db"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    return tmp_path


def docker_login(host: Path, token: str) -> None:
    """What ``docker login ghcr.io -u deploy-bot`` leaves in ``config.json``."""
    folder = host / "docker"
    folder.mkdir(exist_ok=True)
    auth = base64.b64encode(f"deploy-bot:{token}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {"ghcr.io": {"auth": auth}}}))


def push(emu: GhcrEmulator, tag: str) -> str:
    built = images.image(label=tag)
    emu.push_built("octo", "app", built, tags=[tag])
    return built.digest


def rest_calls(emu: GhcrEmulator) -> list[str]:
    """REST calls about packages (GitHub Deployments are asked where the test says)."""
    return [e.kind for e in emu.log if e.kind.startswith("rest.") and "deployments" not in e.kind]


def urls(emu: GhcrEmulator) -> list[str]:
    return ["--registry-url", emu.registry_url, "--api-url", emu.api_url]


def test_deploy_with_only_docker_login_resolves_by_one_head_and_no_rest_call(
    emu: GhcrEmulator, host: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = push(emu, "v1.0.0")
    docker_login(host, emu.add_token(login="octo", scopes={"read:packages"}))
    emu.reset_counters()
    code = main(["deploy", "--env", "prod", "--image", f"{IMAGE}:v1.0.0", *urls(emu), *SCRIPT])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert (host / "out").read_text() == f"{IMAGE}:v1.0.0 {digest}"
    assert rest_calls(emu) == []  # the package is never listed
    assert emu.counters["registry.manifest.head"] == 1
    assert "delete:packages" not in err


def test_a_public_image_needs_no_credentials_at_all(
    emu: GhcrEmulator, host: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = push(emu, "v1.0.0")
    emu.set_visibility("octo", "app", "public")
    code = main(["deploy", "--env", "prod", "--image", f"{IMAGE}:v1.0.0", *urls(emu), *SCRIPT])
    assert code == 0, capsys.readouterr().err
    assert (host / "out").read_text().endswith(digest)
    assert rest_calls(emu) == []


def test_a_private_image_without_credentials_goes_on_by_tag_and_says_why(
    emu: GhcrEmulator, host: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    push(emu, "v1.0.0")
    code = main(["deploy", "--env", "prod", "--image", f"{IMAGE}:v1.0.0", *urls(emu), *SCRIPT])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert (host / "out").read_text() == f"{IMAGE}:v1.0.0 "  # by tag: no digest known
    assert "could not be resolved" in err
    assert "docker login" in err  # what to do
    assert "delete:packages" not in err
    code = main(["deploy", "--env", "prod", "--image", f"{IMAGE}:v1.0.0", *urls(emu),
                 "--require-digest", *SCRIPT])  # fmt: skip
    assert code == 5


def test_the_configuration_file_names_the_registry_and_the_api(
    emu: GhcrEmulator, host: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = push(emu, "v1.0.0")
    docker_login(host, emu.add_token(login="octo", scopes={"read:packages"}))
    (host / "tagkeeper.toml").write_text(
        f'registry-url = "{emu.registry_url}"\napi-url = "{emu.api_url}"\n'
    )
    code = main(["deploy", "--env", "prod", "--image", f"{IMAGE}:v1.0.0", *SCRIPT])
    assert code == 0, capsys.readouterr().err
    assert (host / "out").read_text().endswith(digest)


def test_previous_digest_and_rollback_pin_through_the_registry(
    emu: GhcrEmulator, host: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, _ = push(emu, "v1.0.0"), push(emu, "v1.1.0")
    docker_login(host, emu.add_token(login="octo", scopes={"read:packages"}))
    for tag in ("v1.0.0", "v1.1.0"):  # recorded without digests (record by hand)
        args = ["record", "--env", "prod", "--image", f"{IMAGE}:{tag}", "--status"]
        assert main([*args, "succeeded"]) == 0
    capsys.readouterr()
    emu.reset_counters()
    code = main(["previous", "--image", IMAGE, "--env", "prod", "--digest", *urls(emu)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out == f"{IMAGE}:v1.0.0@{old}\n"
    assert rest_calls(emu) == []
    code = main(["rollback", "--env", "prod", "--image", IMAGE, *urls(emu), *SCRIPT])
    assert code == 0, capsys.readouterr().err
    assert (host / "out").read_text() == f"{IMAGE}:v1.0.0@{old} {old}"
    assert rest_calls(emu) == []


def test_a_token_given_is_the_one_the_registry_gets(
    emu: GhcrEmulator, host: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = push(emu, "v1.0.0")
    token = emu.add_token(login="octo", scopes={"read:packages"})
    code = main(["deploy", "--env", "prod", "--image", f"{IMAGE}:v1.0.0", *urls(emu),
                 "--token", token, *SCRIPT])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert (host / "out").read_text().endswith(digest)


def github_deploy(emu: GhcrEmulator, tag: str, digest: str) -> None:
    deployments = emu.extensions["deployments"]
    ident = deployments.add_deployment(
        "octo/app",
        environment="prod",
        payload={"image": f"{IMAGE}:{tag}", "tag": tag, "digest": digest},
    )
    deployments.add_status("octo/app", ident, "success")


@pytest.mark.parametrize("forged", [True, False])
def test_a_digest_from_github_deployments_is_checked_before_a_rollback_runs_it(
    emu: GhcrEmulator, host: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, forged: bool,
) -> None:  # fmt: skip
    old, new = push(emu, "v1.0.0"), push(emu, "v1.1.0")
    stale = push(emu, "v0.9.0")  # exists in the registry, but was never v1.0.0
    token = emu.add_token(login="octo", kind="github_token", default="write")
    emu.extensions["deployments"].add_repo("octo/app")
    github_deploy(emu, "v1.0.0", stale if forged else old)
    github_deploy(emu, "v1.1.0", new)
    monkeypatch.setenv("GITHUB_TOKEN", token)
    monkeypatch.setenv("GITHUB_REPOSITORY", "octo/app")
    code = main(["rollback", "--env", "prod", "--image", IMAGE, "--source", "github",
                 *urls(emu), *SCRIPT])  # fmt: skip
    _, err = capsys.readouterr()
    if forged:
        assert code == 5
        assert "refusing" in err
        assert not (host / "out").exists()  # nothing ran
    else:
        assert code == 0, err
        assert (host / "out").read_text() == f"{IMAGE}:v1.0.0@{old} {old}"
        assert "checked" in err


def test_a_malformed_digest_in_a_deployment_payload_is_never_history(
    emu: GhcrEmulator, host: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    push(emu, "v1.0.0")
    token = emu.add_token(login="octo", kind="github_token", default="write")
    emu.extensions["deployments"].add_repo("octo/app")
    github_deploy(emu, "v1.0.0", "sha256:abc\n::error::x")
    github_deploy(emu, "v1.1.0", "sha256:" + "1" * 64)
    monkeypatch.setenv("GITHUB_TOKEN", token)
    monkeypatch.setenv("GITHUB_REPOSITORY", "octo/app")
    code = main(["previous", "--image", IMAGE, "--env", "prod", "--source", "github",
                 "--digest", *urls(emu)])  # fmt: skip
    out, err = capsys.readouterr()
    # anyone with deployments: write writes payloads: a malformed one is refused by name,
    # never answered, and what it holds is never printed
    assert code == 8, err
    assert out == ""
    assert "::error::x" not in err
    assert "GitHub deployment #" in err
    assert "is not used" in err
