"""Environment tag rules: which image references an environment accepts, and why not.

Each rule is a small object behind the :class:`Rule` protocol: it looks at one parsed
reference and either refuses it (a :class:`Verdict` with its own reason code and a message
that says what to use instead) or has nothing to say (``None``). A :class:`Policy` runs its
rules in order; the first refusal wins, and a reference no rule refuses is accepted.

Two rule sets exist:

* **prod** (environments named ``prod`` or ``production``, and every name that is not a dev
  name: unknown environments fail closed) accepts only exact release tags (``v1.2.3``,
  ``1.2.3``, ``v1.2.3_build.5``) and digests; prereleases only when allowed.
* **dev** (``dev``, ``development``) refuses only what can never be a deploy target:
  ``latest``, untagged references and moving pointers such as ``dev-latest``.

A reference pinned by digest is judged by its tag when it has one (``latest@sha256:...``
is still ``latest``); a digest-only reference (``repo@sha256:...``) is accepted everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from tagkeeper.channels import is_dev_tag, is_pr_tag
from tagkeeper.errors import UsageError
from tagkeeper.refs import ImageRef, parse_reference
from tagkeeper.semver import SemVer, explain_tag
from tagkeeper.versioning import Pep440Tag, Scheme, TagVersion, check_scheme, version_of

if TYPE_CHECKING:
    from collections.abc import Iterable


class Code(StrEnum):
    """Why a reference was accepted or refused. Stable: scripts match on these."""

    OK = "ok"
    LATEST = "latest"
    UNTAGGED = "untagged"
    DEV_POINTER = "dev-pointer"
    DEV_TAG = "dev-tag"
    FLOATING_ALIAS = "floating-alias"
    PRERELEASE = "prerelease"
    NON_RELEASE = "non-release"
    UNPARSEABLE = "unparseable"
    UNRESOLVED = "unresolved"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judgement of one reference, with where it was found when it came from a file.

    ``ref`` is the reference text as written; ``code`` is :attr:`Code.OK` when ``ok``.
    ``line`` and ``column`` are 1-based.
    """

    ref: str
    ok: bool
    code: Code
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def at(self, file: str, line: int, column: int | None = None) -> Verdict:
        """The same verdict, located in ``file``."""
        return replace(self, file=file, line=line, column=column)

    def as_dict(self) -> dict[str, object]:
        return {
            "ref": self.ref,
            "ok": self.ok,
            "code": str(self.code),
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "column": self.column,
        }


DEFAULT_POINTERS = frozenset({"dev-latest"})


@dataclass(frozen=True, slots=True)
class Environment:
    """What the rules know about the target environment.

    ``pointers`` are tag names that a build moves on every push (the opt-in dev pointer);
    besides them, any tag with a ``latest`` word in it (``dev-latest``, ``latest-dev``,
    ``main_latest``) counts as a moving pointer.
    """

    name: str
    allow_prerelease: bool = False
    pointers: frozenset[str] = DEFAULT_POINTERS
    version_scheme: Scheme = "semver"  # what a release tag is (tagkeeper.versioning)


class Rule(Protocol):
    """One rule: a refusal for ``ref`` in ``env``, or ``None`` when it has nothing to say."""

    def judge(self, ref: ImageRef, env: Environment) -> Verdict | None: ...


def _refuse(ref: ImageRef, code: Code, message: str) -> Verdict:
    return Verdict(str(ref), False, code, message)


def _instead(ref: ImageRef, env: Environment) -> str:
    repo = ref.repository
    if is_strict(env.name):
        return f"use an exact release tag ({repo}:v1.2.3) or a digest ({repo}@sha256:...)"
    return f"use an immutable tag ({repo}:dev-<sha> or {repo}:v1.2.3) or a digest"


_WORD_SPLIT = re.compile(r"[-_.]")
_VERSIONISH_RE = re.compile(r"[vV]?[0-9]")
_FLOATING_RE = re.compile(r"[vV]?(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))?")


@dataclass(frozen=True, slots=True)
class LatestRule:
    """``latest`` in any letter case moves with every push and cannot be rolled back."""

    def judge(self, ref: ImageRef, env: Environment) -> Verdict | None:
        if ref.tag is None or ref.tag.lower() != "latest":
            return None
        pinned = " (the digest does not change that: the tag says latest)" if ref.digest else ""
        return _refuse(
            ref,
            Code.LATEST,
            f"{ref.tag!r} is a moving tag and cannot be rolled back{pinned}; " + _instead(ref, env),
        )


@dataclass(frozen=True, slots=True)
class UntaggedRule:
    """A reference with neither tag nor digest means ``latest``."""

    def judge(self, ref: ImageRef, env: Environment) -> Verdict | None:
        if ref.tag is not None or ref.digest is not None:
            return None
        port = ""
        if ref.host and ":" in ref.host.removeprefix("[").rpartition("]")[2]:
            port = f" ({ref.host.rpartition(':')[2]} is the registry port, not a tag)"
        return _refuse(
            ref,
            Code.UNTAGGED,
            f"no tag means 'latest'{port}; " + _instead(ref, env),
        )


@dataclass(frozen=True, slots=True)
class DevPointerRule:
    """A moving pointer (``dev-latest`` and the like) is never a deploy target."""

    def judge(self, ref: ImageRef, env: Environment) -> Verdict | None:
        if ref.tag is None:
            return None
        lowered = ref.tag.lower()
        words = _WORD_SPLIT.split(lowered)
        if lowered not in env.pointers and "latest" not in words:
            return None
        return _refuse(
            ref,
            Code.DEV_POINTER,
            f"{ref.tag!r} is a moving pointer that every build overwrites, never a deploy "
            "target; " + _instead(ref, env),
        )


@dataclass(frozen=True, slots=True)
class DevTagRule:
    """``dev-*`` tags: branch builds (``dev-<sha>``) and anything else named like one."""

    def judge(self, ref: ImageRef, env: Environment) -> Verdict | None:
        if ref.tag is None or not ref.tag.lower().startswith("dev-"):
            return None
        what = "a branch build" if is_dev_tag(ref.tag) else "a dev tag"
        return _refuse(
            ref,
            Code.DEV_TAG,
            f"{ref.tag!r} is {what}, not a release; " + _instead(ref, env),
        )


@dataclass(frozen=True, slots=True)
class FloatingAliasRule:
    """``v1``, ``v1.2``, ``1.2``: aliases that move to each new release of their line."""

    def judge(self, ref: ImageRef, env: Environment) -> Verdict | None:
        if ref.tag is None or not _FLOATING_RE.fullmatch(ref.tag):
            return None
        return _refuse(
            ref,
            Code.FLOATING_ALIAS,
            f"{ref.tag!r} is a floating alias that moves to every new release of its line; "
            f"use the exact release ({ref.repository}:{ref.tag}.N"
            + (".N" if ref.tag.count(".") == 0 else "")
            + f") or a digest ({ref.repository}@sha256:...)",
        )


@dataclass(frozen=True, slots=True)
class PrereleaseRule:
    """Prereleases (``v1.2.3-rc.1``) unless the environment allows them."""

    def judge(self, ref: ImageRef, env: Environment) -> Verdict | None:
        version = _release_version(ref, env)
        if env.allow_prerelease or version is None or not version.is_prerelease:
            return None
        return _refuse(
            ref,
            Code.PRERELEASE,
            f"{ref.tag!r} is a prerelease; deploy the release "
            f"({ref.repository}:{_release_form(ref.tag or '', version)}) "
            "or allow prereleases (--allow-prerelease)",
        )


@dataclass(frozen=True, slots=True)
class ReleaseOnlyRule:
    """Anything tagged that is not a SemVer release tag (``nightly``, ``sha-abc``, ``pr-12``)."""

    def judge(self, ref: ImageRef, env: Environment) -> Verdict | None:
        if ref.tag is None or _release_version(ref, env) is not None:
            return None
        what = "not a release tag"
        if is_pr_tag(ref.tag):
            what = "a pull request build, not a release"
        elif _VERSIONISH_RE.match(ref.tag) and env.version_scheme == "semver":
            what += f" ({explain_tag(ref.tag)})"
        elif _VERSIONISH_RE.match(ref.tag):
            what += " (not a PEP 440 version with MAJOR.MINOR.MICRO)"
        return _refuse(ref, Code.NON_RELEASE, f"{ref.tag!r} is {what}; " + _instead(ref, env))


def _release_version(ref: ImageRef, env: Environment) -> TagVersion | None:
    return None if ref.tag is None else version_of(ref.tag, env.version_scheme)


def _release_form(tag: str, version: TagVersion) -> str:
    prefix = "v" if tag.startswith("v") else ""
    if isinstance(version, SemVer):
        return f"{prefix}{version.major}.{version.minor}.{version.patch}"
    if isinstance(version, Pep440Tag):
        return prefix + ".".join(str(n) for n in version.version.release)
    return tag


PROD_RULES: tuple[Rule, ...] = (
    LatestRule(),
    UntaggedRule(),
    DevPointerRule(),
    DevTagRule(),
    FloatingAliasRule(),
    PrereleaseRule(),
    ReleaseOnlyRule(),
)
DEV_RULES: tuple[Rule, ...] = (LatestRule(), UntaggedRule(), DevPointerRule())

STRICT_NAMES = frozenset({"prod", "production"})
DEV_NAMES = frozenset({"dev", "development"})
# GitHub's environment names: letters, digits, spaces, '.', '_', '-' and '/', at most 255
# characters; tagkeeper also wants the first and last characters to be no space.
ENV_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 ._/-]{0,253}[A-Za-z0-9._/-])?")


def validate_env_name(name: str) -> str:
    """``name`` when it is an environment name, else a :class:`UsageError`.

    Names are never trimmed or otherwise normalised: ``" prod"`` is refused rather than
    read as ``prod``, so every command sees the environment exactly as written.
    """
    if not name.strip():
        raise UsageError("the environment name is empty", hint="use e.g. --env dev or --env prod")
    if not ENV_NAME_RE.fullmatch(name):
        raise UsageError(
            f"{name!r} is not an environment name",
            hint="use letters, digits, spaces, '.', '_', '-' and '/', starting with a letter "
            "or digit, not ending with a space, at most 255 characters (e.g. prod, staging-eu)",
        )
    return name


def is_strict(env_name: str) -> bool:
    """True when ``env_name`` gets the prod rules: every name but the dev names.

    The one answer to "is this environment prod?": ``check``, ``tags``, rollback and
    deploy all ask here. Letter case does not matter (``PROD``, ``Dev``).
    """
    return env_name.strip().lower() not in DEV_NAMES


@dataclass(frozen=True, slots=True)
class Policy:
    """An environment and the rules it enforces, in order (the first refusal wins)."""

    env: Environment
    rules: tuple[Rule, ...] = field(default=PROD_RULES)

    @property
    def rule_set(self) -> str:
        """``"prod"`` or ``"dev"``: which rule set this environment name gets."""
        return "prod" if is_strict(self.env.name) else "dev"

    def judge(self, ref: ImageRef) -> Verdict:
        for rule in self.rules:
            verdict = rule.judge(ref, self.env)
            if verdict is not None:
                return verdict
        return Verdict(str(ref), True, Code.OK, self._accepted(ref))

    def judge_text(self, text: str) -> Verdict:
        """Parse and judge ``text``; a reference that does not parse is refused, not raised."""
        try:
            ref = parse_reference(text)
        except UsageError as exc:
            return Verdict(
                text,
                False,
                Code.UNPARSEABLE,
                f"not an image reference: {exc.message}" + (f"; {exc.hint}" if exc.hint else ""),
            )
        verdict = self.judge(ref)
        return replace(verdict, ref=text)

    def judge_all(self, texts: Iterable[str]) -> list[Verdict]:
        return [self.judge_text(text) for text in texts]

    def _accepted(self, ref: ImageRef) -> str:
        if ref.tag is None:
            return f"pinned by digest; acceptable for {self.env.name}"
        version = version_of(ref.tag, self.env.version_scheme)
        if version is not None:
            kind = "prerelease" if version.is_prerelease else "release"
            return f"exact {kind} {version}; acceptable for {self.env.name}"
        return f"tag {ref.tag!r} is acceptable for {self.env.name}"


def policy_for(
    env_name: str,
    *,
    allow_prerelease: bool = False,
    pointers: Iterable[str] = DEFAULT_POINTERS,
    version_scheme: Scheme = "semver",
) -> Policy:
    """The policy for an environment name: prod rules unless it is a dev name.

    The name is checked with :func:`validate_env_name` (a :class:`UsageError` otherwise).

    ``pointers`` names the moving dev pointer tags (default ``dev-latest``); matching is
    case-insensitive. ``version_scheme`` says what a release tag is (SemVer by default).
    """
    name = validate_env_name(env_name)
    env = Environment(
        name=name,
        allow_prerelease=allow_prerelease,
        pointers=frozenset(p.lower() for p in pointers),
        version_scheme=check_scheme(version_scheme),
    )
    return Policy(env, PROD_RULES if is_strict(name) else DEV_RULES)
