"""Registers every command on the app. Command modules import nothing heavy at module level."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from tagkeeper.cli import check_cmd, tags_cmd

    app.command("tags")(tags_cmd.tags)
    app.command("check")(check_cmd.check)

    from tagkeeper.cli import doctor_cmd, prune_cmd

    app.command("prune")(prune_cmd.prune)
    app.command("doctor")(doctor_cmd.doctor)

    from tagkeeper.cli import rollback_cmd

    app.command("record")(rollback_cmd.record)
    app.command("history")(rollback_cmd.history)
    app.command("previous")(rollback_cmd.previous)
    wrapper = {"allow_interspersed_args": False}
    app.command("deploy", context_settings=wrapper)(rollback_cmd.deploy)
    app.command("rollback", context_settings=wrapper)(rollback_cmd.rollback)
