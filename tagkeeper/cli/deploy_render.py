"""How ``verify``, ``deploy``, ``rollback`` and ``status`` show what happened.

Text for people (stderr for progress and failures, stdout for the result), Markdown for
the Actions step summary. Everything shown here was already masked and made printable by
the library; lines read from a container's log are indented with ``| `` so none of them
can start a workflow command (``::error::``) in an Actions log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tagkeeper.cli import common
from tagkeeper.cli.gha import md_code, md_escape

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tagkeeper.deploy.context import Event
    from tagkeeper.deploy.engine import DeployResult
    from tagkeeper.deploy.operate import SwitchResult, WatchResult
    from tagkeeper.deploy.status import StatusReport
    from tagkeeper.deploy.verify import VerifyReport


class EventPrinter:
    """Progress lines on stderr: a phase as it starts, and how it ended when that says more."""

    def __init__(self) -> None:
        self._started: dict[str, str] = {}

    def __call__(self, event: Event) -> None:
        if event.status == "start":
            self._started[event.phase] = event.message
            common.info(f"  {event.phase}: {event.message}")
            return
        if event.status == "done" and event.message in ("", self._started.get(event.phase)):
            common.info(f"  {event.phase}: done")
            return
        mark = {"failed": "FAILED: ", "warning": "warning: ", "done": "done: "}.get(
            event.status, ""
        )
        common.info(f"  {event.phase}: {mark}{event.message}")


def progress(message: str) -> None:
    """Progress of a check (already masked and printable), on stderr."""
    common.info(f"  {message}")


def check_lines(report: VerifyReport) -> list[str]:
    lines = []
    for check in report.checks:
        mark = "ok  " if check.ok else "FAIL"
        lines.append(f"{mark}  {check.name}  {check.seconds:.2f}s  {check.why}")
    return lines


def log_tail(report: VerifyReport) -> list[str]:
    if not report.log_tail:
        return []
    head = f"last {len(report.log_tail)} lines of the log of {report.container or 'the container'}:"
    return [head, *(f"  | {line}" for line in report.log_tail)]


def show_failure(report: VerifyReport) -> None:
    for line in log_tail(report):
        common.info(line)


def verify_summary(report: VerifyReport, subject: str) -> str:
    """Markdown for the step summary: a table of checks with timings, then the log tail."""
    verdict = "passed" if report.ok else "failed"
    rows = [
        f"### tagkeeper verify: {md_code(subject)} {verdict}",
        "",
        "| check | result | seconds | detail |",
        "|---|---|---:|---|",
    ]
    for check in report.checks:
        result = "ok" if check.ok else "**failed**"
        rows.append(
            f"| {md_escape(check.name)} | {result} | {check.seconds:.2f} | {md_escape(check.why)} |"
        )
    rows.append("")
    rows.append(f"{md_escape(report.reason)} (in {report.seconds:.2f} s)")
    rows.append("")
    rows += _log_block(report)
    return "\n".join(rows)


def _log_block(report: VerifyReport) -> list[str]:
    if not report.log_tail:
        return []
    # no line of the log can close the block (backticks are replaced) or hold a control
    # character (each is neutralised)
    from tagkeeper.untrusted import neutralise

    lines = [neutralise(line).replace("`", "'") for line in report.log_tail]
    return [
        f"<details><summary>log of {md_escape(report.container or 'the container')}</summary>",
        "",
        "```",
        *lines,
        "```",
        "",
        "</details>",
    ]


def result_lines(result: DeployResult) -> list[str]:
    kind = "rollback" if result.rollback else "deploy"
    head = f"{kind} #{result.deploy_id} of {result.image} to {result.environment}: {result.status}"
    lines = [head + (f" ({result.reason})" if result.reason else ""), f"  {result.message}"]
    gap = result.numbers.get("gap_seconds")
    if gap is not None:
        lines.append(f"  unavailable for {gap:.2f}s (stop of the old -> first healthy answer)")
    switch = result.numbers.get("switch_seconds")
    if result.slot is not None and isinstance(switch, (int, float)):
        lines.append(f"  slot {result.slot}; the switch took {switch:.2f}s (write to confirmed)")
    checks = result.numbers.get("watch_checks")
    if isinstance(checks, int):
        lines.append(f"  watched for {result.numbers.get('watch_seconds', 0):.0f}s "
                     f"({checks} checks)")  # fmt: skip
    if result.followup is not None:
        back = result.followup
        lines.append(f"  rolled back to {back.image} (rollback #{back.deploy_id}, slot "
                     f"{back.slot}): {back.status}")  # fmt: skip
    lines += [f"  note: {note}" for note in result.notes]
    return lines


def deploy_summary(result: DeployResult) -> str:
    kind = "rollback" if result.rollback else "deploy"
    rows = [
        f"### tagkeeper {kind}: {md_code(result.image)} to {md_escape(result.environment)}: "
        f"{result.status}",
        "",
        md_escape(result.message),
        "",
        "| step | status | detail |",
        "|---|---|---|",
    ]
    for step in result.steps:
        rows.append(
            f"| {md_escape(step.phase)} | {md_escape(step.status)} | "
            f"{md_escape((step.detail or '')[:200])} |"
        )
    for name, report in result.reports.items():
        if not report.ok:
            rows += ["", f"#### {md_escape(name)} checks", ""]
            rows += verify_summary(report, report.container or name).splitlines()[2:]
    if result.followup is not None:
        rows += ["", f"#### rolled back to {md_code(result.followup.image)}", "",
                 md_escape(result.followup.message)]  # fmt: skip
    return "\n".join(rows)


def status_lines(report: StatusReport) -> list[str]:
    lines = [
        f"{report.environment}: {report.container or '-'} ({report.strategy}) "
        f"{report.image or ''}".rstrip()
    ]
    listed = report.containers
    if report.slots:  # the slot lines below show the slots' containers
        slotted = {s.container.state.id for s in report.slots if s.container is not None}
        listed = tuple(c for c in report.containers if c.state.id not in slotted)
    elif not listed:
        lines.append("  no container")
    for view in listed:
        state = view.state
        since = state.started_at.strftime("%Y-%m-%d %H:%M:%SZ") if state.started_at else "-"
        digest = (state.digest or "?")[:19]
        health = f"  {view.health}" if view.health else ""
        lines.append(
            f"  {view.role:<9} {state.name:<24} {state.status:<8} {state.image}  {digest}  "
            f"since {since}{health}"
        )
    lines += slot_lines(report)
    if report.lock is None:
        lines.append("lock: free")
    else:
        alive = "" if report.lock_running else " (gone)"
        lines.append(f"lock: held by {report.lock.describe()}{alive}")
    lines.append("last deploys:")
    if not report.deploys:
        lines.append("  none recorded")
    for record in report.deploys:
        gap = (record.numbers or {}).get("gap_seconds")
        extra = f" ({record.reason})" if record.reason else ""
        extra += f" gap {gap:.2f}s" if isinstance(gap, (int, float)) else ""
        kind = " rollback" if record.rollback else ""
        lines.append(
            f"  #{record.id} {record.started_at.strftime('%Y-%m-%d %H:%M:%SZ')} {record.tag} "
            f"{record.status}{kind}{extra}"
        )
    if report.drift:
        lines.append("drift:")
        lines += [f"  - [{d.code}] {d.message}" for d in report.drift]
    else:
        lines.append("drift: none")
    return lines


def slot_lines(report: StatusReport) -> list[str]:
    """The live slot, the weights (the file's, and what the proxy runs), each slot."""
    if report.proxy is None:
        return []
    file = report.proxy.file
    running = report.proxy.running
    shown = "unreadable" if file.weights is None else str(file.weights)
    lines = [
        f"live slot: {report.live_slot or '?'}",
        f"weights: {shown} (the file {file.path})",
    ]
    if running.weights is not None:
        lines.append(f"  the proxy runs: {running.weights}")
    elif running.generation is not None:
        same = "the file's" if running.generation == file.generation else "another"
        lines.append(f"  the proxy runs generation {running.generation} ({same})")
    elif running.error is not None:
        lines.append(f"  the proxy could not be asked: {running.error}")
    for view in report.slots:
        weight = "?" if view.weight is None else f"{view.weight}%"
        box = view.container
        if box is None:
            lines.append(f"  slot {view.slot:<8} :{view.port:<5} {weight:>4}  no container")
            continue
        state = box.state
        health = f"  {box.health}" if box.health else ""
        lines.append(
            f"  slot {view.slot:<8} :{view.port:<5} {weight:>4}  {state.name} {state.status} "
            f"{state.image}  {(state.digest or '?')[:19]}{health}"
        )
    return lines


def watch_lines(result: WatchResult) -> list[str]:
    report = result.report
    lines = [
        f"watch of {result.watched.reference} (deploy #{result.watched.id}, slot "
        f"{result.slot}) in {result.environment}: {result.status}"
        + (f" ({result.reason})" if result.reason and result.status != "passed" else ""),
        f"  {result.message}",
    ]
    for check in report.checks:
        if check.seen != "pass":
            lines.append(f"  at {check.at:.0f}s: {check.seen}: {check.detail}")
    if result.followup is not None:
        back = result.followup
        lines.append(f"  rolled back to {back.image} (rollback #{back.deploy_id}): "
                     f"{back.status}")  # fmt: skip
    lines += [f"  note: {note}" for note in result.notes]
    return lines


def watch_summary(result: WatchResult) -> str:
    rows = [
        f"### tagkeeper watch: {md_code(result.watched.reference)} in "
        f"{md_escape(result.environment)}: {result.status}",
        "",
        md_escape(result.message),
        "",
        "| at | seen | detail |",
        "|---:|---|---|",
    ]
    for check in result.report.checks:
        rows.append(f"| {check.at:.0f}s | {md_escape(check.seen)} | "
                    f"{md_escape(check.detail[:200])} |")  # fmt: skip
    return "\n".join(rows)


def switch_lines(result: SwitchResult) -> list[str]:
    before = "unreadable" if result.previous is None else str(result.previous)
    lines = [
        f"{result.environment}: {before} -> {result.weights}, confirmed through the proxy "
        f"in {result.applied.seconds:.2f}s"
    ]
    if result.deploy_id is not None:
        lines.append(f"  recorded as deploy #{result.deploy_id} (strategy switch)")
    lines += [f"  note: {note}" for note in result.notes]
    return lines


def print_lines(lines: Sequence[str]) -> None:
    for line in lines:
        common.out(line)
