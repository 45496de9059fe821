"""Tag computation: which tags a build gets. Pure: a build context and options in, tags out.

- Branch builds get ``dev-<sha>`` (the first ``sha_length`` hex digits of the commit built).
- Pull request builds get ``dev-<sha>`` and ``pr-<number>``; the context says whether the
  sha is the PR head or the merge commit.
- Release builds (a git tag ``vX.Y.Z[-pre][+build]``) get the exact version tag, with the
  ``v`` by default or bare on request; build metadata is written after ``_`` because image
  tags cannot hold ``+`` (see :mod:`tagkeeper.semver`). Floating aliases (``v1.2``,
  ``v1``) only on request and only for stable releases (never ``v0``: a 0.y.z series
  promises no compatibility).
- ``latest`` is never produced. An opt-in moving pointer such as ``dev-latest`` is added to
  branch builds for the dev environment only (never to pull requests or releases).
- The environment is ``prod`` for stable release tags and ``dev`` otherwise (prereleases
  included), unless overridden. Whether an environment gets the strict prod rules is
  :func:`tagkeeper.gate.rules.is_strict`, the same answer ``check`` uses: every name but ``dev``
  and ``development`` (any case) is strict. A strict environment takes release builds
  only: a branch or pull request build is a :class:`~tagkeeper.errors.PolicyViolation`
  (its ``dev-<sha>`` tag would be refused), and so is a prerelease unless
  ``allow_prerelease`` is set. Environment names are checked with
  :func:`tagkeeper.gate.rules.validate_env_name` (never trimmed).

Every emitted tag is checked against the OCI tag grammar; input that cannot give a valid
tag is a :class:`~tagkeeper.errors.UsageError`, never a silently mangled tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tagkeeper.channels import MAX_SHA_DIGITS, MIN_SHA_DIGITS, SHA_RE, looks_like_build_tag
from tagkeeper.errors import PolicyViolation, UsageError
from tagkeeper.gate.rules import STRICT_NAMES, is_strict, validate_env_name
from tagkeeper.refs import parse_reference, require_valid_tag
from tagkeeper.semver import SemVer, explain_tag, format_tag, parse_tag

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

_REF_RE = re.compile(r"refs/(?:heads|tags)/\S+|refs/pull/[1-9][0-9]*/(?:merge|head)")
_PR_REF_RE = re.compile(r"refs/pull/([1-9][0-9]*)/(?:merge|head)")
PROD = "prod"
DEV = "dev"
MIN_SHA_LENGTH = MIN_SHA_DIGITS
MAX_SHA_LENGTH = 40  # what --sha-length writes; the dev tag grammar reads up to 64
DEFAULT_SHA_LENGTH = 7


class Channel(StrEnum):
    """What kind of build this is."""

    release = "release"
    prerelease = "prerelease"
    dev = "dev"
    pr = "pr"


class ShaSource(StrEnum):
    """Where the commit sha came from (reported so nobody has to guess)."""

    push = "push"  # GITHUB_SHA of a push, tag, dispatch, schedule... event
    head = "head"  # pull request head commit (pull_request.head.sha)
    merge = "merge"  # pull request merge commit
    git = "git"  # ``git rev-parse HEAD`` outside CI
    flag = "flag"  # given on the command line


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What is being built: the commit, the git ref, and the GitHub event if any.

    ``ref`` is a full ref (``refs/heads/main``, ``refs/tags/v1.2.3``,
    ``refs/pull/5/merge``) or ``None`` (detached HEAD outside CI). ``notes`` are facts
    worth telling the user (for example a non-SemVer tag that was ignored).

    ``repository_url`` (``https://github.com/o/r``) and ``repository_name`` (``r``) say
    where the source lives, when known. ``dirty`` lists the work tree's uncommitted paths
    when git was asked (``()``: clean); ``None`` when the build is not read from a work
    tree (in CI, or a commit given with ``--sha``).
    """

    sha: str
    sha_source: ShaSource
    ref: str | None = None
    event: str | None = None
    pr_number: int | None = None
    notes: tuple[str, ...] = ()
    repository_url: str | None = None
    repository_name: str | None = None
    dirty: tuple[str, ...] | None = None

    @property
    def tag_name(self) -> str | None:
        if self.ref and self.ref.startswith("refs/tags/"):
            return self.ref[len("refs/tags/") :]
        return None

    @property
    def branch_name(self) -> str | None:
        if self.ref and self.ref.startswith("refs/heads/"):
            return self.ref[len("refs/heads/") :]
        return None


@dataclass(frozen=True, slots=True)
class TagOptions:
    """How tags are formed. ``env`` overrides the environment the build is meant for;
    ``allow_prerelease`` lets a strict environment take a prerelease; ``fail_dirty`` makes
    uncommitted changes in the work tree a :class:`~tagkeeper.errors.PolicyViolation`
    instead of a warning."""

    sha_length: int = DEFAULT_SHA_LENGTH
    v_prefix: bool = True
    aliases: bool = False
    dev_pointer: str | None = None
    env: str | None = None
    allow_prerelease: bool = False
    fail_dirty: bool = False


@dataclass(frozen=True, slots=True)
class TagResult:
    """The tags of one build and the facts they were computed from."""

    tags: tuple[str, ...]
    version: SemVer | None
    env: str
    channel: Channel
    context: BuildContext
    notes: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())

    @property
    def sha(self) -> str:
        return self.context.sha

    def references(self, images: Sequence[str]) -> list[str]:
        """Every tag on every image (image order, then tag order)."""
        return image_references(images, self.tags)

    def to_dict(self, images: Sequence[str] = ()) -> dict[str, Any]:
        """The machine payload (what ``--format json`` prints)."""
        refs = self.references(images) if images else list(self.tags)
        return {
            "tags": refs,
            "tag_names": list(self.tags),
            "images": list(images),
            "version": str(self.version) if self.version is not None else None,
            "env": self.env,
            "channel": str(self.channel),
            "sha": self.context.sha,
            "sha_source": str(self.context.sha_source),
            "ref": self.context.ref,
            "event": self.context.event,
            "pr_number": self.context.pr_number,
            "dirty": list(self.context.dirty) if self.context.dirty is not None else None,
            "notes": list(self.context.notes + self.notes),
            "warnings": list(self.warnings),
        }


def validate_sha(sha: str, what: str = "sha") -> str:
    """A lowercase hex commit id (4 to 64 digits), or a :class:`UsageError`."""
    text = sha.strip().lower()
    if text != sha.lower() or not SHA_RE.fullmatch(text):
        raise UsageError(
            f"{what} {sha!r} is not a commit id: expected {MIN_SHA_DIGITS} to "
            f"{MAX_SHA_DIGITS} hexadecimal digits",
            hint="pass the full commit sha, e.g. the output of `git rev-parse HEAD`",
        )
    return text


def validate_ref(ref: str) -> str:
    """A full git ref that tagkeeper understands, or a :class:`UsageError`."""
    if not _REF_RE.fullmatch(ref):
        raise UsageError(
            f"ref {ref!r} is not a full git ref tagkeeper understands",
            hint="use refs/heads/<branch>, refs/tags/<tag> or refs/pull/<number>/merge",
        )
    return ref


def pr_number_from_ref(ref: str | None) -> int | None:
    match = _PR_REF_RE.fullmatch(ref or "")
    return int(match.group(1)) if match else None


def check_dev_pointer(name: str) -> str:
    """A valid moving-pointer name, or a :class:`UsageError` saying why not."""
    require_valid_tag(name)
    if name.lower() == "latest":
        raise UsageError(
            "'latest' is never produced: a moving pointer named latest is what rollbacks "
            "cannot follow",
            hint="choose a name that says what it tracks, such as dev-latest",
        )
    if parse_tag(name) is not None:
        raise UsageError(
            f"dev pointer {name!r} looks like a release version",
            hint="choose a name such as dev-latest",
        )
    if looks_like_build_tag(name):
        raise UsageError(
            f"dev pointer {name!r} has the form of an immutable build tag (dev-<sha> or pr-<n>)",
            hint="choose a name such as dev-latest",
        )
    return name


def _release_tags(version: SemVer, options: TagOptions) -> tuple[list[str], list[str]]:
    tags = [format_tag(version, v_prefix=options.v_prefix)]
    notes: list[str] = []
    if options.aliases:
        prefix = "v" if options.v_prefix else ""
        if version.is_prerelease:
            notes.append(f"no floating aliases for prerelease {version}")
        else:
            tags.append(f"{prefix}{version.major}.{version.minor}")
            if version.major > 0:
                tags.append(f"{prefix}{version.major}")
            else:
                notes.append(f"no {prefix}0 alias: a 0.y.z series promises no compatibility")
    return tags, notes


def compute_tags(context: BuildContext, options: TagOptions | None = None) -> TagResult:
    """The tags, version and environment of the build ``context`` describes."""
    opts = options or TagOptions()
    if not MIN_SHA_LENGTH <= opts.sha_length <= MAX_SHA_LENGTH:
        raise UsageError(
            f"sha length {opts.sha_length} is out of range",
            hint=f"use a length from {MIN_SHA_LENGTH} to {MAX_SHA_LENGTH} (default 7)",
        )
    sha = validate_sha(context.sha)
    if len(sha) < opts.sha_length:
        raise UsageError(
            f"sha {sha!r} has {len(sha)} digits, fewer than the sha length {opts.sha_length}",
            hint="pass the full commit sha",
        )
    if opts.env is not None:
        validate_env_name(opts.env)
    notes: list[str] = []
    version: SemVer | None = None
    tag_name = context.tag_name
    if tag_name is not None:
        version = parse_tag(tag_name)
        if version is None:
            raise UsageError(
                f"git tag {tag_name!r} cannot be released: "
                + (explain_tag(tag_name) or "it is not SemVer"),
                hint="release tags are vX.Y.Z[-pre][+build] (e.g. v1.2.3); for a dev build "
                "pass --ref refs/heads/<branch>",
            )
        channel = Channel.prerelease if version.is_prerelease else Channel.release
        tags, release_notes = _release_tags(version, opts)
        notes += release_notes
    else:
        short = f"dev-{sha[: opts.sha_length]}"
        tags = [short]
        channel = Channel.dev
        if context.pr_number is not None:
            channel = Channel.pr
            tags.append(f"pr-{context.pr_number}")
    env = opts.env if opts.env is not None else (PROD if channel is Channel.release else DEV)
    strict = is_strict(env)
    why = "" if env.lower() in STRICT_NAMES else f" ({env} gets the prod rules)"
    if strict and channel in (Channel.dev, Channel.pr):
        raise PolicyViolation(
            f"a {channel} build is tagged {tags[0]}, which {env} refuses{why}",
            hint=f"{env} takes release builds from a tag vX.Y.Z; for this build drop --env "
            "or use a dev environment (dev, development)",
        )
    if strict and channel is Channel.prerelease and not opts.allow_prerelease:
        raise PolicyViolation(
            f"{tags[0]} is a prerelease, which {env} refuses{why}",
            hint="pass --allow-prerelease if prereleases may reach this environment (check "
            "and rollback need it too), or drop --env for a dev build",
        )
    if opts.dev_pointer:
        pointer = check_dev_pointer(opts.dev_pointer)
        if channel is Channel.dev and not strict:
            tags.append(pointer)
        else:
            notes.append(f"dev pointer {pointer!r} is only moved by branch builds for dev")
    for tag in tags:
        require_valid_tag(tag)
        if tag.lower() == "latest":  # a guard: nothing above can produce it
            raise PolicyViolation("refusing to emit the tag 'latest'")
    warnings = []
    if context.dirty:
        problem = dirty_problem(context.dirty, tags[0], sha[: opts.sha_length])
        if opts.fail_dirty:
            raise PolicyViolation(
                problem,
                hint="commit or stash the changes (git stash --include-untracked) and build "
                "again; without --fail-dirty this is only a warning",
            )
        warnings.append(problem)
    return TagResult(
        tags=tuple(dict.fromkeys(tags)),
        version=version,
        env=env,
        channel=channel,
        context=context,
        notes=tuple(notes),
        warnings=tuple(warnings),
    )


def dirty_problem(paths: Sequence[str], tag: str, short_sha: str) -> str:
    """What is wrong with tagging a work tree that has uncommitted ``paths``."""
    shown = ", ".join(repr(path) for path in paths[:3])
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    count = f"{len(paths)} uncommitted path" + ("s" if len(paths) != 1 else "")
    return (
        f"the work tree has {count} ({shown}{more}): {tag} names commit {short_sha}, "
        "not the files an image built here would contain"
    )


def image_references(images: Iterable[str], tags: Sequence[str]) -> list[str]:
    """``image:tag`` for every image and tag; an image that already names a tag is an error."""
    out: list[str] = []
    for image in images:
        ref = parse_reference(image)
        if ref.tag is not None or ref.digest is not None:
            raise UsageError(
                f"image {image!r} already names a " + ("tag" if ref.tag is not None else "digest"),
                hint=f"pass the repository only, e.g. --image {ref.repository}",
            )
        out.extend(str(ref.with_tag(tag)) for tag in tags)
    return out
