"""Benchmark: ``tagkeeper prune --local`` on a repository of 200 images, real engine.

Setup loads every image in one ``docker load`` of a hand-made archive: one shared
layer (the static busybox) and one small config per image, each with its own label and
creation time (one minute apart), so the images are distinct and their order is known
without waiting between builds. 80% carry ``dev-<hex>`` tags, the rest releases
``vX.Y.0`` created in shuffled order; two stopped containers hold old images.

Then, in-process through the CLI (``tagkeeper.cli.main``), it times a dry run (plan
only; the first one pays for importing the docker SDK and httpx), the real run and a
rerun, and prints wall time and the engine API calls by kind (from the
command's own JSON report). Everything it created is removed at the end.

Run: ``python bench/local_prune_bench.py [--images 200] [--keep 10]``
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import random
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BUSYBOX = Path("/usr/bin/busybox")
KINDS = ("images", "containers", "inspect", "remove")


@dataclass
class Run:
    name: str
    seconds: float
    code: int
    requests: dict[str, int]
    planned: int
    kept: int
    deleted: int


def _layer() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo("bin")
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        tar.addfile(folder)
        tar.add(BUSYBOX, arcname="bin/busybox")
    return buffer.getvalue()


def _stamp(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def image_archive(repo: str, count: int, seed: int = 7) -> tuple[bytes, list[str]]:
    """A ``docker load`` archive of ``count`` images of ``repo``; and their tags, oldest first."""
    rng = random.Random(seed)
    layer = _layer()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    releases = max(1, count // 5)
    tags = [f"dev-{i:07x}" for i in range(count - releases)]
    release_tags = [f"v1.{minor}.0" for minor in range(releases)]
    rng.shuffle(release_tags)  # creation order differs from SemVer order
    slots = rng.sample(range(count), releases)  # where releases sit in creation order
    order: list[str] = []
    dev_iter, rel_iter = iter(tags), iter(release_tags)
    for i in range(count):
        order.append(next(rel_iter) if i in slots else next(dev_iter))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    manifest = []
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("layer.tar", layer)
        for i, tag in enumerate(order):
            config = {
                "architecture": "amd64",
                "os": "linux",
                "created": _stamp(start + timedelta(minutes=i)),
                "config": {"Labels": {"org.tagkeeper.bench": f"{repo}#{i}"}},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "history": [{"created": _stamp(start), "created_by": "tagkeeper bench"}],
            }
            data = json.dumps(config, sort_keys=True).encode()
            name = hashlib.sha256(data).hexdigest() + ".json"
            add(name, data)
            manifest.append(
                {"Config": name, "RepoTags": [f"{repo}:{tag}"], "Layers": ["layer.tar"]}
            )
        add("manifest.json", json.dumps(manifest).encode())
    return out.getvalue(), order


def run_cli(name: str, argv: list[str]) -> Run:
    from tagkeeper.cli import main

    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    seconds = time.perf_counter() - started
    try:
        payload = json.loads(out.getvalue())
    except json.JSONDecodeError:
        sys.exit(f"{name}: no JSON report (exit {code}): {err.getvalue()}")
    entry: dict[str, Any] = payload["images"][0]
    if entry.get("error"):
        sys.exit(f"{name}: {entry['error']}")
    applied = entry.get("applied") or {}
    return Run(
        name=name,
        seconds=seconds,
        code=code,
        requests=dict(entry.get("requests") or {}),
        planned=len(entry["delete"]),
        kept=len(entry["keep"]),
        deleted=int(applied.get("counts", {}).get("deleted", 0)),
    )


def table(rows: list[Run]) -> str:
    header = ["step", "wall s", *KINDS, "API calls", "kept", "planned", "deleted", "exit"]
    lines = [header]
    for r in rows:
        lines.append(
            [
                r.name,
                f"{r.seconds:.2f}",
                *(str(r.requests.get(k, 0)) for k in KINDS),
                str(sum(r.requests.values())),
                str(r.kept),
                str(r.planned),
                str(r.deleted),
                str(r.code),
            ]
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = [
        "| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(row)) + " |" for row in lines
    ]
    text.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--keep", type=int, default=10)
    args = parser.parse_args()

    import docker
    import docker.errors

    client = docker.from_env(timeout=300)
    client.ping()
    repo = f"bench.local/tk{uuid.uuid4().hex[:10]}/app"
    containers: list[str] = []
    try:
        started = time.perf_counter()
        archive, order = image_archive(repo, args.images)
        list(client.api.load_image(archive))
        setup = time.perf_counter() - started
        listed = client.api.images(name=repo)
        if len(listed) != args.images:
            sys.exit(f"setup: expected {args.images} images, the engine lists {len(listed)}")
        by_tag = {ref.rpartition(":")[2]: e["Id"] for e in listed for ref in e["RepoTags"] or []}
        # two stopped containers hold the oldest dev image and the oldest-created release
        held = [order[0], next(t for t in order if t.startswith("v"))]
        for n, tag in enumerate(held):
            c = client.api.create_container(
                by_tag[tag],
                command=["busybox", "true"],
                name=f"{repo.split('/')[1]}-{n}",
                host_config=client.api.create_host_config(network_mode="host"),
            )
            containers.append(c["Id"])
        print(
            f"setup: {args.images} images of {repo} loaded in {setup:.2f}s "
            f"({len(archive) / 1e6:.1f} MB archive), {len(containers)} containers"
        )
        argv = [
            "prune",
            "--local",
            "--image",
            repo,
            "--keep",
            str(args.keep),
            "--min-age",
            "0",
            "--format",
            "json",
        ]
        rows = [
            run_cli("plan (--dry-run), cold imports", [*argv, "--dry-run"]),
            run_cli("plan (--dry-run), warm", [*argv, "--dry-run"]),
            run_cli("prune (apply)", [*argv, "--yes"]),
            run_cli("rerun (nothing left)", [*argv, "--yes"]),
        ]
        remaining = client.api.images(name=repo)
        releases = sum(1 for t in order if t.startswith("v"))
        expected = min(args.keep, args.images - releases) + min(args.keep, releases) + len(held)
        print(table(rows))
        print(
            f"images left: {len(remaining)} (expected {expected}: newest {args.keep} dev, "
            f"highest {args.keep} releases, {len(held)} used by containers)"
        )
        if len(remaining) != expected:
            sys.exit("unexpected result")
    finally:
        for container in containers:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(container, force=True)
        for entry in client.api.images(name=repo):
            for ref in entry.get("RepoTags") or []:
                with contextlib.suppress(docker.errors.NotFound):
                    client.api.remove_image(ref)
        client.close()


if __name__ == "__main__":
    main()
