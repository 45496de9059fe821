"""Registry authentication: every ``WWW-Authenticate`` challenge and token exchange.

One module for every registry tagkeeper speaks ``/v2`` to (ghcr.io and any OCI
distribution registry), so that a registry quirk is fixed once.

- :func:`parse_challenge` reads a ``WWW-Authenticate`` header (``Basic realm=...``,
  ``Bearer realm=...,service=...,scope=...``; quoted or bare values).
- :class:`RealmPolicy` decides where credentials may go. A token service (the
  challenge's ``realm``) receives the registry password or GitHub token only when it is
  on the registry's own host and port, or is that registry's documented token service
  (Docker Hub's ``auth.docker.io``, GitLab.com's ``gitlab.com``). Another host gets an
  anonymous request at most. The realm must be ``https://``; plain ``http://`` only
  where the registry itself may be spoken to over http (a loopback host, or the one
  host ``--insecure`` names) *and* the realm is on that same host: ``--insecure`` never
  widens to a token service elsewhere.
- :class:`Authenticator` holds one registry's credentials and the tokens it was given,
  cached per scope, and runs the exchanges: ``GET realm?scope&service`` with basic
  credentials (or none), or the OAuth2 refresh-token ``POST`` for an identity token
  (``docker login`` to some registries). Token requests never follow redirects.

Secrets travel as :class:`~tagkeeper.secret.Secret`; every token received is registered
with the :class:`~tagkeeper.transport.Sender` so that no message can show it.
"""

from __future__ import annotations

import base64
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import httpx

from tagkeeper.bounded import CAPS
from tagkeeper.errors import AuthError, RegistryError
from tagkeeper.secret import Secret, check_credential
from tagkeeper.transport import describe_response, is_loopback_host, json_body
from tagkeeper.untrusted import neutralise

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tagkeeper.registries.credentials import Credentials
    from tagkeeper.transport import Sender

# Registries whose token service is documented to live on another host: credentials may
# go there too. Keys and values are host names (lower case, without a port).
DOCUMENTED_TOKEN_SERVICES: Mapping[str, frozenset[str]] = {
    "docker.io": frozenset({"auth.docker.io"}),
    "index.docker.io": frozenset({"auth.docker.io"}),
    "registry-1.docker.io": frozenset({"auth.docker.io"}),
    "registry.gitlab.com": frozenset({"gitlab.com"}),
}

_PARAM_RE = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))')


class Challenge(NamedTuple):
    """A parsed ``WWW-Authenticate`` value: its scheme (lower case) and parameters."""

    scheme: str
    params: dict[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_challenge(header: str) -> Challenge:
    """``Challenge("bearer", {"realm": ..., "service": ..., "scope": ...})`` from a
    ``WWW-Authenticate`` value (parameter names lower-cased, ``\\"`` unescaped)."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(rest):
        key, quoted, bare = match.groups()
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params.setdefault(key.lower(), value)
    return Challenge(scheme.lower(), params)


def _same_host(url: httpx.URL, registry: httpx.URL) -> bool:
    """Whether ``url`` is on the registry's host and port (a port left out is the
    registry's: ``http://ghcr.io/token`` is ghcr.io's host, over the wrong scheme)."""
    default = {"https": 443, "http": 80}.get(registry.scheme)
    return url.host.lower() == registry.host.lower() and (url.port or default) == (
        registry.port or default
    )


@dataclass(frozen=True)
class RealmPolicy:
    """Where the credentials of the registry at ``registry`` (its base URL) may go.

    ``insecure``: the registry host may be spoken to over plain http (``--insecure``).
    ``token_services``: other host names that may receive the credentials, besides the
    registry's own host and :data:`DOCUMENTED_TOKEN_SERVICES`.
    """

    registry: httpx.URL
    insecure: bool = False
    token_services: frozenset[str] = field(default_factory=frozenset)

    def trusted_hosts(self) -> frozenset[str]:
        host = self.registry.host.lower()
        return self.token_services | DOCUMENTED_TOKEN_SERVICES.get(host, frozenset())

    def check(self, realm: str, *, with_credentials: bool, display: str) -> httpx.URL:
        """The realm as a URL, or an error when it may not be asked (with credentials).

        Raises :class:`RegistryError`: the realm is not an absolute http(s) URL, is on
        another host while credentials would go there, or is plain http where it may
        not be.
        """
        shown = neutralise(realm, limit=120)
        try:
            url = httpx.URL(realm)
        except (httpx.InvalidURL, TypeError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise RegistryError(
                f"{display}: the registry names a token service that is not an http(s) URL "
                f"({shown}); tagkeeper does not send credentials there",
                hint="point the registry URL at the registry itself",
            )
        same = _same_host(url, self.registry)
        documented = url.host.lower() in self.trusted_hosts() and url.scheme == "https"
        if with_credentials and not same and not documented:
            raise RegistryError(
                f"{display}: the registry asks for credentials at another host "
                f"({neutralise(url.host, limit=80)}); tagkeeper does not send them there",
                hint="point the registry URL at the registry itself; a registry whose "
                "token service lives on another host is trusted only when that host is "
                "its documented token service",
            )
        if url.scheme == "https":
            return url
        registry_may_be_http = is_loopback_host(self.registry.host) or self.insecure
        if same and registry_may_be_http:
            return url
        loopback = is_loopback_host(url.host) and is_loopback_host(self.registry.host)
        if loopback and not with_credentials:
            return url  # nothing secret, and nothing leaves this machine
        raise RegistryError(
            f"{display}: the registry asks for credentials over http:// "
            f"({neutralise(str(url.copy_with(query=None)), limit=120)}); tagkeeper asks "
            "token services over https only",
            hint="plain http is accepted only on the registry's own host, and only where "
            "the registry itself may be plain http (localhost, 127.0.0.0/8 and ::1, or "
            "the host --insecure names); check the registry URL and any proxy that "
            "rewrites the registry's answers",
        )


class Authenticator:
    """The credentials of one registry and the tokens it gave, cached per scope.

    ``sender`` sends the token requests (and learns every token, to scrub it).
    ``refused_hint`` is what to do when the registry or its token service refuses the
    credentials. ``known_realm``: a challenge to answer before the registry asks (ghcr.io
    always asks the same), which saves the first ``401`` per scope.
    """

    def __init__(
        self,
        sender: Sender,
        *,
        display: str,
        policy: RealmPolicy,
        credentials: Credentials | None,
        refused_hint: str,
        known_realm: Challenge | None = None,
    ) -> None:
        self._sender = sender
        self._display = display
        self._policy = policy
        self._credentials = credentials
        self._refused_hint = refused_hint
        self._known = known_realm
        self._basic = False  # the registry asked for basic credentials
        self._tokens: dict[str, Secret] = {}
        self._lock = threading.Lock()  # the state above (never held during a request)
        self._exchanging = threading.Lock()  # one token exchange at a time
        if credentials is not None:
            sender.protect(credentials.secret)

    @property
    def credentials(self) -> Credentials | None:
        return self._credentials

    @property
    def who(self) -> str:
        """Who is asking, for messages: ``anonymous access`` or where credentials came from."""
        creds = self._credentials
        return "anonymous access" if creds is None else f"the credentials from {creds.source}"

    def learn(self, response: httpx.Response) -> None:
        """Remember what the ``401`` of ``GET /v2/`` asks for: basic credentials, or a
        token service to ask before each first request of a scope (saving its ``401``)."""
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        with self._lock:
            if challenge.scheme == "basic":
                self._basic = True
            elif challenge.scheme == "bearer" and challenge.realm and self._known is None:
                self._known = Challenge(
                    "bearer", {k: v for k, v in challenge.params.items() if k != "scope"}
                )

    def headers(self, scope: str) -> dict[str, str]:
        """The ``Authorization`` header for a request that needs ``scope`` (may be empty).

        With a known realm and no token for the scope yet, the token is asked for first.
        """
        creds = self._credentials
        with self._lock:
            basic = self._basic
            token = self._tokens.get(scope)
        if basic and creds is not None and not creds.identity_token:
            return {"Authorization": _basic(creds)}
        if token is None and self._known is not None and not basic:
            with self._exchanging:  # parallel first requests share one exchange
                with self._lock:
                    token = self._tokens.get(scope)
                if token is None:
                    token = self._exchange(self._known, scope)
        return {"Authorization": f"Bearer {token.reveal()}"} if token else {}

    def answer(self, response: httpx.Response, scope: str, sent: Mapping[str, str]) -> str:
        """Handle the ``401`` of a request for ``scope``; returns the scope to retry with.

        A bearer challenge gets a new token (for the scope it names, else ``scope``);
        a basic one, the credentials (when there are any and they were not just
        refused). Raises :class:`AuthError` when there is nothing else to try.
        """
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        creds = self._credentials
        if challenge.scheme == "basic":
            if creds is None or creds.identity_token or "Authorization" in sent:
                raise self.refused(response, "read")
            with self._lock:
                self._basic = True
            return scope
        if challenge.scheme != "bearer":
            raise self.refused(response, "read")
        wanted = challenge.params.get("scope") or scope
        with self._exchanging:
            with self._lock:
                current = self._tokens.get(wanted)
            fresh = current is not None and sent.get("Authorization") != (
                f"Bearer {current.reveal()}"
            )
            if not fresh:  # none yet, or the one sent expired: ask (another thread may
                self._exchange(challenge, wanted)  # have done so meanwhile: then reuse)
        return wanted

    def refused(self, response: httpx.Response, what: str) -> AuthError:
        """The error for a registry that refuses these credentials to ``what``."""
        detail = describe_response(response, self._sender.scrub)
        return AuthError(
            f"{self._display}: {self.who} may not {what} this repository ({detail})",
            hint=self._refused_hint,
        )

    def _exchange(self, challenge: Challenge, scope: str) -> Secret:
        realm = challenge.realm
        if not realm:
            raise RegistryError(
                f"{self._display}: the registry asks for a bearer token but names no token "
                "service (no realm in WWW-Authenticate)",
                hint="check the registry URL and any proxy between this machine and it",
            )
        creds = self._credentials
        url = self._policy.check(realm, with_credentials=creds is not None, display=self._display)
        query: dict[str, str] = {"scope": scope}
        service = challenge.params.get("service")
        if service:
            query["service"] = service
        if creds is not None and creds.identity_token:
            response = self._sender.send(
                "POST",
                str(url),
                kind="token",
                limit=CAPS.token,
                what="the token answer",
                data={
                    **query,
                    "grant_type": "refresh_token",
                    "client_id": "tagkeeper",
                    "refresh_token": creds.secret.reveal(),
                },
            )
        else:
            auth = None if creds is None else (creds.username, creds.secret.reveal())
            response = self._sender.send(
                "GET",
                str(url.copy_merge_params(query)),
                kind="token",
                auth=auth,
                limit=CAPS.token,
                what="the token answer",
            )
        if response.status_code in (401, 403):
            raise AuthError(
                f"{self._display}: the token service refused {self.who} for {scope} "
                f"({describe_response(response, self._sender.scrub)})",
                hint=self._refused_hint,
            )
        if response.status_code != 200:
            raise RegistryError(
                f"{self._display}: the token service failed "
                f"({describe_response(response, self._sender.scrub)})",
                hint="rerun later; if it persists, check the registry URL and any proxy",
            )
        body = json_body(
            response, what=f"{self._display}: the token service", scrub=self._sender.scrub
        )
        value = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise RegistryError(f"{self._display}: the token service answered no token")
        token = Secret(value)
        self._sender.protect(token)
        check_credential(token, what=f"{self._display}: the token service's token", outside=True)
        with self._lock:
            self._tokens[scope] = token
        return token


def _basic(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.secret.reveal()}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")
