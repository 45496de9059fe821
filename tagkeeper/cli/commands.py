"""The command table: each command's module and function, imported only when needed.

``tagkeeper tags ...`` imports and builds the ``tags`` command alone; ``tagkeeper --help``
(and anything that is not a known command) builds them all. Command modules import
nothing heavy at module level.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Collection

    import typer

_WRAPPER: dict[str, Any] = {"allow_interspersed_args": False}

# name -> (module, function, click context settings)
COMMANDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "tags": ("tagkeeper.cli.tags_cmd", "tags", {}),
    "check": ("tagkeeper.cli.check_cmd", "check", {}),
    "prune": ("tagkeeper.cli.prune_cmd", "prune", {}),
    "doctor": ("tagkeeper.cli.doctor_cmd", "doctor", {}),
    "record": ("tagkeeper.cli.rollback_cmd", "record", {}),
    "history": ("tagkeeper.cli.rollback_cmd", "history", {}),
    "previous": ("tagkeeper.cli.rollback_cmd", "previous", {}),
    "deploy": ("tagkeeper.cli.deploy_cmd", "deploy", _WRAPPER),
    "rollback": ("tagkeeper.cli.deploy_cmd", "rollback", _WRAPPER),
    "verify": ("tagkeeper.cli.verify_cmd", "verify", {}),
    "status": ("tagkeeper.cli.deploy_cmd", "status", {}),
    "watch": ("tagkeeper.cli.slots_cmd", "watch", {}),
    "switch": ("tagkeeper.cli.slots_cmd", "switch", {}),
    "proxy-snippet": ("tagkeeper.cli.proxy_cmd", "proxy_snippet", {}),
}


def register(app: typer.Typer, names: Collection[str] | None = None) -> None:
    """Register ``names`` (default: every command) on ``app``, in the table's order."""
    for name, (module, function, settings) in COMMANDS.items():
        if names is not None and name not in names:
            continue
        callback = getattr(importlib.import_module(module), function)
        app.command(name, context_settings=dict(settings) or None)(callback)
