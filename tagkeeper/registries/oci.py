"""Any OCI distribution registry (distribution/``registry:2``, Harbor, Zot...) over ``/v2``.

:class:`OciBackend` implements :class:`~tagkeeper.inventory.Backend` and
:class:`~tagkeeper.inventory.ManifestReader` for one repository ``HOST[:PORT]/REPO``.

What it sees
    Tags (``GET /v2/<name>/tags/list`` with ``n``/``last`` and ``Link`` pagination), each
    resolved to its digest (``Docker-Content-Digest``) with a ``GET`` of its manifest when
    its creation time will be read (the manifest is needed for that anyway), else with a
    ``HEAD`` (which Docker Hub does not count as a pull); one :class:`Version` per digest,
    carrying every tag of that digest (deleting a manifest removes all of its tags, so the
    planner keeps a digest when any of its tags is kept). The untagged manifests that
    tagged indexes list (platform images, attestations) are read from those indexes and
    listed as untagged versions, so the children of a deleted index are deleted after it.
    Other untagged manifests are invisible: the distribution API has no listing of a
    repository's manifests. They are left to the registry's own garbage collector
    (``registry garbage-collect --delete-untagged`` for distribution).

Creation times
    From the manifest's ``org.opencontainers.image.created`` annotation (no extra request),
    else the image config's ``created`` (one blob read), else the config's
    ``org.opencontainers.image.created`` label; for an index, its annotation or the newest
    ``created`` of its platform images. Placeholder times of reproducible builds (before
    1981: the Unix epoch, 1980-01-01) count as unknown. A cosign signature or an OCI 1.1
    referrer without a time of its own takes its subject's. An image whose time stays unknown
    counts as created *now*: the grace period keeps it (an image of unknown age is never
    deleted for being old) and it ranks as the newest of its channel. Each such image is
    listed in :attr:`OciBackend.warnings`. ``time_needed`` lets the caller skip reading
    times that cannot change a decision (see :func:`tagkeeper.retention.times.time_needed`).

Deletes
    ``DELETE /v2/<name>/manifests/<digest>``. :meth:`OciBackend.check_delete` probes
    support first with the digest of nothing (``sha256:000...``): distribution answers 404
    when deletes are enabled and 405 ``UNSUPPORTED`` when they are not, so the refusal is
    known before anything is deleted.

    A manifest ``DELETE`` removes every tag of the digest, including a tag moved onto it
    after the plan (a rollback re-pointing ``stable`` at an old image). So just before
    each delete, :meth:`OciBackend.current_tags` reads with ``HEAD`` the version's own
    tags, every tag the plan keeps, and every tag that is new since the plan's listing;
    when any of them now points at the digest (or, for a tag that moved or is new, at an
    index that reaches it), the tag set differs from the plan's and the executor skips
    the delete as *changed*. The tags the plan deletes are known once the caller passes
    them to :meth:`OciBackend.expect_deletes`; without that call every tag of the
    repository is read before each delete (as safe, far more requests).

    Cost per delete: one ``HEAD`` per own tag, per kept tag and per new tag (sent
    ``workers`` at a time), one ``HEAD`` of the digest when no tag points at it (always
    for an untagged version), the ``DELETE``; plus the tag listing (one ``GET`` per page
    of ``page_size``) at most once every 2 s, and one ``GET`` per index (and nested
    index) that a moved or new tag points at, once per run. Tags this run deleted are no
    longer read.

    Race window: a tag moved onto the digest after its ``HEAD`` answered and before the
    registry handles the ``DELETE`` (one round of parallel ``HEAD`` requests and the
    ``DELETE``) is deleted with it: the distribution API has no conditional delete. A
    tag *name* never seen before, pushed onto the digest less than 2 s before the check
    (after the last listing), is not seen either. A tag the plan deletes that moved onto
    another digest the plan deletes is not read: it goes, as planned (once its own
    image stays, changed or refused, it is read again).

Transport
    Every ``/v2`` request goes through the shared
    :class:`~tagkeeper.registries.distribution.Registry` (base URL, auth and its realm
    policy, verified manifests read once per run, the optional on-disk manifest cache).
    Creation times come from :mod:`tagkeeper.registries.oci_times`.

It is one module on purpose (past 600 lines): the listing, the re-checks before each
delete and the delete share the run's view of which tag points where; the transport,
times and locks live in their own modules.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import httpx

from tagkeeper.errors import RateLimited, RegistryError, UsageError
from tagkeeper.inventory import (
    INDEX_TYPES,
    DeleteResult,
    DeleteStatus,
    ManifestMissing,
    ManifestUnreadable,
    RequestStats,
    Version,
)
from tagkeeper.refs import ImageRef, is_valid_tag, parse_repository
from tagkeeper.registries.auth import parse_challenge as parse_challenge  # noqa: PLC0414
from tagkeeper.registries.backend import DistributionReader, RegistryBackend
from tagkeeper.registries.cache import ManifestCache, Memo
from tagkeeper.registries.distribution import Found, Registry, error_codes
from tagkeeper.registries.locks import Answer, Locks, decode, detect, read_locks
from tagkeeper.registries.manifests import CREATED_ANNOTATION
from tagkeeper.registries.manifests import parse_time as parse_time  # noqa: PLC0414 (re-export)
from tagkeeper.registries.oci_times import CreationTimes
from tagkeeper.retention.policy import referrer_subject
from tagkeeper.transport import (
    DEFAULT_MAX_WAIT,
    RetryPolicy,
    Sender,
    Sleep,
    describe_response,
    parse_retry_after,
)
from tagkeeper.untrusted import neutralise

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from pathlib import Path

    from tagkeeper.registries.credentials import Credentials
    from tagkeeper.registries.manifests import Manifest

NO_DIGEST = "sha256:" + "0" * 64  # the digest of nothing: never stored, safe to DELETE
_RELIST_EVERY = 2.0  # seconds between tag re-listings while deleting
_RATE_LIMIT_RETRIES = 3
_DELETE_SETTINGS = (
    "distribution/registry:2: set storage.delete.enabled: true "
    "(REGISTRY_STORAGE_DELETE_ENABLED=true) and restart it; Zot: grant the 'delete' action "
    "in accessControl; Harbor: use an account or robot with delete permission and check "
    "the project's tag immutability rules"
)
_UNTAGGED_NOTE = (
    "untagged manifests that no tagged index lists (untagged pushes, leftovers of earlier "
    "deletes) are invisible through the registry API; the registry's own garbage collector "
    "removes them (distribution: registry garbage-collect --delete-untagged CONFIG)"
)

T = TypeVar("T")


class _Everything:
    """What an unreadable index reaches, as far as a delete may assume: anything."""

    def __contains__(self, _digest: object) -> bool:
        return True


_EVERYTHING = _Everything()


class OciBackend(RegistryBackend):
    """One repository of an OCI distribution registry (see the module docstring)."""

    def __init__(
        self,
        image: str | ImageRef,
        client: httpx.Client,
        *,
        credentials: Credentials | None = None,
        insecure: bool = False,
        workers: int = 8,
        page_size: int = 1000,
        now: datetime | None = None,
        time_needed: Callable[[frozenset[str]], bool] | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        manifest_cache: Path | None = None,
        token_services: frozenset[str] = frozenset(),
        max_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        ref = parse_repository(image if isinstance(image, str) else str(image))
        if ref.host is None:
            raise UsageError(
                f"{image}: an OCI registry image needs a registry host, e.g. "
                "registry.example.com/team/app or 127.0.0.1:5000/app"
            )
        if workers < 1 or page_size < 1:
            raise UsageError("workers and page_size must be at least 1")
        self.host = ref.host
        self.name = ref.path
        self._workers = workers
        self._page_size = page_size
        self._now = now or datetime.now(UTC)
        self._time_needed = time_needed
        self._sleep = sleep
        self._clock = clock
        self._sender = Sender(
            client,
            stats=RequestStats(),
            retry=retry,
            sleep=sleep,
            where=f"the registry {self.host}",
            max_wait=max_wait,
        )
        self._max_wait = max_wait
        self._tag_digest: dict[str, str] = {}
        registry = Registry(
            self._sender,
            host=self.host,
            name=self.name,
            insecure=insecure,
            credentials=credentials,
            token_services=token_services,
            cache=ManifestCache(manifest_cache) if manifest_cache else None,
        )
        self._times = CreationTimes(registry)
        super().__init__(
            registry,
            DistributionReader(
                registry, tag_digest=self._tag_digest.get, created=self._times.known
            ),
        )
        self._lock = threading.Lock()
        self._delete_checked: Memo[str, None] = Memo()
        self._listed: frozenset[str] = frozenset()  # the last re-listing while deleting
        self._relisted_at = float("-inf")
        self._doomed: frozenset[str] | None = None  # tags the plan deletes, when told
        self._settled: set[str] = set()  # tags this run deleted (with their digest)
        self._kept_back: set[str] = set()  # tags the plan deletes that stay after all
        self._reach: Memo[str, frozenset[str] | _Everything] = Memo()
        self._warnings: list[str] = []
        self._has_index = False
        self._left_alone: dict[str, str] = {}  # digest -> why (a tag outside the grammar)
        self._untrusted: dict[str, str] = {}  # digest -> why (answers not believed)
        self._credentials = credentials  # for a product's API that takes basic auth
        self.locks = Locks()  # what the product's API says is locked (registries.locks)

    # ------------------------------------------------------------------ protocol

    @property
    def display(self) -> str:
        return f"{self.host}/{self.name}"

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the plan should say about this registry (unknown times, untagged garbage)."""
        locked = self.locks.locked
        notes = (
            (f"{self.locks.product}: {len(locked)} image(s) are locked or carry immutable "
             "tags; they are kept",)
            if locked
            else ()
        )
        return (
            ((_UNTAGGED_NOTE,) if self._has_index else ())
            + tuple(self._warnings)
            + notes
            + tuple(self.locks.warnings)
        )

    def versions(self) -> Sequence[Version]:
        every = self.list_tags()
        tags = [t for t in every if is_valid_tag(t)]
        self._leave_alone([t for t in every if not is_valid_tag(t)])
        resolved = self._parallel(self._resolve_tag, tags)
        by_digest: dict[str, list[str]] = {}
        media: dict[str, str | None] = {}
        for tag, found in zip(tags, resolved, strict=True):
            if found is None:  # deleted between the listing and the HEAD
                continue
            digest, media_type = found
            by_digest.setdefault(digest, []).append(tag)
            media.setdefault(digest, media_type)
            self._tag_digest[tag] = digest
        digests = sorted(by_digest)
        wanted = [
            d
            for d in digests
            if self._time_needed is None or self._time_needed(frozenset(by_digest[d]))
        ]
        times = dict(zip(wanted, self._parallel(self._times.of, wanted), strict=True))
        unknown: list[str] = []
        versions = []
        for digest in digests:
            tags_of = frozenset(by_digest[digest])
            found_time = times.get(digest)
            created = self._now
            if found_time is not None:
                if found_time.when is None:  # a signature or referrer: its subject's time
                    found_time = self._times.subject_time(digest, tags_of, times) or found_time
                if found_time.when is not None:
                    created = found_time.when
                else:
                    shown = ", ".join(sorted(tags_of)[:3]) + (", ..." if len(tags_of) > 3 else "")
                    unknown.append(f"{digest[:19]} ({shown}: {found_time.source})")
            versions.append(
                Version(
                    digest=digest,
                    tags=tags_of,
                    created=created,
                    key=digest,
                    media_type=media[digest],
                )
            )
        versions.extend(self._index_children(versions))
        self._distrust()
        self.locks = read_locks(
            detect(self.host, self._registry.ping_headers), self.name, self._product_get
        )
        # only what the listing shows: a lock API's answer never adds a digest to read
        in_listing = {v.digest for v in versions}
        self.locks.locked = {d: w for d, w in self.locks.locked.items() if d in in_listing}
        if unknown:
            listed = "; ".join(unknown[:10]) + (
                f"; and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            )
            self._warnings.append(
                f"{len(unknown)} image(s) have no creation time and count as created now "
                f"(the grace period keeps them; they rank newest in their channel): {listed}. "
                f"Set the {CREATED_ANNOTATION} annotation or label when building"
            )
        return versions

    def protected(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """``extra``, plus what this run must not touch: an image a tag outside the OCI
        grammar points at, and an image whose registry answers could not be believed
        (kept, and unreadable to the planner: fail closed)."""
        out = dict(extra or {})
        with self._lock:
            for digest, why in (*self._left_alone.items(), *self._untrusted.items()):
                out.setdefault(digest, why)
        for digest, why in self.locks.locked.items():
            out.setdefault(digest, why)
        return out

    def _product_get(self, path: str, kind: str) -> Answer:
        """``GET`` of a product API path on the registry's host (see registries.locks):
        Harbor's API with basic auth (or none), any other with the registry's token."""
        base = self._registry.base_url()
        if kind.startswith("harbor"):
            creds = self._credentials
            auth = None if creds is None else (creds.username, creds.secret.reveal())
            response = self._sender.send("GET", f"{base}{path}", kind=kind, auth=auth)
        else:
            response = self._registry.request("GET", "", kind=kind, url=path)
        following = response.links.get("next", {}).get("url")
        next_path = None
        if following:
            url = httpx.URL(base).join(following)
            if url.host == httpx.URL(base).host:  # never another host
                next_path = url.raw_path.decode("ascii", "replace")
        body = decode(response.content) if response.status_code == 200 else None
        return Answer(response.status_code, body, next_path)

    def _leave_alone(self, bad: Sequence[str]) -> None:
        """Tags the registry lists that break the OCI tag grammar: the image each points
        at stays (a manifest delete would delete the tag too), and the plan says so."""
        if not bad:
            return
        shown = [repr(neutralise(tag, limit=60)) for tag in sorted(bad)[:5]]
        for tag in bad:
            found = self._registry.head(tag)
            if found is not None:
                with self._lock:
                    self._left_alone.setdefault(
                        found.digest,
                        f"tagged {neutralise(tag, limit=60)!r}, which breaks the OCI tag "
                        "grammar: left alone",
                    )
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        self._warnings.append(
            f"{len(bad)} tag(s) listed by the registry break the OCI tag grammar and are left "
            f"alone, with the images they point at: {', '.join(shown)}{more}"
        )

    def _distrust(self) -> None:
        """Images whose config blob could not be believed: unreadable from now on."""
        for digest, why in sorted(self._times.untrusted().items()):
            reason = f"{why}: the registry's answer cannot be believed; kept (fail closed)"
            self._registry.distrust(digest, reason)
            with self._lock:
                self._untrusted.setdefault(digest, reason)
            self._warnings.append(f"{digest[:19]}: {reason}")

    def _index_children(self, tagged: Sequence[Version]) -> list[Version]:
        """The untagged manifests that tagged indexes list (platform images, attestations).

        They are the only untagged manifests the API shows. Each gets the newest time of
        the tagged indexes that reach it (a child is pushed before its index, so it is at
        least that old): no extra request, and never older than it is. An index that
        cannot be read here is left to the planner, which reports it and fails closed.
        """
        known = {v.digest: v for v in tagged}
        reached_from: dict[str, set[str]] = {}  # untagged digest -> tagged ancestors
        media: dict[str, str | None] = {}
        wave = sorted(
            v.digest for v in tagged if v.media_type in INDEX_TYPES or v.media_type is None
        )
        self._has_index = self._has_index or any(v.media_type in INDEX_TYPES for v in tagged)
        seen = set(wave)
        while wave:
            parsed = self._parallel(self._manifest_or_none, wave)
            next_wave: list[str] = []
            for digest, manifest in zip(wave, parsed, strict=True):
                if manifest is None or not manifest.is_index:
                    continue
                self._has_index = True
                ancestors = {digest} if digest in known else reached_from.get(digest, set())
                for entry in manifest.entries:
                    child = entry.digest
                    if child in known:
                        continue
                    reached_from.setdefault(child, set()).update(ancestors)
                    kind = entry.media_type
                    media.setdefault(child, kind)
                    if kind in INDEX_TYPES and child not in seen:
                        seen.add(child)
                        next_wave.append(child)
            wave = next_wave
        children = []
        for digest in sorted(reached_from):
            times = [known[a].created for a in reached_from[digest]]
            children.append(
                Version(
                    digest=digest,
                    tags=frozenset(),
                    created=max(times, default=self._now),
                    key=digest,
                    media_type=media.get(digest),
                )
            )
        return children

    def _manifest_or_none(self, digest: str) -> Manifest | None:
        try:
            return self._registry.manifest(digest)
        except ManifestUnreadable:
            return None

    def current_tags(self, version: Version) -> frozenset[str] | None:
        """The tags that a ``DELETE`` of ``version`` would remove now, or ``None`` when gone.

        A manifest ``DELETE`` removes *every* tag of the digest, so this is every watched
        tag that now resolves to ``version.digest`` (or, when the tag moved or is new since
        the plan, to an index that reaches it, or to what it refers to: a signature stays
        with the image a new tag keeps). Watched: the version's own tags, every
        tag of the plan's listing that the plan keeps (all of them when
        :meth:`expect_deletes` was not called), and every tag that the repository's
        listing shows and the plan's did not. The listing is re-read only when the last
        one is older than 2 s. Not watched: tags this run deleted, and tags the plan
        deletes (a tag the plan deletes that moved onto another digest the plan deletes
        goes, as planned). See the module docstring for the cost and the race window.
        """
        own = set(version.tags)
        watched = sorted(own | self._watched())
        found_at = self._parallel(self._registry.head, watched)
        reaching: set[str] = set()
        moved_away: set[str] = set()
        for tag, found in zip(watched, found_at, strict=True):
            if found is None:
                continue
            digest, media_type = found
            if digest == version.digest:
                reaching.add(tag)
            elif tag in own:
                moved_away.add(tag)
            elif self._tag_digest.get(tag) != digest and self._reaches(
                digest, media_type, version
            ):
                reaching.add(tag)  # moved or new onto what needs the digest
        result = frozenset(reaching)
        with self._lock:
            self._kept_back |= moved_away  # live elsewhere now: watched from here on
            if result != version.tags:  # skipped as changed: its tags stay
                self._kept_back |= result
        if not reaching and not self._registry.exists(version.digest):
            with self._lock:
                self._settled |= own - moved_away
            return None
        return result

    def expect_deletes(self, versions: Iterable[Version]) -> None:
        """Say which versions the plan deletes (call after :meth:`versions`, before applying).

        Their tags are then not watched by :meth:`current_tags`: the tags it reads before
        each delete are only the kept ones (and new ones). Without this call every tag of
        the repository is read before each delete: just as safe, but one ``HEAD`` per tag
        of the repository per delete.
        """
        doomed: set[str] = set()
        for version in versions:
            doomed |= version.tags
        with self._lock:
            self._doomed = frozenset(doomed)

    def delete(self, version: Version) -> DeleteResult:
        self.check_delete()
        for attempt in range(_RATE_LIMIT_RETRIES + 1):
            response = self._registry.delete(version.digest)
            status = response.status_code
            if status in (200, 202, 204, 404):
                with self._lock:  # every tag of the digest went with it
                    self._settled |= version.tags - self._kept_back
                if status == 404:
                    return DeleteResult(version, DeleteStatus.ALREADY_GONE, "answered 404")
                return DeleteResult(version, DeleteStatus.DELETED)
            self._raise_for_delete_setting(response)
            if status == 429:
                wait = parse_retry_after(
                    response.headers.get("Retry-After"), now=self._sender.clock()
                )
                if attempt < _RATE_LIMIT_RETRIES and wait is not None and wait <= self._max_wait:
                    self._sleep(wait)
                    continue
                asked = f", and asks to wait {wait:.0f} s" if wait is not None else ""
                raise RateLimited(
                    f"{self.display}: the registry rate-limits deletes "
                    f"({describe_response(response, self._sender.scrub)}){asked}",
                    hint="rerun later (the plan resumes where it stopped), or raise --max-wait "
                    f"(now {self._max_wait:.0f} s)",
                )
            detail = describe_response(response, self._sender.scrub)
            with self._lock:  # the image stays, and so do its tags
                self._kept_back |= version.tags
            if status >= 500:
                return DeleteResult(version, DeleteStatus.FAILED, detail)
            return DeleteResult(version, DeleteStatus.REFUSED, detail)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ extras

    def check_delete(self) -> None:
        """Raise before anything is deleted when the registry refuses manifest deletes.

        Sends ``DELETE`` for the digest of nothing: 404 means deletes work, 405 or
        ``UNSUPPORTED`` means the registry has them switched off, 401/403 that the
        credentials may not delete. Done once per backend.
        """
        self._delete_checked.get("probe", self._probe_delete)

    def list_tags(self) -> list[str]:
        """Every tag of the repository, following ``Link`` pagination.

        A repository the registry does not know (``NAME_UNKNOWN``: a mistyped name, or
        credentials that cannot see it) is a :class:`RegistryError`, as on GHCR: an
        empty answer would read as "nothing to delete".
        """
        tags = self._registry.tags(self._page_size)
        if tags is None:
            raise RegistryError(
                f"{self.display}: the registry has no repository of that name "
                "(it answered NAME_UNKNOWN to the tag list)",
                hint="check the image name (HOST/REPOSITORY, without tag); a registry may "
                "also answer so when the credentials cannot see a private repository",
            )
        return tags

    # --------------------------------------------------------------- internals

    def _parallel(self, fn: Callable[[str], T], items: Sequence[str]) -> list[T]:
        if len(items) <= 1 or self._workers == 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self._workers, len(items))) as pool:
            return list(pool.map(fn, items))

    def _resolve_tag(self, tag: str) -> Found | None:
        """A tag's digest and media type: by GET when its time will be read anyway (the
        manifest is then already here, one request instead of two), else by HEAD (which
        registries such as Docker Hub do not count as a pull)."""
        if self._time_needed is not None and not self._time_needed(frozenset({tag})):
            return self._registry.head(tag)
        return self._registry.get_tag(tag)

    def _watched(self) -> set[str]:
        """Tags to read before a delete (besides the version's own; see current_tags).

        The listing is re-read when the last one is older than ``_RELIST_EVERY``: it
        only adds tags that are new since the plan's listing.
        """
        with self._lock:
            due = self._clock() - self._relisted_at >= _RELIST_EVERY
            if due:
                self._relisted_at = self._clock()
        if due:
            listed = frozenset(self.list_tags())
            with self._lock:
                self._listed = listed
        with self._lock:
            skip = set(self._settled)
            if self._doomed is not None:
                skip |= self._doomed - self._kept_back
            return (set(self._tag_digest) | self._listed) - skip

    def _reaches(self, digest: str, media_type: str | None, version: Version) -> bool:
        """Whether the manifest ``digest`` needs ``version``: it is an index that lists
        it (recursively), or it is (or lists) what ``version`` refers to (the subject of
        an OCI 1.1 referrer or of a cosign tag).

        Manifests are read once per run (memoized); one that cannot be read counts as
        reaching (fail closed).
        """
        reached: frozenset[str] | _Everything = frozenset()
        if media_type is None or media_type in INDEX_TYPES:
            reached = self._reach.get(digest, lambda: self._descendants(digest))
        if version.digest in reached:
            return True
        subjects = self._subjects_of(version)
        if subjects is None:
            return True  # cannot tell what it refers to: it stays
        return any(s == digest or s in reached for s in subjects)

    def _subjects_of(self, version: Version) -> frozenset[str] | None:
        """What ``version`` refers to (``None``: its manifest cannot be read)."""
        found = {s for s in map(referrer_subject, version.tags) if s is not None}
        try:
            subject = self._registry.manifest(version.digest).subject
        except ManifestMissing:
            subject = None
        except ManifestUnreadable:
            return None
        if subject is not None:
            found.add(subject)
        return frozenset(found)

    def _descendants(self, digest: str) -> frozenset[str] | _Everything:
        try:
            return self._registry.listed_by(digest)
        except ManifestUnreadable:
            return _EVERYTHING

    def _probe_delete(self) -> None:
        response = self._registry.delete(NO_DIGEST, kind="delete-probe")
        if response.status_code in (404, 202, 200, 204):
            return
        self._raise_for_delete_setting(response)
        # anything else (400 for the all-zero digest...): the real deletes will tell

    def _raise_for_delete_setting(self, response: httpx.Response) -> None:
        if response.status_code == 405 or "UNSUPPORTED" in error_codes(response):
            raise RegistryError(
                f"{self.display}: the registry refuses to delete manifests "
                f"({describe_response(response, self._sender.scrub)}); nothing was deleted",
                hint=_DELETE_SETTINGS,
            )
        if response.status_code in (401, 403):
            raise self._registry.authenticator().refused(response, "delete manifests in")
