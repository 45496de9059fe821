"""Two slots behind a proxy: the release that ``bluegreen`` and ``canary`` share.

A deploy of ``CONTAINER`` with slots ``blue`` and ``green`` runs these steps, each
reported and recorded in the ledger:

1. ``pull`` (:meth:`SlotStrategy.prepare`); a rollback whose digest the idle slot's
   container holds needs no pull: it is an instant switch back (below).
2. the owned proxy file says which slot serves (the *live* slot; the other is *idle*).
   An operator's split (``switch --weights``) is first sent all to the live slot
   (``drain``), so that no container that takes traffic is ever replaced.
3. ``start-new``, ``pre-check``: the idle slot's old container (the version before the
   current one, kept for a switch back) is removed and ``CONTAINER-<idle>`` starts on
   the idle slot's port; it is checked on that port (health and smoke checks). Failed:
   it is removed, the deploy ends ``failed`` (``pre-check``), exit 13. Nothing that
   serves was touched.
4. ``metrics-ready``: when metrics decide (canary steps, the watch), the source must
   see the new slot first (Prometheus scraped it since it started).
5. the switch, through the proxy (write, test, reload, confirm; the previous file is
   restored on any failure: ``failed``, reason ``proxy``, exit 13). Blue/green switches
   at once; canary moves the new slot's weight through ``steps`` (5, 10, 50, 100), each
   held for ``step-time`` and judged on the new slot's metrics over that step (and the
   old slot's over the same window). A failed step sends every request back to the old
   slot at once, stops the canary and ends ``rolled_back`` (``canary-step``, with the
   numbers), exit 14. When the old slot serves nothing (the first release), there is no
   traffic to split: the release goes to the new slot at once.
6. ``watch`` (``watch``, default 10 m; never for a rollback): the live slot's health and
   metrics every ``watch-interval``. When the rule says so, every request goes back to
   the old slot if it still holds what ``previous`` answers (else the engine deploys
   that version through this strategy); the deploy ends ``rolled_back`` (``watch``).
7. ``keep-previous``: ``running`` keeps the old slot running for an instant switch back
   until the next deploy; ``stopped`` stops it (it stays, for ``rollback``).

A rollback (``tagkeeper rollback``) whose target the idle slot holds is an instant switch
back: the slot's container is started if it was stopped, checked, and takes every
request. One whose target already serves changes nothing.

Ctrl-C, SIGTERM or an engine failure at any point puts back what served before: every
request to the old slot, the new container stopped (it had served) or removed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagkeeper.deploy.containers import Role
from tagkeeper.deploy.context import Context, Outcome, Prepared, pull_pinned
from tagkeeper.deploy.judge import Outcome as Judged
from tagkeeper.deploy.judge import Thresholds, Verdict, judge_step
from tagkeeper.deploy.metrics.model import MetricsError
from tagkeeper.deploy.proxies.model import ProxySwitchFailed, Weights
from tagkeeper.deploy.strategies import slotkit
from tagkeeper.deploy.strategies.slotkit import SlotTools, Topology, container, port
from tagkeeper.rollback.resolve import DeployStatus

if TYPE_CHECKING:
    from tagkeeper.deploy.containers import ContainerState
    from tagkeeper.deploy.proxies.model import ApplyReport
    from tagkeeper.deploy.spec import DeploySpec
    from tagkeeper.deploy.verify import VerifyReport

STEP_POLL = 1.0  # during a canary step, how often the new container's state is looked at


def _secs(value: float) -> float:
    return round(value, 3)


@dataclass
class _Release:
    """One release in progress: the new and the old slot, the numbers so far, and
    whether the new slot took traffic yet (it is then stopped on the way back, never
    removed)."""

    ctx: Context
    kit: SlotTools
    new: str
    old: str
    numbers: dict[str, Any] = field(default_factory=dict)
    served: bool = False

    @property
    def name(self) -> str:
        return container(self.ctx, self.new)

    def apply(self, weights: Weights, why: str) -> ApplyReport:
        report = slotkit.apply(self.ctx, self.kit, weights, why)
        if weights.of_slot(self.new) > 0:
            self.served = True
        return report

    def all_to(self, slot: str, why: str) -> ApplyReport:
        return self.apply(Weights.all_to(slot, self.ctx.spec.slots), why)

    def outcome(self, status: DeployStatus, message: str, reason: str | None, **kw: Any) -> Outcome:
        return Outcome(status, message, reason=reason, numbers=self.numbers, slot=self.new, **kw)


class SlotStrategy:
    """Blue/green: the new slot takes every request at once. See the module docs."""

    name = "bluegreen"

    def steps(self, spec: DeploySpec) -> tuple[int, ...]:
        """The new slot's weight, step by step (the last is 100)."""
        del spec
        return (100,)

    def needs_metrics(self, ctx: Context) -> bool:
        """Whether metrics decide (the source must then see the new slot first)."""
        return not ctx.request.rollback and ctx.spec.watch > 0 and ctx.spec.metrics is not None

    # -- repair -----------------------------------------------------------------------

    def repair(self, ctx: Context) -> list[str]:
        from tagkeeper.deploy.strategies.slotrepair import repair_slots

        return repair_slots(ctx, slotkit.tools(ctx))

    # -- prepare ----------------------------------------------------------------------

    def prepare(self, ctx: Context) -> Prepared:
        kit = slotkit.tools(ctx)
        topo = slotkit.topology(ctx, kit)
        request = ctx.request
        if request.rollback and request.digest is not None:
            for slot in (topo.idle, topo.live):
                state = topo.state(slot)
                if state is not None and state.digest == request.digest:
                    ctx.step("pull", "done", f"not needed: {state.name} holds {request.digest}")
                    return Prepared(request.digest, request.reference, reuse=state.name)
        digest, reference = pull_pinned(ctx)
        return Prepared(digest, reference)

    # -- run --------------------------------------------------------------------------

    def run(self, ctx: Context, prepared: Prepared) -> Outcome:
        kit = slotkit.tools(ctx)
        topo = slotkit.topology(ctx, kit)
        if prepared.reuse == container(ctx, topo.live) and topo.weights.sole == topo.live:
            ctx.step("switch", "done", f"not needed: slot {topo.live} already serves it")
            return Outcome(
                DeployStatus.SUCCEEDED,
                f"slot {topo.live} ({prepared.reuse}) already serves {prepared.reference}",
                numbers={"instant": True, "switch_seconds": 0.0},
                slot=topo.live,
            )
        if ctx.deploy_id is not None:
            ctx.ledger.set_slot(ctx.deploy_id, topo.idle)
        release = _Release(ctx, kit, topo.idle, topo.live)
        if prepared.reuse == release.name:
            return self._switch_to_held(release, topo, prepared)
        return self._release(release, topo, prepared)

    def _release(self, r: _Release, topo: Topology, prepared: Prepared) -> Outcome:
        ctx, spec = r.ctx, r.ctx.spec
        if topo.weights.of_slot(r.new) > 0:
            r.all_to(r.old, "drain before replacing")
            r.served = False
        try:
            check = self._start_new(r, topo.state(r.new), prepared)
            if not check.ok:
                ctx.runtime.remove(r.name)
                return r.outcome(DeployStatus.FAILED,
                                 f"the pre-check of {r.name} failed: {check.reason}",
                                 "pre-check", reports={"candidate": check})  # fmt: skip
            why = slotkit.wait_ready(ctx, r.kit, r.new) if self.needs_metrics(ctx) else None
            if why is not None:
                ctx.runtime.remove(r.name)
                return r.outcome(DeployStatus.FAILED,
                                 f"the metrics source cannot see {r.name}: {why}", "metrics")
            switched_at = ctx.clock()
            steps = self.steps(spec)
            if len(steps) > 1 and slotkit.quick_health(ctx, r.old) is not None:
                ctx.step("steps", "info", f"slot {r.old} serves nothing: the release goes to "
                         f"slot {r.new} at once")  # fmt: skip
                steps = (100,)
            for index, percent in enumerate(steps, 1):
                try:
                    failed = self.step(r, index, percent)
                except ProxySwitchFailed as exc:
                    return self._proxy_failed(r, exc)
                if failed is not None:
                    return failed
            r.numbers["release_seconds"] = _secs(ctx.clock() - switched_at)
            if not ctx.request.rollback and spec.watch > 0:
                report = slotkit.watch_release(ctx, r.kit, r.new, spec.watch, spec.watch_interval)
                r.numbers.update(report.numbers())
                if report.rollback:
                    return self._rolled_back(r, report.reason or "")
        except BaseException as exc:
            self._undo(r, exc)
            raise
        self._keep_previous(ctx, r.old)
        return r.outcome(DeployStatus.SUCCEEDED, f"slot {r.new} ({r.name}) serves "
                         f"{prepared.reference}", None, reports={"candidate": check})  # fmt: skip

    def _start_new(
        self, r: _Release, held: ContainerState | None, prepared: Prepared
    ) -> VerifyReport:
        ctx = r.ctx
        where = slotkit.port(ctx.spec, r.new)
        if held is not None:
            ctx.step("remove-idle", "start", f"{r.name} ({held.image})")
            ctx.runtime.remove(r.name)
            ctx.step("remove-idle", "done", r.name)
        ctx.step("start-new", "start", f"{r.name} on port {where}")
        options = ctx.options(name=r.name, role=Role.SLOT, port=where, slot=r.new,
                              reference=prepared.reference, digest=prepared.digest)  # fmt: skip
        ctx.runtime.create(options)
        ctx.runtime.start(r.name)
        ctx.step("start-new", "done", r.name)
        ctx.step("pre-check", "start", f"{r.name} on {ctx.url(where)}")
        started = ctx.clock()
        report = ctx.check(r.name, where)
        r.numbers["pre_check_seconds"] = _secs(ctx.clock() - started)
        ctx.step("pre-check", "done" if report.ok else "failed", report.reason,
                 report=report.as_dict())  # fmt: skip
        return report

    def step(self, r: _Release, index: int, percent: int) -> Outcome | None:
        """Blue/green: the switch (see :class:`CanaryStrategy` for steps); an outcome
        ends the release there."""
        del index
        report = r.apply(Weights.canary(r.new, r.old, percent, r.ctx.spec.slots),
                         f"release to slot {r.new}")  # fmt: skip
        r.numbers["switch_seconds"] = _secs(report.seconds)
        r.numbers["confirm_seconds"] = _secs(report.confirm_seconds)
        return None

    def _switch_to_held(self, r: _Release, topo: Topology, prepared: Prepared) -> Outcome:
        """An instant rollback: the idle slot holds the target."""
        ctx, spec = r.ctx, r.ctx.spec
        state = topo.state(r.new)
        stopped = state is not None and not state.running
        r.numbers["instant"] = True
        if stopped:
            ctx.step("start-held", "start", f"{r.name} (it holds {prepared.digest})")
            ctx.runtime.set_restart(r.name, spec.restart)
            ctx.runtime.start(r.name)
        else:
            ctx.step("start-held", "start", f"{r.name} runs {prepared.digest}: checking it")
        check = ctx.check(r.name, port(spec, r.new), fast=True)
        ctx.step("start-held", "done" if check.ok else "failed", check.reason)
        if not check.ok:
            if stopped:
                slotkit.stop(ctx, r.new, "it failed its check")
            return r.outcome(DeployStatus.FAILED, f"{r.name} holds {prepared.digest} but fails "
                             f"its checks: {check.reason}; slot {r.old} still serves",
                             "pre-check", reports={"candidate": check})  # fmt: skip
        try:
            report = r.all_to(r.new, f"roll back to slot {r.new}")
        except ProxySwitchFailed as exc:
            if stopped:
                slotkit.stop(ctx, r.new, "the switch failed")
            return self._proxy_failed(r, exc, remove=False)
        r.numbers["switch_seconds"] = _secs(report.seconds)
        self._keep_previous(ctx, r.old)
        return r.outcome(DeployStatus.SUCCEEDED, f"slot {r.new} ({r.name}) serves "
                         f"{prepared.reference} again: an instant switch, no pull, no new "
                         "container", None, reports={"live": check})  # fmt: skip

    # -- endings ----------------------------------------------------------------------

    def _keep_previous(self, ctx: Context, old: str) -> None:
        if ctx.spec.keep_previous == "stopped":
            slotkit.stop(ctx, old, "keep-previous = stopped")
        else:
            ctx.step("keep-previous", "done", f"{container(ctx, old)} keeps running: "
                     "an instant switch back until the next deploy")  # fmt: skip

    def _rolled_back(self, r: _Release, reason: str) -> Outcome:
        ctx = r.ctx
        try:
            back = slotkit.switch_back(ctx, r.kit, r.new, ctx.request.image.tag or "", reason)
        except ProxySwitchFailed as exc:
            ctx.step("switch-back", "failed", exc.message)
            return r.outcome(DeployStatus.FAILED, f"the watch rolled back ({reason}), but the "
                             f"switch back failed: {exc.message}; slot {r.new} still serves "
                             f"{ctx.request.reference}", "watch-switch-back")  # fmt: skip
        if back is None:
            return r.outcome(DeployStatus.FAILED, f"the watch rolled back ({reason}), but "
                             f"there is nothing to roll back to: slot {r.new} still serves "
                             f"{ctx.request.reference}", "watch-no-target")  # fmt: skip
        r.numbers.update(back.numbers)
        if back.slot is not None:
            where = f"slot {back.slot} serves {back.tag} again"
        else:
            where = f"{back.target.reference() if back.target else '?'} is deployed instead"
        return r.outcome(DeployStatus.ROLLED_BACK, f"released to slot {r.new}, then rolled "
                         f"back by the watch: {reason}; {where}", "watch",
                         switch_back=back)  # fmt: skip

    def _proxy_failed(self, r: _Release, exc: ProxySwitchFailed, *, remove: bool = True) -> Outcome:
        """A switch that did not take effect (its previous file is back, or not)."""
        ctx = r.ctx
        ctx.step("switch", "failed", exc.message)
        if not exc.restored:
            left = (
                "the proxy file could not be restored: both slots are left running; "
                f"tagkeeper status --env {ctx.spec.environment} shows what the proxy runs"
            )
        elif r.served:  # a later canary step: the new slot still takes a share
            try:
                r.all_to(r.old, "undo")
            except ProxySwitchFailed as again:
                left = f"sending every request back to slot {r.old} failed too ({again.message})"
            else:
                slotkit.stop(ctx, r.new, "the switch failed")
                left = f"every request went back to slot {r.old}; {r.name} was stopped"
        elif remove:
            ctx.runtime.remove(r.name)
            left = f"slot {r.old} still serves; {r.name} was removed"
        else:
            left = f"slot {r.old} still serves"
        return r.outcome(DeployStatus.FAILED, f"{exc.message}; {left}", "proxy")

    def _undo(self, r: _Release, exc: BaseException) -> None:
        """Interrupted (Ctrl-C, SIGTERM, an engine failure): what served before, back."""
        ctx = r.ctx
        with contextlib.suppress(Exception):
            ctx.step("restore", "start", f"interrupted ({type(exc).__name__})")
            if r.served:
                r.all_to(r.old, "interrupted")
                slotkit.stop(ctx, r.new, "interrupted")
            else:
                ctx.runtime.remove(r.name)
            ctx.step("restore", "done", f"slot {r.old} serves")


class CanaryStrategy(SlotStrategy):
    """Canary: the new slot's weight goes through ``steps``, each judged on metrics."""

    name = "canary"

    def steps(self, spec: DeploySpec) -> tuple[int, ...]:
        return spec.steps

    def needs_metrics(self, ctx: Context) -> bool:
        return not ctx.request.rollback

    def step(self, r: _Release, index: int, percent: int) -> Outcome | None:
        ctx, spec = r.ctx, r.ctx.spec
        total = len(spec.steps)
        label = f"step {index}/{total} ({percent}%)"
        report = r.apply(Weights.canary(r.new, r.old, percent, spec.slots),
                         f"{label} to slot {r.new}")  # fmt: skip
        r.numbers.setdefault("switch_seconds", _secs(report.seconds))
        if percent >= 100:
            return None
        verdict = self._judge(r, label)
        r.numbers[f"step_{index}"] = {"weight": percent, **verdict.to_json()}
        detail = f"{label}: {'; '.join(verdict.reasons)}"
        if verdict.passed:
            ctx.step("judge", "done", detail)
            return None
        ctx.step("judge", "failed", detail)
        back = r.all_to(r.old, "the canary step failed")
        r.numbers["switch_back_seconds"] = _secs(back.seconds)
        r.numbers.update(failed_step=index, failed_weight=percent, verdict=verdict.to_json())
        slotkit.stop(ctx, r.new, "its canary step failed")
        return r.outcome(DeployStatus.ROLLED_BACK, f"the canary {label} to slot {r.new} "
                         f"failed: {'; '.join(verdict.reasons)}; every request went back "
                         f"to slot {r.old}", "canary-step")  # fmt: skip

    def _judge(self, r: _Release, label: str) -> Verdict:
        """Hold the step for ``step-time`` (failing at once if the new container goes),
        then judge its window."""
        ctx, spec, source = r.ctx, r.ctx.spec, r.kit.metrics
        if source is None:
            return Verdict(Judged.NO_DATA, False, ("no metrics source is configured",))
        first = ctx.runtime.inspect(r.name)
        restarts = first.restart_count if first is not None else 0
        try:
            mark = source.mark()
        except MetricsError as exc:
            return Verdict(Judged.NO_DATA, False, (f"the metrics cannot be read: {exc.message}",))
        ctx.step("step", "start", f"{label}: slot {r.new} for {spec.step_time:g}s")
        end = ctx.clock() + spec.step_time
        while (left := end - ctx.clock()) > 0:
            ctx.sleep(min(STEP_POLL, left))
            state = ctx.runtime.inspect(r.name)
            gone = "was removed" if state is None else state.gone_reason(restarts)
            if gone is not None:
                return Verdict(Judged.FAIL, False, (f"{r.name} {gone} during the step",))
        slots = {r.new: slotkit.address(spec, r.new), r.old: slotkit.address(spec, r.old)}
        try:
            reading = source.read(mark, slots)
        except MetricsError as exc:
            return Verdict(Judged.NO_DATA, False, (f"the metrics cannot be read: {exc.message}",))
        found = reading.slots.get(r.new)
        if found is None:
            return Verdict(Judged.NO_DATA, False, ("the metrics said nothing of the new slot",))
        return judge_step(found, reading.slots.get(r.old), Thresholds.from_spec(spec))
