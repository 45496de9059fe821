"""Putting right what a killed ``bluegreen`` or ``canary`` deploy left, before the next one.

It runs under the deploy lock, so a deploy of this environment and container that the
ledger still calls ``started`` is dead. The owned proxy file is the truth about weights;
each slot's container is looked at (running, and answering its health check now), and
the pure :func:`~tagkeeper.deploy.slots.plan_repair` decides:

* killed before the switch (the new slot at weight 0): its container is removed;
* killed after the switch, or during the watch (the new slot takes every request): if it
  serves, the deploy is completed (``succeeded``, reason ``repaired``); if not, every
  request goes back to the old slot;
* killed during a canary step (both slots take traffic): every request goes back to the
  old slot (the step was never judged), unless only the new slot serves;
* killed between writing the proxy file and reloading the proxy: the file is applied
  again (tested, reloaded, confirmed), so the proxy runs what the file says.

With no interrupted deploy it still makes sure the slot that takes the traffic serves:
when it does not and the other slot does, every request goes to the other one. The
deploy that was killed then ends ``succeeded`` (completed) or ``failed`` (``interrupted``);
older unfinished ones end ``failed``. Weights are never all 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tagkeeper.deploy.proxies.model import drift
from tagkeeper.deploy.slots import SlotSeen, Unfinished, plan_repair
from tagkeeper.deploy.strategies import slotkit
from tagkeeper.deploy.strategies.repair import close_unfinished

if TYPE_CHECKING:
    from tagkeeper.deploy.context import Context
    from tagkeeper.deploy.strategies.slotkit import SlotTools


def look(ctx: Context, slot: str) -> SlotSeen:
    """What ``slot`` holds now, its health asked once."""
    name = slotkit.container(ctx, slot)
    state = ctx.runtime.inspect(name)
    if state is None:
        return SlotSeen(slot, name)
    healthy = state.running and slotkit.quick_health(ctx, slot) is None
    return SlotSeen(slot, name, True, state.running, healthy, state.deploy_id, state.digest)


def repair_slots(ctx: Context, kit: SlotTools) -> list[str]:
    spec = ctx.spec
    unfinished = ctx.ledger.unfinished(environment=spec.environment, container=spec.container_name)
    newest = unfinished[0] if unfinished else None
    notes: list[str] = []

    def note(text: str) -> None:
        notes.append(text)
        ctx.event("repair", "info", text)
        if newest is not None and newest.id is not None:
            ctx.ledger.add_step(newest.id, "repair", "info", text)

    file, weights = slotkit.read_weights(ctx, kit.proxy)
    seen = {slot: look(ctx, slot) for slot in spec.slots}
    if newest is None and not any(view.exists for view in seen.values()):
        return notes  # the first deploy: nothing runs yet
    live = kit.proxy.live()
    out_of_step = bool(drift(file, live))
    plan = plan_repair(
        weights,
        seen,
        Unfinished(newest.id, newest.slot) if newest is not None and newest.id else None,
        proxy_drift=out_of_step,
    )
    if newest is None and not plan.changes_weights and not plan.reload:
        return notes
    for text in plan.notes:
        note(text)
    target = plan.weights if plan.weights is not None else weights if plan.reload else None
    if target is not None:
        slotkit.apply(ctx, kit, target, "repair")
        note(f"the proxy runs {target}")
    for name in plan.stop:
        ctx.runtime.stop(name, spec.stop_timeout)
        ctx.runtime.set_restart(name, "no")
        note(f"stopped {name}")
    for name in plan.remove:
        ctx.runtime.remove(name)
        note(f"removed {name}: it never served")
    close_unfinished(
        ctx,
        unfinished,
        completed=newest if plan.completed else None,
        detail="completed by the repair before the next deploy: its slot serves and "
        "passed its check (the watch did not finish)",
        said="",
        note=note,
    )
    return notes
