"""What pruning must keep so that every environment runs on and can still roll back.

For each environment ``prune --env`` is told about, :func:`protection` asks the history
sources (the ledger, GitHub Deployments) and returns the ``protected`` mapping of the
retention planner: digest or tag -> reason, e.g. ``"current in prod (ledger)"``.

* **What runs** is the last deploy that succeeded (:func:`~tagkeeper.rollback.resolve.
  current_deploy`): its recorded digest and its tag. A tag pushed again since points at
  another image; the recorded digest is the one that runs.
* **What may run**: every deploy newer than that one which did not succeed (still in
  progress, killed midway, failed after switching, marked rolled back): a failed or
  unfinished deploy only ever adds protection, never takes any away.
* **The last K deploys** (``keep_deploys``): the images of the last K successful deploys
  of each environment, distinct images counted once, the current one among them
  (:func:`recent_deploys`).
* **The rollback target**: exactly what ``tagkeeper previous`` answers from the same
  history, by tag and recorded digest. ``allow_prerelease`` is the setting ``previous``
  would use; ``None`` (a caller that cannot know it) protects the answer of both settings.

When ``versions`` and a current tag (``currents``) are given and the history has no
rollback target for an environment, the registry answer is protected instead (the
current tag and the highest release below it), with ``(registry)`` in the reason.

An environment no source has any deploy of the repository in is ``missing``:
:meth:`Protection.require` makes that an error for the environments a user named (the
message lists those the history does have), :meth:`Protection.warnings` a warning for the
others.

The functions do no I/O of their own: the sources they are given do (a
:class:`~tagkeeper.rollback.ledger.LedgerHistory`, a GitHub history adapter, or a fake in tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from tagkeeper.errors import NoRollbackTarget, UsageError
from tagkeeper.gate.rules import ENV_NAME_RE
from tagkeeper.rollback.resolve import (
    DeployRecord,
    DeployStatus,
    RollbackTarget,
    current_deploy,
    previous_from_history,
    previous_from_registry,
    unsettled_deploys,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

    from tagkeeper.inventory import Version
    from tagkeeper.versioning import Scheme


class HistorySource(Protocol):
    """Deploy history of one repository, newest first, per environment."""

    @property
    def name(self) -> str:
        """How reasons name the source: ``ledger``, ``github``."""
        ...

    def history(self, repository: str, environment: str) -> Sequence[DeployRecord]: ...

    def environments(self, repository: str) -> Sequence[str]:
        """The environments this source has deploys of ``repository`` in (for messages)."""
        ...


class NoHistory(UsageError):
    """An environment a user named has no deploy of the image in any history source."""

    def __init__(self, repository: str, missing: Sequence[str], recorded: Sequence[str]) -> None:
        names = ", ".join(shown_env(name) for name in missing)
        if recorded:
            known = f"deploys of {repository} are recorded to {', '.join(recorded)} only"
            hint = (
                f"name the environment as the deploys recorded it (--env {recorded[0]}), or "
                "point --ledger / --source at the history the deploys of this environment write"
            )
        else:
            known = f"the history has no deploy of {repository} at all"
            hint = (
                "point --ledger or $TAGKEEPER_LEDGER at the ledger the deploys write, or read "
                "GitHub Deployments with --source github; pruning as if nothing were deployed "
                "is what --env prevents"
            )
        super().__init__(
            f"--env {names}: no deploy of {repository} to {names} is recorded; {known}",
            hint=hint,
        )
        self.missing = tuple(missing)
        self.recorded = tuple(recorded)


def shown_env(name: str) -> str:
    """An environment name fit to print: as is when it fits the grammar, else escaped."""
    return name if ENV_NAME_RE.fullmatch(name) else ascii(name)


@dataclass(frozen=True, slots=True)
class Protection:
    """What one repository's deploy history protects, and what it could not tell."""

    repository: str
    protected: dict[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()  # environments with no deploy of the repository anywhere
    recorded: tuple[str, ...] = ()  # where it has deploys (read only when one is missing)

    def require(self, environments: Iterable[str]) -> None:
        """Raise :class:`NoHistory` when one of ``environments`` has no history."""
        wanted = set(environments)
        missing = [name for name in self.missing if name in wanted]
        if missing:
            raise NoHistory(self.repository, missing, self.recorded)

    def warnings(self, where: str) -> list[str]:
        """One warning per environment without history (``where``: the sources read)."""
        known = (
            f"deploys are recorded to {', '.join(self.recorded)}"
            if self.recorded
            else "no deploy of it is recorded at all"
        )
        return [
            f"nothing is known to be deployed to {shown_env(name)} for {self.repository} "
            f"({where}: {known}); nothing is protected for it"
            for name in self.missing
        ]


def _add(protected: dict[str, str], key: str | None, reason: str) -> None:
    if not key:
        return
    existing = protected.get(key)
    if existing is None:
        protected[key] = reason
    elif reason not in existing.split("; "):
        protected[key] = f"{existing}; {reason}"


def _protect(protected: dict[str, str], tag: str | None, digest: str | None, why: str) -> None:
    _add(protected, digest, why)
    _add(protected, tag, why)


_UNSETTLED = {
    DeployStatus.STARTED: "deploy in progress to {env}",
    DeployStatus.FAILED: "failed deploy to {env}, may still run",
    DeployStatus.ROLLED_BACK: "rolled-back deploy to {env}, may still run",
}


def _settings(allow_prerelease: bool | None) -> tuple[bool, ...]:
    return (False, True) if allow_prerelease is None else (allow_prerelease,)


def _targets(
    answer: Callable[[bool], RollbackTarget], allow_prerelease: bool | None
) -> list[tuple[RollbackTarget, str]]:
    """The rollback target under each setting, with how its reason names the setting."""
    found: list[tuple[RollbackTarget, str]] = []
    for setting in _settings(allow_prerelease):
        try:
            target = answer(setting)
        except NoRollbackTarget:
            continue
        if any((t.tag, t.digest) == (target.tag, target.digest) for t, _ in found):
            continue
        label = " with prereleases allowed" if allow_prerelease is None and setting else ""
        found.append((target, label))
    return found


def recent_deploys(records: Sequence[DeployRecord], count: int) -> list[DeployRecord]:
    """The last ``count`` successful deploys of distinct images, newest first.

    ``records`` are newest first. Only deploys that succeeded count (a failed or
    rolled-back one was never a version to go back to); the current deploy is the first;
    a redeploy of an image already counted (a rollback to it, a restart) takes no second
    place. An image is its recorded digest, or its tag when no digest was recorded.
    """
    seen: set[str] = set()
    out: list[DeployRecord] = []
    for record in records:
        if len(out) >= count:
            break
        if record.status is not DeployStatus.SUCCEEDED:
            continue
        key = record.digest or f"tag:{record.tag}"
        if key in seen:
            continue
        seen.add(key)
        out.append(record)
    return out


def _from_history(
    protected: dict[str, str],
    records: Sequence[DeployRecord],
    *,
    repository: str,
    environment: str,
    source: str,
    current: str | None,
    allow_prerelease: bool | None,
    keep_deploys: int = 0,
    version_scheme: Scheme = "semver",
) -> bool:
    """Protect what ``records`` say runs, may run, the last ``keep_deploys`` successful
    deploys, and the rollback target.

    Returns whether a rollback target was found.
    """
    live = current_deploy(records)
    if live is not None:
        _protect(protected, live.tag, live.digest, f"current in {environment} ({source})")
    for rank, record in enumerate(recent_deploys(records, keep_deploys), start=1):
        if record is live:
            continue  # says so already
        why = f"one of the last {keep_deploys} deploys to {environment} (#{rank}, {source})"
        _protect(protected, record.tag, record.digest, why)
    for record in unsettled_deploys(records):
        why = _UNSETTLED.get(record.status, "deploy to {env}, may still run")
        _protect(protected, record.tag, record.digest, f"{why.format(env=environment)} ({source})")
    if current is not None and (live is None or live.tag != current):
        same_tag = [r for r in records if r.tag == current]
        pinned = next(
            (r.digest for r in same_tag if r.status is DeployStatus.SUCCEEDED and r.digest),
            next((r.digest for r in same_tag if r.digest), None),
        )
        _protect(protected, current, pinned, f"current in {environment} ({source})")

    def answer(setting: bool) -> RollbackTarget:
        return previous_from_history(
            records,
            repository=repository,
            environment=environment,
            current=current,
            allow_prerelease=setting,
            source=source,
            version_scheme=version_scheme,
        )

    targets = _targets(answer, allow_prerelease)
    for target, label in targets:
        _protect(
            protected,
            target.tag,
            target.digest,
            f"rollback target for {environment}{label} ({source})",
        )
    return bool(targets)


def _from_registry(
    protected: dict[str, str],
    versions: Sequence[Version],
    *,
    repository: str,
    environment: str,
    current: str,
    allow_prerelease: bool | None,
    version_scheme: Scheme = "semver",
) -> None:
    def answer(setting: bool) -> RollbackTarget:
        return previous_from_registry(
            versions,
            repository=repository,
            environment=environment,
            current=current,
            allow_prerelease=setting,
            version_scheme=version_scheme,
        )

    for target, label in _targets(answer, allow_prerelease):
        _protect(
            protected,
            target.tag,
            target.digest,
            f"rollback target for {environment}{label} (registry)",
        )


def protection(
    repository: str,
    environments: Iterable[str],
    sources: Sequence[HistorySource],
    *,
    versions: Sequence[Version] | None = None,
    currents: Mapping[str, str] | None = None,
    allow_prerelease: bool | None = None,
    keep_deploys: int = 0,
    version_scheme: Scheme = "semver",
) -> Protection:
    """Digests and tags to keep so each environment runs on and can roll back.

    ``currents`` names the tag running in an environment when the caller knows it (a
    ``--current`` flag, a running container); it is protected besides what the history
    says runs. ``allow_prerelease``: the setting of ``previous`` to protect the answer
    of; ``None`` protects the answers of both. ``keep_deploys``: also protect the images
    of the last that many successful deploys of each environment, per history source
    (:func:`recent_deploys`; the current one counts among them).
    """
    if isinstance(keep_deploys, bool) or keep_deploys < 0:
        raise UsageError(
            f"--keep-deploys must be a non-negative integer, not {keep_deploys!r}",
            hint="use 0 to keep only what runs and the rollback target",
        )
    protected: dict[str, str] = {}
    missing: list[str] = []
    currents = currents or {}
    for environment in dict.fromkeys(environments):
        current = currents.get(environment)
        any_history = False
        any_target = False
        for source in sources:
            records = [
                r
                for r in source.history(repository, environment)
                if r.repository == repository and r.environment == environment
            ]
            if not records:
                continue
            any_history = True
            any_target |= _from_history(
                protected,
                records,
                repository=repository,
                environment=environment,
                source=source.name,
                current=current,
                allow_prerelease=allow_prerelease,
                keep_deploys=keep_deploys,
                version_scheme=version_scheme,
            )
        if not any_history:
            missing.append(environment)
        if current is None or any_target:
            continue
        if not any_history:
            digest = next((v.digest for v in versions or () if current in v.tags), None)
            _protect(protected, current, digest, f"current in {environment} (given)")
        if versions is not None:
            _from_registry(
                protected,
                versions,
                repository=repository,
                environment=environment,
                current=current,
                allow_prerelease=allow_prerelease,
                version_scheme=version_scheme,
            )
    recorded: list[str] = []
    if missing:
        for source in sources:
            recorded.extend(source.environments(repository))
    return Protection(
        repository,
        protected,
        tuple(missing),
        tuple(shown_env(name) for name in sorted(set(recorded))),
    )


def rollback_protection(
    repository: str,
    environments: Iterable[str],
    sources: Sequence[HistorySource],
    *,
    versions: Sequence[Version] | None = None,
    currents: Mapping[str, str] | None = None,
    allow_prerelease: bool | None = None,
    required: Collection[str] = (),
    keep_deploys: int = 0,
    version_scheme: Scheme = "semver",
) -> dict[str, str]:
    """The ``protected`` mapping of :func:`protection`; raises :class:`NoHistory` when an
    environment in ``required`` has no history."""
    result = protection(
        repository,
        environments,
        sources,
        versions=versions,
        currents=currents,
        allow_prerelease=allow_prerelease,
        keep_deploys=keep_deploys,
        version_scheme=version_scheme,
    )
    result.require(required)
    return result.protected
