"""Where deploy history comes from: the cascade ledger -> GitHub Deployments -> registry.

``previous``, ``deploy``, ``rollback`` and ``prune --env`` all read history through
this module, with the settings they were given (:class:`HistorySettings`: the ledger
path, the GitHub repository, token and API URL, the registry URL) as arguments, never
from a default of their own:

* :func:`previous` answers "what do we roll back to?" from one source or, with
  ``auto``, from the ledger when it has records, else GitHub Deployments when a
  repository and token are set, else the registry's releases.
* :func:`protection_sources` opens the sources ``prune --env`` reads and returns a
  :class:`RollbackGuard`, which says per image what must stay.
* :func:`container_tag` reads the tag a running container was started from.

Nothing here prints: notes and warnings go to the ``on_message`` callback.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tagkeeper.errors import NoRollbackTarget, RegistryError, TagkeeperError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from contextlib import ExitStack
    from pathlib import Path

    import httpx

    from tagkeeper.inventory import Version
    from tagkeeper.registries.factory import BackendOptions
    from tagkeeper.rollback.github import GitHubDeployments
    from tagkeeper.rollback.protection import HistorySource
    from tagkeeper.rollback.resolve import DeployRecord, RollbackTarget
    from tagkeeper.secret import Secret
    from tagkeeper.versioning import Scheme

__all__ = [
    "HistoryFrom",
    "HistorySettings",
    "RollbackGuard",
    "Source",
    "container_tag",
    "previous",
    "protection_sources",
    "read_ledger",
    "registry_versions",
]


class Source(StrEnum):
    """Where ``previous`` reads history: one source, or ``auto`` (the cascade)."""

    auto = "auto"
    ledger = "ledger"
    github = "github"
    registry = "registry"


class HistoryFrom(StrEnum):
    """Where ``prune --env`` reads deploy history from."""

    ledger = "ledger"
    github = "github"
    auto = "auto"


def _ignore(_text: str) -> None:
    return None


@dataclass(frozen=True)
class HistorySettings:
    """How to reach every history source: the settings a command was given.

    ``ledger``: the ledger's path (see :func:`tagkeeper.rollback.ledger.resolve_path`).
    ``repo``: ``OWNER/NAME`` of GitHub Deployments (``None``: ``$GITHUB_REPOSITORY``).
    ``token``: the GitHub token, for Deployments and the registry. ``api_url``: the
    GitHub API (``None``: ``$GITHUB_API_URL``, else ``https://api.github.com``).
    ``registry_url``: the registry base (``None``: from the image's host).
    ``environ``: the variables the defaults above come from.
    """

    ledger: Path
    repo: str | None = None
    token: Secret | None = None
    api_url: str | None = None
    registry_url: str | None = None
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def github_repository(self) -> str | None:
        return self.repo or self.environ.get("GITHUB_REPOSITORY") or None

    def github_configured(self) -> bool:
        """Whether GitHub Deployments can be read: a repository and a token are set."""
        return bool(self.github_repository and self.token)

    def deployments(self) -> GitHubDeployments:
        """GitHub Deployments of :attr:`github_repository`, reached at ``api_url`` with
        ``token`` (no request is sent yet)."""
        from tagkeeper.rollback.github import DEFAULT_API_URL, GitHubDeployments, connect
        from tagkeeper.secret import Secret

        name = self.github_repository
        if not name:
            raise UsageError(
                "no GitHub repository given for GitHub Deployments",
                hint="pass --repo OWNER/NAME or set GITHUB_REPOSITORY",
            )
        secret = self.token or Secret("")
        url = self.api_url or self.environ.get("GITHUB_API_URL") or DEFAULT_API_URL
        return GitHubDeployments(connect(name, secret, api_url=url), token=secret)

    def backend_options(self) -> BackendOptions:
        """How the registry backends are reached with these settings."""
        from tagkeeper.registries.factory import BackendOptions

        return BackendOptions(
            token=self.token,
            api_url=self.api_url,
            registry_url=self.registry_url,
            environ=self.environ,
        )


def read_ledger(
    path: Path,
    *,
    environment: str | None = None,
    repository: str | None = None,
    limit: int | None = None,
) -> list[DeployRecord] | None:
    """The ledger's records, newest first; ``None`` when there is no ledger at ``path``.

    Reading never creates the ledger (nor its folder).
    """
    from tagkeeper.rollback.ledger import Ledger
    from tagkeeper.rollback.ledger import exists as ledger_exists

    if not ledger_exists(path):
        return None
    with Ledger(path, create=False) as ledger:
        return ledger.history(environment=environment, repository=repository, limit=limit)


def registry_versions(
    repository: str, settings: HistorySettings, client: httpx.Client
) -> list[Version]:
    """Every version of ``repository`` through the registry backends, reached as
    ``settings`` say; a repository no backend can reach is a :class:`RegistryError`."""
    from tagkeeper.registries import factory

    try:
        backend = factory.open_backend(repository, settings.backend_options(), client)
    except UsageError as exc:
        raise RegistryError(
            f"cannot ask the registry of {repository}: {exc.message}", hint=exc.hint
        ) from None
    return list(backend.versions())


def previous(
    repository: str,
    environment: str,
    *,
    settings: HistorySettings,
    source: Source = Source.auto,
    current: str | None = None,
    allow_prerelease: bool = False,
    client: httpx.Client | None = None,
    on_message: Callable[[str], None] = _ignore,
    version_scheme: Scheme = "semver",
) -> RollbackTarget:
    """The rollback target from ``source`` (or the cascade, for ``auto``).

    The ledger is read only when it exists: ``auto`` then goes on to the next source,
    ``ledger`` has no answer. GitHub is asked when ``source`` is ``github``, or for
    ``auto`` when a repository and token are set. The registry is listed last, and
    only with a ``current`` tag (without one it cannot answer). ``client``: the HTTP
    client for the registry (``None``: one is made for the call).
    """
    from functools import partial

    from tagkeeper.rollback.resolve import previous_from_history, previous_from_registry

    from_history = partial(
        previous_from_history,
        repository=repository,
        environment=environment,
        current=current,
        allow_prerelease=allow_prerelease,
        version_scheme=version_scheme,
    )
    if source in (Source.auto, Source.ledger):
        path = settings.ledger
        records = read_ledger(path, environment=environment, repository=repository)
        if records is None:
            if source is Source.ledger:
                raise NoRollbackTarget(
                    f"no deploy ledger exists at {path}",
                    hint="deploys are recorded there by 'tagkeeper deploy', 'tagkeeper "
                    "rollback' or 'tagkeeper record'; point --ledger or $TAGKEEPER_LEDGER at "
                    "the ledger they write (as root: /var/lib/tagkeeper/ledger.db), or use "
                    "--source github or --source registry",
                )
            on_message(f"note: no deploy ledger at {path}; trying the next source")
        elif records or source is Source.ledger:
            return from_history(records, source="ledger")
    if source is Source.github or (source is Source.auto and settings.github_configured()):
        deployments = settings.deployments()
        history = deployments.iter_history(repository, environment)
        try:
            if source is Source.github:
                return from_history(history, source="github")
            first = next(history, None)
            if first is not None:
                return from_history(_chain(first, history), source="github")
        finally:  # deployments whose payload was refused: said even when nothing qualifies
            for refused in deployments.refused:
                on_message(f"warning: {refused}")
    versions: list[Version] = []
    if current is not None:  # without a current tag the registry cannot answer
        if client is None:
            from tagkeeper.transport import build_client

            with build_client() as own:
                versions = registry_versions(repository, settings, own)
        else:
            versions = registry_versions(repository, settings, client)
    return previous_from_registry(
        versions,
        repository=repository,
        environment=environment,
        current=current,
        allow_prerelease=allow_prerelease,
        version_scheme=version_scheme,
    )


def _chain(first: DeployRecord, rest: Iterator[DeployRecord]) -> Iterator[DeployRecord]:
    yield first
    yield from rest


def container_tag(name: str, repository: str, *, engine: Any = None) -> str:
    """The tag of the image the container ``name`` was started from.

    ``engine``: a Docker client (``None``: the engine ``$DOCKER_HOST`` names, opened and
    closed here). A container of another repository, or one started from a digest only,
    is bad input (the caller then names the current tag itself).
    """
    from docker.errors import DockerException, NotFound

    from tagkeeper.refs import parse_reference
    from tagkeeper.registries.local import connect

    client = connect(timeout=10) if engine is None else engine
    try:
        container = client.containers.get(name)
        image_text = str(container.attrs.get("Config", {}).get("Image", ""))
    except NotFound:
        raise UsageError(f"no container named {name!r} on this host") from None
    except DockerException as exc:
        raise RegistryError(f"the Docker engine failed: {exc}") from None
    finally:
        if engine is None:
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


# -- prune --env ---------------------------------------------------------------------------


class Lenient:
    """A history source whose failures become notes (``--source auto`` with a ledger)."""

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


@dataclass
class RollbackGuard:
    """What ``prune --env`` protects so that each environment runs on and can roll back.

    ``sources`` are the deploy histories that answered (the ledger, GitHub
    Deployments); ``where`` says which, for warnings. ``required``: the environments a
    user named, which must have history for each image (the others only get a
    warning). ``allow_prerelease``: the ``previous`` setting whose rollback target to
    keep; ``None`` keeps the targets of both. No environments: nothing is protected.
    ``warning``: why nothing is protected although environments were configured.
    """

    environments: tuple[str, ...] = ()
    sources: tuple[HistorySource, ...] = ()
    where: str = ""
    allow_prerelease: bool | None = None
    required: tuple[str, ...] = ()
    notes: list[str] = dataclasses.field(default_factory=list)
    warning: str | None = None
    keep_deploys: int = 0  # also the images of the last K successful deploys (protection)
    version_scheme: Scheme = "semver"  # what a release is, for the rollback target

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
            keep_deploys=self.keep_deploys,
            version_scheme=self.version_scheme,
        )
        result.require(self.required)
        return result.protected, [*self.notes, *result.warnings(self.where)]


def protection_sources(
    environments: Sequence[str],
    *,
    settings: HistorySettings,
    stack: ExitStack,
    source: HistoryFrom | None = None,
    required: Sequence[str] = (),
    allow_prerelease: bool | None = None,
    strict: bool | None = None,
) -> RollbackGuard:
    """Open the history sources ``prune --env`` reads; raises before anything is asked.

    ``environments``: every environment to protect; ``required``: those a user named
    (rather than a configuration default). The ledger is opened read-only (closed by
    ``stack``) and never created. When no source can be read and ``strict`` (default:
    when some environment is required or ``source`` is given), that is a usage error:
    pruning as if nothing were deployed is what ``--env`` is there to prevent; otherwise
    the guard protects nothing and says why in :attr:`RollbackGuard.warning`.
    """
    from tagkeeper.gate.rules import validate_env_name
    from tagkeeper.rollback.ledger import Ledger, LedgerHistory
    from tagkeeper.rollback.ledger import exists as ledger_exists

    names = tuple(dict.fromkeys(validate_env_name(n) for n in environments))
    if not names:
        return RollbackGuard()
    chosen = source or HistoryFrom.ledger
    path = settings.ledger
    sources: list[HistorySource] = []
    where: list[str] = []
    if chosen is not HistoryFrom.github and ledger_exists(path):
        ledger = Ledger(path, create=False)
        stack.callback(ledger.close)
        sources.append(LedgerHistory(ledger))
        where.append(f"ledger {path}")
    notes: list[str] = []  # what a lenient source could not read, per image
    if chosen is HistoryFrom.github or (
        chosen is HistoryFrom.auto and settings.github_configured()
    ):
        deployments = settings.deployments()
        # auto: GitHub adds to the ledger, and cannot fail the prune while the ledger answers
        sources.append(Lenient(deployments, notes) if sources else deployments)
        where.append("GitHub Deployments")
    if not sources:
        missing = f"no deploy ledger at {path}"
        if chosen is HistoryFrom.auto:
            missing += " and no GitHub repository and token for Deployments"
        if strict if strict is not None else (bool(required) or source is not None):
            told = ", ".join(f"--env {e}" for e in names)
            raise UsageError(
                f"{told}: {missing}, so nothing deployed there is known to protect",
                hint="point --ledger or $TAGKEEPER_LEDGER at the ledger the deploys write "
                "(as root the default is /var/lib/tagkeeper/ledger.db), or read GitHub "
                "Deployments with --source github, or drop --env",
            )
        return RollbackGuard(
            warning=f"config env {names[0]!r}: {missing}; prune protects no rollback target "
            "(pass --env with --ledger or --source github to make it)"
        )
    return RollbackGuard(
        names,
        tuple(sources),
        ", ".join(where),
        allow_prerelease=allow_prerelease,
        required=tuple(dict.fromkeys(required)),
        notes=notes,
    )
