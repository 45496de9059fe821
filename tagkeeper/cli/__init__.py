"""The ``tagkeeper`` command line: parses, builds adapters, calls the library, renders.

Each command lives in its own module; this one assembles the app and maps every
:class:`~tagkeeper.errors.TagkeeperError` to its exit code. Nothing heavy is imported
here, so ``tagkeeper --help`` starts fast.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence

import typer

try:  # recent typer releases ship their own copy of click and raise its exceptions
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover - typer releases built on click itself
    from click import ClickException as _ClickException  # type: ignore[assignment]

from tagkeeper import __version__, gha
from tagkeeper.cli import common
from tagkeeper.errors import ExitCode, TagkeeperError

app = typer.Typer(
    name="tagkeeper",
    help="Immutable image tags, safe registry pruning and exact rollbacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tagkeeper {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: common.ConfigOpt = None,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Immutable image tags, safe registry pruning and exact rollbacks."""
    ctx.obj = common.State(config_path=config)


def _register() -> None:
    from tagkeeper.cli import commands

    commands.register(app)


_register()


def _app_for(args: Sequence[str]) -> typer.Typer:
    """The app that parses ``args``: for ``tagkeeper [--config F] CMD ...``, CMD alone.

    Typer evaluates every command's signature when it builds the click command; building
    only the command being run keeps start-up fast. Anything else (``--help``,
    ``--version``, an unknown command) gets the whole app, so help and errors are unchanged.
    """
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] != "--config":
            if not args[i].startswith("--config="):
                return app
            i += 1
        else:
            i += 2
    name = args[i] if i < len(args) else None
    for info in app.registered_commands:
        if name is not None and info.name == name:
            single = copy.copy(app)
            single.registered_commands = [info]
            return single
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI in-process with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(_app_for(args))
    try:
        result = command.main(args=args, prog_name="tagkeeper", standalone_mode=False)
    except TagkeeperError as exc:
        common.error(exc.diagnostics())
        if gha.in_actions():
            typer.echo(gha.annotation("error", exc.diagnostics(), title="tagkeeper"), err=True)
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
