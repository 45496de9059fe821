"""The composite action's entry point: turns ``TK_*`` inputs into a CLI call.

``action.yml`` passes every input through ``env:`` and runs ``python -m tagkeeper.action``.
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

COMMANDS = ("tags", "check", "prune", "previous", "doctor", "history")

# input variable -> (flag, commands that take it)
_VALUE_FLAGS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("TK_ENV", "--env", frozenset({"tags", "check", "prune", "previous", "history"})),
    ("TK_KEEP", "--keep", frozenset({"prune"})),
    ("TK_KEEP_DEV", "--keep-dev", frozenset({"prune"})),
    ("TK_KEEP_PR", "--keep-pr", frozenset({"prune"})),
    ("TK_KEEP_RELEASE", "--keep-release", frozenset({"prune"})),
    ("TK_KEEP_PRERELEASE", "--keep-prerelease", frozenset({"prune"})),
    ("TK_MIN_AGE", "--min-age", frozenset({"prune"})),
    ("TK_UNTAGGED", "--untagged", frozenset({"prune"})),
    ("TK_UNMATCHED", "--unmatched", frozenset({"prune"})),
    ("TK_MAX_DELETE", "--max-delete", frozenset({"prune"})),
    ("TK_API_URL", "--api-url", frozenset({"prune", "doctor", "previous"})),
    ("TK_REGISTRY_URL", "--registry-url", frozenset({"prune", "doctor"})),
)
_IMAGE_AS_FLAG = frozenset({"tags", "prune", "previous", "doctor", "history"})
_GITHUB_FORMAT = frozenset({"tags", "check", "prune", "previous", "doctor"})


@dataclass(frozen=True)
class Invocation:
    """What the action runs: the CLI argv and the token to hand over (or ``""``)."""

    argv: list[str]
    token: str


def parse_bool(name: str, value: str) -> bool:
    """``true`` or ``false`` (as GitHub writes booleans); anything else is an error."""
    if value == "true":
        return True
    if value == "false":
        return False
    raise UsageError(f"input {name!r} is {value!r}; it must be exactly 'true' or 'false'")


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def build_invocation(env: Mapping[str, str]) -> Invocation:
    """Translate the action's inputs into a CLI argv. Pure: no I/O."""
    command = env.get("TK_COMMAND", "").strip()
    if command not in COMMANDS:
        raise UsageError(
            f"input 'command' is {command!r}",
            hint=f"use one of: {', '.join(COMMANDS)}",
        )
    argv = [command]
    images = _lines(env.get("TK_IMAGE", ""))
    if command in _IMAGE_AS_FLAG:
        for image in images:
            argv += ["--image", image]
    for variable, flag, commands in _VALUE_FLAGS:
        value = env.get(variable, "").strip()
        if not value:
            continue
        if command not in commands:
            raise UsageError(
                f"input {flag[2:]!r} does not apply to the {command!r} command",
                hint="remove it from the step's 'with:' block",
            )
        argv += [flag, value]
    protect = _lines(env.get("TK_PROTECT", ""))
    if protect and command != "prune":
        raise UsageError("input 'protect' applies only to the 'prune' command")
    for pattern in protect:
        argv += ["--protect", pattern]
    dry_run = parse_bool("dry-run", env.get("TK_DRY_RUN", "false").strip() or "false")
    if command == "prune":
        argv.append("--dry-run" if dry_run else "--yes")
    elif dry_run:
        raise UsageError("input 'dry-run' applies only to the 'prune' command")
    if command in _GITHUB_FORMAT:
        argv += ["--format", "github"]
    try:
        extra = shlex.split(env.get("TK_ARGS", ""), comments=False, posix=True)
    except ValueError as exc:
        raise UsageError(
            f"input 'args' cannot be split ({exc})", hint="balance its quotes"
        ) from None
    argv += extra
    if command == "check" and images:
        # references are never read as options, whatever they start with
        argv += ["--", *images]
    return Invocation(argv=argv, token=env.get("TK_TOKEN", ""))


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
    print(f"tagkeeper {shown(invocation.argv)}", flush=True)
    from tagkeeper.cli import main as cli_main

    return cli_main(invocation.argv)


if __name__ == "__main__":
    sys.exit(main())
