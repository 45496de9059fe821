"""The ``tagkeeper`` command line: parses, builds adapters, calls the library, renders.

Each command lives in its own module; this one assembles the app and maps every
:class:`~tagkeeper.errors.TagkeeperError` to its exit code. Nothing heavy is imported
here, so ``tagkeeper --help`` starts fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
import typer

from tagkeeper import __version__
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI in-process with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="tagkeeper", standalone_mode=False)
    except TagkeeperError as exc:
        common.error(exc.diagnostics())
        return int(exc.exit_code)
    except click.exceptions.Abort:
        common.error("aborted")
        return int(ExitCode.ABORTED)
    except click.ClickException as exc:
        exc.show()
        return int(ExitCode.USAGE)
    if isinstance(result, int):
        return result
    return int(ExitCode.OK)


def run() -> None:  # pragma: no cover - the console-script entry point
    sys.exit(main())
