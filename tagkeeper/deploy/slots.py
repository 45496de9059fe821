"""Pure decisions about the two slots behind a proxy: which serves, and how to repair.

The file tagkeeper owns is the truth about the weights (:mod:`tagkeeper.deploy.proxies`);
the containers ``CONTAINER-<slot>`` and their labels say what each slot runs. From those
(read by the strategy, :mod:`tagkeeper.deploy.strategies.slotbase`):

- :func:`live_slot`: the slot that serves. With one slot at weight 0 it is the other;
  with both above 0 (an interrupted canary, or an operator's ``switch --weights``) it is
  the one with the larger weight (the first slot on a tie);
- :func:`plan_repair`: what to do after a deploy that was killed (the ledger still calls
  it ``started``), or when the slot that takes the traffic has no running container.

Nothing here reads a file, a clock or the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tagkeeper.deploy.proxies.model import Weights

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def live_slot(weights: Weights) -> str:
    """The slot that serves: the one with the largest weight (the first on a tie)."""
    best = weights.items[0]
    for item in weights.items[1:]:
        if item[1] > best[1]:
            best = item
    return best[0]


def other_slot(slots: Sequence[str], slot: str) -> str:
    """The slot of ``slots`` (two) that is not ``slot``."""
    return next(s for s in slots if s != slot)


@dataclass(frozen=True, slots=True)
class SlotSeen:
    """What a slot holds, as the strategy found it (``healthy``: answered its health
    check just now)."""

    slot: str
    container: str  # CONTAINER-<slot>
    exists: bool = False
    running: bool = False
    healthy: bool = False
    deploy_id: int | None = None  # the ledger id of the deploy that created it
    digest: str | None = None

    @property
    def serves(self) -> bool:
        """Can take traffic: it runs and answered healthy."""
        return self.running and self.healthy


@dataclass(frozen=True, slots=True)
class Unfinished:
    """The newest deploy the ledger still calls ``started``: it was killed."""

    deploy_id: int
    slot: str | None  # the slot it deployed to, when it got that far


@dataclass(frozen=True, slots=True)
class RepairPlan:
    """What the repair does, in order.

    ``weights``: apply these (write, test, reload, confirm); ``None``: leave the file.
    ``reload``: apply the current weights again even though they do not change (the proxy
    may not run the file yet). ``stop``/``remove``: slot containers to stop (kept for
    their logs) or remove (they never served). ``completed``: the interrupted deploy's
    slot serves and passed its check: record it ``succeeded``; else ``failed``.
    """

    weights: Weights | None = None
    reload: bool = False
    stop: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    completed: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def changes_weights(self) -> bool:
        return self.weights is not None


def plan_repair(
    weights: Weights,
    seen: Mapping[str, SlotSeen],
    newest: Unfinished | None,
    *,
    proxy_drift: bool = False,
) -> RepairPlan:
    """How to get back to one slot that serves, after ``newest`` was killed.

    ``weights``: what the owned file says; ``seen``: both slots; ``proxy_drift``: the
    proxy may not run the file (a switch killed between the rename and the reload).
    Never plans weights that send traffic to a slot that does not serve, except to keep
    the weights as they are when no slot serves at all (nothing better exists).
    """
    slots = [name for name, _ in weights.items]
    notes: list[str] = []
    serving = weights.serving
    target = _target_slot(seen, newest)
    if newest is None or target is None:
        plan = _without_deploy(weights, seen, slots, notes)
        if newest is not None:  # killed before it created anything: nothing to undo
            notes.append(f"deploy #{newest.deploy_id} was killed before it created a container")
        return _with_reload(plan, proxy_drift, notes)
    new = seen[target]
    old = seen[other_slot(slots, target)]
    ours = new.exists and new.deploy_id == newest.deploy_id
    if weights.of_slot(target) == 0:
        # the switch never happened, or was undone: the new container never served
        notes.append(f"deploy #{newest.deploy_id} never switched to slot {target}")
        plan = _without_deploy(weights, seen, slots, notes)
        remove = (new.container,) if ours else ()
        return _with_reload(
            RepairPlan(plan.weights, plan.reload, plan.stop, remove, False, plan.notes),
            proxy_drift,
            notes,
        )
    if serving == (target,):
        if new.serves:
            notes.append(
                f"deploy #{newest.deploy_id} had switched to slot {target}, which serves and "
                "passed its check: it is completed"
            )
            return RepairPlan(Weights.all_to(target, slots), True, completed=True,
                              notes=tuple(notes))  # fmt: skip
        if old.serves:
            notes.append(
                f"slot {target} of deploy #{newest.deploy_id} does not serve: every request "
                f"goes back to slot {old.slot}"
            )
            return RepairPlan(
                Weights.all_to(old.slot, slots), stop=_stoppable(new), notes=tuple(notes)
            )
        notes.append(f"neither slot serves: the weights are left as they are ({weights})")
        return _with_reload(RepairPlan(notes=tuple(notes)), proxy_drift, notes)
    # both slots take traffic: a canary step was interrupted, and it was never judged
    if old.serves:
        notes.append(
            f"deploy #{newest.deploy_id} was killed during a canary step ({weights}): every "
            f"request goes back to slot {old.slot}"
        )
        return RepairPlan(Weights.all_to(old.slot, slots), stop=_stoppable(new),
                          notes=tuple(notes))  # fmt: skip
    if new.serves:
        notes.append(
            f"deploy #{newest.deploy_id} was killed during a canary step and slot "
            f"{old.slot} does not serve: every request goes to slot {target}, the only one "
            "that does (the canary was not judged)"
        )
        return RepairPlan(Weights.all_to(target, slots), notes=tuple(notes))
    notes.append(f"neither slot serves: the weights are left as they are ({weights})")
    return _with_reload(RepairPlan(notes=tuple(notes)), proxy_drift, notes)


def _target_slot(seen: Mapping[str, SlotSeen], newest: Unfinished | None) -> str | None:
    if newest is None:
        return None
    if newest.slot is not None and newest.slot in seen:
        return newest.slot
    for name, view in seen.items():  # killed before the ledger had its slot
        if view.deploy_id == newest.deploy_id:
            return name
    return None


def _stoppable(view: SlotSeen) -> tuple[str, ...]:
    return (view.container,) if view.running else ()


def _without_deploy(
    weights: Weights, seen: Mapping[str, SlotSeen], slots: list[str], notes: list[str]
) -> RepairPlan:
    """No interrupted deploy to finish: keep the weights unless the slot that takes the
    traffic does not serve while the other does."""
    serving = weights.serving
    broken = [s for s in serving if not seen[s].serves]
    if not broken:
        return RepairPlan(notes=tuple(notes))
    healthy = [s for s in slots if seen[s].serves]
    if not healthy:
        notes.append(f"no slot serves: the weights are left as they are ({weights})")
        return RepairPlan(notes=tuple(notes))
    target = healthy[0] if len(healthy) == 1 else live_slot(weights)
    if target in broken:
        target = next(s for s in healthy if s not in broken)
    notes.append(
        f"slot {', '.join(broken)} takes traffic but does not serve: every request goes to "
        f"slot {target}, which does"
    )
    return RepairPlan(Weights.all_to(target, slots), notes=tuple(notes))


def _with_reload(plan: RepairPlan, proxy_drift: bool, notes: list[str]) -> RepairPlan:
    reload = plan.reload or (plan.weights is None and proxy_drift)
    if reload and not plan.reload:
        notes.append("the proxy may not run the owned file: it is applied again")
    return RepairPlan(
        plan.weights, reload, plan.stop, plan.remove, plan.completed, tuple(dict.fromkeys(notes))
    )
