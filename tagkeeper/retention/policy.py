"""The vocabulary of retention: channels, tag classification and the policy.

:class:`Policy` says how many images of each :class:`Channel` to keep and what else to
protect; :func:`classify` puts a tag in its channel; :func:`referrer_subject` reads the
subject of a cosign / referrers-schema tag. Pure: no I/O, no clock. The planner
(:mod:`tagkeeper.retention.planner`) re-exports all of it.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal

from tagkeeper.channels import DEV_TAG_RE, PR_TAG_RE
from tagkeeper.errors import UsageError
from tagkeeper.versioning import Scheme, TagVersion, check_scheme, version_of

__all__ = [
    "Channel",
    "Policy",
    "check_protect_regex",
    "classify",
    "format_duration",
    "referrer_subject",
]


class Channel(StrEnum):
    DEV = "dev"
    PR = "pr"
    RELEASE = "release"
    PRERELEASE = "prerelease"


# cosign signature / attestation / SBOM tags, and the OCI referrers tag schema index
REFERRER_TAG_RE = re.compile(r"(sha256|sha512)-([0-9a-f]{64}|[0-9a-f]{128})(?:\.(sig|att|sbom))?")
REFERRER_KIND = {"sig": "signature", "att": "attestation", "sbom": "SBOM", None: "referrers index"}


def semver_of(tag: str, scheme: Scheme = "semver") -> TagVersion | None:
    """The version ``tag`` names under ``scheme`` (see :mod:`tagkeeper.versioning`)."""
    # cheap pre-check: most tags (dev-*, pr-*, latest) are not versions at all
    first = tag[:1]
    if not (first.isdigit() or (first == "v" and tag[1:2].isdigit())):
        return None
    return version_of(tag, scheme)


def classify(tag: str, scheme: Scheme = "semver") -> Channel | None:
    """The retention channel of ``tag``, or ``None`` when it matches none.

    ``dev-<4..64 lowercase hex>`` is dev, ``pr-<digits>`` is pr, a version tag under
    ``scheme`` (SemVer by default: with or without ``v``, build metadata written after
    ``_``; or PEP 440) is a release, or a prerelease when it has a prerelease part.
    ``latest``, ``dev-latest``, ``1.2``, ``nightly`` and cosign ``sha256-...`` tags match
    no channel.
    """
    if DEV_TAG_RE.fullmatch(tag):
        return Channel.DEV
    if PR_TAG_RE.fullmatch(tag):
        return Channel.PR
    version = semver_of(tag, scheme)
    if version is None:
        return None
    return Channel.PRERELEASE if version.is_prerelease else Channel.RELEASE


def referrer_subject(tag: str) -> str | None:
    """The subject digest a cosign / referrers-schema tag names, else ``None``.

    ``sha256-<hex>.sig`` -> ``sha256:<hex>`` (also ``.att``, ``.sbom`` and the bare
    ``sha256-<hex>`` referrers tag schema index).
    """
    match = REFERRER_TAG_RE.fullmatch(tag)
    if match is None:
        return None
    return f"{match.group(1)}:{match.group(2)}"


def format_duration(delta: timedelta) -> str:
    """``1h``, ``30m``, ``2d3h``, ``45s``, ``0s``: compact, for reasons and reports."""
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return sign + ("".join(parts[:2]) or "0s")


def check_protect_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled, or a :class:`UsageError` saying why it cannot protect."""
    if not pattern:
        raise UsageError(
            "--protect-regex '' protects nothing", hint="remove it, or write the tags to keep"
        )
    try:
        return re.compile(pattern)
    except re.error as exc:
        shown = pattern if len(pattern) <= 60 else pattern[:57] + "..."
        raise UsageError(
            f"--protect-regex {shown!r} is not a valid regular expression ({exc})",
            hint="write a Python regular expression; it must match the whole tag, "
            r"e.g. 'v1\.\d+\.\d+' or 'stable-.*'",
        ) from None


@dataclass(frozen=True)
class Policy:
    """What to keep. Every count is per channel, in images (digests), not in tags."""

    keep_dev: int = 5
    keep_pr: int = 5
    keep_release: int = 5
    keep_prerelease: int = 5
    protect: tuple[str, ...] = ()  # fnmatch globs on tags (case-sensitive)
    min_age: timedelta = timedelta(hours=1)
    # a second condition beside keep-N: only what is older than this is deleted
    older_than: timedelta | None = None
    # Python regular expressions, each matched against the whole tag (re.fullmatch)
    protect_regex: tuple[str, ...] = ()
    # what a release tag is and how releases are ordered: SemVer 2.0.0 or PEP 440
    version_scheme: Scheme = "semver"
    untagged: Literal["keep", "delete"] = "delete"
    unmatched: Literal["keep", "delete"] = "keep"  # tags that match no channel
    max_delete: int | None = None

    def __post_init__(self) -> None:
        for name in ("keep_dev", "keep_pr", "keep_release", "keep_prerelease"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                flag = "--" + name.replace("_", "-")
                raise UsageError(
                    f"{flag} must be a non-negative integer, not {value!r}",
                    hint="use 0 to keep none of that channel (protected images are still kept)",
                )
        if self.min_age < timedelta(0):
            raise UsageError(
                f"--min-age must not be negative ({format_duration(self.min_age)})",
                hint="use 0 to disable the grace period",
            )
        if self.older_than is not None and self.older_than < timedelta(0):
            raise UsageError(
                f"--older-than must not be negative ({format_duration(self.older_than)})",
                hint="use a duration such as 30d (0: no age condition)",
            )
        if self.untagged not in ("keep", "delete"):
            raise UsageError(f"--untagged must be 'keep' or 'delete', not {self.untagged!r}")
        if self.unmatched not in ("keep", "delete"):
            raise UsageError(f"--unmatched must be 'keep' or 'delete', not {self.unmatched!r}")
        if self.max_delete is not None and (
            isinstance(self.max_delete, bool) or self.max_delete < 0
        ):
            raise UsageError(
                f"--max-delete must be a non-negative integer, not {self.max_delete!r}"
            )
        if isinstance(self.protect, str):  # a lone pattern: a common slip, keep it whole
            object.__setattr__(self, "protect", (self.protect,))
        if isinstance(self.protect_regex, str):
            object.__setattr__(self, "protect_regex", (self.protect_regex,))
        for pattern in self.protect_regex:
            check_protect_regex(pattern)
        check_scheme(self.version_scheme)

    def protects(self, tag: str) -> bool:
        """Whether a protect glob or a protect regex (full match) names ``tag``."""
        return any(fnmatch.fnmatchcase(tag, p) for p in self.protect) or any(
            re.fullmatch(r, tag) for r in self.protect_regex
        )

    @classmethod
    def uniform(cls, keep: int, **kw: Any) -> Policy:
        """The same ``keep`` for every channel; other fields from ``kw``."""
        return cls(keep_dev=keep, keep_pr=keep, keep_release=keep, keep_prerelease=keep, **kw)

    def keep_of(self, channel: Channel) -> int:
        return {
            Channel.DEV: self.keep_dev,
            Channel.PR: self.keep_pr,
            Channel.RELEASE: self.keep_release,
            Channel.PRERELEASE: self.keep_prerelease,
        }[channel]
