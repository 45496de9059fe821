"""``tagkeeper prune``: keep the last N images of each channel, delete the rest safely.

For each ``--image``: list the versions and plan them (:mod:`tagkeeper.retention.runner`, which
a library user calls the same way), print the plan, ask for confirmation on a terminal,
apply it (:func:`tagkeeper.retention.runner.apply_planned`). A dry run prints the same plan and
stops there.

Non-interactive use (no terminal on stdin) must say ``--yes`` (or ``--dry-run``):
tagkeeper never deletes without either a person's answer or an explicit flag, in CI too.

``--env ENV`` (repeatable; default: config ``env``) protects, in each environment, what
the deploy history says is current, still being deployed, or the rollback target
(:func:`tagkeeper.rollback.protection.rollback_protection`); the plan names that reason.

httpx and the adapters are imported inside the command, so ``tagkeeper --help`` stays
fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from tagkeeper.cli import common, gha
from tagkeeper.config import Config, parse_duration
from tagkeeper.errors import Aborted, ExitCode, TagkeeperError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from tagkeeper.inventory import DeleteResult
    from tagkeeper.registries.factory import Kind
    from tagkeeper.retention.executor import ApplyReport
    from tagkeeper.retention.planner import Plan, Policy
    from tagkeeper.retention.runner import PlannedPrune, Snapshot
    from tagkeeper.rollback.protection import HistorySource
    from tagkeeper.rollback.resolve import DeployRecord


class HistoryFrom(StrEnum):
    """Where ``prune --env`` reads deploy history from."""

    ledger = "ledger"
    github = "github"
    auto = "auto"


# Which failure wins when several images end differently (worst last).
_SEVERITY = (
    ExitCode.OK,
    ExitCode.PARTIAL,
    ExitCode.CAP,
    ExitCode.RATE_LIMITED,
    ExitCode.REGISTRY,
    ExitCode.CONFIG,
    ExitCode.USAGE,
    ExitCode.AUTH,
    ExitCode.ABORTED,
)


def worst(a: ExitCode, b: ExitCode) -> ExitCode:
    """The more serious of two exit codes (unknown codes rank as the most serious)."""

    def rank(code: ExitCode) -> int:
        return _SEVERITY.index(code) if code in _SEVERITY else len(_SEVERITY)

    return a if rank(a) >= rank(b) else b


class _Lenient:
    """A history source whose failures become warnings (``--source auto`` with a ledger)."""

    def __init__(self, inner: HistorySource, problems: list[str]) -> None:
        self.inner = inner
        self.problems = problems

    @property
    def name(self) -> str:
        return self.inner.name

    def history(self, repository: str, environment: str) -> Sequence[DeployRecord]:
        try:
            return self.inner.history(repository, environment)
        except TagkeeperError as exc:
            self.problems.append(
                f"{self.inner.name} history of {environment} could not be read "
                f"({exc.message}); only the ledger protects it"
            )
            return []

    def environments(self, repository: str) -> Sequence[str]:
        try:
            return self.inner.environments(repository)
        except TagkeeperError:
            return []  # only names environments in a message; the history read said why


@dataclasses.dataclass
class RollbackGuard:
    """What ``prune --env`` protects so that each environment runs on and can roll back.

    ``sources`` are the deploy histories that answered (the ledger, GitHub
    Deployments); ``where`` says which, for warnings. ``required``: the environments
    named on the command line, which must have history for each image (the others only
    get a warning). ``allow_prerelease``: the ``previous`` setting whose rollback target
    to keep; ``None`` keeps the targets of both. No environments: nothing is protected
    and no source is opened.
    """

    environments: tuple[str, ...] = ()
    sources: tuple[HistorySource, ...] = ()
    where: str = ""
    allow_prerelease: bool | None = None
    required: tuple[str, ...] = ()
    notes: list[str] = dataclasses.field(default_factory=list)

    def protected(self, image: str) -> tuple[dict[str, str], list[str]]:
        """The ``protected`` mapping for ``image`` (digest or tag -> reason), and warnings.

        The history is looked up under the repository as ``--image`` writes it, which
        is what ``tagkeeper deploy``/``record`` store (e.g. ``ghcr.io/acme/app``). A
        required environment without history raises
        :class:`~tagkeeper.rollback.protection.NoHistory`.
        """
        from tagkeeper.refs import parse_reference
        from tagkeeper.rollback.protection import protection

        if not self.environments:
            return {}, []
        repository = parse_reference(image).repository
        self.notes.clear()
        result = protection(
            repository,
            self.environments,
            self.sources,
            allow_prerelease=self.allow_prerelease,
        )
        result.require(self.required)
        return result.protected, [*self.notes, *result.warnings(self.where)]


def rollback_guard(
    ctx: typer.Context,
    stack: ExitStack,
    *,
    env_flags: Sequence[str] | None,
    ledger_flag: Path | None,
    source: HistoryFrom | None,
    repo: str | None,
    token: str | None,
    api_url: str | None,
    environ: dict[str, str],
    allow_prerelease: bool | None = None,
) -> RollbackGuard:
    """Open the history sources ``prune --env`` reads; raises before anything is asked.

    The ledger is opened read-only and never created. An environment named on the
    command line (or a ``--ledger``/``--source`` given there) with no history source to
    read is a usage error: pruning as if nothing were deployed is what ``--env`` is
    there to prevent. An environment that only comes from the configuration's ``env``
    gets a warning instead, so a CI runner without a ledger can still prune. The same
    holds, per image, for a history that has no deploy of the image to an environment
    (see :meth:`RollbackGuard.protected`).
    """
    from tagkeeper.gate.rules import validate_env_name
    from tagkeeper.rollback.ledger import Ledger, LedgerHistory, resolve_path
    from tagkeeper.rollback.ledger import exists as ledger_exists

    config = common.state(ctx).config()
    explicit = bool(env_flags) or ledger_flag is not None or source is not None
    names = list(env_flags or [])
    if not names and config.env:
        names = [config.env]
    environments = tuple(dict.fromkeys(validate_env_name(n) for n in names))
    if not environments:
        if ledger_flag is not None or source is not None:
            raise UsageError(
                "--ledger and --source say where deploy history comes from, for --env",
                hint="add --env ENV for each environment whose rollback targets to keep",
            )
        return RollbackGuard()
    chosen = source or HistoryFrom.ledger
    path = resolve_path(ledger_flag, environ, config.ledger)
    sources: list[HistorySource] = []
    where: list[str] = []
    if chosen is not HistoryFrom.github and ledger_exists(path):
        ledger = Ledger(path, create=False)
        stack.callback(ledger.close)
        sources.append(LedgerHistory(ledger))
        where.append(f"ledger {path}")
    from tagkeeper.cli.rollback_cmd import _github, _github_configured

    github_wanted = chosen is HistoryFrom.github or (
        chosen is HistoryFrom.auto and _github_configured(repo, token)
    )
    notes: list[str] = []  # what a lenient source could not read, per image
    if github_wanted:
        deployments = _github(ctx, repo, token, api_url)
        # auto: GitHub adds to the ledger, and cannot fail the prune while the ledger answers
        sources.append(_Lenient(deployments, notes) if sources else deployments)
        where.append("GitHub Deployments")
    if not sources:
        told = ", ".join(f"--env {e}" for e in environments)
        missing = f"no deploy ledger at {path}"
        if chosen is HistoryFrom.auto:
            missing += " and no GitHub repository and token for Deployments"
        if explicit:
            raise UsageError(
                f"{told}: {missing}, so nothing deployed there is known to protect",
                hint="point --ledger or $TAGKEEPER_LEDGER at the ledger the deploys write "
                "(as root the default is /var/lib/tagkeeper/ledger.db), or read GitHub "
                "Deployments with --source github, or drop --env",
            )
        common.info(
            f"warning: config env {environments[0]!r}: {missing}; prune protects no "
            "rollback target (pass --env with --ledger or --source github to make it)"
        )
        return RollbackGuard()
    return RollbackGuard(
        environments,
        tuple(sources),
        ", ".join(where),
        allow_prerelease=allow_prerelease,
        required=tuple(dict.fromkeys(env_flags or ())),
        notes=notes,
    )


def _policy(
    config: Config,
    *,
    keep: int | None,
    keep_dev: int | None,
    keep_pr: int | None,
    keep_release: int | None,
    keep_prerelease: int | None,
    protect: list[str] | None,
    min_age: str | None,
    untagged: str | None,
    unmatched: str | None,
    max_delete: int | None,
) -> Policy:
    from tagkeeper.retention.planner import Policy

    base = common.pick(keep, config.keep, 5)
    age = common.pick(min_age, config.min_age, "1h")
    patterns = protect if protect else list(config.protect or ())
    return Policy(
        keep_dev=common.pick(keep_dev, config.keep_dev, base),
        keep_pr=common.pick(keep_pr, config.keep_pr, base),
        keep_release=common.pick(keep_release, config.keep_release, base),
        keep_prerelease=common.pick(keep_prerelease, config.keep_prerelease, base),
        protect=tuple(patterns),
        min_age=timedelta(seconds=parse_duration(age)),
        # a flag's word may be anything: Policy checks it
        untagged=cast("Any", untagged if untagged is not None else config.untagged or "delete"),
        unmatched=cast("Any", unmatched if unmatched is not None else config.unmatched or "keep"),
        max_delete=common.pick(max_delete, config.max_delete, None),
    )


def _short(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest[:19]


def _tags(tags: frozenset[str] | list[str], limit: int = 3) -> str:
    ordered = sorted(tags)
    if not ordered:
        return "-"
    text = ", ".join(ordered[:limit])
    return text + (f" (+{len(ordered) - limit})" if len(ordered) > limit else "")


def render_plan(image: str, plan: Plan) -> str:
    """The plan as a table for people."""
    rows = [("ACTION", "DIGEST", "TAGS", "REASON")]
    for decision in plan.keep:
        rows.append(
            ("KEEP", _short(decision.version.digest), _tags(decision.version.tags), decision.reason)
        )
    for decision in plan.delete:
        rows.append(
            (
                "DELETE",
                _short(decision.version.digest),
                _tags(decision.version.tags),
                decision.reason,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{image}: keep {len(plan.keep)}, delete {len(plan.delete)}"]
    for row in rows:
        lines.append(
            "  "
            + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3]))
            + "  "
            + row[3]
        )
    return "\n".join(lines)


def _summary_markdown(entries: list[dict[str, Any]], dry_run: bool) -> str:
    title = "### tagkeeper prune" + (" (dry run)" if dry_run else "")
    lines = [
        title,
        "",
        "| image | kept | planned deletes | deleted | problems |",
        "|---|---|---|---|---|",
    ]
    for entry in entries:
        applied = entry.get("applied") or {}
        counts = applied.get("counts", {}) if isinstance(applied, dict) else {}
        problems = []
        for key in ("failed", "refused", "changed", "skipped"):
            if counts.get(key):
                problems.append(f"{counts[key]} {key}")
        if entry.get("error"):
            problems.append(str(entry["error"]["message"]))
        lines.append(
            f"| {gha.md_code(entry['image'])} | {len(entry['keep'])} | "
            f"{len(entry['delete'])} | {counts.get('deleted', 0)} | "
            f"{gha.md_escape('; '.join(problems)) or '-'} |"
        )
    return "\n".join(lines) + "\n"


class _Progress:
    """One updating stderr line on a terminal; silent elsewhere."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled

    def __call__(self, result: DeleteResult) -> None:
        self.done += 1
        if self.enabled:
            sys.stderr.write(f"\r  {self.done}/{self.total} {result.status.value:<13}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            sys.stderr.write("\n")


def _interrupted_text(image: str, report: ApplyReport | None, scrub: Callable[[str], str]) -> str:
    """What Ctrl-C left of one image's prune: nothing deleted (before the deletes began),
    or the apply report with the versions deleted by name."""
    if report is None:
        return f"{image}: interrupted before any delete; nothing was deleted"
    from tagkeeper.retention import runner as pruning

    lines = [_report_text(image, pruning.scrubbed(report, scrub))]
    gone = [r for r in report.results if r.status.value in ("deleted", "already_gone")]
    lines += [f"  deleted: {_short(r.version.digest)} [{_tags(r.version.tags)}]" for r in gone]
    lines += [
        f"  left: {_short(v.digest)} [{_tags(v.tags)}]: {report.reasons.get(v.digest, '')}"
        for v in report.skipped
    ]
    return "\n".join(lines)


def _report_text(image: str, report: ApplyReport) -> str:
    parts = [f"{report.deleted} deleted"]
    for name, count in (
        ("already gone", report.already_gone),
        ("changed (skipped)", report.changed),
        ("refused", report.refused),
        ("failed", report.failed),
        ("not attempted", len(report.skipped)),
    ):
        if count:
            parts.append(f"{count} {name}")
    lines = [f"{image}: " + ", ".join(parts)]
    for result in report.results:
        if result.status.value in ("refused", "failed", "changed"):
            lines.append(
                f"  {result.status.value}: {_short(result.version.digest)} "
                f"[{_tags(result.version.tags)}] {result.detail}"
            )
    if report.replanned:
        lines.append(f"  {report.replanned}")
    if report.held_back:
        lines.append(f"  {report.held_back}")
    if report.stopped:
        lines.append(f"  {report.stopped}")
        if report.error_hint:
            lines.append(f"  hint: {report.error_hint}")
    return "\n".join(lines)


def prune(  # noqa: PLR0915, PLR0917 - Typer passes options as arguments
    ctx: typer.Context,
    images: Annotated[
        list[str] | None,
        typer.Option(
            "--image",
            "-i",
            help="Repository to prune, e.g. ghcr.io/OWNER/PACKAGE "
            "(repeatable; default: config 'image').",
            show_default=False,
        ),
    ] = None,
    keep: Annotated[
        int | None,
        typer.Option(
            "--keep",
            "-k",
            min=0,
            help="Newest images to keep in each channel (dev, pr, "
            "release, prerelease); default: config 'keep', else 5.",
            show_default=False,
        ),
    ] = None,
    keep_dev: Annotated[
        int | None,
        typer.Option(
            "--keep-dev", help="Override --keep for dev-<sha> images.", show_default=False
        ),
    ] = None,
    keep_pr: Annotated[
        int | None,
        typer.Option("--keep-pr", help="Override --keep for pr-<n> images.", show_default=False),
    ] = None,
    keep_release: Annotated[
        int | None,
        typer.Option(
            "--keep-release",
            help="Override --keep for releases (ordered by SemVer).",
            show_default=False,
        ),
    ] = None,
    keep_prerelease: Annotated[
        int | None,
        typer.Option(
            "--keep-prerelease", help="Override --keep for prereleases.", show_default=False
        ),
    ] = None,
    protect: Annotated[
        list[str] | None,
        typer.Option(
            "--protect",
            help="Never delete images with a tag matching this glob (repeatable).",
            show_default=False,
        ),
    ] = None,
    min_age: Annotated[
        str | None,
        typer.Option(
            "--min-age",
            help="Grace period: nothing younger is deleted (default 1h).",
            show_default=False,
        ),
    ] = None,
    untagged: Annotated[
        str | None,
        typer.Option(
            "--untagged",
            help="keep|delete untagged, unreachable versions (default delete).",
            show_default=False,
        ),
    ] = None,
    unmatched: Annotated[
        str | None,
        typer.Option(
            "--unmatched",
            help="keep|delete images whose tags match no channel "
            "(latest, nightly...; default keep).",
            show_default=False,
        ),
    ] = None,
    max_delete: Annotated[
        int | None,
        typer.Option(
            "--max-delete",
            help="Refuse (deleting nothing) when the plan deletes more than this.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; delete nothing.")
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", help="Do not ask for confirmation (needed when stdin is not a terminal)."
        ),
    ] = False,
    fmt: common.FormatOpt = common.Format.text,
    token: common.TokenOpt = None,
    api_url: common.ApiUrlOpt = None,
    registry_url: common.RegistryUrlOpt = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help="Backend: ghcr, oci or local (default: from the image host).",
            show_default=False,
        ),
    ] = None,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="Prune the local Docker engine ($DOCKER_HOST or the default socket); "
            "--image names a repository as 'docker images' shows it. Same as --kind local.",
        ),
    ] = False,
    dangling: Annotated[
        bool,
        typer.Option(
            "--dangling",
            help="With --local: also remove the repository's untagged leftovers "
            "(no tag in any repository, a REPO@sha256 reference).",
        ),
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="The --image registries' own hosts may speak plain http:// or have a "
            "certificate that is not verified (OCI backend only; never a token service "
            "on another host).",
        ),
    ] = False,
    username: Annotated[
        str | None,
        typer.Option(
            "--username",
            help="OCI registry user (with --password-stdin; default: "
            "$TAGKEEPER_REGISTRY_USERNAME, else Docker's config.json).",
            show_default=False,
        ),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the OCI registry password or token from stdin (default: "
            "$TAGKEEPER_REGISTRY_PASSWORD, else Docker's config.json).",
        ),
    ] = False,
    manifest_cache: Annotated[
        Path | None,
        typer.Option(
            "--manifest-cache",
            help="Directory caching manifests by digest between runs (verified on read).",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    max_wait: Annotated[
        str | None,
        typer.Option(
            "--max-wait",
            help="Wait up to this long (e.g. 1h) when a registry or GitHub asks to wait "
            "(retry-after, a rate limit's reset); a longer wait stops the run with exit 10 "
            "(default 5m).",
            show_default=False,
        ),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            "-e",
            metavar="ENV",
            help="Keep what is current, being deployed, and the rollback target in this "
            "environment, from the deploy history (repeatable; default: config 'env').",
            show_default=False,
        ),
    ] = None,
    allow_prerelease: Annotated[
        bool | None,
        typer.Option(
            "--allow-prerelease/--no-allow-prerelease",
            help="Keep the rollback target 'previous' answers with (or without) "
            "--allow-prerelease; default: keep both answers.",
            show_default=False,
        ),
    ] = None,
    ledger_path: Annotated[
        Path | None,
        typer.Option(
            "--ledger",
            metavar="PATH",
            dir_okay=False,
            help="The deploy ledger --env reads (default: $TAGKEEPER_LEDGER, config "
            "'ledger', else /var/lib/tagkeeper/ledger.db as root or "
            "$XDG_STATE_HOME/tagkeeper/ledger.db). prune never creates it.",
            show_default=False,
        ),
    ] = None,
    source: Annotated[
        HistoryFrom | None,
        typer.Option(
            "--source",
            help="Deploy history for --env: ledger (default), github (GitHub "
            "Deployments; its failures stop the prune of that image), or auto (the ledger "
            "when it exists, plus GitHub Deployments when a repository and token are set).",
            show_default=False,
        ),
    ] = None,
    repo: Annotated[
        str | None,
        typer.Option(
            "--repo",
            metavar="OWNER/NAME",
            help="GitHub repository whose Deployments --source github reads "
            "(default: $GITHUB_REPOSITORY).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Delete all but the newest images of each channel, never breaking a kept image.

    Exit codes: 0 done (also: nothing to delete), 2 usage (also: --env with no deploy
    history to read), 4 auth/permission, 5 registry or network (also when one stops
    the deletes midway: the report still lists what was deleted), 6 partial (some deletes
    failed, were refused or changed: rerun), 7 the plan exceeds --max-delete (nothing
    deleted), 10 stopped on the rate limit (rerun later), 11 declined, 12 the deploy
    ledger cannot be read, 130 interrupted by Ctrl-C (what was deleted and what is left
    are listed; rerun to continue).
    """
    from tagkeeper.refs import parse_reference
    from tagkeeper.registries.factory import (
        KINDS,
        BackendOptions,
        detect_kind,
        open_backend,
        token_from_env,
    )
    from tagkeeper.retention import runner as pruning
    from tagkeeper.retention.executor import Interrupted
    from tagkeeper.rollback.protection import NoHistory
    from tagkeeper.transport import DEFAULT_MAX_WAIT, build_client

    config = common.state(ctx).config()
    targets = list(images) if images else config.images()
    if not targets:
        raise UsageError(
            "no image to prune",
            hint="pass --image ghcr.io/OWNER/PACKAGE or set 'image' in tagkeeper.toml",
        )
    if kind is not None and kind not in KINDS:
        raise UsageError(f"--kind {kind!r} is not a backend", hint="use ghcr, oci or local")
    if local:
        if kind not in (None, "local"):
            raise UsageError(f"--local contradicts --kind {kind}", hint="pass one of them")
        kind = "local"
    if dangling and kind != "local":
        raise UsageError(
            "--dangling applies to the local Docker engine only",
            hint="add --local (registries delete untagged versions by policy: --untagged)",
        )
    policy = _policy(
        config,
        keep=keep,
        keep_dev=keep_dev,
        keep_pr=keep_pr,
        keep_release=keep_release,
        keep_prerelease=keep_prerelease,
        protect=protect,
        min_age=min_age,
        untagged=untagged,
        unmatched=unmatched,
        max_delete=max_delete,
    )
    wait = parse_duration(max_wait) if max_wait else DEFAULT_MAX_WAIT
    interactive = sys.stdin.isatty()
    if not dry_run and not yes and not interactive:
        raise UsageError(
            "prune deletes images and stdin is not a terminal to confirm it",
            hint="pass --yes to delete without asking, or --dry-run to only print the plan",
        )
    environ = dict(os.environ)
    if fmt is common.Format.github:
        gha.preflight(environ)  # fail before deleting, not when reporting afterwards
    secret = token_from_env(token, environ)
    registry_password = None
    if password_stdin:
        from tagkeeper.secret import Secret

        registry_password = Secret(sys.stdin.read().rstrip("\r\n"))
        if not registry_password:
            raise UsageError("--password-stdin read an empty password")
    from tagkeeper.retention.times import time_needed

    options = BackendOptions(
        kind=cast("Kind | None", kind),  # checked against KINDS above
        token=secret,
        api_url=common.url_setting(ctx, "api-url", api_url, environ),
        registry_url=common.url_setting(ctx, "registry-url", registry_url, environ),
        manifest_cache=manifest_cache,
        max_wait=wait,
        insecure=insecure,
        dangling=dangling,
        username=username,
        password=registry_password,
        time_needed=time_needed(policy),
        environ=environ,
    )
    kinds: dict[str, Kind] = {}
    for target in targets:  # bad names are usage errors before any request
        kinds[target] = detect_kind(target, options)
        if kind == "local":
            from tagkeeper.registries.local import engine_repository

            engine_repository(target)
    if not images:  # from the configuration: the checkout's, inside Actions
        from tagkeeper.destinations import check_configured_images

        oci_hosts = [parse_reference(t).host or "" for t, k in kinds.items() if k == "oci"]
        check_configured_images(
            oci_hosts, config, environ, password_given=registry_password is not None
        )
    scrub = secret.scrub if secret else (lambda text: text)
    entries: list[dict[str, Any]] = []
    code = ExitCode.OK
    people = fmt is not common.Format.json
    progress_on = sys.stderr.isatty()
    insecure_hosts = [h for t in targets if (h := parse_reference(t).host)] if insecure else []
    with build_client(insecure_hosts=insecure_hosts) as client, ExitStack() as stack:
        guard = rollback_guard(
            ctx,
            stack,
            env_flags=env,
            ledger_flag=ledger_path,
            source=source,
            repo=repo,
            token=token,
            api_url=common.url_setting(ctx, "api-url", api_url, environ),
            environ=environ,
            allow_prerelease=allow_prerelease,
        )
        # Deploy history first, for every image: an --env with no history for one of
        # them stops the run before any registry is asked (NoHistory is a usage error).
        histories: dict[str, tuple[dict[str, str], list[str]] | TagkeeperError] = {}
        for target in targets:
            try:
                histories[target] = guard.protected(target)
            except NoHistory:
                raise
            except TagkeeperError as exc:  # e.g. GitHub down: that image is not pruned
                histories[target] = exc
        interrupted = False
        for target in targets:
            if interrupted:
                common.info(f"{target}: not started (interrupted)")
                continue
            backend = None
            snap: Snapshot | None = None
            image_plan: PlannedPrune | None = None
            report: ApplyReport | None = None
            error: TagkeeperError | None = None
            try:
                known = histories[target]
                if isinstance(known, TagkeeperError):
                    raise known
                history, noticed_history = known
                backend = open_backend(
                    target, dataclasses.replace(options, kind=kinds[target]), client
                )
                versions = backend.versions()
                # + what the backend itself keeps (the local engine: images containers use)
                snap = pruning.snapshot(backend, protected=history, versions=versions)
                # + what the backend noticed (e.g. OCI: unknown creation times), and
                # environments with no known deploy
                image_plan = snap.plan(policy, now=datetime.now(UTC), notes=noticed_history)
                the_plan = image_plan.plan
                if people:
                    common.out(render_plan(backend.display, the_plan))
                for warning in the_plan.warnings:
                    common.info(f"warning: {backend.display}: {warning}")
                    if fmt is common.Format.github:
                        typer.echo(
                            gha.annotation("warning", f"{backend.display}: {warning}"), err=True
                        )
                image_plan.check_cap()
                if not the_plan.delete:
                    common.info(f"{backend.display}: nothing to delete")
                    continue
                if dry_run:
                    common.info(f"{backend.display}: dry run, nothing deleted")
                    continue
                pruning.prepare_deletes(image_plan)  # e.g. OCI refuses before anything is asked
                if not yes and not people:  # json on a terminal: what is asked, on stderr
                    common.info(render_plan(backend.display, the_plan))
                if not yes and not typer.confirm(
                    f"Delete {len(the_plan.delete)} versions of {backend.display}?",
                    default=False,
                    err=True,
                ):
                    raise Aborted(
                        f"{backend.display}: nothing was deleted",
                        hint="pass --dry-run to only print the plan",
                    )
                bar = _Progress(len(the_plan.delete), progress_on)
                try:
                    report = pruning.apply_planned(image_plan, on_result=bar)
                except Interrupted as stop:
                    report = stop.report  # what was deleted and what is left
                    raise
                finally:
                    bar.close()
                # an error's words: scrubbed like any other
                common.info(_report_text(backend.display, pruning.scrubbed(report, scrub)))
                code = worst(code, report.exit_code)
            except TagkeeperError as exc:
                error = exc
                common.error(scrub(exc.diagnostics()))
                code = worst(code, exc.exit_code)
                if isinstance(exc, Aborted):
                    break
            except KeyboardInterrupt:  # Ctrl-C: say what was done, then exit 130
                interrupted = True
                code = worst(code, ExitCode.INTERRUPTED)
                common.info(_interrupted_text(target, report, scrub))
            finally:
                result = pruning.PruneResult(
                    target,
                    plan=image_plan.plan if image_plan is not None else None,
                    report=report,
                    protected=snap.protected if snap is not None else {},
                    error=error,
                    requests=dict(backend.stats.by_kind) if backend is not None else {},
                )
                entries.append(result.to_json(scrub))

    payload = {"images": entries, "dry_run": dry_run}
    if fmt is common.Format.json:
        common.emit_json(payload)
    elif fmt is common.Format.github:
        deleted = sum((e["applied"] or {}).get("counts", {}).get("deleted", 0) for e in entries)
        planned = sum(len(e["delete"]) for e in entries)
        gha.write_outputs(
            {
                # a dry run says what it would delete (the action documents it so)
                "deleted": str(planned if dry_run else deleted),
                "kept": str(sum(len(e["keep"]) for e in entries)),
                "planned": str(planned),
                "json": json.dumps(payload, separators=(",", ":")),
            }
        )
        gha.append_summary(_summary_markdown(entries, dry_run))
    if code is not ExitCode.OK:
        raise typer.Exit(int(code))
