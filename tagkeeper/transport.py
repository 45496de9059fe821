"""HTTP plumbing shared by the registry adapters.

- :func:`build_client` makes the one ``httpx.Client`` a command uses; adapters receive it.
- :func:`check_base_url` accepts ``https://`` anywhere and ``http://`` only on loopback.
- :class:`Sender` sends a request with retries: exponential backoff with full jitter on
  5xx answers, timeouts and connection errors, honouring ``retry-after``. Sleep, clock and
  randomness are injected, so tests run instantly and deterministically. Transport errors
  that outlive the retries become :class:`~tagkeeper.errors.RegistryError` (with any
  secret scrubbed from the message).
- :func:`json_body` reads the JSON of an answer the caller expects to be JSON; anything
  else (a proxy's or captive portal's HTML page) is a :class:`RegistryError` that says so.
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx

from tagkeeper import __version__
from tagkeeper.errors import RegistryError, UsageError

if TYPE_CHECKING:
    from tagkeeper.inventory import RequestStats
    from tagkeeper.secret import Secret

Sleep = Callable[[float], None]
Clock = Callable[[], float]

RETRY_STATUSES = frozenset({500, 502, 503, 504})
USER_AGENT = f"tagkeeper/{__version__}"


class NoAnswer(RegistryError):
    """No answer came (connection refused or reset, timeouts) once the retries were spent."""


def build_client(
    *, timeout: float = 30.0, max_connections: int = 16, verify: bool = True
) -> httpx.Client:
    """The HTTP client a command hands to its adapters (thread-safe, pooled)."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=True,
        verify=verify,
    )


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_base_url(url: str, *, what: str) -> str:
    """``url`` without a trailing slash, or :class:`UsageError` when it cannot be used.

    ``https://`` is accepted for any host; plain ``http://`` only for loopback hosts
    (local emulators and registries), so a token never travels in clear text.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UsageError(f"{what} {url!r} is not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(
            f"{what} {url!r} is not an http(s) URL", hint="write it as https://host[:port][/path]"
        )
    if parsed.scheme == "http" and not is_loopback_host(parsed.host):
        raise UsageError(
            f"{what} {url!r} uses plain http:// on a non-loopback host",
            hint="use https://; http:// is accepted only for localhost, 127.0.0.0/8 and ::1",
        )
    return url.rstrip("/")


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``retry-after`` header (seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry transient failures.

    ``attempts`` counts the first try. The wait before retry ``n`` (1-based) is drawn
    uniformly from ``[0, min(cap, base * 2**(n-1))]`` ("full jitter"), unless the answer
    says ``retry-after``; a ``retry-after`` longer than ``max_retry_after`` is not waited
    for (the answer is returned as it is).
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 20.0
    max_retry_after: float = 120.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap, self.base * (2 ** (retry - 1))))


class Sender:
    """Sends requests through an ``httpx.Client`` with retries and request accounting.

    Thread-safe as long as the client is (``httpx.Client`` is). ``secret`` is scrubbed
    from every error message this class builds.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        stats: RequestStats,
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.time,
        rng: random.Random | None = None,
        secret: Secret | None = None,
        where: str = "the registry",
    ) -> None:
        self.client = client
        self.stats = stats
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._secrets: list[Secret] = [secret] if secret else []
        self._where = where
        self._lock = threading.Lock()

    def count(self, kind: str) -> None:
        with self._lock:
            self.stats.count(kind)

    def protect(self, secret: Secret) -> None:
        """Scrub ``secret`` too from every message built from now on (a registry token
        received during the run, a registry password)."""
        if not secret:
            return
        with self._lock:
            if secret not in self._secrets:
                self._secrets.append(secret)

    def scrub(self, text: str) -> str:
        with self._lock:
            secrets = list(self._secrets)
        for secret in secrets:
            text = secret.scrub(text)
        return text

    def _jitter(self, retry: int) -> float:
        with self._lock:
            return self.retry.backoff(retry, self._rng)

    def send(
        self,
        method: str,
        url: str,
        *,
        kind: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request; retry 5xx, timeouts and connection errors.

        Redirects are never followed here, whatever the client's setting: a request that
        carries credentials (a header, a form body) must not be replayed to wherever a
        ``3xx`` points. The one kind of request that may follow them (a blob read) does
        so itself (:mod:`tagkeeper.registries.distribution`).

        Returns the last response (a 5xx too, once the retries are spent: the caller
        decides what it means). Raises :class:`RegistryError` when no response came.
        """
        attempt = 0
        while True:
            attempt += 1
            self.count(kind)
            try:
                response = self.client.request(
                    method,
                    url,
                    headers=headers,
                    params=params,
                    auth=auth,
                    data=data,
                    follow_redirects=False,
                )
            except httpx.TransportError as exc:
                if attempt >= self.retry.attempts:
                    reason = self.scrub(f"{type(exc).__name__}: {exc}")
                    raise NoAnswer(
                        f"{method} {self.scrub(url)} failed after {attempt} attempts ({reason})",
                        hint=f"check that {self._where} is reachable, then rerun",
                    ) from None
                self.sleep(self._jitter(attempt))
                continue
            if response.status_code not in RETRY_STATUSES or attempt >= self.retry.attempts:
                return response
            wait = parse_retry_after(response.headers.get("retry-after"), now=self.clock())
            if wait is not None and wait > self.retry.max_retry_after:
                return response
            self.sleep(wait if wait is not None else self._jitter(attempt))


def describe_response(response: httpx.Response, scrub: Callable[[str], str]) -> str:
    """``"<status> <message>"`` from a response, for error messages (secrets scrubbed)."""
    message = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw = body.get("message")
        if raw is None and isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            raw = first.get("message") if isinstance(first, dict) else first
        message = str(raw) if raw is not None else ""
    elif response.text and len(response.text) < 300:
        message = response.text.strip()
    text = f"HTTP {response.status_code}" + (f": {message}" if message else "")
    return scrub(text)


PROXY_HINT = (
    "something other than the API answered: check --api-url / --registry-url, and any "
    "HTTPS_PROXY or captive portal between this machine and the registry"
)


def json_body(
    response: httpx.Response,
    *,
    what: str,
    scrub: Callable[[str], str] = lambda text: text,
    hint: str = PROXY_HINT,
) -> Any:
    """The decoded JSON of ``response``, or :class:`RegistryError` when it is not JSON.

    ``what`` names the answer for the message (e.g. ``"ghcr.io/o/app: the versions
    list"``). The message names the request and the content type that came instead.
    """
    try:
        return response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are ValueErrors
        pass
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    got = f"{content_type} content" if content_type else "content without a content type"
    try:
        request = response.request
        asked = f"the answer to {request.method} {request.url.copy_with(query=None)}"
    except RuntimeError:  # a response built by hand has no request
        asked = "the answer"
    raise RegistryError(
        scrub(f"{what}: {asked} (HTTP {response.status_code}) is not JSON but {got}"),
        hint=hint,
    )
