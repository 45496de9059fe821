"""The one client of the OCI distribution API (``/v2``), shared by every registry backend.

:class:`Registry` speaks ``/v2`` for one repository (``ghcr.io/acme/app`` through the
GHCR backend, ``registry.example.com/team/app`` through the OCI backend):

- the base URL: given (``--registry-url``), or found: ``https://HOST``, and plain
  ``http://HOST`` only for a loopback host that does not answer https (as Docker does)
  or the one host ``--insecure`` names;
- authentication through :mod:`tagkeeper.registries.auth` (basic, bearer token per
  scope, the realm policy), retried once on a ``401``;
- manifests by digest, verified against it and remembered for the run (answers and
  failures both), optionally kept on disk between runs, verified on read
  (:mod:`tagkeeper.registries.cache`); manifests by tag (``GET`` or ``HEAD``,
  ``Docker-Content-Digest``), existence checks, config blobs, the tag list (``n``/
  ``last``/``Link`` pagination), the OCI 1.1 referrers API, and manifest deletes.

What the two registry backends build on it (the reader they hand the planner, their
base class) is :mod:`tagkeeper.registries.backend`.

The client receives its :class:`~tagkeeper.transport.Sender` (and so its
``httpx.Client``); it never builds one. It is one module on purpose: every ``/v2``
request goes through the same base URL, auth and bounded reading, and each quirk of a
registry is handled here once.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote

import httpx

from tagkeeper.bounded import CAPS
from tagkeeper.errors import RateLimited, RegistryError
from tagkeeper.inventory import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    ManifestMissing,
    ManifestUnreadable,
)
from tagkeeper.refs import DIGEST_RE
from tagkeeper.registries.auth import Authenticator, Challenge, RealmPolicy
from tagkeeper.registries.cache import ManifestCache, Memo
from tagkeeper.registries.manifests import Manifest, digest_matches, digest_of, read_manifest
from tagkeeper.transport import (
    BadAnswer,
    NoAnswer,
    describe_response,
    is_loopback_host,
    json_body,
    json_of,
)
from tagkeeper.untrusted import NotJson, loads, neutralise

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tagkeeper.registries.credentials import Credentials
    from tagkeeper.transport import Sender

ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
MAX_MANIFEST = CAPS.manifest  # the limit distribution and most registries enforce
MAX_PAGES = 10_000  # pages of a tag list or referrers listing before it is an error
MAX_REDIRECTS = 5  # for a blob read (a registry sends those to its storage)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PLAIN_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
DEFAULT_REFUSED_HINT = (
    "log in (docker login, or --username with --password-stdin, or "
    "TAGKEEPER_REGISTRY_USERNAME/TAGKEEPER_REGISTRY_PASSWORD)"
)


class Found(NamedTuple):
    """What a tag (or digest) points at: its digest and the media type answered."""

    digest: str
    media_type: str | None


def _media(response: httpx.Response) -> str | None:
    value = response.headers.get("content-type")
    return value.split(";")[0].strip() or None if value else None


class BlobUnreadable(Exception):
    """A blob could not be read. ``untrusted``: the registry's answer cannot be believed
    (other bytes than the digest, a redirect from https to http, far too large), so the
    image it belongs to is unreadable, not merely of unknown age."""

    def __init__(self, digest: str, reason: str, *, untrusted: bool) -> None:
        super().__init__(f"{digest}: {reason}")
        self.digest = digest
        self.reason = reason
        self.untrusted = untrusted


def _is_certificate_error(exc: BaseException | None) -> bool:
    """Whether a transport error comes from a certificate that is not trusted."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            exc
        ):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _path(reference: str) -> str:
    """A tag or digest as a URL path segment (a tag outside the grammar is escaped)."""
    return quote(reference, safe=":")


def error_codes(response: httpx.Response) -> set[str]:
    """The ``errors[].code`` values of a distribution error body."""
    body = json_of(response)
    codes: set[str] = set()
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        for entry in body["errors"]:
            if isinstance(entry, dict) and isinstance(entry.get("code"), str):
                codes.add(entry["code"])
    return codes


def _hostname(host: str) -> str:
    """``host`` without its port (``[::1]:5000`` -> ``[::1]``, ``a.b:5000`` -> ``a.b``)."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


class Registry:
    """The ``/v2`` API of one repository ``name`` on the registry at ``host``.

    ``base_url``: where the registry answers (``https://ghcr.io``, an emulator); found
    by a ``GET /v2/`` when not given. ``display`` names the repository in messages.
    ``credentials``: the basic credentials or identity token (``None``: anonymous), or a
    function that finds them, called once, on the first request (Docker's configuration
    is then read only by runs that use the registry).
    ``refused_hint``: what to do when they are refused. ``known_realm``: a token
    service to ask before the registry does (ghcr.io). ``cache``: manifests on disk.
    """

    def __init__(
        self,
        sender: Sender,
        *,
        host: str,
        name: str,
        display: str | None = None,
        base_url: str | None = None,
        insecure: bool = False,
        credentials: Credentials | Callable[[], Credentials | None] | None = None,
        refused_hint: str = DEFAULT_REFUSED_HINT,
        known_realm: Challenge | None = None,
        token_services: frozenset[str] = frozenset(),
        cache: ManifestCache | None = None,
    ) -> None:
        self.sender = sender
        self.host = host
        self.name = name
        self.display = display or f"{host}/{name}"
        self.insecure = insecure
        self.cache = cache
        self._credentials = credentials
        self._refused_hint = refused_hint
        self._known_realm = known_realm
        self._token_services = token_services
        self._lock = threading.Lock()
        self._base: str | None = base_url.rstrip("/") if base_url else None
        self._auth: Authenticator | None = None
        self._scope_of: dict[str, str] = {}  # action -> the scope the registry asked for
        self._manifests: Memo[str, Manifest] = Memo()
        self._referrers_api: bool | None = None  # None: not asked yet
        self.ping_headers: dict[str, str] = {}  # the /v2/ answer's headers

    # ------------------------------------------------------------------ plumbing

    def scrub(self, text: str) -> str:
        return self.sender.scrub(text)

    def base_url(self) -> str:
        """``https://HOST`` (or the ``base_url`` given), found once per run."""
        with self._lock:
            if self._base is not None:
                return self._base
        base = self._discover_base()
        with self._lock:
            self._base = base
        return base

    def authenticator(self) -> Authenticator:
        base = self.base_url()
        with self._lock:
            if self._auth is None:
                self._auth = Authenticator(
                    self.sender,
                    display=self.display,
                    policy=RealmPolicy(
                        httpx.URL(base), self.insecure, frozenset(self._token_services)
                    ),
                    credentials=self._credentials()
                    if callable(self._credentials)
                    else self._credentials,
                    refused_hint=self._refused_hint,
                    known_realm=self._known_realm,
                )
            return self._auth

    def _discover_base(self) -> str:
        """``https://HOST``; plain ``http://HOST`` only where the registry may be plain
        http (a loopback host, or the host ``--insecure`` names) and https was refused
        for another reason than a certificate: a certificate that is not trusted is an
        error (``--insecure`` accepts it for that host), never a reason to drop to http."""
        https = f"https://{self.host}"
        http_allowed = self.insecure or is_loopback_host(_hostname(self.host))
        try:
            response = self.sender.send(
                "GET",
                f"{https}/v2/",
                kind="ping",
                attempts=1 if http_allowed else None,
                limit=CAPS.token,
            )
        except NoAnswer as exc:
            if _is_certificate_error(exc.cause):
                raise RegistryError(
                    f"{self.display}: the certificate of {self.host} is not trusted "
                    f"({neutralise(str(exc.cause), limit=160)}); tagkeeper does not fall back "
                    "to plain http",
                    hint="install the registry's CA certificate (SSL_CERT_FILE), or pass "
                    f"--insecure to accept an unverified certificate from {self.host} only",
                ) from None
            if not http_allowed:
                raise RegistryError(
                    exc.message,
                    hint=f"check the host name; if {self.host} speaks plain http, pass "
                    "--insecure",
                ) from None
            http = f"http://{self.host}"
            self._learn(self.sender.send("GET", f"{http}/v2/", kind="ping", limit=CAPS.token), http)
            return http
        self._learn(response, https)
        return https

    def _learn(self, response: httpx.Response, base: str) -> None:
        """What the ``/v2/`` answer says: the API is there, and which auth it asks for."""
        if response.status_code == 404:
            raise RegistryError(
                f"{self.host} does not speak the OCI distribution API (GET /v2/ answered 404)",
                hint="check the registry host and port",
            )
        with self._lock:
            self._base = base
            # what the product says of itself (see tagkeeper.registries.locks)
            self.ping_headers = dict(response.headers)
        self.authenticator().learn(response)

    def _scope(self, action: str) -> str:
        default = f"repository:{self.name}:{'pull' if action == 'read' else action}"
        with self._lock:
            return self._scope_of.get(action, default)

    def request(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        action: str = "read",
        headers: dict[str, str] | None = None,
        limit: int = CAPS.default,
        what: str | None = None,
        url: str | None = None,
    ) -> httpx.Response:
        """``method`` on ``/v2/<name><path>`` (or on ``url``, a path of the registry's
        own host: a product's API) with the credentials ``action`` needs (``read`` or
        ``delete``); a ``401`` is answered once (new token, or basic).

        The answer is read at most ``limit`` bytes (``what`` names it in messages); an
        answer that cannot be read as it came is a
        :class:`~tagkeeper.transport.BadAnswer` naming this repository."""
        url = f"{self.base_url()}{url}" if url is not None else (
            f"{self.base_url()}/v2/{self.name}{path}"
        )
        auth = self.authenticator()
        scope = self._scope(action)
        sent = auth.headers(scope)
        response = self._send(
            method, url, kind=kind, headers={**(headers or {}), **sent}, limit=limit, what=what
        )
        if response.status_code != 401:
            return response
        scope = auth.answer(response, scope, sent)
        with self._lock:
            self._scope_of[action] = scope
        again = auth.headers(scope)
        response = self._send(
            method, url, kind=kind, headers={**(headers or {}), **again}, limit=limit, what=what
        )
        if response.status_code == 401:
            raise auth.refused(response, "delete manifests in" if action == "delete" else "read")
        return response

    def _send(
        self,
        method: str,
        url: str,
        *,
        kind: str,
        headers: dict[str, str],
        limit: int,
        what: str | None,
    ) -> httpx.Response:
        try:
            return self.sender.send(
                method, url, kind=kind, headers=headers, limit=limit, what=what
            )
        except BadAnswer as exc:
            raise type(exc)(f"{self.display}: {exc.message}", hint=exc.hint) from None

    def expect_ok(self, response: httpx.Response, what: str) -> None:
        """Raise for an answer other than 200: auth (4), rate limit (10), else registry (5)."""
        if response.status_code == 200:
            return
        if response.status_code in (401, 403):
            raise self.authenticator().refused(response, "read")
        if response.status_code == 429:
            raise RateLimited(
                f"{self.display}: the registry rate-limits requests "
                f"({describe_response(response, self.scrub)})",
                hint="rerun later",
            )
        raise RegistryError(
            f"cannot {what} {self.display} ({describe_response(response, self.scrub)})"
        )

    # ------------------------------------------------------------------ manifests

    def manifest(self, digest: str) -> Manifest:
        """The manifest ``digest``, verified, read at most once per run.

        Raises :class:`ManifestMissing` when the registry says it does not exist,
        :class:`ManifestUnreadable` when it cannot be read or does not match its digest,
        :class:`~tagkeeper.errors.AuthError` when the credentials may not read it.
        """
        return self._manifests.get(digest, lambda: self._load(digest))

    def distrust(self, digest: str, reason: str) -> None:
        """Make the manifest ``digest`` unreadable for the rest of the run (an answer
        about its image could not be believed), whatever was read before."""
        self._manifests.fail(digest, ManifestUnreadable(digest, reason))

    def peek(self, digest: str) -> Manifest | None:
        """The manifest ``digest`` when it was read already (never a request)."""
        return self._manifests.peek(digest)

    def _load(self, digest: str) -> Manifest:
        cached = self.cache.get(digest) if self.cache is not None else None
        if cached is not None:
            return read_manifest(digest, cached[0], cached[1])
        if not DIGEST_RE.fullmatch(digest):
            raise ManifestUnreadable(digest, "not a digest")
        try:
            response = self._get_manifest(digest)
        except (NoAnswer, BadAnswer) as exc:  # no usable answer: fail closed
            raise ManifestUnreadable(digest, exc.message) from None
        if response.status_code in (401, 403):
            raise self.authenticator().refused(response, "read manifests in")
        if response.status_code == 404:  # the registry says it does not exist
            raise ManifestMissing(
                digest, f"not found in the registry ({describe_response(response, self.scrub)})"
            )
        if response.status_code != 200:
            raise ManifestUnreadable(digest, describe_response(response, self.scrub))
        parsed = self._parse(digest, response)
        if self.cache is not None:
            self.cache.put(digest, response.content, parsed.media_type)
        return parsed

    def _get_manifest(self, reference: str) -> httpx.Response:
        """``GET`` of the manifest ``reference`` (a tag or digest), at most 4 MiB."""
        return self.request(
            "GET",
            f"/manifests/{_path(reference)}",
            kind="manifest-get",
            headers={"Accept": ACCEPT},
            limit=MAX_MANIFEST,
            what="the manifest",
        )

    def _parse(self, digest: str, response: httpx.Response) -> Manifest:
        data = response.content
        if len(data) > MAX_MANIFEST:
            raise ManifestUnreadable(digest, f"manifest of {len(data)} bytes is too large")
        return read_manifest(digest, data, _media(response))

    def get_tag(self, tag: str) -> Found | None:
        """The manifest ``tag`` points at, by ``GET`` (``None``: the tag does not exist).

        The manifest is remembered when its bytes match the digest the registry gave
        (else reading it by digest later fails closed). A manifest too large to read is
        remembered as unreadable, and its digest asked with a ``HEAD``.
        """
        try:
            response = self._get_manifest(tag)
        except BadAnswer as exc:
            found = self._head(tag)
            if found is None:
                return None
            self._manifests.fail(found.digest, ManifestUnreadable(found.digest, exc.message))
            return found
        if response.status_code == 404:
            return None
        self.expect_ok(response, f"read the tag {neutralise(tag, limit=80)} of")
        digest = response.headers.get("docker-content-digest") or digest_of(response.content)
        self._check_digest(digest, tag)
        if digest_matches(digest, response.content):
            with contextlib.suppress(ManifestUnreadable):  # the planner reports it later
                self._manifests.put(digest, self._parse(digest, response))
        return Found(digest, _media(response))

    def head(self, reference: str) -> Found | None:
        """What ``reference`` (a tag or digest) points at, by ``HEAD`` (``None``: absent).

        A registry that does not say the digest (no ``Docker-Content-Digest``) is asked
        with a ``GET`` instead, and the bytes are hashed.
        """
        found = self._head(reference)
        if found is not None and not found.digest:
            return self.get_tag(reference)
        return found

    def _head(self, reference: str) -> Found | None:
        response = self.request(
            "HEAD",
            f"/manifests/{_path(reference)}",
            kind="manifest-head",
            headers={"Accept": ACCEPT},
        )
        if response.status_code == 404:
            return None
        self.expect_ok(response, f"read the tag {neutralise(reference, limit=80)} of")
        digest = response.headers.get("docker-content-digest", "")
        if digest:
            self._check_digest(digest, reference)
        return Found(digest, _media(response))

    def _check_digest(self, digest: str, reference: str) -> None:
        if not DIGEST_RE.fullmatch(digest):
            raise RegistryError(
                f"{self.display}: the registry answered a malformed digest for "
                f"{neutralise(reference, limit=80)} ({neutralise(digest, limit=100)})",
                hint="check the registry URL and any proxy between this machine and the "
                "registry",
            )

    def exists(self, digest: str) -> bool:
        """Whether the manifest ``digest`` exists now (one ``HEAD``)."""
        return self.head(digest) is not None

    def listed_by(self, digest: str) -> frozenset[str]:
        """Every manifest ``digest`` lists, recursively.

        Only what may list others is read: the manifest itself and each child whose
        descriptor does not say it is a plain image manifest (an index is digest-verified,
        so its descriptors are what was pushed), each once per run. A manifest the
        registry says is missing lists nothing (deleted meanwhile); any other failure
        raises :class:`ManifestUnreadable`: the caller must assume it lists anything.
        """
        out: set[str] = set()
        todo = [digest]
        while todo:
            try:
                parsed = self.manifest(todo.pop())
            except ManifestMissing:
                continue
            for entry in parsed.entries:
                if entry.digest in out:
                    continue
                out.add(entry.digest)
                if entry.media_type not in _PLAIN_TYPES:
                    todo.append(entry.digest)
        return frozenset(out)

    # ------------------------------------------------------------------ the rest

    def blob(self, digest: str, *, limit: int = CAPS.config) -> bytes:
        """The blob ``digest``, verified against it (at most ``limit`` bytes).

        Redirects are followed, as registries send blob reads to their storage: at most
        :data:`MAX_REDIRECTS`, never from https to plain http, and the credentials only to
        the registry's own origin. Raises :class:`BlobUnreadable` (``untrusted`` when the
        answer cannot be believed: other bytes than the digest, a downgrade to http, a
        body over the cap).
        """
        if not DIGEST_RE.fullmatch(digest):
            raise BlobUnreadable(digest, "not a digest", untrusted=True)
        what = "the blob"
        try:
            response = self.request(
                "GET", f"/blobs/{digest}", kind="blob-get", limit=limit, what=what
            )
            hops = 0
            while response.status_code in _REDIRECTS:
                hops += 1
                if hops > MAX_REDIRECTS:
                    raise BlobUnreadable(
                        digest, f"more than {MAX_REDIRECTS} redirects", untrusted=True
                    )
                response = self._follow(digest, response, limit, what)
        except BadAnswer as exc:
            raise BlobUnreadable(digest, exc.message, untrusted=True) from None
        except NoAnswer as exc:
            raise BlobUnreadable(digest, exc.message, untrusted=False) from None
        if response.status_code != 200:
            raise BlobUnreadable(
                digest, describe_response(response, self.scrub), untrusted=False
            )
        if not digest_matches(digest, response.content):
            raise BlobUnreadable(
                digest,
                f"the content does not match its digest (it has another: "
                f"{digest_of(response.content)})",
                untrusted=True,
            )
        return response.content

    def _follow(
        self, digest: str, response: httpx.Response, limit: int, what: str
    ) -> httpx.Response:
        """The answer where a blob redirect points (see :meth:`blob`)."""
        origin = response.request.url
        try:
            target = origin.join(response.headers.get("location", ""))
        except httpx.InvalidURL:
            target = None
        if target is None or target == origin or target.scheme not in ("http", "https"):
            raise BlobUnreadable(digest, "a redirect to nowhere usable", untrusted=True)
        if origin.scheme == "https" and target.scheme == "http":
            raise BlobUnreadable(
                digest,
                f"the registry redirects the blob from https to plain http "
                f"({neutralise(target.host, limit=80)}); tagkeeper does not follow",
                untrusted=True,
            )
        base = httpx.URL(self.base_url())
        same = (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port)
        headers = self.authenticator().headers(self._scope("read")) if same else {}
        return self._send(
            "GET", str(target), kind="blob-get", headers=headers, limit=limit, what=what
        )

    def tags(self, page_size: int) -> list[str] | None:
        """Every tag of the repository, following ``Link`` pagination (sorted, unique).

        ``None`` when the registry does not know the repository (``NAME_UNKNOWN``). A
        listing that links to a page it already gave, or runs past :data:`MAX_PAGES`
        pages, is a :class:`RegistryError`.
        """
        tags: list[str] = []
        for response in self._pages(f"/tags/list?n={page_size}", "tags-list", "the tag list"):
            if response.status_code == 404 and error_codes(response) & {"NAME_UNKNOWN"}:
                return None
            self.expect_ok(response, "list the tags of")
            body = json_body(response, what=f"{self.display}: the tag list", scrub=self.scrub)
            page = body.get("tags") if isinstance(body, dict) else None
            if page is not None and not isinstance(page, list):
                raise RegistryError(f"{self.display}: the tag list has no 'tags' array")
            tags.extend(str(t) for t in page or ())
        return sorted(set(tags))

    def _pages(self, first: str, kind: str, what: str) -> Iterator[httpx.Response]:
        """The pages of a listing from ``first`` on, following ``Link: rel="next"``."""
        seen: set[str] = set()
        path: str | None = first
        while path is not None:
            if path in seen:
                raise RegistryError(
                    f"{self.display}: {what} loops: its next page is one it already gave "
                    f"({neutralise(path, limit=120)})",
                    hint="the registry's pagination is broken; report it to its operator",
                )
            if len(seen) >= MAX_PAGES:
                raise RegistryError(
                    f"{self.display}: {what} goes on past {MAX_PAGES} pages; tagkeeper "
                    "stopped reading it",
                    hint="the registry's pagination may be broken; report it to its operator",
                )
            seen.add(path)
            limit = CAPS.manifest if kind == "referrers" else CAPS.tag_list
            response = self.request(
                "GET", path, kind=kind, headers={"Accept": OCI_INDEX}, limit=limit, what=what
            )
            yield response
            path = self._next(response, what)

    def _next(self, response: httpx.Response, what: str) -> str | None:
        """The path after ``/v2/<name>`` of the ``Link: rel="next"`` page, if any."""
        link = response.links.get("next")
        if not link or not link.get("url"):
            return None
        try:
            target = response.url.join(link["url"])
        except httpx.InvalidURL:
            raise RegistryError(
                f"{self.display}: {what} links to something that is not a URL"
            ) from None
        prefix = f"/v2/{self.name}"
        path = target.raw_path.decode("ascii")
        if not path.startswith(prefix):
            raise RegistryError(f"{self.display}: {what} links outside the repository")
        return path[len(prefix) :]

    def referrers(self, digest: str) -> list[str] | None:
        """Referrers from ``/v2/<name>/referrers/<digest>``; ``None`` when the registry
        has no referrers API (it answers 404, which the spec forbids where it exists).

        Raises :class:`ManifestUnreadable` when the answer exists but cannot be read
        (an error, not JSON, a malformed digest, a listing that loops or never ends)."""
        if self._referrers_api is False:
            return None
        out: list[str] = []
        try:
            for response in self._pages(f"/referrers/{digest}", "referrers", "the referrers"):
                if response.status_code == 404:
                    self._referrers_api = False
                    return None
                if response.status_code != 200:
                    raise ManifestUnreadable(
                        digest, "referrers: " + describe_response(response, self.scrub)
                    )
                body = loads(response.content)
                self._referrers_api = True
                entries = body.get("manifests") if isinstance(body, dict) else None
                for entry in entries if isinstance(entries, list) else ():
                    found = entry.get("digest") if isinstance(entry, dict) else None
                    if not isinstance(found, str) or not DIGEST_RE.fullmatch(found):
                        raise ManifestUnreadable(digest, "referrers: a malformed digest")
                    out.append(found)
        except NotJson as exc:
            raise ManifestUnreadable(digest, f"referrers: {exc}") from None
        except (RegistryError, NoAnswer) as exc:
            raise ManifestUnreadable(digest, f"referrers: {exc.message}") from None
        return out

    def delete(self, digest: str, *, kind: str = "delete") -> httpx.Response:
        """``DELETE`` of the manifest ``digest`` (the caller reads the answer)."""
        return self.request("DELETE", f"/manifests/{digest}", kind=kind, action="delete")
