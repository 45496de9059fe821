"""A faithful local emulator of GitHub Container Registry: Packages REST API + ghcr.io ``/v2``.

One ``ThreadingHTTPServer`` on ``127.0.0.1:<random port>`` serves both surfaces:

* REST (GitHub's Packages API, as documented for API version 2022-11-28) under
  ``emu.api_url`` = ``http://127.0.0.1:PORT/api/v3`` (the GitHub Enterprise layout; pass
  ``api_prefix=""`` to serve it at the root);
* the registry (ghcr.io's OCI distribution surface and token service) at
  ``emu.registry_url`` = ``http://127.0.0.1:PORT`` (``/token``, ``/v2/...``).

The package is split by concern: ``state`` (options, owners, tokens, packages and the
operations tests arrange them with), ``limits`` (rate limits and injected faults),
``rest`` (the Packages API), ``registry`` (``/token`` and ``/v2``) and ``server`` (HTTP
plumbing); :class:`GhcrEmulator` puts them together and routes requests.

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
    "rest.packages.list" (GET /user/packages, /orgs/{o}/packages, /users/{u}/packages:
    an owner's packages of the required ``package_type`` that the token can see),
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

import re
import threading
import time
from urllib.parse import parse_qsl, urlsplit

from tests.emulators.ghcr.registry import RegistryApi
from tests.emulators.ghcr.rest import RestApi
from tests.emulators.ghcr.server import (
    Handler,
    HttpError,
    Request,
    Response,
    Surface,
    _never,
    _RequestHandler,
    _Route,
    _Server,
    call,
    registry_error,
    rest_error,
)
from tests.emulators.ghcr.state import Account, LogEntry, Token, VersionState


class GhcrEmulator(RestApi, RegistryApi):
    """See the module docstring for the full API."""

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
                        response = call(route.handler, request)
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

    def _not_found(self, request: Request) -> Response:
        if request.surface == "registry":
            return registry_error(404, "NOT_FOUND", "not found").response
        return self._finish_rest(request, rest_error(404, "Not Found").response, None)

    def _install_routes(self) -> None:
        pkg = r"/(?:(?P<scope>orgs|users)/(?P<owner>[^/]+)|user)/packages/container/(?P<pkg>[^/]+)"
        rest: list[tuple[str, str, Handler, str]] = [
            ("GET", r"/user", self._h_user, "rest.user"),
            ("GET", r"/users/(?P<owner>[^/]+)", self._h_users, "rest.users"),
            ("GET", r"/orgs/(?P<owner>[^/]+)", self._h_orgs, "rest.orgs"),
            (
                "GET",
                r"/(?:(?P<scope>orgs|users)/(?P<owner>[^/]+)|user)/packages",
                self._h_packages,
                "rest.packages.list",
            ),
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
