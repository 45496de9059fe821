"""``tagkeeper record | history | previous``: the deploy ledger and rollback targets.

The options, adapters and the resolution of ``previous`` here are shared with
``deploy`` and ``rollback`` (:mod:`tagkeeper.cli.deploy_cmd`). Heavy modules (sqlite3
through the ledger, PyGithub, httpx, docker) are imported inside the commands that use
them.

Only the commands that write (``record``, ``deploy``, ``rollback``) create the ledger;
``history`` and ``previous`` read it when it exists and never create it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tagkeeper.cli import common, gha, registry_access
from tagkeeper.cli.registry_access import RegistryFlags as RegistryFlags  # noqa: PLC0414
from tagkeeper.cli.registry_access import notes_of as notes_of  # noqa: PLC0414
from tagkeeper.cli.registry_access import vouch as vouch  # noqa: PLC0414
from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from tagkeeper.inventory import Version
    from tagkeeper.registries.digests import RegistryDigests
    from tagkeeper.rollback.github import GitHubDeployments
    from tagkeeper.rollback.ledger import Ledger
    from tagkeeper.rollback.resolve import DeployRecord, RollbackTarget


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
RepositoryOpt = Annotated[
    str,
    typer.Option(
        "--image",
        "-i",
        metavar="REPO",
        help="The image repository, without tag or digest, e.g. ghcr.io/o/app.",
    ),
]
ReferenceOpt = Annotated[
    str,
    typer.Option("--image", "-i", metavar="REF", help="The image: repo:tag[@digest]."),
]
CurrentOpt = Annotated[
    str | None,
    typer.Option(
        "--current",
        metavar="TAG",
        show_default=False,
        help="The tag running now (default: the newest successful deploy).",
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
GitHubOpt = Annotated[bool, typer.Option("--github", help="Also record it in GitHub Deployments.")]
GitRefOpt = Annotated[
    str | None,
    typer.Option(
        "--ref",
        metavar="REF",
        show_default=False,
        help="Git ref of the GitHub deployment (default: $GITHUB_SHA, else the image tag).",
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
NoResolveOpt = Annotated[
    bool,
    typer.Option(
        "--no-resolve-digest",
        help="Do not ask the registry for the tag's digest (an image that only exists "
        "on the host).",
    ),
]
RequireDigestOpt = Annotated[
    bool,
    typer.Option(
        "--require-digest",
        help="Fail (exit 5) when the digest cannot be resolved, instead of going on by "
        "tag with a warning.",
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
    """``--env``, else config ``env``, else ``prod``: checked, never trimmed."""
    from tagkeeper.gate.rules import validate_env_name

    return validate_env_name(common.pick(flag, common.state(ctx).config().env, "prod"))


def _allow_pre(ctx: typer.Context, flag: bool | None) -> bool:
    return common.pick(flag, common.state(ctx).config().allow_prerelease, False)


def _ledger_path(ctx: typer.Context, flag: Path | None) -> Path:
    from tagkeeper.rollback.ledger import resolve_path

    return resolve_path(flag, _environ(), common.state(ctx).config().ledger)


@contextmanager
def _open_ledger(ctx: typer.Context, flag: Path | None) -> Iterator[Ledger]:
    """The ledger, created when missing: for the commands that write."""
    from tagkeeper.rollback.ledger import Ledger

    ledger = Ledger(_ledger_path(ctx, flag), create=True)
    try:
        yield ledger
    finally:
        ledger.close()


def _read_history(
    ctx: typer.Context,
    flag: Path | None,
    *,
    environment: str | None,
    repository: str | None,
    limit: int | None = None,
) -> tuple[Path, list[DeployRecord] | None]:
    """The ledger's path and its records, newest first; ``None`` when there is no ledger.

    Reading never creates the ledger (nor its folder).
    """
    from tagkeeper.rollback.ledger import Ledger
    from tagkeeper.rollback.ledger import exists as ledger_exists

    path = _ledger_path(ctx, flag)
    if not ledger_exists(path):
        return path, None
    with Ledger(path, create=False) as ledger:
        return path, ledger.history(environment=environment, repository=repository, limit=limit)


def _github(
    ctx: typer.Context, repo: str | None, token: str | None, api_url: str | None
) -> GitHubDeployments:
    from tagkeeper.rollback.github import GitHubDeployments, connect, repository_and_token

    environ = _environ()
    name, secret, url = repository_and_token(
        environ, repo=repo, token=token,
        api_url=common.url_setting(ctx, "api-url", api_url, environ),
    )
    return GitHubDeployments(connect(name, secret, api_url=url), token=secret)


def _github_configured(repo: str | None, token: str | None) -> bool:
    from tagkeeper.secret import token_from_env

    env = _environ()
    return bool((repo or env.get("GITHUB_REPOSITORY")) and token_from_env(token, env))


def _repository(image: str, *, current_hint: bool = False) -> str:
    """The repository ``--image`` names; a tag or digest there is bad input.

    ``current_hint``: the command takes ``--current``, which the hint then suggests for
    a tag.
    """
    from tagkeeper.refs import parse_reference

    ref = parse_reference(image)
    if ref.tag is None and ref.digest is None:
        return ref.repository
    parts = [name for name, part in (("a tag", ref.tag), ("a digest", ref.digest)) if part]
    what = " and ".join(parts)
    hint = f"use --image {ref.repository}"
    if current_hint and ref.tag is not None:
        hint += f", and --current {ref.tag} if that tag is what runs now"
    raise UsageError(f"--image {image} names {what}; --image takes a repository", hint=hint)


def _backend_versions(ctx: typer.Context, repository: str, flags: RegistryFlags) -> list[Version]:
    return registry_access.backend_versions(ctx, repository, flags)


def _registry_resolver(ctx: typer.Context, flags: RegistryFlags) -> RegistryDigests:
    return registry_access.registry_resolver(ctx, flags)


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
    registry_url: str | None = None,
) -> RollbackTarget:
    """``previous`` as the CLI answers it, from the source (or sources, for ``auto``).

    The ledger is read only when it exists: ``auto`` then goes on to the next source,
    ``--source ledger`` has no answer.
    """
    from functools import partial

    from tagkeeper.errors import NoRollbackTarget
    from tagkeeper.rollback.resolve import previous_from_history, previous_from_registry

    from_history = partial(
        previous_from_history,
        repository=repository,
        environment=environment,
        current=current,
        allow_prerelease=allow_prerelease,
    )
    if source in (Source.auto, Source.ledger):
        path, records = _read_history(
            ctx, ledger_path, environment=environment, repository=repository
        )
        if records is None:
            if source is Source.ledger:
                raise NoRollbackTarget(
                    f"no deploy ledger exists at {path}",
                    hint="deploys are recorded there by 'tagkeeper deploy', 'tagkeeper "
                    "rollback' or 'tagkeeper record'; point --ledger or $TAGKEEPER_LEDGER at "
                    "the ledger they write (as root: /var/lib/tagkeeper/ledger.db), or use "
                    "--source github or --source registry",
                )
            common.info(f"note: no deploy ledger at {path}; trying the next source")
        elif records or source is Source.ledger:
            return from_history(records, source="ledger")
    if source is Source.github or (source is Source.auto and _github_configured(repo, token)):
        deployments = _github(ctx, repo, token, api_url)
        history = deployments.iter_history(repository, environment)
        try:
            if source is Source.github:
                return from_history(history, source="github")
            first = next(history, None)
            if first is not None:
                return from_history(_chain(first, history), source="github")
        finally:  # deployments whose payload was refused: said even when nothing qualifies
            for refused in deployments.refused:
                common.info(f"warning: {refused}")
    # Without a current tag the registry cannot answer: do not list it for nothing.
    flags = RegistryFlags(token, api_url, registry_url)
    versions = _backend_versions(ctx, repository, flags) if current is not None else []
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
    image: ReferenceOpt = "",
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
    github: GitHubOpt = False,
    ref: GitRefOpt = None,
    repo: RepoOpt = None,
    token: common.TokenOpt = None,
    api_url: common.ApiUrlOpt = None,
    ledger_path: LedgerOpt = None,
    fmt: Annotated[TextJson, typer.Option("--format", "-f")] = TextJson.text,
) -> None:
    """Record a deploy state in the ledger (and GitHub Deployments with --github)."""
    from tagkeeper.refs import parse_reference
    from tagkeeper.rollback.ledger import Actor
    from tagkeeper.rollback.resolve import DeployStatus

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
    """Show the deploys recorded in the ledger, newest first (never creates the ledger)."""
    from tagkeeper.gate.rules import validate_env_name

    if env is not None:
        validate_env_name(env)
    repository = _repository(image) if image else None
    path, records = _read_history(
        ctx, ledger_path, environment=env, repository=repository, limit=limit
    )
    if not records:
        common.info(
            "no deploys recorded"
            + ("" if records is not None else f" (no deploy ledger at {path})")
        )
        records = []
    if fmt is TextJson.json:
        common.emit_json([r.as_dict() for r in records])
        return
    for r in records:
        kind = " rollback" if r.rollback else ""
        when = r.started_at.strftime("%Y-%m-%d %H:%M:%SZ")
        digest = f" {r.digest[:19]}" if r.digest else ""
        who = f" by {r.user}" if r.user else ""
        common.out(
            f"#{r.id}\t{when}\t{r.environment}\t{r.reference}{digest}\t{r.status}{kind}{who}"
        )


def previous(  # noqa: PLR0917
    ctx: typer.Context,
    image: RepositoryOpt = "",
    env: EnvOpt = None,
    current: CurrentOpt = None,
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
    token: common.TokenOpt = None,
    api_url: common.ApiUrlOpt = None,
    registry_url: common.RegistryUrlOpt = None,
    ledger_path: LedgerOpt = None,
    fmt: common.FormatOpt = common.Format.text,
) -> None:
    """Print the rollback target: the last good deploy before the current one.

    With --format github, the step outputs are previous (exactly what text prints), tag,
    reference, digest and pinned.
    """
    from tagkeeper.rollback.resolve import check_current

    if not image:
        raise UsageError("--image is required", hint="e.g. --image ghcr.io/o/app")
    repository = _repository(image, current_hint=True)
    check_current(current)
    if current is not None and container is not None:
        raise UsageError("--current and --container cannot be used together")
    if container is not None and not container:
        raise UsageError(
            "--container is empty (an unset variable?)", hint="name the running container"
        )
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
        registry_url=registry_url,
    )
    if digest:
        flags = RegistryFlags(token, api_url, registry_url)
        if target.digest is None:
            target = _pin(ctx, target, flags)
        else:
            _, records = _read_history(
                ctx, ledger_path, environment=None, repository=target.repository
            )
            target = vouch(target, _registry_resolver(ctx, flags), records)
    answer = target.reference(pinned=True) if digest else target.tag
    for note in target.notes:
        common.info(f"note: {note}")
    if fmt is common.Format.json:
        common.emit_json(target.as_dict())
        return
    common.out(answer)
    if fmt is common.Format.github:
        gha.write_outputs(
            {
                "previous": answer,
                "tag": target.tag,
                "reference": target.reference(),
                "digest": target.digest or "",
                "pinned": target.reference(pinned=True),
            }
        )


def _pin(ctx: typer.Context, target: RollbackTarget, flags: RegistryFlags) -> RollbackTarget:
    """``target`` with the digest its tag has in the registry now (none was recorded)."""
    from dataclasses import replace

    from tagkeeper.refs import parse_reference

    resolver = _registry_resolver(ctx, flags)
    found = resolver.resolve(parse_reference(target.reference()))
    for note in notes_of(resolver):
        common.info(f"note: {note}")
    common.info(
        f"note: no digest was recorded for {target.reference()}; the registry says {found} now"
    )
    return replace(target, digest=found)
