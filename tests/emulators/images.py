"""Builders of real OCI / Docker manifests for tests and benchmarks (registry-agnostic).

Every builder returns a :class:`Built`: the exact manifest bytes, their media type, their
digest (``sha256:`` of those bytes), the blobs the manifest references directly (config and
layers) and, for an index, the child manifests it lists. Push a ``Built`` bottom-up with
:meth:`Built.walk` (children before parents, blobs before manifests) to any registry.

Builders::

    image(platform="linux/amd64", created=None, layers=1, *, docker=False, label="")
    index(children, annotations=None, *, docker=False)
    attestation(subject)                      buildx attestation manifest for ``subject``
    multiarch(platforms, created=None, *, attest=True, docker=False, label="")
    cosign_signature(subject_digest, kind="sig")   cosign ``.sig``/``.att``/``.sbom`` payload
    cosign_tag(subject_digest, kind="sig")    "sha256-<hex>.sig"
    referrer(subject, artifact_type=...)      OCI 1.1 artifact with ``subject`` and
                                              ``artifactType``

Different arguments give different digests (``label`` makes otherwise equal images unique);
equal arguments give equal bytes, so fixtures are reproducible.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
IN_TOTO = "application/vnd.in-toto+json"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
ATTESTATION_TYPE = "attestation-manifest"
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
DEFAULT_ARTIFACT_TYPE = "application/vnd.example.sbom.v1+json"
EMPTY_JSON = b"{}"


def sha256(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _dump(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=False).encode()


def _iso(created: datetime | None) -> str:
    when = created or datetime(2024, 1, 1, tzinfo=UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Blob:
    """A blob (config or layer) that a manifest references."""

    media_type: str
    data: bytes
    digest: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", sha256(self.data))

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
        desc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if annotations:
            desc["annotations"] = dict(annotations)
        return desc


@dataclass(frozen=True, slots=True)
class Built:
    """A manifest (image, index, attestation, signature, artifact) and what it references."""

    data: bytes
    media_type: str
    blobs: tuple[Blob, ...] = ()
    children: tuple[Built, ...] = ()
    platform: dict[str, str] | None = None  # for an image: {"os", "architecture"[, "variant"]}
    annotations: dict[str, str] = field(default_factory=dict)  # index-descriptor annotations
    subject: str | None = None
    artifact_type: str | None = None
    digest: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", sha256(self.data))

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def is_index(self) -> bool:
        return self.media_type in (OCI_INDEX, DOCKER_LIST)

    def descriptor(self) -> dict[str, Any]:
        """How an index lists this manifest."""
        desc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform is not None:
            desc["platform"] = dict(self.platform)
        if self.annotations:
            desc["annotations"] = dict(self.annotations)
        if self.artifact_type is not None:
            desc["artifactType"] = self.artifact_type
        return desc

    def walk(self) -> Iterator[Built]:
        """Every manifest reachable from this one, children before parents, each once."""
        seen: set[str] = set()
        yield from self._walk(seen)

    def _walk(self, seen: set[str]) -> Iterator[Built]:
        for child in self.children:
            yield from child._walk(seen)
        if self.digest not in seen:
            seen.add(self.digest)
            yield self

    def all_blobs(self) -> Iterator[Blob]:
        """Every blob referenced by this manifest or a descendant, each once."""
        seen: set[str] = set()
        for built in self.walk():
            for blob in built.blobs:
                if blob.digest not in seen:
                    seen.add(blob.digest)
                    yield blob

    def json(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.data)
        return loaded


def _parse_platform(platform: str) -> dict[str, str]:
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform must be os/arch[/variant], got {platform!r}")
    result = {"architecture": parts[1], "os": parts[0]}
    if len(parts) == 3:
        result["variant"] = parts[2]
    return result


def _layer_bytes(seed: str, index: int) -> bytes:
    # Deterministic, distinct bytes; registries check digests, not tar contents.
    return hashlib.sha256(f"layer:{seed}:{index}".encode()).digest() * 4


def image(
    platform: str = "linux/amd64",
    created: datetime | None = None,
    layers: int = 1,
    *,
    docker: bool = False,
    label: str = "",
) -> Built:
    """A single-platform image manifest with its config and ``layers`` layer blobs."""
    plat = _parse_platform(platform)
    seed = f"{platform}|{_iso(created)}|{label}"
    layer_blobs = [
        Blob(DOCKER_LAYER if docker else OCI_LAYER, _layer_bytes(seed, i)) for i in range(layers)
    ]
    config_obj: dict[str, Any] = {
        "architecture": plat["architecture"],
        "os": plat["os"],
        "created": _iso(created),
        "config": {"Labels": {"org.example.label": label}} if label else {},
        "rootfs": {
            "type": "layers",
            "diff_ids": [sha256(b.data + b"uncompressed") for b in layer_blobs],
        },
    }
    if "variant" in plat:
        config_obj["variant"] = plat["variant"]
    config = Blob(DOCKER_CONFIG if docker else OCI_CONFIG, _dump(config_obj))
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.descriptor(),
        "layers": [b.descriptor() for b in layer_blobs],
    }
    return Built(
        data=_dump(manifest),
        media_type=media_type,
        blobs=(config, *layer_blobs),
        platform=plat,
    )


def index(
    children: Sequence[Built],
    annotations: Mapping[str, str] | None = None,
    *,
    docker: bool = False,
) -> Built:
    """An OCI image index (or a Docker manifest list with ``docker=True``) of ``children``."""
    media_type = DOCKER_LIST if docker else OCI_INDEX
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [child.descriptor() for child in children],
    }
    if annotations:
        body["annotations"] = dict(annotations)
    return Built(data=_dump(body), media_type=media_type, children=tuple(children))


def attestation(subject: Built | str, *, label: str = "") -> Built:
    """A buildx attestation manifest for ``subject`` (an image manifest or its digest).

    It is listed in the index with platform ``unknown/unknown`` and the annotations
    ``vnd.docker.reference.type: attestation-manifest`` and
    ``vnd.docker.reference.digest: <subject digest>``.
    """
    subject_digest = subject if isinstance(subject, str) else subject.digest
    statement = _dump(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": "_", "digest": {"sha256": subject_digest.split(":", 1)[1]}}],
            "predicate": {"builder": {"id": "tests"}, "label": label},
        }
    )
    layer = Blob(IN_TOTO, statement)
    config = Blob(
        OCI_CONFIG,
        _dump(
            {
                "architecture": "unknown",
                "os": "unknown",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
            }
        ),
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [
            layer.descriptor({"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"})
        ],
    }
    return Built(
        data=_dump(manifest),
        media_type=OCI_MANIFEST,
        blobs=(config, layer),
        platform={"architecture": "unknown", "os": "unknown"},
        annotations={REFERENCE_DIGEST: subject_digest, REFERENCE_TYPE: ATTESTATION_TYPE},
    )


def multiarch(
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    created: datetime | None = None,
    *,
    attest: bool = True,
    docker: bool = False,
    label: str = "",
) -> Built:
    """What ``docker buildx build --platform ... --push`` produces: an index of one image per
    platform, plus one attestation manifest per image when ``attest`` is true."""
    images = [image(p, created, docker=docker, label=label) for p in platforms]
    children: list[Built] = list(images)
    if attest:
        children.extend(attestation(img, label=label) for img in images)
    return index(children, docker=docker)


def cosign_tag(subject_digest: str, kind: str = "sig") -> str:
    """The tag cosign uses for a signature (``sig``), attestation (``att``) or SBOM (``sbom``)."""
    algorithm, _, hexpart = subject_digest.partition(":")
    return f"{algorithm}-{hexpart}.{kind}"


def cosign_signature(subject: Built | str, kind: str = "sig") -> Built:
    """A cosign signature (or attestation/SBOM) manifest for ``subject``."""
    subject_digest = subject if isinstance(subject, str) else subject.digest
    payload = _dump(
        {
            "critical": {
                "identity": {"docker-reference": "ghcr.io/example/app"},
                "image": {"docker-manifest-digest": subject_digest},
                "type": "cosign container image signature",
            },
            "optional": {"kind": kind},
        }
    )
    layer_type = IN_TOTO if kind == "att" else COSIGN_SIMPLESIGNING
    layer = Blob(layer_type, payload)
    config = Blob(
        OCI_CONFIG,
        _dump(
            {
                "architecture": "",
                "os": "",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
            }
        ),
    )
    annotations = {"dev.cosignproject.cosign/signature": "MEUCIQ" + layer.digest[7:47]}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor(annotations)],
    }
    return Built(data=_dump(manifest), media_type=OCI_MANIFEST, blobs=(config, layer))


def referrer(
    subject: Built | str,
    artifact_type: str = DEFAULT_ARTIFACT_TYPE,
    *,
    subject_media_type: str | None = None,
    subject_size: int | None = None,
    label: str = "",
) -> Built:
    """An OCI 1.1 artifact manifest whose ``subject`` is ``subject``.

    When ``subject`` is a digest string, pass its media type and size for a complete
    descriptor (defaults: an OCI image manifest of size 0 is not valid, so 1 is used).
    """
    if isinstance(subject, str):
        subject_desc = {
            "mediaType": subject_media_type or OCI_MANIFEST,
            "digest": subject,
            "size": subject_size if subject_size is not None else 1,
        }
    else:
        subject_desc = {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        }
    empty = Blob(OCI_EMPTY, EMPTY_JSON)
    layer = Blob(
        artifact_type,
        _dump({"subject": subject_desc["digest"], "artifactType": artifact_type, "label": label}),
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty.descriptor(),
        "layers": [layer.descriptor()],
        "subject": subject_desc,
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }
    return Built(
        data=_dump(manifest),
        media_type=OCI_MANIFEST,
        blobs=(empty, layer),
        subject=str(subject_desc["digest"]),
        artifact_type=artifact_type,
    )


def describe(data: bytes) -> tuple[tuple[str, ...], str | None, str | None]:
    """(children, subject, artifactType) of manifest bytes; used by emulators to index them."""
    body = json.loads(data)
    if not isinstance(body, dict):
        raise ValueError("a manifest must be a JSON object")  # noqa: TRY004 (bad input, like JSON)
    children = tuple(
        str(m["digest"]) for m in body.get("manifests", []) if isinstance(m, dict) and "digest" in m
    )
    subject = body.get("subject")
    subject_digest = (
        str(subject["digest"]) if isinstance(subject, dict) and "digest" in subject else None
    )
    artifact_type = body.get("artifactType")
    if artifact_type is None and isinstance(body.get("config"), dict):
        config_type = body["config"].get("mediaType")
        if subject_digest is not None and config_type not in (OCI_CONFIG, DOCKER_CONFIG):
            artifact_type = config_type
    return children, subject_digest, str(artifact_type) if artifact_type is not None else None
