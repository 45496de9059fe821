"""Traefik 3: the owned file is a weighted service in the file provider's directory.

The file provider must watch a *directory* (``providers.file.directory``, ``watch:
true``): a provider watching one bind-mounted file never sees a change. It loads every
``.yml``, ``.yaml`` and ``.toml`` file there, so tagkeeper writes the new file under a
name ending in ``.tagkeeper-tmp`` and renames it; that temporary file is staged in the
*parent* of the watched directory when it can be (see :meth:`TraefikProxy.write`),
which makes a switch show about a second sooner. The owned file (YAML, or TOML when its
name ends in ``.toml``) holds one load-balancer service per slot and the weighted
service over them; the router (``proxy-snippet``) points at the weighted service::

    http:
      services:
        app:
          weighted:
            services:
              - name: app-blue
                weight: 90
              - name: app-green
                weight: 10
        app-blue:
          loadBalancer:
            servers:
              - url: "http://127.0.0.1:8520"
        ...

A slot at 0 is left out of the weighted list (a weighted service whose children all
weigh 0 answers 503), but keeps its load-balancer service, so the file still says where
every slot listens. Traefik reloads by itself (after its ``providersThrottleDuration``,
2 s by default); a switch is confirmed when its API shows the new weights, and then,
when the access log is known, when probe requests carrying ``X-Tagkeeper-Probe`` are
logged as served by the intended slots only.
"""

from __future__ import annotations

import errno
import json
import re
import secrets
import time
import tomllib
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx

from tagkeeper.deploy.proxies.base import (
    CommandRunner,
    FileProxy,
    Parsed,
    Timing,
    Unreadable,
    as_percent,
    run_command,
    write_atomic,
)
from tagkeeper.deploy.proxies.model import LiveState, ProxySwitchFailed, Weights, shown

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from pathlib import Path

    from tagkeeper.deploy.proxies.model import Slot

PROBE_HEADER = "X-Tagkeeper-Probe"
PROBE_FIELD = f"request_{PROBE_HEADER}"  # how Traefik's access log names a kept header
_SCALAR_RE = re.compile(r'"(?P<dq>[^"\\]*)"|\'(?P<sq>[^\']*)\'|(?P<bare>[^"\'#\s][^#]*?)')
_MAX_API_BYTES = 1 << 20
# staging beside the watched directory is impossible: write the temporary file inside
_STAGING_ERRORS = frozenset({errno.EXDEV, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT})


class TraefikProxy(FileProxy):
    """Traefik's file provider, driven through one file in its watched directory."""

    kind: ClassVar[str] = "traefik"
    TYPE_WORD: ClassVar[str] = "Traefik service"

    def __init__(
        self,
        path: Path,
        slots: Iterable[Slot],
        upstream: str,
        *,
        client: httpx.Client,
        api_url: str,
        probe_url: str,
        access_log: Path | None = None,
        test_command: Sequence[str] | None = None,
        reload_command: Sequence[str] | None = None,
        runner: CommandRunner = run_command,
        timing: Timing | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            path,
            slots,
            upstream,
            test_command=test_command,
            reload_command=reload_command,
            runner=runner,
            timing=timing or Timing(confirm_timeout=10.0),
            clock=clock,
            sleep=sleep,
        )
        self.client = client
        self.api_url = api_url.rstrip("/")
        self.probe_url = probe_url
        self.access_log = access_log

    def write(self, data: bytes) -> None:
        """Stage the temporary file *beside* the watched directory, then rename it in.

        The file provider ignores a temporary name inside its directory but still
        reloads on its events, and it applies at most one reload per
        ``providersThrottleDuration`` (2 s): a temporary file written inside delays the
        real change by up to 2 s. When the parent folder is elsewhere (another
        filesystem, read-only), the temporary file goes inside under a name it ignores.
        """
        try:
            write_atomic(self.path, data, temp_dir=self.path.parent.parent)
        except OSError as exc:
            if exc.errno not in _STAGING_ERRORS:
                raise
            write_atomic(self.path, data)

    def child(self, slot: str) -> str:
        return f"{self.upstream}-{slot}"

    @property
    def toml(self) -> bool:
        return self.path.suffix == ".toml"

    # -- the file -----------------------------------------------------------------
    def render_body(self, weights: Weights, generation: str) -> str:
        del generation  # kept in the state line: Traefik has no place for it
        if self.toml:
            return self._render_toml(weights)
        lines = [
            "http:",
            "  services:",
            f"    {self.upstream}:",
            "      weighted:",
            "        services:",
        ]
        for slot in self.slots:
            weight = weights.of_slot(slot.name)
            if weight > 0:
                lines += [
                    f"          - name: {self.child(slot.name)}",
                    f"            weight: {weight}",
                ]
        for slot in self.slots:
            lines += [
                f"    {self.child(slot.name)}:",
                "      loadBalancer:",
                "        servers:",
                f'          - url: "http://{slot.address}"',
            ]
        return "\n".join(lines) + "\n"

    def _render_toml(self, weights: Weights) -> str:
        lines: list[str] = []
        for slot in self.slots:
            weight = weights.of_slot(slot.name)
            if weight > 0:
                lines += [
                    f"[[http.services.{self.upstream}.weighted.services]]",
                    f'  name = "{self.child(slot.name)}"',
                    f"  weight = {weight}",
                ]
        for slot in self.slots:
            lines += [
                f"[[http.services.{self.child(slot.name)}.loadBalancer.servers]]",
                f'  url = "http://{slot.address}"',
            ]
        return "\n".join(lines) + "\n"

    def parse_body(self, body: str) -> Parsed:
        if self.toml:
            try:
                data: Any = tomllib.loads(body)
            except tomllib.TOMLDecodeError as exc:
                raise Unreadable(f"not valid TOML ({exc})") from None
        else:
            data = parse_yaml_subset(body)
        return self._interpret(data)

    def _interpret(self, data: Any) -> Parsed:
        services = _get(data, "http", "services")
        if not isinstance(services, dict):
            raise Unreadable("no http.services table")
        weighted = _get(services, self.upstream, "weighted", "services")
        if not isinstance(weighted, list) or not weighted:
            raise Unreadable(f"no weighted service {self.upstream!r} with children")
        out: list[tuple[str, int]] = []
        for item in weighted:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise Unreadable("a weighted child without a name")
            weight = item.get("weight", 1)  # Traefik's default weight
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                raise Unreadable(f"child {shown(str(item['name']), 60)} has weight {weight!r}")
            out.append((self._address_of(services, item["name"]), weight))
        listed = {address for address, _ in out}
        for slot in self.slots:  # slots left out of the list take no traffic
            if slot.address not in listed and isinstance(services.get(self.child(slot.name)), dict):
                address = self._address_of(services, self.child(slot.name))
                if address not in listed:
                    out.append((address, 0))
        return Parsed(tuple(out))

    def _address_of(self, services: dict[str, Any], name: str) -> str:
        servers = _get(services, name.removesuffix("@file"), "loadBalancer", "servers")
        if not isinstance(servers, list) or len(servers) != 1 or not isinstance(servers[0], dict):
            raise Unreadable(f"service {shown(name, 60)} does not have exactly one server")
        url = servers[0].get("url")
        if not isinstance(url, str):
            raise Unreadable(f"service {shown(name, 60)} has no server url")
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.netloc:
            raise Unreadable(f"server url {shown(url, 80)!r} is not http://host:port")
        return parts.netloc

    # -- the proxy ------------------------------------------------------------------
    def _api(self, path: str) -> Any:
        answer = self.client.get(self.api_url + path, timeout=2.0)
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        if len(answer.content) > _MAX_API_BYTES:
            raise ValueError("answer larger than 1 MiB")
        return answer.json()

    def live(self) -> LiveState:
        """The weights Traefik runs now, from its API (``/api/http/services``)."""
        try:
            service = self._api(f"/api/http/services/{quote(self.upstream)}@file")
            if service is None:
                return LiveState(error=f"Traefik runs no service {self.upstream}@file")
            children = _get(service, "weighted", "services")
            if not isinstance(children, list):
                return LiveState(error=f"{self.upstream}@file is not a weighted service")
            weights: dict[str, int] = {s.name: 0 for s in self.slots}
            for child in children:
                name = str(_get(child, "name") or "").removesuffix("@file")
                slot = next((s.name for s in self.slots if self.child(s.name) == name), None)
                weight = _get(child, "weight")
                weight = 1 if weight is None else weight
                if slot is None or isinstance(weight, bool) or not isinstance(weight, int):
                    return LiveState(error=f"Traefik runs child {shown(name, 60)!r}, no slot")
                weights[slot] = weight
            if service.get("status") not in (None, "enabled"):
                return LiveState(error=f"Traefik reports {self.upstream}@file as "
                                 f"{shown(str(service.get('status')), 30)}")
            total = sum(weights.values())
            if total == 0:
                return LiveState(error="Traefik runs every child at weight 0: it answers 503")
            ordered = [(s.name, weights[s.name]) for s in self.slots]
            return LiveState(
                weights=Weights(tuple(ordered)) if total == 100 else as_percent(ordered)
            )
        except (httpx.HTTPError, ValueError, TypeError) as exc:
            return LiveState(error=f"Traefik's API did not answer usefully: {shown(str(exc), 120)}")

    def confirm(self, weights: Weights, generation: str) -> tuple[int, tuple[str, ...]]:
        del generation
        deadline = self.clock() + self.timing.confirm_timeout
        last = "no answer"
        while True:
            state = self.live()
            if state.weights == weights:
                break
            last = state.error or f"Traefik still runs {state.weights}"
            if self.clock() >= deadline:
                self._fail(weights, last)
            self.sleep(0.05)
        probes = 0
        in_row = 0
        answered: list[str] = []
        while True:
            ok, slot, why = self._probe()
            probes += 1
            if ok and (slot is None or slot in weights.serving):
                in_row += 1
                if slot is not None and slot not in answered:
                    answered.append(slot)
                if in_row >= self.timing.confirm_probes:
                    return probes, tuple(answered)
            else:
                in_row = 0
                last = why or f"a probe was served by {slot}, which should take no traffic"
            if self.clock() >= deadline:
                self._fail(weights, last)
            self.sleep(0.02)

    def _fail(self, weights: Weights, last: str) -> None:
        raise ProxySwitchFailed(
            f"Traefik did not switch to {weights} within {self.timing.confirm_timeout:g}s "
            f"(last: {last})",
            phase="confirm",
            restored=False,
            hint="the file provider must watch the directory of the owned file "
            "(providers.file.directory, watch: true); see `tagkeeper proxy-snippet`",
        )

    def _probe(self) -> tuple[bool, str | None, str | None]:
        """One probe request: (answered well, slot that served it if known, why not)."""
        nonce = secrets.token_hex(8)
        offset = _size(self.access_log) if self.access_log else 0
        try:
            answer = self.client.get(
                self.probe_url, headers={PROBE_HEADER: nonce, "Connection": "close"}, timeout=2.0
            )
        except httpx.HTTPError as exc:
            return False, None, f"the proxy did not answer ({type(exc).__name__})"
        if answer.status_code in (502, 503, 504):
            return False, None, f"the proxy answered {answer.status_code}"
        if self.access_log is None:  # the API said so; which slot served is not known
            return True, None, None
        for _ in range(50):  # the log line is written once the answer is sent
            found = _find_probe(self.access_log, offset, nonce)
            if found is not None:
                slot = self.slot_of(found)
                return slot is not None, slot, f"a probe was served by {shown(found, 60)}"
            self.sleep(0.01)
        return False, None, (
            f"no line with {PROBE_FIELD} in {self.access_log}: keep that header in the "
            "access log (see `tagkeeper proxy-snippet`)"
        )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _find_probe(path: Path, offset: int, nonce: str) -> str | None:
    """The ``ServiceAddr`` of the access log line of probe ``nonce``, written after ``offset``."""
    try:
        with path.open("rb") as handle:
            if handle.seek(0, 2) < offset:
                offset = 0  # rotated or truncated meanwhile
            handle.seek(offset)
            data = handle.read(4 << 20)
    except OSError:
        return None
    needle = nonce.encode()
    for line in data.split(b"\n"):
        if needle not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get(PROBE_FIELD) == nonce:
            address = entry.get("ServiceAddr")
            if isinstance(address, str) and address:
                return address
            url = entry.get("ServiceURL")
            if isinstance(url, str):
                return urlsplit(url).netloc or url
            return ""
    return None


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def parse_yaml_subset(text: str) -> Any:
    """The block-style YAML subset tagkeeper writes (and simple hand edits of it).

    Mappings by indentation, ``- key: value`` lists of mappings, scalars (integers,
    quoted or bare strings), ``#`` comments. Anything else (flow collections, anchors,
    multi-line strings) is :class:`Unreadable`: a file tagkeeper cannot read for sure is
    reported, never guessed at.
    """
    rows: list[tuple[int, str]] = []
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not stripped.strip():
            continue
        if "\t" in line[: len(line) - len(line.lstrip())]:
            raise Unreadable(f"line {number}: a tab in the indentation")
        rows.append((len(stripped) - len(stripped.lstrip(" ")), stripped.strip()))
    value, index = _block(rows, 0, 0)
    if index != len(rows):
        raise Unreadable(f"unexpected indentation at {shown(rows[index][1], 40)!r}")
    return value


def _block(rows: list[tuple[int, str]], index: int, indent: int) -> tuple[Any, int]:
    if index >= len(rows):
        return None, index
    if rows[index][1].startswith("- "):
        items: list[Any] = []
        while index < len(rows) and rows[index][0] == indent and rows[index][1].startswith("- "):
            inner = indent + 2
            rows[index] = (inner, rows[index][1][2:].lstrip())
            item, index = _mapping(rows, index, inner)
            items.append(item)
        return items, index
    return _mapping(rows, index, indent)


def _mapping(rows: list[tuple[int, str]], index: int, indent: int) -> tuple[Any, int]:
    out: dict[str, Any] = {}
    while index < len(rows) and rows[index][0] == indent and not rows[index][1].startswith("- "):
        key, sep, rest = rows[index][1].partition(":")
        key = key.strip().strip("\"'")
        if not sep or not key or key in out:
            raise Unreadable(f"cannot read {shown(rows[index][1], 40)!r}")
        rest = rest.strip()
        index += 1
        if rest:
            out[key] = _scalar(rest)
        elif index < len(rows) and rows[index][0] > indent:
            out[key], index = _block(rows, index, rows[index][0])
        elif index < len(rows) and rows[index][0] == indent and rows[index][1].startswith("- "):
            out[key], index = _block(rows, index, indent)
        else:
            out[key] = None
    if index < len(rows) and rows[index][0] > indent:
        raise Unreadable(f"unexpected indentation at {shown(rows[index][1], 40)!r}")
    return out, index


def _scalar(text: str) -> Any:
    match = _SCALAR_RE.fullmatch(text)
    if match is None or text.startswith(("[", "{", "&", "*", "|", ">")):
        raise Unreadable(f"cannot read the value {shown(text, 40)!r}")
    if match.group("dq") is not None:
        return match.group("dq")
    if match.group("sq") is not None:
        return match.group("sq")
    bare = match.group("bare")
    if re.fullmatch(r"-?[0-9]+", bare):
        return int(bare)
    if bare in ("true", "false"):
        return bare == "true"
    return bare
