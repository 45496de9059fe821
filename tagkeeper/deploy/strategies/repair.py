"""Putting right what a killed ``recreate`` deploy left, before the next one starts.

It runs under the deploy lock, so any deploy of this environment and container that the
ledger still calls ``started`` is dead. From the newest one (``D``) and the containers'
names and labels it brings back a state with one container serving:

* ``CONTAINER-candidate``: removed (it never served).
* ``CONTAINER-outgoing`` (a rollback restarting ``CONTAINER-previous`` was killed): if
  the restarted container runs as ``CONTAINER`` and passes its checks, the rollback is
  completed; else the outgoing one is put back as ``CONTAINER`` and started.
* ``CONTAINER`` is the new container ``D`` created: running and passing its checks, ``D``
  is completed (``succeeded``); otherwise it is removed and ``CONTAINER-previous`` is
  renamed back and started.
* ``CONTAINER`` is the old one, stopped: it is started again (``D`` was killed while
  stopping it).
* no ``CONTAINER`` but a ``CONTAINER-previous`` and ``D``: ``D`` was killed between the
  rename and the new start; the previous one is renamed back and started.

``D`` then ends ``succeeded`` (completed by the repair) or ``failed`` (reason
``interrupted``); older unfinished deploys end ``failed`` too. Restart policies are put
back in order (``CONTAINER-previous`` never restarts on its own), and a
``CONTAINER-previous`` found running beside ``CONTAINER`` is stopped: never two
containers fighting for the port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tagkeeper.rollback.resolve import DeployStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tagkeeper.deploy.containers import ContainerState
    from tagkeeper.deploy.context import Context
    from tagkeeper.deploy.strategies.recreate import Names
    from tagkeeper.rollback.resolve import DeployRecord

    _Note = Callable[[str], None]


def close_unfinished(
    ctx: Context,
    unfinished: Sequence[DeployRecord],
    *,
    completed: DeployRecord | None,
    detail: str,
    said: str,
    note: _Note,
) -> None:
    """Finish every unfinished deploy: ``completed`` succeeded (``detail``), others failed.

    Only the newest unfinished deploy can have been completed by a repair; an older one
    was interrupted whatever its containers show now.
    """
    for record in unfinished:
        if record.id is None:
            continue
        if record is completed:
            ctx.ledger.finish(record.id, DeployStatus.SUCCEEDED, detail=detail, reason="repaired")
            note(f"deploy #{record.id} ({record.tag}) was completed{said}")
        else:
            ctx.ledger.finish(
                record.id,
                DeployStatus.FAILED,
                detail="interrupted: tagkeeper stopped before the deploy finished",
                reason="interrupted",
            )
            note(f"deploy #{record.id} ({record.tag}) was interrupted; recorded as failed")


def repair_recreate(ctx: Context, names: Names) -> list[str]:
    from tagkeeper.deploy.strategies.recreate import belongs_to

    runtime = ctx.runtime
    notes: list[str] = []
    unfinished = ctx.ledger.unfinished(
        environment=ctx.spec.environment, container=ctx.spec.container_name
    )
    newest = unfinished[0] if unfinished else None

    def note(text: str) -> None:
        notes.append(text)
        ctx.event("repair", "info", text)
        if newest is not None and newest.id is not None:
            ctx.ledger.add_step(newest.id, "repair", "info", text)

    if runtime.inspect(names.candidate) is not None:
        runtime.remove(names.candidate)
        note(f"removed {names.candidate}, left by an interrupted deploy")
    live = runtime.inspect(names.live)
    previous = runtime.inspect(names.previous)
    outgoing = runtime.inspect(names.outgoing)
    completed = False
    if outgoing is not None:
        completed = _outgoing(ctx, names, newest, live, note)
    elif live is not None and belongs_to(live, newest):
        completed = _new_in_place(ctx, names, live, previous, note)
    elif live is not None:
        if not live.running and newest is not None:
            _start(ctx, names.live)
            note(f"started {names.live} again: an interrupted deploy had stopped it")
    elif previous is not None and newest is not None:
        _bring_back(ctx, names, note, f"{names.previous} -> {names.live}")
    _tidy(ctx, names, note)
    close_unfinished(
        ctx,
        unfinished,
        completed=newest if completed else None,
        detail="completed by the repair before the next deploy: the new container "
        "was running and passed its checks",
        said=": its container passed",
        note=note,
    )
    return notes


def _outgoing(
    ctx: Context,
    names: Names,
    newest: DeployRecord | None,
    live: ContainerState | None,
    note: _Note,
) -> bool:
    """A killed restart of ``CONTAINER-previous``; ``True`` when it is completed."""
    from tagkeeper.deploy.strategies.recreate import belongs_to

    runtime = ctx.runtime
    if live is not None and belongs_to(live, newest) and live.running:
        report = ctx.check(names.live, ctx.spec.service_port)
        if report.ok:
            runtime.remove(names.previous)
            runtime.rename(names.outgoing, names.previous)
            note(f"{names.live} passed its checks: {names.outgoing} is {names.previous} now")
            return True
    if live is not None:
        runtime.stop(names.live, ctx.spec.stop_timeout)
        if belongs_to(live, newest) and runtime.inspect(names.previous) is None:
            runtime.rename(names.live, names.previous)
            runtime.set_restart(names.previous, "no")
        else:
            runtime.remove(names.live)
    runtime.rename(names.outgoing, names.live)
    runtime.set_restart(names.live, ctx.spec.restart)
    _start(ctx, names.live)
    note(f"put {names.outgoing} back as {names.live} and started it")
    return False


def _new_in_place(
    ctx: Context,
    names: Names,
    live: ContainerState,
    previous: ContainerState | None,
    note: _Note,
) -> bool:
    """``CONTAINER`` is the interrupted deploy's new container; ``True`` when it passes."""
    if live.running:
        report = ctx.check(names.live, ctx.spec.service_port)
        if report.ok:
            note(f"{names.live} (the interrupted deploy's) runs and passed its checks")
            return True
        note(f"{names.live} (the interrupted deploy's) fails its checks: {report.reason}")
    if previous is None:
        if not live.running:
            ctx.runtime.remove(names.live)
            note(f"removed {names.live}: the interrupted deploy's container never ran")
        return False
    ctx.runtime.remove(names.live)
    _bring_back(ctx, names, note, f"removed the new {names.live}; {names.previous} -> {names.live}")
    return False


def _bring_back(ctx: Context, names: Names, note: _Note, text: str) -> None:
    runtime = ctx.runtime
    runtime.rename(names.previous, names.live)
    runtime.set_restart(names.live, ctx.spec.restart)
    _start(ctx, names.live)
    note(f"{text}, started")


def _start(ctx: Context, name: str) -> None:
    state = ctx.runtime.inspect(name)
    if state is not None and not state.running:
        ctx.runtime.start(name)


def _tidy(ctx: Context, names: Names, note: _Note) -> None:
    runtime = ctx.runtime
    previous = runtime.inspect(names.previous)
    live = runtime.inspect(names.live)
    if previous is None:
        return
    if previous.running and live is not None and live.running:
        runtime.stop(previous.name, ctx.spec.stop_timeout)
        note(f"stopped {names.previous}: it ran beside {names.live}")
    if previous.restart_policy not in ("no", ""):
        runtime.set_restart(names.previous, "no")
