"""``tagkeeper watch`` and ``tagkeeper switch``: operating a blue/green or canary service.

Both build the engine as ``deploy`` does (:func:`tagkeeper.cli.deploy_engine.engine_for`:
the ledger, the lock, the proxy and metrics source of ``[deploy.ENV]``) and hand over to
:mod:`tagkeeper.deploy.operate`; this module only parses and renders.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tagkeeper.cli import common, deploy_engine, gha
from tagkeeper.errors import ExitCode, NoRollbackTarget, RolledBack, UsageError, VerificationFailed

if TYPE_CHECKING:
    from tagkeeper.deploy.operate import WatchResult
    from tagkeeper.deploy.spec import DeploySpec


class TextJson(StrEnum):
    text = "text"
    json = "json"


EnvOpt = Annotated[
    str | None,
    typer.Option("--env", "-e", metavar="ENV", show_default=False,
                 help="The environment (default: config 'env', else prod)."),
]  # fmt: skip
LedgerOpt = Annotated[
    Path | None,
    typer.Option("--ledger", metavar="PATH", dir_okay=False, show_default=False,
                 help="The deploy ledger (default: as for deploy)."),
]  # fmt: skip


def _spec(ctx: typer.Context, env: str | None) -> DeploySpec:
    from tagkeeper.deploy.spec import PROXY_STRATEGIES

    name = env or common.state(ctx).config().env or "prod"
    spec = deploy_engine.spec_for(ctx, name)
    if spec.strategy not in PROXY_STRATEGIES:
        raise UsageError(
            f"[deploy.{name}] uses strategy {spec.strategy}: watch and switch apply to the "
            "bluegreen and canary strategies (two slots behind a proxy)",
            hint='set strategy = "bluegreen" or "canary" with proxy, proxy-config and proxy-url',
        )
    return spec


def watch(  # noqa: PLR0917 - Typer passes options as arguments
    ctx: typer.Context,
    env: EnvOpt = None,
    duration: Annotated[
        str | None,
        typer.Option("--for", metavar="DURATION", show_default=False,
                     help="How long to watch (default: [deploy.ENV] watch, 10m)."),
    ] = None,
    interval: Annotated[
        str | None,
        typer.Option("--interval", metavar="DURATION", show_default=False,
                     help="Between checks (default: [deploy.ENV] watch-interval, 30s)."),
    ] = None,
    lock_wait: deploy_engine.LockWaitOpt = None,
    ledger_path: LedgerOpt = None,
    fmt: common.FormatOpt = common.Format.text,
) -> None:
    """Watch what serves: the live slot's health and metrics every interval; roll back
    automatically (exit 14) when a threshold is crossed twice in a row."""
    spec = _spec(ctx, env)
    seconds = deploy_engine.duration_flag("--for", duration)
    every = deploy_engine.duration_flag("--interval", interval)
    for flag, value in (("--for", seconds), ("--interval", every)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be longer than 0")
    if fmt is common.Format.github:
        gha.preflight()
    flags = deploy_engine.EngineFlags(lock_wait=lock_wait, fmt=str(fmt), ledger_path=ledger_path)
    common.info(
        f"tagkeeper: watching {spec.environment} ({spec.strategy}, container "
        f"{spec.container_name}) for {seconds if seconds is not None else spec.watch:g}s"
    )
    with (
        deploy_engine.interrupts("the watch stopped; nothing was changed"),
        deploy_engine.engine_for(ctx, spec, flags) as engine,
    ):
        result = engine.watch(duration=seconds, interval=every)
    _finish_watch(result, fmt)


def _finish_watch(result: WatchResult, fmt: common.Format) -> None:
    import json

    from tagkeeper.cli import deploy_render

    for line in deploy_render.watch_lines(result):
        common.info(line)
    if fmt is common.Format.json:
        common.emit_json(result.as_dict())
    elif fmt is common.Format.github:
        gha.write_outputs(
            {
                "ok": "true" if result.exit_code == 0 else "false",
                "reason": result.reason or "",
                "json": json.dumps(result.as_dict()),
            }
        )
        gha.append_summary(deploy_render.watch_summary(result))
    if result.exit_code == ExitCode.ROLLED_BACK:
        raise RolledBack(
            f"the watch rolled {result.environment} back: {result.message}",
            hint=f"tagkeeper status --env {result.environment} shows what serves now",
        )
    if result.exit_code == ExitCode.NO_TARGET:
        raise NoRollbackTarget(result.message, hint="deploy a known-good version explicitly")
    if result.exit_code != 0:
        raise VerificationFailed(result.message, hint="tagkeeper status shows what serves")


def switch(  # noqa: PLR0917 - Typer passes options as arguments
    ctx: typer.Context,
    env: EnvOpt = None,
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="SLOT", show_default=False,
                     help="Send every request to this slot."),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option("--weights", metavar="W1,W2", show_default=False,
                     help="Percent per slot, in the order of 'slots', e.g. 90,10."),
    ] = None,
    lock_wait: deploy_engine.LockWaitOpt = None,
    ledger_path: LedgerOpt = None,
    fmt: Annotated[TextJson, typer.Option("--format", "-f")] = TextJson.text,
) -> None:
    """Send traffic to a slot (--to SLOT) or split it (--weights 90,10): every slot that is
    to take traffic is checked first; the switch is confirmed through the proxy (exit 13
    and the previous file restored when it is not)."""
    from tagkeeper.deploy.proxies.model import Weights

    spec = _spec(ctx, env)
    if (to is None) == (weights is None):
        raise UsageError("give one of --to SLOT and --weights W1,W2",
                         hint=f"slots are: {', '.join(spec.slots)}")  # fmt: skip
    if to is not None:
        if to not in spec.slots:
            raise UsageError(f"no slot named {to!r}", hint=f"slots are: {', '.join(spec.slots)}")
        chosen = Weights.all_to(to, spec.slots)
    else:
        chosen = Weights.parse(weights or "", spec.slots)
    flags = deploy_engine.EngineFlags(lock_wait=lock_wait, fmt=str(fmt), ledger_path=ledger_path)
    with (
        deploy_engine.interrupts("the previous proxy file was restored if it had changed"),
        deploy_engine.engine_for(ctx, spec, flags) as engine,
    ):
        result = engine.switch(chosen)
    from tagkeeper.cli import deploy_render

    for line in deploy_render.switch_lines(result):
        common.info(line)
    if fmt is TextJson.json:
        common.emit_json(result.as_dict())
