"""The emulator's limits and faults: GitHub's primary and secondary rate limits, injected
failures, drops, hangs and hooks that let another job act between requests."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tests.emulators.ghcr.server import Request, Response, registry_error, rest_error
from tests.emulators.ghcr.state import (
    RATE_DOCS,
    SECONDARY_DOCS,
    SECONDARY_MESSAGE,
    EmulatorState,
    Token,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping


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

    def matches(self, surface: str, kind: str, method: str, query: Mapping[str, list[str]]) -> bool:
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
class _PrimaryWindow:
    start: float
    used: int = 0
    exhausted: bool = False


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


def _fs(values: Iterable[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


class Limits(EmulatorState):
    """Rate limits (primary per token, secondary per endpoint and for deletes) and the
    faults a test injects."""

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
