"""Which packages a run prunes: image globs matched against a registry's listing.

Pure: no I/O. A pattern is an image name whose path may hold wildcards, matched like a
shell path:

- ``*`` matches any run of characters except ``/``; ``?`` one character except ``/``;
- ``**`` matches any run of characters, ``/`` included, so ``ghcr.io/acme/**`` names
  every package of ``acme``, nested ones (``ghcr.io/acme/team/app``) too; ``a/**/b``
  also matches ``a/b``;
- everything else is literal, and the whole name must match (``ghcr.io/acme/app``
  does not match ``ghcr.io/acme/app-cache``).

The registry host is never a wildcard: it says which registry to list.

    >>> include = [parse_glob("ghcr.io/acme/*")]
    >>> select(["ghcr.io/acme/api", "ghcr.io/acme/team/web"], include, [])
    ['ghcr.io/acme/api']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["Glob", "every_package", "is_glob", "parse_glob", "select"]

_WILD = frozenset("*?")
# What a repository path may hold (the distribution spec's name grammar, lower case),
# plus the wildcards.
_PATTERN_RE = re.compile(r"[a-z0-9._/*?-]+")


def every_package(owner: str) -> str:
    """``--all ghcr.io/acme`` as a pattern: ``ghcr.io/acme/**`` (a registry host alone:
    ``HOST/**``, its whole catalog)."""
    return f"{owner.rstrip('/')}/**"


def is_glob(image: str) -> bool:
    """Whether ``image`` holds a wildcard (``*`` or ``?``)."""
    return any(c in _WILD for c in image)


def _path_regex(path: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(path):
        if path.startswith("**/", i):
            out.append("(?:.*/)?")  # zero or more whole segments
            i += 3
        elif path.startswith("**", i):
            out.append(".*")
            i += 2
        elif path[i] == "*":
            out.append("[^/]*")
            i += 1
        elif path[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(path[i]))
            i += 1
    return re.compile("".join(out))


@dataclass(frozen=True)
class Glob:
    """One ``--image``/``--exclude`` pattern: a literal registry host and a path glob."""

    text: str
    host: str
    path: str
    regex: re.Pattern[str]

    @property
    def literal_prefix(self) -> str:
        """The path's leading segments that hold no wildcard (``acme`` of
        ``acme/team-*``), ``""`` when the first segment already has one."""
        kept: list[str] = []
        for segment in self.path.split("/")[:-1]:
            if is_glob(segment):
                break
            kept.append(segment)
        return "/".join(kept)

    @property
    def owner(self) -> str | None:
        """The first path segment when it is literal (the GHCR owner), else ``None``."""
        first = self.path.split("/", 1)[0]
        return None if is_glob(first) or "/" not in self.path else first

    def matches(self, image: str) -> bool:
        """Whether the full image name ``image`` (``host/path``) matches."""
        host, _, path = image.partition("/")
        return host == self.host and self.regex.fullmatch(path) is not None


def parse_glob(text: str, *, flag: str = "--image") -> Glob:
    """``text`` as a :class:`Glob`; a pattern that cannot name an image raises
    :class:`~tagkeeper.errors.UsageError`."""
    host, sep, path = text.partition("/")
    example = f"e.g. {flag} 'ghcr.io/OWNER/*' or {flag} 'registry.example:5000/team/**'"
    if not sep or not host or not path:
        raise UsageError(f"{flag} {text!r} names no registry host and path", hint=example)
    if is_glob(host):
        raise UsageError(
            f"{flag} {text!r}: the registry host cannot be a wildcard",
            hint="one run lists one registry; repeat the flag for another",
        )
    if not _PATTERN_RE.fullmatch(path) or "//" in path or path.endswith("/"):
        raise UsageError(
            f"{flag} {text!r}: only lower-case letters, digits, '.', '_', '-', '/', '*' and "
            "'?' may appear in the path",
            hint=example,
        )
    if "***" in path or re.search(r"[^/]\*\*|\*\*[^/]", path):
        raise UsageError(
            f"{flag} {text!r}: '**' stands alone between slashes",
            hint="write 'acme/**' (any depth) or 'acme/*-cache' (one level)",
        )
    return Glob(text, host, path, _path_regex(path))


def select(
    images: Iterable[str], include: Sequence[Glob], exclude: Sequence[Glob]
) -> list[str]:
    """The images (full names) that match one of ``include`` and none of ``exclude``,
    sorted, each once."""
    chosen = {
        image
        for image in images
        if any(g.matches(image) for g in include) and not any(g.matches(image) for g in exclude)
    }
    return sorted(chosen)
