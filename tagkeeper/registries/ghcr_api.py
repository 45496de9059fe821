"""GitHub's Packages REST API for one container package: who owns it, and every request
sent under GitHub's rate limits.

:class:`PackagesApi` is the REST half of the GHCR backend (the ``/v2`` half is the shared
:class:`~tagkeeper.registries.distribution.Registry`):

- the token's kind from its documented prefix (:func:`token_kind`, never its value) and,
  for a classic PAT, its scopes (``X-OAuth-Scopes`` of ``GET /user``);
- the owner's kind: the token's own user (``/user/packages/...``, which also works for
  private user packages), an organisation (``/orgs/...``) or another user (``/users/...``);
- :meth:`PackagesApi.rest`: every request, through the primary limit (wait for the reset
  when ``max_wait`` allows, else :class:`~tagkeeper.errors.RateLimited`), the secondary
  limit (wait as told, up to ``max_limit_retries`` times) and, for deletes, the
  :class:`~tagkeeper.registries.pacing.DeletePacer`;
- :meth:`PackagesApi.expect_ok`: GitHub's refusals as errors that say what to fix.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from tagkeeper.errors import AuthError, RateLimited, RegistryError
from tagkeeper.transport import describe_response, json_body, json_of, parse_retry_after

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import httpx

    from tagkeeper.registries.pacing import DeletePacer
    from tagkeeper.secret import Secret
    from tagkeeper.transport import Clock, Sender, Sleep

API_VERSION = "2022-11-28"
LOW_REMAINING = 20  # below this many API requests left, spread the rest until the reset

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


def permission_hint(kind: TokenKind) -> str:
    """How to give a token of ``kind`` the right to delete package versions."""
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


def read_hint(kind: TokenKind) -> str:
    """How to give a token of ``kind`` the right to read the package."""
    return permission_hint(kind).replace("delete:packages", "read:packages")


class RateBudget:
    """The primary rate limit as GitHub's last answer told it (``x-ratelimit-remaining``
    and ``-reset``), shared by every package of a run. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.remaining: int | None = None
        self.reset: float | None = None

    def note(self, remaining: int | None, reset: float | None) -> None:
        with self._lock:
            self.remaining, self.reset = remaining, reset

    def read(self) -> tuple[int | None, float | None]:
        """``(remaining, reset)``; ``(None, None)`` until an answer said them."""
        with self._lock:
            return self.remaining, self.reset


class GhcrSession:
    """What one run learns about GitHub once, whatever the number of packages: who the
    token belongs to (``GET /user``), each owner's kind (``GET /users/OWNER``) and the
    primary rate limit's :class:`RateBudget`. Give the same session to every
    :class:`PackagesApi` of a run (one token per session)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.identified = False
        self.login: str | None = None
        self.scopes: frozenset[str] | None = None
        self.owners: dict[str, OwnerKind] = {}
        self.budget = RateBudget()


class PackagesApi:
    """The Packages REST API for the package ``owner/package`` (see the module docstring).

    Thread-safe: the owner lookup holds a lock across its requests; the rate-limit
    state is kept under another that is never held long.
    """

    def __init__(
        self,
        sender: Sender,
        *,
        display: str,
        owner: str,
        package: str,
        api_url: str,
        token: Secret | None,
        pacer: DeletePacer,
        max_wait: float,
        sleep: Sleep,
        clock: Clock,
        max_limit_retries: int = 8,
        session: GhcrSession | None = None,
    ) -> None:
        self.sender = sender
        self.display = display
        self.owner = owner
        self.package = package
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.kind = token_kind(token)
        self.pacer = pacer
        self.max_wait = max_wait
        self.sleep = sleep
        self.clock = clock
        self.max_limit_retries = max_limit_retries
        self.session = session or GhcrSession()
        self._owner_kind: OwnerKind | None = None
        self._base: str | None = None
        self._lock = self.session.lock

    @property
    def login(self) -> str | None:
        return self.session.login

    @property
    def scopes(self) -> frozenset[str] | None:
        return self.session.scopes

    def scrub(self, text: str) -> str:
        return self.sender.scrub(text)

    def json(self, response: httpx.Response, what: str) -> Any:
        """The JSON of an answer that must be JSON (else a RegistryError with a hint)."""
        return json_body(response, what=f"{self.display}: {what}", scrub=self.scrub)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token.reveal()}"
        return headers

    # -- who --------------------------------------------------------------------------

    def identify(self) -> None:
        """Ask ``GET /user`` who the token belongs to (once)."""
        with self._lock:
            if self.session.identified:
                return
            self.session.identified = True
            if not self.token:
                return
            response = self.rest("GET", f"{self.api_url}/user", kind="user")
            if response.status_code == 401:
                raise AuthError(
                    f"GitHub rejected the token ({describe_response(response, self.scrub)})",
                    hint="the token is invalid or expired; create a new one",
                )
            if response.status_code == 200:
                body = self.json(response, "the token's user")
                login = body.get("login") if isinstance(body, dict) else None
                self.session.login = login if isinstance(login, str) else None
                scopes = response.headers.get("x-oauth-scopes")
                if scopes is not None:
                    self.session.scopes = frozenset(
                        s.strip() for s in scopes.split(",") if s.strip()
                    )
            # 403 "Resource not accessible by integration": a GITHUB_TOKEN; no login.

    def owner_segment(self, owner: str) -> tuple[OwnerKind, str]:
        """The owner's kind and its API URL (``.../user``, ``.../orgs/O``, ``.../users/O``),
        asked once per run (the session remembers it)."""
        with self._lock:
            self.identify()
            quoted = quote(owner, safe="")
            if self.login is not None and self.login.lower() == owner.lower():
                return "self", f"{self.api_url}/user"
            kind = self.session.owners.get(owner.lower())
            if kind is None:
                response = self.rest("GET", f"{self.api_url}/users/{quoted}", kind="user")
                if response.status_code == 404:
                    raise RegistryError(
                        f"{self.display}: GitHub has no user or organisation {owner!r}",
                        hint="check the owner part of the image name",
                    )
                self.expect_ok(response, f"looking up the owner {owner!r}")
                body = self.json(response, f"the owner {owner!r}")
                is_org = isinstance(body, dict) and body.get("type") == "Organization"
                kind = "org" if is_org else "user"
                self.session.owners[owner.lower()] = kind
            segment = "orgs" if kind == "org" else "users"
            return kind, f"{self.api_url}/{segment}/{quoted}"

    def packages_base(self) -> str:
        """The URL of the package (``.../packages/container/<name>``), found once."""
        with self._lock:
            if self._base is not None:
                return self._base
            self._owner_kind, owner_url = self.owner_segment(self.owner)
            encoded = quote(self.package, safe="")
            self._base = f"{owner_url}/packages/container/{encoded}"
            return self._base

    @property
    def owner_kind(self) -> OwnerKind:
        self.packages_base()
        if self._owner_kind is None:  # pragma: no cover - set by packages_base
            raise RegistryError(f"{self.display}: the owner kind is unknown")
        return self._owner_kind

    def expect_ok(self, response: httpx.Response, doing: str) -> None:
        """Raise for an answer other than 2xx, with what to do about it."""
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
                hint=read_hint(self.kind),
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

    def missing_permission(self, response: httpx.Response) -> tuple[str, str]:
        """What a 403 on a delete says is missing, and how to fix it."""
        body = json_of(response)
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
        accepted = (
            response.headers.get("x-accepted-oauth-scopes", "")
            + " "
            + response.headers.get("x-accepted-github-permissions", "")
        ).lower()
        if self.kind == "fine-grained":
            return "GitHub Packages does not accept fine-grained tokens", permission_hint(
                "fine-grained"
            )
        if self.kind == "classic":
            scopes = self.scopes
            if "delete:packages" in message or (
                "delete:packages" in accepted
                and (scopes is None or "delete:packages" not in scopes)
            ):
                return "the token lacks the delete:packages scope", permission_hint("classic")
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
                "the repository lacks the Admin role in the package's 'Manage Actions access'",
                permission_hint("github-token"),
            )
        return "the token may not delete versions of this package", permission_hint(self.kind)

    # -- rate limits ------------------------------------------------------------------

    def _note_limits(self, response: httpx.Response) -> None:
        remaining = response.headers.get("x-ratelimit-remaining")
        reset = response.headers.get("x-ratelimit-reset")
        if remaining is None or reset is None:
            return
        try:
            left, at = int(remaining), float(reset)
        except ValueError:
            return
        self.session.budget.note(left, at)

    @staticmethod
    def limit_kind(response: httpx.Response) -> Literal["primary", "secondary"] | None:
        """Which rate limit (if any) a ``403``/``429`` answer is."""
        if response.status_code not in (403, 429):
            return None
        body = json_of(response)
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
        remaining, reset = self.session.budget.read()
        if remaining is None or reset is None:
            return
        wait = reset - self.clock()
        if wait <= 0:
            return
        if remaining <= 0:
            if wait + 1 <= self.max_wait:
                self.sleep(wait + 1)
                self.session.budget.note(None, None)
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

    def _told_to_wait(self, seconds: float) -> RateLimited:
        return RateLimited(
            f"{self.display}: GitHub's secondary rate limit asks to wait {seconds:.0f} s, "
            f"longer than --max-wait ({self.max_wait:.0f} s)",
            hint="rerun later (the next run continues where this one stopped), or raise "
            "--max-wait",
        )

    def rest(
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
                if wait > self.max_wait:
                    self.pacer.released()
                    raise self._told_to_wait(wait)
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
            limit = self.limit_kind(response)
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
                wait = retry_after if retry_after is not None else 60.0
                if wait > self.max_wait:
                    raise self._told_to_wait(wait)
                self.sleep(wait)
            if limited > self.max_limit_retries:
                raise RegistryError(
                    f"{self.display}: GitHub kept answering with its secondary rate limit "
                    f"({describe_response(response, self.scrub)})",
                    hint="wait a few minutes, then rerun",
                )
