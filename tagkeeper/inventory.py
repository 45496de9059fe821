"""The inventory model: what a backend knows about the images of one repository.

Backends (GHCR, any OCI registry, the local Docker engine) describe a repository as a
list of :class:`Version` values, read manifests on demand through a
:class:`ManifestReader`, and delete through a :class:`Backend`. The retention planner
works only on these values; it never imports a backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST})


@dataclass(frozen=True, slots=True)
class Version:
    """One manifest in a repository (an image, an index, an attestation, a signature...).

    ``digest`` identifies it; ``tags`` are the tags that point at it now; ``created`` is
    the push (or image creation) time, timezone-aware. ``key`` is the backend's own
    handle when it differs from the digest (a GHCR package version id, a local image id);
    ``sequence`` the push order when the backend knows it.
    """

    digest: str
    tags: frozenset[str]
    created: datetime
    key: str | None = None
    media_type: str | None = None
    # push order, when the backend knows it (GHCR version ids grow with every push):
    # breaks ties between equal push times, which registries record to the second
    sequence: int | None = None

    @property
    def tagged(self) -> bool:
        return bool(self.tags)


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What a manifest says about reachability."""

    digest: str
    media_type: str
    children: tuple[str, ...] = ()  # manifests an index lists (platforms, attestations)
    subject: str | None = None  # OCI 1.1 subject of a referrer
    created: datetime | None = None  # from the config or annotations, when present


class ManifestUnreadable(Exception):
    """A manifest could not be read; whatever it could reach must be kept."""

    def __init__(self, digest: str, reason: str) -> None:
        super().__init__(f"{digest}: {reason}")
        self.digest = digest
        self.reason = reason


class ManifestMissing(ManifestUnreadable):
    """The registry answered that the manifest does not exist (404 for its digest).

    A definite answer, unlike a failure: a manifest that is not there reaches nothing
    that a delete could break. The planner still fails closed for a *listed* version
    whose manifest is missing (the listing and the registry disagree); it only accepts
    the answer for a digest the listing does not show (a protected digest that was
    deleted, a child of one).
    """


class ManifestReader(Protocol):
    """Reads manifests on demand; each digest is read at most once per run."""

    def manifest(self, digest: str) -> ManifestInfo:
        """The manifest of ``digest``; raises :class:`ManifestUnreadable` on failure
        (:class:`ManifestMissing` when the registry says it does not exist).

        The planner also asks about digests the listing does not show (a protected
        digest, and what it lists): a reader answers for any digest of the repository.
        """
        ...

    def referrers(self, digest: str) -> Sequence[str]:
        """Digests of the manifests whose ``subject`` is ``digest`` (OCI 1.1).

        Backends without a referrers API answer from the ``sha256-<hex>`` tag schema
        index, or with an empty sequence. Raises :class:`ManifestUnreadable` when the
        answer exists but cannot be read.
        """
        ...


class DeleteStatus(Enum):
    DELETED = "deleted"
    ALREADY_GONE = "already-gone"  # answered 404: someone deleted it first
    CHANGED = "changed"  # its tags moved since the plan: skipped
    REFUSED = "refused"  # the backend refused (last version, download limit, in use...)
    FAILED = "failed"  # a transient failure that outlived the retries


@dataclass(frozen=True, slots=True)
class DeleteResult:
    version: Version
    status: DeleteStatus
    detail: str = ""


@dataclass(slots=True)
class RequestStats:
    """Requests a backend sent, by kind (for dry-run reports and benchmarks)."""

    by_kind: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> None:
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


class Backend(ABC):
    """One repository in one place (a GHCR package, an OCI repository, a local engine).

    Subclasses implement the abstract members. The optional hooks have defaults that
    do nothing, so the prune runner calls them on every backend:

    - :meth:`protected`: references the backend itself must keep (the local engine:
      every image a container uses), called after :meth:`versions`;
    - :attr:`warnings`: what the plan should say about the backend (OCI: unknown
      creation times), read after planning;
    - :meth:`check_delete`: raises before anything is deleted when deletes cannot work
      (OCI: deletes switched off, or no permission; GHCR: a token that surely cannot
      delete, as far as GitHub shows it); safe to call more than once;
    - :meth:`expect_deletes`: told what the plan deletes, before it is applied (OCI:
      then re-reads only kept and new tags before each delete).
    """

    @property
    @abstractmethod
    def display(self) -> str:
        """How the repository is named in output, e.g. ``ghcr.io/acme/app``."""

    @property
    @abstractmethod
    def stats(self) -> RequestStats:
        """The requests this backend sent, by kind."""

    @property
    @abstractmethod
    def reader(self) -> ManifestReader:
        """The manifest reader of this repository: each digest read at most once per run
        (a re-plan during the apply reads nothing again)."""

    @abstractmethod
    def versions(self) -> Sequence[Version]:
        """Every version of the repository, tagged or not."""

    @abstractmethod
    def resolve_tag(self, tag: str) -> str | None:
        """The digest ``tag`` points at now (as :attr:`Version.digest` names it), or
        ``None`` when the repository has no such tag. One lookup (a registry ``HEAD``),
        never a listing of the repository."""

    @abstractmethod
    def current_tags(self, version: Version) -> frozenset[str] | None:
        """The tags ``version`` has right now, or ``None`` when it no longer exists."""

    @abstractmethod
    def delete(self, version: Version) -> DeleteResult:
        """Delete one version (paced and retried as the backend needs)."""

    # -- optional hooks: defaults for backends that need none -------------------------

    def protected(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The references the planner must keep (reference -> reason): ``extra`` plus
        what the backend itself must keep. Called after :meth:`versions`."""
        return dict(extra or {})

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the plan should say about this repository (read after planning)."""
        return ()

    def check_delete(self) -> None:  # noqa: B027 - a hook whose default is to accept
        """Raise before anything is deleted when deletes surely cannot work here."""

    def expect_deletes(self, versions: Iterable[Version]) -> None:  # noqa: B027
        """Learn which versions the plan deletes, before they are deleted."""
