"""``tagkeeper prune``: keep the last N images of each channel, delete the rest safely.

The command parses its flags, builds the policy (:func:`tagkeeper.retention.runner.
configured_policy`), the backend options and the history sources ``--env`` reads
(:func:`tagkeeper.rollback.sources.protection_sources`), then hands the whole run to
:func:`tagkeeper.retention.runner.prune_images`, which a library user calls the same way.
What it adds is the terminal: the plan and reports through the renderer of ``--format``
(:mod:`tagkeeper.cli.prune_render`), the question before deleting, the progress line.

Non-interactive use (no terminal on stdin) must say ``--yes`` (or ``--dry-run``):
tagkeeper never deletes without either a person's answer or an explicit flag, in CI too.

httpx and the adapters are imported inside the command, so ``tagkeeper --help`` stays
fast.

It is past 600 lines because of its interface, not its logic: about 300 of them are the
declarations and help texts of prune's 33 options, which are the CLI's contract.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from tagkeeper.cli import common, gha
from tagkeeper.config import parse_duration
from tagkeeper.errors import ExitCode, TagkeeperError, UsageError
from tagkeeper.retention.runner import PruneListener
from tagkeeper.rollback.sources import HistoryFrom

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tagkeeper.cli.prune_render import TextRenderer
    from tagkeeper.inventory import DeleteResult
    from tagkeeper.registries.factory import Kind
    from tagkeeper.retention.executor import ApplyReport
    from tagkeeper.retention.planner import Plan
    from tagkeeper.rollback.sources import RollbackGuard


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
    allow_prerelease: bool | None = None,
    keep_deploys: int | None = None,
) -> RollbackGuard:
    """The history sources ``prune --env`` reads
    (:func:`tagkeeper.rollback.sources.protection_sources`): the environments named on
    the command line are required, the configuration's ``env`` only warned about."""
    from tagkeeper.cli.rollback_cmd import history_settings
    from tagkeeper.rollback.sources import protection_sources

    config = common.state(ctx).config()
    names = list(env_flags or [])
    if not names and config.env:
        names = [config.env]
    deploys = keep_deploys if keep_deploys is not None else (config.keep_deploys or 0)
    if deploys and not names:
        if keep_deploys is not None:
            raise UsageError(
                "--keep-deploys counts the deploys of each --env; no environment is named",
                hint="add --env ENV for each environment whose last deploys to keep",
            )
        common.info(
            f"warning: config keep-deploys {deploys} keeps nothing without an environment "
            "(pass --env ENV or set 'env')"
        )
    if not names and (ledger_flag is not None or source is not None):
        raise UsageError(
            "--ledger and --source say where deploy history comes from, for --env",
            hint="add --env ENV for each environment whose rollback targets to keep",
        )
    settings = history_settings(
        ctx, ledger_path=ledger_flag, repo=repo, token=token, api_url=api_url
    )
    guard = protection_sources(
        names,
        settings=settings,
        stack=stack,
        source=source,
        required=env_flags or (),
        allow_prerelease=allow_prerelease,
        strict=bool(env_flags) or ledger_flag is not None or source is not None,
    )
    if guard.warning:
        common.info(f"warning: {guard.warning}")
    guard.keep_deploys = deploys
    return guard


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


def prune(  # noqa: PLR0915, PLR0917 - Typer passes options as arguments
    ctx: typer.Context,
    images: Annotated[
        list[str] | None,
        typer.Option(
            "--image",
            "-i",
            help="Repository to prune, e.g. ghcr.io/OWNER/PACKAGE, or a pattern: "
            "'ghcr.io/OWNER/*' ('*' and '?' stay inside one path segment, '**' crosses "
            "them), matched against the owner's packages (GHCR) or the registry's "
            "_catalog (repeatable; default: config 'image').",
            show_default=False,
        ),
    ] = None,
    all_of: Annotated[
        list[str] | None,
        typer.Option(
            "--all",
            metavar="REGISTRY/OWNER",
            help="Prune every package of an owner, e.g. ghcr.io/acme (the same as "
            "--image 'ghcr.io/acme/**'; an OCI registry alone: its whole catalog). "
            "Repeatable.",
            show_default=False,
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            metavar="GLOB",
            help="Leave out the packages matching this pattern (same form as --image, "
            "e.g. 'ghcr.io/acme/*-cache'; repeatable).",
            show_default=False,
        ),
    ] = None,
    state_file: Annotated[
        Path | None,
        typer.Option(
            "--state",
            metavar="FILE",
            dir_okay=False,
            help="JSON file remembering when each package was last pruned, so a run "
            "stopped on the rate limit (exit 10) is followed by one that starts with what "
            "it left (created when missing).",
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
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            help="Delete only images older than this (e.g. 30d), as a second condition "
            "beside --keep: an image goes only when both say so (default: config "
            "'older-than', else no age condition).",
            show_default=False,
        ),
    ] = None,
    protect_regex: Annotated[
        list[str] | None,
        typer.Option(
            "--protect-regex",
            metavar="REGEX",
            help="Never delete images with a tag that this Python regular expression "
            "matches in full (the whole tag, not a part: 'v1\\.\\d+' keeps v1.2, not "
            "v1.2.3); repeatable, beside --protect globs.",
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
    scheme: common.VersionSchemeOpt = None,
    keep_deploys: Annotated[
        int | None,
        typer.Option(
            "--keep-deploys",
            metavar="K",
            min=0,
            help="With --env: also keep the images of the last K successful deploys of "
            "each environment (the current one counts among the K; a redeploy of the same "
            "image counts once); default: config 'keep-deploys', else 0.",
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
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="FILE",
            dir_okay=False,
            help="Also write the whole run to FILE, without any cap: JSON (.json) or "
            "Markdown (.md), e.g. for a workflow to upload as an artifact.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Delete all but the newest images of each channel, never breaking a kept image.

    Exit codes: 0 done (also: nothing to delete), 2 usage (also: --env with no deploy
    history to read), 4 auth/permission, 5 registry or network (also when one stops
    the deletes midway: the report still lists what was deleted), 6 partial (some deletes
    failed, were refused or changed: rerun), 7 the plan exceeds --max-delete (nothing
    deleted), 10 stopped on the rate limit (rerun later; with several packages, the run
    stops between them when the budget left cannot cover the next one), 11 declined, 12
    the deploy ledger cannot be read.
    """
    from tagkeeper.cli import prune_render
    from tagkeeper.refs import parse_reference
    from tagkeeper.registries.factory import KINDS, BackendOptions, token_from_env
    from tagkeeper.registries.ghcr_api import GhcrSession
    from tagkeeper.retention.packages import PruneState, prune_targets
    from tagkeeper.retention.runner import RunInterrupted, check_images, configured_policy
    from tagkeeper.retention.select import every_package, is_glob
    from tagkeeper.retention.times import time_needed
    from tagkeeper.transport import DEFAULT_MAX_WAIT, build_client

    config = common.state(ctx).config()
    targets = list(images) if images else ([] if all_of else config.images())
    targets += [every_package(owner) for owner in all_of or ()]
    if not targets:
        raise UsageError(
            "no image to prune",
            hint="pass --image ghcr.io/OWNER/PACKAGE or set 'image' in tagkeeper.toml",
        )
    state = PruneState.load(state_file) if state_file is not None else None
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
    policy = configured_policy(
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
        older_than=older_than,
        protect_regex=protect_regex,
        version_scheme=scheme,
    )
    if report is not None:
        prune_render.check_report_path(report)
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
        ghcr_session=GhcrSession(),  # the owner, token and rate limit: once per run
    )
    scrub = secret.scrub if secret else (lambda text: text)
    renderer = prune_render.RENDERERS[fmt]()
    listener = _Listener(
        renderer,
        scrub=scrub,
        ask=not yes,
        progress=sys.stderr.isatty(),
        debug=common.state(ctx).debug,
    )
    named = [t for t in targets if not is_glob(t)]
    kinds = check_images(named, options)  # bad names: usage errors before any request
    if not images:  # from the configuration: the checkout's, inside Actions
        from tagkeeper.destinations import check_configured_images

        oci_hosts = [parse_reference(t).host or "" for t, k in kinds.items() if k == "oci"]
        check_configured_images(
            oci_hosts, config, environ, password_given=registry_password is not None
        )
    insecure_hosts = [t.partition("/")[0] for t in targets] if insecure else []
    with build_client(insecure_hosts=insecure_hosts) as client, ExitStack() as stack:
        guard = rollback_guard(
            ctx,
            stack,
            env_flags=env,
            ledger_flag=ledger_path,
            source=source,
            repo=repo,
            token=token,
            api_url=api_url,
            allow_prerelease=allow_prerelease,
            keep_deploys=keep_deploys,
        )
        guard.version_scheme = policy.version_scheme
        try:
            run = prune_targets(
                targets,
                policy,
                options=options,
                client=client,
                clock=lambda: datetime.now(UTC),
                excludes=exclude or (),
                state=state,
                guard=guard,
                dry_run=dry_run,
                listener=listener,
            )
        except RunInterrupted as stop:  # Ctrl-C: what was done is still reported, exit 130
            run = stop.run
    if report is not None:
        prune_render.write_report(report, run, scrub)
    renderer.finish(run, scrub=scrub, report=report)
    if run.exit_code is not ExitCode.OK:
        raise typer.Exit(int(run.exit_code))


class _Listener(PruneListener):
    """How the CLI follows a prune: the plan and reports on the terminal, a question
    before deleting (unless --yes), one progress line on a terminal."""

    def __init__(
        self,
        renderer: TextRenderer,
        *,
        scrub: Callable[[str], str],
        ask: bool,
        progress: bool,
        debug: bool,
    ) -> None:
        self.renderer = renderer
        self.scrub = scrub
        self.ask = ask
        self.show_progress = progress
        self.bar: _Progress | None = None
        self.debug = debug
        self.plan: Plan | None = None

    def planned(self, image: str, plan: Plan) -> None:
        self.plan = plan
        self.renderer.plan(image, plan)

    def warning(self, image: str, text: str) -> None:
        self.renderer.warning(image, text)

    def skipped(self, image: str, why: str) -> None:
        common.info(f"{image}: {why}")

    def confirm(self, image: str, count: int) -> bool:
        if not self.ask:
            return True
        if self.plan is not None:
            self.renderer.before_asking(image, self.plan)
        return typer.confirm(f"Delete {count} versions of {image}?", default=False, err=True)

    def started(self, image: str, total: int) -> None:
        self.bar = _Progress(total, self.show_progress)

    def progress(self, image: str, result: DeleteResult) -> None:
        if self.bar is not None:
            self.bar(result)

    def applied(self, image: str, report: ApplyReport) -> None:
        from tagkeeper.cli.prune_render import report_text
        from tagkeeper.retention.runner import scrubbed

        self._end_bar()
        # an error's words: scrubbed like any other
        common.info(report_text(image, scrubbed(report, self.scrub)))

    def interrupted(self, image: str, report: ApplyReport | None) -> None:
        from tagkeeper.cli.prune_render import interrupted_text
        from tagkeeper.retention.runner import scrubbed

        self._end_bar()
        shown = None if report is None else scrubbed(report, self.scrub)
        common.info(interrupted_text(image, shown))

    def not_started(self, image: str) -> None:
        common.info(f"{image}: not started (interrupted)")

    def _end_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def failed(self, image: str, error: TagkeeperError) -> None:
        self._end_bar()
        common.error(self.scrub(error.diagnostics()))
        if self.debug:
            from tagkeeper.cli.debug import explain

            common.info(self.scrub(explain(error)))
