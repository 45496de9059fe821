"""``tagkeeper record | history | previous | deploy | rollback``: the deploy ledger and rollbacks.

Heavy modules (sqlite3 through the ledger, PyGithub, httpx, docker) are imported inside
the commands that use them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tagkeeper import gha
from tagkeeper.cli import common
from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from tagkeeper.adapters.deployments import GitHubDeployments
    from tagkeeper.deploy import DeployPlan, DigestResolver, Recorder
    from tagkeeper.inventory import Version
    from tagkeeper.ledger import Ledger
    from tagkeeper.rollback import DeployRecord, RollbackTarget


class Source(StrEnum):
    auto = "auto"
    ledger = "ledger"
    github = "github"
    registry = "registry"


class TextJson(StrEnum):
    text = "text"
    json = "json"


EnvOpt = Annotated[
    str | None,
    typer.Option(
        "--env",
        "-e",
        metavar="ENV",
        show_default=False,
        help="Target environment (default: config 'env', else prod).",
    ),
]
LedgerOpt = Annotated[
    Path | None,
    typer.Option(
        "--ledger",
        metavar="PATH",
        show_default=False,
        dir_okay=False,
        help="The deploy ledger database (default: $TAGKEEPER_LEDGER, config "
        "'ledger', else /var/lib/tagkeeper/ledger.db as root or "
        "$XDG_STATE_HOME/tagkeeper/ledger.db).",
    ),
]
RepoOpt = Annotated[
    str | None,
    typer.Option(
        "--repo",
        metavar="OWNER/NAME",
        show_default=False,
        help="GitHub repository for Deployments (default: $GITHUB_REPOSITORY).",
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        show_default=False,
        help="GitHub token (default: $GITHUB_TOKEN, then $GH_TOKEN). Prefer the "
        "environment: flags show in process lists.",
    ),
]
ApiUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        metavar="URL",
        show_default=False,
        help="GitHub API URL (default: config 'api-url', $GITHUB_API_URL, else "
        "https://api.github.com).",
    ),
]
AllowPreOpt = Annotated[
    bool | None,
    typer.Option(
        "--allow-prerelease/--no-allow-prerelease",
        show_default=False,
        help="Accept prerelease tags in prod (default: config 'allow-prerelease').",
    ),
]
SourceOpt = Annotated[
    Source,
    typer.Option(
        "--source",
        help="Where the history comes from: auto (ledger, then GitHub "
        "when a repository and token are set, then the registry), ledger, github, "
        "registry.",
    ),
]
CommandArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="COMMAND",
        show_default=False,
        help="The deploy command and its arguments, after --; run without a shell.",
    ),
]


# -- building adapters -------------------------------------------------------------------


def _environ() -> dict[str, str]:
    return dict(os.environ)


def _env_name(ctx: typer.Context, flag: str | None) -> str:
    name = common.pick(flag, common.state(ctx).config(), "env", "prod")
    if not isinstance(name, str) or not name.strip():
        raise UsageError("the environment name is empty", hint="use --env prod or --env dev")
    return name.strip()


def _allow_pre(ctx: typer.Context, flag: bool | None) -> bool:
    return bool(common.pick(flag, common.state(ctx).config(), "allow-prerelease", False))


@contextmanager
def _open_ledger(ctx: typer.Context, flag: Path | None, *, create: bool = True) -> Iterator[Ledger]:
    from tagkeeper.ledger import Ledger, resolve_path

    configured = common.state(ctx).config().get("ledger")
    path = resolve_path(flag, _environ(), configured)
    ledger = Ledger(path, create=create)
    try:
        yield ledger
    finally:
        ledger.close()


def _github(
    ctx: typer.Context, repo: str | None, token: str | None, api_url: str | None
) -> GitHubDeployments:
    from tagkeeper.adapters.deployments import GitHubDeployments, connect, repository_and_token

    configured = common.state(ctx).config().get("api-url")
    name, secret, url = repository_and_token(
        _environ(), repo=repo, token=token, api_url=api_url or configured
    )
    return GitHubDeployments(connect(name, secret, api_url=url), token=secret)


def _github_configured(repo: str | None, token: str | None) -> bool:
    env = _environ()
    return bool(
        (repo or env.get("GITHUB_REPOSITORY"))
        and (token or env.get("GITHUB_TOKEN") or env.get("GH_TOKEN"))
    )


def _repository(image: str) -> str:
    from tagkeeper.refs import parse_reference

    return parse_reference(image).repository


def _backend_versions(repository: str) -> list[Version]:
    """Every version of ``repository`` through the registry backends.

    A repository no backend can reach is a :class:`RegistryError` here (the registry
    cannot be asked), so ``deploy`` goes on by tag with a warning.
    """
    from tagkeeper.adapters.http import build_client
    from tagkeeper.backends import BackendOptions, open_backend, token_from_env
    from tagkeeper.errors import RegistryError

    env = _environ()
    options = BackendOptions(token=token_from_env(None, env), environ=env)
    with build_client() as client:
        try:
            backend = open_backend(repository, options, client)
        except UsageError as exc:
            raise RegistryError(
                f"cannot ask the registry of {repository}: {exc.message}", hint=exc.hint
            ) from None
        return list(backend.versions())


def _registry_resolver() -> DigestResolver:
    from tagkeeper.deploy import BackendResolver

    return BackendResolver(_backend_versions)


def _container_tag(name: str, repository: str) -> str:
    """The tag of the image a running container was started from (Docker engine)."""
    import docker
    from docker.errors import DockerException, NotFound

    from tagkeeper.errors import RegistryError
    from tagkeeper.refs import parse_reference

    try:
        client = docker.from_env(timeout=10)
    except DockerException as exc:
        raise RegistryError(f"cannot reach the Docker engine: {exc}") from None
    try:
        container = client.containers.get(name)
        image_text = str(container.attrs.get("Config", {}).get("Image", ""))
    except NotFound:
        raise UsageError(f"no container named {name!r} on this host") from None
    except DockerException as exc:
        raise RegistryError(f"the Docker engine failed: {exc}") from None
    finally:
        client.close()
    try:
        ref = parse_reference(image_text)
    except UsageError:
        ref = None
    if ref is None or ref.tag is None:
        raise UsageError(
            f"container {name!r} runs {image_text!r}, which names no tag",
            hint="pass --current TAG instead",
        )
    if ref.repository != repository:
        raise UsageError(
            f"container {name!r} runs {ref.repository}, not {repository}",
            hint="check --image and --container",
        )
    return ref.tag


# -- resolution ----------------------------------------------------------------------------


def resolve_previous(
    ctx: typer.Context,
    *,
    repository: str,
    environment: str,
    current: str | None,
    source: Source,
    allow_prerelease: bool,
    ledger_path: Path | None,
    repo: str | None,
    token: str | None,
    api_url: str | None,
) -> RollbackTarget:
    """``previous`` as the CLI answers it, from the source (or sources, for ``auto``)."""
    from functools import partial

    from tagkeeper.rollback import previous_from_history, previous_from_registry

    from_history = partial(
        previous_from_history,
        repository=repository,
        environment=environment,
        current=current,
        allow_prerelease=allow_prerelease,
    )
    if source in (Source.auto, Source.ledger):
        with _open_ledger(ctx, ledger_path) as ledger:
            records = ledger.history(environment=environment, repository=repository)
        if records or source is Source.ledger:
            return from_history(records, source="ledger")
    if source is Source.github or (source is Source.auto and _github_configured(repo, token)):
        history = _github(ctx, repo, token, api_url).iter_history(repository, environment)
        if source is Source.github:
            return from_history(history, source="github")
        first = next(history, None)
        if first is not None:
            return from_history(_chain(first, history), source="github")
    # Without a current tag the registry cannot answer: do not list it for nothing.
    versions = _backend_versions(repository) if current is not None else []
    return previous_from_registry(
        versions,
        repository=repository,
        environment=environment,
        current=current,
        allow_prerelease=allow_prerelease,
    )


def _chain(first: DeployRecord, rest: Iterator[DeployRecord]) -> Iterator[DeployRecord]:
    yield first
    yield from rest


# -- commands ------------------------------------------------------------------------------


def record(  # noqa: PLR0917
    ctx: typer.Context,
    env: EnvOpt = None,
    image: Annotated[
        str,
        typer.Option("--image", "-i", metavar="REF", help="The image deployed: repo:tag[@digest]."),
    ] = "",
    status: Annotated[
        str,
        typer.Option(
            "--status",
            metavar="STATUS",
            help="started, succeeded, failed or rolled_back. A finish updates the newest "
            "'started' record of that image and environment (rolled_back: the newest "
            "'succeeded' one); without one, a new record is added.",
        ),
    ] = "",
    digest: Annotated[
        str | None,
        typer.Option(
            "--digest", metavar="DIGEST", show_default=False, help="The image digest (sha256:...)."
        ),
    ] = None,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="This deploy is a rollback.")
    ] = False,
    github: Annotated[
        bool, typer.Option("--github", help="Also record it in GitHub Deployments.")
    ] = False,
    ref: Annotated[
        str | None,
        typer.Option(
            "--ref",
            metavar="REF",
            show_default=False,
            help="Git ref of a GitHub deployment (default: $GITHUB_SHA, else the image tag).",
        ),
    ] = None,
    repo: RepoOpt = None,
    token: TokenOpt = None,
    api_url: ApiUrlOpt = None,
    ledger_path: LedgerOpt = None,
    fmt: Annotated[TextJson, typer.Option("--format", "-f")] = TextJson.text,
) -> None:
    """Record a deploy state in the ledger (and GitHub Deployments with --github)."""
    from tagkeeper.ledger import Actor
    from tagkeeper.refs import parse_reference
    from tagkeeper.rollback import DeployStatus

    environment = _env_name(ctx, env)
    if not image:
        raise UsageError("--image is required", hint="e.g. --image ghcr.io/o/app:v1.2.3")
    try:
        state = DeployStatus(status)
    except ValueError:
        raise UsageError(
            f"--status {status!r} is not a deploy status",
            hint="use started, succeeded, failed or rolled_back",
        ) from None
    parsed = parse_reference(image)
    if parsed.tag is None:
        raise UsageError(f"{image} has no tag; tagkeeper records deploys by tag")
    if digest is not None:
        parse_reference(f"{parsed.repository}@{digest}")  # validates the digest
        if parsed.digest and parsed.digest != digest:
            raise UsageError(f"{image} is pinned to {parsed.digest}, but --digest is {digest}")
    pinned = parsed.digest or digest
    environ = _environ()
    actor = Actor.from_environ(environ)
    deployments = _github(ctx, repo, token, api_url) if github else None
    with _open_ledger(ctx, ledger_path) as ledger:
        saved = ledger.record(
            environment=environment,
            repository=parsed.repository,
            tag=parsed.tag,
            status=state,
            actor=actor,
            digest=pinned,
            rollback=rollback,
        )
    payload = saved.as_dict()
    if deployments is not None:
        remote = deployments.record(
            environment=environment,
            repository=parsed.repository,
            tag=parsed.tag,
            status=state,
            ref=ref or environ.get("GITHUB_SHA") or parsed.tag,
            digest=pinned,
            rollback=rollback,
            ci_run_url=actor.ci_run_url,
        )
        payload["github_deployment_id"] = remote.id
    if fmt is TextJson.json:
        common.emit_json(payload)
    else:
        common.info(
            f"recorded deploy #{saved.id}: {saved.reference} to {environment} "
            f"{saved.status}" + (" (GitHub Deployments too)" if deployments else "")
        )


def history(  # noqa: PLR0917
    ctx: typer.Context,
    env: Annotated[
        str | None,
        typer.Option(
            "--env", "-e", metavar="ENV", show_default=False, help="Only this environment."
        ),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            "--image", "-i", metavar="REPO", show_default=False, help="Only this image repository."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="At most this many records, newest first.")
    ] = 20,
    ledger_path: LedgerOpt = None,
    fmt: Annotated[TextJson, typer.Option("--format", "-f")] = TextJson.text,
) -> None:
    """Show the deploys recorded in the ledger, newest first."""
    repository = _repository(image) if image else None
    with _open_ledger(ctx, ledger_path) as ledger:
        records = ledger.history(environment=env, repository=repository, limit=limit)
    if fmt is TextJson.json:
        common.emit_json([r.as_dict() for r in records])
        return
    if not records:
        common.info("no deploys recorded")
        return
    for r in records:
        kind = " rollback" if r.rollback else ""
        when = r.started_at.strftime("%Y-%m-%d %H:%M:%SZ")
        digest = f" {r.digest[:19]}" if r.digest else ""
        who = f" by {r.user}" if r.user else ""
        typer.echo(
            f"#{r.id}\t{when}\t{r.environment}\t{r.reference}{digest}\t{r.status}{kind}{who}"
        )


def previous(  # noqa: PLR0917
    ctx: typer.Context,
    image: Annotated[
        str,
        typer.Option(
            "--image", "-i", metavar="REPO", help="The image repository, e.g. ghcr.io/o/app."
        ),
    ] = "",
    env: EnvOpt = None,
    current: Annotated[
        str | None,
        typer.Option(
            "--current",
            metavar="TAG",
            show_default=False,
            help="The tag running now (default: the newest successful deploy).",
        ),
    ] = None,
    container: Annotated[
        str | None,
        typer.Option(
            "--container",
            metavar="NAME",
            show_default=False,
            help="Read the current tag from this running container (Docker engine).",
        ),
    ] = None,
    source: SourceOpt = Source.auto,
    digest: Annotated[
        bool, typer.Option("--digest", help="Print repo:tag@sha256:... instead of the tag.")
    ] = False,
    allow_prerelease: AllowPreOpt = None,
    repo: RepoOpt = None,
    token: TokenOpt = None,
    api_url: ApiUrlOpt = None,
    ledger_path: LedgerOpt = None,
    fmt: common.FormatOpt = common.Format.text,
) -> None:
    """Print the rollback target: the last good deploy before the current one."""
    if not image:
        raise UsageError("--image is required", hint="e.g. --image ghcr.io/o/app")
    repository = _repository(image)
    if current is not None and container is not None:
        raise UsageError("--current and --container cannot be used together")
    if current is None and container is not None:
        current = _container_tag(container, repository)
    target = resolve_previous(
        ctx,
        repository=repository,
        environment=_env_name(ctx, env),
        current=current,
        source=source,
        allow_prerelease=_allow_pre(ctx, allow_prerelease),
        ledger_path=ledger_path,
        repo=repo,
        token=token,
        api_url=api_url,
    )
    if digest and target.digest is None:
        target = _pin(target)
    answer = target.reference(pinned=True) if digest else target.tag
    for note in target.notes:
        common.info(f"note: {note}")
    if fmt is common.Format.json:
        common.emit_json(target.as_dict())
        return
    typer.echo(answer)
    if fmt is common.Format.github:
        gha.write_outputs(
            {
                "tag": target.tag,
                "reference": target.reference(),
                "digest": target.digest or "",
                "pinned": target.reference(pinned=True),
            }
        )


def _pin(target: RollbackTarget) -> RollbackTarget:
    """``target`` with the digest its tag has in the registry now (none was recorded)."""
    from dataclasses import replace

    from tagkeeper.refs import parse_reference

    resolver = _registry_resolver()
    found = resolver.resolve(parse_reference(target.reference()))
    common.info(
        f"note: no digest was recorded for {target.reference()}; the registry says {found} now"
    )
    return replace(target, digest=found)


def _recorders(
    ctx: typer.Context,
    ledger: Ledger,
    plan: DeployPlan,
    *,
    github: bool,
    ref: str | None,
    repo: str | None,
    token: str | None,
    api_url: str | None,
) -> list[Recorder]:
    from tagkeeper.deploy import GitHubRecorder, LedgerRecorder
    from tagkeeper.ledger import Actor

    environ = _environ()
    actor = Actor.from_environ(environ)
    recorders: list[Recorder] = [LedgerRecorder(ledger, actor)]
    if github:
        recorders.append(
            GitHubRecorder(
                _github(ctx, repo, token, api_url),
                ref=ref or environ.get("GITHUB_SHA") or plan.tag,
                ci_run_url=actor.ci_run_url,
            )
        )
    return recorders


def _run(
    ctx: typer.Context,
    plan: DeployPlan,
    *,
    ledger_path: Path | None,
    github: bool,
    ref: str | None,
    repo: str | None,
    token: str | None,
    api_url: str | None,
) -> None:
    from tagkeeper.deploy import execute

    for note in plan.notes:
        common.info(f"warning: {note}")
    with _open_ledger(ctx, ledger_path) as ledger:
        recorders = _recorders(
            ctx, ledger, plan, github=github, ref=ref, repo=repo, token=token, api_url=api_url
        )
        kind = "rolling back" if plan.rollback else "deploying"
        common.info(f"tagkeeper: {kind} {plan.image} to {plan.environment}: {plan.describe()}")
        outcome = execute(plan, recorders)
    for problem in outcome.problems:
        common.error(f"warning: the end of the deploy could not be recorded: {problem}")
    if outcome.exit_code != 0:
        common.error(f"the deploy command exited with {outcome.exit_code}; recorded as failed")
        raise typer.Exit(outcome.exit_code)


def deploy(  # noqa: PLR0917
    ctx: typer.Context,
    command: CommandArg = None,
    env: EnvOpt = None,
    image: Annotated[
        str,
        typer.Option(
            "--image", "-i", metavar="REF", help="The image to deploy: repo:tag[@digest]."
        ),
    ] = "",
    no_resolve_digest: Annotated[
        bool,
        typer.Option("--no-resolve-digest", help="Do not ask the registry for the tag's digest."),
    ] = False,
    require_digest: Annotated[
        bool,
        typer.Option(
            "--require-digest",
            help="Fail (exit 5) when the registry cannot be reached, instead of deploying "
            "by tag with a warning.",
        ),
    ] = False,
    allow_prerelease: AllowPreOpt = None,
    github: Annotated[
        bool, typer.Option("--github", help="Also record the deploy in GitHub Deployments.")
    ] = False,
    ref: Annotated[
        str | None,
        typer.Option(
            "--ref",
            metavar="REF",
            show_default=False,
            help="Git ref of the GitHub deployment (default: $GITHUB_SHA, else the tag).",
        ),
    ] = None,
    repo: RepoOpt = None,
    token: TokenOpt = None,
    api_url: ApiUrlOpt = None,
    ledger_path: LedgerOpt = None,
) -> None:
    """Check, pin and record a deploy around COMMAND; exit with COMMAND's exit code."""
    from tagkeeper.deploy import plan_deploy, resolve_digest

    if not image:
        raise UsageError("--image is required", hint="e.g. --image ghcr.io/o/app:v1.2.3")
    plan = plan_deploy(
        _env_name(ctx, env),
        image,
        command or [],
        allow_prerelease=_allow_pre(ctx, allow_prerelease),
    )
    if not no_resolve_digest:
        plan = resolve_digest(plan, _registry_resolver(), required=require_digest)
    _run(
        ctx,
        plan,
        ledger_path=ledger_path,
        github=github,
        ref=ref,
        repo=repo,
        token=token,
        api_url=api_url,
    )


def rollback(  # noqa: PLR0917
    ctx: typer.Context,
    command: CommandArg = None,
    env: EnvOpt = None,
    image: Annotated[
        str,
        typer.Option(
            "--image", "-i", metavar="REPO", help="The image repository, e.g. ghcr.io/o/app."
        ),
    ] = "",
    current: Annotated[
        str | None,
        typer.Option(
            "--current",
            metavar="TAG",
            show_default=False,
            help="The tag running now (default: the newest successful deploy).",
        ),
    ] = None,
    source: SourceOpt = Source.auto,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would run (on stdout) and change nothing.")
    ] = False,
    allow_prerelease: AllowPreOpt = None,
    github: Annotated[
        bool, typer.Option("--github", help="Also record the rollback in GitHub Deployments.")
    ] = False,
    ref: Annotated[
        str | None,
        typer.Option(
            "--ref",
            metavar="REF",
            show_default=False,
            help="Git ref of the GitHub deployment (default: $GITHUB_SHA, else the tag).",
        ),
    ] = None,
    repo: RepoOpt = None,
    token: TokenOpt = None,
    api_url: ApiUrlOpt = None,
    ledger_path: LedgerOpt = None,
) -> None:
    """Deploy what 'previous' answers with COMMAND, recorded as a rollback."""
    from tagkeeper.deploy import plan_deploy

    if not image:
        raise UsageError("--image is required", hint="e.g. --image ghcr.io/o/app")
    repository = _repository(image)
    environment = _env_name(ctx, env)
    allow = _allow_pre(ctx, allow_prerelease)
    if not dry_run and source in (Source.auto, Source.ledger):
        with _open_ledger(ctx, ledger_path):
            pass  # fail on an unusable ledger before resolving anything
    target = resolve_previous(
        ctx,
        repository=repository,
        environment=environment,
        current=current,
        source=source,
        allow_prerelease=allow,
        ledger_path=ledger_path,
        repo=repo,
        token=token,
        api_url=api_url,
    )
    for note in target.notes:
        common.info(f"note: {note}")
    plan = plan_deploy(
        environment,
        target.reference(),
        command or [],
        digest=target.digest,
        allow_prerelease=allow,
        rollback=True,
        replaces=target.current,
    )
    if dry_run:
        typer.echo(plan.describe())
        return
    _run(
        ctx,
        plan,
        ledger_path=ledger_path,
        github=github,
        ref=ref,
        repo=repo,
        token=token,
        api_url=api_url,
    )


def protected_for_prune(
    ctx: typer.Context,
    repository: str,
    environments: Sequence[str],
    *,
    versions: Sequence[Version] | None = None,
    currents: dict[str, str] | None = None,
    ledger_path: Path | None = None,
    github: bool = False,
    repo: str | None = None,
    token: str | None = None,
    api_url: str | None = None,
) -> dict[str, str]:
    """The ``protected`` mapping ``prune --env ENV`` passes to the planner.

    Reads the ledger when it exists (prune never creates one) and GitHub Deployments
    when ``github``; with no history for an environment, falls back to the registry
    answer from ``versions`` and ``currents``. Says on stderr when an environment it was
    told about has nothing to protect.
    """
    from tagkeeper.ledger import Ledger, LedgerHistory, resolve_path
    from tagkeeper.protection import HistorySource, rollback_protection

    if not environments:
        return {}
    configured = common.state(ctx).config().get("ledger")
    path = resolve_path(ledger_path, _environ(), configured)
    ledger = Ledger(path, create=False) if path.exists() else None
    try:
        sources: list[HistorySource] = []
        if ledger is not None:
            sources.append(LedgerHistory(ledger))
        if github:
            sources.append(_github(ctx, repo, token, api_url))
        protected = rollback_protection(
            repository,
            environments,
            sources,
            versions=versions,
            currents=currents,
            allow_prerelease=bool(common.state(ctx).config().get("allow-prerelease", False)),
        )
    finally:
        if ledger is not None:
            ledger.close()
    for environment in dict.fromkeys(environments):
        if not any(f" {environment} (" in reason for reason in protected.values()):
            common.info(
                f"warning: nothing is known to be deployed to {environment} for {repository} "
                f"(ledger {path}{', GitHub Deployments' if github else ''}); nothing extra "
                "is protected for it"
            )
    return protected
