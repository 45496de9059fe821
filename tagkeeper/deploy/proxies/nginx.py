"""nginx: the owned file is an ``upstream`` block (and a probe ``map``) in ``http {}``.

The file tagkeeper owns is ``include``d in the ``http {}`` block (see ``proxy-snippet``)::

    upstream app {
        server 127.0.0.1:8520 weight=90;
        server 127.0.0.1:8521 weight=10;
    }
    map $http_x_tagkeeper_probe $tagkeeper_probe_app {
        ""      "";
        default "$upstream_addr g=3f9a0c2b71de";
    }

nginx refuses ``weight=0``: a slot that takes no traffic is written ``down``. The
``map`` gives a value only to requests that carry ``X-Tagkeeper-Probe``; the server
block of the snippet sends it back as ``X-Tagkeeper-Upstream`` (``add_header`` leaves
out a header whose value is empty, so ordinary clients never see it). A probe's answer
thus names the slot that answered and the generation of the file the worker that
served it loaded, which is how a switch is confirmed through the proxy: after
``nginx -s reload``, old workers finish their requests while new ones start, so
tagkeeper waits for several probes in a row, each on a new connection, that come from
the new generation and only from slots that should take traffic.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import TYPE_CHECKING, ClassVar

import httpx

from tagkeeper.deploy.proxies.base import (
    CommandRunner,
    FileProxy,
    Parsed,
    Timing,
    Unreadable,
    run_command,
)
from tagkeeper.deploy.proxies.model import LiveState, ProxySwitchFailed, shown

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from pathlib import Path

    from tagkeeper.deploy.proxies.model import Slot, Weights

PROBE_HEADER = "X-Tagkeeper-Probe"
# new answers for 0.3 s in a row: nginx's old workers accept for ~100 ms after a reload
NGINX_TIMING = Timing(confirm_timeout=5.0, confirm_probes=5, confirm_settle=0.3)
ANSWER_HEADER = "X-Tagkeeper-Upstream"
_ANSWER_RE = re.compile(r"(?P<addrs>[0-9A-Za-z.:\[\], _-]{0,400}) g=(?P<gen>[0-9a-f]{12})")
_UPSTREAM_RE = re.compile(r"upstream\s+(?P<name>[A-Za-z0-9_.-]+)\s*\{(?P<body>[^{}]*)\}", re.S)
_SERVER_RE = re.compile(r"server\s+(?P<addr>[^\s;]+)(?P<params>[^;]*);")
_MAP_RE = re.compile(
    r"map\s+\$http_x_tagkeeper_probe\s+\$(?P<var>[A-Za-z0-9_]+)\s*\{(?P<body>[^{}]*)\}", re.S
)
_MAP_DEFAULT_RE = re.compile(r'default\s+"\$upstream_addr g=(?P<gen>[0-9a-f]{12})"\s*;')


def probe_variable(upstream: str) -> str:
    """The nginx variable (without ``$``) that holds the probe answer for ``upstream``."""
    return "tagkeeper_probe_" + re.sub(r"[^A-Za-z0-9_]", "_", upstream)


def nginx_commands(
    binary: str = "nginx", *, prefix: str | None = None, conf: str | None = None
) -> tuple[list[str], list[str]]:
    """The default (test, reload) commands: ``nginx [-p P] [-c C] -t`` and ``... -s reload``."""
    base = [binary]
    if prefix:
        base += ["-p", prefix]
    if conf:
        base += ["-c", conf]
    return [*base, "-t", "-q"], [*base, "-s", "reload"]


class NginxProxy(FileProxy):
    """nginx driven through an included ``upstream`` file, ``nginx -t`` and a reload."""

    kind: ClassVar[str] = "nginx"
    TYPE_WORD: ClassVar[str] = "nginx upstream"

    def __init__(
        self,
        path: Path,
        slots: Iterable[Slot],
        upstream: str,
        *,
        client: httpx.Client,
        probe_url: str,
        test_command: Sequence[str] | None = None,
        reload_command: Sequence[str] | None = None,
        runner: CommandRunner = run_command,
        timing: Timing | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        default_test, default_reload = nginx_commands()
        super().__init__(
            path,
            slots,
            upstream,
            test_command=default_test if test_command is None else test_command,
            reload_command=default_reload if reload_command is None else reload_command,
            runner=runner,
            timing=timing or NGINX_TIMING,
            clock=clock,
            sleep=sleep,
        )
        self.client = client
        self.probe_url = probe_url

    # -- the file -----------------------------------------------------------------
    def render_body(self, weights: Weights, generation: str) -> str:
        lines = [f"upstream {self.upstream} {{"]
        for slot in self.slots:
            weight = weights.of_slot(slot.name)
            setting = f"weight={weight}" if weight > 0 else "down"
            lines.append(f"    server {slot.address} {setting};  # {slot.name}")
        lines += [
            "}",
            f"map $http_x_tagkeeper_probe ${probe_variable(self.upstream)} {{",
            '    ""      "";',
            f'    default "$upstream_addr g={generation}";',
            "}",
        ]
        return "\n".join(lines) + "\n"

    def parse_body(self, body: str) -> Parsed:
        text = "\n".join(line.split("#", 1)[0] for line in body.split("\n"))
        blocks = list(_UPSTREAM_RE.finditer(text))
        if len(blocks) != 1:
            raise Unreadable(f"{len(blocks)} upstream blocks, expected 1")
        block = blocks[0]
        if block.group("name") != self.upstream:
            raise Unreadable(
                f"the upstream is named {block.group('name')!r}, not {self.upstream!r}"
            )
        weights: list[tuple[str, int]] = []
        statements = [s.strip() for s in block.group("body").split(";") if s.strip()]
        for statement in statements:
            match = _SERVER_RE.fullmatch(statement + ";")
            if match is None:
                raise Unreadable(f"unexpected line {shown(statement, 60)!r} in the upstream")
            params = match.group("params").split()
            if "down" in params:
                weight = 0
            else:
                weight = 1  # nginx's default
                for param in params:
                    if param.startswith("weight="):
                        value = param.removeprefix("weight=")
                        if not value.isdigit() or int(value) < 1:
                            raise Unreadable(f"invalid {shown(param, 30)} (nginx refuses it)")
                        weight = int(value)
            weights.append((match.group("addr"), weight))
        generation = None
        maps = list(_MAP_RE.finditer(text))
        if len(maps) != 1 or maps[0].group("var") != probe_variable(self.upstream):
            raise Unreadable(
                f"the probe map (${probe_variable(self.upstream)}) is missing or repeated"
            )
        found = _MAP_DEFAULT_RE.search(maps[0].group("body"))
        if found is None:
            raise Unreadable("the probe map has no default with a generation")
        generation = found.group("gen")
        return Parsed(tuple(weights), generation)

    # -- the proxy ------------------------------------------------------------------
    def probe(self) -> tuple[str | None, str | None, str | None]:
        """One probe on a new connection: (slot, generation, why not) from its answer."""
        nonce = secrets.token_hex(8)
        try:
            answer = self.client.get(
                self.probe_url,
                headers={PROBE_HEADER: nonce, "Connection": "close"},
                timeout=2.0,
            )
        except httpx.HTTPError as exc:
            return None, None, f"the proxy did not answer ({type(exc).__name__})"
        header = answer.headers.get(ANSWER_HEADER)
        if header is None:
            return None, None, (
                f"the answer ({answer.status_code}) has no {ANSWER_HEADER} header: add the "
                "server lines that `tagkeeper proxy-snippet` prints"
            )
        match = _ANSWER_RE.fullmatch(header.strip())
        if match is None:
            return None, None, f"unexpected {ANSWER_HEADER}: {shown(header, 80)!r}"
        tried = [a.strip() for a in re.split(r",| : ", match.group("addrs")) if a.strip()]
        if not tried:
            return None, match.group("gen"), f"nginx answered {answer.status_code} itself"
        slot = self.slot_of(tried[-1])
        if slot is None:
            return None, match.group("gen"), f"answered by {shown(tried[-1], 60)}, no slot"
        return slot, match.group("gen"), None

    def live(self) -> LiveState:
        slot, generation, why = self.probe()
        if slot is None and generation is None:
            return LiveState(error=why)
        return LiveState(generation=generation, slots=(slot,) if slot else (), error=why)

    def confirm(self, weights: Weights, generation: str) -> tuple[int, tuple[str, ...]]:
        allowed = set(weights.serving)
        deadline = self.clock() + self.timing.confirm_timeout
        in_row = 0
        since = self.clock()
        probes = 0
        answered: list[str] = []
        last = "no probe answered"
        while True:
            sent = self.clock()
            slot, seen, why = self.probe()
            probes += 1
            if slot is not None and seen == generation and slot in allowed:
                if in_row == 0:
                    since = sent
                in_row += 1
                if slot not in answered:
                    answered.append(slot)
                settled = self.clock() - since >= self.timing.confirm_settle
                if in_row >= self.timing.confirm_probes and settled:
                    return probes, tuple(answered)
            else:
                in_row = 0
                if why is not None:
                    last = why
                elif seen != generation:
                    last = f"still served by the configuration before (generation {seen})"
                else:
                    last = f"answered by slot {slot}, which should take no traffic"
            if self.clock() >= deadline:
                raise ProxySwitchFailed(
                    f"nginx did not switch to {weights} within {self.timing.confirm_timeout:g}s "
                    f"({probes} probes; last: {last})",
                    phase="confirm",
                    restored=False,
                    hint="check that the server block has the lines of `tagkeeper "
                    "proxy-snippet` and that nginx's error log shows the reload",
                )
            self.sleep(0.02)
