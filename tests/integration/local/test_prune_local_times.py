"""``tagkeeper prune --local`` orders images created within one second by their exact time.

The engine's image list gives creation times in whole seconds. Images are made here with
``docker load`` of hand-made archives whose configuration says exactly when they were
created (three within one second), so the tie is certain, and their ids are arranged so
that ordering them by digest, as a tie used to be broken, keeps an older dev build and
deletes the newest. Images with the very same creation time (a reproducible build) are
ordered by when they were tagged on this host (``Metadata.LastTagTime``, a pull or load).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.cli import main

if TYPE_CHECKING:
    from tests.integration.local.conftest import Engine

pytestmark = pytest.mark.integration


def _archive(ref: str | None, created: str, label: str) -> tuple[bytes, str]:
    """A ``docker save`` archive of one image tagged ``ref`` (or untagged); and the
    image id. A load tags the image without setting its ``LastTagTime``."""
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w") as layer:
        data = label.encode()
        info = tarfile.TarInfo("label.txt")
        info.size = len(data)
        info.mtime = 0
        layer.addfile(info, io.BytesIO(data))
    layer_bytes = layer_buffer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": created,
            "config": {"Labels": {"org.tagkeeper.test": label}},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "tagkeeper test"}],
        },
        separators=(",", ":"),
    ).encode()
    image_hex = hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        [
            {
                "Config": f"{image_hex}.json",
                "RepoTags": [ref] if ref else [],
                "Layers": ["layer/layer.tar"],
            }
        ]
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, blob in (
            (f"{image_hex}.json", config),
            ("layer/layer.tar", layer_bytes),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return out.getvalue(), f"sha256:{image_hex}"


def _labels_in_id_order(count: int, created: list[str], repo: str) -> list[str]:
    """``count`` labels whose images (created at ``created[i]``) have ids in ascending
    order: the oldest the smallest id, the newest the largest."""
    while True:
        labels = [uuid.uuid4().hex for _ in range(count)]
        ids = [
            _archive(f"{repo}:x", when, label)[1]
            for when, label in zip(created, labels, strict=True)
        ]
        if ids == sorted(ids):
            return labels


def _load(engine: Engine, ref: str | None, created: str, label: str) -> str:
    archive, image_id = _archive(ref, created, label)
    engine.client.api.load_image(archive)
    engine.images.add(image_id)
    if ref:
        engine.refs.add(ref)
    return image_id


def _prune(capsys: pytest.CaptureFixture[str], repo: str, keep: int) -> Any:
    capsys.readouterr()
    argv = ["prune", "--local", "--image", repo, "--keep", str(keep), "--min-age", "0"]
    code = main([*argv, "--dry-run", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    (entry,) = json.loads(out)["images"]
    return entry


def test_images_created_within_one_second_are_ordered_by_their_exact_time(
    engine: Engine, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = f"ghcr.io/{unique}/app"
    created = [
        "2026-03-01T10:00:05.100000000Z",
        "2026-03-01T10:00:05.500000000Z",
        "2026-03-01T10:00:05.900000000Z",
    ]
    labels = _labels_in_id_order(3, created, repo)
    tags = ["dev-aaaa001", "dev-aaaa002", "dev-aaaa003"]  # oldest to newest build
    ids = [
        _load(engine, f"{repo}:{tag}", when, label)
        for tag, when, label in zip(tags, created, labels, strict=True)
    ]
    assert ids == sorted(ids)  # by digest, the newest would rank last

    entry = _prune(capsys, repo, keep=2)
    kept = {t for item in entry["keep"] for t in item["tags"]}
    deleted = {t for item in entry["delete"] for t in item["tags"]}
    assert kept == {"dev-aaaa003", "dev-aaaa002"}
    assert deleted == {"dev-aaaa001"}
    newest = next(i for i in entry["keep"] if "dev-aaaa003" in i["tags"])
    assert newest["created"].startswith("2026-03-01T10:00:05.9")
    assert newest["rule"] == "newest-dev"

    entry = _prune(capsys, repo, keep=1)
    assert {t for item in entry["keep"] for t in item["tags"]} == {"dev-aaaa003"}


def test_images_with_the_same_creation_time_are_ordered_by_when_they_came_here(
    engine: Engine, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = f"ghcr.io/{unique}/repro"
    same = "2026-03-01T10:00:05.000000000Z"  # SOURCE_DATE_EPOCH: every build alike
    labels = _labels_in_id_order(2, [same, same], repo)
    first = _load(engine, None, same, labels[0])
    second = _load(engine, None, same, labels[1])
    assert first < second  # by digest, the one tagged first would win
    engine.tag(first, f"{repo}:dev-bbbb001")  # sets LastTagTime, as a pull or build does
    time.sleep(0.05)
    engine.tag(second, f"{repo}:dev-bbbb002")
    times = [engine.client.api.inspect_image(i)["Metadata"]["LastTagTime"] for i in (first, second)]
    assert times[0] < times[1]

    entry = _prune(capsys, repo, keep=1)
    assert {t for item in entry["keep"] for t in item["tags"]} == {"dev-bbbb002"}
    assert {t for item in entry["delete"] for t in item["tags"]} == {"dev-bbbb001"}
