"""nginx (Debian) in its own prefix folder on 127.0.0.1, as a blue/green proxy.

:func:`start_nginx` writes ``nginx.conf`` into the folder and runs
``nginx -p DIR -c DIR/nginx.conf -e DIR/error.log`` with ``daemon off`` (the master
is our child; pid file, logs and temp paths are all in the folder, so nothing is
written under /var or /run). The ``http {}`` block ``include``s ``upstream.conf``,
the file a deploy engine owns, and defines a JSON ``log_format`` (``tagkeeper_json``)
used by the server's access log. The server proxies ``/`` to the upstream and adds
``X-Upstream: $upstream_addr`` to every answer, so a client can tell which upstream
answered.

nginx refuses ``weight=0`` (``nginx -t`` fails: "invalid parameter"): a server
that takes no traffic is marked ``down`` or left out; :func:`upstream_conf` does the
former.
"""

from __future__ import annotations

import json
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.deploykit import ServiceError
from tests.deploykit._proc import find_binary, free_port, stop, tail, wait_port, write_atomic

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

UPSTREAM = "webapp"

LOG_FORMAT = (
    "log_format tagkeeper_json escape=json '{'\n"
    '        \'"time":"$time_iso8601","msec":$msec,\'\n'
    '        \'"method":"$request_method","uri":"$request_uri","status":$status,\'\n'
    '        \'"request_time":$request_time,"upstream":"$upstream_addr",\'\n'
    '        \'"upstream_status":"$upstream_status",\'\n'
    '        \'"upstream_response_time":"$upstream_response_time",\'\n'
    '        \'"version":"$upstream_http_x_app_version"\'\n'
    "        '}';"
)


def upstream_conf(weights: Mapping[str, int], name: str = UPSTREAM) -> str:
    """An ``upstream`` block: ``{"127.0.0.1:PORT": weight}``; weight 0 becomes ``down``."""
    lines = [f"upstream {name} {{"]
    for address, weight in weights.items():
        if weight < 0:
            raise ValueError(f"negative weight for {address}")
        lines.append(f"    server {address} {'down' if weight == 0 else f'weight={weight}'};")
    lines.append("}")
    return "\n".join(lines) + "\n"


@dataclass
class Nginx:
    """A running nginx. ``url`` is the proxy; ``upstream_file`` the engine-owned include."""

    binary: str
    prefix: Path
    port: int
    proc: subprocess.Popen[bytes]
    upstream_name: str = UPSTREAM

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def upstream_file(self) -> Path:
        return self.prefix / "upstream.conf"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, *args: str) -> list[str]:
        """``nginx -p PREFIX -c CONF -e ERRORLOG ARGS``: how any nginx command is run here."""
        return nginx_command(self.binary, self.prefix, *args)

    def write_upstream(self, text_or_weights: str | Mapping[str, int]) -> None:
        """Replace the upstream file atomically (temporary file + rename)."""
        text = (
            text_or_weights
            if isinstance(text_or_weights, str)
            else upstream_conf(text_or_weights, self.upstream_name)
        )
        write_atomic(self.upstream_file, text)

    def test(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` of the whole configuration; check ``returncode`` and ``stderr``."""
        return nginx_test(self.binary, self.prefix)

    def reload(self, *, wait: float = 5.0) -> float:
        """``nginx -s reload``; waits until the master started new workers; when it sent.

        Raises :class:`ServiceError` when the command fails (an invalid configuration
        fails here: ``-s`` reads it first) or the master logs no new worker in time.
        """
        before = self._worker_starts()
        sent = time.time()
        done = subprocess.run(
            self.command("-s", "reload"), capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode != 0:
            raise ServiceError(f"nginx -s reload failed: {done.stderr.strip()}")
        deadline = time.monotonic() + wait
        while self._worker_starts() <= before:
            if time.monotonic() > deadline:
                raise ServiceError(f"nginx did not reload in {wait}s:\n{tail(self.error_log)}")
            time.sleep(0.01)
        return sent

    def _worker_starts(self) -> int:
        try:
            return self.error_log.read_text(errors="replace").count("start worker process")
        except OSError:
            return 0

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


def nginx_command(binary: str, prefix: Path, *args: str) -> list[str]:
    return [
        binary,
        "-p",
        f"{prefix}/",
        "-c",
        str(prefix / "nginx.conf"),
        "-e",
        str(prefix / "error.log"),
        *args,
    ]


def nginx_test(binary: str, prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        nginx_command(binary, prefix, "-t", "-q"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def nginx_conf(
    prefix: Path,
    port: int,
    *,
    upstream_name: str = UPSTREAM,
    keepalive_timeout: str = "65s",
    proxy_next_upstream: str | None = None,
    workers: int = 2,
    extra_http: str = "",
    extra_location: str = "",
) -> str:
    """The whole ``nginx.conf`` this module runs (also a reference set-up)."""
    next_upstream = (
        f"            proxy_next_upstream {proxy_next_upstream};\n" if proxy_next_upstream else ""
    )
    temp = prefix / "temp"
    return (
        "daemon off;\n"
        "user root;\n"
        f"worker_processes {workers};\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} notice;\n"
        "events {\n    worker_connections 1024;\n}\n"
        "http {\n"
        f"    client_body_temp_path {temp / 'client_body'};\n"
        f"    proxy_temp_path {temp / 'proxy'};\n"
        f"    fastcgi_temp_path {temp / 'fastcgi'};\n"
        f"    uwsgi_temp_path {temp / 'uwsgi'};\n"
        f"    scgi_temp_path {temp / 'scgi'};\n"
        "    access_log off;\n"
        f"    {LOG_FORMAT}\n"
        f"    include {prefix / 'upstream.conf'};\n"
        f"{extra_http}"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        f"        access_log {prefix / 'access.log'} tagkeeper_json;\n"
        f"        keepalive_timeout {keepalive_timeout};\n"
        "        location / {\n"
        f"            proxy_pass http://{upstream_name};\n"
        "            proxy_http_version 1.1;\n"
        "            proxy_set_header Host $host;\n"
        "            proxy_connect_timeout 2s;\n"
        f"{next_upstream}"
        "            add_header X-Upstream $upstream_addr always;\n"
        f"{extra_location}"
        "        }\n"
        "    }\n"
        "}\n"
    )


@contextmanager
def start_nginx(
    prefix: Path,
    upstream: str | Mapping[str, int],
    *,
    port: int | None = None,
    upstream_name: str = UPSTREAM,
    **conf: Any,
) -> Iterator[Nginx]:
    """Run nginx in ``prefix`` with ``upstream`` (a block or ``{address: weight}``).

    ``conf`` goes to :func:`nginx_conf` (``keepalive_timeout``, ``proxy_next_upstream``,
    ``workers``, ``extra_http``, ``extra_location``). Stops it when the block ends.
    """
    binary = find_binary("nginx", "Debian package nginx: the blue/green proxy")
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "temp").mkdir(exist_ok=True)
    port = port or free_port()
    (prefix / "nginx.conf").write_text(
        nginx_conf(prefix, port, upstream_name=upstream_name, **conf), encoding="utf-8"
    )
    write_atomic(
        prefix / "upstream.conf",
        upstream if isinstance(upstream, str) else upstream_conf(upstream, upstream_name),
    )
    checked = nginx_test(binary, prefix)
    if checked.returncode != 0:
        raise ServiceError(f"nginx -t rejects the configuration:\n{checked.stderr}")
    log = (prefix / "nginx.out").open("wb")
    proc = subprocess.Popen(nginx_command(binary, prefix), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, prefix / "error.log")
        yield Nginx(binary, prefix, port, proc, upstream_name)
    finally:
        stop(proc)
        log.close()
