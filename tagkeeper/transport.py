"""HTTP plumbing shared by the registry adapters.

- :func:`build_client` makes the one ``httpx.Client`` a command uses; adapters receive it.
- :func:`check_base_url` accepts ``https://`` anywhere and ``http://`` only on loopback.
- :class:`Sender` sends a request with retries: exponential backoff with full jitter on
  5xx answers, timeouts and connection errors, honouring ``retry-after`` up to
  ``max_wait`` (a longer wait stops the run: :class:`~tagkeeper.errors.RateLimited`).
  Every answer is read bounded (:mod:`tagkeeper.bounded`: a cap per kind of answer,
  counted after decompression, and a deadline per attempt); redirects are never
  followed. Sleep, clock and randomness are injected, so tests run instantly and
  deterministically. Transport errors that outlive the retries become
  :class:`~tagkeeper.errors.RegistryError` (with any secret scrubbed from the message).
- :func:`json_body` reads the JSON of an answer the caller expects to be JSON; anything
  else (a proxy's or captive portal's HTML page, a hostile nesting) is a
  :class:`RegistryError` that says so. :func:`describe_response` quotes what an error
  answer says, neutralised (:func:`tagkeeper.untrusted.neutralise`).
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx

from tagkeeper import __version__
from tagkeeper.bounded import CAPS, BadEncoding, TooLarge, TooSlow, arm, deadline, loaded, read_body
from tagkeeper.errors import RateLimited, RegistryError, UsageError
from tagkeeper.untrusted import NotJson, loads, neutralise

if TYPE_CHECKING:
    from tagkeeper.inventory import RequestStats
    from tagkeeper.secret import Secret

Sleep = Callable[[float], None]
Clock = Callable[[], float]

RETRY_STATUSES = frozenset({500, 502, 503, 504})
USER_AGENT = f"tagkeeper/{__version__}"
DEFAULT_MAX_WAIT = 300.0  # seconds a run waits when told to (retry-after, a limit's reset)


class NoAnswer(RegistryError):
    """No answer came (connection refused or reset, timeouts) once the retries were spent.

    ``cause`` is the last transport error (to tell, say, a certificate that is not
    trusted from a host that speaks plain http)."""

    cause: BaseException | None = None


class BadAnswer(RegistryError):
    """An answer that cannot be read as it came: larger than its cap, or encoded in a way
    tagkeeper did not ask for."""


class AnswerTooLarge(BadAnswer):
    """An answer was larger than tagkeeper reads for its kind (it was not read to its end)."""


def build_client(
    *,
    timeout: float = 30.0,
    max_connections: int = 16,
    verify: bool = True,
    insecure_hosts: Iterable[str] = (),
) -> httpx.Client:
    """The HTTP client a command hands to its adapters (thread-safe, pooled).

    ``insecure_hosts`` (``host[:port]``, what ``--insecure`` names): https to exactly these
    hosts does not verify the certificate; every other host is verified as usual. Every
    connection keeps the per-request deadline of :class:`Sender`
    (:func:`tagkeeper.bounded.arm`).
    """
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    mounts = {
        f"https://{host}": httpx.HTTPTransport(verify=False, limits=limits)
        for host in insecure_hosts
    }
    client = httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=limits,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=True,
        verify=verify,
        mounts=mounts or None,
    )
    arm(client)
    return client


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
    says ``retry-after`` (waited up to the sender's ``max_wait``). ``deadline``: the
    seconds one attempt may take, answer included, however slowly it arrives.
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 20.0
    deadline: float = 120.0

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
        max_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        self.client = client
        self.stats = stats
        self.retry = retry or RetryPolicy()
        self.max_wait = max_wait
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
        limit: int = CAPS.default,
        what: str | None = None,
        attempts: int | None = None,
    ) -> httpx.Response:
        """Send one request; retry 5xx, timeouts and connection errors.

        Redirects are never followed here, whatever the client's setting: a request that
        carries credentials (a header, a form body) must not be replayed to wherever a
        ``3xx`` points. The one kind of request that may follow them (a blob read) does
        so itself (:mod:`tagkeeper.registries.distribution`).

        The answer is read whole before it is returned, at most ``limit`` bytes after
        decompression (an error answer at most :attr:`~tagkeeper.bounded.Caps.error`
        bytes, the rest dropped), within the retry policy's deadline. ``what`` names the
        answer in messages (``"the tag list"``).

        Returns the last response (a 5xx too, once the retries are spent: the caller
        decides what it means). Raises :class:`NoAnswer` when no response came,
        :class:`AnswerTooLarge` for an answer over its cap, :class:`RegistryError` for a
        request that cannot be sent or an answer that cannot be decoded, and
        :class:`~tagkeeper.errors.RateLimited` when told to wait longer than
        ``max_wait``. ``attempts`` overrides the retry policy's count for this request.
        """
        tries = attempts or self.retry.attempts
        shown = neutralise(self.scrub(url), limit=200)
        sent = {"Accept-Encoding": "gzip, deflate", **(headers or {})}
        attempt = 0
        while True:
            attempt += 1
            self.count(kind)
            try:
                request = self.client.build_request(
                    method, url, headers=sent, params=params, data=data
                )
                response = self._exchange(request, auth, limit)
            except httpx.InvalidURL as exc:
                raise RegistryError(
                    f"cannot send {method} {shown}: {neutralise(self.scrub(str(exc)))}",
                    hint="the registry named something that is not a valid URL; check "
                    "the registry URL and any proxy that rewrites its answers",
                ) from None
            except TooLarge as exc:
                raise AnswerTooLarge(
                    f"{what or 'the answer'} to {method} {shown} is {exc}; tagkeeper stopped "
                    "reading it",
                    hint="a registry does not send that much; check the registry URL and "
                    "any proxy between this machine and the registry",
                ) from None
            except BadEncoding as exc:
                raise BadAnswer(
                    f"{what or 'the answer'} to {method} {shown} cannot be read: {exc}",
                    hint="check the registry URL and any proxy between this machine and the "
                    "registry",
                ) from None
            except TooSlow as exc:
                raise NoAnswer(
                    f"{what or 'the answer'} to {method} {shown} {exc} (it arrived too "
                    "slowly)",
                    hint=f"check that {self._where} is reachable and answering, then rerun",
                ) from None
            except httpx.TransportError as exc:
                if attempt >= tries:
                    reason = neutralise(self.scrub(f"{type(exc).__name__}: {exc}"))
                    error = NoAnswer(
                        f"{method} {shown} failed after {attempt} attempts ({reason})",
                        hint=f"check that {self._where} is reachable, then rerun",
                    )
                    error.cause = exc
                    raise error from None
                self.sleep(self._jitter(attempt))
                continue
            if response.status_code not in RETRY_STATUSES or attempt >= tries:
                return response
            wait = parse_retry_after(response.headers.get("retry-after"), now=self.clock())
            if wait is not None and wait > self.max_wait:
                raise RateLimited(
                    f"{method} {shown} answered {response.status_code} and asks to wait "
                    f"{wait:.0f} s, longer than --max-wait ({self.max_wait:.0f} s)",
                    hint="rerun later (the next run continues where this one stopped), or "
                    "raise --max-wait",
                )
            self.sleep(wait if wait is not None else self._jitter(attempt))

    def _exchange(
        self, request: httpx.Request, auth: httpx.Auth | tuple[str, str] | None, limit: int
    ) -> httpx.Response:
        """Send ``request`` and read its answer, bounded, within the deadline."""
        with deadline(self.retry.deadline):
            response = self.client.send(request, auth=auth, stream=True, follow_redirects=False)
            try:
                if response.status_code >= 300:
                    try:
                        body = read_body(response, CAPS.error)
                    except TooLarge:  # only ever shown, in part: the start is enough
                        body = b""
                else:
                    body = read_body(response, limit)
            finally:
                response.close()
        return loaded(response, body)


def json_of(response: httpx.Response) -> Any:
    """The JSON of ``response`` when it is JSON, else ``None`` (for reading error codes)."""
    try:
        return loads(response.content)
    except NotJson:
        return None


def describe_response(response: httpx.Response, scrub: Callable[[str], str]) -> str:
    """``"<status> <message>"`` from a response, for error messages (secrets scrubbed)."""
    message = ""
    body = json_of(response)
    if isinstance(body, dict):
        raw = body.get("message")
        if raw is None and isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            raw = first.get("message") if isinstance(first, dict) else first
        message = str(raw) if raw is not None else ""
    elif response.text and len(response.text) < 300:
        message = response.text.strip()
    text = f"HTTP {response.status_code}" + (f": {message}" if message else "")
    return neutralise(scrub(text), limit=300)


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
    list"``). The message names the request and the content type that came instead, or
    says the document is nested too deeply to read.
    """
    try:
        return loads(response.content)
    except NotJson as exc:
        reason = str(exc)
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    got = (
        f"{neutralise(content_type, limit=80)} content"
        if content_type
        else "content without a content type"
    )
    try:
        request = response.request
        asked = f"the answer to {request.method} {request.url.copy_with(query=None)}"
    except RuntimeError:  # a response built by hand has no request
        asked = "the answer"
    asked = neutralise(scrub(asked), limit=200)
    if "nested" in reason:
        raise RegistryError(
            f"{what}: {asked} (HTTP {response.status_code}): {reason}",
            hint="a registry does not send such a document; check the registry URL and "
            "any proxy between this machine and the registry",
        )
    raise RegistryError(
        f"{what}: {asked} (HTTP {response.status_code}) is not JSON but {got}",
        hint=hint,
    )
