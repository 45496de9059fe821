"""``watch`` and ``switch``: operating the two slots of a ``bluegreen``/``canary`` service.

Both hold the environment's lock (exit 15 while a deploy runs) and first repair what a
killed deploy left, as a deploy does.

:func:`watch` watches what serves now: the live slot (from the owned proxy file) and the
ledger's current deploy. Every interval it checks the slot's health and metrics; when
the rule says so (a threshold crossed twice in a row, four metric read errors in a row)
it rolls back: every request to the other slot when that slot holds what ``previous``
answers (started and checked first if it was stopped), else that version is deployed
through the strategy, as a rollback. The watched deploy is then recorded
``rolled_back`` and the switch back as a rollback that succeeded (exit 14).

:func:`switch` sends traffic as an operator says (``--to SLOT``, ``--weights 90,10``):
every slot that is to take traffic must run and pass its checks first, then the owned
file is written, tested, reloaded and confirmed through the proxy. When every request
goes to a slot that did not serve before, the ledger records what that slot runs as a
deploy (strategy ``switch``), so ``previous`` and prune protection know what serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagkeeper.deploy.context import DeployRequest
from tagkeeper.deploy.engine import rollback_request
from tagkeeper.deploy.proxies.model import ProxySwitchFailed
from tagkeeper.deploy.spec import PROXY_STRATEGIES
from tagkeeper.deploy.strategies import slotkit
from tagkeeper.errors import ExitCode, LedgerError, UsageError, VerificationFailed
from tagkeeper.refs import parse_reference
from tagkeeper.rollback.resolve import DeployStatus, current_deploy

if TYPE_CHECKING:
    from tagkeeper.deploy.context import Context
    from tagkeeper.deploy.engine import DeployResult, Engine
    from tagkeeper.deploy.proxies.model import ApplyReport, Weights
    from tagkeeper.deploy.watch import WatchReport
    from tagkeeper.rollback.resolve import DeployRecord


@dataclass(frozen=True, slots=True)
class WatchResult:
    """How a ``watch`` ended. ``status``: ``passed``, ``rolled_back``, or ``failed`` (the
    rule said roll back but it could not be done: ``reason`` says why)."""

    environment: str
    slot: str
    watched: DeployRecord
    report: WatchReport
    status: str
    message: str
    reason: str | None = None
    followup: DeployResult | None = None
    notes: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        if self.status == "passed":
            return int(ExitCode.OK)
        if self.status == "rolled_back":
            return int(ExitCode.ROLLED_BACK)
        if self.reason == "no-target":
            return int(ExitCode.NO_TARGET)
        return int(ExitCode.VERIFY)

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "slot": self.slot,
            "deploy_id": self.watched.id,
            "image": self.watched.reference,
            "digest": self.watched.digest,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "watch": self.report.to_json(),
            "checks": [check.to_json() for check in self.report.checks],
            "rolled_back_to": None if self.followup is None else self.followup.as_dict(),
            "notes": list(self.notes),
            "exit_code": self.exit_code,
        }


@dataclass(frozen=True, slots=True)
class SwitchResult:
    """What ``switch`` did: the weights before and after, and the proxy's confirmation."""

    environment: str
    previous: Weights | None
    weights: Weights
    applied: ApplyReport
    deploy_id: int | None = None  # the ledger record of what now serves (a full switch)
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "previous": None if self.previous is None else self.previous.as_dict(),
            "weights": self.weights.as_dict(),
            "proxy": self.applied.to_json(),
            "deploy_id": self.deploy_id,
            "notes": list(self.notes),
            "exit_code": 0,
        }


def _check_strategy(engine: Engine, command: str) -> None:
    if engine.spec.strategy not in PROXY_STRATEGIES:
        raise UsageError(
            f"{command} applies to the bluegreen and canary strategies; "
            f"[deploy.{engine.spec.environment}] uses {engine.spec.strategy}",
            hint='set strategy = "bluegreen" or "canary" (with a proxy) to use it',
        )


def _context(engine: Engine, tag: str = "current") -> Context:
    """A context for operating the slots (its request only names the repository)."""
    ref = parse_reference(f"{engine.spec.repository}:{tag}")
    return engine.context(DeployRequest(ref))


def watch(engine: Engine, *, duration: float | None = None, interval: float | None = None
          ) -> WatchResult:  # fmt: skip
    """Watch the live slot for ``duration`` (default ``watch``) every ``interval``
    (default ``watch-interval``); see the module docs."""
    _check_strategy(engine, "watch")
    spec = engine.spec
    duration = spec.watch if duration is None else duration
    interval = spec.watch_interval if interval is None else interval
    if duration <= 0 or interval <= 0:
        raise UsageError("the watch needs a duration and an interval longer than 0")
    strategy = engine.strategy
    ctx = _context(engine)
    notes: list[str] = []
    with engine.locked(ctx, notes):
        notes += engine.repair(ctx, strategy)
        kit = slotkit.tools(ctx)
        topo = slotkit.topology(ctx, kit)
        history = engine.ledger.history(environment=spec.environment,
                                        repository=spec.repository)  # fmt: skip
        current = current_deploy(history)
        if current is None or current.id is None:
            raise UsageError(
                f"no successful deploy of {spec.repository} to {spec.environment} is "
                "recorded: there is nothing to watch",
                hint="deploy first: tagkeeper deploy --env ENV --image REF",
            )
        live = topo.state(topo.live)
        if live is None or live.digest != current.digest:
            text = (
                f"slot {topo.live} runs {live.digest if live else 'nothing'}, not "
                f"{current.reference}@{current.digest} that the ledger records as current"
            )
            notes.append(text)
            ctx.event("watch", "warning", text)
        ctx = _context(engine, current.tag)
        ctx.recorded(current)  # the watch's steps go to the watched deploy's log
        report = slotkit.watch_release(ctx, kit, topo.live, duration, interval)
        result = WatchResult(spec.environment, topo.live, current, report, "passed",
                             f"slot {topo.live} ({current.tag}) passed {len(report.checks)} "
                             f"checks over {report.seconds:.0f}s", notes=tuple(notes))  # fmt: skip
        if not report.rollback:
            return result
        return _roll_back(engine, ctx, result, report.reason or "")


def _roll_back(engine: Engine, ctx: Context, result: WatchResult, reason: str) -> WatchResult:
    spec = engine.spec
    current = result.watched
    kit = slotkit.tools(ctx)

    def ended(status: str, message: str, why: str | None, followup: DeployResult | None = None
              ) -> WatchResult:  # fmt: skip
        return WatchResult(spec.environment, result.slot, current, result.report, status,
                           message, why, followup, result.notes)  # fmt: skip

    try:
        back = slotkit.switch_back(ctx, kit, result.slot, current.tag, reason)
    except ProxySwitchFailed as exc:
        return ended("failed", f"the watch rolled back ({reason}), but the switch back "
                     f"failed: {exc.message}; slot {result.slot} still serves", "switch-back")
    if back is None:
        return ended("failed", f"the watch rolled back ({reason}), but there is nothing to "
                     f"roll back to: slot {result.slot} still serves", "no-target")
    watched = current.id or 0  # the caller only watches a recorded deploy
    if back.slot is not None:
        engine.ledger.mark_rolled_back(watched, detail=f"rolled back by the watch: {reason}")
        engine.ledger.set_numbers(watched, {**result.report.numbers(), **back.numbers})
        followup = engine.record_switch_back(back, replaced=current.tag)
        return ended("rolled_back", f"{current.tag} was rolled back ({reason}): slot "
                     f"{back.slot} serves {back.tag} again", "watch", followup)  # fmt: skip
    target = back.target
    if target is None:  # switch_back gives a slot or a target; never neither
        raise TypeError("a switch back with neither a slot nor a target")
    nested = engine.run_locked(engine.context(rollback_request(spec, target)), engine.strategy, [])
    if nested.status is not DeployStatus.SUCCEEDED:
        return ended("failed", f"the watch rolled back ({reason}), but deploying "
                     f"{target.reference()} failed: {nested.message}", "rollback-failed",
                     nested)  # fmt: skip
    engine.ledger.mark_rolled_back(watched, detail=f"rolled back by the watch: {reason}")
    engine.ledger.set_numbers(watched, result.report.numbers())
    return ended("rolled_back", f"{current.tag} was rolled back ({reason}): "
                 f"{target.reference()} was deployed", "watch", nested)  # fmt: skip


def switch(engine: Engine, weights: Weights) -> SwitchResult:
    """Send traffic by ``weights`` (see the module docs); :class:`VerificationFailed`
    (exit 13) when a slot that is to take traffic does not serve, or the proxy change
    did not take effect (the previous file is back)."""
    _check_strategy(engine, "switch")
    spec = engine.spec
    strategy = engine.strategy
    ctx = _context(engine)
    notes: list[str] = []
    kit = slotkit.tools(ctx)
    with engine.locked(ctx, notes):
        before = kit.proxy.read()
        if before.weights is not None:
            notes += engine.repair(ctx, strategy)
            before = kit.proxy.read()
        else:
            notes.append(f"{before.path}: {'; '.join(before.problems)}: it is written anew")
        weights.check_slots(kit.proxy.slots)
        for slot in weights.serving:
            name = slotkit.container(ctx, slot)
            state = ctx.runtime.inspect(name)
            if state is None or not state.running:
                raise VerificationFailed(
                    f"slot {slot} cannot take traffic: {name} "
                    f"{'does not exist' if state is None else 'is ' + state.status}",
                    hint="nothing was switched; deploy to it, or `tagkeeper rollback` to a "
                    "slot that holds the previous version",
                )
            report = ctx.check(name, slotkit.port(spec, slot), fast=True)
            if not report.ok:
                raise VerificationFailed(
                    f"slot {slot} cannot take traffic: {report.reason}",
                    hint="nothing was switched",
                )
        applied = slotkit.apply(ctx, kit, weights, "tagkeeper switch")
        deploy_id = None
        sole = weights.sole
        if sole is not None and (before.weights is None or before.weights.sole != sole):
            deploy_id = _record_switch(engine, ctx, sole, applied)
    return SwitchResult(spec.environment, before.weights, weights, applied, deploy_id,
                        tuple(notes))  # fmt: skip


def _record_switch(engine: Engine, ctx: Context, slot: str, applied: ApplyReport) -> int | None:
    """Record what ``slot`` runs as the deploy that serves now (strategy ``switch``)."""
    from tagkeeper.deploy.containers import LABEL_IMAGE

    spec = engine.spec
    state = ctx.runtime.inspect(slotkit.container(ctx, slot))
    if state is None or state.digest is None:
        return None
    try:
        ref = parse_reference(state.labels.get(LABEL_IMAGE, ""))
    except UsageError:
        return None
    if ref.tag is None or ref.repository != spec.repository:
        return None
    record = engine.ledger.start(
        environment=spec.environment, repository=spec.repository, tag=ref.tag,
        digest=state.digest, actor=engine.actor, strategy="switch",
        container=spec.container, slot=slot,
    )  # fmt: skip
    if record.id is None:
        raise LedgerError(f"the ledger {engine.ledger.path} gave the switch no id")
    engine.ledger.add_step(record.id, "switch", "done", f"every request to slot {slot}")
    engine.ledger.finish(
        record.id,
        DeployStatus.SUCCEEDED,
        detail=f"tagkeeper switch: every request to slot {slot} ({ref.tag})",
        reason="switch",
        numbers={"switch_seconds": round(applied.seconds, 3)},
    )
    return record.id
