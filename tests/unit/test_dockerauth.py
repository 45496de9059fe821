"""Registry credentials: flags, environment, Docker's config.json and real helper programs.

The credential helper is a real executable script put on ``PATH`` in ``tmp_path``; it
records what it was asked on stdin, so the tests check the protocol, not a mock.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from typing import TYPE_CHECKING

import pytest

from tagkeeper.errors import AuthError, UsageError
from tagkeeper.registries import credentials as dockerauth
from tagkeeper.secret import Secret

if TYPE_CHECKING:
    from pathlib import Path

HOST = "registry.example.com:5000"


def write_config(folder: Path, data: dict[str, object]) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(data), encoding="utf-8")
    return {"DOCKER_CONFIG": str(folder), "PATH": os.environ.get("PATH", "")}


def install_helper(bin_dir: Path, name: str, answers: dict[str, dict[str, str]]) -> Path:
    """A ``docker-credential-<name>`` that answers from ``answers`` by server, logs stdin."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = bin_dir / f"{name}.log"
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"answers = {json.dumps(answers)!r}\n"
        "answers = json.loads(answers)\n"
        "server = sys.stdin.read()\n"
        f"open({str(log)!r}, 'a').write(sys.argv[1] + ' ' + server + '\\n')\n"
        "if server not in answers:\n"
        "    print('credentials not found in native keychain')\n"
        "    sys.exit(1)\n"
        "print(json.dumps(answers[server]))\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


def test_flags_win_over_everything(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"auths": {HOST: {"auth": "dTpw"}}})
    env["TAGKEEPER_REGISTRY_USERNAME"] = "envuser"
    env["TAGKEEPER_REGISTRY_PASSWORD"] = "envpw"
    creds = dockerauth.resolve(HOST, username="flag", password=Secret("flagpw"), environ=env)
    assert creds is not None
    assert (creds.username, creds.secret.reveal(), creds.source) == (
        "flag",
        "flagpw",
        "command line",
    )


def test_environment_wins_over_docker_config(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"auths": {HOST: {"auth": "dTpw"}}})
    env["TAGKEEPER_REGISTRY_USERNAME"] = "envuser"
    env["TAGKEEPER_REGISTRY_PASSWORD"] = "envpw"
    creds = dockerauth.resolve(HOST, environ=env)
    assert creds is not None
    assert (creds.username, creds.secret.reveal()) == ("envuser", "envpw")


def test_half_given_credentials_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        dockerauth.resolve(HOST, username="only-user", environ={})
    with pytest.raises(UsageError):
        dockerauth.resolve(HOST, environ={"TAGKEEPER_REGISTRY_PASSWORD": "x"})


def test_auths_entry_with_scheme_in_the_key(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"bob:pa:ss").decode()
    env = write_config(tmp_path, {"auths": {f"https://{HOST}/v1/": {"auth": encoded}}})
    creds = dockerauth.resolve(HOST, environ=env)
    assert creds is not None
    assert (creds.username, creds.secret.reveal()) == ("bob", "pa:ss")  # split at first ':'
    assert "pa:ss" not in repr(creds)


def test_identity_token_entry(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"auths": {HOST: {"identitytoken": "refresh-123"}}})
    creds = dockerauth.resolve(HOST, environ=env)
    assert creds is not None
    assert creds.identity_token
    assert creds.secret.reveal() == "refresh-123"


def test_no_entry_means_anonymous(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"auths": {"other.example.com": {"auth": "dTpw"}}})
    assert dockerauth.resolve(HOST, environ=env) is None
    assert dockerauth.resolve(HOST, environ={"DOCKER_CONFIG": str(tmp_path / "none")}) is None


def test_home_docker_config_is_the_default(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"carol:pw").decode()
    write_config(tmp_path / ".docker", {"auths": {HOST: {"auth": encoded}}})
    creds = dockerauth.resolve(HOST, environ={"HOME": str(tmp_path)})
    assert creds is not None
    assert creds.username == "carol"


def test_bad_auth_entry_and_bad_json_are_auth_errors(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"auths": {HOST: {"auth": "not base64!"}}})
    with pytest.raises(AuthError, match="base64"):
        dockerauth.resolve(HOST, environ=env)
    (tmp_path / "config.json").write_text("{", encoding="utf-8")
    with pytest.raises(AuthError, match="not valid JSON"):
        dockerauth.resolve(HOST, environ=env)


def test_cred_helper_for_the_host(tmp_path: Path) -> None:
    env = write_config(
        tmp_path / "cfg", {"credHelpers": {HOST: "fake"}, "auths": {HOST: {"auth": "dTpw"}}}
    )
    log = install_helper(tmp_path / "bin", "fake", {HOST: {"Username": "dave", "Secret": "s1"}})
    env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"
    creds = dockerauth.resolve(HOST, environ=env)
    assert creds is not None
    assert (creds.username, creds.secret.reveal()) == ("dave", "s1")
    assert log.read_text().split() == ["get", HOST]


def test_creds_store_with_token_user_is_an_identity_token(tmp_path: Path) -> None:
    env = write_config(tmp_path / "cfg", {"credsStore": "store", "auths": {HOST: {}}})
    install_helper(tmp_path / "bin", "store", {HOST: {"Username": "<token>", "Secret": "rt"}})
    env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"
    creds = dockerauth.resolve(HOST, environ=env)
    assert creds is not None
    assert creds.identity_token
    assert creds.secret.reveal() == "rt"


def test_creds_store_without_an_answer_falls_back_to_auths(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"erin:pw").decode()
    env = write_config(
        tmp_path / "cfg", {"credsStore": "store", "auths": {HOST: {"auth": encoded}}}
    )
    install_helper(tmp_path / "bin", "store", {})
    env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"
    creds = dockerauth.resolve(HOST, environ=env)
    assert creds is not None
    assert creds.username == "erin"


def test_missing_helper_is_an_auth_error_that_says_what_to_do(tmp_path: Path) -> None:
    env = write_config(tmp_path / "cfg", {"credHelpers": {HOST: "absent"}})
    env["PATH"] = str(tmp_path / "empty")
    with pytest.raises(AuthError) as caught:
        dockerauth.resolve(HOST, environ=env)
    assert "docker-credential-absent" in caught.value.message
    assert "--password-stdin" in (caught.value.hint or "")


def test_helper_runner_is_injectable_for_docker_hub(tmp_path: Path) -> None:
    asked: list[tuple[str, str]] = []

    def runner(name: str, server: str) -> str | None:
        asked.append((name, server))
        return json.dumps({"Username": "u", "Secret": "s"})

    env = write_config(tmp_path, {"credHelpers": {"https://index.docker.io/v1/": "hub"}})
    creds = dockerauth.resolve("docker.io", environ=env, runner=runner)
    assert creds is not None
    assert creds.username == "u"
    assert asked == [("hub", "https://index.docker.io/v1/")]
