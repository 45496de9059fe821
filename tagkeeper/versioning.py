"""Which tags are releases, and in which order: the version scheme, defined once.

The default scheme is SemVer 2.0.0 (:mod:`tagkeeper.semver`). A project whose git tags
follow PEP 440 (``v1.2.3rc1``, ``v1.2.3.post1``, ``v1.2.3.dev4``) says
``version-scheme = "pep440"`` and gets them read and ordered by ``packaging.version``.
Retention (channels and "newest N releases"), ``check``'s release rules and ``previous``
(its registry answer and what it calls "below the current release") all read a tag
through :func:`version_of`, so they agree on what a release is under either scheme.

The schemes differ. ``1.0.0-1`` is a SemVer prerelease, older than ``1.0.0``; PEP 440
reads it as the post-release ``1.0.0.post1``, newer than ``1.0.0``. ``1.2.3rc1`` is not
SemVer at all; under PEP 440 it is a prerelease of ``1.2.3``.

A PEP 440 release tag, as tagkeeper reads it: an optional lowercase ``v``, then a version
``packaging`` accepts with at least three release numbers (``1.2`` and ``1`` stay floating
aliases, as under SemVer) and no local part (``+local`` cannot be an image tag). A
prerelease is one with a pre-release or development part (``rc1``, ``.dev4``); a
post-release of a release (``1.2.3.post1``) is a release.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from tagkeeper.errors import UsageError
from tagkeeper.semver import parse_tag

if TYPE_CHECKING:
    from packaging.version import Version as Pep440

__all__ = [
    "SCHEMES",
    "Pep440Tag",
    "Scheme",
    "TagVersion",
    "check_scheme",
    "version_of",
]

Scheme = Literal["semver", "pep440"]
SCHEMES: tuple[Scheme, ...] = ("semver", "pep440")


class TagVersion(Protocol):
    """What every scheme's version offers: prerelease or not, and an order key (keys
    of one scheme compare with each other, never across schemes)."""

    @property
    def is_prerelease(self) -> bool: ...

    def precedence_key(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Pep440Tag:
    """A PEP 440 version read from a tag."""

    version: Pep440

    @property
    def is_prerelease(self) -> bool:
        return bool(self.version.is_prerelease)

    def precedence_key(self) -> tuple[Pep440]:
        return (self.version,)

    def __lt__(self, other: Pep440Tag) -> bool:
        return bool(self.version < other.version)

    def __str__(self) -> str:
        return str(self.version)


def check_scheme(value: str) -> Scheme:
    """``value`` when it names a scheme; a :class:`UsageError` otherwise."""
    if value not in SCHEMES:
        raise UsageError(
            f"version scheme {value!r} is not one tagkeeper knows",
            hint="use 'semver' (the default: SemVer 2.0.0) or 'pep440' (packaging.version)",
        )
    return value


def version_of(tag: str, scheme: Scheme = "semver") -> TagVersion | None:
    """The version ``tag`` names under ``scheme``, or ``None`` when it names none."""
    if scheme == "semver":
        return parse_tag(tag)
    return _pep440(tag)


def _pep440(tag: str) -> Pep440Tag | None:
    text = tag[1:] if tag.startswith("v") else tag
    # cheap pre-check (most tags are dev-*, pr-*, latest): a version starts with a digit
    if not text[:1].isdigit() or any(ch.isspace() for ch in text):
        return None
    from packaging.version import InvalidVersion, Version  # lazy: only this scheme

    try:
        version = Version(text)
    except InvalidVersion:
        return None
    if version.local is not None or len(version.release) < 3:
        return None
    return Pep440Tag(version)
