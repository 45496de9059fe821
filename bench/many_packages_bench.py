"""Benchmark: a dry run of a whole organisation's packages, cold and with a warm cache.

An organisation on the GHCR emulator (real HTTP on 127.0.0.1) holds ``--packages``
packages (100) of ``--versions`` versions (100) each: per package, 4 multi-arch releases
(as buildx pushes them: an index, 2 platform images and their 2 attestations, 5 versions
each) and single-arch dev images for the rest.
``tagkeeper prune --all ghcr.io/acme --dry-run --manifest-cache DIR`` runs twice, in
process, with the default policy (``--keep 5``, ``--min-age 1h``):

- cold: empty cache; every manifest that decides reachability is read from ``/v2``;
- warm: the same command again; the manifests come from the cache.

Printed per run: wall time, requests in total and per package, the GitHub API requests
(the primary rate limit's budget) and the ``/v2`` requests, and the requests by kind.

Run: ``python bench/many_packages_bench.py [--packages 100] [--versions 100]
[--latency 0.0]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tagkeeper.cli import main as cli
from tests.emulators import images
from tests.emulators.ghcr import GhcrEmulator

ORG = "acme"
RELEASES = 4


def seed(emu: GhcrEmulator, packages: int, versions: int) -> None:
    base = datetime.now(UTC) - timedelta(days=60)
    for p in range(packages):
        name = f"svc-{p:03d}"
        pushed = 0
        for r in range(RELEASES):  # 5 versions each: the index, 2 images, 2 attestations
            built = images.multiarch(("linux/amd64", "linux/arm64"), label=f"{name}-r{r}")
            emu.push_built(ORG, name, built, tags=[f"v1.{r}.0"], created=base + timedelta(hours=r))
            pushed += 5
        for d in range(versions - pushed):
            emu.push_built(
                ORG,
                name,
                images.image(label=f"{name}-d{d}"),
                tags=[f"dev-{d:07x}"],
                created=base + timedelta(hours=10 + d),
            )


def run(emu: GhcrEmulator, cache: Path) -> tuple[int, float, Counter[str]]:
    emu.reset_counters()
    argv = [
        "prune", "--all", f"ghcr.io/{ORG}", "--dry-run", "--format", "json",
        "--manifest-cache", str(cache),
        "--api-url", emu.api_url, "--registry-url", emu.registry_url,
    ]  # fmt: skip
    sink = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(io.StringIO()):
        code = cli(argv)
    wall = time.perf_counter() - started
    return code, wall, Counter(entry.kind for entry in emu.log)


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)) for r in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packages", type=int, default=100)
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    emu = GhcrEmulator(latency=args.latency).start()
    try:
        emu.add_org(ORG)
        os.environ["GITHUB_TOKEN"] = emu.add_token(login="bench", default="admin")
        seed(emu, args.packages, args.versions)
        rows: list[tuple[str, ...]] = []
        with tempfile.TemporaryDirectory() as folder:
            for label in ("cold", "warm"):
                code, wall, kinds = run(emu, Path(folder))
                if code != 0:
                    raise SystemExit(f"the {label} run exited {code}")
                total = sum(kinds.values())
                rest = sum(n for k, n in kinds.items() if k.startswith("rest."))
                top = ", ".join(f"{k.split('.', 1)[1]} {n}" for k, n in kinds.most_common(5))
                rows.append(
                    (
                        label,
                        f"{wall:.1f}",
                        str(total),
                        f"{total / args.packages:.2f}",
                        str(rest),
                        str(total - rest),
                        top,
                    )
                )
    finally:
        emu.stop()
    print(
        f"GHCR emulator, {args.packages} packages x {args.versions} versions, "
        f"{args.latency * 1000:.0f} ms per request, prune --all --dry-run --manifest-cache\n"
    )
    header = ("run", "wall s", "requests", "per package", "API", "/v2", "by kind (top 5)")
    print(table(header, rows))


if __name__ == "__main__":
    main()
