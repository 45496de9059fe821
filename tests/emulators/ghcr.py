"""A faithful local emulator of GitHub Container Registry: Packages REST API + ghcr.io ``/v2``.

One ``ThreadingHTTPServer`` on ``127.0.0.1:<random port>`` serves both surfaces:

* REST (GitHub's Packages API, as documented for API version 2022-11-28) under
  ``emu.api_url`` = ``http://127.0.0.1:PORT/api/v3`` (the GitHub Enterprise layout; pass
  ``api_prefix=""`` to serve it at the root);
* the registry (ghcr.io's OCI distribution surface and token service) at
  ``emu.registry_url`` = ``http://127.0.0.1:PORT`` (``/token``, ``/v2/...``).

Quick start::

    from tests.emulators.ghcr import GhcrEmulator
    from tests.emulators import images

    with GhcrEmulator(latency=0.0) as emu:
        emu.add_user("octo")                       # owner kinds: add_user / add_org
        tok = emu.add_token(login="octo", scopes={"read:packages", "delete:packages"})
        built = images.index([images.image("linux/amd64"), images.image("linux/arm64")])
        emu.push_built("octo", "app", built, tags=["v1.0.0"])   # children become versions too
        # httpx.get(f"{emu.api_url}/users/octo/packages/container/app/versions",
        #           headers={"Authorization": f"Bearer {tok}"})

Constructor ``GhcrEmulator(**options)`` (all keyword-only, all optional; every one is also a
public attribute that a test may change while the server runs)
    api_prefix="/api/v3"        path prefix of the REST surface.
    latency=0.0                 seconds slept in the handler thread before every request.
    latency_jitter=0.0          extra uniform random seconds in [0, jitter) (seeded RNG).
    seed=0                      seed of the RNG used for jitter and probabilistic faults.
    primary_limit=5000          requests per window per token (``None``: unlimited).
                                Unauthenticated callers get ``anonymous_limit`` (60).
    primary_window=3600.0       seconds of the primary window (``x-ratelimit-reset``).
    primary_status=403          status of a primary-limit answer (403 as GitHub; 429 allowed).
    delete_limit=None           hidden secondary budget of REST DELETEs per token per
                                ``delete_window`` seconds (e.g. 60 or 180); ``None``: off.
    delete_window=60.0
    delete_limit_mode="sliding" "sliding" window or "bucket" (token bucket refilled evenly,
                                capacity ``delete_burst`` or the whole budget when ``None``).
    delete_burst=None
    points_limit=None           secondary points budget per token per endpoint (route kind)
                                per ``points_window``; GET/HEAD cost 1, POST/PUT/PATCH/DELETE 5.
                                GitHub documents 900; ``None``: off.
    points_window=60.0
    max_concurrent=100          in-flight REST requests above this get a secondary-limit answer.
    secondary_status=403        status of secondary-limit answers (403 as GitHub; 429 allowed).
    retry_after=None            ``retry-after`` seconds sent on secondary limits; ``None``:
                                computed (seconds until the budget frees a slot, at least 1).
    block_while_limited=True    after a secondary-limit answer, further requests of the same
                                budget are refused until ``retry-after`` has elapsed.
    last_version_rule="version" GitHub refuses to delete the last version of a package
                                ("version"); "tagged" refuses the last *tagged* version instead;
                                "off" disables the rule.
    download_limit=5000         public versions with more downloads cannot be deleted.
    referrers_api=False         serve ``GET /v2/<name>/referrers/<digest>`` (ghcr.io does not).
    anonymous_limit=60          primary limit of unauthenticated callers.
    clock=time.monotonic        time source of every limit window and of ``delete_times``
                                (tests pass a fake clock; benchmarks may scale windows down,
                                e.g. ``delete_limit=6, delete_window=6.0`` is "60/min" x10).
    now=<utc now>               ``Callable[[], datetime]`` for default ``created_at`` values.

Lifecycle: ``start()`` / ``stop()`` or ``with GhcrEmulator(...) as emu:``.
Attributes: ``host``, ``port``, ``base_url`` (``http://127.0.0.1:PORT``), ``api_url``,
``registry_url``, ``registry_host`` (``127.0.0.1:PORT``, for image references), ``lock``
(the ``RLock`` guarding all state; extensions take it too), ``extensions`` (a dict where
other modules keep their own state).

Owners and tokens
    add_user(login, *, id=None, name=None) -> int      a "User" account (returns its id).
    add_org(login, *, id=None) -> int                   an "Organization".
    add_token(value=None, *, login, kind="classic", scopes=..., packages=None,
              default=None) -> str
        kind "classic": a classic PAT (``ghp_...``); ``scopes`` (default
            {"read:packages", "write:packages", "delete:packages"}) are echoed in
            ``X-OAuth-Scopes``. Its role on a package is ``packages[...]`` when listed,
            "admin" on the login's own packages, else ``default``.
        kind "fine_grained" (``github_pat_...``) and "github_token" (``ghs_...``, a workflow
            ``GITHUB_TOKEN``): no scopes header; the role on each package comes from
            ``packages`` (keys "owner/package" or fnmatch patterns such as "acme/*"; values
            "read" | "write" | "admin") or ``default``. ``GET /user`` answers 403
            "Resource not accessible by integration" for a github_token.
        ``packages_permission`` ("read" | "write" | None, default "write") is the
            ``packages:`` permission a github_token / fine-grained token was given; deleting
            needs "write" plus the "admin" role on the package.
        Returns the token value (generated when ``value`` is None).
    token(value) -> Token | None        the registered token (its repr hides the value).

Packages and versions (Python API, no HTTP, no rate limits)
    create_package(owner, name, *, visibility="private", repository=None) -> int
    set_visibility(owner, name, "public" | "private")
    push(owner, name, manifest: bytes, media_type, *, tags=(), created=None,
         downloads=0) -> int
        Stores the manifest under sha256(manifest); creates the package when missing;
        a digest already present gains the tags; a tag held by another version moves
        (the old version keeps existing, untagged). Returns the version id.
    push_built(owner, name, built: images.Built, *, tags=(), created=None) -> int
        Pushes blobs, then every child manifest (untagged), then ``built`` with ``tags``.
    tag(owner, name, tag, digest)        point a tag at an existing digest (a "tag move").
    untag(owner, name, tag)
    delete_version(owner, name, digest)  delete without any rule (as a UI user would).
    set_downloads(owner, name, digest, count)
    versions(owner, name, *, state="active") -> list[VersionState]   newest first (copies).
    version(owner, name, digest) -> VersionState | None
    manifest(owner, name, digest) -> bytes | None
    package_exists(owner, name) -> bool

Faults
    fail_next(n, status=503, *, surface="any", kinds=None, methods=None, after=False)
        The next ``n`` matching requests are answered with ``status`` and a GitHub-style
        body (REST) or an OCI error body (registry). ``after=True``: the request is applied
        first (e.g. the version is deleted) and only the answer is replaced.
    fail_randomly(probability, statuses=(502, 503), *, surface="any", kinds=None,
                  methods=None)       seeded by ``seed``; ``fail_randomly(0.0)`` turns it off.
    drop_next(n, *, surface="any", kinds=None, methods=None, after=False)
        Close the connection without an answer.
    hang_next(n, seconds, *, surface="any", kinds=None, methods=None)
        Sleep ``seconds`` before answering (client read timeouts).
    exhaust_primary(token=None)   the token (or every token) has 0 requests left.
    clear_faults()                faults and interleavings.

Interleavings (another job acting between two requests of the client)
    before_next(n, action, *, surface="any", kinds=None, methods=None, query=None)
        ``action()`` runs before each of the next ``n`` matching requests is handled (in
        the handler thread, without the lock held: it may call any method above, e.g.
        ``delete_version`` or ``push_built``). ``query`` matches query parameters too,
        e.g. ``{"page": "2"}``. Hooks are consumed in the order they were added.

Counters (read under ``emu.lock`` or through ``snapshot()``)
    counters: Counter[str]    requests received, by kind (see KINDS below), faults included.
    statuses: Counter[tuple[str, int]]   (kind, status) of every answer sent.
    limited: Counter[str]     limit answers sent: "primary", "secondary.delete",
                              "secondary.points", "secondary.concurrency".
    faults: Counter[str]      "status", "drop", "hang".
    delete_times: list[float] ``clock()`` of each successful REST version delete.
    downloads: via VersionState.downloads.
    log: list[LogEntry]       (at, method, path, kind, status, token_login) of every request.
    max_in_flight: int        highest number of REST requests in flight at once.
    errors: list[str]         exceptions raised inside handlers (emulator bugs; the pytest
                              fixture fails the test when this is not empty).
    snapshot() -> dict        copies of the above (JSON-friendly).
    reset_counters()

KINDS
    REST: "rest.user" (GET /user), "rest.users" (GET /users/{u}), "rest.orgs" (GET /orgs/{o}),
    "rest.package" (GET .../packages/container/{p}), "rest.versions.list",
    "rest.version.get", "rest.version.delete", "rest.unknown".
    Registry: "registry.token", "registry.base" (GET /v2/), "registry.manifest.get",
    "registry.manifest.head", "registry.manifest.put", "registry.manifest.delete",
    "registry.tags.list", "registry.referrers", "registry.blob.get", "registry.blob.head",
    "registry.blob.upload", "registry.unknown".

Extending (e.g. a GitHub Deployments fake living in another module)
    add_route(method, pattern, handler, *, kind, surface="rest")
        ``pattern`` is a regex matched with ``fullmatch`` against the request path
        (for surface "rest", the path *after* ``api_prefix``, for example
        r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/deployments").
        ``handler(req: Request) -> Response``. REST routes get auth parsing
        (``req.token`` is the Token or None; ``req.require_token()`` raises the 401),
        rate-limit headers and limits, latency, faults and counters like the built-in routes.
        Raise ``HttpError`` (or use ``rest_error``) for error answers.
    Request: method, path (raw, prefix stripped for REST), query (dict[str, list[str]]),
        headers, body (bytes), match (re.Match), token, emulator; ``json()``, ``param(name)``.
    Response(status, body=b"", headers={}); ``Response.json(obj, status=200, headers=None)``.
    emu.paginate(req, items, default_per_page=30, max_per_page=100) -> (page_items, headers)
        GitHub's page-number pagination with the same ``Link`` header as the built-in routes.
    rest_error(status, message, documentation_url=..., headers=None) -> HttpError
    registry_error(status, code, message, headers=None) -> HttpError
    Handlers run in server threads: take ``emu.lock`` around shared state.

Behaviour (as GitHub documents or as clients observe it)
    * Versions list newest first; ``per_page`` default 30, max 100; ``page`` from 1; a
      ``Link`` header with ``rel="prev"``, ``"next"``, ``"last"``, ``"first"`` (GitHub's
      order), absolute URLs keeping the other query parameters. ``state=deleted`` lists
      deleted versions.
    * Errors are ``{"message", "documentation_url", "status"}``: 401 "Bad credentials"
      (unknown token) or "Requires authentication" (none); 404 "Package not found." (unknown
      package, or a private one the token has no role on) / "Not Found" (unknown owner,
      owner of the other kind, unknown version id, unknown route); 403 for a missing
      permission: classic PAT "You need at least read:packages scope to list packages.",
      "You need at least delete:packages scope to delete a package version." (with
      ``X-Accepted-OAuth-Scopes``), "Must have admin rights to Repository." (no admin role);
      github_token "Resource not accessible by integration" / fine-grained "Resource not
      accessible by personal access token" (with ``X-Accepted-GitHub-Permissions:
      packages=write`` when the token's ``packages`` permission is what is missing);
      400 "You cannot delete the last version of a package. You must delete the package
      instead."; 400 "Publicly visible package versions with more than 5000 downloads cannot
      be deleted. Contact GitHub support for further assistance.".
    * A public package is readable by every token; deleting still needs the admin role.
    * A DELETE answers 204 with no body; a second DELETE of the same id answers 404.
    * Conditional requests: every REST ``GET`` answered 200 carries an ``ETag`` (weak, a
      hash of the body); a request whose ``If-None-Match`` names it is answered ``304 Not
      Modified`` with no body, and does not count against the primary rate limit.
    * Every REST answer carries ``x-ratelimit-limit/-remaining/-used/-reset/-resource``.
      Primary exhaustion: 403 "API rate limit exceeded for user ID N." with remaining 0.
      Secondary: 403 "You have exceeded a secondary rate limit..." with ``retry-after``;
      with ``block_while_limited`` the same budget keeps refusing until then (requests sent
      while blocked are refused again, which is what punishes a client that ignores it).
      Limit answers still consume the primary quota, as on GitHub.
    * Registry: ``GET /v2/`` unauthenticated -> 401 with
      ``WWW-Authenticate: Bearer realm="<registry_url>/token",service="ghcr.io",scope=...``;
      ``GET /token?scope=repository:OWNER/PKG:pull[,push]&service=ghcr.io`` with Basic auth
      (any user name, a token as password) or none (public pulls) -> ``{"token": ...}``;
      manifests by tag or digest with ``Content-Type``, ``Docker-Content-Digest``, Accept
      negotiation (404 MANIFEST_UNKNOWN when the stored type is not accepted); tags/list with
      ``n``/``last``; blob uploads (POST/PATCH/PUT) and manifest PUT; DELETE of a manifest ->
      405 UNSUPPORTED. Every manifest GET (not HEAD) counts as a download of that version
      (the 5,000 rule only applies to public packages). Anonymous ``/token`` requests for a
      private package answer 403 DENIED; a grant without the action answers 403 DENIED on
      use; a missing/unknown bearer answers 401 with the challenge for that repository.
    * REST DELETEs, GETs etc. are applied atomically under ``lock``; versions and manifests
      always agree (deleting a version removes its manifest and tags; pushing a tag that
      exists elsewhere moves it; the old version stays, untagged). Deleting never cascades
      to an index's children (as on ghcr.io).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import math
import random
import re
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from tests.emulators import images

_T = TypeVar("_T")
Permission = Literal["read", "write", "admin"]
TokenKind = Literal["classic", "fine_grained", "github_token"]
Surface = Literal["rest", "registry"]
_RANK: dict[str | None, int] = {None: 0, "read": 1, "write": 2, "admin": 3}

API_VERSION = "2022-11-28"
DOCS = "https://docs.github.com/rest"
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


# --------------------------------------------------------------------------- model


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


# --------------------------------------------------------------------------- HTTP plumbing


@dataclass(slots=True)
class Response:
    """An answer: status, body bytes and headers (Content-Length is added when sent)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering

    @classmethod
    def json(
        cls, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        body = json.dumps(obj).encode()
        merged = {"Content-Type": "application/json; charset=utf-8"}
        merged.update(headers or {})
        return cls(status, body, merged)


class HttpError(Exception):
    """Raised by a handler to answer with ``response``."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


def rest_error(
    status: int,
    message: str,
    *,
    documentation_url: str = DOCS,
    headers: Mapping[str, str] | None = None,
) -> HttpError:
    """A GitHub REST error answer: ``{"message", "documentation_url", "status"}``."""
    body = {"message": message, "documentation_url": documentation_url, "status": str(status)}
    return HttpError(Response.json(body, status, headers))


def registry_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> HttpError:
    """An OCI distribution error answer: ``{"errors": [{"code", "message"}]}``."""
    body = {"errors": [{"code": code, "message": message}]}
    return HttpError(Response.json(body, status, headers))


@dataclass(slots=True)
class Request:
    """What a route handler receives."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    match: re.Match[str]
    emulator: GhcrEmulator
    surface: Surface
    kind: str
    token: Token | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def require_token(self) -> Token:
        if self.token is None:
            raise rest_error(401, "Requires authentication")
        return self.token


Handler = Callable[[Request], Response]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    kind: str
    surface: Surface


@dataclass(slots=True)
class _Fault:
    action: Literal["status", "drop", "hang"]
    remaining: int
    status: int = 503
    seconds: float = 0.0
    surface: str = "any"
    kinds: frozenset[str] | None = None
    methods: frozenset[str] | None = None
    after: bool = False

    def matches(self, surface: str, kind: str, method: str) -> bool:
        return (
            self.remaining > 0
            and self.surface in ("any", surface)
            and (self.kinds is None or kind in self.kinds)
            and (self.methods is None or method in self.methods)
        )


@dataclass(slots=True)
class _Hook:
    remaining: int
    action: Callable[[], object]
    surface: str = "any"
    kinds: frozenset[str] | None = None
    methods: frozenset[str] | None = None
    query: Mapping[str, str] | None = None

    def matches(
        self, surface: str, kind: str, method: str, query: Mapping[str, list[str]]
    ) -> bool:
        return (
            self.remaining > 0
            and self.surface in ("any", surface)
            and (self.kinds is None or kind in self.kinds)
            and (self.methods is None or method in self.methods)
            and all(value in query.get(name, ()) for name, value in (self.query or {}).items())
        )


@dataclass(slots=True)
class _RandomFaults:
    probability: float
    statuses: tuple[int, ...]
    surface: str
    kinds: frozenset[str] | None
    methods: frozenset[str] | None


@dataclass(slots=True)
class _Grant:
    """A registry bearer token: who it is and which repositories it may pull/push."""

    token: Token | None
    access: dict[str, set[str]]


@dataclass(slots=True)
class _PrimaryWindow:
    start: float
    used: int = 0
    exhausted: bool = False


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: GhcrEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server_version = "ghcr-emulator"
    sys_version = ""

    def _serve(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        server.emulator._serve(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        return

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


# --------------------------------------------------------------------------- the emulator


class GhcrEmulator:
    """See the module docstring for the full API."""

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

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> GhcrEmulator:
        if self._server is not None:
            return self
        self._server = _Server((self.host, 0), self)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"ghcr-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> GhcrEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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

    # ----------------------------------------------------------------- owners and tokens

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

    # ----------------------------------------------------------------- packages (Python API)

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

    # ----------------------------------------------------------------- faults

    def fail_next(
        self,
        n: int,
        status: int = 503,
        *,
        surface: str = "any",
        kinds: Iterable[str] | None = None,
        methods: Iterable[str] | None = None,
        after: bool = False,
    ) -> None:
        with self.lock:
            self._faults.append(
                _Fault(
                    "status",
                    n,
                    status=status,
                    surface=surface,
                    kinds=_fs(kinds),
                    methods=_fs(methods),
                    after=after,
                )
            )

    def drop_next(
        self,
        n: int,
        *,
        surface: str = "any",
        kinds: Iterable[str] | None = None,
        methods: Iterable[str] | None = None,
        after: bool = False,
    ) -> None:
        with self.lock:
            self._faults.append(
                _Fault(
                    "drop", n, surface=surface, kinds=_fs(kinds), methods=_fs(methods), after=after
                )
            )

    def hang_next(
        self,
        n: int,
        seconds: float,
        *,
        surface: str = "any",
        kinds: Iterable[str] | None = None,
        methods: Iterable[str] | None = None,
    ) -> None:
        with self.lock:
            self._faults.append(
                _Fault(
                    "hang",
                    n,
                    seconds=seconds,
                    surface=surface,
                    kinds=_fs(kinds),
                    methods=_fs(methods),
                )
            )

    def fail_randomly(
        self,
        probability: float,
        statuses: Iterable[int] = (502, 503),
        *,
        surface: str = "any",
        kinds: Iterable[str] | None = None,
        methods: Iterable[str] | None = None,
    ) -> None:
        with self.lock:
            self._random_faults = (
                _RandomFaults(probability, tuple(statuses), surface, _fs(kinds), _fs(methods))
                if probability > 0
                else None
            )

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()
            self._hooks.clear()
            self._random_faults = None

    def before_next(
        self,
        n: int,
        action: Callable[[], object],
        *,
        surface: str = "any",
        kinds: Iterable[str] | None = None,
        methods: Iterable[str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> None:
        """Run ``action()`` before each of the next ``n`` matching requests (see the docs)."""
        with self.lock:
            self._hooks.append(
                _Hook(n, action, surface, _fs(kinds), _fs(methods), dict(query or {}))
            )

    def _take_hook(
        self, surface: str, kind: str, method: str, query: Mapping[str, list[str]]
    ) -> Callable[[], object] | None:
        with self.lock:
            for hook in self._hooks:
                if hook.matches(surface, kind, method, query):
                    hook.remaining -= 1
                    if hook.remaining == 0:
                        self._hooks.remove(hook)
                    return hook.action
            return None

    def exhaust_primary(self, token: str | None = None) -> None:
        """The token (or every token, and anonymous callers) has 0 requests left."""
        with self.lock:
            idents = [token] if token is not None else [*self._tokens, "anonymous"]
            for ident in idents:
                window = self._primary_window(ident)
                window.exhausted = True

    def _take_fault(self, surface: str, kind: str, method: str) -> _Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.matches(surface, kind, method):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return _Fault(fault.action, 1, fault.status, fault.seconds, after=fault.after)
            rnd = self._random_faults
            if (
                rnd is not None
                and rnd.surface in ("any", surface)
                and (rnd.kinds is None or kind in rnd.kinds)
                and (rnd.methods is None or method in rnd.methods)
                and self._rng.random() < rnd.probability
            ):
                return _Fault("status", 1, self._rng.choice(rnd.statuses))
            return None

    # ----------------------------------------------------------------- counters

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

    # ----------------------------------------------------------------- routing

    def add_route(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        *,
        kind: str,
        surface: Surface = "rest",
    ) -> None:
        """Serve ``method pattern`` (regex, fullmatch) with ``handler``; see the module docs."""
        with self.lock:
            self._routes.append(_Route(method.upper(), re.compile(pattern), handler, kind, surface))

    def _match(
        self, method: str, path: str
    ) -> tuple[_Route | None, str, re.Match[str] | None, Surface]:
        rest_path: str | None = None
        if not self.api_prefix:
            rest_path = path
        elif path == self.api_prefix or path.startswith(self.api_prefix + "/"):
            rest_path = path[len(self.api_prefix) :] or "/"
        for route in self._routes:
            if route.method != method:
                continue
            candidate = rest_path if route.surface == "rest" else path
            if candidate is None:
                continue
            match = route.pattern.fullmatch(candidate)
            if match is not None:
                return route, candidate, match, route.surface
        if path == "/token" or path.startswith("/v2/") or path == "/v2" or rest_path is None:
            return None, path, None, "registry"
        return None, rest_path, None, "rest"

    def _serve(self, handler: _RequestHandler) -> None:
        method = handler.command
        split = urlsplit(handler.path)
        query: dict[str, list[str]] = {}
        for key, value in parse_qsl(split.query, keep_blank_values=True):
            query.setdefault(key, []).append(value)
        try:
            body = handler.read_body()
        except (OSError, ValueError):
            handler.close_connection = True
            return
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.lock:
            route, path, match, surface = self._match(method, split.path)
            kind = route.kind if route is not None else f"{surface}.unknown"
            self.counters[kind] += 1
            if surface == "rest":
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
            jitter = self._rng.random() * self.latency_jitter if self.latency_jitter else 0.0
        login: str | None = None
        response = Response(500)
        try:
            delay = self.latency + jitter
            if delay > 0:
                time.sleep(delay)
            hook = self._take_hook(surface, kind, method, query)
            if hook is not None:
                hook()  # another job acts before this request is handled
            fault = self._take_fault(surface, kind, method)
            if fault is not None and fault.action == "hang":
                with self.lock:
                    self.faults["hang"] += 1
                time.sleep(fault.seconds)
                fault = None
            if fault is not None and not fault.after:
                response = self._fault_response(fault, surface)
            else:
                request = Request(
                    method,
                    path,
                    query,
                    headers,
                    body,
                    match if match is not None else re.fullmatch(".*", path) or _never(),
                    self,
                    surface,
                    kind,
                )
                try:
                    if route is None:
                        response = self._not_found(request)
                    elif surface == "rest":
                        response = self._dispatch_rest(route, request)
                    else:
                        response = self._call(route.handler, request)
                except Exception as exc:  # a bug in a handler: answer 500 and record it
                    with self.lock:
                        self.errors.append(f"{method} {split.path}: {exc!r}")
                    response = Response.json({"message": "emulator error"}, 500)
                login = request.token.login if request.token is not None else None
                if fault is not None:
                    response = self._fault_response(fault, surface)
        finally:
            if surface == "rest":
                with self.lock:
                    self._in_flight -= 1
        status = 0 if response.drop else response.status
        with self.lock:
            self.statuses[(kind, status)] += 1
            self.log.append(LogEntry(self.clock(), method, split.path, kind, status, login))
        self._send(handler, method, response)

    def _send(self, handler: _RequestHandler, method: str, response: Response) -> None:
        if response.drop:
            handler.close_connection = True
            return
        try:
            handler.send_response(response.status)
            length_set = False
            for name, value in response.headers.items():
                if name.lower() == "content-length":
                    length_set = True
                handler.send_header(name, value)
            if not length_set:
                handler.send_header("Content-Length", str(len(response.body)))
            handler.end_headers()
            if method != "HEAD" and response.body:
                handler.wfile.write(response.body)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _fault_response(self, fault: _Fault, surface: str) -> Response:
        with self.lock:
            if fault.action == "drop":
                self.faults["drop"] += 1
                return Response(0, drop=True)
            self.faults["status"] += 1
        if surface == "registry":
            return registry_error(fault.status, "UNAVAILABLE", "service unavailable").response
        message = (
            "No server is currently available to service your request. Sorry about that. "
            "Please try resubmitting your request and contact us if the problem persists."
            if fault.status == 503
            else "Server Error"
        )
        return Response.json({"message": message}, fault.status)

    @staticmethod
    def _call(handler: Handler, request: Request) -> Response:
        try:
            return handler(request)
        except HttpError as exc:
            return exc.response

    def _not_found(self, request: Request) -> Response:
        if request.surface == "registry":
            return registry_error(404, "NOT_FOUND", "not found").response
        return self._finish_rest(request, rest_error(404, "Not Found").response, None)

    # ----------------------------------------------------------------- REST pipeline

    def _request_id(self) -> str:
        with self.lock:
            self._request_ids += 1
            n = self._request_ids
        return f"E{self.port:04X}:{n:06X}:{n * 7919 % 0xFFFFFF:06X}"

    def _primary_window(self, ident: str) -> _PrimaryWindow:
        now = self.clock()
        window = self._primary.get(ident)
        if window is None or now >= window.start + self.primary_window:
            window = _PrimaryWindow(start=now)
            self._primary[ident] = window
        return window

    def _rate_headers(self, ident: str, limit: int) -> dict[str, str]:
        window = self._primary_window(ident)
        used = limit if window.exhausted else min(window.used, limit)
        reset_in = window.start + self.primary_window - self.clock()
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(max(0, limit - used)),
            "x-ratelimit-used": str(used),
            "x-ratelimit-reset": str(int(time.time() + max(0.0, reset_in)) + 1),
            "x-ratelimit-resource": "core",
        }

    def _authenticate(self, request: Request) -> Response | None:
        header = request.headers.get("authorization")
        if header is None:
            return None
        scheme, _, credential = header.strip().partition(" ")
        value: str | None = None
        if scheme.lower() in ("bearer", "token"):
            value = credential.strip()
        elif scheme.lower() == "basic":
            try:
                value = base64.b64decode(credential).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                value = None
        token = self._tokens.get(value) if value else None
        if token is None:
            return rest_error(401, "Bad credentials").response
        request.token = token
        return None

    def _dispatch_rest(self, route: _Route, request: Request) -> Response:
        with self.lock:
            failure = self._authenticate(request)
            token = request.token
            ident = token.value if token is not None else "anonymous"
            limit = self.primary_limit if token is not None else self.anonymous_limit
            if failure is not None:
                return self._finish_rest(
                    request, failure, None, ident="anonymous", limit=self.anonymous_limit
                )
            window = self._primary_window(ident)
            if window.exhausted or window.used >= limit:
                window.exhausted = True
                self.limited["primary"] += 1
                return self._finish_rest(
                    request, self._primary_answer(token), token, ident=ident, limit=limit
                )
            window.used += 1
            limited = self._secondary(request, ident)
            if limited is not None:
                return self._finish_rest(request, limited, token, ident=ident, limit=limit)
        response = self._call(route.handler, request)
        with self.lock:
            response = self._conditional(request, response, ident)
            return self._finish_rest(request, response, token, ident=ident, limit=limit)

    def _conditional(self, request: Request, response: Response, ident: str) -> Response:
        """ETag on every 200 GET; 304 (not counted against the primary limit) when the
        request's If-None-Match names it. Called under the lock."""
        if request.method != "GET" or response.status != 200:
            return response
        etag = 'W/"' + hashlib.sha256(response.body).hexdigest()[:32] + '"'
        response.headers["ETag"] = etag
        wanted = [v.strip() for v in request.headers.get("if-none-match", "").split(",")]
        if etag not in wanted and "*" not in wanted:
            return response
        window = self._primary_window(ident)
        window.used = max(0, window.used - 1)
        return Response(304, b"", {"ETag": etag})

    def _primary_answer(self, token: Token | None) -> Response:
        rid = self._request_id()
        if token is None:
            who = f"{self.host}. (But here's the good news: Authenticated requests get a higher "
            who += "rate limit. Check out the documentation for more details.)"
            message = f"API rate limit exceeded for {who}"
        elif token.kind == "github_token":
            message = f"API rate limit exceeded for installation ID {token.id}."
        else:
            account = self._accounts.get(token.login.lower())
            message = f"API rate limit exceeded for user ID {account.id if account else token.id}."
        message += (
            f" If you reach out to GitHub Support for help, please include the request ID {rid}."
        )
        response = rest_error(self.primary_status, message, documentation_url=RATE_DOCS).response
        response.headers["x-github-request-id"] = rid
        return response

    def _secondary(self, request: Request, ident: str) -> Response | None:
        now = self.clock()
        if self._in_flight > self.max_concurrent:
            return self._secondary_answer("concurrency", 60.0)
        cost = 1 if request.method in ("GET", "HEAD", "OPTIONS") else 5
        categories: list[str] = []
        if request.method == "DELETE" and self.delete_limit is not None:
            categories.append("delete")
        if self.points_limit is not None:
            categories.append("points:" + request.kind)
        for category in categories:
            until = self._blocked.get((ident, category), 0.0)
            if until > now:
                name = "delete" if category == "delete" else "points"
                return self._secondary_answer(name, until - now)
        if request.method == "DELETE" and self.delete_limit is not None:
            wait = self._take_delete_slot(ident, now)
            if wait is not None:
                return self._limit_hit(ident, "delete", wait, now)
        if self.points_limit is not None:
            key = (ident, request.kind)
            spent = self._points.setdefault(key, deque())
            while spent and spent[0][0] <= now - self.points_window:
                spent.popleft()
            total = sum(c for _, c in spent)
            if total + cost > self.points_limit:
                freed, wait = total, self.points_window
                for at, c in spent:
                    freed -= c
                    if freed + cost <= self.points_limit:
                        wait = at + self.points_window - now
                        break
                return self._limit_hit(ident, "points:" + request.kind, wait, now)
            spent.append((now, cost))
        return None

    def _take_delete_slot(self, ident: str, now: float) -> float | None:
        """Consume one DELETE of the hidden budget; the wait in seconds when none is left."""
        assert self.delete_limit is not None
        if self.delete_limit_mode == "bucket":
            capacity = float(self.delete_burst or self.delete_limit)
            rate = self.delete_limit / self.delete_window
            bucket = self._delete_buckets.get(ident)
            if bucket is None:
                bucket = _Bucket(capacity, now)
                self._delete_buckets[ident] = bucket
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
            if bucket.tokens < 1.0:
                return (1.0 - bucket.tokens) / rate
            bucket.tokens -= 1.0
            return None
        times = self._delete_times.setdefault(ident, deque())
        while times and times[0] <= now - self.delete_window:
            times.popleft()
        if len(times) >= self.delete_limit:
            return times[0] + self.delete_window - now
        times.append(now)
        return None

    def _limit_hit(self, ident: str, category: str, wait: float, now: float) -> Response:
        seconds = float(self.retry_after) if self.retry_after is not None else wait
        seconds = max(1.0, math.ceil(seconds))
        if self.block_while_limited:
            self._blocked[(ident, category)] = now + seconds
        name = "delete" if category == "delete" else "points"
        return self._secondary_answer(name, seconds)

    def _secondary_answer(self, name: str, wait: float) -> Response:
        self.limited[f"secondary.{name}"] += 1
        rid = self._request_id()
        seconds = max(1, math.ceil(wait))
        response = rest_error(
            self.secondary_status,
            SECONDARY_MESSAGE.format(rid=rid),
            documentation_url=SECONDARY_DOCS,
        ).response
        response.headers["retry-after"] = str(seconds)
        response.headers["x-github-request-id"] = rid
        return response

    def _finish_rest(
        self,
        request: Request,
        response: Response,
        token: Token | None,
        *,
        ident: str = "anonymous",
        limit: int | None = None,
    ) -> Response:
        headers = response.headers
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        headers.setdefault("x-github-request-id", self._request_id())
        headers["x-github-api-version-selected"] = API_VERSION
        headers["x-github-media-type"] = "github.v3; format=json"
        headers.update(
            self._rate_headers(ident, limit if limit is not None else self.anonymous_limit)
        )
        if token is not None and token.kind == "classic":
            headers["X-OAuth-Scopes"] = ", ".join(sorted(token.scopes))
            accepted = _accepted_scopes(request.kind)
            if accepted:
                headers.setdefault("X-Accepted-OAuth-Scopes", accepted)
        return response

    # ----------------------------------------------------------------- REST handlers

    def _install_routes(self) -> None:
        pkg = r"/(?:(?P<scope>orgs|users)/(?P<owner>[^/]+)|user)/packages/container/(?P<pkg>[^/]+)"
        rest: list[tuple[str, str, Handler, str]] = [
            ("GET", r"/user", self._h_user, "rest.user"),
            ("GET", r"/users/(?P<owner>[^/]+)", self._h_users, "rest.users"),
            ("GET", r"/orgs/(?P<owner>[^/]+)", self._h_orgs, "rest.orgs"),
            ("GET", pkg, self._h_package, "rest.package"),
            ("GET", pkg + r"/versions", self._h_list, "rest.versions.list"),
            ("GET", pkg + r"/versions/(?P<vid>[0-9]+)", self._h_version, "rest.version.get"),
            ("DELETE", pkg + r"/versions/(?P<vid>[0-9]+)", self._h_delete, "rest.version.delete"),
        ]
        for method, pattern, handler, kind in rest:
            self.add_route(method, pattern, handler, kind=kind, surface="rest")
        name = (
            r"/v2/(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
        )
        ref = r"(?P<ref>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|sha256:[a-f0-9]{64})"
        digest = r"(?P<digest>sha256:[a-f0-9]{64})"
        registry: list[tuple[str, str, Handler, str]] = [
            ("GET", r"/token", self._r_token, "registry.token"),
            ("GET", r"/v2/?", self._r_base, "registry.base"),
            ("GET", name + r"/manifests/" + ref, self._r_manifest, "registry.manifest.get"),
            ("HEAD", name + r"/manifests/" + ref, self._r_manifest, "registry.manifest.head"),
            ("PUT", name + r"/manifests/" + ref, self._r_put_manifest, "registry.manifest.put"),
            (
                "DELETE",
                name + r"/manifests/" + ref,
                self._r_delete_manifest,
                "registry.manifest.delete",
            ),
            ("GET", name + r"/tags/list", self._r_tags, "registry.tags.list"),
            ("GET", name + r"/referrers/" + digest, self._r_referrers, "registry.referrers"),
            ("GET", name + r"/blobs/" + digest, self._r_blob, "registry.blob.get"),
            ("HEAD", name + r"/blobs/" + digest, self._r_blob, "registry.blob.head"),
            ("POST", name + r"/blobs/uploads/?", self._r_upload_start, "registry.blob.upload"),
            (
                "PATCH",
                name + r"/blobs/uploads/(?P<uuid>[0-9a-f-]+)",
                self._r_upload_patch,
                "registry.blob.upload",
            ),
            (
                "PUT",
                name + r"/blobs/uploads/(?P<uuid>[0-9a-f-]+)",
                self._r_upload_put,
                "registry.blob.upload",
            ),
        ]
        for method, pattern, handler, kind in registry:
            self.add_route(method, pattern, handler, kind=kind, surface="registry")

    def _user_json(self, account: Account) -> dict[str, Any]:
        segment = "orgs" if account.type == "Organization" else "users"
        return {
            "login": account.login,
            "id": account.id,
            "node_id": base64.b64encode(f"04:{account.type}{account.id}".encode()).decode(),
            "url": f"{self.api_url}/{segment}/{account.login}",
            "html_url": f"https://github.com/{account.login}",
            "type": account.type,
            "site_admin": False,
            "name": account.name,
        }

    def _h_user(self, req: Request) -> Response:
        token = req.require_token()
        if token.kind == "github_token":
            raise rest_error(
                403,
                INTEGRATION_MESSAGE,
                documentation_url=f"{DOCS}/users/users#get-the-authenticated-user",
            )
        with self.lock:
            return Response.json(self._user_json(self._account(token.login)))

    def _h_users(self, req: Request) -> Response:
        with self.lock:
            account = self._accounts.get(req.match["owner"].lower())
            if account is None:
                raise rest_error(
                    404, "Not Found", documentation_url=f"{DOCS}/users/users#get-a-user"
                )
            return Response.json(self._user_json(account))

    def _h_orgs(self, req: Request) -> Response:
        with self.lock:
            account = self._accounts.get(req.match["owner"].lower())
            if account is None or account.type != "Organization":
                raise rest_error(
                    404, "Not Found", documentation_url=f"{DOCS}/orgs/orgs#get-an-organization"
                )
            return Response.json(self._user_json(account))

    def _doc(self, req: Request) -> str:
        scope = req.match["scope"]
        who = {"orgs": "an-organization", "users": "a-user", None: "the-authenticated-user"}[scope]
        if req.kind == "rest.versions.list" and scope == "orgs":
            who = "an-organization"
        return DOCS + _PACKAGE_DOCS.get(req.kind, "/packages/packages").format(who=who)

    def _resolve(self, req: Request, need: Literal["read", "delete"]) -> tuple[_Package, str]:
        """The package a packages route names, after the access checks; and its URL base."""
        token = req.require_token()
        doc = self._doc(req)
        scope = req.match["scope"]
        if scope is None:
            if token.kind == "github_token":
                raise rest_error(403, INTEGRATION_MESSAGE, documentation_url=doc)
            account = self._accounts.get(token.login.lower())
        else:
            account = self._accounts.get(req.match["owner"].lower())
            if account is not None and (scope == "orgs") != (account.type == "Organization"):
                account = None
        if account is None:
            raise rest_error(404, "Not Found", documentation_url=doc)
        name = unquote(req.match["pkg"])
        package = self._packages.get((account.login.lower(), name.lower()))
        if package is None:
            raise rest_error(404, "Package not found.", documentation_url=doc)
        _check_access(token, package, need, doc)
        segment = {
            "orgs": f"orgs/{account.login}",
            "users": f"users/{account.login}",
            None: "user",
        }[scope]
        return (
            package,
            f"{self.api_url}/{segment}/packages/container/{quote(package.name, safe='')}",
        )

    def _package_json(self, package: _Package, base: str) -> dict[str, Any]:
        account = self._accounts[package.owner.lower()]
        kind = "orgs" if account.type == "Organization" else "users"
        body: dict[str, Any] = {
            "id": package.id,
            "name": package.name,
            "package_type": "container",
            "owner": self._user_json(account),
            "version_count": len(package.active),
            "visibility": package.visibility,
            "url": base,
            "created_at": _iso(package.created),
            "updated_at": _iso(package.updated),
            "html_url": f"https://github.com/{kind}/{account.login}/packages/container/package/"
            f"{quote(package.name, safe='')}",
        }
        if package.repository is not None:
            body["repository"] = {
                "full_name": package.repository,
                "name": package.repository.split("/")[-1],
            }
        return body

    def _version_json(self, package: _Package, version: _Version, base: str) -> dict[str, Any]:
        account = self._accounts[package.owner.lower()]
        kind = "orgs" if account.type == "Organization" else "users"
        encoded = quote(package.name, safe="")
        html = f"https://github.com/{kind}/{account.login}/packages/container"
        return {
            "id": version.id,
            "name": version.digest,
            "url": f"{base}/versions/{version.id}",
            "package_html_url": f"{html}/package/{encoded}",
            "created_at": _iso(version.created),
            "updated_at": _iso(version.updated),
            "html_url": f"{html}/{encoded}/{version.id}",
            "metadata": {"package_type": "container", "container": {"tags": list(version.tags)}},
        }

    def _h_package(self, req: Request) -> Response:
        with self.lock:
            package, base = self._resolve(req, "read")
            return Response.json(self._package_json(package, base))

    def _h_list(self, req: Request) -> Response:
        with self.lock:
            package, base = self._resolve(req, "read")
            if req.param("state", "active") == "deleted":
                items = sorted(
                    package.deleted.values(), key=lambda v: (v.created, v.id), reverse=True
                )
            else:
                items = package.newest_first()
            chunk, headers = self.paginate(req, items)
            body = [self._version_json(package, v, base) for v in chunk]
        return Response.json(body, headers=headers)

    def paginate(
        self,
        req: Request,
        items: Sequence[_T],
        *,
        default_per_page: int = 30,
        max_per_page: int = 100,
    ) -> tuple[list[_T], dict[str, str]]:
        """GitHub's page-number pagination of ``items`` for ``req``: the page's items and
        the headers to send (a ``Link`` header when there is more than one page)."""
        per_page = min(max_per_page, max(1, _int(req.param("per_page"), default_per_page)))
        page = max(1, _int(req.param("page"), 1))
        chunk = list(items[(page - 1) * per_page : page * per_page])
        last = max(1, math.ceil(len(items) / per_page))
        link = self._link(req, page, last)
        return chunk, ({"Link": link} if link else {})

    def _link(self, req: Request, page: int, last: int) -> str:
        if last <= 1 and page <= 1:
            return ""
        pairs = [(k, v) for k, values in req.query.items() for v in values]

        def url(target: int) -> str:
            items = [(k, v) for k, v in pairs if k != "page"]
            items.append(("page", str(target)))
            return f"{self.api_url}{req.path}?{urlencode(items)}"

        parts: list[str] = []
        if page > 1:
            parts.append(f'<{url(min(page - 1, last))}>; rel="prev"')
        if page < last:
            parts.append(f'<{url(page + 1)}>; rel="next"')
            parts.append(f'<{url(last)}>; rel="last"')
        if page > 1:
            parts.append(f'<{url(1)}>; rel="first"')
        return ", ".join(parts)

    def _find_version(self, req: Request, package: _Package) -> _Version:
        version = package.active.get(int(req.match["vid"]))
        if version is None:
            raise rest_error(404, "Not Found", documentation_url=self._doc(req))
        return version

    def _h_version(self, req: Request) -> Response:
        with self.lock:
            package, base = self._resolve(req, "read")
            return Response.json(
                self._version_json(package, self._find_version(req, package), base)
            )

    def _h_delete(self, req: Request) -> Response:
        with self.lock:
            package, _ = self._resolve(req, "delete")
            version = self._find_version(req, package)
            doc = self._doc(req)
            if self.last_version_rule == "version" and len(package.active) <= 1:
                raise rest_error(400, LAST_VERSION_MESSAGE, documentation_url=doc)
            if (
                self.last_version_rule == "tagged"
                and version.tags
                and not any(v.tags for v in package.active.values() if v.id != version.id)
            ):
                raise rest_error(400, LAST_TAGGED_MESSAGE, documentation_url=doc)
            if package.visibility == "public" and version.downloads > self.download_limit:
                raise rest_error(400, DOWNLOADS_MESSAGE, documentation_url=doc)
            self._remove(package, version)
            self.delete_times.append(self.clock())
            return Response(204)

    # ----------------------------------------------------------------- registry handlers

    def _www_authenticate(self, scope: str) -> dict[str, str]:
        return {
            "WWW-Authenticate": f'Bearer realm="{self.registry_url}/token",service="ghcr.io",'
            f'scope="{scope}"',
            "Docker-Distribution-API-Version": "registry/2.0",
        }

    def _grant(self, req: Request, name: str, action: str) -> _Grant:
        header = req.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        grant = self._grants.get(value.strip()) if scheme.lower() == "bearer" else None
        scope = f"repository:{name}:{'pull,push' if action == 'push' else 'pull'}"
        if grant is None:
            raise registry_error(
                401, "UNAUTHORIZED", "authentication required", self._www_authenticate(scope)
            )
        if action not in grant.access.get(name.lower(), set()):
            raise registry_error(403, "DENIED", "requested access to the resource is denied")
        return grant

    def _registry_package(self, name: str) -> _Package:
        owner, _, pkg = name.partition("/")
        package = self._packages.get((owner.lower(), pkg.lower()))
        if package is None or not pkg:
            raise registry_error(404, "NAME_UNKNOWN", "repository name not known to registry")
        return package

    def _r_token(self, req: Request) -> Response:
        header = req.headers.get("authorization", "")
        token: Token | None = None
        if header:
            scheme, _, credential = header.partition(" ")
            secret = ""
            if scheme.lower() == "basic":
                try:
                    secret = base64.b64decode(credential.strip()).decode().partition(":")[2]
                except (ValueError, UnicodeDecodeError):
                    secret = ""
            elif scheme.lower() == "bearer":
                secret = credential.strip()
            with self.lock:
                token = self._tokens.get(secret)
            if token is None:
                raise registry_error(401, "UNAUTHORIZED", "authentication required")
        access: dict[str, set[str]] = {}
        with self.lock:
            for scope in req.query.get("scope", []):
                parts = scope.split(":")
                if len(parts) != 3 or parts[0] != "repository":
                    continue
                repo, wanted = parts[1].lower(), set(parts[2].split(","))
                allowed = self._registry_access(token, repo)
                if token is None and "pull" in wanted and "pull" not in allowed:
                    raise registry_error(
                        403, "DENIED", "requested access to the resource is denied"
                    )
                access[repo] = allowed & wanted
            value = base64.b64encode(secrets.token_bytes(24)).decode()
            self._grants[value] = _Grant(token, access)
        return Response.json({"token": value})

    def _registry_access(self, token: Token | None, repo: str) -> set[str]:
        owner, _, name = repo.partition("/")
        package = self._packages.get((owner, name))
        allowed: set[str] = set()
        if package is not None and package.visibility == "public":
            allowed.add("pull")
        if token is None:
            return allowed
        role = token.role(package.owner if package else owner, package.name if package else name)
        if token.kind == "classic":
            can_read = bool(token.scopes & READ_SCOPES)
            can_write = "write:packages" in token.scopes
        else:
            can_read = token.packages_permission in ("read", "write")
            can_write = token.packages_permission == "write"
        if can_read and _RANK[role] >= 1:
            allowed.add("pull")
        if can_write and _RANK[role] >= 2:
            allowed.update({"pull", "push"})
        return allowed

    def _r_base(self, req: Request) -> Response:
        header = req.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        with self.lock:
            ok = scheme.lower() == "bearer" and value.strip() in self._grants
        if not ok:
            raise registry_error(
                401,
                "UNAUTHORIZED",
                "authentication required",
                self._www_authenticate("repository:user/image:pull"),
            )
        return Response.json({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})

    def _lookup(self, package: _Package, ref: str) -> _Version:
        vid = package.by_digest.get(ref) if ref.startswith("sha256:") else package.tags.get(ref)
        if vid is None:
            raise registry_error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        return package.active[vid]

    def _r_manifest(self, req: Request) -> Response:
        name = req.match["name"]
        with self.lock:
            self._grant(req, name, "pull")
            package = self._registry_package(name)
            version = self._lookup(package, req.match["ref"])
            accept = req.headers.get("accept", "")
            accepted = {part.split(";")[0].strip() for part in accept.split(",") if part.strip()}
            if accepted and "*/*" not in accepted and version.media_type not in accepted:
                raise registry_error(
                    404,
                    "MANIFEST_UNKNOWN",
                    f"manifest unknown: stored as {version.media_type}, which the Accept "
                    "header does not list",
                )
            if req.method == "GET":
                version.downloads += 1
            data = version.data
            headers = {
                "Content-Type": version.media_type,
                "Docker-Content-Digest": version.digest,
                "Docker-Distribution-API-Version": "registry/2.0",
                "ETag": f'"{version.digest}"',
            }
        if req.method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return Response(200, b"", headers)
        return Response(200, data, headers)

    def _r_put_manifest(self, req: Request) -> Response:
        name = req.match["name"]
        ref = req.match["ref"]
        media_type = req.headers.get("content-type", "").split(";")[0].strip()
        digest = images.sha256(req.body)
        if ref.startswith("sha256:") and ref != digest:
            raise registry_error(
                400, "DIGEST_INVALID", "provided digest did not match uploaded content"
            )
        try:
            children, subject, artifact_type = images.describe(req.body)
            body = json.loads(req.body)
        except ValueError as exc:
            raise registry_error(400, "MANIFEST_INVALID", "manifest invalid") from exc
        media_type = media_type or str(body.get("mediaType", images.OCI_MANIFEST))
        with self.lock:
            self._grant(req, name, "push")
            owner, _, pkg = name.partition("/")
            if not self.package_exists(owner, pkg):
                self.create_package(owner, pkg)
            package = self._package(owner, pkg)
            referenced = [body.get("config"), *(body.get("layers") or [])]
            for desc in referenced:
                if isinstance(desc, dict) and desc.get("digest") not in package.blobs:
                    if desc.get("mediaType") == images.OCI_EMPTY:
                        continue
                    raise registry_error(400, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")
            tags = [] if ref.startswith("sha256:") else [ref]
            self._store(
                package,
                manifest=req.body,
                media_type=media_type,
                tags=tags,
                created=None,
                downloads=0,
                children=children,
                subject=subject,
                artifact_type=artifact_type,
            )
        headers = {
            "Location": f"/v2/{name}/manifests/{digest}",
            "Docker-Content-Digest": digest,
        }
        if subject is not None:
            headers["OCI-Subject"] = subject
        return Response(201, b"", headers)

    def _r_delete_manifest(self, req: Request) -> Response:
        with self.lock:
            self._grant(req, req.match["name"], "pull")
        raise registry_error(405, "UNSUPPORTED", "The operation is unsupported.")

    def _r_tags(self, req: Request) -> Response:
        name = req.match["name"]
        with self.lock:
            self._grant(req, name, "pull")
            package = self._registry_package(name)
            tags = sorted(package.tags)
        last = req.param("last")
        if last:
            tags = [t for t in tags if t > last]
        headers: dict[str, str] = {}
        n = _int(req.param("n"), 0)
        if n > 0 and len(tags) > n:
            tags = tags[:n]
            headers["Link"] = (
                f'</v2/{name}/tags/list?{urlencode({"n": n, "last": tags[-1]})}>; rel="next"'
            )
        return Response.json({"name": name, "tags": tags}, headers=headers)

    def _r_referrers(self, req: Request) -> Response:
        name = req.match["name"]
        if not self.referrers_api:
            raise registry_error(404, "NOT_FOUND", "not found")
        with self.lock:
            self._grant(req, name, "pull")
            package = self._registry_package(name)
            wanted = req.param("artifactType")
            manifests = []
            for version in package.newest_first():
                if version.subject != req.match["digest"]:
                    continue
                if wanted and version.artifact_type != wanted:
                    continue
                desc: dict[str, Any] = {
                    "mediaType": version.media_type,
                    "digest": version.digest,
                    "size": len(version.data),
                }
                if version.artifact_type:
                    desc["artifactType"] = version.artifact_type
                manifests.append(desc)
        body = {"schemaVersion": 2, "mediaType": images.OCI_INDEX, "manifests": manifests}
        return Response.json(body, headers={"Content-Type": images.OCI_INDEX})

    def _r_blob(self, req: Request) -> Response:
        name = req.match["name"]
        with self.lock:
            self._grant(req, name, "pull")
            package = self._registry_package(name)
            data = package.blobs.get(req.match["digest"])
        if data is None:
            raise registry_error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        headers = {
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": req.match["digest"],
            "Content-Length": str(len(data)),
        }
        return Response(200, b"" if req.method == "HEAD" else data, headers)

    def _store_blob(self, name: str, data: bytes, digest: str) -> Response:
        if images.sha256(data) != digest:
            raise registry_error(
                400, "DIGEST_INVALID", "provided digest did not match uploaded content"
            )
        owner, _, pkg = name.partition("/")
        with self.lock:
            if not self.package_exists(owner, pkg):
                self.create_package(owner, pkg)
            self._package(owner, pkg).blobs[digest] = data
        return Response(
            201, b"", {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}
        )

    def _r_upload_start(self, req: Request) -> Response:
        name = req.match["name"]
        with self.lock:
            self._grant(req, name, "push")
        digest = req.param("digest")
        if digest:
            return self._store_blob(name, req.body, digest)
        upload = str(uuid.uuid4())
        with self.lock:
            self._uploads[upload] = bytearray(req.body)
        return Response(
            202,
            b"",
            {
                "Location": f"/v2/{name}/blobs/uploads/{upload}",
                "Docker-Upload-UUID": upload,
                "Range": "0-0",
            },
        )

    def _r_upload_patch(self, req: Request) -> Response:
        name, upload = req.match["name"], req.match["uuid"]
        with self.lock:
            self._grant(req, name, "push")
            buffer = self._uploads.get(upload)
            if buffer is None:
                raise registry_error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
            buffer.extend(req.body)
            size = len(buffer)
        return Response(
            202,
            b"",
            {
                "Location": f"/v2/{name}/blobs/uploads/{upload}",
                "Docker-Upload-UUID": upload,
                "Range": f"0-{max(0, size - 1)}",
            },
        )

    def _r_upload_put(self, req: Request) -> Response:
        name, upload = req.match["name"], req.match["uuid"]
        with self.lock:
            self._grant(req, name, "push")
            buffer = self._uploads.pop(upload, None)
        if buffer is None:
            raise registry_error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        digest = req.param("digest")
        if not digest:
            raise registry_error(400, "DIGEST_INVALID", "digest parameter missing")
        buffer.extend(req.body)
        return self._store_blob(name, bytes(buffer), digest)


# --------------------------------------------------------------------------- helpers


def _check_access(
    token: Token, package: _Package, need: Literal["read", "delete"], doc: str
) -> None:
    role = token.role(package.owner, package.name)
    if role is None and package.visibility == "public":
        role = "read"  # visible to everyone; deleting still needs the admin role
    if role is None:
        raise rest_error(404, "Package not found.", documentation_url=doc)
    if token.kind == "classic":
        if not token.scopes & READ_SCOPES:
            raise rest_error(
                403,
                READ_SCOPE_MESSAGE,
                documentation_url=doc,
                headers={"X-Accepted-OAuth-Scopes": "read:packages"},
            )
        if need == "delete":
            if "delete:packages" not in token.scopes:
                raise rest_error(
                    403,
                    DELETE_SCOPE_MESSAGE,
                    documentation_url=doc,
                    headers={"X-Accepted-OAuth-Scopes": "delete:packages, read:packages"},
                )
            if role != "admin":
                raise rest_error(403, ADMIN_MESSAGE, documentation_url=doc)
        return
    message = INTEGRATION_MESSAGE if token.kind == "github_token" else FINE_GRAINED_MESSAGE
    if need == "read" and token.packages_permission is None:
        raise rest_error(
            403,
            message,
            documentation_url=doc,
            headers={"X-Accepted-GitHub-Permissions": "packages=read"},
        )
    if need == "delete":
        if token.packages_permission != "write":
            raise rest_error(
                403,
                message,
                documentation_url=doc,
                headers={"X-Accepted-GitHub-Permissions": "packages=write"},
            )
        if role != "admin":
            raise rest_error(403, message, documentation_url=doc)


def _accepted_scopes(kind: str) -> str:
    if kind == "rest.version.delete":
        return "delete:packages, read:packages"
    if kind.startswith(("rest.version", "rest.package")):
        return "read:packages"
    return ""


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _fs(values: Iterable[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _never() -> re.Match[str]:
    raise AssertionError("unreachable")


__all__ = [
    "Account",
    "GhcrEmulator",
    "HttpError",
    "LogEntry",
    "Request",
    "Response",
    "Token",
    "VersionState",
    "registry_error",
    "rest_error",
]
