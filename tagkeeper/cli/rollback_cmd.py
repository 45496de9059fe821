"""``tagkeeper record | history | previous``: the deploy ledger and rollback targets.

The options here, and the settings they make (:func:`history_settings`), are shared with
``deploy`` and ``rollback`` (:mod:`tagkeeper.cli.deploy_cmd`); where history comes from
and how ``previous`` answers is the library's (:mod:`tagkeeper.rollback.sources`), and
how the answers look is :mod:`tagkeeper.cli.rollback_render`'s. Heavy modules (sqlite3
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

from tagkeeper.cli import common, registry_access, rollback_render
from tagkeeper.cli.registry_access import RegistryFlags as RegistryFlags  # noqa: PLC0414
from tagkeeper.cli.registry_access import notes_of as notes_of  # noqa: PLC0414
from tagkeeper.cli.registry_access import vouch as vouch  # noqa: PLC0414
from tagkeeper.errors import UsageError
from tagkeeper.rollback.sources import Source as Source  # noqa: PLC0414

if TYPE_CHECKING:
    from tagkeeper.registries.digests import RegistryDigests
    from tagkeeper.rollback.github import GitHubDeployments
    from tagkeeper.rollback.ledger import Ledger
    from tagkeeper.rollback.resolve import DeployRecord, RollbackTarget
    from tagkeeper.rollback.sources import HistorySettings


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


def history_settings(
    ctx: typer.Context,
    *,
    ledger_path: Path | None = None,
    repo: str | None = None,
    token: str | None = None,
    api_url: str | None = None,
    registry_url: str | None = None,
) -> HistorySettings:
    """The history sources' settings: the flags, else the configuration (inside GitHub
    Actions, only URLs that may receive the credentials: :mod:`tagkeeper.destinations`),
    else the environment (:class:`~tagkeeper.rollback.sources.HistorySettings`)."""
    from tagkeeper.rollback.sources import HistorySettings
    from tagkeeper.secret import token_from_env

    environ = _environ()
    return HistorySettings(
        ledger=_ledger_path(ctx, ledger_path),
        repo=repo,
        token=token_from_env(token, environ),
        # the configuration's URLs only where they may receive the credentials
        api_url=common.url_setting(ctx, "api-url", api_url, environ),
        registry_url=common.url_setting(ctx, "registry-url", registry_url, environ),
        environ=environ,
    )


def _read_history(
    ctx: typer.Context,
    flag: Path | None,
    *,
    environment: str | None,
    repository: str | None,
    limit: int | None = None,
) -> tuple[Path, list[DeployRecord] | None]:
    """The ledger's path and its records, newest first; ``None`` when there is no ledger."""
    from tagkeeper.rollback.sources import read_ledger

    path = _ledger_path(ctx, flag)
    return path, read_ledger(path, environment=environment, repository=repository, limit=limit)


def _github(
    ctx: typer.Context, repo: str | None, token: str | None, api_url: str | None
) -> GitHubDeployments:
    return history_settings(ctx, repo=repo, token=token, api_url=api_url).deployments()


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


def _registry_resolver(ctx: typer.Context, flags: RegistryFlags) -> RegistryDigests:
    return registry_access.registry_resolver(ctx, flags)


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
    version_scheme: str | None = None,
) -> RollbackTarget:
    """``previous`` as the CLI answers it: :func:`tagkeeper.rollback.sources.previous`
    with the command's settings, its notes on stderr."""
    from tagkeeper.rollback.sources import previous as previous_target
    from tagkeeper.transport import build_client

    settings = history_settings(
        ctx,
        ledger_path=ledger_path,
        repo=repo,
        token=token,
        api_url=api_url,
        registry_url=registry_url,
    )
    return previous_target(
        repository,
        environment,
        settings=settings,
        source=source,
        current=current,
        allow_prerelease=allow_prerelease,
        version_scheme=common.version_scheme(version_scheme, common.state(ctx).config()),
        client=ctx.with_resource(build_client()) if current is not None else None,
        on_message=common.info,
    )


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
    rollback_render.history(fmt is TextJson.json, records)


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
    scheme: common.VersionSchemeOpt = None,
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
        from tagkeeper.rollback.sources import container_tag

        current = container_tag(container, repository)
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
        version_scheme=scheme,
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
    rollback_render.previous(fmt, target, pinned=digest)


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
