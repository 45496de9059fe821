"""Benchmark: pruning GHCR packages through the emulator (real HTTP on 127.0.0.1).

Two parts, each against a fresh emulator with ``--latency`` seconds per request (30 ms):

1. Plan: packages of 1,000 and 5,000 versions (60% multi-arch releases of 5 versions
   each: index, 2 platform images, 2 buildx attestations; 40% single-arch dev images),
   ``--keep 10``. Wall time of listing + planning, and requests by kind.
2. Apply: the 1,000-version plan against a hidden secondary delete limit of 60/min and
   of 180/min (the client is not told which). A full 1,000-delete run at 60/min takes
   ~17 min, so the delete phase stops after ``--deletes`` deletes (300). Reports the
   sustained delete rate (deletes a minute between the first and the last accepted
   delete, and after a one-minute warm-up) against the limit (target >= 90%), and the
   rate-limit answers received (target < 2% of the deletes).

Run: ``python bench/ghcr_prune_bench.py [--sizes 1000,5000] [--limits 60,180]
[--deletes 300] [--latency 0.03]``. The default run takes about 8 minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tagkeeper.registries.ghcr import GhcrBackend
from tagkeeper.retention.executor import apply_plan
from tagkeeper.retention.planner import Plan, Policy, plan
from tagkeeper.secret import Secret
from tagkeeper.transport import build_client
from tests.emulators import images
from tests.emulators.ghcr import GhcrEmulator

OWNER, PACKAGE = "octo", "app"
IMAGE = f"ghcr.io/{OWNER}/{PACKAGE}"


def seed(emu: GhcrEmulator, versions: int) -> None:
    """Fill the package with about ``versions`` versions (see the module docstring)."""
    base = datetime.now(UTC) - timedelta(days=400)
    releases = versions * 6 // 10 // 5
    devs = versions - releases * 5
    for i in range(releases):
        built = images.multiarch(label=f"r{i}")
        tag = f"v{i // 100}.{i % 100}.0"
        emu.push_built(OWNER, PACKAGE, built, tags=[tag], created=base + timedelta(hours=i))
    for i in range(devs):
        built = images.image(label=f"d{i}")
        emu.push_built(
            OWNER,
            PACKAGE,
            built,
            tags=[f"dev-{i:08x}"],
            created=base + timedelta(hours=i, minutes=30),
        )


def start(latency: float, limit: int | None) -> tuple[GhcrEmulator, str]:
    emu = GhcrEmulator(latency=latency, delete_limit=limit, primary_limit=1_000_000).start()
    emu.add_user(OWNER)
    return emu, emu.add_token(login=OWNER)


def fmt_kinds(by_kind: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items()))


def bench_plan(size: int, latency: float) -> tuple[str, ...]:
    emu, token = start(latency, None)
    try:
        seed(emu, size)
        stored = len(emu.versions(OWNER, PACKAGE))
        with build_client() as client:
            backend = GhcrBackend(
                IMAGE,
                client,
                token=Secret(token),
                api_url=emu.api_url,
                registry_url=emu.registry_url,
            )
            began = time.perf_counter()
            listed = backend.versions()
            the_plan = plan(
                listed,
                Policy.uniform(10, min_age=timedelta(0)),
                now=datetime.now(UTC),
                reader=backend.reader,
            )
            wall = time.perf_counter() - began
        return (
            f"{stored:,}",
            f"{len(the_plan.keep)}/{len(the_plan.delete)}",
            f"{wall:.2f}",
            str(backend.stats.total),
            fmt_kinds(backend.stats.by_kind),
        )
    finally:
        emu.stop()


def bench_apply(size: int, limit: int, deletes: int, latency: float) -> tuple[str, ...]:
    emu, token = start(latency, limit)
    try:
        seed(emu, size)
        with build_client() as client:
            backend = GhcrBackend(
                IMAGE,
                client,
                token=Secret(token),
                api_url=emu.api_url,
                registry_url=emu.registry_url,
            )
            full = plan(
                backend.versions(),
                Policy.uniform(10, min_age=timedelta(0)),
                now=datetime.now(UTC),
                reader=backend.reader,
            )
            bounded = Plan(decisions=full.keep + full.delete[:deletes])
            planned = backend.stats.total
            with emu.lock:
                listed_304 = emu.statuses[("rest.versions.list", 304)]
            began = time.perf_counter()
            report = apply_plan(bounded, backend)
            wall = time.perf_counter() - began
        snap = emu.snapshot()
        times: list[float] = snap["delete_times"]
        answers = sum(n for k, n in snap["limited"].items() if k.startswith("secondary"))
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        rate = (len(times) - 1) / span * 60 if span else 0.0
        warm = [t for t in times if t >= times[0] + 60.0]
        steady_span = warm[-1] - warm[0] if len(warm) > 1 else 0.0
        steady = (len(warm) - 1) / steady_span * 60 if steady_span else 0.0
        apply_requests = {
            k: v
            for k, v in backend.stats.by_kind.items()
            if k in ("version-get", "list-new", "delete")
        }
        with emu.lock:  # the re-check of new pushes: 304 when nothing was pushed
            not_modified = emu.statuses[("rest.versions.list", 304)] - listed_304
        return (
            f"{limit}/min",
            f"{report.deleted}",
            f"{wall:.1f}",
            f"{rate:.1f} ({rate / limit:.0%})",
            f"{steady:.1f} ({steady / limit:.0%})" if steady else "-",
            f"{answers} ({answers / max(1, report.deleted):.1%})",
            f"plan {planned}; apply " + fmt_kinds(apply_requests) + f" ({not_modified} 304)",
        )
    finally:
        emu.stop()


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--limits", default="60,180")
    parser.add_argument("--deletes", type=int, default=300)
    parser.add_argument("--apply-size", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.03)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    limits = [int(s) for s in args.limits.split(",") if s]

    print(f"GHCR emulator, {args.latency * 1000:.0f} ms per request, --keep 10\n")
    rows = [bench_plan(size, args.latency) for size in sizes]
    print("Plan (list + read manifests + plan)")
    print(table(("versions", "keep/delete", "wall s", "requests", "by kind"), rows))
    print()
    rows = [bench_apply(args.apply_size, lim, args.deletes, args.latency) for lim in limits]
    print(f"Apply ({args.deletes} deletes of a {args.apply_size:,}-version plan; hidden limit)")
    print(
        table(
            (
                "limit",
                "deleted",
                "wall s",
                "rate/min (of limit)",
                "after 1st min",
                "limit answers",
                "requests",
            ),
            rows,
        )
    )


if __name__ == "__main__":
    main()
