"""Benchmark: ``tagkeeper prune`` of a 1,000-tag repository on a real distribution registry.

Starts its own ``docker-registry`` (distribution 2.8, deletes enabled) in a temporary
folder on 127.0.0.1, pushes TAGS tiny images over the API in parallel (one shared layer;
each image its own small config, so each has its own creation time, one minute apart;
90% ``dev-<hex>``, 10% releases), then runs through the CLI (``tagkeeper.cli.main``,
in-process): a dry run, the real run and a rerun, each ``--keep KEEP``, and prints wall
time and the registry requests by kind (from the command's own JSON report).

Two layouts can be measured:

- ``config``: the creation time is only in each image's config (one blob read per image,
  as for images built by ``docker build``);
- ``annotated``: the manifest also carries ``org.opencontainers.image.created`` (as
  buildx / metadata-action can write it): no blob read at all.

Run: ``python bench/oci_prune_bench.py [--tags 1000] [--keep 10] [--layouts config,annotated]``
(default: the ``config`` layout only, about 4 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: reuse the test helpers
    sys.path.insert(0, str(ROOT))

from tagkeeper.cli import main  # noqa: E402
from tests.emulators import images as im  # noqa: E402
from tests.integration.oci.registry import Pusher, start_registry  # noqa: E402

REPO = "bench/app"
KINDS = (
    "ping",
    "tags-list",
    "manifest-head",
    "manifest-get",
    "blob-get",
    "referrers",
    "delete-probe",
    "delete",
    "token",
)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def make_images(count: int, *, annotated: bool) -> list[tuple[str, im.Built]]:
    """(tag, image) pairs: one shared layer, one config per image, times a minute apart."""
    layer = im.Blob(im.OCI_LAYER, b"shared layer " * 64)
    out = []
    for i in range(count):
        created = T0 + timedelta(minutes=i)
        stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
        config = im.Blob(
            im.OCI_CONFIG,
            json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "created": stamp,
                    "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
                    "config": {"Labels": {"n": str(i)}},
                }
            ).encode(),
        )
        body: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": im.OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
        }
        if annotated:
            body["annotations"] = {"org.opencontainers.image.created": stamp}
        built = im.Built(json.dumps(body).encode(), im.OCI_MANIFEST, (config, layer))
        tag = f"v1.{i // 10}.{i % 10}" if i % 10 == 0 else f"dev-{i:08x}"
        out.append((tag, built))
    return out


def push_all(pusher: Pusher, images: list[tuple[str, im.Built]], workers: int) -> float:
    start = time.perf_counter()
    pusher.blob(REPO, images[0][1].blobs[1])  # the shared layer, once

    def push(item: tuple[str, im.Built]) -> None:
        tag, built = item
        pusher.blob(REPO, built.blobs[0])
        pusher.manifest(REPO, built, tag)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(push, images))
    return time.perf_counter() - start


def run(args: list[str]) -> tuple[float, int, dict[str, Any]]:
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["prune", *args, "--format", "json"])
    wall = time.perf_counter() - start
    if code != 0:
        sys.stderr.write(err.getvalue()[-3000:])
        raise SystemExit(f"prune exited with {code}")
    payload: dict[str, Any] = json.loads(out.getvalue())
    return wall, code, payload["images"][0]


def bench(tags: int, keep: int, workers: int, layout: str) -> list[list[str]]:
    rows: list[list[str]] = []
    with (
        tempfile.TemporaryDirectory(prefix="tk-oci-bench-") as folder,
        start_registry(Path(folder) / "registry") as registry,
    ):
        pusher = Pusher(registry)
        images = make_images(tags, annotated=layout == "annotated")
        pushed = push_all(pusher, images, workers)
        rows.append(
            [
                layout,
                f"push {tags} tags",
                f"{pushed:.1f}",
                str(pusher.requests),
                "",
                *[""] * len(KINDS),
            ]
        )
        base = ["--image", registry.image(REPO), "--keep", str(keep)]
        for phase, extra in (
            ("dry run", ["--dry-run"]),
            ("real run", ["--yes"]),
            ("rerun", ["--yes"]),
        ):
            wall, _code, image = run([*base, *extra])
            requests = image["requests"]
            deleted = (image.get("applied") or {}).get("counts", {}).get("deleted", 0)
            planned = len(image["delete"])
            rows.append(
                [
                    layout,
                    phase,
                    f"{wall:.1f}",
                    str(sum(requests.values())),
                    f"{planned}/{deleted}",
                    *[str(requests.get(kind, 0)) for kind in KINDS],
                ]
            )
        left = pusher.tags(REPO)
        pusher.close()
        expected = keep * 2  # the newest KEEP dev images and the newest KEEP releases
        if len(left) != expected:
            raise SystemExit(f"{len(left)} tags left, expected {expected}")
    return rows


def table(rows: list[list[str]]) -> str:
    header = ["layout", "phase", "wall s", "requests", "plan/deleted", *KINDS]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--keep", type=int, default=10)
    parser.add_argument("--workers", type=int, default=16, help="parallel pushes")
    parser.add_argument("--layouts", default="config", help="config, annotated or both")
    ns = parser.parse_args()
    rows: list[list[str]] = []
    started = time.perf_counter()
    for layout in ns.layouts.split(","):
        rows.extend(bench(ns.tags, ns.keep, ns.workers, layout.strip()))
    print(table(rows))
    print(
        f"\ntotal {time.perf_counter() - started:.1f}s; registry: distribution "
        "2.8 on 127.0.0.1 (filesystem storage); plan/deleted = versions planned for "
        "deletion / deleted"
    )


if __name__ == "__main__":
    main_()
