"""What pruning must keep so that every environment can still roll back.

For each environment ``prune --env`` is told about, :func:`rollback_protection` asks the
history sources (the ledger, GitHub Deployments) what runs there now, what deploy is
still in progress, and what ``tagkeeper previous`` would answer; it returns the
``protected`` mapping of the retention planner: digest or tag -> reason, e.g.
``"current in prod (ledger)"`` or ``"rollback target for prod (ledger)"``.

When no source has any history for an environment, the registry answer is used instead
(``versions`` plus the current tag from ``currents``): the current tag and the highest
release below it are protected, with ``(registry)`` in the reason.

The function does no I/O of its own: the sources it is given do (a
:class:`~tagkeeper.rollback.ledger.LedgerHistory`, a GitHub history adapter, or a fake in tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from tagkeeper.errors import NoRollbackTarget
from tagkeeper.rollback.resolve import (
    DeployRecord,
    DeployStatus,
    RollbackTarget,
    current_deploy,
    previous_from_history,
    previous_from_registry,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from tagkeeper.inventory import Version


class HistorySource(Protocol):
    """Deploy history of one repository in one environment, newest first."""

    @property
    def name(self) -> str:
        """How reasons name the source: ``ledger``, ``github``."""
        ...

    def history(self, repository: str, environment: str) -> Sequence[DeployRecord]: ...


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


def _from_history(
    protected: dict[str, str],
    records: Sequence[DeployRecord],
    *,
    repository: str,
    environment: str,
    source: str,
    current: str | None,
    allow_prerelease: bool,
) -> None:
    live = current_deploy(records)
    if current is None and live is not None:
        current = live.tag
    if current is not None:
        digest = next((r.digest for r in records if r.tag == current and r.digest), None)
        _protect(protected, current, digest, f"current in {environment} ({source})")
    # A deploy still running (or killed midway) may be what runs now: keep it too.
    for record in records:
        if record is live:
            break
        if record.status is DeployStatus.STARTED:
            _protect(
                protected,
                record.tag,
                record.digest,
                f"deploy in progress to {environment} ({source})",
            )
    try:
        target = previous_from_history(
            records,
            repository=repository,
            environment=environment,
            current=current,
            allow_prerelease=allow_prerelease,
            source=source,
        )
    except NoRollbackTarget:
        return
    _protect(protected, target.tag, target.digest, f"rollback target for {environment} ({source})")


def rollback_protection(
    repository: str,
    environments: Iterable[str],
    sources: Sequence[HistorySource],
    *,
    versions: Sequence[Version] | None = None,
    currents: Mapping[str, str] | None = None,
    allow_prerelease: bool = False,
) -> dict[str, str]:
    """Digests and tags to keep so each environment can roll back, with the reason for each.

    ``currents`` names the tag running in an environment when the caller knows it (a
    ``--current`` flag, a running container); otherwise each source's newest successful
    deploy is taken as current.
    """
    protected: dict[str, str] = {}
    currents = currents or {}
    for environment in dict.fromkeys(environments):
        current = currents.get(environment)
        any_history = False
        for source in sources:
            records = [
                r
                for r in source.history(repository, environment)
                if r.repository == repository and r.environment == environment
            ]
            if not records:
                continue
            any_history = True
            _from_history(
                protected,
                records,
                repository=repository,
                environment=environment,
                source=source.name,
                current=current,
                allow_prerelease=allow_prerelease,
            )
        if any_history or versions is None or current is None:
            if not any_history and current is not None:
                _protect(protected, current, None, f"current in {environment} (given)")
            continue
        current_digest = next((v.digest for v in versions if current in v.tags), None)
        _protect(protected, current, current_digest, f"current in {environment} (given)")
        try:
            target: RollbackTarget = previous_from_registry(
                versions,
                repository=repository,
                environment=environment,
                current=current,
                allow_prerelease=allow_prerelease,
            )
        except NoRollbackTarget:
            continue
        _protect(
            protected,
            target.tag,
            target.digest,
            f"rollback target for {environment} (registry)",
        )
    return protected
