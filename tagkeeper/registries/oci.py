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
    https by default. A loopback host (``localhost``, 127.0.0.0/8, ``::1``) that does not
    answer https is spoken to over plain http, as Docker does; any other host needs
    ``insecure=True`` for that. Auth: anonymous, basic, and the bearer token challenge
    (``WWW-Authenticate: Bearer realm=...,service=...,scope=...``), tokens cached per scope.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Generic, TypeVar

import httpx

from tagkeeper.errors import AuthError, RateLimited, RegistryError, UsageError
from tagkeeper.inventory import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    DeleteResult,
    DeleteStatus,
    ManifestInfo,
    ManifestMissing,
    ManifestUnreadable,
    RequestStats,
    Version,
)
from tagkeeper.refs import ImageRef, parse_reference
from tagkeeper.registries.manifests import (
    CREATED_ANNOTATION,
    Manifest,
    digest_matches,
    digest_of,
    read_manifest,
)
from tagkeeper.registries.manifests import parse_time as parse_time  # noqa: PLC0414 (re-export)
from tagkeeper.retention.planner import referrer_subject
from tagkeeper.secret import Secret
from tagkeeper.transport import (
    RetryPolicy,
    Sender,
    Sleep,
    describe_response,
    is_loopback_host,
    parse_retry_after,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from tagkeeper.registries.credentials import Credentials

ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
NO_DIGEST = "sha256:" + "0" * 64  # the digest of nothing: never stored, safe to DELETE
_MAX_MANIFEST = 4 * 1024 * 1024
_MAX_CONFIG = 8 * 1024 * 1024
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
_CHALLENGE_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')

K = TypeVar("K")
T = TypeVar("T")


class _Memo(Generic[K, T]):
    """Compute each key at most once, even across threads (later callers wait)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[K, Future[T]] = {}

    def get(self, key: K, compute: Callable[[], T]) -> T:
        with self._lock:
            future = self._futures.get(key)
            owner = future is None
            if future is None:
                future = Future()
                self._futures[key] = future
        if owner:
            try:
                future.set_result(compute())
            except BaseException as exc:
                future.set_exception(exc)
        return future.result()

    def peek(self, key: K) -> T | None:
        with self._lock:
            future = self._futures.get(key)
        if future is None or not future.done() or future.exception() is not None:
            return None
        return future.result()


class _Everything:
    """What an unreadable index reaches, as far as a delete may assume: anything."""

    def __contains__(self, _digest: object) -> bool:
        return True


_EVERYTHING = _Everything()


@dataclass(frozen=True, slots=True)
class _Time:
    when: datetime | None
    source: str  # "annotation", "config", "config label", "platform images", or why not


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``("bearer", {"realm": ..., "service": ..., "scope": ...})`` from ``WWW-Authenticate``."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in _CHALLENGE_RE.finditer(rest):
        key, quoted, bare = match.groups()
        value = quoted.replace('\\"', '"') if quoted is not None else bare
        params[key.lower()] = value
    return scheme.lower(), params


def _error_codes(response: httpx.Response) -> set[str]:
    try:
        body = response.json()
    except ValueError:
        return set()
    codes: set[str] = set()
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        for entry in body["errors"]:
            if isinstance(entry, dict) and isinstance(entry.get("code"), str):
                codes.add(entry["code"])
    return codes


class OciBackend:
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
    ) -> None:
        ref = parse_reference(image) if isinstance(image, str) else image
        if ref.host is None:
            raise UsageError(
                f"{image}: an OCI registry image needs a registry host, e.g. "
                "registry.example.com/team/app or 127.0.0.1:5000/app"
            )
        if ref.tag is not None or ref.digest is not None:
            raise UsageError(
                f"{image}: name the repository without a tag or digest",
                hint=f"use --image {ref.repository}",
            )
        if workers < 1 or page_size < 1:
            raise UsageError("workers and page_size must be at least 1")
        self.host = ref.host
        self.name = ref.path
        self._credentials = credentials
        self._insecure = insecure
        self._workers = workers
        self._page_size = page_size
        self._now = now or datetime.now(UTC)
        self._time_needed = time_needed
        self._sleep = sleep
        self._clock = clock
        self._stats = RequestStats()
        secret = credentials.secret if credentials else None
        self._sender = Sender(
            client,
            stats=self._stats,
            retry=retry,
            sleep=sleep,
            secret=secret,
            where=f"the registry {self.host}",
        )
        self._lock = threading.Lock()
        self._base: str | None = None
        self._basic = False  # the registry asked for basic auth
        self._tokens: dict[str, Secret] = {}
        self._scope_of: dict[str, str] = {}  # "read"/"delete" -> scope the registry asked for
        self._manifests: _Memo[str, Manifest] = _Memo()
        self._configs: _Memo[str, _Time] = _Memo()
        self._times: _Memo[str, _Time] = _Memo()
        self._delete_checked: _Memo[str, None] = _Memo()
        self._referrers_api: bool | None = None
        self._tag_digest: dict[str, str] = {}
        self._listed: frozenset[str] = frozenset()  # the last re-listing while deleting
        self._relisted_at = float("-inf")
        self._doomed: frozenset[str] | None = None  # tags the plan deletes, when told
        self._settled: set[str] = set()  # tags this run deleted (with their digest)
        self._kept_back: set[str] = set()  # tags the plan deletes that stay after all
        self._reach: _Memo[str, frozenset[str] | _Everything] = _Memo()
        self._warnings: list[str] = []
        self._has_index = False

    # ------------------------------------------------------------------ protocol

    @property
    def display(self) -> str:
        return f"{self.host}/{self.name}"

    @property
    def stats(self) -> RequestStats:
        return self._stats

    @property
    def reader(self) -> OciBackend:
        return self

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the plan should say about this registry (unknown times, untagged garbage)."""
        return ((_UNTAGGED_NOTE,) if self._has_index else ()) + tuple(self._warnings)

    def versions(self) -> Sequence[Version]:
        tags = self.list_tags()
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
        times = dict(zip(wanted, self._parallel(self._created, wanted), strict=True))
        unknown: list[str] = []
        versions = []
        for digest in digests:
            tags_of = frozenset(by_digest[digest])
            found_time = times.get(digest)
            created = self._now
            if found_time is not None:
                if found_time.when is None:  # a signature or referrer: its subject's time
                    found_time = self._subject_time(digest, tags_of, times) or found_time
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
            return self._manifest(digest)
        except ManifestUnreadable:
            return None

    def _subject_time(
        self, digest: str, tags: frozenset[str], times: dict[str, _Time]
    ) -> _Time | None:
        """For a cosign-tagged version or an OCI 1.1 referrer without a time of its own:
        the time of its subject, when that is known (a signature is never older than the
        image it signs, so it is deleted with that image and kept with it)."""
        subjects = {s for s in (referrer_subject(t) for t in tags) if s is not None}
        parsed = self._manifests.peek(digest)
        if parsed is not None and parsed.subject is not None:
            subjects.add(parsed.subject)
        found = [times[s].when for s in subjects if s in times and times[s].when is not None]
        if not found or len(subjects) != 1:
            return None
        return _Time(found[0], "subject")

    def current_tags(self, version: Version) -> frozenset[str] | None:
        """The tags that a ``DELETE`` of ``version`` would remove now, or ``None`` when gone.

        A manifest ``DELETE`` removes *every* tag of the digest, so this is every watched
        tag that now resolves to ``version.digest`` (or to an index that reaches it, when
        the tag moved or is new since the plan). Watched: the version's own tags, every
        tag of the plan's listing that the plan keeps (all of them when
        :meth:`expect_deletes` was not called), and every tag that the repository's
        listing shows and the plan's did not. The listing is re-read only when the last
        one is older than 2 s. Not watched: tags this run deleted, and tags the plan
        deletes (a tag the plan deletes that moved onto another digest the plan deletes
        goes, as planned). See the module docstring for the cost and the race window.
        """
        own = set(version.tags)
        watched = sorted(own | self._watched())
        found_at = self._parallel(self._head_tag, watched)
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
                digest, media_type, version.digest
            ):
                reaching.add(tag)  # moved or new onto an index that lists the digest
        result = frozenset(reaching)
        with self._lock:
            self._kept_back |= moved_away  # live elsewhere now: watched from here on
            if result != version.tags:  # skipped as changed: its tags stay
                self._kept_back |= result
        if not reaching and not self._exists(version.digest):
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
            response = self._request(
                "DELETE", f"/manifests/{version.digest}", kind="delete", action="delete"
            )
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
                if attempt < _RATE_LIMIT_RETRIES and wait is not None and wait <= 120:
                    self._sleep(wait)
                    continue
                raise RateLimited(
                    f"{self.display}: the registry rate-limits deletes "
                    f"({describe_response(response, self._sender.scrub)})",
                    hint="rerun later; the plan resumes where it stopped",
                )
            detail = describe_response(response, self._sender.scrub)
            with self._lock:  # the image stays, and so do its tags
                self._kept_back |= version.tags
            if status >= 500:
                return DeleteResult(version, DeleteStatus.FAILED, detail)
            return DeleteResult(version, DeleteStatus.REFUSED, detail)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------- reader side

    def manifest(self, digest: str) -> ManifestInfo:
        known = self._times.peek(digest)
        return replace(self._manifest(digest).info, created=known.when if known else None)

    def referrers(self, digest: str) -> Sequence[str]:
        if self._referrers_api is not False:
            found = self._referrers_api_list(digest)
            if found is not None:
                return found
        algorithm, _, hexpart = digest.partition(":")
        schema_digest = self._tag_digest.get(f"{algorithm}-{hexpart}")
        if schema_digest is None:
            return ()
        return self._manifest(schema_digest).children

    # ------------------------------------------------------------------ extras

    def check_delete(self) -> None:
        """Raise before anything is deleted when the registry refuses manifest deletes.

        Sends ``DELETE`` for the digest of nothing: 404 means deletes work, 405 or
        ``UNSUPPORTED`` means the registry has them switched off, 401/403 that the
        credentials may not delete. Done once per backend.
        """
        self._delete_checked.get("probe", self._probe_delete)

    def list_tags(self) -> list[str]:
        """Every tag of the repository, following ``Link`` pagination."""
        tags: list[str] = []
        seen_urls: set[str] = set()
        url: str | None = f"/tags/list?n={self._page_size}"
        while url is not None:
            if url in seen_urls:
                raise RegistryError(f"{self.display}: the tags list pagination loops at {url}")
            seen_urls.add(url)
            response = self._request("GET", url, kind="tags-list", action="read")
            if response.status_code == 404 and _error_codes(response) & {"NAME_UNKNOWN"}:
                return []
            self._expect_ok(response, "list the tags of")
            try:
                body = response.json()
            except ValueError:
                raise RegistryError(f"{self.display}: the tags list is not JSON") from None
            page = body.get("tags") if isinstance(body, dict) else None
            if page is not None and not isinstance(page, list):
                raise RegistryError(f"{self.display}: the tags list has no 'tags' array")
            tags.extend(str(t) for t in page or ())
            url = self._next_link(response)
        return sorted(set(tags))

    # --------------------------------------------------------------- internals

    def _parallel(self, fn: Callable[[str], T], items: Sequence[str]) -> list[T]:
        if len(items) <= 1 or self._workers == 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self._workers, len(items))) as pool:
            return list(pool.map(fn, items))

    def _next_link(self, response: httpx.Response) -> str | None:
        link = response.links.get("next")
        if not link or not link.get("url"):
            return None
        target = response.url.join(link["url"])
        prefix = f"/v2/{self.name}"
        path = target.raw_path.decode("ascii")
        if not path.startswith(prefix):
            raise RegistryError(f"{self.display}: the tags list links outside the repository")
        return path[len(prefix) :]

    def _resolve_tag(self, tag: str) -> tuple[str, str | None] | None:
        """A tag's digest and media type: by GET when its time will be read anyway (the
        manifest is then already here, one request instead of two), else by HEAD (which
        registries such as Docker Hub do not count as a pull)."""
        if self._time_needed is not None and not self._time_needed(frozenset({tag})):
            return self._head_tag(tag)
        response = self._get_tag(tag)
        if response is None:
            return None
        digest = response.headers.get("Docker-Content-Digest") or digest_of(response.content)
        if digest_matches(digest, response.content):
            # a manifest that does not parse is remembered as such: the planner reports it
            with contextlib.suppress(ManifestUnreadable):
                self._manifests.get(digest, lambda: self._parse(digest, response))
        media_type = response.headers.get("Content-Type")
        return digest, (media_type.split(";")[0].strip() if media_type else None)

    def _get_tag(self, tag: str) -> httpx.Response | None:
        """The manifest a tag points at (``None``: the tag is gone)."""
        response = self._request(
            "GET",
            f"/manifests/{tag}",
            kind="manifest-get",
            action="read",
            headers={"Accept": ACCEPT},
        )
        if response.status_code == 404:
            return None
        self._expect_ok(response, f"read the tag {tag} of")
        return response

    def _head_tag(self, tag: str) -> tuple[str, str | None] | None:
        response = self._request(
            "HEAD",
            f"/manifests/{tag}",
            kind="manifest-head",
            action="read",
            headers={"Accept": ACCEPT},
        )
        if response.status_code == 404:
            return None
        self._expect_ok(response, f"read the tag {tag} of")
        digest = response.headers.get("Docker-Content-Digest")
        media_type = response.headers.get("Content-Type")
        if not digest:  # a registry that does not say: read the bytes and hash them
            got = self._get_tag(tag)
            if got is None:
                return None
            digest = digest_of(got.content)
            self._manifests.get(digest, lambda: self._parse(digest, got))
        return digest, (media_type.split(";")[0].strip() if media_type else None)

    def _exists(self, digest: str) -> bool:
        response = self._request(
            "HEAD",
            f"/manifests/{digest}",
            kind="manifest-head",
            action="read",
            headers={"Accept": ACCEPT},
        )
        if response.status_code == 404:
            return False
        self._expect_ok(response, f"check {digest} in")
        return True

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

    def _reaches(self, digest: str, media_type: str | None, target: str) -> bool:
        """Whether the manifest ``digest`` is an index that lists ``target`` (recursively).

        Manifests are read once per run (memoized); one that cannot be read counts as
        reaching (fail closed).
        """
        if media_type is not None and media_type not in INDEX_TYPES:
            return False
        return target in self._reach.get(digest, lambda: self._descendants(digest))

    def _descendants(self, digest: str) -> frozenset[str] | _Everything:
        out: set[str] = set()
        wave = [digest]
        seen = {digest}
        while wave:
            next_wave: list[str] = []
            for parent in wave:
                try:
                    parsed = self._manifest(parent)
                except ManifestUnreadable:
                    return _EVERYTHING
                for entry in parsed.entries:
                    child = entry.digest
                    out.add(child)
                    if entry.media_type in INDEX_TYPES and child not in seen:
                        seen.add(child)  # only nested indexes are read
                        next_wave.append(child)
            wave = next_wave
        return frozenset(out)

    def _manifest(self, digest: str) -> Manifest:
        def fetch() -> Manifest:
            response = self._request(
                "GET",
                f"/manifests/{digest}",
                kind="manifest-get",
                action="read",
                headers={"Accept": ACCEPT},
            )
            if response.status_code == 404:
                raise ManifestMissing(digest, "not found in the registry")
            if response.status_code != 200:
                raise ManifestUnreadable(digest, describe_response(response, self._sender.scrub))
            return self._parse(digest, response)

        return self._manifests.get(digest, fetch)

    def _parse(self, digest: str, response: httpx.Response) -> Manifest:
        data = response.content
        if len(data) > _MAX_MANIFEST:
            raise ManifestUnreadable(digest, f"manifest of {len(data)} bytes is too large")
        return read_manifest(digest, data, response.headers.get("Content-Type"))

    def _created(self, digest: str) -> _Time:
        return self._times.get(digest, lambda: self._find_time(digest))

    def _find_time(self, digest: str) -> _Time:
        try:
            parsed = self._manifest(digest)
        except ManifestUnreadable as exc:
            return _Time(None, f"manifest unreadable: {exc.reason}")
        if parsed.created is not None:
            return _Time(parsed.created, "annotation")
        if parsed.is_index:
            children = parsed.platform_children()
            if not children:
                return _Time(None, "index without annotation or platform images")
            found = [t.when for t in self._parallel_small(children) if t.when is not None]
            if found:
                return _Time(max(found), "platform images")
            return _Time(None, "no platform image has a creation time")
        config = parsed.config
        if config is None or (config.size is not None and config.size > _MAX_CONFIG):
            return _Time(None, "no config and no annotation")
        return self._configs.get(config.digest, lambda: self._config_time(config.digest))

    def _parallel_small(self, digests: Iterable[str]) -> list[_Time]:
        # Called from pool threads: read sequentially to avoid nested pools.
        return [self._created(d) for d in digests]

    def _config_time(self, digest: str) -> _Time:
        response = self._request("GET", f"/blobs/{digest}", kind="blob-get", action="read")
        if response.status_code != 200:
            return _Time(None, f"config blob unreadable ({response.status_code})")
        try:
            body = json.loads(response.content)
        except ValueError:
            return _Time(None, "config blob is not JSON")
        if not isinstance(body, dict):
            return _Time(None, "config blob is not a JSON object")
        created = body.get("created")
        if isinstance(created, str):
            when = parse_time(created)
            if when is not None:
                return _Time(when, "config")
        labels = (
            (body.get("config") or {}).get("Labels")
            if isinstance(body.get("config"), dict)
            else None
        )
        if isinstance(labels, dict) and isinstance(labels.get(CREATED_ANNOTATION), str):
            when = parse_time(labels[CREATED_ANNOTATION])
            if when is not None:
                return _Time(when, "config label")
        if isinstance(created, str):
            return _Time(None, f"placeholder creation time {created}")
        return _Time(None, "config has no creation time")

    def _referrers_api_list(self, digest: str) -> list[str] | None:
        """Referrers from ``/v2/<name>/referrers/<digest>``; ``None`` when unsupported."""
        out: list[str] = []
        url: str | None = f"/referrers/{digest}"
        while url is not None:
            response = self._request(
                "GET", url, kind="referrers", action="read", headers={"Accept": OCI_INDEX}
            )
            if response.status_code == 404:  # the spec forbids 404 where the API exists
                self._referrers_api = False
                return None
            if response.status_code != 200:
                raise ManifestUnreadable(
                    digest, "referrers: " + describe_response(response, self._sender.scrub)
                )
            try:
                body = response.json()
            except ValueError:
                raise ManifestUnreadable(digest, "referrers: the answer is not JSON") from None
            self._referrers_api = True
            for entry in (body.get("manifests") if isinstance(body, dict) else None) or ():
                if isinstance(entry, dict) and isinstance(entry.get("digest"), str):
                    out.append(entry["digest"])
            link = response.links.get("next")
            url = None
            if link and link.get("url"):
                path = response.url.join(link["url"]).raw_path.decode("ascii")
                url = path[len(f"/v2/{self.name}") :]
        return out

    def _probe_delete(self) -> None:
        response = self._request(
            "DELETE", f"/manifests/{NO_DIGEST}", kind="delete-probe", action="delete"
        )
        if response.status_code in (404, 202, 200, 204):
            return
        self._raise_for_delete_setting(response)
        if response.status_code in (401, 403):
            self._raise_auth(response, "delete manifests in")
        # anything else (400 for the all-zero digest...): the real deletes will tell

    def _raise_for_delete_setting(self, response: httpx.Response) -> None:
        if response.status_code == 405 or "UNSUPPORTED" in _error_codes(response):
            raise RegistryError(
                f"{self.display}: the registry refuses to delete manifests "
                f"({describe_response(response, self._sender.scrub)}); nothing was deleted",
                hint=_DELETE_SETTINGS,
            )
        if response.status_code in (401, 403):
            self._raise_auth(response, "delete manifests in")

    # ---------------------------------------------------------------- HTTP + auth

    def _base_url(self) -> str:
        with self._lock:
            if self._base is not None:
                return self._base
        base = self._discover_base()
        with self._lock:
            self._base = base
        return base

    def _discover_base(self) -> str:
        https = f"https://{self.host}"
        may_fall_back = self._insecure or is_loopback_host(_hostname(self.host))
        if may_fall_back:
            self._sender.count("ping")
            try:
                response = self._sender.client.request("GET", f"{https}/v2/")
            except httpx.TransportError:
                http = f"http://{self.host}"
                self._learn(self._sender.send("GET", f"{http}/v2/", kind="ping"))
                return http
            self._learn(response)
            return https
        try:
            response = self._sender.send("GET", f"{https}/v2/", kind="ping")
        except RegistryError as exc:
            raise RegistryError(
                exc.message,
                hint=f"check the host name; if {self.host} speaks plain http, pass --insecure",
            ) from None
        self._learn(response)
        return https

    def _learn(self, response: httpx.Response) -> None:
        """Remember the auth scheme the ``/v2/`` answer asks for."""
        if response.status_code == 401:
            scheme, _ = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            if scheme == "basic":
                self._basic = True
        elif response.status_code == 404:
            raise RegistryError(
                f"{self.host} does not speak the OCI distribution API (GET /v2/ answered 404)",
                hint="check the registry host and port",
            )

    def _scope(self, action: str) -> str:
        default = (
            f"repository:{self.name}:pull" if action == "read" else f"repository:{self.name}:delete"
        )
        with self._lock:
            return self._scope_of.get(action, default)

    def _auth_headers(self, action: str) -> dict[str, str]:
        creds = self._credentials
        if self._basic and creds is not None and not creds.identity_token:
            return {"Authorization": _basic(creds)}
        scope = self._scope(action)
        with self._lock:
            token = self._tokens.get(scope)
        return {"Authorization": f"Bearer {token.reveal()}"} if token else {}

    def _request(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        action: str,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        url = f"{self._base_url()}/v2/{self.name}{path}"
        sent_auth = self._auth_headers(action)
        response = self._sender.send(
            method, url, kind=kind, headers={**(headers or {}), **sent_auth}
        )
        if response.status_code != 401:
            return response
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if self._credentials is None or self._credentials.identity_token or sent_auth:
                self._raise_auth(response, "read")
            self._basic = True
        elif scheme == "bearer":
            scope = params.get("scope") or self._scope(action)
            with self._lock:
                self._scope_of[action] = scope
                stale = self._tokens.get(scope)
            if stale is not None and sent_auth.get("Authorization", "").endswith(stale.reveal()):
                with self._lock:
                    self._tokens.pop(scope, None)
            self._fetch_token(params, scope)
        else:
            self._raise_auth(response, "read")
        retry_auth = self._auth_headers(action)
        response = self._sender.send(
            method, url, kind=kind, headers={**(headers or {}), **retry_auth}
        )
        if response.status_code == 401:
            self._raise_auth(response, "delete manifests in" if action == "delete" else "read")
        return response

    def _fetch_token(self, params: dict[str, str], scope: str) -> None:
        realm = params.get("realm")
        if not realm:
            raise AuthError(f"{self.host} asks for a bearer token but names no realm")
        try:
            realm_url = httpx.URL(realm)
        except httpx.InvalidURL:
            raise AuthError(f"{self.host} names an invalid token realm") from None
        if realm_url.scheme != "https" and not (self._insecure or is_loopback_host(realm_url.host)):
            raise AuthError(
                f"{self.host} names a token service over plain http ({realm_url.host})",
                hint="pass --insecure only if you trust this network",
            )
        query: dict[str, str] = {"scope": scope}
        if params.get("service"):
            query["service"] = params["service"]
        creds = self._credentials
        if creds is not None and creds.identity_token:
            self._sender.count("token")
            try:
                response = self._sender.client.post(
                    realm,
                    data={
                        **query,
                        "grant_type": "refresh_token",
                        "client_id": "tagkeeper",
                        "refresh_token": creds.secret.reveal(),
                    },
                )
            except httpx.TransportError as exc:
                raise RegistryError(
                    f"the token service of {self.host} failed ({type(exc).__name__})"
                ) from None
        else:
            auth = None if creds is None else (creds.username, creds.secret.reveal())
            response = self._sender.send(
                "GET", str(realm_url.copy_merge_params(query)), kind="token", auth=auth
            )
        if response.status_code in (401, 403):
            who = "anonymous access" if creds is None else f"the credentials from {creds.source}"
            raise AuthError(
                f"the token service of {self.host} refused {who} for {scope} "
                f"({describe_response(response, self._sender.scrub)})",
                hint="log in (docker login, or --username with --password-stdin, or "
                "TAGKEEPER_REGISTRY_USERNAME/TAGKEEPER_REGISTRY_PASSWORD)",
            )
        if response.status_code != 200:
            raise RegistryError(
                f"the token service of {self.host} failed "
                f"({describe_response(response, self._sender.scrub)})"
            )
        try:
            body = response.json()
        except ValueError:
            raise RegistryError(f"the token service of {self.host} answered no JSON") from None
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token service of {self.host} answered no token")
        with self._lock:
            self._tokens[scope] = Secret(token)

    def _raise_auth(self, response: httpx.Response, what: str) -> None:
        creds = self._credentials
        detail = describe_response(response, self._sender.scrub)
        if creds is None:
            raise AuthError(
                f"{self.display}: anonymous access may not {what} this repository ({detail})",
                hint="log in (docker login, or --username with --password-stdin, or "
                "TAGKEEPER_REGISTRY_USERNAME/TAGKEEPER_REGISTRY_PASSWORD)",
            )
        raise AuthError(
            f"{self.display}: the credentials from {creds.source} may not {what} this "
            f"repository ({detail})",
            hint="check the user name and password, and that the account has that permission",
        )

    def _expect_ok(self, response: httpx.Response, what: str) -> None:
        if response.status_code == 200:
            return
        if response.status_code in (401, 403):
            self._raise_auth(response, "read")
        if response.status_code == 429:
            raise RateLimited(
                f"{self.display}: the registry rate-limits requests "
                f"({describe_response(response, self._sender.scrub)})",
                hint="rerun later",
            )
        raise RegistryError(
            f"cannot {what} {self.display} ({describe_response(response, self._sender.scrub)})"
        )


def _hostname(host: str) -> str:
    """``host`` without its port (``[::1]:5000`` -> ``[::1]``, ``a.b:5000`` -> ``a.b``)."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


def _basic(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.secret.reveal()}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")
