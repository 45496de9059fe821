"""Rollback resolution: what ``tagkeeper previous`` answers. Pure: inputs in, values out.

Two kinds of input decide the answer:

* **Deploy history** (the embedded ledger, or GitHub Deployments): a list of
  :class:`DeployRecord` for one image repository and one environment, *newest first*.
  The answer is the last successful deploy before the current one. The current deploy is
  the one named by ``current`` (its newest record), or, when no tag is given, the newest
  record that succeeded. A record qualifies when it succeeded, is not the current tag,
  and its tag is acceptable for the environment (never ``latest`` or another moving
  pointer, never a prerelease for prod unless allowed, only exact releases for prod).
  Failed, rolled-back and never-finished (``started``) deploys are skipped.
  When ``current`` is not in the history at all, its place in time is unknown: the
  answer is then the newest qualifying deploy whose release precedes ``current`` by
  SemVer (never one newer than it: that would be a roll forward), and the target's
  ``notes`` say so; a ``current`` that is no SemVer release cannot be placed and has no
  answer. An empty or invalid ``current`` is a :class:`~tagkeeper.errors.UsageError`.
* **Registry versions** (no history): the highest stable SemVer release below the
  current one that still exists; for a ``dev-<sha>`` current tag, the ``dev-<sha>``
  pushed before it. The registry cannot tell what is deployed, so ``current`` is required.

Nothing qualifying raises :class:`~tagkeeper.errors.NoRollbackTarget` with the reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tagkeeper.channels import is_dev_tag
from tagkeeper.errors import NoRollbackTarget, UsageError
from tagkeeper.gate.rules import Code, Policy, policy_for
from tagkeeper.refs import parse_reference, require_valid_tag
from tagkeeper.versioning import Scheme, TagVersion, version_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

    from tagkeeper.inventory import Version

_MAX_REASONS = 6


class DeployStatus(StrEnum):
    """Where a deploy stands. Only ``succeeded`` deploys are rollback targets."""

    STARTED = "started"  # running, or killed before it could say how it ended
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"  # it succeeded, then a rollback replaced it


@dataclass(frozen=True, slots=True)
class DeployRecord:
    """One deploy of ``repository:tag`` to ``environment``, as a history source knows it.

    ``id`` is the source's own key (ledger row id, GitHub deployment id). ``rollback``
    is true for deploys that were themselves rollbacks. Times are timezone-aware.
    """

    environment: str
    repository: str
    tag: str
    status: DeployStatus
    started_at: datetime
    digest: str | None = None
    ended_at: datetime | None = None
    rollback: bool = False
    id: int | None = None
    user: str | None = None
    ci_run_url: str | None = None
    host: str | None = None
    detail: str | None = None
    source: str = "ledger"
    # how a deploy engine ran it (the ledger only; None for scripts and other sources)
    strategy: str | None = None
    container: str | None = None
    slot: str | None = None
    reason: str | None = None  # why it failed or was rolled back, e.g. "pre-check"
    numbers: Mapping[str, Any] | None = None  # what decided, e.g. {"gap_seconds": 1.2}

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "environment": self.environment,
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "status": str(self.status),
            "rollback": self.rollback,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "user": self.user,
            "ci_run_url": self.ci_run_url,
            "host": self.host,
            "detail": self.detail,
            "source": self.source,
            "strategy": self.strategy,
            "container": self.container,
            "slot": self.slot,
            "reason": self.reason,
            "numbers": dict(self.numbers) if self.numbers is not None else None,
        }


@dataclass(frozen=True, slots=True)
class RollbackTarget:
    """The answer of ``previous``: where a rollback goes, and why."""

    repository: str
    environment: str
    tag: str
    digest: str | None
    source: str  # "ledger", "github" or "registry"
    current: str | None  # the tag the answer is "previous" to (None: not known)
    record: DeployRecord | None = None  # the deploy it comes from (history sources)
    notes: tuple[str, ...] = field(default=())

    def reference(self, *, pinned: bool = False) -> str:
        """``repo:tag``, or ``repo:tag@digest`` when ``pinned`` (and the digest is known)."""
        text = f"{self.repository}:{self.tag}"
        if pinned and self.digest:
            text += f"@{self.digest}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "environment": self.environment,
            "tag": self.tag,
            "digest": self.digest,
            "reference": self.reference(),
            "pinned": self.reference(pinned=True) if self.digest else None,
            "source": self.source,
            "current": self.current,
            "deploy_id": self.record.id if self.record else None,
            "notes": list(self.notes),
        }


def refusal(repository: str, tag: str, policy: Policy) -> str | None:
    """Why ``repository:tag`` can never be a rollback target for ``policy``; ``None`` if it can."""
    try:
        ref = parse_reference(f"{repository}:{tag}")
    except UsageError:
        return f"{tag} is not a valid reference"
    verdict = policy.judge(ref)
    if verdict.ok:
        return None
    phrases = {
        Code.LATEST: "is a moving tag",
        Code.DEV_POINTER: "is a moving pointer",
        Code.DEV_TAG: "is a branch build",
        Code.FLOATING_ALIAS: "is a floating alias",
        Code.PRERELEASE: "is a prerelease",
        Code.NON_RELEASE: "is not a release tag",
    }
    return f"{tag} {phrases.get(verdict.code, 'is refused: ' + verdict.message)}"


def current_deploy(history: Sequence[DeployRecord]) -> DeployRecord | None:
    """What runs now, as far as the history knows: the newest deploy that succeeded.

    Its recorded digest is what runs, even when its tag was pushed again since. This is
    the one definition: ``previous`` answers relative to it, prune protects it.
    """
    for record in history:
        if record.status is DeployStatus.SUCCEEDED:
            return record
    return None


def unsettled_deploys(history: Sequence[DeployRecord]) -> list[DeployRecord]:
    """Deploys newer than :func:`current_deploy` that did not succeed, newest first.

    Any of them may be what actually runs (a deploy still in progress, one killed midway,
    one that failed after it switched): they add to what must be kept, never replace it.
    """
    live = current_deploy(history)
    unsettled: list[DeployRecord] = []
    for record in history:
        if record is live:
            break
        unsettled.append(record)
    return unsettled


def check_current(current: str | None) -> str | None:
    """``current`` when it is ``None`` or a tag; a :class:`UsageError` otherwise.

    An empty value is refused rather than read as "not given": it is usually an unset
    variable (``--current "$CURRENT"``), and answering as if nothing were named would
    roll back to what already runs.
    """
    if current is None:
        return None
    if current == "":
        raise UsageError(
            "the current tag is empty (an unset variable?)",
            hint="pass the tag that runs now (--current v1.2.3), or leave --current out to "
            "take the newest successful deploy",
        )
    try:
        require_valid_tag(current)
    except UsageError as exc:
        raise UsageError(
            f"the current tag is not a tag: {exc.message}",
            hint="pass the tag that runs now, exactly as deployed (--current v1.2.3)",
        ) from None
    return current


def _skip_reason(record: DeployRecord, current: str | None, policy: Policy) -> str | None:
    if current is not None and record.tag == current:
        return f"{record.tag} is the current tag"
    if record.status is DeployStatus.FAILED:
        return f"{record.tag} failed"
    if record.status is DeployStatus.ROLLED_BACK:
        return f"{record.tag} was rolled back"
    if record.status is DeployStatus.STARTED:
        return f"{record.tag} never finished"
    return refusal(record.repository, record.tag, policy)


def _summarise(reasons: Iterable[str]) -> str:
    unique = list(dict.fromkeys(reasons))
    text = ", ".join(unique[:_MAX_REASONS])
    if len(unique) > _MAX_REASONS:
        text += f" and {len(unique) - _MAX_REASONS} more"
    return text


def previous_from_history(
    history: Iterable[DeployRecord],
    *,
    repository: str,
    environment: str,
    current: str | None = None,
    allow_prerelease: bool = False,
    source: str = "ledger",
    version_scheme: Scheme = "semver",
) -> RollbackTarget:
    """The last successful deploy before the current one. ``history`` is newest first.

    ``history`` is read once, front to back, and no further than the answer (a source
    may fetch it lazily, page by page). Records of other repositories or environments
    are ignored. Raises :class:`NoRollbackTarget` saying why when nothing qualifies.
    """
    check_current(current)
    policy = policy_for(
        environment, allow_prerelease=allow_prerelease, version_scheme=version_scheme
    )
    where = f"{repository} to {environment}"
    ceiling = version_of(current, version_scheme) if current is not None else None
    seen = False
    found = False  # the current deploy has been passed
    fallback: DeployRecord | None = None  # if current is absent: newest qualifying below it
    reasons: list[str] = []

    def target(record: DeployRecord, notes: tuple[str, ...] = ()) -> RollbackTarget:
        return RollbackTarget(
            repository=repository,
            environment=environment,
            tag=record.tag,
            digest=record.digest,
            source=source,
            current=current,
            record=record,
            notes=notes,
        )

    for record in history:
        if record.repository != repository or record.environment != environment:
            continue
        seen = True
        if not found:
            if current is None:
                if record.status is DeployStatus.SUCCEEDED:
                    current, found = record.tag, True
            elif record.tag == current:
                found = True
            elif (
                fallback is None
                and _below(record.tag, ceiling, version_scheme)
                and _skip_reason(record, current, policy) is None
            ):
                fallback = record
            continue
        why = _skip_reason(record, current, policy)
        if why is None:
            return target(record)
        reasons.append(why)
    if not seen:
        raise NoRollbackTarget(
            f"no deploy of {where} is recorded in the {source} history",
            hint="record deploys with 'tagkeeper deploy' or 'tagkeeper record', or use "
            "--source registry --current TAG",
        )
    if current is None:
        raise NoRollbackTarget(
            f"no deploy of {where} succeeded in the {source} history, so nothing is "
            "known to run there",
            hint="pass --current TAG (or --container NAME) to say what runs now",
        )
    if not found:
        if ceiling is None:
            raise NoRollbackTarget(
                f"{current} is not in the {source} history of {where} and is not a "
                f"{_SCHEME_NAME[version_scheme]} release, so which recorded deploys are older "
                "than it cannot be told",
                hint="pass --current with a tag the history has, or try --source registry "
                "(it orders dev builds by push time)",
            )
        note = (
            f"{current} is not in the {source} history; answering the newest successful "
            f"deploy recorded below {current}"
        )
        if fallback is not None:
            return target(fallback, (note,))
        raise NoRollbackTarget(
            f"{current} is not in the {source} history of {where}, and no deploy recorded "
            f"there below {current} qualifies",
            hint="deploy a known-good tag explicitly, or try --source registry",
        )
    detail = f"; {_summarise(reasons)}" if reasons else " (it is the first one recorded)"
    raise NoRollbackTarget(
        f"no successful deploy of {where} before {current}{detail}",
        hint="deploy a known-good tag explicitly, or try --source registry to take the "
        "highest release below the current one",
    )


_SCHEME_NAME = {"semver": "SemVer", "pep440": "PEP 440"}


def _below(tag: str, ceiling: TagVersion | None, scheme: Scheme) -> bool:
    """True when ``tag`` is a release (under ``scheme``) that precedes ``ceiling``."""
    version = version_of(tag, scheme)
    return (
        ceiling is not None
        and version is not None
        and version.precedence_key() < ceiling.precedence_key()
    )


@dataclass(frozen=True, slots=True)
class _Candidate:
    version: Version
    tag: str
    semver: TagVersion | None


def previous_from_registry(
    versions: Sequence[Version],
    *,
    repository: str,
    environment: str,
    current: str | None,
    allow_prerelease: bool = False,
    version_scheme: Scheme = "semver",
) -> RollbackTarget:
    """The rollback target from what the registry holds (no deploy history known).

    For a SemVer ``current``: the highest release below it by SemVer precedence (stable
    only unless ``allow_prerelease``), skipping versions that are the same image as the
    current one. For a ``dev-<sha>`` ``current``: the ``dev-<sha>`` pushed last before it.
    """
    check_current(current)
    policy = policy_for(
        environment, allow_prerelease=allow_prerelease, version_scheme=version_scheme
    )
    if current is None:
        raise NoRollbackTarget(
            f"the registry cannot tell which version of {repository} runs in {environment}",
            hint="pass --current TAG or --container NAME (or record deploys in the ledger)",
        )
    current_version = next((v for v in versions if current in v.tags), None)
    current_digest = current_version.digest if current_version else None
    notes: list[str] = []
    reasons: list[str] = []
    wanted = version_of(current, version_scheme)
    if wanted is not None:
        best: _Candidate | None = None
        for version in versions:
            if current_digest is not None and version.digest == current_digest:
                continue
            for tag in sorted(version.tags):
                semver = version_of(tag, version_scheme)
                if semver is None or not semver.precedence_key() < wanted.precedence_key():
                    continue
                why = refusal(repository, tag, policy)
                if semver.is_prerelease and not allow_prerelease:
                    why = why or f"{tag} is a prerelease"
                if why is not None:
                    reasons.append(why)
                    continue
                candidate = _Candidate(version, tag, semver)
                if best is None or _better(candidate, best, current):
                    best = candidate
        if best is not None:
            return RollbackTarget(
                repository,
                environment,
                best.tag,
                best.version.digest,
                "registry",
                current,
                notes=tuple(notes),
            )
        detail = f"; {_summarise(reasons)}" if reasons else ""
        raise NoRollbackTarget(
            f"no stable release of {repository} below {current} exists in the registry{detail}",
            hint="deploy a known-good tag explicitly"
            + ("" if allow_prerelease else ", or pass --allow-prerelease"),
        )
    if is_dev_tag(current):
        if current_version is None:
            raise NoRollbackTarget(
                f"{repository}:{current} is not in the registry, so the dev build pushed "
                "before it cannot be found",
                hint="pass the dev tag that runs now (--current dev-<sha>)",
            )
        pushed = current_version.created
        dev_best: _Candidate | None = None
        for version in versions:
            if version.digest == current_version.digest or not version.created < pushed:
                continue
            tags = sorted(t for t in version.tags if is_dev_tag(t))
            usable = [t for t in tags if refusal(repository, t, policy) is None]
            if not usable:
                reasons.extend(r for t in tags if (r := refusal(repository, t, policy)))
                continue
            if dev_best is None or version.created > dev_best.version.created:
                dev_best = _Candidate(version, usable[0], None)
        if dev_best is not None:
            return RollbackTarget(
                repository,
                environment,
                dev_best.tag,
                dev_best.version.digest,
                "registry",
                current,
            )
        detail = f"; {_summarise(reasons)}" if reasons else ""
        raise NoRollbackTarget(
            f"no dev build of {repository} was pushed before {current}{detail}",
            hint="deploy a known-good tag explicitly",
        )
    raise NoRollbackTarget(
        f"{current!r} is neither a {_SCHEME_NAME[version_scheme]} release nor a dev-<sha> "
        "tag, so the registry cannot order it",
        hint="use --source ledger or --source github, or pass --current with a release tag",
    )


def _better(candidate: _Candidate, best: _Candidate, current: str) -> bool:
    """Higher precedence wins; on a tie, the tag written like ``current``, then the newest."""
    a, b = candidate.semver, best.semver
    if a is not None and b is not None and a.precedence_key() != b.precedence_key():
        return bool(a.precedence_key() > b.precedence_key())
    same_style = candidate.tag.startswith("v") == current.startswith("v")
    best_style = best.tag.startswith("v") == current.startswith("v")
    if same_style != best_style:
        return same_style
    return candidate.version.created > best.version.created
