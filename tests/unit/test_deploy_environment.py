"""What a deploy command (and a container the engine starts) gets from tagkeeper's environment.

A real script dumps its environment; tagkeeper runs it as ``deploy`` and ``rollback`` do,
with the tokens a CI job has in its environment.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from typing import TYPE_CHECKING

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.cli import deploy_engine, main
from tagkeeper.deploy import passenv
from tagkeeper.deploy.proxies.base import run_command
from tagkeeper.errors import ExitCode, UsageError
from tests.unit.deploy_fakes import PORT, REPO, App, FakeClock, FakeRuntime

if TYPE_CHECKING:
    from pathlib import Path

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
SECRETS = {
    "GITHUB_TOKEN": "ghs_0123456789abcdefTOKEN",
    "GH_TOKEN": "gho_0123456789abcdefTOKEN",
    "TAGKEEPER_REGISTRY_PASSWORD": "registry-pa55word",
    "AWS_SECRET_ACCESS_KEY": "aws/secret+key",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc-request-token",
    "HTTPS_PROXY": "http://me:pr0xy-pass@proxy.example:3128",
}
OTHERS = {
    "PROFILE": "prod-profile-7",
    "APP_NAME": "shop-app-7",
    "APP_TOKEN": "app-t0ken-7",
    "RANDOM_VAR": "random-value-7",
}
SHELL_MADE = {"PWD", "OLDPWD", "SHLVL", "_"}  # what sh adds by itself


@pytest.fixture
def deploy_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder, its ledger, a CI job's environment; the dump script is ``./deploy.sh``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(tmp_path / "ledger.db"))
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_REPOSITORY", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**SECRETS, **OTHERS, "LC_TIME": "C", "SSH_AUTH_SOCK": "/tmp/agent"}.items():
        monkeypatch.setenv(name, value)
    script = tmp_path / "deploy.sh"
    script.write_text('#!/bin/sh\nenv > "$(dirname "$0")/env.txt"\n', encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def _dumped(folder: Path) -> dict[str, str]:
    lines = (folder / "env.txt").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _deploy(*flags: str) -> int:
    argv = ["deploy", "--env", "prod", "--image", f"{REPO}:v1.4.0@{D1}", *flags, "--",
            "./deploy.sh"]  # fmt: skip
    return main(argv)


def _allowed(*extra: str) -> set[str]:
    return {*passenv.DEFAULT, "IMAGE", "IMAGE_DIGEST", "IMAGE_TAG", *SHELL_MADE, *extra}


def _only_allowed(env: dict[str, str], *extra: str) -> None:
    allowed = _allowed(*extra)
    stray = {n for n in env if n not in allowed and not n.startswith("LC_")}
    assert stray == set(), stray


# -- the script strategy --------------------------------------------------------------------


def test_by_default_the_script_gets_its_image_and_the_process_basics_and_no_token(
    deploy_host: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _deploy() == 0
    env = _dumped(deploy_host)
    assert (env["IMAGE"], env["IMAGE_DIGEST"], env["IMAGE_TAG"]) == (
        f"{REPO}:v1.4.0@{D1}", D1, "v1.4.0",
    )  # fmt: skip
    assert env["PATH"] == os.environ["PATH"]
    assert env["HOME"] == os.environ["HOME"]
    assert env["LC_TIME"] == "C"
    assert env["SSH_AUTH_SOCK"] == "/tmp/agent"
    _only_allowed(env)
    text = (deploy_host / "env.txt").read_text(encoding="utf-8")
    for value in (*SECRETS.values(), *OTHERS.values()):
        assert value not in text
    assert "warning" not in capsys.readouterr().err


def test_pass_env_names_and_prefixes_add_variables_but_a_prefix_never_adds_a_secret(
    deploy_host: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _deploy("--pass-env", "PROFILE", "--pass-env", "APP_*", "--pass-env", "NOT_SET") == 0
    env = _dumped(deploy_host)
    assert (env["PROFILE"], env["APP_NAME"]) == (OTHERS["PROFILE"], OTHERS["APP_NAME"])
    assert "APP_TOKEN" not in env
    _only_allowed(env, "PROFILE", "APP_NAME")
    err = capsys.readouterr().err
    assert "note: pass-env 'APP_*' leaves out APP_TOKEN" in err
    assert "note: pass-env NOT_SET: not set here" in err
    assert OTHERS["APP_TOKEN"] not in err


def test_a_token_named_exactly_is_passed_with_a_warning_that_never_shows_it(
    deploy_host: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _deploy("--pass-env", "GITHUB_TOKEN", "--pass-env", "*") == 0
    env = _dumped(deploy_host)
    assert env["GITHUB_TOKEN"] == SECRETS["GITHUB_TOKEN"]
    assert env["RANDOM_VAR"] == OTHERS["RANDOM_VAR"]  # '*': everything that is no secret
    for name in set(SECRETS) - {"GITHUB_TOKEN"}:
        assert name not in env, name
    err = capsys.readouterr().err
    assert "warning: the deploy command gets GITHUB_TOKEN, which looks like a secret" in err
    for value in SECRETS.values():
        assert value not in err


def test_the_mission_script_keeps_working_with_env_or_pass_env(
    deploy_host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROFILE")
    argv = ["deploy", "--env", "prod", "--image", f"{REPO}:v1.4.0@{D1}", "--", "env",
            "PROFILE=prod", "./deploy.sh"]  # fmt: skip
    assert main(argv) == 0
    assert _dumped(deploy_host)["PROFILE"] == "prod"
    monkeypatch.setenv("PROFILE", "prod")  # PROFILE=prod tagkeeper deploy ... -- ./deploy.sh
    assert _deploy("--pass-env", "PROFILE") == 0
    assert _dumped(deploy_host)["PROFILE"] == "prod"
    assert _deploy() == 0
    assert "PROFILE" not in _dumped(deploy_host)  # not without one or the other


def test_the_configuration_lists_variables_at_the_top_and_per_environment(
    deploy_host: Path,
) -> None:
    (deploy_host / "tagkeeper.toml").write_text(
        'pass-env = ["PROFILE"]\n[deploy.prod]\nstrategy = "script"\npass-env = ["APP_*"]\n',
        encoding="utf-8",
    )
    assert _deploy() == 0
    env = _dumped(deploy_host)
    assert (env["PROFILE"], env["APP_NAME"]) == (OTHERS["PROFILE"], OTHERS["APP_NAME"])
    _only_allowed(env, "PROFILE", "APP_NAME")


def test_rollback_gets_the_same_environment_and_its_dry_run_says_what_passes(
    deploy_host: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for tag, digest in (("v1.0.0", D1), ("v1.1.0", D2)):
        assert main(["record", "--env", "prod", "--image", f"{REPO}:{tag}@{digest}",
                     "--status", "succeeded"]) == 0  # fmt: skip
    capsys.readouterr()
    rollback = ["rollback", "--env", "prod", "--image", REPO, "--source", "ledger",
                "--pass-env", "PROFILE"]  # fmt: skip
    assert main([*rollback, "--dry-run", "--", "./deploy.sh"]) == 0
    out, err = capsys.readouterr()
    assert out == f"IMAGE={REPO}:v1.0.0@{D1} IMAGE_DIGEST={D1} IMAGE_TAG=v1.0.0 ./deploy.sh\n"
    assert "the command would get: " in err
    would = err.split("the command would get: ")[1].splitlines()[0].split(", ")
    assert "PROFILE" in would
    assert "GITHUB_TOKEN" not in would
    assert main([*rollback, "--", "./deploy.sh"]) == 0
    env = _dumped(deploy_host)
    assert env["IMAGE"] == f"{REPO}:v1.0.0@{D1}"
    assert env["PROFILE"] == OTHERS["PROFILE"]
    _only_allowed(env, "PROFILE")
    assert sorted(n for n in env if n not in SHELL_MADE) == sorted(
        n for n in would if n not in SHELL_MADE
    )


@pytest.mark.parametrize("value", ["APP-NAME", "9LIVES", "A*B", "", "**"])
def test_a_bad_pass_env_is_exit_2_before_anything_runs(
    deploy_host: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _deploy("--pass-env", value) == ExitCode.USAGE
    assert not (deploy_host / "env.txt").exists()
    assert not (deploy_host / "ledger.db").exists()
    assert "is not a variable name or a NAME* prefix" in capsys.readouterr().err


def test_pass_env_with_a_container_strategy_is_exit_2(
    deploy_host: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (deploy_host / "tagkeeper.toml").write_text(
        f'[deploy.prod]\nimage = "{REPO}"\ncontainer = "app"\nport = {PORT}\n', encoding="utf-8"
    )
    assert main(["deploy", "--env", "prod", "--image", f"{REPO}:v1.0.0",
                 "--pass-env", "PROFILE"]) == ExitCode.USAGE  # fmt: skip
    assert "--pass-env applies to the script strategy" in capsys.readouterr().err


# -- containers the engine starts, and its own commands -----------------------------------


@pytest.fixture
def engine(deploy_host: Path, monkeypatch: pytest.MonkeyPatch) -> FakeRuntime:
    (deploy_host / "tagkeeper.toml").write_text(
        f'[deploy.prod]\nimage = "{REPO}"\ncontainer = "app"\nport = {PORT}\n'
        'network = "host"\nport-env = "SERVER_PORT"\ninterval = "10ms"\nsuccesses = 1\n'
        'health-timeout = "1s"\nenv = { PROFILE = "prod" }\n',
        encoding="utf-8",
    )
    runtime = FakeRuntime(FakeClock())
    monkeypatch.setattr(deploy_engine, "runtime", lambda: runtime)
    monkeypatch.setattr(
        deploy_engine, "http_client", lambda: httpx.Client(transport=runtime.transport())
    )
    return runtime


def test_containers_get_what_the_table_and_flags_name_never_the_environment(
    engine: FakeRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    engine.publish(f"{REPO}:v1.0.0", App())
    assert main(["deploy", "--env", "prod", "--image", f"{REPO}:v1.0.0"]) == 0, (
        capsys.readouterr().err
    )
    assert engine.containers["app"].options.env == {"PROFILE": "prod", "SERVER_PORT": str(PORT)}
    code = main(["verify", "--image", f"{REPO}:v1.0.0", "--deploy-env", "prod", "--port",
                 "18731", "-e", "GITHUB_TOKEN", "-e", "MODE=ci"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    [verified] = [c for c in engine.removed if c.name.startswith("tagkeeper-verify-")]
    assert verified.options.env == {  # -e NAME takes it from the environment: named, so passed
        "PROFILE": "prod", "SERVER_PORT": "18731", "MODE": "ci",
        "GITHUB_TOKEN": SECRETS["GITHUB_TOKEN"],
    }  # fmt: skip


def test_a_proxy_command_gets_the_default_environment_only(deploy_host: Path) -> None:
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    result = run_command([sys.executable, "-c", dump], timeout=30)
    assert result.returncode == 0
    env = json.loads(result.output)
    assert env["PATH"] == os.environ["PATH"]
    for name in (*SECRETS, *OTHERS):
        assert name not in env, name


# -- the choice itself ------------------------------------------------------------------------


names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,12}", fullmatch=True)
values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
patterns = st.lists(st.one_of(names, names.map(lambda n: n[:3] + "*"), st.just("*")), max_size=4)


@given(environ=st.dictionaries(names, values, max_size=25), asked=patterns)
def test_nothing_passes_unless_set_by_tagkeeper_a_default_or_asked_and_no_secret_unnamed(
    environ: dict[str, str], asked: list[str]
) -> None:
    chosen = passenv.choose(environ, asked, setting={"IMAGE": "x"})
    assert chosen.variables["IMAGE"] == "x"
    exact = {p for p in [*passenv.DEFAULT, *asked] if not p.endswith("*")}
    for name, value in chosen.variables.items():
        if name == "IMAGE":
            continue
        assert value == environ[name]
        globbed = any(
            p.endswith("*") and name.startswith(p[:-1]) for p in [*passenv.DEFAULT, *asked]
        )
        assert name in exact or globbed
        if passenv.looks_secret(name, value) and name not in passenv.DEFAULT:
            assert name in asked  # named exactly...
            assert name in chosen.secrets  # ...and reported
    for name in exact & set(environ):
        assert name in chosen.variables  # a name asked for always passes
    assert set(chosen.missing) == {p for p in asked if not p.endswith("*")} - set(environ)


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("GITHUB_TOKEN", "", True), ("GH_TOKEN", "", True), ("NPM_TOKEN", "", True),
        ("TAGKEEPER_REGISTRY_PASSWORD", "", True), ("DB_PASSWD", "", True),
        ("AWS_SECRET_ACCESS_KEY", "", True), ("SIGNING_KEY", "", True),
        ("DOCKER_AUTH_CONFIG", "", True), ("GH_PAT", "", True), ("SENTRY_DSN", "", True),
        ("GPG_PASSPHRASE", "", True), ("GOOGLE_APPLICATION_CREDENTIALS", "", True),
        ("DATABASE_URL", "postgres://app:s3cret@db:5432/app", True),
        ("DATABASE_URL", "postgres://db:5432/app", False),
        ("PATH", "/usr/bin", False), ("PROFILE", "prod", False),
        ("GIT_AUTHOR_NAME", "Ann", False), ("KEYBOARD", "us", False),
        ("PATTERN", "x", False), ("DOCKER_HOST", "unix:///run/docker.sock", False),
    ],
)  # fmt: skip
def test_looks_secret(name: str, value: str, secret: bool) -> None:
    assert passenv.looks_secret(name, value) is secret


def test_patterns_are_checked() -> None:
    assert passenv.parse_patterns(["A", "B_*", "A", "*"]) == ("A", "B_*", "*")
    with pytest.raises(UsageError, match="'A B' is not a variable name"):
        passenv.parse_patterns(["A B"])
