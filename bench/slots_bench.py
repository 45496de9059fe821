"""Benchmark: blue/green releases under load, through nginx and Traefik.

For each proxy (nginx set up as ``proxy-snippet`` prints it, ``keepalive_timeout 0``;
nginx from ``proxy-snippet --keepalive``, ``keepalive_timeout 65s``; Traefik 3) and each
kind of client (a new connection per request; ``--connections`` kept-alive connections,
as browsers do), a steady ``--rate`` of ``GET /api/public/testimonials`` goes through the
proxy while ``tagkeeper`` (the CLI, as on a host: real Docker engine, a real registry
the deploys pull from, the proxy's access log as the metrics source) runs, ``--runs``
times:

1. **deploy**: ``deploy`` of v2.0.0 (``bluegreen``) while v1.0.0 serves;
2. **switch back**: ``rollback``, an instant switch back to the slot that holds v1.0.0;
3. **automatic rollback**: ``deploy --watch`` of v3.0.0, whose API answers 500 from
   ``--fail-after`` seconds after its start; the watch (every ``--interval``) rolls it
   back to the slot that holds v1.0.0 (exit 14).

Reported for each: the rate the client really sent (the lowest of the runs), the
requests it lost (no answer, or a 5xx the proxy made;
the 500s the bad release answered itself are counted apart), the time from the switch
(nginx: ``nginx -s reload`` sent; Traefik: the owned file renamed, as the deploy's steps
record them) to the last request the old slot answered, and for the automatic rollback
the time from the watch's first check that saw a threshold crossed to the last request
the bad slot answered. Targets: no request lost on Traefik (both clients) and
on nginx with new connections; under 1 s (nginx) and 3 s (Traefik) to the old slot's
last request; the old slot serving everything within one watch interval plus 1 s of the
crossing.

Everything it created (containers, images, the registry, the proxies) is removed.

Run: ``python bench/slots_bench.py [--rate 250] [--runs 2]`` (about 8 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: reuse the test helpers
    sys.path.insert(0, str(ROOT))

from tests.deploykit.app import AppImages  # noqa: E402
from tests.deploykit.load import LoadClient, Record, Summary  # noqa: E402
from tests.integration.deploy.slothost import SlotHost, slot_host  # noqa: E402
from tests.integration.oci.registry import start_registry  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

PATH = "/api/public/testimonials"
PROXIES = (  # label, proxy, nginx from proxy-snippet --keepalive
    ("nginx", "nginx", False),
    ("nginx --keepalive", "nginx", True),
    ("traefik", "traefik", False),
)
CLIENTS = ("new", "kept-alive")
TARGET_LAG = {"nginx": 1.0, "traefik": 3.0}
MIN_RATE = 200.0  # the targets hold under at least this load (a client slowed by a busy
# machine sends less: its row says NO, rerun it)


@dataclass
class Phase:
    """One measured deploy, switch back or automatic rollback."""

    lost: int
    bad_500: int
    total: int
    rate: float  # requests per second the client sent
    lag: float | None  # switch -> last request the old slot answered
    back: float | None = None  # threshold crossed -> last request of the bad slot
    exit_code: int = 0


def _wall(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def switch_time(steps: list[dict[str, Any]], after: float = 0.0) -> float | None:
    """When the proxy was told to switch (reload sent, or, for Traefik, the file
    renamed), for the first switch that began at or after ``after``."""
    begun = False
    written: float | None = None
    for step in steps:
        at = _wall(step["at"])
        if step["phase"] == "switch" and step["status"] == "start" and at >= after:
            begun = True
        elif begun and step["phase"] == "proxy-reload":
            return at
        elif begun and step["phase"] == "proxy-write" and written is None:
            written = at
        elif begun and step["phase"] == "switch" and step["status"] == "done":
            return written
    return written


def lost(record: Record, bad: str | None) -> bool:
    if record.ok:
        return False
    return not (bad is not None and record.version == bad and record.status == 500)


def measure(
    summary: Summary, payload: dict[str, Any], old: str, *, bad: str | None = None
) -> Phase:
    steps = payload.get("steps") or []
    records = summary.records
    phase = Phase(
        lost=sum(1 for r in records if lost(r, bad)),
        bad_500=sum(1 for r in records if bad is not None and r.version == bad and not r.ok),
        total=len(records),
        rate=summary.rate,
        lag=None,
        exit_code=int(payload.get("exit_code", -1)),
    )
    if bad is None:
        switched = switch_time(steps)
        if switched is not None:
            phase.lag = summary.switch_lag(switched, version=old)
        return phase
    # the automatic rollback: the watch's first check that crossed a threshold, then the
    # switch back to the old slot
    crossed = [_wall(s["at"]) for s in steps if (s["phase"], s["status"]) == ("watch", "warning")]
    followup = (payload.get("rolled_back_to") or {}).get("steps") or []
    back = sorted([*steps, *followup], key=lambda s: _wall(s["at"]))
    if crossed:
        switched = switch_time(back, after=crossed[0])
        last_bad = summary.last_seen(version=bad)
        if last_bad is not None:
            phase.back = last_bad - crossed[0]
        if switched is not None:
            phase.lag = summary.switch_lag(switched, version=bad)
    return phase


def under_load(
    slots: SlotHost, client: str, rate: float, connections: int, action: Callable[[], Any]
) -> tuple[Any, Summary]:
    load = LoadClient(
        slots.url + PATH,
        rate=rate,
        duration=600,
        timeout=5.0,
        keepalive=client == "kept-alive",
        connections=connections,
        workers=16,
    ).start()
    time.sleep(1.0)
    try:
        result = action()
        time.sleep(1.0)
    finally:
        load.stop()
    return result, load.join(timeout=15)


def json_of(done: Any) -> dict[str, Any]:
    try:
        payload: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        why = f"tagkeeper printed no JSON (exit {done.returncode}):\n{done.stderr}"
        raise SystemExit(why) from None
    return payload


def run_proxy(  # noqa: PLR0917 - one proxy's whole run
    label: str, proxy: str, keepalive: bool, args: argparse.Namespace, folder: Path,
    docker: Any, images: AppImages,
) -> list[tuple[str, str, str, Phase]]:  # fmt: skip
    rows: list[tuple[str, str, str, Phase]] = []
    with (
        start_registry(folder / "registry", delete=True) as registry,
        slot_host(folder, docker, registry, images, proxy, keepalive=keepalive) as slots,
    ):
        host = slots.host
        slots.configure(**{"watch-interval": f'"{args.interval:g}s"'})
        host.publish("v1.0.0")
        host.publish("v2.0.0")
        host.publish("v3.0.0", version="3.0.0", FAIL_AFTER=str(args.fail_after))
        done = host.deploy("v1.0.0")
        if done.returncode != 0:
            raise SystemExit(f"the first deploy failed:\n{done.stderr}")
        watch = f"{args.fail_after + 10 * args.interval:g}s"  # ends sooner: rolled back
        for client in CLIENTS:
            for _ in range(args.runs):
                done, summary = under_load(
                    slots, client, args.rate, args.connections,
                    lambda: host.deploy("v2.0.0", "--format", "json"),
                )  # fmt: skip
                rows.append((label, client, "deploy", measure(summary, json_of(done), "1.0.0")))
                done, summary = under_load(
                    slots, client, args.rate, args.connections,
                    lambda: host.run("rollback", "--env", "prod", "--format", "json"),
                )  # fmt: skip
                rows.append((label, client, "switch back",
                             measure(summary, json_of(done), "2.0.0")))  # fmt: skip
                done, summary = under_load(
                    slots, client, args.rate, args.connections,
                    lambda: host.deploy("v3.0.0", "--watch", watch, "--format", "json"),
                )  # fmt: skip
                rows.append((label, client, "automatic rollback",
                             measure(summary, json_of(done), "1.0.0", bad="3.0.0")))  # fmt: skip
                print(f"  {label:<18} {client:<10} run done", file=sys.stderr, flush=True)
    return rows


def fmt(values: list[float | None], digits: int = 2) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    return f"{statistics.median(known):.{digits}f} / {max(known):.{digits}f}"


def report(rows: list[tuple[str, str, str, Phase]], args: argparse.Namespace) -> None:
    print(f"blue/green under {args.rate:g} req/s through the proxy, {args.runs} run(s) each; "
          f"watch every {args.interval:g}s; times: median / max")  # fmt: skip
    head = (f"{'proxy':<18} {'client':<10} {'what':<19} {'exit':>5} {'requests':>8} "
            f"{'req/s':>5} {'lost':>5} {'bad 500':>7} {'old last (s)':>13} "
            f"{'back (s)':>12}  met")  # fmt: skip
    print(head)
    print("-" * len(head))
    groups: dict[tuple[str, str, str], list[Phase]] = {}
    for label, client, what, phase in rows:
        groups.setdefault((label, client, what), []).append(phase)
    for (label, client, what), phases in groups.items():
        lag_target = TARGET_LAG["traefik" if label == "traefik" else "nginx"]
        checks = [max((p.lag or 0.0) for p in phases) < lag_target,
                  min(p.rate for p in phases) >= MIN_RATE]  # fmt: skip
        if not (label.startswith("nginx") and client == "kept-alive"):  # measured only
            checks.append(all(p.lost == 0 for p in phases))
        if what == "automatic rollback":
            checks.append(all(p.back is not None and p.back <= args.interval + 1.0
                              for p in phases))  # fmt: skip
            checks.append(all(p.exit_code == 14 for p in phases))
        else:
            checks.append(all(p.exit_code == 0 for p in phases))
        codes = ",".join(sorted({str(p.exit_code) for p in phases}))
        print(f"{label:<18} {client:<10} {what:<19} {codes:>5} "
              f"{sum(p.total for p in phases):>8} "
              f"{min(p.rate for p in phases):>5.0f} {sum(p.lost for p in phases):>5} "
              f"{sum(p.bad_500 for p in phases):>7} {fmt([p.lag for p in phases]):>13} "
              f"{fmt([p.back for p in phases]):>12}  {'yes' if all(checks) else 'NO'}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=250.0, help="requests per second")
    parser.add_argument("--runs", type=int, default=2, help="sequences per proxy and client")
    parser.add_argument("--connections", type=int, default=8, help="kept-alive connections")
    parser.add_argument("--interval", type=float, default=2.0, help="watch-interval, seconds")
    parser.add_argument("--fail-after", type=int, default=8,
                        help="the bad release fails this long after its start")  # fmt: skip
    parser.add_argument("--proxies", default="nginx,nginx --keepalive,traefik")
    args = parser.parse_args()
    import docker

    client = docker.from_env(timeout=120)
    images = AppImages(client)
    wanted = [p.strip() for p in args.proxies.split(",")]
    rows: list[tuple[str, str, str, Phase]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="tk-slots-bench-") as tmp:
            for index, (label, proxy, keepalive) in enumerate(PROXIES):
                if label in wanted:
                    folder = Path(tmp) / f"p{index}"
                    rows += run_proxy(label, proxy, keepalive, args, folder, client, images)
    finally:
        images.cleanup()
        client.close()
    report(rows, args)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
