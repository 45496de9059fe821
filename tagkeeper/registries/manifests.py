"""Reading manifest documents: bytes in, :class:`~tagkeeper.inventory.ManifestInfo` out.

Pure (no I/O, no clock): every backend that fetches manifests (GHCR, any OCI registry)
hands the bytes it received here, with the digest it asked for and the ``Content-Type``
it was answered with.

- :func:`digest_matches` / :func:`digest_of`: the content address of a manifest
  (``sha256``, and ``sha512`` which the OCI image spec also registers).
- :func:`read_manifest`: the digest check, then the document: its media type, the
  descriptors an index lists, the OCI 1.1 ``subject``, the config descriptor and the
  ``org.opencontainers.image.created`` annotation. :func:`parse_manifest` gives the
  :class:`ManifestInfo` of it. Anything that would leave reachability in doubt raises
  :class:`~tagkeeper.inventory.ManifestUnreadable` with the reason, so the planner keeps
  whatever the manifest could reach.
- :func:`parse_time`: RFC 3339 times as written in annotations and image configs.

The media type is the one the document states (``mediaType``), else the one of the
``Content-Type`` header, else, for a document without either, an OCI index when it has
``manifests`` and an OCI image manifest when not. Only the four types tagkeeper asks
registries for are accepted (OCI index and image manifest, Docker manifest list and
image manifest); an image manifest that lists ``manifests`` contradicts itself and is
unreadable too (read either way, it could hide a child from the planner).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tagkeeper.inventory import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    ManifestInfo,
    ManifestUnreadable,
)
from tagkeeper.refs import DIGEST_RE
from tagkeeper.untrusted import NotJson, loads, neutralise

CREATED_ANNOTATION = "org.opencontainers.image.created"
# Reproducible builds stamp a fixed time (the Unix epoch, 1980-01-01 for buildpacks and
# zip-era tools): such a time says nothing about when an image was built.
PLACEHOLDER_BEFORE = datetime(1981, 1, 1, tzinfo=UTC)
ATTESTATION_REFERENCE = "attestation-manifest"  # buildx: vnd.docker.reference.type

_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
_RFC3339_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})?"
)


def digest_of(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_matches(digest: str, data: bytes) -> bool:
    """Whether ``data`` hashes to ``digest`` (``sha256`` or ``sha512``; other: ``False``)."""
    algorithm, _, expected = digest.partition(":")
    hasher = _HASHES.get(algorithm)
    return hasher is not None and hasher(data).hexdigest() == expected


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time (any number of fraction digits) as an aware UTC datetime.

    ``None`` when ``text`` is not such a time, and for the placeholder times of
    reproducible builds (anything before 1981, see :data:`PLACEHOLDER_BEFORE`). A time
    without an offset is taken as UTC. Fractions beyond microseconds are cut.
    """
    match = _RFC3339_RE.fullmatch(text.strip())
    if match is None:
        return None
    date, clock, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    offset = "+00:00" if zone in (None, "Z", "z") else zone
    if len(offset) == 5:
        offset = offset[:3] + ":" + offset[3:]
    try:
        when = datetime.fromisoformat(f"{date}T{clock}.{micro}{offset}")
    except ValueError:
        return None
    when = when.astimezone(UTC)
    return None if when < PLACEHOLDER_BEFORE else when


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A manifest an index lists (or a manifest's config): only what tagkeeper reads."""

    digest: str
    media_type: str | None = None
    size: int | None = None
    os: str | None = None
    architecture: str | None = None
    reference_type: str | None = None  # the vnd.docker.reference.type annotation

    @property
    def is_platform_image(self) -> bool:
        """Whether it runs somewhere: not a buildx attestation, not ``unknown/unknown``."""
        if self.reference_type == ATTESTATION_REFERENCE:
            return False
        return not (self.os == "unknown" and self.architecture == "unknown")


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest document whose bytes matched its digest."""

    digest: str
    media_type: str
    entries: tuple[Descriptor, ...] = ()  # an index's manifests[], in order
    subject: str | None = None
    config: Descriptor | None = None
    created: datetime | None = None  # the created annotation (placeholders: None)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def children(self) -> tuple[str, ...]:
        return tuple(entry.digest for entry in self.entries)

    def platform_children(self) -> tuple[str, ...]:
        """Children that are platform images (see :attr:`Descriptor.is_platform_image`)."""
        return tuple(entry.digest for entry in self.entries if entry.is_platform_image)

    @property
    def info(self) -> ManifestInfo:
        return ManifestInfo(
            digest=self.digest,
            media_type=self.media_type,
            children=self.children,
            subject=self.subject,
            created=self.created,
        )


def read_manifest(digest: str, data: bytes, content_type: str | None) -> Manifest:
    """The manifest ``digest`` from the bytes a registry (or a cache) gave for it.

    ``content_type`` is the ``Content-Type`` it came with (parameters ignored); the
    document's own ``mediaType`` wins over it. Raises :class:`ManifestUnreadable` when the
    bytes have another digest, are not a JSON object, or are not a manifest or index of a
    known media type.
    """
    if not digest_matches(digest, data):
        algorithm = digest.partition(":")[0]
        if algorithm not in _HASHES:
            raise ManifestUnreadable(digest, f"cannot verify a digest of type {algorithm!r}")
        raise ManifestUnreadable(
            digest, f"the content does not match: it has another digest ({digest_of(data)})"
        )
    try:
        doc = loads(data)
    except NotJson as exc:
        raise ManifestUnreadable(digest, f"the manifest: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestUnreadable(digest, "the manifest is not a JSON object")
    media = doc.get("mediaType")
    if not isinstance(media, str) or not media:
        media = (content_type or "").split(";")[0].strip()
    if not media:
        media = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media not in MANIFEST_TYPES:
        raise ManifestUnreadable(
            digest,
            f"unknown media type {neutralise(media, limit=80)!r} (tagkeeper reads OCI and "
            "Docker v2 image manifests and indexes)",
        )
    entries = doc.get("manifests")
    if media not in INDEX_TYPES and isinstance(entries, list) and entries:
        raise ManifestUnreadable(digest, f"a {media} that lists manifests, as an index would")
    for value in (*(entries if isinstance(entries, list) else ()), doc.get("subject")):
        named = value.get("digest") if isinstance(value, dict) else None
        if isinstance(named, str) and not DIGEST_RE.fullmatch(named):
            raise ManifestUnreadable(
                digest, f"it lists a malformed digest ({neutralise(named, limit=80)})"
            )
    annotations = doc.get("annotations")
    stamp = annotations.get(CREATED_ANNOTATION) if isinstance(annotations, dict) else None
    subject = _descriptor(doc.get("subject"))
    return Manifest(
        digest=digest,
        media_type=media,
        entries=tuple(
            found
            for found in map(_descriptor, entries if isinstance(entries, list) else ())
            if found is not None
        ),
        subject=subject.digest if subject is not None else None,
        config=_descriptor(doc.get("config")),
        created=parse_time(stamp) if isinstance(stamp, str) else None,
    )


def parse_manifest(digest: str, data: bytes, content_type: str | None) -> ManifestInfo:
    """What the manifest ``digest`` says about reachability (see :func:`read_manifest`)."""
    return read_manifest(digest, data, content_type).info


def _descriptor(value: Any) -> Descriptor | None:
    """A descriptor object with a string ``digest``; anything else is ``None``."""
    if not isinstance(value, dict) or not isinstance(value.get("digest"), str):
        return None
    media, size = value.get("mediaType"), value.get("size")
    platform = value.get("platform")
    platform = platform if isinstance(platform, dict) else {}
    annotations = value.get("annotations")
    annotations = annotations if isinstance(annotations, dict) else {}
    return Descriptor(
        digest=value["digest"],
        media_type=media if isinstance(media, str) else None,
        size=size if isinstance(size, int) else None,
        os=_text(platform.get("os")),
        architecture=_text(platform.get("architecture")),
        reference_type=_text(annotations.get("vnd.docker.reference.type")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
