"""Image references and the OCI tag grammar.

A reference is ``[host[:port]/]path[:tag][@digest]`` as the Docker engine and the OCI
distribution spec read it. The first path component is a registry host only when it
contains a ``.`` or a ``:`` or is ``localhost`` (so ``registry:5000/app`` has no tag: the
colon is the port).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tagkeeper.errors import UsageError

TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_HOST_RE = re.compile(
    r"(?:\[[0-9A-Fa-f:]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]+)?"
)
DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}")
SHA256_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
# The digest algorithms the Docker engine and registries accept, with their hex lengths.
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX64_RE = re.compile(r"[0-9a-f]{64}")


def is_valid_tag(tag: str) -> bool:
    """True when ``tag`` satisfies the OCI tag grammar."""
    return TAG_RE.fullmatch(tag) is not None


def require_valid_tag(tag: str) -> str:
    """Return ``tag`` or raise a :class:`UsageError` that says why it is not a tag."""
    if not tag:
        raise UsageError("an empty string is not a valid image tag")
    if len(tag) > 128:
        raise UsageError(
            f"tag {tag[:40]!r}... is {len(tag)} characters long; OCI tags allow at most 128"
        )
    if not is_valid_tag(tag):
        raise UsageError(
            f"{tag!r} is not a valid image tag: tags use letters, digits, '_', '.' and '-' "
            "and must not start with '.' or '-'"
        )
    return tag


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed image reference. ``host`` is ``None`` when the reference names none."""

    host: str | None
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The reference without tag or digest, as written (``host/path`` or ``path``)."""
        return f"{self.host}/{self.path}" if self.host else self.path

    def with_tag(self, tag: str) -> ImageRef:
        return ImageRef(self.host, self.path, require_valid_tag(tag), None)

    def with_digest(self, digest: str) -> ImageRef:
        return ImageRef(self.host, self.path, self.tag, digest)

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageRef:
    """Parse an image reference, raising :class:`UsageError` with the reason on bad input."""
    if not text or text != text.strip():
        raise UsageError(
            f"{text!r} is not an image reference: it is empty or has surrounding whitespace"
        )
    rest = text
    digest: str | None = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST_RE.fullmatch(digest):
            raise UsageError(
                f"{text!r}: {digest!r} is not a digest (expected e.g. sha256:<64 hex digits>)"
            )
        algorithm, _, hex_part = digest.partition(":")
        length = DIGEST_HEX_LENGTHS.get(algorithm)
        if length is None:
            raise UsageError(
                f"{text!r}: digest algorithm {algorithm!r} is not supported "
                "(use sha256, sha384 or sha512)"
            )
        if len(hex_part) != length or hex_part != hex_part.lower():
            raise UsageError(
                f"{text!r}: a {algorithm} digest has exactly {length} lowercase hex digits"
            )
    host: str | None = None
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if _HOST_RE.fullmatch(first):
            host, rest = first, remainder
        elif ":" in first or not _PATH_RE.fullmatch(first):
            raise UsageError(f"{text!r}: {first!r} is not a valid registry host")
        # else: not a host name (e.g. 'a_b.c'), but a valid path component, as docker reads it
    tag: str | None = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not is_valid_tag(tag):
            raise UsageError(f"{text!r}: {tag!r} is not a valid tag")
    if not _PATH_RE.fullmatch(rest) and _PATH_RE.fullmatch(rest.lower()):
        raise UsageError(
            f"{text!r}: repository path {rest!r} must be lowercase",
            hint=f"write {rest.lower()!r}; registries use lowercase repository names",
        )
    if not _PATH_RE.fullmatch(rest):
        raise UsageError(
            f"{text!r}: {rest!r} is not a valid repository path (lowercase letters, digits "
            "and separators '.', '_', '__', '-' between '/'-separated components)"
        )
    if host is None and _HEX64_RE.fullmatch(rest):
        raise UsageError(
            f"{text!r}: a repository name cannot be 64 hex digits (that is an image id)"
        )
    if len(f"{host}/{rest}" if host else rest) > 255:
        raise UsageError(f"{text!r}: repository names are limited to 255 characters")
    return ImageRef(host=host, path=rest, tag=tag, digest=digest)


def parse_repository(text: str, *, why: str = "pruning acts on a whole repository") -> ImageRef:
    """``text`` parsed as a repository: a tag or digest in it is bad input (exit 2),
    and ``why`` says why a repository is wanted."""
    ref = parse_reference(text)
    if ref.tag is not None or ref.digest is not None:
        raise UsageError(
            f"{text!r} names a tag or digest; {why}",
            hint=f"pass the repository only: --image {ref.repository}",
        )
    return ref


def lowercase_repository(text: str) -> str:
    """``text`` with its repository (registry host and path) in lower case.

    The tag and the digest are kept exactly as written: tags are case-sensitive. This is
    what docker/metadata-action does with an image name, so that
    ``ghcr.io/${{ github.repository }}`` works for an owner such as ``Acme-Corp``. The
    result is not validated here; :func:`parse_reference` does that.
    """
    rest, at, digest = text.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag = ""
    if colon > slash:
        rest, tag = rest[:colon], rest[colon:]
    return rest.lower() + tag + at + digest
