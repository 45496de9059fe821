"""The one-time proxy set-up that ``tagkeeper proxy-snippet`` prints (pure).

nginx: the lines for the ``http {}`` block (the JSON ``log_format`` the access-log
metrics read, and the ``include`` of the file tagkeeper owns) and for the ``server {}``
block (``access_log``, the keep-alive choice, ``proxy_pass`` and the header that lets
tagkeeper see which slot answered a probe). Traefik: the static configuration (a file
provider on a *directory* with ``watch``, the API on loopback, a JSON access log that
keeps the probe header) and the router file. Each is valid as printed: the tests feed
them to ``nginx -t`` and to Traefik itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tagkeeper.deploy.proxies.base import new_generation
from tagkeeper.deploy.proxies.model import (
    Slot,
    Weights,
    check_name,
    check_slots,
)
from tagkeeper.deploy.proxies.nginx import ANSWER_HEADER, PROBE_HEADER, probe_variable
from tagkeeper.deploy.spec import DEFAULT_TRAEFIK_API
from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tagkeeper.deploy.proxies.base import FileProxy
    from tagkeeper.deploy.spec import DeploySpec


@dataclass(frozen=True, slots=True)
class ProxySetup:
    """What the set-up lines need: the proxy, the names, the files and addresses."""

    proxy: str  # "nginx" or "traefik"
    upstream: str
    config: Path  # the file tagkeeper owns
    slots: tuple[Slot, ...]
    proxy_url: str  # where clients reach the service through the proxy
    access_log: Path | None = None
    traefik_api: str = DEFAULT_TRAEFIK_API
    keepalive: bool = False  # nginx: keep idle client connections (loses some on reload)

    def __post_init__(self) -> None:
        if self.proxy not in ("nginx", "traefik"):
            raise UsageError(f"proxy {self.proxy!r} is not nginx or traefik")
        check_name(self.upstream, "upstream")
        check_slots(self.slots)
        if not self.config.is_absolute():
            raise UsageError(f"proxy-config {self.config} must be an absolute path")
        if self.proxy == "traefik" and self.config.suffix not in (".yml", ".yaml", ".toml"):
            raise UsageError(
                f"proxy-config {self.config} must end in .yml, .yaml or .toml: Traefik's "
                "file provider loads only those"
            )
        if self.access_log is not None and not self.access_log.is_absolute():
            raise UsageError(f"the access log {self.access_log} must be an absolute path")
        listen = self.listen  # raises on a bad URL
        del listen
        if not re.fullmatch(r"[0-9A-Za-z.\[\]:-]+:[0-9]{1,5}", self.traefik_api):
            raise UsageError(f"Traefik API address {self.traefik_api!r} is not HOST:PORT")

    @property
    def listen(self) -> str:
        """``host:port`` the proxy listens on, from ``proxy-url``."""
        parts = urlsplit(self.proxy_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"proxy-url {self.proxy_url!r} is not an http(s) URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def log_path(self) -> Path:
        if self.access_log is not None:
            return self.access_log
        folder = "nginx" if self.proxy == "nginx" else "traefik"
        return Path(f"/var/log/{folder}/{self.upstream}.json.log")

    @property
    def log_format(self) -> str:
        return "tagkeeper_json_" + probe_variable(self.upstream).removeprefix("tagkeeper_probe_")


@dataclass(frozen=True, slots=True)
class Snippet:
    """Named parts, each with where it goes."""

    parts: tuple[tuple[str, str, str], ...]  # (name, where it goes, text)

    def text(self) -> str:
        out = []
        for _, where, text in self.parts:
            out.append(f"# ---- {where}\n{text}")
        return "\n".join(out)

    def part(self, name: str) -> str:
        for key, _, text in self.parts:
            if key == name:
                return text
        raise KeyError(name)

    def to_json(self) -> dict[str, object]:
        return {name: {"where": where, "text": text} for name, where, text in self.parts}


def nginx_log_format(setup: ProxySetup) -> str:
    fields = (
        '"time":"$time_iso8601","msec":$msec,"status":$status,'
        '"request_time":$request_time,"upstream":"$upstream_addr",'
        '"upstream_status":"$upstream_status","upstream_time":"$upstream_response_time",'
        '"probe":"$http_x_tagkeeper_probe"'
    )
    return f"log_format {setup.log_format} escape=json '{{{fields}}}';"


def nginx_snippet(setup: ProxySetup) -> Snippet:
    variable = probe_variable(setup.upstream)
    http = "\n".join(
        [
            "# JSON access log read by tagkeeper's access-log metrics (once per http block)",
            nginx_log_format(setup),
            "# the upstream and probe map that tagkeeper owns and rewrites on every switch",
            f"include {setup.config};",
        ]
    )
    if setup.keepalive:
        keepalive = [
            "# Kept-alive client connections: nginx closes idle ones on every reload, so a",
            "# client that does not retry can lose about one request per open connection",
            "# per switch. `keepalive_timeout 0;` loses none.",
            "keepalive_timeout 65s;",
        ]
    else:
        keepalive = [
            "# No kept-alive client connections: nginx closes idle ones on every reload, and",
            "# a client that does not retry then loses a request. With 0 a switch loses",
            "# none, at the cost of a new TCP connection (and TLS handshake) per request.",
            "# For browsers behind a CDN or clients that retry, `keepalive_timeout 65s;`",
            "# may be worth that risk.",
            "keepalive_timeout 0;",
        ]
    server = "\n".join(
        [
            f"access_log {setup.log_path} {setup.log_format};",
            *keepalive,
            "location / {",
            f"    proxy_pass http://{setup.upstream};",
            "    proxy_http_version 1.1;",
            "    proxy_set_header Host $host;",
            "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "    # a slot that refuses a connection: try the other one (GET/HEAD only)",
            "    proxy_next_upstream error timeout http_502 http_503 http_504;",
            f"    # only requests carrying {PROBE_HEADER} (tagkeeper's) get this header back",
            f"    add_header {ANSWER_HEADER} ${variable} always;",
            "}",
        ]
    )
    return Snippet(
        (
            ("http", "nginx: inside the http { } block", http + "\n"),
            ("server", f"nginx: inside the server {{ }} that listens on {setup.listen}",
             server + "\n"),
        )
    )


def traefik_snippet(setup: ProxySetup) -> Snippet:
    static = f"""\
entryPoints:
  web:
    address: "{setup.listen}"
  traefik:
    address: "{setup.traefik_api}"  # the API: keep it on loopback
api:
  insecure: true  # served on the "traefik" entrypoint above, not on "web"
  dashboard: false
providers:
  file:
    # a directory, never one file: a watched single (bind-mounted) file never sees a change
    directory: "{setup.config.parent}"
    watch: true
accessLog:
  filePath: "{setup.log_path}"
  format: json
  fields:
    defaultMode: keep
    headers:
      defaultMode: drop
      names:
        {PROBE_HEADER}: keep
"""
    router = f"""\
http:
  routers:
    {setup.upstream}:
      rule: "PathPrefix(`/`)"  # or Host(`api.example.com`)
      entryPoints: [web]
      service: {setup.upstream}
"""
    return Snippet(
        (
            ("static", "Traefik: the static configuration (traefik.yml)", static),
            ("router", f"Traefik: a router file in {setup.config.parent}/ "
             f"(e.g. {router_file(setup).name})", router),
        )
    )


def router_file(setup: ProxySetup) -> Path:
    return setup.config.parent / f"{setup.upstream}-router.yml"


def snippet(setup: ProxySetup) -> Snippet:
    return nginx_snippet(setup) if setup.proxy == "nginx" else traefik_snippet(setup)


def initial_file(proxy: FileProxy, slots: Iterable[Slot]) -> str:
    """The owned file before the first deploy: every request to the first slot."""
    names = [s.name for s in slots]
    return proxy.render(Weights.all_to(names[0], names), new_generation())


def setup_from_spec(
    spec: DeploySpec,
    *,
    access_log: Path | None = None,
    traefik_api: str | None = None,
    keepalive: bool = False,
) -> ProxySetup:
    """The set-up of ``[deploy.ENV]`` (``access_log``: from ``metrics`` when not given;
    ``traefik_api``: the table's ``traefik-api``)."""
    proxy, config, url = spec.proxy, spec.proxy_config, spec.proxy_url
    if proxy is None or config is None or url is None:
        missing = [
            key
            for key, value in (("proxy", proxy), ("proxy-config", config), ("proxy-url", url))
            if value is None
        ]
        raise UsageError(
            f"[deploy.{spec.environment}] has no {', '.join(repr(k) for k in missing)}",
            hint="the proxy set-up needs proxy, proxy-config and proxy-url",
        )
    if access_log is None:
        metrics = getattr(spec, "metrics", None)
        if metrics is not None and getattr(metrics, "kind", None) == "access-log":
            access_log = Path(str(metrics.target))
    slots = tuple(
        Slot(name, "127.0.0.1", port)
        for name, port in zip(spec.slots, spec.slot_ports, strict=True)
    )
    return ProxySetup(
        proxy=proxy,
        upstream=spec.upstream_name,
        config=Path(config),
        slots=slots,
        proxy_url=url,
        access_log=access_log,
        traefik_api=traefik_api or spec.traefik_api,
        keepalive=keepalive,
    )
