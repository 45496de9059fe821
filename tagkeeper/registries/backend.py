"""What the registry backends (GHCR, any OCI registry) share on top of the ``/v2`` client.

:class:`DistributionReader` is the :class:`~tagkeeper.inventory.ManifestReader` both hand
the planner: manifests through the :class:`~tagkeeper.registries.distribution.Registry`'s
one cache, referrers from the OCI 1.1 API where the registry has one, else from the
``sha256-<hex>`` tag schema. :class:`RegistryBackend` is their base class: the client,
the reader, the request counts and :meth:`RegistryBackend.resolve_tag` (one ``HEAD``).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from tagkeeper.inventory import (
    DOCKER_MANIFEST,
    INDEX_TYPES,
    OCI_MANIFEST,
    Backend,
    ManifestInfo,
)
from tagkeeper.registries.cache import Memo

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from tagkeeper.inventory import RequestStats
    from tagkeeper.registries.distribution import Registry

_PLAIN_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})


class DistributionReader:
    """The :class:`~tagkeeper.inventory.ManifestReader` of a registry backend.

    Manifests come from the :class:`Registry`'s one cache. ``tag_digest`` finds the
    digest a tag points at in the backend's listing (for the ``sha256-<hex>`` tag schema
    of referrers). ``referrers_api``: ask the OCI 1.1 API first (ghcr.io has none).
    ``read_plain_children=False``: a plain image manifest that an already-read index
    lists is answered from that (digest-verified) index, without a request: it cannot
    list other manifests; its :class:`ManifestInfo` then has no ``subject`` or
    ``created``. ``created``: the creation time the backend knows for a digest.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        tag_digest: Callable[[str], str | None],
        referrers_api: bool = True,
        read_plain_children: bool = True,
        created: Callable[[str], datetime | None] | None = None,
    ) -> None:
        self._registry = registry
        self._tag_digest = tag_digest
        self._referrers_api = referrers_api
        self._read_plain = read_plain_children
        self._created = created
        self._plain: dict[str, str] = {}  # digest -> media type, from an index's descriptor
        self._referrers: Memo[str, tuple[str, ...]] = Memo()
        self._lock = threading.Lock()

    def manifest(self, digest: str) -> ManifestInfo:
        if not self._read_plain and self._registry.peek(digest) is None:
            with self._lock:
                media = self._plain.get(digest)
            if media is not None:
                return ManifestInfo(digest=digest, media_type=media)
        parsed = self._registry.manifest(digest)
        if parsed.is_index and not self._read_plain:
            with self._lock:
                self._plain.update(
                    (entry.digest, entry.media_type)
                    for entry in parsed.entries
                    if entry.media_type in _PLAIN_TYPES
                )
        info = parsed.info
        if self._created is not None:
            info = replace(info, created=self._created(digest))
        return info

    def referrers(self, digest: str) -> Sequence[str]:
        return self._referrers.get(digest, lambda: self._find_referrers(digest))

    def _find_referrers(self, digest: str) -> tuple[str, ...]:
        if self._referrers_api:
            found = self._registry.referrers(digest)
            if found is not None:
                return tuple(found)
        algorithm, _, hexpart = digest.partition(":")
        if not hexpart:
            return ()
        holder = self._tag_digest(f"{algorithm}-{hexpart}")
        if holder is None:
            return ()
        parsed = self._registry.manifest(holder)
        return parsed.children if parsed.media_type in INDEX_TYPES else ()


class RegistryBackend(Backend):
    """What every backend that speaks ``/v2`` shares: its :class:`Registry` client, the
    :class:`DistributionReader` it hands the planner, its request counts, and
    :meth:`resolve_tag` as one manifest ``HEAD``."""

    def __init__(self, registry: Registry, reader: DistributionReader) -> None:
        self._registry = registry
        self._reader = reader

    @property
    def registry(self) -> Registry:
        """The ``/v2`` client of this repository."""
        return self._registry

    @property
    def stats(self) -> RequestStats:
        return self._registry.sender.stats

    @property
    def reader(self) -> DistributionReader:
        return self._reader

    def resolve_tag(self, tag: str) -> str | None:
        """The digest ``tag`` points at now: one manifest ``HEAD`` (after the token
        exchange the first time), never a listing. Needs read access only."""
        found = self._registry.head(tag)
        return found.digest if found is not None else None
