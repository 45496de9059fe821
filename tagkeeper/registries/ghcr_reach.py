"""What a version pushed during a GHCR prune reaches: the push half of the re-check.

Before a version is deleted, the versions pushed since the listing (found by the looks of
:mod:`tagkeeper.registries.ghcr_recheck`) are read through ``/v2``: one that lists the
version (directly or through other indexes: buildx pushes an unchanged platform manifest
again), or that reaches what the version refers to (the subject of a signature, an SBOM,
an OCI 1.1 referrer), stops its delete. Each pushed manifest is read once per run.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from tagkeeper.errors import RegistryError
from tagkeeper.inventory import ManifestMissing, ManifestUnreadable
from tagkeeper.retention.policy import referrer_subject

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tagkeeper.inventory import Version
    from tagkeeper.registries.distribution import Registry

__all__ = ["PushReach"]


class PushReach:
    """Reads, once each, what pushed versions list. Thread-safe."""

    def __init__(self, registry: Registry, display: str) -> None:
        self._registry = registry
        self._display = display
        self._lock = threading.Lock()  # never held across a request
        self._reach: dict[str, frozenset[str]] = {}  # pushed digest -> what it lists

    def reaching(self, version: Version, pushed: Sequence[Version]) -> str | None:
        """Why ``version`` must stay: a version ``pushed`` since the listing reaches it,
        or reaches what it refers to (the subject of an OCI 1.1 referrer or of a cosign
        ``sha256-<hex>.sig`` tag: an image is whole only with its signatures); ``None``
        when none does.

        The version's own manifest is read only when something was pushed (to learn its
        subject). Raises :class:`RegistryError` when a manifest that decides cannot be
        read: a version pushed during the prune may list anything."""
        target = version.digest
        subjects: frozenset[str] | None = None
        for new in pushed:
            if new.digest == target:
                continue
            reached = self._descendants(new.digest) | {new.digest}
            tags = ", ".join(sorted(new.tags)) or "untagged"
            if target in reached:
                return (
                    f"listed by {new.digest[:19]} ({tags}), pushed since the plan: "
                    "skipped, it stays"
                )
            if subjects is None:
                subjects = self._subjects_of(version)
            if subjects & reached:
                subject = min(subjects & reached)
                return (
                    f"refers to {subject[:19]}, which {new.digest[:19]} ({tags}) "
                    "pushed since the plan reaches: skipped, it stays"
                )
        return None

    def _subjects_of(self, version: Version) -> frozenset[str]:
        """What ``version`` refers to: its cosign tags' subjects and its OCI 1.1
        ``subject``. Raises :class:`RegistryError` when its manifest cannot be read."""
        found = {s for s in map(referrer_subject, version.tags) if s is not None}
        try:
            subject = self._registry.manifest(version.digest).subject
        except ManifestMissing:
            subject = None
        except ManifestUnreadable as exc:
            raise RegistryError(
                f"{self._display}: {version.digest[:19]} cannot be read ({exc.reason}) to "
                "tell whether it refers to an image pushed during the prune; stopped before "
                "deleting it",
                hint="rerun: the next plan includes what was pushed",
            ) from None
        if subject is not None:
            found.add(subject)
        return frozenset(found)

    def _descendants(self, digest: str) -> frozenset[str]:
        """Every manifest ``digest`` lists, recursively (read through the registry, so
        each manifest once per run). Raises :class:`RegistryError` when one cannot be
        read: a version pushed during the prune may list anything."""
        with self._lock:
            known = self._reach.get(digest)
        if known is not None:
            return known
        try:
            found = self._registry.listed_by(digest)
        except ManifestUnreadable as exc:
            raise RegistryError(
                f"{self._display}: {digest[:19]} was pushed during the prune and "
                f"{exc.digest[:19]} cannot be read ({exc.reason}); stopped before "
                "deleting anything it may list",
                hint="rerun: the next plan includes it",
            ) from None
        with self._lock:
            self._reach[digest] = found
        return found
