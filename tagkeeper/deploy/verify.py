"""The one health and smoke-check engine: the CI gate, the candidate pre-check and every
check after a switch.

:func:`verify` polls every health path every ``interval`` until ``successes`` rounds in a
row are healthy, within ``timeout``; then it runs the smoke checks once each. It is given
its collaborators: an ``httpx.Client``, a monotonic clock and a sleep (tests pass fakes),
an optional ``alive()`` probe that says why a container is gone (exited, OOM-killed,
restarted), which fails the check at once instead of waiting out the timeout, and an
optional ``log_tail()`` read when a check fails.

It returns a :class:`VerifyReport`; it never prints and never raises for a failed check.
Answers are read up to :data:`MAX_BODY` bytes; their text reaches the report only as
short, printable, masked excerpts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagkeeper.deploy.checks import Masker, excerpt, judge_health, judge_smoke, log_lines
from tagkeeper.errors import TagkeeperError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import httpx

    from tagkeeper.deploy.checks import Request
    from tagkeeper.deploy.spec import DeploySpec

Clock = Callable[[], float]
Sleep = Callable[[float], None]
Alive = Callable[[], "str | None"]
LogTail = Callable[[], str]
Progress = Callable[[str], None]

MAX_BODY = 64 * 1024  # a health or smoke answer larger than this is cut: it is judged on less
HEALTH_REQUEST_TIMEOUT = 5.0  # one health request; the whole wait is bounded by `timeout`
FAST_POLL = 0.1  # after a switch, poll this often until the first healthy answer


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """How health is polled."""

    paths: tuple[str, ...] = ("/actuator/health",)
    interval: float = 2.0
    successes: int = 3
    timeout: float = 120.0

    @classmethod
    def from_spec(cls, spec: DeploySpec) -> HealthPolicy:
        return cls(spec.health, spec.interval, spec.successes, spec.health_timeout)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: a health path or a smoke check. ``seconds``: from the start of verify
    (health) or of that request (smoke)."""

    name: str
    kind: str  # "health" or "smoke"
    ok: bool
    why: str
    seconds: float
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "ok": self.ok,
            "why": self.why,
            "seconds": round(self.seconds, 3),
            "attempts": self.attempts,
        }


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :func:`verify` found. ``healthy_after``: seconds to the first healthy round."""

    target: str
    ok: bool
    reason: str
    checks: tuple[CheckResult, ...]
    seconds: float
    healthy_after: float | None = None
    log_tail: tuple[str, ...] | None = None  # None: no container to read
    container: str | None = None

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(check for check in self.checks if not check.ok)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "container": self.container,
            "ok": self.ok,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "healthy_after": None if self.healthy_after is None else round(self.healthy_after, 3),
            "checks": [check.as_dict() for check in self.checks],
            "log_tail": None if self.log_tail is None else list(self.log_tail),
        }


@dataclass
class _Path:
    name: str
    attempts: int = 0
    why: str = "not asked yet"
    ok: bool = False
    passed_at: float | None = None


@dataclass
class _Run:
    base_url: str
    client: httpx.Client
    clock: Clock
    masker: Masker
    started: float = 0.0
    notes: list[str] = field(default_factory=list)

    def elapsed(self) -> float:
        return self.clock() - self.started

    def get(
        self, path: str, timeout: float, *, method: str = "GET", request: Request | None = None
    ) -> tuple[int, bytes] | str:
        """``(status, body)``, or why there is no answer."""
        import httpx

        headers = dict(request.headers) if request is not None else {}
        body = request.body.encode() if request is not None and request.body is not None else None
        try:
            built = self.client.build_request(
                method,
                self.base_url + path,
                headers=headers,
                content=body,
                timeout=httpx.Timeout(max(timeout, 0.05)),
            )
            response = self.client.send(built, stream=True, follow_redirects=False)
            try:
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) >= MAX_BODY:
                        break
                return response.status_code, bytes(data[:MAX_BODY])
            finally:
                response.close()
        except httpx.ConnectError:
            return "connection refused"
        except httpx.TimeoutException:
            return f"no answer within {_secs(timeout)}"
        except httpx.RemoteProtocolError:
            return "the connection closed without an answer"
        except httpx.HTTPError as exc:
            return f"the request failed ({type(exc).__name__})"


def verify(
    base_url: str,
    policy: HealthPolicy,
    smoke: Sequence[Request] = (),
    *,
    client: httpx.Client,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    alive: Alive | None = None,
    log_tail: LogTail | None = None,
    masker: Masker | None = None,
    progress: Progress | None = None,
    fast_until_healthy: bool = False,
    container: str | None = None,
) -> VerifyReport:
    """Check the service at ``base_url`` (``http://127.0.0.1:8520``); see the module docs.

    ``fast_until_healthy``: poll every :data:`FAST_POLL` seconds until the first healthy
    round (after a switch, so the gap is measured to the moment the new one answers), then
    every ``interval``.
    """
    run = _Run(base_url.rstrip("/"), client, clock, masker or Masker())
    run.started = clock()
    paths = [_Path(p) for p in policy.paths]
    healthy_after, reason = _poll_health(
        run, policy, paths, sleep=sleep, alive=alive, progress=progress, fast=fast_until_healthy
    )
    checks = [
        CheckResult(
            name=f"health {p.name}",
            kind="health",
            ok=reason is None,
            # a path whose last answer was fine failed because of the container or the
            # count of rounds: say that, not the last answer
            why=run.masker.scrub(p.why if reason is None or not p.ok else reason),
            seconds=p.passed_at if p.passed_at is not None and reason is None else run.elapsed(),
            attempts=p.attempts,
        )
        for p in paths
    ]
    if reason is None:
        for request in smoke:
            result = _smoke(run, request)
            checks.append(result)
            if progress is not None:
                progress(f"smoke {result.name}: {'ok' if result.ok else 'FAILED'} ({result.why})")
        failed = [c for c in checks if not c.ok]
        if failed:
            reason = f"smoke check {failed[0].name!r} failed: {failed[0].why}"
            if len(failed) > 1:
                reason += f" (and {len(failed) - 1} more)"
        gone = alive() if alive is not None else None
        if gone is not None and reason is None:
            reason = f"the container {gone} during the smoke checks"
    tail: tuple[str, ...] | None = None
    if reason is not None and log_tail is not None:
        try:
            tail = tuple(log_lines(log_tail(), run.masker))
        except TagkeeperError as exc:  # a log that cannot be read must not hide why
            tail = (f"(the log could not be read: {exc.message})",)
    return VerifyReport(
        target=base_url,
        ok=reason is None,
        reason=run.masker.scrub(reason)
        if reason is not None
        else "healthy"
        + (f", {len(smoke)} smoke check{'s' if len(smoke) != 1 else ''} passed" if smoke else ""),
        checks=tuple(checks),
        seconds=run.elapsed(),
        healthy_after=healthy_after,
        log_tail=tail,
        container=container,
    )


def _poll_health(
    run: _Run,
    policy: HealthPolicy,
    paths: list[_Path],
    *,
    sleep: Sleep,
    alive: Alive | None,
    progress: Progress | None,
    fast: bool,
) -> tuple[float | None, str | None]:
    """``(seconds to the first healthy round, None)`` or ``(..., why it failed)``."""
    streak = 0
    healthy_after: float | None = None
    deadline = run.started + policy.timeout
    while True:
        if alive is not None:
            gone = alive()
            if gone is not None:
                return healthy_after, f"the container {gone}"
        round_ok = True
        for path in paths:
            remaining = deadline - run.clock()
            answer = run.get(path.name, min(HEALTH_REQUEST_TIMEOUT, max(remaining, 0.05)))
            path.attempts += 1
            if isinstance(answer, str):
                ok, why = False, answer
            else:
                ok, why = judge_health(*answer)
                if not ok and answer[1]:
                    why += f"; body: {excerpt(answer[1], run.masker)!r}"
            path.why, path.ok = why, ok
            round_ok = round_ok and ok
        now = run.elapsed()
        if round_ok:
            streak += 1
            if healthy_after is None:
                healthy_after = now
                if progress is not None:
                    progress(f"health: healthy after {_secs(now)}")
            if streak >= policy.successes:
                for path in paths:
                    path.passed_at = now
                return healthy_after, None
        else:
            if streak and progress is not None:
                progress(f"health: unhealthy again after {streak} healthy round(s)")
            streak = 0
        if run.clock() >= deadline:
            gone = alive() if alive is not None else None
            if gone is not None:
                return healthy_after, f"the container {gone}"
            worst = next((p for p in paths if not p.ok), paths[0])
            return healthy_after, (
                f"not healthy within {_secs(policy.timeout)}: {worst.name} {worst.why}"
                if streak == 0
                else f"only {streak} of {policy.successes} healthy rounds in a row within "
                f"{_secs(policy.timeout)}"
            )
        pause = FAST_POLL if fast and healthy_after is None else policy.interval
        sleep(max(0.0, min(pause, deadline - run.clock())))


def _smoke(run: _Run, request: Request) -> CheckResult:
    check = request.check
    start = run.clock()
    answer = run.get(check.path, check.timeout, method=check.method, request=request)
    seconds = run.clock() - start
    if isinstance(answer, str):
        ok, why = False, answer
    else:
        ok, why = judge_smoke(check, answer[0], answer[1], run.masker)
    return CheckResult(check.name, "smoke", ok, run.masker.scrub(why), seconds)


def _secs(value: float) -> str:
    if value >= 10 or value == int(value):
        return f"{value:.0f}s"
    return f"{value:.1f}s" if value >= 1 else f"{value:.2f}s"
