"""``recreate``: a candidate must pass before the old container is stopped.

For ``CONTAINER`` (the configured name) a deploy runs these steps, each reported and
recorded in the ledger:

1. ``pull`` (in :meth:`RecreateStrategy.prepare`): the image, by digest when one is known;
   the digest the engine pulled is what runs.
2. ``candidate-start``, ``pre-check``: ``CONTAINER-candidate`` on ``candidate-port`` with
   the same env-file, environment and volumes, checked with the health and smoke
   checks. If it fails, it is removed and the deploy ends ``failed`` (reason
   ``pre-check``): the old container was never touched.
3. ``candidate-remove``, ``stop-old`` (with ``stop-timeout``), ``rename-old``: the old
   container becomes ``CONTAINER-previous`` (kept, stopped, restart policy ``no`` so it
   can never come back beside the new one); the one it replaces is removed.
4. ``start-new``, ``post-start-check``: the new ``CONTAINER`` on ``port``, checked again
   (polled every 0.1 s until it first answers, so the gap is measured to that moment).
   If it fails: ``restore`` removes it, renames ``CONTAINER-previous`` back, starts it
   and checks it; the deploy ends ``failed`` (reason ``post-start-check``).
5. ``succeeded`` with ``gap_seconds``: from the stop of the old container to the new
   one's first healthy answer.

A rollback whose target is what ``CONTAINER-previous`` holds restarts it instead
(``restart-previous``): the current container becomes ``CONTAINER-outgoing`` while the
previous one is started and checked, then ``CONTAINER-previous``; if the check fails the
two are swapped back.

A deploy killed at any step (SIGKILL included) is put right by the next deploy or
rollback (:meth:`RecreateStrategy.repair`), from the ledger's unfinished deploy and the
containers' names and labels: a new container that is running and passes its checks
completes the interrupted deploy; anything else brings the old container back. Never two
containers on the port, never the old container removed before a new one is healthy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tagkeeper.deploy.containers import Role
from tagkeeper.deploy.context import Context, Outcome, Prepared, pull_pinned
from tagkeeper.errors import VerificationFailed
from tagkeeper.rollback.resolve import DeployStatus

if TYPE_CHECKING:
    from tagkeeper.deploy.containers import ContainerState
    from tagkeeper.deploy.verify import VerifyReport
    from tagkeeper.rollback.resolve import DeployRecord

CANDIDATE = "candidate"
PREVIOUS = "previous"
OUTGOING = "outgoing"


@dataclass(frozen=True, slots=True)
class Names:
    live: str
    candidate: str
    previous: str
    outgoing: str

    @classmethod
    def of(cls, ctx: Context) -> Names:
        return cls(ctx.name(), ctx.name(CANDIDATE), ctx.name(PREVIOUS), ctx.name(OUTGOING))


def _secs(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class RecreateStrategy:
    """See the module docs."""

    name = "recreate"

    # -- prepare ----------------------------------------------------------------------

    def prepare(self, ctx: Context) -> Prepared:
        names = Names.of(ctx)
        request = ctx.request
        previous = ctx.runtime.inspect(names.previous)
        if (
            request.rollback
            and request.digest is not None
            and previous is not None
            and previous.digest == request.digest
        ):
            ctx.step("pull", "done", f"not needed: {names.previous} holds {request.digest}")
            return Prepared(request.digest, request.reference, reuse=names.previous)
        digest, reference = pull_pinned(ctx)
        reuse = None
        if request.rollback and previous is not None and previous.digest == digest:
            reuse = names.previous
        return Prepared(digest, reference, reuse=reuse)

    # -- run --------------------------------------------------------------------------

    def run(self, ctx: Context, prepared: Prepared) -> Outcome:
        names = Names.of(ctx)
        if prepared.reuse is not None:
            return self._restart_previous(ctx, names)
        numbers: dict[str, Any] = {}
        candidate = self._pre_check(ctx, names, prepared, numbers)
        if not candidate.ok:
            return Outcome(
                DeployStatus.FAILED,
                f"the pre-check of {names.candidate} failed: {candidate.reason}",
                reason="pre-check",
                numbers=numbers,
                reports={"candidate": candidate},
            )
        return self._switch(ctx, names, prepared, numbers, candidate)

    def _pre_check(
        self, ctx: Context, names: Names, prepared: Prepared, numbers: dict[str, Any]
    ) -> VerifyReport:
        spec = ctx.spec
        runtime = ctx.runtime
        port = spec.spare_port
        ctx.step("candidate-start", "start", f"{names.candidate} on port {port}")
        runtime.remove(names.candidate)  # a leftover of an earlier deploy
        try:
            runtime.create(
                ctx.options(
                    name=names.candidate,
                    role=Role.CANDIDATE,
                    port=port,
                    reference=prepared.reference,
                    digest=prepared.digest,
                )
            )
            runtime.start(names.candidate)
            ctx.step("candidate-start", "done", names.candidate)
            ctx.step("pre-check", "start", f"{names.candidate} on {ctx.url(port)}")
            started = ctx.clock()
            report = ctx.check(names.candidate, port)
            numbers["pre_check_seconds"] = _secs(ctx.clock() - started)
            ctx.step(
                "pre-check",
                "done" if report.ok else "failed",
                report.reason,
                report=report.as_dict(),
            )
        finally:
            ctx.step("candidate-remove", "start", names.candidate)
            runtime.remove(names.candidate)
            ctx.step("candidate-remove", "done", names.candidate)
        return report

    def _switch(
        self,
        ctx: Context,
        names: Names,
        prepared: Prepared,
        numbers: dict[str, Any],
        candidate: VerifyReport,
    ) -> Outcome:
        spec = ctx.spec
        runtime = ctx.runtime
        old = runtime.inspect(names.live)
        stopped_at = ctx.clock()
        if old is not None:
            ctx.step("stop-old", "start", f"{names.live} (stop-timeout {spec.stop_timeout:g}s)")
            runtime.stop(names.live, spec.stop_timeout)
            numbers["stop_seconds"] = _secs(ctx.clock() - stopped_at)
            ctx.step("stop-old", "done", names.live)
            ctx.step("rename-old", "start", f"{names.live} -> {names.previous}")
            if runtime.inspect(names.previous) is not None:
                runtime.remove(names.previous)  # the one before: a newer previous replaces it
            runtime.rename(names.live, names.previous)
            runtime.set_restart(names.previous, "no")
            ctx.step("rename-old", "done", names.previous)
        try:
            ctx.step("start-new", "start", f"{names.live} on port {spec.service_port}")
            runtime.create(
                ctx.options(
                    name=names.live,
                    role=Role.LIVE,
                    port=spec.service_port,
                    reference=prepared.reference,
                    digest=prepared.digest,
                )
            )
            started_at = ctx.clock()
            runtime.start(names.live)
            ctx.step("start-new", "done", names.live)
            ctx.step("post-start-check", "start", f"{names.live} on {ctx.url(spec.service_port)}")
            live = ctx.check(names.live, spec.service_port, fast=True)
        except BaseException as exc:
            # Ctrl-C, SIGTERM or an engine failure in the middle of the switch: bring the
            # old container back before going
            if old is not None:
                ctx.step("restore", "start", f"interrupted ({type(exc).__name__})")
                self._restore(ctx, names, remove_new=True)
            raise
        reports = {"candidate": candidate, "live": live}
        if live.healthy_after is not None:
            numbers["healthy_after_seconds"] = _secs(live.healthy_after)
            if old is not None:
                numbers["gap_seconds"] = _secs(started_at - stopped_at + live.healthy_after)
        if live.ok:
            ctx.step("post-start-check", "done", live.reason, report=live.as_dict())
            gap = numbers.get("gap_seconds")
            shown = f"; gap {gap:.2f}s" if gap is not None else ""
            return Outcome(
                DeployStatus.SUCCEEDED,
                f"{names.live} runs {prepared.reference}{shown}",
                numbers=numbers,
                reports=reports,
            )
        ctx.step("post-start-check", "failed", live.reason, report=live.as_dict())
        if old is None:
            runtime.remove(names.live)
            return Outcome(
                DeployStatus.FAILED,
                f"{names.live} failed its checks after the start: {live.reason}; it was "
                "removed (there was no container before it)",
                reason="post-start-check",
                numbers=numbers,
                reports=reports,
            )
        ctx.step("restore", "start", f"{names.previous} -> {names.live}")
        restored = self._restore(ctx, names, remove_new=True)
        reports["restored"] = restored
        numbers["downtime_seconds"] = _secs(ctx.clock() - stopped_at)
        return Outcome(
            DeployStatus.FAILED,
            f"{names.live} failed its checks after the start: {live.reason}; the old "
            "container was restored",
            reason="post-start-check",
            numbers=numbers,
            reports=reports,
        )

    def _restore(self, ctx: Context, names: Names, *, remove_new: bool) -> VerifyReport:
        """Bring ``CONTAINER-previous`` back as ``CONTAINER``: started and checked."""
        runtime = ctx.runtime
        if remove_new:
            runtime.remove(names.live)
        runtime.rename(names.previous, names.live)
        runtime.set_restart(names.live, ctx.spec.restart)
        runtime.start(names.live)
        report = ctx.check(names.live, ctx.spec.service_port, fast=True)
        ctx.step("restore", "done" if report.ok else "failed", report.reason)
        if not report.ok:
            raise VerificationFailed(
                f"{names.live} was restored from {names.previous} but fails its checks: "
                f"{report.reason}",
                hint=f"look at 'docker logs {names.live}'; tagkeeper status --env "
                f"{ctx.spec.environment} shows what runs",
            )
        return report

    # -- a rollback to what CONTAINER-previous holds -----------------------------------

    def _restart_previous(self, ctx: Context, names: Names) -> Outcome:
        spec = ctx.spec
        runtime = ctx.runtime
        numbers: dict[str, Any] = {"restarted_previous": True}
        current = runtime.inspect(names.live)
        stopped_at = ctx.clock()
        if current is not None:
            ctx.step("stop-old", "start", names.live)
            runtime.stop(names.live, spec.stop_timeout)
            ctx.step("stop-old", "done", names.live)
            runtime.remove(names.outgoing)
            runtime.rename(names.live, names.outgoing)
            runtime.set_restart(names.outgoing, "no")
        try:
            ctx.step("restart-previous", "start", f"{names.previous} -> {names.live}")
            runtime.rename(names.previous, names.live)
            runtime.set_restart(names.live, spec.restart)
            started_at = ctx.clock()
            runtime.start(names.live)
            live = ctx.check(names.live, spec.service_port, fast=True)
        except BaseException:
            if current is not None:
                self._swap_back(ctx, names)
            raise
        if live.healthy_after is not None and current is not None:
            numbers["gap_seconds"] = _secs(started_at - stopped_at + live.healthy_after)
        if live.ok:
            ctx.step("restart-previous", "done", live.reason, report=live.as_dict())
            if current is not None:
                runtime.rename(names.outgoing, names.previous)
            return Outcome(
                DeployStatus.SUCCEEDED,
                f"{names.live} was restarted from {names.previous} (no pull, no new container)",
                numbers=numbers,
                reports={"live": live},
            )
        ctx.step("restart-previous", "failed", live.reason, report=live.as_dict())
        if current is not None:
            self._swap_back(ctx, names)
        return Outcome(
            DeployStatus.FAILED,
            f"{names.previous} failed its checks after the restart: {live.reason}; "
            + ("the container it replaced was restored" if current is not None else ""),
            reason="post-start-check",
            numbers=numbers,
            reports={"live": live},
        )

    def _swap_back(self, ctx: Context, names: Names) -> None:
        runtime = ctx.runtime
        ctx.step("restore", "start", f"{names.outgoing} -> {names.live}")
        if runtime.inspect(names.live) is not None:
            runtime.stop(names.live, ctx.spec.stop_timeout)
            runtime.rename(names.live, names.previous)
            runtime.set_restart(names.previous, "no")
        runtime.rename(names.outgoing, names.live)
        runtime.set_restart(names.live, ctx.spec.restart)
        runtime.start(names.live)
        report = ctx.check(names.live, ctx.spec.service_port, fast=True)
        ctx.step("restore", "done" if report.ok else "failed", report.reason)

    # -- repair -----------------------------------------------------------------------

    def repair(self, ctx: Context) -> list[str]:
        """Put right what a killed deploy of this container left; the notes say what."""
        from tagkeeper.deploy.strategies.repair import repair_recreate

        return repair_recreate(ctx, Names.of(ctx))


def belongs_to(state: ContainerState | None, record: DeployRecord | None) -> bool:
    """Whether ``state`` is the container ``record``'s deploy put in place."""
    if state is None or record is None:
        return False
    if record.id is not None and state.deploy_id == record.id:
        return True
    return bool(record.rollback and record.digest and state.digest == record.digest)
