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

3. Re-check cost: a whole run on a 1,040-version package (8 multi-arch releases, 1,000
   dev images; keep 2 releases and 7 dev images: 1,023 deletes) against a hidden limit of
   180/min. Reports every request of the run (plan and apply) per deleted version
   (target <= 1.15), the same without the ``304`` answers (which GitHub does not count
   against the rate limit), the requests of the re-check by kind, and the window: the
   longest time from the beginning of the look that covered a ``DELETE`` to that
   ``DELETE`` (stated: 5 s).

Run: ``python bench/ghcr_prune_bench.py [--parts plan,apply,recheck] [--sizes 1000,5000]
[--limits 60,180] [--deletes 300] [--latency 0.03]``. The default run takes about 15
minutes (the re-check part about 6).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tagkeeper.registries.ghcr import GhcrBackend
from tagkeeper.retention.executor import apply_plan, replanner
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
            if k in ("version-get", "list-new", "list-recheck", "delete")
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


def seed_recheck(emu: GhcrEmulator) -> None:
    """1,040 versions: 8 multi-arch releases (5 versions each), then 1,000 dev images."""
    base = datetime.now(UTC) - timedelta(days=400)
    for i in range(8):
        built = images.multiarch(label=f"rr{i}")
        emu.push_built(
            OWNER, PACKAGE, built, tags=[f"v1.{i}.0"], created=base + timedelta(hours=i)
        )
    for i in range(1000):
        emu.push_built(
            OWNER,
            PACKAGE,
            images.image(label=f"dd{i}"),
            tags=[f"dev-{i:08x}"],
            created=base + timedelta(hours=10 + i),
        )


def bench_recheck(latency: float, limit: int) -> tuple[str, ...]:
    emu, token = start(latency, limit)
    try:
        seed_recheck(emu)
        stored = len(emu.versions(OWNER, PACKAGE))
        with build_client() as client:
            backend = GhcrBackend(
                IMAGE,
                client,
                token=Secret(token),
                api_url=emu.api_url,
                registry_url=emu.registry_url,
            )
            policy = Policy(
                keep_release=2, keep_dev=7, keep_pr=0, keep_prerelease=0, min_age=timedelta(0)
            )
            now = datetime.now(UTC)
            the_plan = plan(backend.versions(), policy, now=now, reader=backend.reader)
            planned = backend.stats.total
            with emu.lock:
                before_304 = sum(n for (_k, code), n in emu.statuses.items() if code == 304)
            began = time.perf_counter()
            report = apply_plan(
                the_plan, backend, replan=replanner(policy, now=now, reader=backend.reader)
            )
            wall = time.perf_counter() - began
        with emu.lock:
            not_modified = sum(n for (_k, code), n in emu.statuses.items() if code == 304)
        total = backend.stats.total
        deleted = max(1, report.deleted)
        recheck = {
            k: v
            for k, v in backend.stats.by_kind.items()
            if k in ("list-recheck", "list-new", "version-get")
        }
        return (
            f"{stored:,}",
            f"{len(the_plan.delete):,}/{report.deleted:,}",
            f"{wall:.0f}",
            f"{total:,} (plan {planned})",
            f"{total / deleted:.3f}",
            f"{(total - not_modified) / deleted:.3f}",
            fmt_kinds(recheck) + f" ({not_modified - before_304} 304 in apply)",
            f"{backend.recheck_widest:.2f} s",
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
    parser.add_argument("--parts", default="plan,apply,recheck")
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--limits", default="60,180")
    parser.add_argument("--deletes", type=int, default=300)
    parser.add_argument("--apply-size", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.03)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    limits = [int(s) for s in args.limits.split(",") if s]

    parts = set(args.parts.split(","))

    print(f"GHCR emulator, {args.latency * 1000:.0f} ms per request\n")
    if "plan" in parts:
        rows = [bench_plan(size, args.latency) for size in sizes]
        print("Plan (list + read manifests + plan), --keep 10")
        print(table(("versions", "keep/delete", "wall s", "requests", "by kind"), rows))
        print()
    if "recheck" in parts:
        rows = [bench_recheck(args.latency, 180)]
        print("Re-check: a whole run, 1,040 versions, hidden delete limit 180/min")
        header = (
            "versions",
            "planned/deleted",
            "wall s",
            "requests",
            "per delete",
            "without 304",
            "re-check requests",
            "window (max)",
        )
        print(table(header, rows))
        print()
    if "apply" not in parts:
        return
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
