"""Prometheus (Debian) on 127.0.0.1, scraping the test app every second.

:func:`start_prometheus` writes ``prometheus.yml`` into its folder: one job
(``webapp``, path ``/actuator/prometheus``, interval 1 s) whose targets come from
``file_sd`` files ``targets/*.json``, re-read on change, so a slot can be added or
removed while it runs (:meth:`Prometheus.set_target`). Each target carries a ``slot``
label; ``instance`` is its ``127.0.0.1:PORT``. The TSDB lives in the folder.

:data:`SPRING_QUERIES` are Spring-style queries over ``http_server_requests_seconds``
(request rate, 5xx ratio, p95 from the histogram buckets), per ``instance``, with
``{instance}`` and ``{window}`` to fill in.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.deploykit import ServiceError
from tests.deploykit._proc import find_binary, free_port, stop, tail, wait_port, write_atomic

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

JOB = "webapp"
_API = '{uri!~"/actuator.*",instance="{instance}"}'
SPRING_QUERIES = {
    # requests per second answered by the instance (actuator traffic left out)
    "rate": "sum(rate(http_server_requests_seconds_count" + _API + "[{window}]))",
    # share of those that were 5xx; no 5xx series at all means none happened
    "error_ratio": (
        'sum(rate(http_server_requests_seconds_count{uri!~"/actuator.*",'
        'instance="{instance}",status=~"5.."}[{window}]))'
        " / sum(rate(http_server_requests_seconds_count" + _API + "[{window}]))"
    ),
    # 95th percentile latency in seconds, from the histogram buckets
    "p95": (
        "histogram_quantile(0.95, sum by (le) "
        "(rate(http_server_requests_seconds_bucket" + _API + "[{window}])))"
    ),
}


def spring_query(name: str, instance: str, window: str = "10s") -> str:
    """One of :data:`SPRING_QUERIES` for ``instance`` (``127.0.0.1:PORT``)."""
    return SPRING_QUERIES[name].replace("{instance}", instance).replace("{window}", window)


@dataclass
class Prometheus:
    binary: str
    folder: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def targets_dir(self) -> Path:
        return self.folder / "targets"

    def set_target(self, slot: str, address: str | None) -> None:
        """Scrape ``address`` (``127.0.0.1:PORT``) as ``slot``; ``None`` stops scraping it.

        Written atomically: a temporary name that ``*.json`` does not match, then rename.
        """
        path = self.targets_dir / f"{slot}.json"
        if address is None:
            path.unlink(missing_ok=True)
            return
        write_atomic(path, json.dumps([{"targets": [address], "labels": {"slot": slot}}]))

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as answer:
            data = json.loads(answer.read())
        if data.get("status") != "success":
            raise ServiceError(f"Prometheus {path} {params}: {data}")
        return data["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """``/api/v1/query``: the instant vector (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        result = self.api("/api/v1/query", **params)
        if result["resultType"] == "scalar":
            return [{"metric": {}, "value": result["result"]}]
        vector: list[dict[str, Any]] = result["result"]
        return vector

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of ``expr``; ``None`` when the vector is empty (no data)."""
        vector = self.query(expr, at)
        if not vector:
            return None
        if len(vector) > 1:
            raise ServiceError(f"{expr} gives {len(vector)} series, not one: {vector}")
        return float(vector[0]["value"][1])

    def active_targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self.api("/api/v1/targets")["activeTargets"]
        return targets

    def wait_target_up(self, address: str, timeout: float = 20.0) -> None:
        """Wait until ``address`` was scraped successfully at least once."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = [t for t in self.active_targets() if t["labels"].get("instance") == address]
            if seen and seen[0]["health"] == "up":
                return
            time.sleep(0.2)
        raise ServiceError(f"Prometheus does not scrape {address} successfully: {seen}")

    def wait_value(self, expr: str, predicate: Any = None, timeout: float = 20.0) -> float:
        """Wait until ``expr`` has one value that is a number (and passes ``predicate``)."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last is not None and not math.isnan(last) and (predicate is None or predicate(last)):
                return last
            time.sleep(0.25)
        raise ServiceError(f"{expr} is {last} after {timeout}s")

    def stop(self) -> None:
        stop(self.proc)


def prometheus_conf(folder: Path, interval: str = "1s") -> str:
    return f"""\
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: {JOB}
    metrics_path: /actuator/prometheus
    file_sd_configs:
      - files: ["{folder / "targets"}/*.json"]
        refresh_interval: 1s
"""


@contextmanager
def start_prometheus(
    folder: Path, targets: Mapping[str, str] | None = None, *, interval: str = "1s"
) -> Iterator[Prometheus]:
    """Run Prometheus in ``folder`` scraping ``targets`` (``{slot: "127.0.0.1:PORT"}``)."""
    binary = find_binary("prometheus", "Debian package prometheus: the metrics source")
    (folder / "targets").mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(prometheus_conf(folder, interval), encoding="utf-8")
    port = free_port()
    out = folder / "prometheus.log"
    log = out.open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, proc, out, timeout=30)
        running = Prometheus(binary, folder, port, proc)
        _wait_ready(running)
        for slot, address in (targets or {}).items():
            running.set_target(slot, address)
        yield running
    finally:
        stop(proc, timeout=20)
        log.close()


def _wait_ready(prom: Prometheus, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(prom.url + "/-/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise ServiceError(f"Prometheus is not ready:\n{tail(prom.folder / 'prometheus.log')}")
