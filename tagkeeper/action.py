"""The composite action's entry point: turns ``TK_*`` inputs into a CLI call.

``action.yml`` passes every input through ``env:`` and runs :func:`main` with the Python of
the environment it built from ``requirements.lock``, importing this package from the
action's own directory (``$GITHUB_ACTION_PATH``), never from the caller's workspace.
Nothing here is evaluated by a shell: ``args`` is split with POSIX quoting rules by
:func:`shlex.split`, multi-line inputs become repeated flags, booleans accept only
``true``/``false``. The token is masked before anything else is printed and reaches the
CLI through ``GITHUB_TOKEN``, never through argv.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tagkeeper.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping

COMMANDS = (
    "tags",
    "check",
    "prune",
    "previous",
    "doctor",
    "history",
    "record",
    "deploy",
    "rollback",
    "verify",
)
_ALL = frozenset(COMMANDS)
_HISTORY = frozenset({"record", "deploy", "rollback"})

# input variable -> (flag, commands that take it)
_UNTRIMMED = frozenset({"TK_ENV"})
_VALUE_FLAGS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("TK_ENV", "--env", frozenset({"tags", "check", "prune", "previous", "history"}) | _HISTORY),
    ("TK_KEEP", "--keep", frozenset({"prune"})),
    ("TK_KEEP_DEV", "--keep-dev", frozenset({"prune"})),
    ("TK_KEEP_PR", "--keep-pr", frozenset({"prune"})),
    ("TK_KEEP_RELEASE", "--keep-release", frozenset({"prune"})),
    ("TK_KEEP_PRERELEASE", "--keep-prerelease", frozenset({"prune"})),
    ("TK_MIN_AGE", "--min-age", frozenset({"prune"})),
    ("TK_UNTAGGED", "--untagged", frozenset({"prune"})),
    ("TK_UNMATCHED", "--unmatched", frozenset({"prune"})),
    ("TK_MAX_DELETE", "--max-delete", frozenset({"prune"})),
    ("TK_STATUS", "--status", frozenset({"record"})),
    ("TK_API_URL", "--api-url", frozenset({"prune", "doctor", "previous"}) | _HISTORY),
    (
        "TK_REGISTRY_URL",
        "--registry-url",
        frozenset({"prune", "doctor", "previous"}) | _HISTORY - {"record"},
    ),
)
# How the image input reaches the command: repeated --image, one --image, or (check)
# references after '--'.
_IMAGE_AS_FLAGS = frozenset({"tags", "prune"})
_IMAGE_AS_FLAG = (
    _IMAGE_AS_FLAGS | frozenset({"previous", "doctor", "history", "verify"}) | _HISTORY
)
_IMAGE_REQUIRED = frozenset({"prune", "previous", "doctor"}) | _HISTORY  # verify: or --url
_GITHUB_FORMAT = frozenset({"tags", "check", "prune", "previous", "doctor", "verify"})
_DRY_RUN = frozenset({"prune", "rollback"})
_RUNS_A_COMMAND = frozenset({"deploy", "rollback"})
_REQUIRED = {"record": ("TK_STATUS", "status")}
GHCR = "ghcr.io"


@dataclass(frozen=True)
class Invocation:
    """What the action runs: the CLI argv, the token to hand over (or ``""``), and notes
    for the job log."""

    argv: list[str]
    token: str
    notes: tuple[str, ...] = ()


def parse_bool(name: str, value: str) -> bool:
    """``true`` or ``false`` (as GitHub writes booleans); anything else is an error."""
    if value == "true":
        return True
    if value == "false":
        return False
    raise UsageError(f"input {name!r} is {value!r}; it must be exactly 'true' or 'false'")


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def _split(name: str, value: str) -> list[str]:
    try:
        return shlex.split(value, comments=False, posix=True)
    except ValueError as exc:
        raise UsageError(
            f"input {name!r} cannot be split ({exc})", hint="balance its quotes"
        ) from None


def ghcr_lowercase(image: str) -> str:
    """A ``ghcr.io`` image with its repository in lower case; any other image unchanged.

    GHCR names are lower case and GitHub owners are case-insensitive, so
    ``ghcr.io/Acme-Corp/App`` can only mean ``ghcr.io/acme-corp/app``. On another registry
    (or the local engine) the name is used as written: the command refuses upper case
    rather than guess which repository is meant.
    """
    from tagkeeper.refs import lowercase_repository

    lowered = lowercase_repository(image)
    return lowered if lowered.split("/", 1)[0] == GHCR and "/" in lowered else image


def _images(command: str, env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The image input's lines (lower-cased where that cannot change the repository) and
    what was lower-cased."""
    images = _lines(env.get("TK_IMAGE", ""))
    if not images and command in _IMAGE_REQUIRED:
        raise UsageError(
            f"input 'image' is required for the {command!r} command",
            hint="e.g. image: ghcr.io/${{ github.repository }}",
        )
    if len(images) > 1 and command not in _IMAGE_AS_FLAGS and command != "check":
        raise UsageError(
            f"input 'image' has {len(images)} lines; the {command!r} command takes one image",
            hint="run one step per image",
        )
    if command == "tags":  # tags lower-cases every repository itself, and says so
        return images, []
    out, notes = [], []
    for image in images:
        lowered = ghcr_lowercase(image)
        if lowered != image:
            notes.append(f"{image} is written {lowered} (GHCR names are lower case)")
        out.append(lowered)
    return out, notes


def build_invocation(env: Mapping[str, str]) -> Invocation:
    """Translate the action's inputs into a CLI argv. Pure: no I/O."""
    command = env.get("TK_COMMAND", "").strip()
    if command not in COMMANDS:
        raise UsageError(
            f"input 'command' is {command!r}",
            hint=f"use one of: {', '.join(COMMANDS)}",
        )
    argv = [command]
    images, notes = _images(command, env)
    if command in _IMAGE_AS_FLAG:
        for image in images:
            argv += ["--image", image]
    for variable, flag, commands in _VALUE_FLAGS:
        raw = env.get(variable, "")
        if not raw.strip():
            continue
        # An environment name is never trimmed (" prod" is refused by the CLI, as on the
        # command line); the other values are numbers, durations, words and URLs.
        value = raw if variable in _UNTRIMMED else raw.strip()
        if command not in commands:
            raise UsageError(
                f"input {flag[2:]!r} does not apply to the {command!r} command",
                hint="remove it from the step's 'with:' block",
            )
        argv += [flag, value]
    if command in _REQUIRED:
        variable, name = _REQUIRED[command]
        if not env.get(variable, "").strip():
            raise UsageError(f"input {name!r} is required for the {command!r} command")
    protect = _lines(env.get("TK_PROTECT", ""))
    if protect and command != "prune":
        raise UsageError("input 'protect' applies only to the 'prune' command")
    for pattern in protect:
        argv += ["--protect", pattern]
    dry_run = parse_bool("dry-run", env.get("TK_DRY_RUN", "false").strip() or "false")
    if command == "prune":
        argv.append("--dry-run" if dry_run else "--yes")
    elif dry_run and command in _DRY_RUN:
        argv.append("--dry-run")
    elif dry_run:
        raise UsageError("input 'dry-run' applies only to the 'prune' and 'rollback' commands")
    if command in _GITHUB_FORMAT:
        argv += ["--format", "github"]
    extra = _split("args", env.get("TK_ARGS", ""))
    if "--" in extra:
        raise UsageError(
            "input 'args' contains '--'",
            hint="args holds options only; the deploy command goes in 'deploy-command', "
            "check's references in 'image'",
        )
    argv += extra
    deploy_command = _split("deploy-command", env.get("TK_DEPLOY_COMMAND", ""))
    if command in _RUNS_A_COMMAND:
        if not deploy_command:
            raise UsageError(
                f"input 'deploy-command' is required for the {command!r} command",
                hint="e.g. deploy-command: ./deploy.sh --profile prod (it reads $IMAGE)",
            )
        argv += ["--", *deploy_command]
    elif deploy_command:
        raise UsageError(
            "input 'deploy-command' applies only to the 'deploy' and 'rollback' commands"
        )
    if command == "check" and images:
        # references are never read as options, whatever they start with
        argv += ["--", *images]
    return Invocation(argv=argv, token=env.get("TK_TOKEN", ""), notes=tuple(notes))


_SECRET_FLAGS = ("--token", "--password")


def secrets_in(argv: list[str]) -> list[str]:
    """Values of ``--token``/``--password``-style options given in ``args``."""
    found: list[str] = []
    for index, arg in enumerate(argv):
        for flag in _SECRET_FLAGS:
            if arg == flag and index + 1 < len(argv):
                found.append(argv[index + 1])
            elif arg.startswith(flag + "="):
                found.append(arg.split("=", 1)[1])
    return [value for value in found if value]


def shown(argv: list[str]) -> str:
    """The command line as printed in the job log: one line, secrets replaced by ``***``."""
    text = shlex.join(argv)
    for value in secrets_in(argv):
        text = text.replace(shlex.quote(value), "***").replace(value, "***")
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _mask(value: str) -> None:
    for line in value.splitlines():
        if line.strip():
            print(f"::add-mask::{line}", flush=True)


def main() -> int:
    from tagkeeper.cli import gha
    token = os.environ.get("TK_TOKEN", "")
    _mask(token)
    try:
        invocation = build_invocation(os.environ)
    except UsageError as exc:
        print(gha.annotation("error", exc.diagnostics(), title="tagkeeper"), flush=True)
        return int(ExitCode.USAGE)
    for value in secrets_in(invocation.argv):
        _mask(value)
    if invocation.token:
        os.environ["GITHUB_TOKEN"] = invocation.token
    for variable in [name for name in os.environ if name.startswith("TK_")]:
        del os.environ[variable]
    from tagkeeper.untrusted import printable

    for note in invocation.notes:
        print(printable(f"note: {note}"), flush=True)
    print(printable(f"tagkeeper {shown(invocation.argv)}"), flush=True)
    from tagkeeper.cli import main as cli_main

    return cli_main(invocation.argv)


if __name__ == "__main__":
    sys.exit(main())
