"""Benchmark: planning retention for large packages (pure planner, in-memory reader).

Usage: ``python bench/plan_bench.py [SIZE ...]`` (default 1000 10000 100000).

Each size runs in its own process so memory figures do not mix. The package is a
realistic mix (per 100 versions): 18 dev images pushed by buildx as multi-arch indexes
(index + 2 platform manifests + 1 attestation manifest = 72 versions), 1 release index
with 2 platforms (3), 1 prerelease, 10 PR images, 4 cosign signatures and 10 untagged
garbage manifests. Policy: keep 10 per channel, 1h grace period.

Figures: plan() wall time (best of 3), tracemalloc peak during plan() and the growth of
the process's max RSS during the first plan() (resource.getrusage). Targets (DESIGN §4):
under 1 s and under 300 MB for 100,000 versions.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tagkeeper.inventory import (
    OCI_INDEX,
    OCI_MANIFEST,
    ManifestInfo,
    ManifestUnreadable,
    Version,
)
from tagkeeper.retention.planner import Policy, plan

if TYPE_CHECKING:
    from collections.abc import Sequence

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TIME_TARGET_S = 1.0
MEMORY_TARGET_MB = 300.0


class MemoryReader:
    """A ``ManifestReader`` over dictionaries; counts its calls."""

    def __init__(self) -> None:
        self.manifests: dict[str, ManifestInfo] = {}
        self.referrer_map: dict[str, list[str]] = {}
        self.reads = 0
        self.referrer_calls = 0

    def manifest(self, digest: str) -> ManifestInfo:
        self.reads += 1
        info = self.manifests.get(digest)
        if info is None:
            raise ManifestUnreadable(digest, "manifest unknown")
        return info

    def referrers(self, digest: str) -> Sequence[str]:
        self.referrer_calls += 1
        return self.referrer_map.get(digest, ())


def _digest(n: int) -> str:
    return "sha256:" + hashlib.sha256(n.to_bytes(8, "big")).hexdigest()


def generate(
    size: int, seed: int = 1, *, shuffled: bool = False
) -> tuple[list[Version], MemoryReader]:
    """A package of about ``size`` versions pushed over a year, listed newest first as
    registries list them (``shuffled``: in random order, the planner's worst case for
    memory locality; the plan is the same either way)."""
    rnd = random.Random(seed)
    reader = MemoryReader()
    versions: list[Version] = []
    counter = 0
    units = max(1, size // 100)
    tagged_indexes: list[str] = []
    empty: frozenset[str] = frozenset()

    def add(tags: frozenset[str], minute: int, children: tuple[str, ...] = ()) -> str:
        nonlocal counter
        counter += 1
        digest = _digest(counter)
        media = OCI_INDEX if children else OCI_MANIFEST
        created = T0 + timedelta(minutes=minute)
        versions.append(Version(digest, tags, created, str(counter), media))
        if children:  # the reader is asked only about indexes
            reader.manifests[digest] = ManifestInfo(digest, media, children)
        return digest

    kinds = (
        ["dev"] * (units * 18)
        + ["release"] * units
        + ["prerelease"] * units
        + ["pr"] * (units * 10)
        + ["sig"] * (units * 4)
        + ["garbage"] * (units * 10)
    )
    minutes = 60 * 24 * 365
    pushes = sorted((rnd.randrange(minutes), kind) for kind in kinds)
    releases = prereleases = prs = 0
    for t, kind in pushes:
        if kind == "dev":  # buildx: 2 platform manifests, 1 attestation, the index
            kids = (add(empty, t), add(empty, t), add(empty, t))
            sha = f"{rnd.getrandbits(28):07x}"
            tagged_indexes.append(add(frozenset({f"dev-{sha}"}), t, kids))
        elif kind == "release":  # index + 2 platforms; every third also has a dev tag
            i = releases = releases + 1
            platforms = (add(empty, t), add(empty, t))
            tags = {f"v{i // 100}.{i // 10 % 10}.{i % 10}"}
            if i % 3 == 0:
                tags.add(f"dev-{rnd.getrandbits(28):07x}")
            tagged_indexes.append(add(frozenset(tags), t, platforms))
        elif kind == "prerelease":
            i = prereleases = prereleases + 1
            add(frozenset({f"v{i // 100}.{i // 10 % 10}.{i % 10}-rc.{i % 4 + 1}"}), t)
        elif kind == "pr":
            prs += 1
            add(frozenset({f"pr-{prs}"}), t)
        elif kind == "sig" and tagged_indexes:  # cosign signature of an earlier image
            subject = rnd.choice(tagged_indexes)
            add(frozenset({"sha256-" + subject[7:] + ".sig"}), t)
        else:
            add(empty, t)
    versions.reverse()
    if shuffled:
        rnd.shuffle(versions)
    return versions, reader


def measure(size: int, *, shuffled: bool = False) -> dict[str, object]:
    versions, reader = generate(size, shuffled=shuffled)
    policy = Policy.uniform(10)
    now = T0 + timedelta(days=400)
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = plan(versions, policy, now=now, reader=reader)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reads, referrer_calls = reader.reads, reader.referrer_calls
    del result
    best = best_cpu = float("inf")
    for _ in range(3):
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        result = plan(versions, policy, now=now, reader=reader)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
        del result
    gc.collect()
    tracemalloc.start()
    result = plan(versions, policy, now=now, reader=reader)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "versions": len(versions),
        "order": "shuffled" if shuffled else "listing",
        "keep": len(result.keep),
        "delete": len(result.delete),
        "manifest_reads": reads,
        "referrer_calls": referrer_calls,
        "seconds": best,
        "cpu_seconds": best_cpu,
        "tracemalloc_mb": peak / 2**20,
        "rss_delta_mb": (rss_after - rss_before) / 1024,  # ru_maxrss is in KiB on Linux
    }


def reference_seconds() -> float:
    """Wall time of a fixed pure-Python loop (1,000,000 dict stores), best of 3: a
    yardstick for how fast (or how loaded) this machine is when the table is printed."""
    best = float("inf")
    for _ in range(3):
        table: dict[int, int] = {}
        start = time.perf_counter()
        for i in range(1_000_000):
            table[i] = i
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        print(json.dumps(measure(int(argv[1]), shuffled=argv[2:] == ["shuffled"])))
        return 0
    sizes = [int(a) for a in argv] or [1_000, 10_000, 100_000]
    runs = [(size, "listing") for size in sizes] + [(max(sizes), "shuffled")]
    rows = []
    for size, order in runs:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(size), order],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(out.stdout))
    header = (
        f"{'versions':>9} {'order':>9} {'keep':>6} {'delete':>7} {'reads':>6} {'referrers':>9} "
        f"{'plan s':>8} {'CPU s':>7} {'tracemalloc MB':>15} {'RSS delta MB':>13}  target"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for row in rows:
        seconds = float(row["seconds"])
        peak = max(float(row["tracemalloc_mb"]), float(row["rss_delta_mb"]))
        met = seconds < TIME_TARGET_S and peak < MEMORY_TARGET_MB
        if int(row["versions"]) >= 100_000:
            ok = ok and met
        verdict = "met" if met else "MISSED"
        print(
            f"{row['versions']:>9} {row['order']:>9} {row['keep']:>6} {row['delete']:>7} "
            f"{row['manifest_reads']:>6} {row['referrer_calls']:>9} {seconds:>8.3f} "
            f"{float(row['cpu_seconds']):>7.3f} "
            f"{float(row['tracemalloc_mb']):>15.1f} {float(row['rss_delta_mb']):>13.1f}  "
            f"{verdict} (< {TIME_TARGET_S:g} s, < {MEMORY_TARGET_MB:g} MB)"
        )
    print(
        f"machine yardstick: 1,000,000 dict stores in {reference_seconds():.3f} s "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
