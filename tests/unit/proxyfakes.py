"""Fakes of a running nginx and Traefik for the proxies' unit tests.

:class:`FakeNginx` is the proxy process: ``runner`` answers ``-t`` (parsing the owned
file as nginx would, refusing ``weight=0``) and ``-s reload`` (loading the file's
generation and weights, optionally only after some probes, as old workers keep
answering for a moment); ``transport`` answers probe requests with the
``X-Tagkeeper-Upstream`` header nginx's snippet adds. :class:`FakeTraefik` serves the
API's view of the loaded weights (loaded after a delay in probes, as the file
provider's throttle does) and writes an access log line per probe.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from tagkeeper.deploy.proxies.base import CommandResult
from tagkeeper.deploy.proxies.model import Slot

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

SLOTS = (Slot("blue", "127.0.0.1", 8520), Slot("green", "127.0.0.1", 8521))
_SERVER_RE = re.compile(r"server (\S+) (weight=(\d+)|down);")
_GEN_RE = re.compile(r"g=([0-9a-f]{12})")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeNginx:
    path: Path
    generation: str | None = None
    weights: dict[str, int] = field(default_factory=dict)
    commands: list[list[str]] = field(default_factory=list)
    fail_test: str | None = None  # the error -t prints
    fail_reload: bool = False
    reload_lag: int = 0  # probes still answered by the old workers after a reload
    ignore_reload: bool = False  # the reload "succeeds" but nothing changes
    header: str | None = None  # answer this header instead of the real one
    interrupt_on: str | None = None  # raise KeyboardInterrupt on this command
    _lag: int = 0
    _pending: tuple[str | None, dict[str, int]] | None = None
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def runner(self, args: Sequence[str], timeout: float) -> CommandResult:
        del timeout
        self.commands.append(list(args))
        if self.interrupt_on and self.interrupt_on in args:
            raise KeyboardInterrupt
        text = self.path.read_text() if self.path.exists() else ""
        if "-t" in args:
            if self.fail_test:
                return CommandResult(1, self.fail_test)
            if "weight=0" in text:
                return CommandResult(1, 'nginx: [emerg] invalid parameter "weight=0"')
            return CommandResult(0, "")
        if self.fail_reload:
            return CommandResult(1, "nginx: [error] invalid PID number")
        if not self.ignore_reload:
            self._pending = self._parse(text)
            self._lag = self.reload_lag
            if self._lag == 0:
                self._load()
        return CommandResult(0, "")

    def _parse(self, text: str) -> tuple[str | None, dict[str, int]]:
        found = _GEN_RE.search(text)
        weights = {a: (0 if w == "down" else int(n)) for a, w, n in _SERVER_RE.findall(text)}
        return (found.group(1) if found else None), weights

    def _load(self) -> None:
        if self._pending is not None:
            self.generation, self.weights = self._pending
            self._pending = None

    def start(self) -> None:
        """nginx starts with whatever the file says."""
        self.generation, self.weights = self._parse(self.path.read_text())

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            if self._pending is not None:
                if self._lag <= 0:
                    self._load()
                self._lag -= 1
            if "x-tagkeeper-probe" not in request.headers:
                return httpx.Response(200)
            if self.header is not None:
                return httpx.Response(200, headers={"X-Tagkeeper-Upstream": self.header})
            serving = [a for a, w in self.weights.items() if w > 0]
            if not serving:
                return httpx.Response(502)
            address = serving[next(self._turn) % len(serving)]
            return httpx.Response(
                200, headers={"X-Tagkeeper-Upstream": f"{address} g={self.generation}"}
            )

        return httpx.MockTransport(handle)


@dataclass
class FakeTraefik:
    """Traefik's API and access log; it loads the owned file ``lag`` API polls late."""

    path: Path
    access_log: Path
    upstream: str = "app"
    lag: int = 2
    loaded: list[tuple[str, int]] = field(default_factory=list)
    route_to: str | None = None  # serve probes from this address whatever the weights
    _seen: str = ""
    _polls: int = 0
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def _reload(self) -> None:
        text = self.path.read_text() if self.path.exists() else ""
        if text != self._seen:
            self._polls += 1
            if self._polls < self.lag:
                return
            self._seen = text
            self._polls = 0
            names = re.findall(r"- name: (\S+)\n\s+weight: (\d+)", text)
            self.loaded = [(n, int(w)) for n, w in names]

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self._reload()
            if request.url.path.startswith("/api/http/services/"):
                if not self.loaded:
                    return httpx.Response(404)
                body = {
                    "weighted": {"services": [{"name": n, "weight": w} for n, w in self.loaded]},
                    "status": "enabled",
                    "name": f"{self.upstream}@file",
                }
                return httpx.Response(200, json=body)
            serving = [n for n, w in self.loaded if w > 0]
            port = {"app-blue": 8520, "app-green": 8521}[serving[next(self._turn) % len(serving)]]
            address = self.route_to or f"127.0.0.1:{port}"
            entry = {
                "ServiceAddr": address,
                "ServiceURL": f"http://{address}",
                "DownstreamStatus": 200,
                "Duration": 1000000,
            }
            nonce = request.headers.get("x-tagkeeper-probe")
            if nonce:
                entry["request_X-Tagkeeper-Probe"] = nonce
            with self.access_log.open("a") as log:
                log.write(json.dumps(entry) + "\n")
            return httpx.Response(200)

        return httpx.MockTransport(handle)
