"""Registers every command on the app. Command modules import nothing heavy at module level."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from tagkeeper.cli import check_cmd, tags_cmd

    app.command("tags")(tags_cmd.tags)
    app.command("check")(check_cmd.check)
