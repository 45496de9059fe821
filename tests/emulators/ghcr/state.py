"""The emulator's state: owners, tokens, packages and their versions, and the options."""

from __future__ import annotations

import fnmatch
import random
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from tests.emulators import images

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from tests.emulators.ghcr.limits import _Bucket, _Fault, _Hook, _PrimaryWindow, _RandomFaults
    from tests.emulators.ghcr.server import _Route, _Server

_T = TypeVar("_T")

Permission = Literal["read", "write", "admin"]
TokenKind = Literal["classic", "fine_grained", "github_token"]
_RANK: dict[str | None, int] = {None: 0, "read": 1, "write": 2, "admin": 3}
API_VERSION = "2022-11-28"
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_DOCS = (
    "https://docs.github.com/free-pro-team@latest/rest/overview/"
    "rate-limits-for-the-rest-api#about-secondary-rate-limits"
)
LAST_VERSION_MESSAGE = (
    "You cannot delete the last version of a package. You must delete the package instead."
)
LAST_TAGGED_MESSAGE = (
    "You cannot delete the last tagged version of a package. You must delete the package instead."
)
DOWNLOADS_MESSAGE = (
    "Publicly visible package versions with more than 5000 downloads cannot be deleted. "
    "Contact GitHub support for further assistance."
)
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
    "again. If you reach out to GitHub Support for help, please include the request ID {rid}."
)
INTEGRATION_MESSAGE = "Resource not accessible by integration"
FINE_GRAINED_MESSAGE = "Resource not accessible by personal access token"
READ_SCOPE_MESSAGE = "You need at least read:packages scope to list packages."
DELETE_SCOPE_MESSAGE = "You need at least delete:packages scope to delete a package version."
ADMIN_MESSAGE = "Must have admin rights to Repository."
READ_SCOPES = frozenset({"read:packages", "write:packages"})
DEFAULT_SCOPES = frozenset({"read:packages", "write:packages", "delete:packages"})
_PACKAGE_DOCS = {
    "rest.versions.list": "/packages/packages#list-package-versions-for-a-package-owned-by-{who}",
    "rest.version.get": "/packages/packages#get-a-package-version-for-{who}",
    "rest.version.delete": "/packages/packages#delete-package-version-for-{who}",
    "rest.package": "/packages/packages#get-a-package-for-{who}",
}


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Account:
    login: str
    id: int
    type: Literal["User", "Organization"]
    name: str | None = None


@dataclass(slots=True)
class Token:
    """A credential the emulator knows (see :meth:`GhcrEmulator.add_token`)."""

    value: str
    login: str
    kind: TokenKind
    scopes: frozenset[str]
    packages: dict[str, Permission]
    default: Permission | None
    packages_permission: Literal["read", "write"] | None
    id: int

    def role(self, owner: str, name: str) -> Permission | None:
        """This token's role on package ``owner/name`` (None: no access)."""
        key = f"{owner}/{name}".lower()
        for pattern, perm in self.packages.items():
            if fnmatch.fnmatchcase(key, pattern.lower()):
                return perm
        if self.kind == "classic" and owner.lower() == self.login.lower():
            return "admin"
        return self.default

    def __repr__(self) -> str:
        return f"Token(login={self.login!r}, kind={self.kind!r}, value='***')"


@dataclass(frozen=True, slots=True)
class VersionState:
    """A copy of one package version, for assertions."""

    id: int
    digest: str
    media_type: str
    tags: tuple[str, ...]
    created: datetime
    updated: datetime
    downloads: int
    children: tuple[str, ...]
    subject: str | None
    artifact_type: str | None


@dataclass(slots=True)
class _Version:
    id: int
    digest: str
    media_type: str
    data: bytes
    tags: list[str]
    created: datetime
    updated: datetime
    downloads: int
    children: tuple[str, ...]
    subject: str | None
    artifact_type: str | None

    def state(self) -> VersionState:
        return VersionState(
            id=self.id,
            digest=self.digest,
            media_type=self.media_type,
            tags=tuple(self.tags),
            created=self.created,
            updated=self.updated,
            downloads=self.downloads,
            children=self.children,
            subject=self.subject,
            artifact_type=self.artifact_type,
        )


@dataclass(slots=True)
class _Package:
    id: int
    owner: str  # the owner's login as registered
    name: str
    visibility: Literal["public", "private"]
    repository: str | None
    created: datetime
    updated: datetime
    active: dict[int, _Version] = field(default_factory=dict)
    deleted: dict[int, _Version] = field(default_factory=dict)
    by_digest: dict[str, int] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    _order: list[_Version] | None = None

    def newest_first(self) -> list[_Version]:
        if self._order is None:
            self._order = sorted(
                self.active.values(), key=lambda v: (v.created, v.id), reverse=True
            )
        return self._order

    def changed(self) -> None:
        self._order = None


@dataclass(frozen=True, slots=True)
class LogEntry:
    at: float
    method: str
    path: str
    kind: str
    status: int
    login: str | None


@dataclass(slots=True)
class _Grant:
    """A registry bearer token: who it is and which repositories it may pull/push."""

    token: Token | None
    access: dict[str, set[str]]


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class EmulatorState:
    """The emulator's options and data: owners, tokens, packages, versions, manifests,
    blobs, counters; and the operations tests use to arrange and inspect them."""

    def __init__(
        self,
        *,
        api_prefix: str = "/api/v3",
        latency: float = 0.0,
        latency_jitter: float = 0.0,
        seed: int = 0,
        primary_limit: int = 5000,
        anonymous_limit: int = 60,
        primary_window: float = 3600.0,
        primary_status: int = 403,
        delete_limit: int | None = None,
        delete_window: float = 60.0,
        delete_limit_mode: Literal["sliding", "bucket"] = "sliding",
        delete_burst: int | None = None,
        points_limit: int | None = None,
        points_window: float = 60.0,
        max_concurrent: int = 100,
        secondary_status: int = 403,
        retry_after: int | None = None,
        block_while_limited: bool = True,
        last_version_rule: Literal["version", "tagged", "off"] = "version",
        download_limit: int = 5000,
        referrers_api: bool = False,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.api_prefix = api_prefix.rstrip("/")
        self.latency = latency
        self.latency_jitter = latency_jitter
        self.primary_limit = primary_limit
        self.anonymous_limit = anonymous_limit
        self.primary_window = primary_window
        self.primary_status = primary_status
        self.delete_limit = delete_limit
        self.delete_window = delete_window
        self.delete_limit_mode = delete_limit_mode
        self.delete_burst = delete_burst
        self.points_limit = points_limit
        self.points_window = points_window
        self.max_concurrent = max_concurrent
        self.secondary_status = secondary_status
        self.retry_after = retry_after
        self.block_while_limited = block_while_limited
        self.last_version_rule = last_version_rule
        self.download_limit = download_limit
        self.referrers_api = referrers_api
        self.clock = clock
        self.now = now

        self.lock = threading.RLock()
        self.extensions: dict[str, Any] = {}
        self._rng = random.Random(seed)  # noqa: S311 (reproducible faults, not crypto)
        self._ids = 1000
        self._accounts: dict[str, Account] = {}
        self._tokens: dict[str, Token] = {}
        self._grants: dict[str, _Grant] = {}
        self._packages: dict[tuple[str, str], _Package] = {}
        self._uploads: dict[str, bytearray] = {}
        self._routes: list[_Route] = []
        self._faults: list[_Fault] = []
        self._hooks: list[_Hook] = []
        self._random_faults: _RandomFaults | None = None
        self._primary: dict[str, _PrimaryWindow] = {}
        self._delete_times: dict[str, deque[float]] = {}
        self._delete_buckets: dict[str, _Bucket] = {}
        self._points: dict[tuple[str, str], deque[tuple[float, int]]] = {}
        self._blocked: dict[tuple[str, str], float] = {}
        self._in_flight = 0
        self._request_ids = 0

        self.counters: Counter[str] = Counter()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.limited: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.delete_times: list[float] = []
        self.log: list[LogEntry] = []
        self.max_in_flight = 0
        self.errors: list[str] = []  # handler exceptions (bugs): tests assert it stays empty

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self._install_routes()

    def _install_routes(self) -> None:
        """Install the built-in routes (the server's part: :class:`GhcrEmulator`)."""

    # ----------------------------------------------------------------- where it answers

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def add_user(self, login: str, *, id: int | None = None, name: str | None = None) -> int:
        with self.lock:
            account = Account(login, id if id is not None else self._next_id(), "User", name)
            self._accounts[login.lower()] = account
            return account.id

    def add_org(self, login: str, *, id: int | None = None) -> int:
        with self.lock:
            account = Account(login, id if id is not None else self._next_id(), "Organization")
            self._accounts[login.lower()] = account
            return account.id

    def add_token(
        self,
        value: str | None = None,
        *,
        login: str,
        kind: TokenKind = "classic",
        scopes: Iterable[str] | None = None,
        packages: Mapping[str, Permission] | None = None,
        default: Permission | None = None,
        packages_permission: Literal["read", "write"] | None = "write",
    ) -> str:
        """Register a token; see the module docstring. Returns its value."""
        prefix = {"classic": "ghp_", "fine_grained": "github_pat_", "github_token": "ghs_"}[kind]
        with self.lock:
            if login.lower() not in self._accounts and kind != "github_token":
                self.add_user(login)
            token = Token(
                value=value or prefix + secrets.token_hex(18),
                login=login,
                kind=kind,
                scopes=frozenset(DEFAULT_SCOPES if scopes is None else scopes)
                if kind == "classic"
                else frozenset(),
                packages=dict(packages or {}),
                default=default,
                packages_permission=packages_permission,
                id=self._next_id(),
            )
            self._tokens[token.value] = token
            return token.value

    def token(self, value: str) -> Token | None:
        with self.lock:
            return self._tokens.get(value)

    def _account(self, owner: str) -> Account:
        account = self._accounts.get(owner.lower())
        if account is None:
            self.add_user(owner)
            account = self._accounts[owner.lower()]
        return account

    def create_package(
        self,
        owner: str,
        name: str,
        *,
        visibility: Literal["public", "private"] = "private",
        repository: str | None = None,
    ) -> int:
        with self.lock:
            key = (owner.lower(), name.lower())
            existing = self._packages.get(key)
            if existing is not None:
                existing.visibility = visibility
                return existing.id
            account = self._account(owner)
            when = self.now()
            package = _Package(
                id=self._next_id(),
                owner=account.login,
                name=name,
                visibility=visibility,
                repository=repository,
                created=when,
                updated=when,
            )
            self._packages[key] = package
            return package.id

    def delete_package(self, owner: str, name: str) -> None:
        """Remove a whole package (as its settings page's "Delete this package" does)."""
        with self.lock:
            del self._packages[(owner.lower(), name.lower())]

    def package_exists(self, owner: str, name: str) -> bool:
        with self.lock:
            return (owner.lower(), name.lower()) in self._packages

    def _package(self, owner: str, name: str) -> _Package:
        package = self._packages.get((owner.lower(), name.lower()))
        if package is None:
            raise KeyError(f"no package {owner}/{name}")
        return package

    def set_visibility(
        self, owner: str, name: str, visibility: Literal["public", "private"]
    ) -> None:
        with self.lock:
            self._package(owner, name).visibility = visibility

    def push(
        self,
        owner: str,
        name: str,
        manifest: bytes,
        media_type: str,
        *,
        tags: Iterable[str] = (),
        created: datetime | None = None,
        downloads: int = 0,
    ) -> int:
        """Store a manifest as a version (see the module docstring). Returns the version id."""
        children, subject, artifact_type = images.describe(manifest)
        with self.lock:
            if not self.package_exists(owner, name):
                self.create_package(owner, name)
            package = self._package(owner, name)
            return self._store(
                package,
                manifest=manifest,
                media_type=media_type,
                tags=list(tags),
                created=created,
                downloads=downloads,
                children=children,
                subject=subject,
                artifact_type=artifact_type,
            ).id

    def _store(
        self,
        package: _Package,
        *,
        manifest: bytes,
        media_type: str,
        tags: list[str],
        created: datetime | None,
        downloads: int,
        children: tuple[str, ...],
        subject: str | None,
        artifact_type: str | None,
    ) -> _Version:
        digest = images.sha256(manifest)
        when = self.now()
        vid = package.by_digest.get(digest)
        if vid is None:
            version = _Version(
                id=self._next_id(),
                digest=digest,
                media_type=media_type,
                data=manifest,
                tags=[],
                created=created or when,
                updated=created or when,
                downloads=downloads,
                children=children,
                subject=subject,
                artifact_type=artifact_type,
            )
            package.active[version.id] = version
            package.by_digest[digest] = version.id
        else:
            version = package.active[vid]
            if downloads:
                version.downloads = downloads
        for tag in tags:
            self._move_tag(package, tag, version, when)
        package.updated = when
        package.changed()
        return version

    def _move_tag(self, package: _Package, tag: str, version: _Version, when: datetime) -> None:
        holder_id = package.tags.get(tag)
        if holder_id == version.id:
            return
        if holder_id is not None:
            holder = package.active[holder_id]
            holder.tags.remove(tag)
            holder.updated = when
        version.tags.append(tag)
        version.updated = when
        package.tags[tag] = version.id

    def push_built(
        self,
        owner: str,
        name: str,
        built: images.Built,
        *,
        tags: Iterable[str] = (),
        created: datetime | None = None,
    ) -> int:
        """Push ``built``'s blobs, its children (untagged), then ``built`` itself with ``tags``."""
        with self.lock:
            if not self.package_exists(owner, name):
                self.create_package(owner, name)
            package = self._package(owner, name)
            for blob in built.all_blobs():
                package.blobs[blob.digest] = blob.data
            version_id = 0
            for item in built.walk():
                version_id = self.push(
                    owner,
                    name,
                    item.data,
                    item.media_type,
                    tags=tags if item is built else (),
                    created=created,
                )
            return version_id

    def tag(self, owner: str, name: str, tag: str, digest: str) -> None:
        """Point ``tag`` at ``digest`` (moving it from another version when needed)."""
        with self.lock:
            package = self._package(owner, name)
            vid = package.by_digest.get(digest)
            if vid is None:
                raise KeyError(f"{owner}/{name} has no version {digest}")
            self._move_tag(package, tag, package.active[vid], self.now())
            package.changed()

    def untag(self, owner: str, name: str, tag: str) -> None:
        with self.lock:
            package = self._package(owner, name)
            vid = package.tags.pop(tag, None)
            if vid is not None:
                version = package.active[vid]
                version.tags.remove(tag)
                version.updated = self.now()

    def delete_version(self, owner: str, name: str, digest: str) -> bool:
        """Delete a version without any rule; False when it does not exist."""
        with self.lock:
            package = self._package(owner, name)
            vid = package.by_digest.get(digest)
            if vid is None:
                return False
            self._remove(package, package.active[vid])
            return True

    def _remove(self, package: _Package, version: _Version) -> None:
        for tag in version.tags:
            package.tags.pop(tag, None)
        del package.active[version.id]
        del package.by_digest[version.digest]
        package.deleted[version.id] = version
        package.updated = self.now()
        package.changed()

    def set_downloads(self, owner: str, name: str, digest: str, count: int) -> None:
        with self.lock:
            package = self._package(owner, name)
            package.active[package.by_digest[digest]].downloads = count

    def versions(
        self, owner: str, name: str, *, state: Literal["active", "deleted"] = "active"
    ) -> list[VersionState]:
        with self.lock:
            package = self._package(owner, name)
            if state == "active":
                return [v.state() for v in package.newest_first()]
            return [
                v.state()
                for v in sorted(
                    package.deleted.values(), key=lambda v: (v.created, v.id), reverse=True
                )
            ]

    def version(self, owner: str, name: str, digest: str) -> VersionState | None:
        with self.lock:
            package = self._package(owner, name)
            vid = package.by_digest.get(digest)
            return None if vid is None else package.active[vid].state()

    def manifest(self, owner: str, name: str, digest: str) -> bytes | None:
        with self.lock:
            package = self._package(owner, name)
            vid = package.by_digest.get(digest)
            return None if vid is None else package.active[vid].data

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "counters": dict(self.counters),
                "statuses": {f"{k} {s}": n for (k, s), n in self.statuses.items()},
                "limited": dict(self.limited),
                "faults": dict(self.faults),
                "delete_times": list(self.delete_times),
                "max_in_flight": self.max_in_flight,
                "requests": len(self.log),
            }

    def reset_counters(self) -> None:
        with self.lock:
            self.counters.clear()
            self.statuses.clear()
            self.limited.clear()
            self.faults.clear()
            self.delete_times.clear()
            self.log.clear()
            self.max_in_flight = 0

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + self.api_prefix

    @property
    def registry_url(self) -> str:
        return self.base_url

    @property
    def registry_host(self) -> str:
        return f"{self.host}:{self.port}"
