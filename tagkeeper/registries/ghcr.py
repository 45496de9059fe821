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
- Manifests are read from the registry, after ghcr.io's token exchange, only when the
  planner asks (each digest at most once per run, optionally from an on-disk cache that
  is verified against the digest). ghcr.io has no referrers API: referrers are found
  through the ``sha256-<hex>`` tag schema index when the package has one.
- Deletes are paced by :class:`tagkeeper.registries.pacing.DeletePacer`, honour ``retry-after``
  and the primary limit headers, and turn GitHub's refusals of one version into
  per-version results that say what to do. Right before each ``DELETE`` the versions
  pushed since the listing are looked up: one that lists the version stops its delete.
  A missing permission raises :class:`~tagkeeper.errors.AuthError` (the run stops);
  :meth:`GhcrBackend.check_delete` finds it before anything is deleted where GitHub
  shows it (a classic PAT's scopes, a fine-grained PAT).

The backend receives its ``httpx.Client``; it never builds one. Tokens are
:class:`~tagkeeper.secret.Secret` values and never appear in messages.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import httpx

from tagkeeper.errors import AuthError, RateLimited, RegistryError, TagkeeperError, UsageError
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
from tagkeeper.refs import SHA256_DIGEST_RE, parse_reference
from tagkeeper.registries.ghcr_versions import Page, PushWatch, listed_by, read_consistently
from tagkeeper.registries.manifests import digest_matches, read_manifest
from tagkeeper.registries.pacing import DeletePacer, PacerSettings
from tagkeeper.transport import (
    Clock,
    RetryPolicy,
    Sender,
    Sleep,
    describe_response,
    is_loopback_host,
    json_body,
    parse_retry_after,
)

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from tagkeeper.secret import Secret

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_REGISTRY_URL = "https://ghcr.io"
API_VERSION = "2022-11-28"
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
PER_PAGE = 100
LOW_REMAINING = 20  # below this many API requests left, spread the rest until the reset
# The pacing every backend gets unless it is handed a pacer (tests against a local
# emulator replace it to run faster than GitHub allows).
DEFAULT_PACER_SETTINGS = PacerSettings()

TokenKind = Literal["none", "classic", "fine-grained", "github-token", "oauth", "unknown"]
OwnerKind = Literal["self", "user", "org"]

_SECONDARY_RE = re.compile(r"secondary rate limit|abuse detection", re.IGNORECASE)


def token_kind(token: Secret | None) -> TokenKind:
    """What kind of GitHub token this is, from its documented prefix (never its value)."""
    if not token:
        return "none"
    value = token.reveal()
    if value.startswith("ghp_"):
        return "classic"
    if value.startswith("github_pat_"):
        return "fine-grained"
    if value.startswith("ghs_"):
        return "github-token"
    if value.startswith(("gho_", "ghu_")):
        return "oauth"
    return "unknown"


def split_image(image: str) -> tuple[str, str, str]:
    """``(host, owner, package)`` of ``ghcr.io/OWNER/PACKAGE`` (package may contain ``/``)."""
    ref = parse_reference(image)
    if ref.tag is not None or ref.digest is not None:
        raise UsageError(
            f"{image!r} names a tag or digest; pruning acts on a whole package",
            hint=f"pass the repository only, e.g. {ref.repository}",
        )
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


def _permission_hint(kind: TokenKind) -> str:
    if kind == "github-token":
        return (
            "give the workflow 'permissions: packages: write' and give this repository the "
            "Admin role in the package's settings under 'Manage Actions access'"
        )
    if kind == "classic":
        return "the personal access token (classic) needs the delete:packages scope"
    if kind == "fine-grained":
        return (
            "GitHub Packages does not accept fine-grained tokens; use a personal access "
            "token (classic) with read:packages and delete:packages, or GITHUB_TOKEN"
        )
    return "the token needs admin access to the package (classic PAT: delete:packages)"


_PLAIN_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})


def _api_time(text: str) -> datetime | None:
    """A time as the Packages REST API writes it (``created_at``): a strict ISO 8601
    parse, no placeholder rule (GitHub records the push; it is never a build stamp)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class ManifestCache:
    """An on-disk cache of manifests keyed by digest (content-addressed, verified)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _paths(self, digest: str) -> tuple[Path, Path] | None:
        if not SHA256_DIGEST_RE.fullmatch(digest):
            return None
        folder = self.root / "sha256"
        hexpart = digest.split(":", 1)[1]
        return folder / hexpart, folder / f"{hexpart}.type"

    def get(self, digest: str) -> tuple[bytes, str] | None:
        paths = self._paths(digest)
        if paths is None:
            return None
        try:
            raw = paths[0].read_bytes()
            media = paths[1].read_text(encoding="utf-8").strip()
        except OSError:
            return None
        if not digest_matches(digest, raw):  # damaged or tampered: never trust it
            with contextlib.suppress(OSError):
                paths[0].unlink()
            return None
        return raw, media

    def put(self, digest: str, raw: bytes, media: str) -> None:
        paths = self._paths(digest)
        if paths is None or not digest_matches(digest, raw):
            return
        try:
            paths[0].parent.mkdir(parents=True, exist_ok=True)
            for path, data in ((paths[1], media.encode()), (paths[0], raw)):
                tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
                tmp.write_bytes(data)
                tmp.replace(path)
        except OSError:
            return  # a cache that cannot be written only costs requests


@dataclass(frozen=True)
class Check:
    """One line of ``doctor``: ``ok``, ``missing`` (required and absent), ``unknown``
    (could not be verified without deleting), or ``warning``."""

    name: str
    status: Literal["ok", "missing", "unknown", "warning"]
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class Diagnosis:
    """What ``doctor`` found about one package and one token."""

    image: str
    token_kind: TokenKind
    owner_kind: OwnerKind | None
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(check.status != "missing" for check in self.checks)

    def to_json(self) -> dict[str, object]:
        return {
            "image": self.image,
            "token_kind": self.token_kind,
            "owner_kind": self.owner_kind,
            "ok": self.ok,
            "checks": [check.to_json() for check in self.checks],
        }


class GhcrManifestReader:
    """Reads manifests from ghcr.io ``/v2`` (implements ``ManifestReader``).

    Each digest is read at most once per run. A manifest that an already-read index
    lists with a plain image media type (OCI or Docker image manifest) is not fetched:
    such a manifest cannot list other manifests, so for reachability its answer is known
    from the (digest-verified) index itself. Its :class:`ManifestInfo` then has no
    ``subject`` or ``created``. ``read_plain_children=True`` fetches those too.
    """

    def __init__(
        self, backend: GhcrBackend, cache: ManifestCache | None, *, read_plain_children: bool
    ) -> None:
        self._backend = backend
        self._cache = cache
        self._read_plain = read_plain_children
        self._plain: dict[str, str] = {}  # digest -> media type, from an index's descriptor
        self._infos: dict[str, ManifestInfo] = {}
        self._failures: dict[str, ManifestUnreadable] = {}
        self._bearer: str | None = None
        self._lock = threading.RLock()

    def manifest(self, digest: str) -> ManifestInfo:
        with self._lock:
            if digest in self._infos:
                return self._infos[digest]
            failure = self._failures.get(digest)
            if failure is not None:
                raise type(failure)(digest, failure.reason)
            if digest in self._plain and not self._read_plain:
                info = ManifestInfo(digest=digest, media_type=self._plain[digest])
                self._infos[digest] = info
                return info
            try:
                info = self._load(digest)
            except ManifestUnreadable as exc:
                self._failures[digest] = exc
                raise
            self._infos[digest] = info
            return info

    def referrers(self, digest: str) -> Sequence[str]:
        if not SHA256_DIGEST_RE.fullmatch(digest):
            return ()
        schema_tag = "sha256-" + digest.split(":", 1)[1]
        holder = self._backend.version_by_tag(schema_tag)
        if holder is None:
            return ()
        info = self.manifest(holder.digest)
        if info.media_type not in INDEX_TYPES:
            return ()
        return info.children

    def _load(self, digest: str) -> ManifestInfo:
        cached = self._cache.get(digest) if self._cache is not None else None
        if cached is not None:
            raw, media = cached
        else:
            raw, media = self._fetch(digest)
            if self._cache is not None:
                self._cache.put(digest, raw, media)
        parsed = read_manifest(digest, raw, media)
        self._plain.update(
            (entry.digest, entry.media_type)
            for entry in parsed.entries
            if entry.media_type in _PLAIN_TYPES
        )
        return parsed.info

    def _fetch(self, digest: str) -> tuple[bytes, str]:
        b = self._backend
        url = f"{b.registry_url}/v2/{b.repository}/manifests/{digest}"
        if self._bearer is None:
            self._bearer = b.registry_token(None)
        for attempt in (1, 2):
            headers = {"Accept": MANIFEST_ACCEPT, "Authorization": f"Bearer {self._bearer}"}
            try:
                response = b.sender.send("GET", url, kind="manifest", headers=headers)
            except RegistryError as exc:
                raise ManifestUnreadable(digest, exc.message) from None
            if response.status_code == 401 and attempt == 1:
                challenge = response.headers.get("www-authenticate")
                self._bearer = b.registry_token(challenge)
                continue
            break
        if response.status_code in (401, 403):
            raise AuthError(
                f"{b.display}: the registry refused to serve manifests "
                f"({describe_response(response, b.scrub)})",
                hint="the token needs read:packages (or 'packages: read' for GITHUB_TOKEN)",
            )
        if response.status_code == 404:  # the registry says it does not exist
            raise ManifestMissing(digest, describe_response(response, b.scrub))
        if response.status_code != 200:
            raise ManifestUnreadable(digest, describe_response(response, b.scrub))
        # verified against the digest by read_manifest (and by the cache before it stores)
        return response.content, response.headers.get("content-type", "")


class GhcrBackend:
    """One GHCR package (implements :class:`tagkeeper.inventory.Backend`)."""

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
        max_wait: float = 0.0,
        list_workers: int = 6,
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.time,
        rng: random.Random | None = None,
        max_limit_retries: int = 8,
        read_plain_children: bool = False,
    ) -> None:
        self.host, self.owner, self.package = split_image(image)
        self.api_url = api_url.rstrip("/")
        self.registry_url = registry_url.rstrip("/")
        self.token = token
        self.kind = token_kind(token)
        self.max_wait = max_wait
        self.list_workers = max(1, list_workers)
        self.max_limit_retries = max_limit_retries
        self._stats = RequestStats()
        self.sleep = sleep
        self.clock = clock
        self.sender = Sender(
            client,
            stats=self._stats,
            retry=retry,
            sleep=sleep,
            clock=clock,
            rng=rng,
            secret=token,
            where="the GitHub API or ghcr.io",
        )
        self.pacer = pacer or DeletePacer(clock, DEFAULT_PACER_SETTINGS)
        self._reader = GhcrManifestReader(
            self,
            ManifestCache(manifest_cache) if manifest_cache else None,
            read_plain_children=read_plain_children,
        )
        self._lock = threading.RLock()  # owner lookup and listing (held across requests)
        self._state = threading.Lock()  # rate-limit headers and refusals (never held long)
        self._base: str | None = None
        self._owner_kind: OwnerKind | None = None
        self._login: str | None = None
        self._login_known = False
        self._scopes: frozenset[str] | None = None
        self._versions: tuple[Version, ...] | None = None
        self._by_tag: dict[str, Version] = {}
        self._remaining: int | None = None
        self._reset: float | None = None
        self._watch: PushWatch | None = None  # versions pushed since the listing
        self._reach: dict[str, frozenset[str]] = {}  # pushed digest -> what it lists

    # -- Backend protocol -------------------------------------------------------------

    @property
    def display(self) -> str:
        return f"{self.host}/{self.owner}/{self.package}"

    @property
    def repository(self) -> str:
        """The registry repository name (``owner/package``)."""
        return f"{self.owner}/{self.package}"

    @property
    def stats(self) -> RequestStats:
        return self._stats

    @property
    def reader(self) -> GhcrManifestReader:
        return self._reader

    @property
    def owner_kind(self) -> OwnerKind:
        self._packages_base()
        if self._owner_kind is None:  # pragma: no cover - set by _packages_base
            raise RegistryError(f"{self.display}: the owner kind is unknown")
        return self._owner_kind

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

    def version_by_tag(self, tag: str) -> Version | None:
        self.versions()
        return self._by_tag.get(tag)

    def current_tags(self, version: Version) -> frozenset[str] | None:
        url = f"{self._packages_base()}/versions/{self._key(version)}"
        response = self._rest("GET", url, kind="version-get")
        if response.status_code == 404:
            return None
        self._expect_ok(response, f"reading version {version.digest[:19]}")
        return self._to_version(self._json(response, "the package version")).tags

    def delete(self, version: Version) -> DeleteResult:
        """Delete one version, paced, re-checked right before the ``DELETE`` is sent.

        The re-check (after the pacing wait): the versions pushed since the listing
        (:class:`~tagkeeper.registries.ghcr_versions.PushWatch`, one conditional request,
        a ``304`` when nothing was pushed). When one of them reaches ``version`` (an
        index that lists it, directly or through other indexes: buildx reuses unchanged
        platform manifests), the delete is skipped as *changed* and the executor plans
        around it. A pushed version whose manifest cannot be read stops the run (it may
        list anything). Window: a push that lands after the re-check's answer and before
        GitHub handles the ``DELETE`` (one request) is not seen; GitHub has no
        conditional delete.

        A permission refusal (403) raises :class:`AuthError`: every other delete would
        be refused the same way, so the run stops at once and says what is missing.
        """
        url = f"{self._packages_base()}/versions/{self._key(version)}"
        reached: list[str] = []

        def recheck() -> None:
            try:
                found = self._pushed_reaching(version.digest)
            except TagkeeperError as exc:  # stop the run, do not count it as a failed delete
                raise _StopRun(exc) from None
            if found is not None:
                reached.append(found)
                raise _StopRun(None)

        try:
            response = self._rest(
                "DELETE", url, kind="delete", pace=True, just_before=recheck
            )
        except _StopRun as stop:
            if stop.error is not None:
                raise stop.error from None
            return DeleteResult(version, DeleteStatus.CHANGED, reached[0])
        except RegistryError as exc:
            return DeleteResult(version, DeleteStatus.FAILED, exc.message)
        status = response.status_code
        if status in (200, 202, 204):
            return DeleteResult(version, DeleteStatus.DELETED)
        if status == 404:
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
        if status == 403 and self._limit_kind(response) is None:
            missing, fix = self._missing_permission(response)
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
                hint=_permission_hint("fine-grained"),
            )
        if self.kind != "classic":
            return
        self._identify()
        if self._scopes is not None and "delete:packages" not in self._scopes:
            shown = ", ".join(sorted(self._scopes)) or "none"
            raise AuthError(
                f"{self.display}: the token lacks the delete:packages scope (it has: "
                f"{shown}); nothing was deleted",
                hint=_permission_hint("classic"),
            )

    def _missing_permission(self, response: httpx.Response) -> tuple[str, str]:
        """What a 403 on a delete says is missing, and how to fix it."""
        try:
            body = response.json()
        except ValueError:
            body = None
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
        accepted = (
            response.headers.get("x-accepted-oauth-scopes", "")
            + " "
            + response.headers.get("x-accepted-github-permissions", "")
        ).lower()
        if self.kind == "fine-grained":
            return "GitHub Packages does not accept fine-grained tokens", _permission_hint(
                "fine-grained"
            )
        if self.kind == "classic":
            scopes = self._scopes
            if "delete:packages" in message or (
                "delete:packages" in accepted
                and (scopes is None or "delete:packages" not in scopes)
            ):
                return "the token lacks the delete:packages scope", _permission_hint("classic")
            return (
                "the token's user is not an admin of the package",
                "give that user the Admin role on the package (its settings, 'Manage "
                "access'), or use a token of a package admin",
            )
        if self.kind == "github-token":
            if "packages=write" in accepted:
                return (
                    "the workflow's token lacks 'packages: write'",
                    "add 'permissions: packages: write' to the workflow or the job",
                )
            return (
                "the repository lacks the Admin role in the package's 'Manage Actions "
                "access'",
                _permission_hint("github-token"),
            )
        return "the token may not delete versions of this package", _permission_hint(self.kind)

    def _pushed_reaching(self, target: str) -> str | None:
        """Why ``target`` must stay: a version pushed since the listing reaches it.

        Pushes are counted from this backend's listing (:meth:`versions`, which a plan is
        made of); a backend that never listed has nothing to compare with."""
        watch = self._watch
        if watch is None:
            return None
        for item in watch.new_versions():
            pushed = self._to_version(item)
            if pushed.digest != target and target in self._descendants(pushed.digest):
                tags = ", ".join(sorted(pushed.tags)) or "untagged"
                return (
                    f"listed by {pushed.digest[:19]} ({tags}), pushed since the plan: "
                    "skipped, it stays"
                )
        return None

    def _descendants(self, digest: str) -> frozenset[str]:
        """Every manifest ``digest`` lists, recursively (read through the reader, so
        each manifest once per run). Raises :class:`RegistryError` when one cannot be
        read: a version pushed during the prune may list anything."""
        with self._state:
            known = self._reach.get(digest)
        if known is not None:
            return known
        try:
            found = listed_by(digest, self._reader)
        except ManifestUnreadable as exc:
            raise RegistryError(
                f"{self.display}: {digest[:19]} was pushed during the prune and "
                f"{exc.digest[:19]} cannot be read ({exc.reason}); stopped before "
                "deleting anything it may list",
                hint="rerun: the next plan includes it",
            ) from None
        with self._state:
            self._reach[digest] = found
        return found

    # -- doctor -------------------------------------------------------------------------

    def diagnose(self) -> Diagnosis:
        """Check, without deleting anything, whether the token can list and delete here."""
        checks: list[Check] = []
        kind = self.kind
        if kind == "none":
            checks.append(
                Check(
                    "token",
                    "missing",
                    "no token was given",
                    "pass --token or set GITHUB_TOKEN (or GH_TOKEN)",
                )
            )
            return Diagnosis(self.display, kind, None, tuple(checks))
        checks.append(Check("token", "ok", f"a token is present ({_KIND_TEXT[kind]})"))
        if kind == "fine-grained":
            checks.append(
                Check(
                    "token-kind",
                    "missing",
                    "GitHub Packages accepts only personal access tokens (classic), "
                    "GITHUB_TOKEN and OAuth tokens",
                    _permission_hint(kind),
                )
            )
        try:
            self._identify()
        except AuthError as exc:
            checks.append(Check("credentials", "missing", exc.message, exc.hint or ""))
            return Diagnosis(self.display, kind, None, tuple(checks))
        if self._login:
            checks.append(Check("credentials", "ok", f"valid, authenticated as {self._login}"))
        else:
            checks.append(Check("credentials", "ok", "valid (an app or workflow token)"))
        try:
            owner_kind = self.owner_kind
        except (AuthError, RegistryError) as exc:
            checks.append(Check("owner", "missing", exc.message, exc.hint or ""))
            return Diagnosis(self.display, kind, None, tuple(checks))
        checks.append(Check("owner", "ok", _OWNER_TEXT[owner_kind].format(owner=self.owner)))
        checks.append(self._check_list())
        checks.append(self._check_delete())
        return Diagnosis(self.display, kind, owner_kind, tuple(checks))

    def _check_list(self) -> Check:
        url = f"{self._packages_base()}/versions"
        try:
            response = self._rest("GET", url, kind="list", params={"per_page": 1, "page": 1})
        except RegistryError as exc:
            return Check("list", "missing", exc.message, exc.hint or "")
        if response.status_code == 200:
            return Check("list", "ok", "the token can list the package's versions")
        detail = describe_response(response, self.scrub)
        if self.kind == "github-token":
            fix = (
                "give this repository access in the package's settings under 'Manage Actions "
                "access', and 'permissions: packages: read' (or write) in the workflow"
            )
        elif self.kind == "classic":
            fix = "the personal access token (classic) needs the read:packages scope"
        else:
            fix = "use a token that can read the package (classic PAT with read:packages)"
        if response.status_code == 404:
            detail += " (the package does not exist, or this token cannot see it)"
        return Check("list", "missing", f"listing versions failed: {detail}", fix)

    def _check_delete(self) -> Check:
        if self.kind == "classic":
            scopes = self._scopes or frozenset()
            if "delete:packages" in scopes:
                return Check("delete", "ok", "the token has the delete:packages scope")
            shown = ", ".join(sorted(scopes)) or "none"
            return Check(
                "delete",
                "missing",
                f"the token's scopes ({shown}) lack delete:packages",
                _permission_hint("classic"),
            )
        if self.kind == "github-token":
            return Check(
                "delete",
                "unknown",
                "GitHub offers no dry-run delete, so deleting with a GITHUB_TOKEN cannot be "
                "verified in advance",
                _permission_hint("github-token"),
            )
        if self.kind == "fine-grained":
            return Check(
                "delete",
                "missing",
                "fine-grained tokens cannot delete packages",
                _permission_hint("fine-grained"),
            )
        return Check(
            "delete",
            "unknown",
            "this token kind does not show its permissions; deleting cannot be verified",
            _permission_hint(self.kind),
        )

    # -- registry token ----------------------------------------------------------------

    def registry_token(self, challenge: str | None) -> str:
        """A bearer token for ``/v2`` pulls, from ghcr.io's token service.

        ``challenge`` is a ``WWW-Authenticate`` value to follow; its realm must be on the
        registry's own host (the GitHub token is never sent anywhere else), over https
        (plain http only on a loopback host, as for ``--registry-url``).
        """
        realm = f"{self.registry_url}/token"
        service = "ghcr.io"
        scope = f"repository:{self.repository}:pull"
        if challenge:
            params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
            realm = params.get("realm", realm)
            service = params.get("service", service)
            scope = params.get("scope", scope)
        self._check_realm(realm)
        auth = ("tagkeeper", self.token.reveal()) if self.token else None
        response = self.sender.send(
            "GET", realm, kind="token", params={"scope": scope, "service": service}, auth=auth
        )
        if response.status_code in (401, 403):
            raise AuthError(
                f"{self.display}: ghcr.io refused the token for pulling "
                f"({describe_response(response, self.scrub)})",
                hint="the token needs read:packages (or 'packages: read' for GITHUB_TOKEN)",
            )
        self._expect_ok(response, "exchanging the token at ghcr.io")
        body = self._json(response, "the registry token service")
        value = None
        if isinstance(body, dict):
            value = body.get("token") or body.get("access_token")
        if not isinstance(value, str) or not value:
            raise RegistryError(f"{self.display}: the registry token service sent no token")
        return value

    def _check_realm(self, realm: str) -> None:
        """Refuse a token realm on another host, or on plain http off loopback."""
        try:
            url = httpx.URL(realm)
        except httpx.InvalidURL:
            url = None
        if url is None or url.netloc != httpx.URL(self.registry_url).netloc:
            where = url.host if url is not None and url.host else repr(realm[:80])
            raise RegistryError(
                f"{self.display}: the registry asks for credentials at another host "
                f"({where}); tagkeeper does not send the token there",
                hint="point --registry-url at the registry itself",
            )
        if url.scheme != "https" and not (url.scheme == "http" and is_loopback_host(url.host)):
            raise RegistryError(
                f"{self.display}: the registry asks for credentials over {url.scheme}:// "
                f"({url.copy_with(query=None)}); tagkeeper sends the token only over https",
                hint="plain http is accepted only on localhost, 127.0.0.0/8 and ::1; check "
                "--registry-url and any proxy that rewrites the registry's answers",
            )

    # -- REST plumbing -----------------------------------------------------------------

    def scrub(self, text: str) -> str:
        return self.sender.scrub(text)

    def _json(self, response: httpx.Response, what: str) -> Any:
        """The JSON of an answer that must be JSON (else a RegistryError with a hint)."""
        return json_body(response, what=f"{self.display}: {what}", scrub=self.scrub)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token.reveal()}"
        return headers

    @staticmethod
    def _key(version: Version) -> str:
        if not version.key:
            raise UsageError(f"{version.digest} has no GHCR version id")
        return quote(version.key, safe="")

    def _identify(self) -> None:
        """Ask ``GET /user`` who the token belongs to (once)."""
        with self._lock:
            if self._login_known:
                return
            self._login_known = True
            if not self.token:
                return
            response = self._rest("GET", f"{self.api_url}/user", kind="user")
            if response.status_code == 401:
                raise AuthError(
                    f"GitHub rejected the token ({describe_response(response, self.scrub)})",
                    hint="the token is invalid or expired; create a new one",
                )
            if response.status_code == 200:
                body = self._json(response, "the token's user")
                login = body.get("login") if isinstance(body, dict) else None
                self._login = login if isinstance(login, str) else None
                scopes = response.headers.get("x-oauth-scopes")
                if scopes is not None:
                    self._scopes = frozenset(s.strip() for s in scopes.split(",") if s.strip())
            # 403 "Resource not accessible by integration": a GITHUB_TOKEN; no login.

    def _packages_base(self) -> str:
        with self._lock:
            if self._base is not None:
                return self._base
            self._identify()
            encoded = quote(self.package, safe="")
            if self._login is not None and self._login.lower() == self.owner.lower():
                self._owner_kind = "self"
                self._base = f"{self.api_url}/user/packages/container/{encoded}"
                return self._base
            owner = quote(self.owner, safe="")
            response = self._rest("GET", f"{self.api_url}/users/{owner}", kind="user")
            if response.status_code == 404:
                raise RegistryError(
                    f"{self.display}: GitHub has no user or organisation {self.owner!r}",
                    hint="check the owner part of the image name",
                )
            self._expect_ok(response, f"looking up the owner {self.owner!r}")
            body = self._json(response, f"the owner {self.owner!r}")
            is_org = isinstance(body, dict) and body.get("type") == "Organization"
            self._owner_kind = "org" if is_org else "user"
            segment = "orgs" if is_org else "users"
            self._base = f"{self.api_url}/{segment}/{owner}/packages/container/{encoded}"
            return self._base

    def _expect_ok(self, response: httpx.Response, doing: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = describe_response(response, self.scrub)
        if status == 401:
            raise AuthError(
                f"{self.display}: {doing}: GitHub rejected the token ({detail})",
                hint="the token is invalid or expired; pass a valid one with --token or "
                "GITHUB_TOKEN",
            )
        if status == 403:
            raise AuthError(
                f"{self.display}: {doing}: permission refused ({detail})",
                hint=_permission_hint(self.kind).replace("delete:packages", "read:packages"),
            )
        if status == 404:
            raise RegistryError(
                f"{self.display}: {doing}: not found ({detail})",
                hint="check the package name; GitHub also answers 404 when the token cannot "
                "see a private package (classic PAT: read:packages; GITHUB_TOKEN: the "
                "package's 'Manage Actions access')",
            )
        raise RegistryError(
            f"{self.display}: {doing}: {detail}",
            hint="GitHub may be having trouble; rerun later",
        )

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
        return versions

    def _read_listing(self, previous: Sequence[Page] | None) -> list[Page]:
        """One listing: page 1, then the others in parallel once the last is known.
        Against a ``previous`` listing the requests are conditional (a 304 reuses it)."""
        kind = "list" if previous is None else "list-verify"
        before = list(previous or ())
        url = f"{self._packages_base()}/versions"  # here: pool threads must not take the lock

        def fetch(page: int) -> Page:
            earlier = before[page - 1] if page <= len(before) else None
            return self._fetch_page(url, page, PER_PAGE, earlier, kind=kind)

        first = fetch(1)
        pages = [first]
        if first.last > 1:
            workers = min(self.list_workers, first.last - 1)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                pages.extend(pool.map(fetch, range(2, first.last + 1)))
        return pages

    def _watch_page(self, page: int, per_page: int, previous: Page | None) -> Page:
        url = f"{self._packages_base()}/versions"
        return self._fetch_page(url, page, per_page, previous, kind="list-new")

    def _fetch_page(
        self, url: str, page: int, per_page: int, previous: Page | None, *, kind: str
    ) -> Page:
        """One page of the versions list (conditional on ``previous``: 304 returns it)."""
        headers = {"If-None-Match": previous.etag} if previous and previous.etag else None
        response = self._rest(
            "GET", url, kind=kind, params={"per_page": per_page, "page": page}, headers=headers
        )
        if response.status_code == 304 and previous is not None:
            return previous
        self._expect_ok(response, "listing versions" + (f" (page {page})" if page > 1 else ""))
        last = _last_page(response)
        return Page(
            tuple(self._page_items(response)),
            response.headers.get("etag"),
            last if page == 1 else max(last, page),
        )

    def _page_items(self, response: httpx.Response) -> list[Any]:
        body = self._json(response, "the versions list")
        if not isinstance(body, list):
            raise RegistryError(f"{self.display}: the versions answer is not a list")
        return body

    def _to_version(self, item: Any) -> Version:
        try:
            metadata = item.get("metadata") or {}
            container = metadata.get("container") or {}
            tags = frozenset(str(t) for t in container.get("tags") or ())
            created = _api_time(str(item["created_at"]))
            if created is not None:
                ident = item["id"]
                return Version(
                    digest=str(item["name"]),
                    tags=tags,
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

    def _note_limits(self, response: httpx.Response) -> None:
        remaining = response.headers.get("x-ratelimit-remaining")
        reset = response.headers.get("x-ratelimit-reset")
        if remaining is None or reset is None:
            return
        try:
            left, at = int(remaining), float(reset)
        except ValueError:
            return
        with self._state:
            self._remaining, self._reset = left, at

    @staticmethod
    def _limit_kind(response: httpx.Response) -> Literal["primary", "secondary"] | None:
        if response.status_code not in (403, 429):
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
        if _SECONDARY_RE.search(message):
            return "secondary"
        if response.headers.get("x-ratelimit-remaining") == "0":
            return "primary"
        if response.headers.get("retry-after") is not None or response.status_code == 429:
            return "secondary"
        return None

    def _primary_gate(self) -> None:
        """Before a request: wait for (or stop at) an exhausted primary limit."""
        with self._state:
            remaining, reset = self._remaining, self._reset
        if remaining is None or reset is None:
            return
        wait = reset - self.clock()
        if wait <= 0:
            return
        if remaining <= 0:
            if wait + 1 <= self.max_wait:
                self.sleep(wait + 1)
                with self._state:
                    self._remaining = None
                return
            when = datetime.fromtimestamp(reset, UTC).strftime("%H:%M:%S UTC")
            raise RateLimited(
                f"{self.display}: the GitHub API rate limit is used up until {when}",
                hint="rerun after the reset (the next run continues where this one stopped), "
                "or pass --max-wait 1h to wait for it",
            )
        if remaining < LOW_REMAINING:
            spread = wait / (remaining + 1)
            if spread <= self.max_wait:
                self.sleep(spread)

    def _rest(
        self,
        method: str,
        url: str,
        *,
        kind: str,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        pace: bool = False,
        just_before: Callable[[], None] | None = None,
    ) -> httpx.Response:
        """Send a REST request, honouring primary and secondary limits.

        Secondary limits: wait as told and retry (up to ``max_limit_retries``; deletes
        also cut the pacer's rate). Primary limit: wait for the reset when ``max_wait``
        allows, else raise :class:`RateLimited`. ``just_before`` runs after the pacing
        wait, right before each send (the re-check of a delete); what it raises ends
        the request unsent.
        """
        limited = primary = 0
        sent_headers = {**self._headers(), **(headers or {})}
        while True:
            self._primary_gate()
            started = 0.0
            if pace:
                wait = self.pacer.reserve()
                while wait < 0:
                    self.sleep(0.05)
                    wait = self.pacer.reserve()
                if wait > 0:
                    self.sleep(wait)
                started = self.clock()
            try:
                if just_before is not None:
                    just_before()
                response = self.sender.send(
                    method, url, kind=kind, headers=sent_headers, params=params
                )
            except BaseException:
                if pace:
                    self.pacer.released()
                raise
            self._note_limits(response)
            limit = self._limit_kind(response)
            if limit is None:
                if pace:
                    self.pacer.accepted(started)
                return response
            if limit == "primary":
                if pace:
                    self.pacer.released()
                primary += 1
                if primary > 2:  # the reset passed by our clock, yet GitHub still refuses
                    raise RateLimited(
                        f"{self.display}: the GitHub API rate limit is used up",
                        hint="rerun after the reset shown by 'gh api rate_limit'",
                    )
                continue  # the gate now waits for the reset or raises RateLimited
            limited += 1
            retry_after = parse_retry_after(response.headers.get("retry-after"), now=self.clock())
            if pace:
                self.pacer.limited(retry_after)  # the next reserve() waits as told
            else:
                self.sleep(retry_after if retry_after is not None else 60.0)
            if limited > self.max_limit_retries:
                raise RegistryError(
                    f"{self.display}: GitHub kept answering with its secondary rate limit "
                    f"({describe_response(response, self.scrub)})",
                    hint="wait a few minutes, then rerun",
                )


_KIND_TEXT: dict[TokenKind, str] = {
    "none": "none",
    "classic": "a personal access token (classic)",
    "fine-grained": "a fine-grained personal access token",
    "github-token": "a GITHUB_TOKEN or GitHub App installation token",
    "oauth": "an OAuth or GitHub App user token",
    "unknown": "a token of unknown kind",
}
_OWNER_TEXT: dict[OwnerKind, str] = {
    "self": "{owner} is the token's own user account",
    "user": "{owner} is a user account",
    "org": "{owner} is an organisation",
}


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


class _StopRun(Exception):  # control flow inside delete(): never escapes it
    """Ends a delete before it is sent: ``error`` stops the run; ``None``: skipped."""

    def __init__(self, error: TagkeeperError | None) -> None:
        super().__init__("delete not sent")
        self.error = error
