"""What the blue/green and canary strategies do with the two slots, step by step.

Shared by :mod:`.slotbase` (the strategies), :mod:`.slotrepair` (the repair of a killed
deploy) and :mod:`tagkeeper.deploy.operate` (``watch`` and ``switch``): where each slot
listens, what the owned proxy file says (:func:`topology`), a quick health check of a
slot, a switch through the proxy with every step recorded (:func:`apply`), waiting until
the metrics source sees a new slot (:func:`wait_ready`), the watch of a release
(:func:`watch_release`) and the switch back the watch decides (:func:`switch_back`).

The slot containers are ``CONTAINER-<slot>`` on the slot's port (``ports``, default
``port`` and ``port + 1``), reached by the proxy at ``127.0.0.1:PORT``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tagkeeper.deploy.context import SwitchBack
from tagkeeper.deploy.judge import Thresholds
from tagkeeper.deploy.metrics.model import MetricsError
from tagkeeper.deploy.proxies.model import Weights
from tagkeeper.deploy.slots import live_slot, other_slot
from tagkeeper.deploy.verify import HealthPolicy, verify
from tagkeeper.deploy.watch import WatchPlan, watch_slot
from tagkeeper.errors import NoRollbackTarget, UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx

    from tagkeeper.deploy.containers import ContainerState
    from tagkeeper.deploy.context import Context
    from tagkeeper.deploy.metrics.model import MetricsSource
    from tagkeeper.deploy.proxies.base import Proxy
    from tagkeeper.deploy.proxies.model import ApplyReport, ProxyEvent, ProxyFile
    from tagkeeper.deploy.spec import DeploySpec
    from tagkeeper.deploy.watch import WatchCheck, WatchReport
    from tagkeeper.rollback.resolve import RollbackTarget

SLOT_HOST = "127.0.0.1"
QUICK_HEALTH_TIMEOUT = 5.0  # a slot that served a moment ago answers at once
# Prometheus: file_sd batches target updates for ~5 s, then one scrape interval (1 m by
# default); a slot never scraped before its first window would lose that window's start
METRICS_READY_TIMEOUT = 75.0
METRICS_READY_POLL = 1.0


@dataclass(frozen=True, slots=True)
class SlotTools:
    """The proxy in front of the slots and the metrics source (``None``: health only)."""

    proxy: Proxy
    metrics: MetricsSource[Any] | None = None


def open_slot_proxy(spec: DeploySpec, client: httpx.Client) -> Proxy:
    """The proxy ``spec`` names (probes go to its first health path)."""
    from tagkeeper.deploy.proxies.factory import open_proxy
    from tagkeeper.deploy.proxies.snippet import setup_from_spec

    return open_proxy(
        setup_from_spec(spec),
        client,
        probe_path=spec.health[0],
        test_command=spec.proxy_test_command,
        reload_command=spec.proxy_reload_command,
    )


def build_tools(spec: DeploySpec, client: httpx.Client) -> dict[str, Any]:
    """The proxy and metrics source ``spec`` names, as engine collaborators."""
    from tagkeeper.deploy.metrics.factory import open_source

    out: dict[str, Any] = {"proxy": open_slot_proxy(spec, client)}
    if spec.metrics is not None:
        out["metrics"] = open_source(
            spec.metrics.kind, spec.metrics.target, client, queries=spec.metrics_queries or None
        )
    return out


def tools(ctx: Context) -> SlotTools:
    proxy = ctx.collaborators.get("proxy")
    if proxy is None:
        raise UsageError(f"strategy {ctx.spec.strategy} needs a proxy, and none was given")
    return SlotTools(proxy, ctx.collaborators.get("metrics"))


def container(ctx: Context, slot: str) -> str:
    return ctx.name(slot)


def port(spec: DeploySpec, slot: str) -> int:
    return spec.slot_ports[spec.slots.index(slot)]


def address(spec: DeploySpec, slot: str) -> str:
    return f"{SLOT_HOST}:{port(spec, slot)}"


@dataclass(frozen=True, slots=True)
class Topology:
    """The owned file, the slot that serves, the other one, and what each slot holds."""

    file: ProxyFile
    weights: Weights
    live: str
    idle: str
    states: Mapping[str, ContainerState | None]

    def state(self, slot: str) -> ContainerState | None:
        return self.states.get(slot)


def read_weights(ctx: Context, proxy: Proxy) -> tuple[ProxyFile, Weights]:
    """The owned file and its weights; :class:`UsageError` when it cannot be trusted at
    all (missing, unreadable, every slot at 0). A hand edit is a warning, not a stop."""
    file = proxy.read()
    env = ctx.spec.environment
    if not file.exists:
        raise UsageError(
            f"the proxy file {file.path} does not exist, so which slot serves is not known",
            hint=f"create it once with: tagkeeper proxy-snippet --env {env} --init",
        )
    if file.weights is None:
        raise UsageError(
            f"the proxy file {file.path} cannot be read: {'; '.join(file.problems)}",
            hint=f"tagkeeper switch --env {env} --to SLOT writes it anew (to a slot that "
            "serves)",
        )
    if file.problems:
        ctx.event("proxy", "warning", f"{file.path}: {'; '.join(file.problems)}")
    return file, file.weights


def topology(ctx: Context, kit: SlotTools) -> Topology:
    file, weights = read_weights(ctx, kit.proxy)
    live = live_slot(weights)
    idle = other_slot(ctx.spec.slots, live)
    states = {slot: ctx.runtime.inspect(container(ctx, slot)) for slot in ctx.spec.slots}
    return Topology(file, weights, live, idle, states)


def quick_health(ctx: Context, slot: str, timeout: float = QUICK_HEALTH_TIMEOUT) -> str | None:
    """``None`` when slot's container runs and answers healthy once; else why not."""
    name = container(ctx, slot)
    state = ctx.runtime.inspect(name)
    if state is None:
        return f"{name} does not exist"
    if not state.running:
        return f"{name} is {state.status}"
    restarts = state.restart_count

    def alive() -> str | None:
        now = ctx.runtime.inspect(name)
        return "was removed" if now is None else now.gone_reason(restarts)

    report = verify(
        ctx.url(port(ctx.spec, slot)),
        HealthPolicy(ctx.spec.health, interval=0.25, successes=1, timeout=timeout),
        client=ctx.client,
        clock=ctx.clock,
        sleep=ctx.sleep,
        alive=alive,
        masker=ctx.masker,
    )
    return None if report.ok else report.reason


def apply(ctx: Context, kit: SlotTools, weights: Weights, why: str) -> ApplyReport:
    """Switch the proxy to ``weights`` (write, test, reload, confirm), every step
    recorded; :class:`~tagkeeper.deploy.proxies.model.ProxySwitchFailed` when it did not
    take effect (the previous file is back)."""
    ctx.step("switch", "start", f"{weights} ({why})")

    def on_event(event: ProxyEvent) -> None:
        status = "info" if event.phase == "restore" else "done"
        ctx.step(f"proxy-{event.phase}", status, f"{event.detail} ({event.seconds:.2f}s)")

    report = kit.proxy.apply(weights, on_event=on_event)
    ctx.step(
        "switch",
        "done",
        f"{weights}: confirmed through the proxy in {report.seconds:.2f}s",
        weights=weights.as_dict(),
    )
    return report


def started_at(state: ContainerState | None) -> float:
    """When ``state``'s container started (Unix seconds); now when not known."""
    if state is not None and state.started_at is not None:
        return state.started_at.timestamp()
    return datetime.now(UTC).timestamp()


def wait_ready(ctx: Context, kit: SlotTools, slot: str) -> str | None:
    """Wait (bounded) until the metrics source sees ``slot``'s container; why not."""
    if kit.metrics is None:
        return None
    where = address(ctx.spec, slot)
    since = started_at(ctx.runtime.inspect(container(ctx, slot)))
    deadline = ctx.clock() + METRICS_READY_TIMEOUT
    ctx.step("metrics-ready", "start", f"{where} in {ctx.spec.metrics}")
    while True:
        try:
            why = kit.metrics.ready(where, since)
        except MetricsError as exc:
            why = exc.message
        if why is None:
            ctx.step("metrics-ready", "done", where)
            return None
        if ctx.clock() >= deadline:
            ctx.step("metrics-ready", "failed", why)
            return f"{why} (waited {METRICS_READY_TIMEOUT:g}s)"
        ctx.sleep(METRICS_READY_POLL)


def watch_release(
    ctx: Context, kit: SlotTools, live: str, duration: float, interval: float
) -> WatchReport:
    """Watch ``live`` for ``duration`` (see :mod:`tagkeeper.deploy.watch`)."""
    spec = ctx.spec
    other = other_slot(spec.slots, live)
    plan = WatchPlan(
        live=live,
        address=address(spec, live),
        other=other,
        other_address=address(spec, other),
        duration=duration,
        interval=interval,
        thresholds=Thresholds.from_spec(spec),
    )
    ctx.step("watch", "start", f"slot {live} for {duration:g}s, a check every {interval:g}s")

    def on_check(check: WatchCheck) -> None:
        text = f"{check.seen}: {check.detail}"
        if check.seen == "pass":
            ctx.event("watch", "info", text)
        else:
            ctx.step("watch", "warning", text)

    report = watch_slot(
        plan,
        health=lambda: quick_health(ctx, live, min(QUICK_HEALTH_TIMEOUT, interval)),
        source=kit.metrics,
        clock=ctx.clock,
        sleep=ctx.sleep,
        on_check=on_check,
    )
    if report.rollback:
        ctx.step("watch", "failed", report.reason or "")
    else:
        quiet = sum(1 for check in report.checks if check.seen == "inconclusive")
        text = f"{len(report.checks)} checks, no threshold crossed"
        if quiet:
            text += f" ({quiet} with too little traffic to judge)"
        ctx.step("watch", "done", text)
    return report


def rollback_target(ctx: Context, current_tag: str) -> RollbackTarget | None:
    """What ``previous`` answers for ``current_tag`` from the ledger; ``None``: nothing."""
    from tagkeeper.rollback.resolve import previous_from_history

    spec = ctx.spec
    history = ctx.ledger.history(environment=spec.environment, repository=spec.repository)
    try:
        return previous_from_history(
            history, repository=spec.repository, environment=spec.environment,
            current=current_tag,
        )  # fmt: skip
    except NoRollbackTarget as exc:
        ctx.step("switch-back", "warning", exc.message)
        return None


def switch_back(
    ctx: Context, kit: SlotTools, bad: str, current_tag: str, reason: str
) -> SwitchBack | None:
    """After the watch decided: every request back to the other slot when it holds what
    ``previous`` answers (started and checked first when it was stopped), else that
    version to deploy. ``None``: there is nothing to roll back to."""
    spec = ctx.spec
    good = other_slot(spec.slots, bad)
    target = rollback_target(ctx, current_tag)
    if target is None:
        return None
    name = container(ctx, good)
    state = ctx.runtime.inspect(name)
    if state is None or target.digest is None or state.digest != target.digest:
        held = "nothing" if state is None else (state.digest or "an unknown digest")
        ctx.step("switch-back", "info", f"slot {good} holds {held}, not {target.tag}: "
                 f"deploying {target.reference(pinned=True)} instead")  # fmt: skip
        return SwitchBack(reason, target=target)
    if not state.running:
        ctx.runtime.set_restart(name, spec.restart)
        ctx.runtime.start(name)
        report = ctx.check(name, port(spec, good), fast=True)
        why = None if report.ok else report.reason
    else:
        why = quick_health(ctx, good)
    if why is not None:
        ctx.step("switch-back", "warning", f"{name} does not serve ({why}): deploying "
                 f"{target.reference(pinned=True)} instead")  # fmt: skip
        with contextlib.suppress(Exception):
            ctx.runtime.stop(name, spec.stop_timeout)
        return SwitchBack(reason, target=target)
    applied = apply(ctx, kit, Weights.all_to(good, spec.slots), f"roll back to {target.tag}")
    numbers = {
        "switch_back_seconds": round(applied.seconds, 3),
        "confirm_seconds": round(applied.confirm_seconds, 3),
    }
    stop(ctx, bad, "it was rolled back")
    return SwitchBack(
        reason,
        slot=good,
        tag=target.tag,
        digest=target.digest,
        numbers=numbers,
        steps=(("switch-back", "done", f"every request to slot {good} ({target.tag})"),),
    )


def stop(ctx: Context, slot: str, why: str) -> None:
    """Stop ``slot``'s container (kept, for its logs and a switch back; restart ``no``)."""
    name = container(ctx, slot)
    state = ctx.runtime.inspect(name)
    if state is None:
        return
    if state.running:
        ctx.step("stop", "start", f"{name} ({why})")
        ctx.runtime.stop(name, ctx.spec.stop_timeout)
        ctx.step("stop", "done", name)
    if state.restart_policy not in ("no", ""):
        ctx.runtime.set_restart(name, "no")
