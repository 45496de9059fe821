"""SemVer 2.0.0: parsing and precedence exactly as semver.org §9-11 defines them.

Equality and hashing follow *precedence*: build metadata is ignored, so
``parse("1.0.0+a") == parse("1.0.0+b")`` and both hash alike. That keeps ``==`` consistent
with ``<``/``>`` (a total order: for any two versions exactly one of ``a < b``, ``a == b``,
``a > b`` holds), which is what sorting and "newest N releases" need. Use
:meth:`SemVer.identical` to compare every field, build metadata included.

PEP 440 (``packaging.version``) orders some SemVer versions differently (it reads
``1.0.0-1`` as a post-release newer than ``1.0.0``): it orders release tags only when the
configuration asks for it (``version-scheme = "pep440"``, :mod:`tagkeeper.versioning`).

Image tags cannot contain ``+``. tagkeeper writes build metadata into an image tag as
``_`` (``v1.2.3+build.5`` becomes the tag ``v1.2.3_build.5``), as Helm does for charts in
OCI registries; ``_`` never occurs in SemVer, so the mapping is exact and reversible, and
:func:`parse_tag` reads both forms back.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from tagkeeper.errors import UsageError

_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-")
_DIGITS = frozenset("0123456789")
_HINT = "use MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], e.g. 1.2.3 or 1.2.3-rc.1+build.5"

PrereleaseKey = tuple[tuple[int, int | str], ...]


@dataclass(frozen=True, eq=False, slots=True)
class SemVer:
    """A SemVer 2.0.0 version. Numeric prerelease identifiers are ``int``, others ``str``."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[int | str, ...] = ()
    build: tuple[str, ...] = ()

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def precedence_key(self) -> tuple[int, int, int, int, PrereleaseKey]:
        """A key whose natural tuple order is SemVer precedence (§11).

        A release sorts after every prerelease of the same core; numeric identifiers
        sort before alphanumeric ones and compare as numbers; alphanumeric identifiers
        compare as ASCII text; a longer identifier list wins when all shared ones are equal.
        """
        pre: PrereleaseKey = tuple(
            (0, ident) if isinstance(ident, int) else (1, ident) for ident in self.prerelease
        )
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def identical(self, other: SemVer) -> bool:
        """True when every field matches, build metadata included."""
        return (self.precedence_key(), self.build) == (other.precedence_key(), other.build)

    def without_build(self) -> SemVer:
        return SemVer(self.major, self.minor, self.patch, self.prerelease)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(ident) for ident in self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self.precedence_key() == other.precedence_key()

    def __hash__(self) -> int:
        return hash(self.precedence_key())

    def __lt__(self, other: SemVer) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self.precedence_key() < other.precedence_key()

    def __le__(self, other: SemVer) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self.precedence_key() <= other.precedence_key()

    def __gt__(self, other: SemVer) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self.precedence_key() > other.precedence_key()

    def __ge__(self, other: SemVer) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self.precedence_key() >= other.precedence_key()


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:60]) + f"... ({len(text)} characters)"


def _fail(text: str, why: str) -> UsageError:
    return UsageError(f"{_shown(text)} is not a SemVer 2.0.0 version: {why}", hint=_HINT)


def _number(text: str, part: str, what: str) -> int:
    if not part:
        raise _fail(text, f"the {what} is empty")
    if any(ch not in _DIGITS for ch in part):
        if any(ch.isdigit() for ch in part) and not part.isascii():
            raise _fail(text, f"the {what} {part!r} contains non-ASCII digits (only 0-9)")
        raise _fail(text, f"the {what} {_shown(part)} is not a number (only digits 0-9)")
    if len(part) > 1 and part[0] == "0":
        raise _fail(text, f"the {what} {part!r} has a leading zero")
    if len(part) > sys.get_int_max_str_digits() > 0:
        raise _fail(text, f"the {what} has more than {sys.get_int_max_str_digits()} digits")
    return int(part)


def _identifiers(text: str, part: str, what: str) -> list[str]:
    idents = part.split(".")
    for ident in idents:
        if not ident:
            raise _fail(text, f"the {what} {part!r} has an empty identifier")
        bad = [ch for ch in ident if ch not in _ALNUM]
        if bad:
            if any(ch.isdigit() for ch in bad):
                raise _fail(
                    text, f"the {what} identifier {ident!r} contains non-ASCII digits (only 0-9)"
                )
            raise _fail(
                text,
                f"the {what} identifier {ident!r} contains {bad[0]!r}; identifiers use only "
                "ASCII letters, digits and '-'",
            )
    return idents


def parse(text: str) -> SemVer:
    """Parse a SemVer 2.0.0 string (no ``v`` prefix); :class:`UsageError` says why not."""
    if not text:
        raise _fail(text, "it is empty")
    if any(ch.isspace() for ch in text):
        raise _fail(text, "it contains whitespace (leading, trailing or inside)")
    if text[0] in "vV" and len(text) > 1 and text[1].isdigit():
        raise _fail(
            text,
            f"it starts with {text[0]!r}; a version has no prefix (a tag such as v1.2.3 is "
            "read with parse_tag)",
        )
    rest, plus, build_text = text.partition("+")
    build: tuple[str, ...] = ()
    if plus:
        if "+" in build_text:
            raise _fail(text, "it has more than one '+'")
        if not build_text:
            raise _fail(text, "the build metadata after '+' is empty")
        build = tuple(_identifiers(text, build_text, "build metadata"))
    core_text, dash, pre_text = rest.partition("-")
    prerelease: tuple[int | str, ...] = ()
    if dash:
        if not pre_text:
            raise _fail(text, "the prerelease after '-' is empty")
        idents: list[int | str] = []
        for ident in _identifiers(text, pre_text, "prerelease"):
            if all(ch in _DIGITS for ch in ident):
                idents.append(_number(text, ident, "numeric prerelease identifier"))
            else:
                idents.append(ident)
        prerelease = tuple(idents)
    parts = core_text.split(".")
    if len(parts) != 3:
        raise _fail(
            text,
            f"it must start with MAJOR.MINOR.PATCH (three dot-separated numbers), "
            f"found {_shown(core_text)}",
        )
    names = ("major", "minor", "patch")
    major, minor, patch = (
        _number(text, part, name) for part, name in zip(parts, names, strict=True)
    )
    return SemVer(major, minor, patch, prerelease, build)


def parse_tag(tag: str) -> SemVer | None:
    """The version a git or image tag names, or ``None`` when it is not SemVer.

    Accepts ``1.2.3`` and ``v1.2.3`` (lowercase ``v`` only). Because image tags cannot
    hold ``+``, a ``_`` stands for the build separator (``v1.2.3_b5`` is ``1.2.3+b5``)
    when the tag has no ``+``.
    """
    try:
        return parse(_tag_text(tag))
    except UsageError:
        return None


def _tag_text(tag: str) -> str:
    """The SemVer text a tag writes: no ``v``, and ``_`` read as ``+`` when there is none."""
    text = tag[1:] if tag.startswith("v") else tag
    if "+" not in text and "_" in text:
        text = text.replace("_", "+", 1)
    return text


def explain_tag(tag: str) -> str | None:
    """Why ``tag`` is not a SemVer tag (``None`` when it is one)."""
    text = _tag_text(tag)
    try:
        parse(text)
    except UsageError as exc:
        return exc.message.replace(_shown(text), _shown(tag), 1)
    return None


def format_tag(version: SemVer, *, v_prefix: bool = True) -> str:
    """The image tag for ``version``: ``v1.2.3-rc.1`` (or bare), build metadata after ``_``."""
    text = f"{version.major}.{version.minor}.{version.patch}"
    if version.prerelease:
        text += "-" + ".".join(str(ident) for ident in version.prerelease)
    if version.build:
        text += "_" + ".".join(version.build)
    return ("v" if v_prefix else "") + text
