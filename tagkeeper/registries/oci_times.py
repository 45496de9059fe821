"""When an image in an OCI registry was created: the distribution API records no push time.

:class:`CreationTimes` finds it, for each digest once per run, from (first match wins):

1. the manifest's ``org.opencontainers.image.created`` annotation (no extra request);
2. for an index, the newest time of its platform images (attestations and
   ``unknown/unknown`` entries do not count);
3. the image config's ``created`` (one blob read, verified against its digest), else
   the config's ``org.opencontainers.image.created`` label. A config blob whose bytes do
   not match its digest (or that comes through a redirect from https to http, or is
   over 8 MiB) is not believed: its image is *untrusted*, and the backend makes it
   unreadable (fail closed).

Placeholder times of reproducible builds (before 1981) count as unknown
(:func:`~tagkeeper.registries.manifests.parse_time`). :meth:`CreationTimes.subject_time`
gives a signature or referrer without a time of its own its subject's time. Every
reason a time stays unknown is kept (``source``), for the plan's warning.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tagkeeper.inventory import ManifestUnreadable
from tagkeeper.registries.cache import Memo
from tagkeeper.registries.distribution import BlobUnreadable
from tagkeeper.registries.manifests import CREATED_ANNOTATION, parse_time
from tagkeeper.retention.planner import referrer_subject
from tagkeeper.untrusted import NotJson, loads, neutralise

if TYPE_CHECKING:
    from datetime import datetime

    from tagkeeper.registries.distribution import Registry

MAX_CONFIG = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Created:
    """A creation time, or ``None`` with the reason in ``source``. ``untrusted``: the
    registry's answer could not be believed (a config blob that does not match its
    digest...): the image is unreadable, not merely of unknown age."""

    when: datetime | None
    source: str  # "annotation", "config", "config label", "platform images", or why not
    untrusted: bool = False


class CreationTimes:
    """Creation times of the manifests of one repository (see the module docstring)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._times: Memo[str, Created] = Memo()
        self._configs: Memo[str, Created] = Memo()
        self._untrusted: dict[str, str] = {}  # image digest -> why its answers are not believed
        self._lock = threading.Lock()

    def untrusted(self) -> dict[str, str]:
        """The images whose config blob could not be believed (digest -> why)."""
        with self._lock:
            return dict(self._untrusted)

    def of(self, digest: str) -> Created:
        """The creation time of ``digest`` (read once per run)."""
        return self._times.get(digest, lambda: self._find(digest))

    def known(self, digest: str) -> datetime | None:
        """The time of ``digest`` when it was read already (never a request)."""
        found = self._times.peek(digest)
        return found.when if found is not None else None

    def subject_time(
        self, digest: str, tags: frozenset[str], times: dict[str, Created]
    ) -> Created | None:
        """For a cosign-tagged version or an OCI 1.1 referrer without a time of its own:
        the time of its subject, when that is known (a signature is never older than the
        image it signs, so it is deleted with that image and kept with it)."""
        subjects = {s for s in (referrer_subject(t) for t in tags) if s is not None}
        parsed = self._registry.peek(digest)
        if parsed is not None and parsed.subject is not None:
            subjects.add(parsed.subject)
        found = [times[s].when for s in subjects if s in times and times[s].when is not None]
        if not found or len(subjects) != 1:
            return None
        return Created(found[0], "subject")

    def _find(self, digest: str) -> Created:
        try:
            parsed = self._registry.manifest(digest)
        except ManifestUnreadable as exc:
            return Created(None, f"manifest unreadable: {exc.reason}")
        if parsed.created is not None:
            return Created(parsed.created, "annotation")
        if parsed.is_index:
            children = parsed.platform_children()
            if not children:
                return Created(None, "index without annotation or platform images")
            # called from pool threads: read sequentially, never a nested pool
            found = [t.when for t in map(self.of, children) if t.when is not None]
            if found:
                return Created(max(found), "platform images")
            return Created(None, "no platform image has a creation time")
        config = parsed.config
        if config is None or (config.size is not None and config.size > MAX_CONFIG):
            return Created(None, "no config and no annotation")
        answer = self._configs.get(config.digest, lambda: self._from_config(config.digest))
        if answer.untrusted:
            with self._lock:
                self._untrusted.setdefault(digest, answer.source)
        return answer

    def _from_config(self, digest: str) -> Created:
        try:
            data = self._registry.blob(digest, limit=MAX_CONFIG)
        except BlobUnreadable as exc:
            if exc.untrusted:
                return Created(None, f"config blob {exc.reason}", untrusted=True)
            return Created(None, f"config blob unreadable ({exc.reason})")
        try:
            body = loads(data)
        except NotJson as exc:
            return Created(None, f"config blob: {exc}")
        if not isinstance(body, dict):
            return Created(None, "config blob is not a JSON object")
        created = body.get("created")
        if isinstance(created, str):
            when = parse_time(created)
            if when is not None:
                return Created(when, "config")
        config = body.get("config")
        labels = config.get("Labels") if isinstance(config, dict) else None
        if isinstance(labels, dict) and isinstance(labels.get(CREATED_ANNOTATION), str):
            when = parse_time(labels[CREATED_ANNOTATION])
            if when is not None:
                return Created(when, "config label")
        if isinstance(created, str):
            return Created(None, f"placeholder creation time {neutralise(created, limit=40)}")
        return Created(None, "config has no creation time")
