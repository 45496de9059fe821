"""The action's input handling: literal arguments, strict booleans, per-command inputs."""

from __future__ import annotations

import os

import pytest

from tagkeeper.action import (
    _DRY_RUN,
    _GITHUB_FORMAT,
    _IMAGE_AS_FLAG,
    _VALUE_FLAGS,
    COMMANDS,
    build_invocation,
    parse_bool,
    secrets_in,
    shown,
)
from tagkeeper.errors import UsageError


def test_prune_inputs_become_flags() -> None:
    inv = build_invocation(
        {
            "TK_COMMAND": "prune",
            "TK_IMAGE": "ghcr.io/acme/app\nghcr.io/acme/worker\n",
            "TK_KEEP": "5",
            "TK_PROTECT": "v1.*\n\n  stable-*  \n",
            "TK_DRY_RUN": "true",
            "TK_TOKEN": "ghs_secret",
        }
    )
    assert inv.argv == [
        "prune",
        "--image",
        "ghcr.io/acme/app",
        "--image",
        "ghcr.io/acme/worker",
        "--keep",
        "5",
        "--protect",
        "v1.*",
        "--protect",
        "stable-*",
        "--dry-run",
        "--format",
        "github",
    ]
    assert "ghs_secret" not in inv.argv
    assert inv.token == "ghs_secret"


def test_real_prune_is_confirmed_non_interactively() -> None:
    inv = build_invocation(
        {"TK_COMMAND": "prune", "TK_IMAGE": "ghcr.io/a/b", "TK_DRY_RUN": "false"}
    )
    assert "--yes" in inv.argv
    assert "--dry-run" not in inv.argv


@pytest.mark.parametrize(
    "payload",
    ["$(touch /tmp/pwned)", "`id`", "a; rm -rf /", "'quoted' \"double\"", "::error::forged"],
)
def test_args_are_split_never_evaluated(payload: str) -> None:
    import shlex

    inv = build_invocation({"TK_COMMAND": "tags", "TK_ARGS": f"--ref {shlex.quote(payload)}"})
    assert inv.argv[-2:] == ["--ref", payload]


def test_unbalanced_quotes_in_args_are_bad_input() -> None:
    with pytest.raises(UsageError, match="cannot be split"):
        build_invocation({"TK_COMMAND": "tags", "TK_ARGS": "--ref 'open"})


def test_check_takes_references_as_arguments() -> None:
    inv = build_invocation(
        {
            "TK_COMMAND": "check",
            "TK_IMAGE": "ghcr.io/a/b:v1.0.0\nghcr.io/a/b:latest",
            "TK_ENV": "prod",
        }
    )
    assert inv.argv[:3] == ["check", "--env", "prod"]
    assert inv.argv[-3:] == ["--", "ghcr.io/a/b:v1.0.0", "ghcr.io/a/b:latest"]


@pytest.mark.parametrize("line", ["--allow-prerelease", "--help", "-h", "--env=dev"])
def test_check_references_can_never_become_options(line: str) -> None:
    inv = build_invocation(
        {"TK_COMMAND": "check", "TK_IMAGE": f"ghcr.io/a/b:v1.2.3-rc.1\n{line}", "TK_ENV": "prod"}
    )
    separator = inv.argv.index("--")
    assert line in inv.argv[separator:]
    assert line not in inv.argv[:separator]


def test_secrets_given_in_args_are_never_shown() -> None:
    inv = build_invocation(
        {
            "TK_COMMAND": "prune",
            "TK_IMAGE": "ghcr.io/a/b",
            "TK_ARGS": "--token ghp_SECRET1 --password=hunter2",
        }
    )
    assert secrets_in(inv.argv) == ["ghp_SECRET1", "hunter2"]
    line = shown(inv.argv)
    assert "ghp_SECRET1" not in line
    assert "hunter2" not in line
    assert "--token ***" in line


@pytest.mark.parametrize("value", ["True", "yes", "1", "false ", "on", ""])
def test_booleans_accept_only_true_or_false(value: str) -> None:
    if value.strip() == "false":
        assert parse_bool("dry-run", value.strip()) is False
        return
    with pytest.raises(UsageError, match="exactly 'true' or 'false'"):
        parse_bool("dry-run", value)


def test_loose_boolean_input_is_refused() -> None:
    with pytest.raises(UsageError):
        build_invocation({"TK_COMMAND": "prune", "TK_IMAGE": "ghcr.io/a/b", "TK_DRY_RUN": "yes"})


@pytest.mark.parametrize("command", ["", "rm", "tags; id", "Deploy", "verify --help"])
def test_unknown_command_is_refused(command: str) -> None:
    with pytest.raises(UsageError, match="input 'command'"):
        build_invocation({"TK_COMMAND": command})


def test_inputs_that_do_not_apply_are_refused() -> None:
    with pytest.raises(UsageError, match="does not apply"):
        build_invocation({"TK_COMMAND": "tags", "TK_KEEP": "3"})
    with pytest.raises(UsageError, match="only to the 'prune'"):
        build_invocation({"TK_COMMAND": "check", "TK_PROTECT": "v*"})


def _options_of(command: str) -> set[str]:
    import typer

    from tagkeeper.cli import build_app

    group = typer.main.get_command(build_app([command]))
    sub = group.commands[command]  # type: ignore[attr-defined]
    return {opt for param in sub.params for opt in param.opts}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_the_action_passes_exists_on_the_command(command: str) -> None:
    accepted = _options_of(command)
    for _variable, flag, commands in _VALUE_FLAGS:
        if command in commands:
            assert flag in accepted, f"{command} has no {flag}"
    if command in _IMAGE_AS_FLAG:
        assert "--image" in accepted
    if command in _GITHUB_FORMAT:
        assert "--format" in accepted
    if command == "prune":
        assert {"--protect", "--dry-run", "--yes"} <= accepted
    if command in _DRY_RUN:
        assert "--dry-run" in accepted


@pytest.mark.parametrize("value", [" prod", "prod ", "prod\n"])
def test_an_environment_name_reaches_the_cli_untrimmed(value: str) -> None:
    # the CLI refuses a name with spaces around it (exit 2) rather than guessing
    invocation = build_invocation(
        {"TK_COMMAND": "check", "TK_ENV": value, "TK_IMAGE": "a/b:v1.0.0"}
    )
    assert invocation.argv[invocation.argv.index("--env") + 1] == value


def test_verify_runs_one_image_with_github_output() -> None:
    inv = build_invocation(
        {
            "TK_COMMAND": "verify",
            "TK_IMAGE": "ghcr.io/acme/app:v1.2.3\n",
            "TK_ARGS": "--network bridge --port 8520 --smoke .github/smoke.toml",
        }
    )
    assert inv.argv == [
        "verify", "--image", "ghcr.io/acme/app:v1.2.3", "--format", "github",
        "--network", "bridge", "--port", "8520", "--smoke", ".github/smoke.toml",
    ]  # fmt: skip


def test_verify_takes_one_image_or_a_url_in_args() -> None:
    with pytest.raises(UsageError, match="the 'verify' command takes one image"):
        build_invocation({"TK_COMMAND": "verify", "TK_IMAGE": "ghcr.io/a/b:v1\nghcr.io/a/b:v1.0"})
    inv = build_invocation({"TK_COMMAND": "verify", "TK_ARGS": "--url http://127.0.0.1:8520"})
    assert inv.argv == ["verify", "--format", "github", "--url", "http://127.0.0.1:8520"]


def test_verify_takes_no_environment_input() -> None:
    # --env is a container variable for verify; the environment input never becomes one
    with pytest.raises(UsageError, match="input 'env' does not apply to the 'verify'"):
        build_invocation({"TK_COMMAND": "verify", "TK_IMAGE": "a/b:v1", "TK_ENV": "prod"})


def test_the_echoed_command_line_cannot_drive_the_log(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tagkeeper import action

    for name in [n for n in os.environ if n.startswith("TK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TK_COMMAND", "check")
    monkeypatch.setenv("TK_ARGS", "'app:v1\x1b[2J\u202e ##[warning]x'")
    monkeypatch.setattr("tagkeeper.cli.main", lambda argv: 0)
    assert action.main() == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert "##[" not in out
    assert "tagkeeper check" in out
