"""An in-memory registry that implements the real ``Backend`` and ``ManifestReader``.

It behaves like a registry that deletes per manifest: deleting a version removes the
manifest and every tag on it, and leaves its children alone. Faults are injected by
setting its attributes: unreadable manifests or referrers, refusals, failures, a tag
pushed between plan and apply, a rate limit or another error after N deletes. Every
read and delete is logged so tests can check what the planner and the executor asked
for.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tagkeeper.errors import RateLimited, RegistryError, TagkeeperError
from tagkeeper.inventory import (
    OCI_INDEX,
    OCI_MANIFEST,
    Backend,
    DeleteResult,
    DeleteStatus,
    ManifestInfo,
    ManifestMissing,
    ManifestUnreadable,
    RequestStats,
    Version,
)
from tagkeeper.retention.planner import referrer_subject

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def digest_of(name: str) -> str:
    """A stable, valid sha256 digest for a readable name (``digest_of("app-amd64")``)."""
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def sig_tag(subject: str, kind: str = "sig") -> str:
    """The cosign tag for ``subject`` (``sha256-<hex>.sig``); ``kind=""``: bare schema tag."""
    algo, _, hexpart = subject.partition(":")
    return f"{algo}-{hexpart}" + (f".{kind}" if kind else "")


def at(minutes: float) -> datetime:
    """``T0`` plus ``minutes`` (push times in tests read as minutes after T0)."""
    return T0 + timedelta(minutes=minutes)


def listed_by(digest: str, reader: FakeRegistry) -> frozenset[str]:
    """Every manifest ``digest`` lists, recursively (the rule of
    :meth:`tagkeeper.registries.distribution.Registry.listed_by`): a missing manifest
    lists nothing; an unreadable one raises."""
    out: set[str] = set()
    todo = [digest]
    while todo:
        try:
            info = reader.manifest(todo.pop())
        except ManifestMissing:
            continue
        for child in info.children:
            if child not in out:
                out.add(child)
                todo.append(child)
    return frozenset(out)


class ReadOnce:
    """A :class:`~tagkeeper.inventory.ManifestReader` that asks ``inner`` about each digest
    at most once, answers and failures alike: what the backend contract asks of a
    backend's ``reader`` for one run (the registry backends' one cache does this)."""

    def __init__(self, inner: FakeRegistry) -> None:
        self.inner = inner
        self._manifests: dict[str, ManifestInfo | ManifestUnreadable] = {}
        self._referrers: dict[str, tuple[str, ...] | ManifestUnreadable] = {}

    def manifest(self, digest: str) -> ManifestInfo:
        answer = self._manifests.get(digest)
        if answer is None:
            try:
                answer = self.inner.manifest(digest)
            except ManifestUnreadable as exc:
                answer = exc
            self._manifests[digest] = answer
        if isinstance(answer, ManifestUnreadable):
            raise type(answer)(answer.digest, answer.reason)
        return answer

    def referrers(self, digest: str) -> Sequence[str]:
        answer = self._referrers.get(digest)
        if answer is None:
            try:
                answer = tuple(self.inner.referrers(digest))
            except ManifestUnreadable as exc:
                answer = exc
            self._referrers[digest] = answer
        if isinstance(answer, ManifestUnreadable):
            raise type(answer)(answer.digest, answer.reason)
        return answer


class FakeRegistry(Backend):
    """One repository held in memory: ``Backend`` and ``ManifestReader`` at once.

    Its :attr:`reader` reads each digest once per run, as the contract asks (a run
    starts with :meth:`versions`); the fake itself, used as a reader, reads every time.
    """

    def __init__(self, display: str = "registry.test/acme/app") -> None:
        self._display = display
        self._stats = RequestStats()
        self._run: ReadOnce | None = None
        self._versions: dict[str, Version] = {}
        self.manifests: dict[str, ManifestInfo] = {}
        self.subjects: dict[str, str] = {}  # referrer digest -> subject (OCI 1.1)
        self.unreadable: dict[str, str] = {}  # digest -> why its manifest cannot be read
        self.unreadable_referrers: dict[str, str] = {}  # digest -> why referrers fail
        self.refuse: dict[str, str] = {}  # digest -> why a delete is refused
        self.fail: dict[str, str] = {}  # digest -> why a delete fails
        self.rate_limit_after: int | None = None  # RateLimited once this many are deleted
        self.error_after: int | None = None  # ``error`` raised once this many are deleted
        self.error: TagkeeperError = TagkeeperError("unset")  # e.g. RegistryError, AuthError
        self.before_check: Callable[[Version], None] | None = None  # e.g. push a tag
        # digests of the listing a plan was made of: when set, each delete is re-checked
        # against the versions pushed since, as the GHCR backend does (a pushed index
        # that lists the version stops its delete)
        self.listed_at_plan: frozenset[str] | None = None
        self.manifest_reads: list[str] = []
        self.referrer_reads: list[str] = []
        self.checks: list[str] = []
        self.delete_calls: list[str] = []
        self.deleted: list[str] = []

    # ------------------------------------------------------------ building

    def add(
        self,
        name: str,
        *,
        tags: Iterable[str] = (),
        created: datetime | float = 0.0,
        children: Sequence[str] = (),
        subject: str | None = None,
        media_type: str | None = None,
        listed: bool = True,
        key: str | None = None,
        hide_media_type: bool = False,
        sequence: int | None = None,
    ) -> Version:
        """Add a manifest named ``name`` (or a digest). ``created`` in minutes after T0.

        ``children`` makes it an index; ``subject`` an OCI 1.1 referrer; ``listed=False``
        stores the manifest without listing it as a version (it is not in the listing).
        ``hide_media_type`` lists it without a media type, as GHCR's listing does;
        ``sequence`` is the push order, as GHCR's version ids give it.
        """
        digest = name if name.startswith("sha256:") else digest_of(name)
        when = created if isinstance(created, datetime) else at(created)
        mtype = media_type or (OCI_INDEX if children else OCI_MANIFEST)
        self.manifests[digest] = ManifestInfo(digest, mtype, tuple(children), subject, when)
        if subject is not None:
            self.subjects[digest] = subject
        version = Version(
            digest=digest,
            tags=frozenset(tags),
            created=when,
            key=key,
            media_type=None if hide_media_type else mtype,
            sequence=sequence,
        )
        if listed:
            for tag in version.tags:
                self._untag(tag)
            self._versions[digest] = version
        return version

    def _untag(self, tag: str) -> None:
        for digest, v in list(self._versions.items()):
            if tag in v.tags:
                self._versions[digest] = replace(v, tags=v.tags - {tag})

    def push_tag(self, tag: str, digest: str) -> None:
        """Point ``tag`` at ``digest`` (moving it off whatever had it), as a push does."""
        self._untag(tag)
        v = self._versions[digest]
        self._versions[digest] = replace(v, tags=v.tags | {tag})

    def remove(self, digest: str) -> None:
        """Someone else deleted ``digest``."""
        self._versions.pop(digest, None)
        self.manifests.pop(digest, None)

    def version(self, name: str) -> Version:
        return self._versions[name if name.startswith("sha256:") else digest_of(name)]

    def edges(self, digest: str) -> list[str]:
        """The true reach of ``digest`` (children, OCI referrers, cosign-tagged versions),
        whatever faults are injected."""
        info = self.manifests.get(digest)
        out = list(info.children) if info else []
        out += [r for r, s in self.subjects.items() if s == digest and r in self.manifests]
        out += [
            v.digest
            for v in self._versions.values()
            if any(referrer_subject(t) == digest for t in v.tags)
        ]
        return out

    def closure(self, digests: Iterable[str]) -> set[str]:
        """Every listed version reachable from ``digests`` (themselves included)."""
        seen: set[str] = set()
        todo = list(digests)
        while todo:
            d = todo.pop()
            if d in seen:
                continue
            seen.add(d)
            todo.extend(self.edges(d))
        return {d for d in seen if d in self._versions}

    # ------------------------------------------------------------ ManifestReader

    def manifest(self, digest: str) -> ManifestInfo:
        self.manifest_reads.append(digest)
        self._stats.count("manifest")
        if digest in self.unreadable:
            raise ManifestUnreadable(digest, self.unreadable[digest])
        info = self.manifests.get(digest)
        if info is None:
            raise ManifestMissing(digest, "manifest unknown")
        return info

    def referrers(self, digest: str) -> Sequence[str]:
        self.referrer_reads.append(digest)
        self._stats.count("referrers")
        if digest in self.unreadable_referrers:
            raise ManifestUnreadable(digest, self.unreadable_referrers[digest])
        return sorted(r for r, s in self.subjects.items() if s == digest and r in self.manifests)

    # ------------------------------------------------------------ Backend

    @property
    def display(self) -> str:
        return self._display

    @property
    def stats(self) -> RequestStats:
        return self._stats

    @property
    def reader(self) -> ReadOnce:
        if self._run is None:
            self._run = ReadOnce(self)
        return self._run

    def versions(self) -> Sequence[Version]:
        self._stats.count("list")
        self._run = ReadOnce(self)  # a new run: nothing read yet
        return list(self._versions.values())

    def resolve_tag(self, tag: str) -> str | None:
        self._stats.count("resolve")
        return next((v.digest for v in self._versions.values() if tag in v.tags), None)

    def current_tags(self, version: Version) -> frozenset[str] | None:
        self.checks.append(version.digest)
        self._stats.count("check")
        if self.before_check is not None:
            self.before_check(version)
        now = self._versions.get(version.digest)
        return None if now is None else now.tags

    def _pushed_reaching(self, version: Version) -> str | None:
        """As GhcrBackend: a version pushed since the listing lists ``version``, or lists
        (or is) what ``version`` refers to (an OCI 1.1 subject, a cosign tag's subject)."""
        if self.listed_at_plan is None:
            return None
        target = version.digest
        subjects = {s for s in map(referrer_subject, version.tags) if s is not None}
        if target in self.subjects:
            subjects.add(self.subjects[target])
        for digest in sorted(set(self._versions) - self.listed_at_plan):
            if digest == target:
                continue
            try:
                reached = listed_by(digest, self) | {digest}
            except ManifestUnreadable as exc:  # as GhcrBackend: stop, it may list anything
                raise RegistryError(f"{digest} was pushed and cannot be read") from exc
            if target in reached or subjects & reached:
                return digest
        return None

    def delete(self, version: Version) -> DeleteResult:
        self.delete_calls.append(version.digest)
        if self.rate_limit_after is not None and len(self.deleted) >= self.rate_limit_after:
            raise RateLimited("the primary rate limit is spent", hint="rerun after the reset")
        if self.error_after is not None and len(self.deleted) >= self.error_after:
            raise self.error
        self._stats.count("delete")
        pushed = self._pushed_reaching(version)
        if pushed is not None:
            return DeleteResult(version, DeleteStatus.CHANGED, f"listed by {pushed[:19]}")
        if version.digest in self.refuse:
            return DeleteResult(version, DeleteStatus.REFUSED, self.refuse[version.digest])
        if version.digest in self.fail:
            return DeleteResult(version, DeleteStatus.FAILED, self.fail[version.digest])
        if version.digest not in self._versions:
            return DeleteResult(version, DeleteStatus.ALREADY_GONE, "404")
        self.remove(version.digest)
        self.deleted.append(version.digest)
        return DeleteResult(version, DeleteStatus.DELETED)


class FakeTime:
    """A clock that only sleeping moves; every sleep is recorded (for retry and pacing
    waits in adapter tests)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
