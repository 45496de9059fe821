"""The ``tagkeeper`` command line: parses, builds adapters, calls the library, renders.

Each command lives in its own module; this one assembles the app and maps every
:class:`~tagkeeper.errors.TagkeeperError` to its exit code. Nothing heavy is imported
here, so ``tagkeeper --help`` starts fast.
"""

from __future__ import annotations

import sys

import typer

try:  # recent typer releases ship their own copy of click and raise its exceptions
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover - typer releases built on click itself
    from click import ClickException as _ClickException  # type: ignore[assignment]

from typing import TYPE_CHECKING

from tagkeeper import __version__
from tagkeeper.cli import common, debug, gha
from tagkeeper.errors import ExitCode, TagkeeperError

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tagkeeper {__version__}")
        raise typer.Exit()


def _root(
    ctx: typer.Context,
    config: common.ConfigOpt = None,
    debug: bool = typer.Option(
        False,
        "--debug",
        help="On an error, also print its cause chain and tracebacks (credentials masked); "
        "also $TAGKEEPER_DEBUG=1.",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Immutable image tags, safe registry pruning and exact rollbacks."""
    from tagkeeper.cli.debug import wanted

    # main() prints an error's chain; commands that go on after one (prune) read it here
    ctx.obj = common.State(config_path=config, debug=debug or wanted([]))


def build_app(names: Collection[str] | None = None) -> typer.Typer:
    """The Typer app with ``names`` registered (default: every command)."""
    from tagkeeper.cli import commands

    new = typer.Typer(
        name="tagkeeper",
        help="Immutable image tags, safe registry pruning and exact rollbacks.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    new.callback()(_root)
    commands.register(new, names)
    return new


def _command_named(args: Sequence[str]) -> str | None:
    """For ``tagkeeper [--config F] CMD ...``, CMD when it is a known command, else ``None``.

    Typer evaluates every command's signature when it builds the click command; building
    only the command being run keeps start-up fast. Anything else (``--help``,
    ``--version``, an unknown command) gets the whole app, so help and errors are unchanged.
    """
    from tagkeeper.cli.commands import COMMANDS

    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] == "--config":
            i += 2
        elif args[i].startswith("--config=") or args[i] == "--debug":
            i += 1
        else:
            return None
    name = args[i] if i < len(args) else None
    return name if name in COMMANDS else None


def __getattr__(name: str) -> typer.Typer:
    """``tagkeeper.cli.app``: the whole app, for library users and tests."""
    if name == "app":
        return build_app()
    raise AttributeError(name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI in-process with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    name = _command_named(args)
    command = typer.main.get_command(build_app(None if name is None else [name]))
    try:
        result = command.main(args=args, prog_name="tagkeeper", standalone_mode=False)
    except TagkeeperError as exc:
        common.error(exc.diagnostics())
        if gha.in_actions():
            typer.echo(gha.annotation("error", exc.diagnostics(), title="tagkeeper"), err=True)
        if debug.wanted(args):
            typer.echo(debug.explain(exc), err=True)
        return int(exc.exit_code)
    except typer.Abort:
        common.error("aborted")
        return int(ExitCode.ABORTED)
    except _ClickException as exc:
        exc.show()
        return int(ExitCode.USAGE)
    if isinstance(result, int):
        return result
    return int(ExitCode.OK)


def run() -> None:  # pragma: no cover - the console-script entry point
    sys.exit(main())
