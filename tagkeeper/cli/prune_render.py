"""How ``tagkeeper prune`` shows a run: one renderer per ``--format``, and the report file.

The renderers take the library's typed results (:class:`~tagkeeper.retention.planner.
Plan`, :class:`~tagkeeper.retention.executor.ApplyReport`,
:class:`~tagkeeper.retention.runner.PruneRun`), never the JSON dictionaries, and escape
through :mod:`tagkeeper.cli.render` only.

* ``text``: each plan as a table on stdout as it is made; reports on stderr.
* ``json``: the whole run as one document on stdout at the end (the plan tables go
  nowhere: stdout is for the machine).
* ``github``: the text output, plus the step outputs (``deleted``, ``kept``,
  ``planned``, ``json``) and a step summary, both sized to fit GitHub's limits: a job's
  outputs may total 1 MB (counted as UTF-16) and a step summary 1 MiB. The ``json``
  output is the whole run when it fits :data:`JSON_OUTPUT_LIMIT`, else a short form
  (``"truncated": true``, counts per image) that says where the full plan is
  (``--report FILE``). The summary shows counts per rule, the tagged versions deleted
  (the first :data:`SUMMARY_ROWS`, then a count), and what is kept and why.

``--report FILE`` writes the whole run, without any cap: JSON (``.json``, the
document of ``--format json``) or Markdown (``.md``, the summary with every row), for a
workflow to upload as an artifact.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tagkeeper.cli import common, gha, render
from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from tagkeeper.retention.executor import ApplyReport
    from tagkeeper.retention.planner import Decision, Plan
    from tagkeeper.retention.runner import PruneResult, PruneRun

# A job's outputs may total 1 MB, counted as UTF-16 (2 bytes per ASCII character): the
# json output stays well under half of it, so the other outputs and steps have room.
JSON_OUTPUT_LIMIT = 200_000
# Rows of deleted (and of kept) tagged versions per image in the step summary.
SUMMARY_ROWS = 100
# A step summary may be 1 MiB; past this many characters the details are left out.
SUMMARY_LIMIT = 900_000
REPORT_KINDS = (".json", ".md")


def _short(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest[:19]


def _tags(tags: Iterable[str], limit: int = 3) -> str:
    ordered = sorted(tags)
    if not ordered:
        return "-"
    text = ", ".join(render.text(t) for t in ordered[:limit])
    return text + (f" (+{len(ordered) - limit})" if len(ordered) > limit else "")


def _outcomes(report: ApplyReport) -> list[tuple[str, str, int]]:
    """How the deletes that did not simply go through ended: (words for the text report,
    the count's name in the summary's problems, or '' when it is no problem; count)."""
    return [
        ("already gone", "", report.already_gone),
        ("changed (skipped)", "changed", report.changed),
        ("refused", "refused", report.refused),
        ("failed", "failed", report.failed),
        ("not attempted", "skipped", len(report.skipped)),
    ]


# -- text ------------------------------------------------------------------------------------


def plan_table(image: str, plan: Plan) -> str:
    """The plan as a table for people."""
    rows = [("ACTION", "DIGEST", "TAGS", "REASON")]
    for action, decisions in (("KEEP", plan.keep), ("DELETE", plan.delete)):
        rows.extend(
            (action, _short(d.version.digest), _tags(d.version.tags), render.text(d.reason))
            for d in decisions
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{render.text(image)}: keep {len(plan.keep)}, delete {len(plan.delete)}"]
    for row in rows:
        cells = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3]))
        lines.append(f"  {cells}  {row[3]}")
    return "\n".join(lines)


def report_text(image: str, report: ApplyReport) -> str:
    """What the deletes of one image did, for people (stderr)."""
    parts = [f"{report.deleted} deleted"]
    parts += [f"{count} {text}" for text, _, count in _outcomes(report) if count]
    lines = [f"{render.text(image)}: " + ", ".join(parts)]
    for result in report.results:
        if result.status.value in ("refused", "failed", "changed"):
            lines.append(
                f"  {result.status.value}: {_short(result.version.digest)} "
                f"[{_tags(result.version.tags)}] {render.text(result.detail or '')}"
            )
    for line in (report.replanned, report.held_back, report.stopped):
        if line:
            lines.append(f"  {render.text(line)}")
    if report.stopped and report.error_hint:
        lines.append(f"  hint: {render.text(report.error_hint)}")
    return "\n".join(lines)


def interrupted_text(image: str, report: ApplyReport | None) -> str:
    """What Ctrl-C left of one image's prune: nothing deleted (before the deletes began),
    or the apply report with the versions deleted and left by name."""
    if report is None:
        return f"{render.text(image)}: interrupted before any delete; nothing was deleted"
    lines = [report_text(image, report)]
    gone = [r for r in report.results if r.status.value in ("deleted", "already_gone")]
    lines += [f"  deleted: {_short(r.version.digest)} [{_tags(r.version.tags)}]" for r in gone]
    lines += [
        f"  left: {_short(v.digest)} [{_tags(v.tags)}]: "
        f"{render.text(report.reasons.get(v.digest, ''))}"
        for v in report.skipped
    ]
    return "\n".join(lines)


# -- Markdown --------------------------------------------------------------------------------


def _problems(result: PruneResult, scrub: Callable[[str], str]) -> str:
    problems = []
    if result.report is not None:
        outcomes = _outcomes(result.report)
        problems += [f"{count} {name}" for _, name, count in outcomes if name and count]
    entry_error = result.to_json(scrub)["error"]
    if entry_error:
        problems.append(str(entry_error["message"]))
    return render.md("; ".join(problems)) or "-"


def _rule_counts(plan: Plan) -> list[str]:
    counts = Counter((("keep" if d.keep else "delete"), d.rule) for d in plan.decisions)
    lines = ["| rule | action | versions |", "|---|---|---|"]
    lines += [
        f"| {render.code(rule)} | {action} | {count} |"
        for (action, rule), count in sorted(counts.items())
    ]
    return lines


def _rows(title: str, decisions: Sequence[Decision], limit: int | None) -> list[str]:
    tagged = [d for d in decisions if d.version.tags]
    if not tagged:
        return []
    shown = tagged if limit is None else tagged[:limit]
    lines = ["", f"{title} ({len(tagged)}):", "", "| digest | tags | rule | reason |"]
    lines.append("|---|---|---|---|")
    lines += [
        f"| {render.code(_short(d.version.digest))} | "
        f"{', '.join(render.code(t) for t in sorted(d.version.tags))} | "
        f"{render.code(d.rule)} | {render.md(d.reason)} |"
        for d in shown
    ]
    if len(tagged) > len(shown):
        lines.append(f"\n... and {len(tagged) - len(shown)} more (the full plan: --report FILE)")
    return lines


def _image_details(result: PruneResult, dry_run: bool, limit: int | None) -> list[str]:
    plan = result.plan
    if plan is None:
        return []
    untagged = sum(1 for d in plan.delete if not d.version.tags)
    verb = "Would delete" if dry_run else "Deletes"
    lines = ["", f"#### {render.code(result.image)}", "", *_rule_counts(plan)]
    lines += _rows(f"{verb}, tagged", plan.delete, limit)
    if untagged:
        lines.append(f"\nand {untagged} untagged versions (garbage or unreachable).")
    lines += _rows("Keeps, tagged, and why", plan.keep, limit)
    for warning in plan.warnings:
        lines.append(f"\n- warning: {render.md(warning)}")
    return lines


def summary_markdown(
    run: PruneRun,
    *,
    scrub: Callable[[str], str] = str,
    limit: int | None = SUMMARY_ROWS,
    budget: int | None = SUMMARY_LIMIT,
) -> str:
    """The run as Markdown: a table of images, then per image the counts per rule and
    the tagged versions deleted and kept (``limit`` rows of each; ``None``: all). Past
    ``budget`` characters the per-image details are left out (``None``: no budget)."""
    title = "### tagkeeper prune" + (" (dry run)" if run.dry_run else "")
    lines = [
        title,
        "",
        "| image | kept | planned deletes | deleted | problems |",
        "|---|---|---|---|---|",
    ]
    for result in run.results:
        plan = result.plan
        kept = len(plan.keep) if plan is not None else 0
        planned = len(plan.delete) if plan is not None else 0
        deleted = result.report.deleted if result.report is not None else 0
        lines.append(
            f"| {render.code(result.image)} | {kept} | {planned} | {deleted} | "
            f"{_problems(result, scrub)} |"
        )
    if len(run.results) > 1 or run.left:
        lines.append(
            f"| **total: {len(run.results)} images** | {run.kept} | {run.planned} | "
            f"{run.deleted} | {run.totals()['failed']} failed |"
        )
    if run.stopped:
        lines += ["", render.md(scrub(run.stopped))]
    if run.left:
        shown = ", ".join(render.code(name) for name in run.left[:SUMMARY_ROWS])
        more = f" and {len(run.left) - SUMMARY_ROWS} more" if len(run.left) > SUMMARY_ROWS else ""
        lines += ["", f"Left for the next run ({len(run.left)}): {shown}{more}"]
    for warning in run.warnings:
        lines += ["", f"- warning: {render.md(scrub(warning))}"]
    head = "\n".join(lines) + "\n"
    details: list[str] = []
    for result in run.results:
        details += _image_details(result, run.dry_run, limit)
    body = "\n".join(details) + "\n" if details else ""
    if budget is not None and len(head) + len(body) > budget:
        body = "\nThe details per image are too long for a step summary: see --report FILE.\n"
    return head + body


# -- GitHub step outputs ---------------------------------------------------------------------


def short_json(run: PruneRun, scrub: Callable[[str], str], report: Path | None) -> dict[str, Any]:
    """The ``json`` output when the whole run does not fit: counts per image."""
    images = []
    for result in run.results:
        entry = result.to_json(scrub)
        images.append(
            {
                "image": result.image,
                "kept": len(entry["keep"]),
                "planned": len(entry["delete"]),
                "deleted": result.report.deleted if result.report is not None else 0,
                "warnings": entry["warnings"],
                "error": entry["error"],
            }
        )
    return {
        "dry_run": run.dry_run,
        "truncated": True,
        "report": str(report) if report is not None else None,
        "images": images,
        "total": run.totals(),
        "left": list(run.left),
        "stopped": scrub(run.stopped) if run.stopped else None,
    }


def json_output(
    run: PruneRun,
    *,
    scrub: Callable[[str], str] = str,
    report: Path | None = None,
    limit: int = JSON_OUTPUT_LIMIT,
) -> str:
    """The ``json`` step output: the whole run when it fits ``limit`` characters, else
    the short form of :func:`short_json`."""
    whole = json.dumps(run.to_json(scrub), separators=(",", ":"))
    if len(whole) > limit:
        whole = json.dumps(short_json(run, scrub, report), separators=(",", ":"))
    return whole


# -- the report file -------------------------------------------------------------------------


def check_report_path(path: Path) -> None:
    """Refuse a report file whose kind cannot be told, before anything is done."""
    if path.suffix.lower() not in REPORT_KINDS:
        raise UsageError(
            f"--report {path}: the file name must end in .json or .md",
            hint="e.g. --report prune-report.json (the plan for machines) or "
            "--report prune-report.md (for people)",
        )


def write_report(path: Path, run: PruneRun, scrub: Callable[[str], str] = str) -> None:
    """Write the whole run to ``path``: JSON or Markdown by its extension, no cap."""
    check_report_path(path)
    if path.suffix.lower() == ".json":
        content = json.dumps(run.to_json(scrub), indent=2) + "\n"
    else:
        content = summary_markdown(run, scrub=scrub, limit=None, budget=None)
    try:
        Path(path).write_text(content, encoding="utf-8")
    except OSError as exc:
        raise UsageError(
            f"--report {path}: cannot be written ({exc.strerror or type(exc).__name__})",
            hint="name a file in a folder that exists and is writable",
        ) from None


# -- the renderers, one per --format ---------------------------------------------------------


class TextRenderer:
    """``--format text``: plans on stdout as they are made, warnings on stderr."""

    def plan(self, image: str, plan: Plan) -> None:
        common.out(plan_table(image, plan))

    def before_asking(self, image: str, plan: Plan) -> None:
        """What a person sees before the question (the plan is already on the screen)."""
        del image, plan

    def warning(self, image: str, text: str) -> None:
        common.info(f"warning: {render.text(image)}: {render.text(text)}")

    def finish(self, run: PruneRun, *, scrub: Callable[[str], str], report: Path | None) -> None:
        """Everything written once the run is over: for a run of several images, the
        totals and what is left (stderr)."""
        del report
        for line in totals_text(run, scrub):
            common.info(line)


def totals_text(run: PruneRun, scrub: Callable[[str], str] = str) -> list[str]:
    """The run's totals for people, when it was about several images (else nothing)."""
    if len(run.results) <= 1 and not run.left and not run.warnings:
        return []
    total = run.totals()
    verb = "would delete" if run.dry_run else "deleted"
    done = run.planned if run.dry_run else run.deleted
    lines = [f"warning: {render.text(scrub(w))}" for w in run.warnings]
    lines.append(
        f"total: {total['images']} images, {total['failed']} failed, kept {total['kept']}, "
        f"{verb} {done} (planned {total['planned']}), {total['requests']} requests"
    )
    if run.stopped:
        lines.append(render.text(scrub(run.stopped)))
    if run.left:
        names = ", ".join(render.text(n) for n in run.left[:20])
        more = f" and {len(run.left) - 20} more" if len(run.left) > 20 else ""
        lines.append(f"left for the next run ({len(run.left)}): {names}{more}")
    return lines


class JsonRenderer(TextRenderer):
    """``--format json``: the whole run as one document on stdout, at the end."""

    def plan(self, image: str, plan: Plan) -> None:
        del image, plan  # stdout is for the document

    def before_asking(self, image: str, plan: Plan) -> None:
        common.info(plan_table(image, plan))  # on a terminal: what is asked, on stderr

    def finish(self, run: PruneRun, *, scrub: Callable[[str], str], report: Path | None) -> None:
        common.emit_json(run.to_json(scrub))
        for line in totals_text(run, scrub):  # for people: stderr
            common.info(line)


class GithubRenderer(TextRenderer):
    """``--format github``: the text output, warning annotations, the step outputs and
    the step summary (both sized to GitHub's limits)."""

    def warning(self, image: str, text: str) -> None:
        super().warning(image, text)
        typer.echo(gha.annotation("warning", f"{image}: {text}"), err=True)

    def finish(self, run: PruneRun, *, scrub: Callable[[str], str], report: Path | None) -> None:
        super().finish(run, scrub=scrub, report=report)
        gha.write_outputs(
            {
                "deleted": str(run.deleted),  # 0 in a dry run
                "kept": str(run.kept),
                "planned": str(run.planned),  # what the plans delete, dry run or not
                "left": str(len(run.left)),  # images a stopped run did not reach
                "json": json_output(run, scrub=scrub, report=report),
            }
        )
        gha.append_summary(summary_markdown(run, scrub=scrub))


RENDERERS: dict[common.Format, type[TextRenderer]] = {
    common.Format.text: TextRenderer,
    common.Format.json: JsonRenderer,
    common.Format.github: GithubRenderer,
}
