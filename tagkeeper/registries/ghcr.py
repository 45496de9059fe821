"""GitHub Container Registry: the Packages REST API for versions and deletes, ghcr.io ``/v2``
for manifests.

:class:`GhcrBackend` implements :class:`tagkeeper.inventory.Backend` for one package
(``ghcr.io/OWNER/PACKAGE``, nested names such as ``ghcr.io/acme/team/app`` too).

- Owner kind is asked from the API: the token's own user (``/user/packages/...``, which
  also works for private user packages), an organisation (``/orgs/...``) or another user
  (``/users/...``).
- Listing asks for pages of 100; once page 1 tells the last page (``Link: rel="last"``)
  the other pages are fetched in parallel (bounded). A listing of several pages is
  confirmed by a second, conditional one (offset paging shifts under concurrent deletes
  and pushes; see :mod:`tagkeeper.registries.ghcr_versions`).
- Manifests are read from ghcr.io through the shared ``/v2`` client
  (:class:`~tagkeeper.registries.distribution.Registry`: the token exchange and its realm
  policy, each digest at most once per run, optionally from an on-disk cache verified
  against the digest), only when the planner asks. ghcr.io has no referrers API:
  referrers are found through the ``sha256-<hex>`` tag schema index when the package
  has one. A tag resolves to its digest with one manifest ``HEAD``
  (:meth:`GhcrBackend.resolve_tag`), with the GitHub token, Docker's credentials for
  ghcr.io, or anonymously for a public package: no listing, no REST API.
- The REST side (owner lookup, rate limits) is :mod:`tagkeeper.registries.ghcr_api`;
  ``tagkeeper doctor``'s checks are :mod:`tagkeeper.registries.ghcr_doctor`.
- Deletes are paced by :class:`tagkeeper.registries.pacing.DeletePacer`, honour ``retry-after``
  and the primary limit headers, and turn GitHub's refusals of one version into
  per-version results that say what to do. Right before each ``DELETE`` a look at the
  versions list at most a few seconds old (:mod:`tagkeeper.registries.ghcr_recheck`) must
  show the version's planned tags, and no version pushed since the listing may list it.
  A missing permission raises :class:`~tagkeeper.errors.AuthError` (the run stops);
  :meth:`GhcrBackend.check_delete` finds it before anything is deleted where GitHub
  shows it (a classic PAT's scopes, a fine-grained PAT).

The backend receives its ``httpx.Client``; it never builds one. Tokens are
:class:`~tagkeeper.secret.Secret` values and never appear in messages.

It is one module on purpose (past 600 lines): the listing, the re-checks before each
delete and the delete itself share the package's state (its versions by id, what was
pushed since the listing); the REST client, the version model and ``doctor`` already
live in ``ghcr_api``, ``ghcr_versions`` and ``ghcr_doctor``.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from tagkeeper.errors import AuthError, RegistryError, TagkeeperError, UsageError
from tagkeeper.inventory import (
    DeleteResult,
    DeleteStatus,
    RequestStats,
    Version,
)
from tagkeeper.refs import DIGEST_RE, is_valid_tag, parse_repository
from tagkeeper.registries.auth import Challenge
from tagkeeper.registries.backend import DistributionReader, RegistryBackend
from tagkeeper.registries.cache import ManifestCache
from tagkeeper.registries.credentials import Credentials
from tagkeeper.registries.distribution import Registry
from tagkeeper.registries.ghcr_api import (
    GhcrSession,
    OwnerKind,
    PackagesApi,
    TokenKind,
    permission_hint,
    read_hint,
    token_kind,
)
from tagkeeper.registries.ghcr_doctor import Check, Diagnosis, diagnose
from tagkeeper.registries.ghcr_reach import PushReach
from tagkeeper.registries.ghcr_recheck import RECHECK_WINDOW, ListingWatch, Look
from tagkeeper.registries.ghcr_versions import Page, PushWatch, read_consistently
from tagkeeper.registries.pacing import DeletePacer, PacerSettings
from tagkeeper.transport import (
    DEFAULT_MAX_WAIT,
    Clock,
    RetryPolicy,
    Sender,
    Sleep,
    describe_response,
)
from tagkeeper.untrusted import neutralise

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from tagkeeper.secret import Secret

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_PACER_SETTINGS",
    "DEFAULT_REGISTRY_URL",
    "Check",
    "Diagnosis",
    "GhcrBackend",
    "OwnerKind",
    "TokenKind",
    "split_image",
    "token_kind",
]

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_REGISTRY_URL = "https://ghcr.io"
PER_PAGE = 100
MAX_PAGES = 10_000  # a million versions: a listing that claims more is not believed
# The pacing every backend gets unless it is handed a pacer (tests against a local
# emulator replace it to run faster than GitHub allows).
DEFAULT_PACER_SETTINGS = PacerSettings()
# The re-check window every backend gets unless it is handed one (see ghcr_recheck)
DEFAULT_RECHECK_WINDOW = RECHECK_WINDOW
GHCR_SERVICE = "ghcr.io"
_PULL_HINT = (
    "a private package needs credentials: docker login ghcr.io (a token with "
    "read:packages), or GITHUB_TOKEN / --token"
)


def split_image(image: str) -> tuple[str, str, str]:
    """``(host, owner, package)`` of ``ghcr.io/OWNER/PACKAGE`` (package may contain ``/``)."""
    ref = parse_repository(image, why="pruning acts on a whole package")
    if ref.host is None:
        raise UsageError(
            f"{image!r} names no registry host", hint=f"write it as ghcr.io/{ref.path}"
        )
    owner, _, package = ref.path.partition("/")
    if not package:
        raise UsageError(
            f"{image!r} has no package name",
            hint="GHCR images are named ghcr.io/OWNER/PACKAGE",
        )
    return ref.host, owner, package


def _api_time(text: str) -> datetime | None:
    """A time as the Packages REST API writes it (``created_at``): a strict ISO 8601
    parse, no placeholder rule (GitHub records the push; it is never a build stamp)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class GhcrBackend(RegistryBackend):
    """One GHCR package (a :class:`tagkeeper.inventory.Backend`).

    ``token``: the GitHub token (listing and deleting need one). ``credentials``: what
    ``/v2`` reads use instead when there is no token (Docker's credentials for ghcr.io);
    with neither, ``/v2`` is read anonymously (public packages).
    """

    def __init__(
        self,
        image: str,
        client: httpx.Client,
        *,
        token: Secret | None,
        api_url: str = DEFAULT_API_URL,
        registry_url: str = DEFAULT_REGISTRY_URL,
        pacer: DeletePacer | None = None,
        manifest_cache: Path | None = None,
        max_wait: float = DEFAULT_MAX_WAIT,
        credentials: Credentials | Callable[[], Credentials | None] | None = None,
        list_workers: int = 6,
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.time,
        rng: random.Random | None = None,
        max_limit_retries: int = 8,
        read_plain_children: bool = False,
        recheck_window: float | None = None,
        session: GhcrSession | None = None,
    ) -> None:
        self.host, self.owner, self.package = split_image(image)
        self.registry_url = registry_url.rstrip("/")
        self.token = token
        self.list_workers = max(1, list_workers)
        self.sleep = sleep
        self.clock = clock
        self.sender = Sender(
            client,
            stats=RequestStats(),
            retry=retry,
            sleep=sleep,
            clock=clock,
            rng=rng,
            secret=token,
            where="the GitHub API or ghcr.io",
            max_wait=max_wait,
        )
        self.api = PackagesApi(
            self.sender,
            display=self.display,
            owner=self.owner,
            package=self.package,
            api_url=api_url,
            token=token,
            pacer=pacer or DeletePacer(clock, DEFAULT_PACER_SETTINGS),
            max_wait=max_wait,
            sleep=sleep,
            clock=clock,
            max_limit_retries=max_limit_retries,
            session=session,
        )
        if token:
            credentials = Credentials("tagkeeper", token, source="the GitHub token")
        registry = Registry(
            self.sender,
            host=self.host,
            name=self.repository,
            display=self.display,
            base_url=self.registry_url,
            credentials=credentials,
            refused_hint=read_hint(self.kind) if token else _PULL_HINT,
            known_realm=Challenge(
                "bearer", {"realm": f"{self.registry_url}/token", "service": GHCR_SERVICE}
            ),
            cache=ManifestCache(manifest_cache) if manifest_cache else None,
        )
        super().__init__(
            registry,
            DistributionReader(
                registry,
                tag_digest=self._tag_digest,
                referrers_api=False,
                read_plain_children=read_plain_children,
            ),
        )
        self._lock = threading.RLock()  # the listing (held across requests)
        self._state = threading.Lock()  # what pushed versions reach (never held long)
        self._versions: tuple[Version, ...] | None = None
        self._by_tag: dict[str, Version] = {}
        self._left_alone: dict[str, str] = {}  # digest -> why (tags outside the grammar)
        self._watch: PushWatch | None = None  # versions pushed since the listing
        self._recheck: ListingWatch | None = None  # the looks before deletes
        self.recheck_window = (
            DEFAULT_RECHECK_WINDOW if recheck_window is None else max(0.0, recheck_window)
        )
        self._reach = PushReach(registry, self.display)  # what pushed versions reach

    # -- Backend protocol -------------------------------------------------------------

    @property
    def display(self) -> str:
        return f"{self.host}/{self.owner}/{self.package}"

    @property
    def repository(self) -> str:
        """The registry repository name (``owner/package``)."""
        return f"{self.owner}/{self.package}"

    @property
    def api_url(self) -> str:
        return self.api.api_url

    @property
    def kind(self) -> TokenKind:
        """The GitHub token's kind (from its prefix)."""
        return self.api.kind

    @property
    def pacer(self) -> DeletePacer:
        return self.api.pacer

    @property
    def owner_kind(self) -> OwnerKind:
        return self.api.owner_kind

    def versions(self) -> Sequence[Version]:
        with self._lock:
            if self._versions is None:
                if not self.token:  # GitHub lists package versions only to a token
                    raise AuthError(
                        f"{self.display}: no GitHub token to list the package's versions",
                        hint="set GITHUB_TOKEN (or GH_TOKEN, or pass --token) to a token "
                        "with read:packages to plan, and delete:packages or a workflow's "
                        "packages: write to delete",
                    )
                self._versions = self._list()
                self._by_tag = {tag: v for v in self._versions for tag in v.tags}
            return self._versions

    @property
    def warnings(self) -> tuple[str, ...]:
        """Tags outside the OCI grammar that the listing shows (their versions stay)."""
        with self._state:
            bad = dict(self._left_alone)
        if not bad:
            return ()
        shown = "; ".join(f"{d[:19]} ({why})" for d, why in sorted(bad.items())[:5])
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        return (
            f"{len(bad)} version(s) carry tags that break the OCI tag grammar and are left "
            f"alone: {shown}{more}",
        )

    def protected(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """``extra``, plus every version that carries a tag outside the OCI grammar."""
        out = dict(extra or {})
        with self._state:
            for digest, why in self._left_alone.items():
                out.setdefault(digest, why)
        return out

    def _leave_alone(self, digest: str, bad: Sequence[str]) -> None:
        shown = ", ".join(repr(neutralise(tag, limit=60)) for tag in bad[:3])
        with self._state:
            self._left_alone.setdefault(
                digest, f"tagged {shown}, outside the OCI tag grammar: left alone"
            )

    def version_by_tag(self, tag: str) -> Version | None:
        self.versions()
        return self._by_tag.get(tag)

    def _tag_digest(self, tag: str) -> str | None:
        found = self.version_by_tag(tag)
        return found.digest if found is not None else None

    def current_tags(self, version: Version) -> frozenset[str] | None:
        """The tags ``version`` carries now, ``None`` when it is gone: from a look at the
        versions list at most :attr:`recheck_window` seconds old when this backend listed
        the package (:mod:`tagkeeper.registries.ghcr_recheck`), else (or when the look
        does not show it) from a ``GET`` of the version."""
        look = self._look(version)
        if look is not None:
            return look.tags[str(version.key)]
        return self._version_tags(version)

    @property
    def recheck_widest(self) -> float:
        """The longest time, in seconds, from a look to a ``DELETE`` it covered."""
        return self._recheck.widest if self._recheck is not None else 0.0

    def _look(self, version: Version) -> Look | None:
        if self._recheck is None or not version.key:
            return None
        return self._recheck.look_for(str(version.key))

    def _version_tags(self, version: Version) -> frozenset[str] | None:
        url = f"{self.api.packages_base()}/versions/{self._key(version)}"
        response = self.api.rest("GET", url, kind="version-get")
        if response.status_code == 404:
            self._forget(version)
            return None
        self.api.expect_ok(response, f"reading version {version.digest[:19]}")
        return self._to_version(self.api.json(response, "the package version")).tags

    def _forget(self, version: Version) -> None:
        if self._recheck is not None and version.key:
            self._recheck.forget(str(version.key))

    def delete(self, version: Version) -> DeleteResult:
        """Delete one version, paced, re-checked right before the ``DELETE`` is sent.

        The re-check (after the pacing wait), when this backend listed the package: a
        look at the versions list at most :attr:`recheck_window` seconds old (see
        :mod:`tagkeeper.registries.ghcr_recheck`; renewed when older) must show the
        version with the tags it was planned with (else it is skipped as *changed*), and
        no version pushed since the listing may reach it (an index that lists it,
        directly or through other indexes: buildx reuses unchanged platform manifests;
        or what it refers to): then it is skipped as *changed* and the executor plans
        around it. A pushed version whose manifest cannot be read stops the run (it may
        list anything). Window: a tag move or push that lands less than
        :attr:`recheck_window` seconds before the ``DELETE`` (plus the one request GitHub
        takes to handle it) is not seen; GitHub has no conditional delete.

        A permission refusal (403) raises :class:`AuthError`: every other delete would
        be refused the same way, so the run stops at once and says what is missing.
        """
        url = f"{self.api.packages_base()}/versions/{self._key(version)}"

        def recheck() -> None:
            try:
                skip = self._recheck_before_delete(version)
            except TagkeeperError as exc:  # stop the run, do not count it as a failed delete
                raise _StopRun(exc) from None
            if skip is not None:
                raise _Skip(skip)

        try:
            response = self.api.rest("DELETE", url, kind="delete", pace=True, just_before=recheck)
        except _StopRun as stop:
            raise stop.error from None
        except _Skip as skip:
            return skip.result
        except RegistryError as exc:
            return DeleteResult(version, DeleteStatus.FAILED, exc.message)
        status = response.status_code
        if status in (200, 202, 204):
            self._forget(version)
            return DeleteResult(version, DeleteStatus.DELETED)
        if status == 404:
            self._forget(version)
            return DeleteResult(version, DeleteStatus.ALREADY_GONE, "already deleted")
        detail = describe_response(response, self.scrub)
        if status == 401:
            raise AuthError(
                f"{self.display}: GitHub rejected the token ({detail})",
                hint="the token is invalid or expired; create a new one",
            )
        if status in (400, 409, 422):
            lowered = detail.lower()
            if "last" in lowered and "version" in lowered:
                return DeleteResult(
                    version,
                    DeleteStatus.REFUSED,
                    f"{detail} — GitHub never deletes the last version of a package; "
                    "keep it, or delete the whole package in its settings",
                )
            if "5000" in lowered or "5,000" in lowered or "downloads" in lowered:
                return DeleteResult(
                    version,
                    DeleteStatus.REFUSED,
                    f"{detail} — only GitHub Support can delete a public version with "
                    "more than 5,000 downloads; protect it with --protect to stop retrying",
                )
            return DeleteResult(version, DeleteStatus.REFUSED, detail)
        if status == 403 and self.api.limit_kind(response) is None:
            missing, fix = self.api.missing_permission(response)
            raise AuthError(
                f"{self.display}: GitHub refused to delete {version.digest[:19]}: {missing} "
                f"({detail})",
                hint=fix,
            )
        return DeleteResult(version, DeleteStatus.FAILED, detail)

    def check_delete(self) -> None:
        """Raise :class:`AuthError` before anything is deleted when the token surely
        cannot delete here, as far as GitHub lets that be seen without deleting.

        Seen: a classic PAT's scopes (``X-OAuth-Scopes`` of ``GET /user``: without
        ``delete:packages`` it cannot delete), and a fine-grained PAT (GitHub Packages
        does not accept them). Not seen: a ``GITHUB_TOKEN``'s ``packages`` permission,
        the repository's role in the package's *Manage Actions access*, and whether the
        token's user is an admin of the package: the first refused delete stops the run.
        """
        if self.kind == "fine-grained":
            raise AuthError(
                f"{self.display}: a fine-grained personal access token cannot delete "
                "package versions; nothing was deleted",
                hint=permission_hint("fine-grained"),
            )
        if self.kind != "classic":
            return
        self.api.identify()
        scopes = self.api.scopes
        if scopes is not None and "delete:packages" not in scopes:
            shown = ", ".join(sorted(scopes)) or "none"
            raise AuthError(
                f"{self.display}: the token lacks the delete:packages scope (it has: "
                f"{shown}); nothing was deleted",
                hint=permission_hint("classic"),
            )

    def _recheck_before_delete(self, version: Version) -> DeleteResult | None:
        """Why ``version`` must not be deleted now (a result to report instead), or
        ``None``. Nothing to compare with when this backend never listed the package."""
        if self._recheck is None or self._watch is None:
            return None
        look = self._look(version)
        if look is not None:
            tags: frozenset[str] | None = look.tags[str(version.key)]
            pushed: Sequence[Any] = look.pushed
            self._recheck.covered(look)
        else:  # not where its place says: ask about it alone, and about pushes now
            tags = self._version_tags(version)
            pushed = self._watch.new_versions()
        if tags is None:
            return DeleteResult(version, DeleteStatus.ALREADY_GONE, "already deleted")
        if tags != version.tags:
            added = ", ".join(sorted(tags - version.tags))
            removed = ", ".join(sorted(version.tags - tags))
            parts = [f"now tagged {added}"] if added else []
            parts += [f"no longer tagged {removed}"] if removed else []
            detail = "; ".join(parts)
            return DeleteResult(
                version, DeleteStatus.CHANGED, f"tags changed since the plan ({detail}): skipped"
            )
        found = self._reach.reaching(version, [self._to_version(item) for item in pushed])
        if found is not None:
            return DeleteResult(version, DeleteStatus.CHANGED, found)
        return None

    # -- doctor -------------------------------------------------------------------------

    def diagnose(self) -> Diagnosis:
        """Check, without deleting anything, whether the token can list and delete here."""
        return diagnose(self.api)

    # -- listing ------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        return self.sender.scrub(text)

    @staticmethod
    def _key(version: Version) -> str:
        if not version.key:
            raise UsageError(f"{version.digest} has no GHCR version id")
        return quote(version.key, safe="")

    def _list(self) -> tuple[Version, ...]:
        """Every version, from a listing that two consecutive reads agree on (see
        :mod:`tagkeeper.registries.ghcr_versions`)."""
        pages = read_consistently(self._read_listing, display=self.display)
        by_id: dict[str, Version] = {}
        for page in pages:
            for item in page.items:
                version = self._to_version(item)
                by_id[version.key or version.digest] = version
        versions = tuple(
            sorted(by_id.values(), key=lambda v: (v.created, _id_order(v.key)), reverse=True)
        )
        self._watch = PushWatch(
            self._watch_page,
            frozenset(by_id),
            versions[0].created if versions else None,
            created_of=_item_created,
        )
        self._recheck = ListingWatch(
            self._recheck_page,
            [v.key or v.digest for v in versions],
            watch=self._watch,
            tags_of=lambda item: self._to_version(item).tags,
            id_of=_raw_id,
            clock=self.clock,
            window=self.recheck_window,
        )
        return versions

    def _read_listing(self, previous: Sequence[Page] | None) -> list[Page]:
        """One listing: page 1, then the others in parallel once the last is known.
        Against a ``previous`` listing the requests are conditional (a 304 reuses it)."""
        kind = "list" if previous is None else "list-verify"
        before = list(previous or ())
        url = f"{self.api.packages_base()}/versions"  # here: pool threads must not take the lock

        def fetch(page: int) -> Page:
            earlier = before[page - 1] if page <= len(before) else None
            return self._fetch_page(url, page, PER_PAGE, earlier, kind=kind)

        first = fetch(1)
        if first.last > MAX_PAGES:
            raise RegistryError(
                f"{self.display}: GitHub says the versions list has {first.last} pages, more "
                f"than the {MAX_PAGES} tagkeeper reads",
                hint="check --api-url and any proxy between this machine and GitHub",
            )
        pages = [first]
        if first.last > 1:
            workers = min(self.list_workers, first.last - 1)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                pages.extend(pool.map(fetch, range(2, first.last + 1)))
        return pages

    def _watch_page(self, page: int, per_page: int, previous: Page | None) -> Page:
        url = f"{self.api.packages_base()}/versions"
        return self._fetch_page(url, page, per_page, previous, kind="list-new")

    def _recheck_page(self, page: int, per_page: int, previous: Page | None) -> Page:
        url = f"{self.api.packages_base()}/versions"
        return self._fetch_page(url, page, per_page, previous, kind="list-recheck")

    def _fetch_page(
        self, url: str, page: int, per_page: int, previous: Page | None, *, kind: str
    ) -> Page:
        """One page of the versions list (conditional on ``previous``: 304 returns it)."""
        headers = {"If-None-Match": previous.etag} if previous and previous.etag else None
        response = self.api.rest(
            "GET", url, kind=kind, params={"per_page": per_page, "page": page}, headers=headers
        )
        if response.status_code == 304 and previous is not None:
            return previous
        self.api.expect_ok(response, "listing versions" + (f" (page {page})" if page > 1 else ""))
        last = _last_page(response)
        return Page(
            tuple(self._page_items(response)),
            response.headers.get("etag"),
            last if page == 1 else max(last, page),
        )

    def _page_items(self, response: httpx.Response) -> list[Any]:
        body = self.api.json(response, "the versions list")
        if not isinstance(body, list):
            raise RegistryError(f"{self.display}: the versions answer is not a list")
        return body

    def _to_version(self, item: Any) -> Version:
        """A version of the listing; a tag outside the OCI grammar is left out of its tags,
        and the version is left alone (:meth:`protected`)."""
        try:
            metadata = item.get("metadata") or {}
            container = metadata.get("container") or {}
            tags = frozenset(str(t) for t in container.get("tags") or ())
            created = _api_time(str(item["created_at"]))
            digest = str(item["name"])
            if created is not None and DIGEST_RE.fullmatch(digest):
                bad = sorted(t for t in tags if not is_valid_tag(t))
                if bad:
                    self._leave_alone(digest, bad)
                ident = item["id"]
                return Version(
                    digest=digest,
                    tags=tags.difference(bad),
                    created=created,
                    key=str(ident),
                    sequence=ident if isinstance(ident, int) else None,
                )
        except (AttributeError, KeyError, TypeError, ValueError):
            pass
        raise RegistryError(
            f"{self.display}: GitHub sent a package version this client cannot read",
            hint="the API may have changed; report it with the output of --format json",
        )


def _last_page(response: httpx.Response) -> int:
    last = response.links.get("last")
    if not last or "url" not in last:
        return 1
    try:
        page = httpx.URL(last["url"]).params.get("page")
        return max(1, int(page)) if page is not None else 1
    except (ValueError, httpx.InvalidURL):
        return 1


def _id_order(key: str | None) -> tuple[int, str]:
    if key is not None and key.isdigit():
        return (int(key), "")
    return (-1, key or "")


def _item_created(item: Any) -> datetime | None:
    """The ``created_at`` of a raw versions-list item, when it has a readable one."""
    created = item.get("created_at") if isinstance(item, dict) else None
    return _api_time(created) if isinstance(created, str) else None


def _raw_id(item: Any) -> str:
    """The version id of a raw versions-list item (as :class:`Version` keys are)."""
    return str(item.get("id")) if isinstance(item, dict) else repr(item)


class _StopRun(Exception):  # control flow inside delete(): never escapes it
    """Ends a delete before it is sent: ``error`` stops the run."""

    def __init__(self, error: TagkeeperError) -> None:
        super().__init__("delete not sent")
        self.error = error


class _Skip(Exception):  # control flow inside delete(): never escapes it
    """Ends a delete before it is sent: ``result`` says why."""

    def __init__(self, result: DeleteResult) -> None:
        super().__init__("delete not sent")
        self.result = result
