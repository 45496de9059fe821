"""OCI labels and annotations of a build, in the forms docker/build-push-action takes. Pure.

The keys are the OCI image spec's pre-defined annotations
(``org.opencontainers.image.*``), the same set docker/metadata-action writes:

- ``created``: when the image is built, RFC 3339 in UTC to the second. The CLI passes
  the time: ``$SOURCE_DATE_EPOCH`` when set (reproducible builds), else now. A registry
  that prunes by creation time (tagkeeper's OCI backend among them) reads it from the
  manifest without fetching the image config.
- ``revision``: the full commit sha built.
- ``version``: the SemVer version of a release (``1.2.3``, ``1.2.3-rc.1``,
  ``1.2.3+build.7``); for a branch or pull request build its immutable tag
  (``dev-3f9c2ab``), which names the build exactly.
- ``source`` and ``url``: the repository's web address, when known.
- ``title``: the repository's name, else the last path component of the first image.

``labels`` are ``key=value`` lines (``docker build --label``, build-push-action's
``labels`` input). ``annotations`` are the same pairs with a level prefix
(``manifest:key=value``), as build-push-action's ``annotations`` input and
``docker buildx build --annotation`` take them. The default level is ``manifest``: it
works for single- and multi-platform builds alike, whereas ``index`` fails a build that
produces no index; ``index`` may be added for multi-platform builds (the registry's
package page then shows them). A value with a control character is never emitted: a
newline would inject another line into a newline-separated list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tagkeeper.errors import UsageError
from tagkeeper.refs import parse_reference

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tagkeeper.tags.compute import TagResult

PREFIX = "org.opencontainers.image."
LEVELS = ("manifest", "index", "manifest-descriptor", "index-descriptor")
DEFAULT_LEVELS = ("manifest",)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z


@dataclass(frozen=True, slots=True)
class ImageMetadata:
    """The OCI labels of a build and the annotation levels they are written at."""

    labels: dict[str, str]
    levels: tuple[str, ...] = DEFAULT_LEVELS

    @property
    def annotations(self) -> dict[str, str]:
        """``level:key`` -> value, for every level in order."""
        return {
            f"{level}:{key}": value for level in self.levels for key, value in self.labels.items()
        }

    def labels_text(self) -> str:
        """``key=value`` lines, as build-push-action's ``labels`` input takes them."""
        return "\n".join(f"{key}={value}" for key, value in self.labels.items())

    def annotations_text(self) -> str:
        """``level:key=value`` lines, as build-push-action's ``annotations`` input takes them."""
        return "\n".join(f"{key}={value}" for key, value in self.annotations.items())


def parse_levels(text: str) -> tuple[str, ...]:
    """``manifest,index`` -> ``("manifest", "index")``; an unknown level is bad input."""
    levels = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [level for level in levels if level not in LEVELS]
    if unknown or not levels:
        what = f"{unknown[0]!r} is not a level" if unknown else "none given"
        raise UsageError(
            f"annotation levels {text!r}: {what}",
            hint=f"use a comma-separated list of: {', '.join(LEVELS)} (default manifest)",
        )
    return levels


def build_time(environ: Mapping[str, str], now: datetime) -> datetime:
    """``$SOURCE_DATE_EPOCH`` when set (reproducible builds), else ``now``; in UTC."""
    text = environ.get("SOURCE_DATE_EPOCH", "")
    if not text:
        return now.astimezone(UTC)
    if not text.isascii() or not text.isdigit() or int(text) > _MAX_EPOCH:
        raise UsageError(
            f"$SOURCE_DATE_EPOCH is {text!r}, not a number of seconds since 1970",
            hint="set it to e.g. $(git log -1 --format=%ct), or unset it to use the current time",
        )
    return datetime.fromtimestamp(int(text), UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_metadata(
    result: TagResult,
    *,
    created: datetime,
    images: Sequence[str] = (),
    levels: Sequence[str] = DEFAULT_LEVELS,
) -> ImageMetadata:
    """The OCI labels of the build ``result`` describes (see the module docstring)."""
    context = result.context
    version = str(result.version) if result.version is not None else result.tags[0]
    title = context.repository_name
    if title is None and images:
        title = parse_reference(images[0]).path.rsplit("/", 1)[-1]
    values = {
        "created": rfc3339(created),
        "revision": context.sha,
        "version": version,
        "source": context.repository_url,
        "url": context.repository_url,
        "title": title,
    }
    labels = {
        PREFIX + key: value
        for key, value in values.items()
        if value and not _CONTROL_RE.search(value)
    }
    return ImageMetadata(labels=labels, levels=tuple(levels))
