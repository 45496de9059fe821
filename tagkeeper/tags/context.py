"""Build context adapter: what is being built, from GitHub Actions, from git, or from flags.

Inside GitHub Actions (``GITHUB_ACTIONS=true``) the commit and ref come from the runner's
variables (``GITHUB_SHA``, ``GITHUB_REF`` or ``GITHUB_REF_NAME``/``GITHUB_REF_TYPE``,
``GITHUB_EVENT_NAME``) and, for pull requests, from the event payload at
``GITHUB_EVENT_PATH``:

- ``pull_request``: ``GITHUB_SHA`` is the merge commit GitHub made; the head commit is
  ``pull_request.head.sha``. The head is used by default (it is the commit people pushed
  and see in the PR); ``pr_sha="merge"`` selects the merge commit.
- ``pull_request_target``: ``GITHUB_SHA`` is the base branch's last commit, so the merge
  commit is read from ``pull_request.merge_commit_sha`` instead.
- every other event (``push``, ``workflow_dispatch``, ``schedule``, ``release``...):
  ``GITHUB_SHA`` and ``GITHUB_REF``; a ref ``refs/tags/...`` makes it a release build.

Outside CI, ``git rev-parse HEAD`` gives the commit; the highest SemVer tag pointing at
HEAD (``git tag --points-at HEAD``) makes it a release build, else the current branch.

Explicit values win over both: ``sha`` and ``ref``. When ``sha`` is given outside CI,
git is not asked anything and the ref is ``ref`` alone (no ref: a branch build).

Where the source lives (for the OCI ``source``/``url``/``title`` labels): in Actions,
``$GITHUB_SERVER_URL/$GITHUB_REPOSITORY``; outside CI, git's ``origin`` remote, with any
user name or token in it dropped. Outside CI the work tree's uncommitted paths
(``git status``, untracked files included, ignored files not) are reported in
``BuildContext.dirty``: a tag names a commit, and an image built from a dirty tree is not
that commit.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from tagkeeper.errors import UsageError
from tagkeeper.semver import parse_tag
from tagkeeper.tags.compute import (
    BuildContext,
    ShaSource,
    pr_number_from_ref,
    validate_ref,
    validate_sha,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

PR_EVENTS = frozenset({"pull_request", "pull_request_target"})
_REPOSITORY_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_HOST_RE = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?")
_SCP_RE = re.compile(r"(?:[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)")
_PATH_RE = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)+")
PR_SHA_CHOICES = ("head", "merge")

__all__ = ["PR_EVENTS", "BuildContext", "GitRunner", "ShaSource", "SubprocessGit", "detect"]


class GitRunner(Protocol):
    """Runs ``git ARGS``; returns stripped stdout, or ``None`` when git fails or is missing."""

    def __call__(self, args: Sequence[str]) -> str | None: ...


class SubprocessGit:
    """The real :class:`GitRunner`: the ``git`` executable in ``cwd``."""

    def __init__(self, cwd: Path | None = None, timeout: float = 10.0) -> None:
        self.cwd = cwd
        self.timeout = timeout

    def __call__(self, args: Sequence[str]) -> str | None:
        exe = shutil.which("git")
        if exe is None:
            return None
        try:
            done = subprocess.run(  # noqa: S603 - fixed executable, argument list, no shell
                [exe, *args],
                cwd=self.cwd,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None


def _load_payload(environ: Mapping[str, str]) -> dict[str, Any]:
    path = environ.get("GITHUB_EVENT_PATH")
    hint = "pass --sha (and --ref) explicitly, or run in a GitHub Actions step"
    if not path:
        raise UsageError("$GITHUB_EVENT_PATH is not set; the event payload is needed", hint=hint)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the event payload {path}: {exc}", hint=hint) from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"the event payload {path} is not JSON: {exc}", hint=hint) from None
    if not isinstance(data, dict):
        raise UsageError(f"the event payload {path} is not a JSON object", hint=hint)
    return data


def _ref_from_env(environ: Mapping[str, str]) -> str | None:
    ref = environ.get("GITHUB_REF") or None
    if ref is None:
        name = environ.get("GITHUB_REF_NAME")
        kind = environ.get("GITHUB_REF_TYPE")
        if name and kind in ("branch", "tag"):
            ref = f"refs/{'heads' if kind == 'branch' else 'tags'}/{name}"
    return ref


def _pull_request(
    environ: Mapping[str, str], event: str, ref: str | None, sha: str | None, pr_sha: str
) -> BuildContext:
    payload = _load_payload(environ)
    pr = payload.get("pull_request")
    if not isinstance(pr, dict):
        raise UsageError(
            f"the {event} event payload has no pull_request object",
            hint="pass --sha explicitly",
        )
    number = pr.get("number", payload.get("number"))
    if not isinstance(number, int) or isinstance(number, bool):
        number = pr_number_from_ref(ref)
    if sha is not None:
        return BuildContext(sha, ShaSource.flag, ref, event, number)
    if pr_sha == "head":
        head = pr.get("head")
        head_sha = head.get("sha") if isinstance(head, dict) else None
        if not isinstance(head_sha, str):
            raise UsageError(
                f"the {event} event payload has no pull_request.head.sha",
                hint="pass --sha explicitly, or --pr-sha merge",
            )
        return BuildContext(
            validate_sha(head_sha, "pull_request.head.sha"), ShaSource.head, ref, event, number
        )
    if event == "pull_request":
        merge = environ.get("GITHUB_SHA")
        where = "$GITHUB_SHA"
    else:  # pull_request_target runs on the base branch: GITHUB_SHA is not the merge
        merge = pr.get("merge_commit_sha")
        where = "pull_request.merge_commit_sha"
    if not isinstance(merge, str) or not merge:
        raise UsageError(
            f"no merge commit for this {event} event ({where} is empty)",
            hint="use --pr-sha head, or pass --sha explicitly",
        )
    return BuildContext(validate_sha(merge, where), ShaSource.merge, ref, event, number)


def _web_url(host: str, path: str, scheme: str = "https") -> str | None:
    """``SCHEME://HOST/PATH`` when both look like a repository's web address, else ``None``."""
    path = path.strip("/")
    path = path.removesuffix(".git")
    if not _HOST_RE.fullmatch(host) or not _PATH_RE.fullmatch(path):
        return None
    return f"{scheme}://{host}/{path}"


def repository_from_actions(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The repository's web URL and name from ``$GITHUB_SERVER_URL``/``$GITHUB_REPOSITORY``."""
    repository = environ.get("GITHUB_REPOSITORY", "")
    if not _REPOSITORY_RE.fullmatch(repository):
        return None, None
    server = urlsplit(environ.get("GITHUB_SERVER_URL") or "https://github.com")
    if server.scheme not in ("https", "http") or server.username or server.password:
        return None, None
    if server.path.strip("/") or server.query or server.fragment:
        return None, None
    if not _HOST_RE.fullmatch(server.netloc):
        return None, None
    return f"{server.scheme}://{server.netloc}/{repository}", repository.split("/", 1)[1]


def repository_from_remote(remote: str | None) -> tuple[str | None, str | None]:
    """A git remote's web URL and name: ``https://``, ``ssh://`` and ``git@host:path``
    remotes; credentials in the URL are dropped. Anything else (a local path): ``None``."""
    if not remote:
        return None, None
    url: str | None = None
    if "://" in remote:
        parts = urlsplit(remote)
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            return None, None
        if parts.scheme in ("https", "http") and parts.hostname:
            port = f":{parts.port}" if parts.port else ""  # a web server's own port
            url = _web_url(parts.hostname + port, parts.path, parts.scheme)
        elif parts.scheme in ("ssh", "git") and parts.hostname:
            url = _web_url(parts.hostname, parts.path)  # the ssh port is not the web's
    elif (scp := _SCP_RE.fullmatch(remote)) is not None:
        url = _web_url(scp.group("host"), scp.group("path"))
    if url is None:
        return None, None
    return url, url.rsplit("/", 1)[1]


def dirty_paths(git: GitRunner) -> tuple[str, ...] | None:
    """Uncommitted paths of the work tree (``git status``; ``None`` when git cannot tell)."""
    text = git(["status", "--porcelain=v2", "-z", "--untracked-files=normal"])
    if text is None:
        return None
    paths: list[str] = []
    entries = iter(text.split("\0"))
    # porcelain v2: "1 XY sub mH mI mW hH hI path", "2 ... X<score> path" then the
    # original path as its own entry, "u ... path", "? path"
    fields = {"1": 8, "2": 9, "u": 10, "?": 1}
    for entry in entries:
        count = fields.get(entry[:1])
        if count is None:
            continue
        parts = entry.split(" ", count)
        if len(parts) == count + 1:
            paths.append(parts[count])
        if entry.startswith("2 "):
            next(entries, None)
    return tuple(paths)


def _from_actions(
    environ: Mapping[str, str], sha: str | None, ref: str | None, pr_sha: str
) -> BuildContext:
    from dataclasses import replace

    url, name = repository_from_actions(environ)
    context = _actions_build(environ, sha, ref, pr_sha)
    return replace(context, repository_url=url, repository_name=name)


def _actions_build(
    environ: Mapping[str, str], sha: str | None, ref: str | None, pr_sha: str
) -> BuildContext:
    event = environ.get("GITHUB_EVENT_NAME") or None
    ref = ref if ref is not None else _ref_from_env(environ)
    if event is not None and event in PR_EVENTS:
        return _pull_request(environ, event, ref, sha, pr_sha)
    number = pr_number_from_ref(ref)
    if sha is not None:
        return BuildContext(sha, ShaSource.flag, ref, event, number)
    env_sha = environ.get("GITHUB_SHA")
    if not env_sha:
        raise UsageError(
            "$GITHUB_SHA is not set in this GitHub Actions step",
            hint="pass --sha explicitly",
        )
    return BuildContext(validate_sha(env_sha, "$GITHUB_SHA"), ShaSource.push, ref, event, number)


def _from_git(git: GitRunner, ref: str | None) -> BuildContext:
    head = git(["rev-parse", "--verify", "HEAD"])
    if not head:
        raise UsageError(
            "not in GitHub Actions, and git cannot tell the commit here (no repository, "
            "no commit yet, or git is not installed)",
            hint="run inside a git checkout, or pass --sha and --ref",
        )
    sha = validate_sha(head, "git HEAD")
    notes: list[str] = []
    if ref is None:
        names = (git(["tag", "--points-at", "HEAD"]) or "").splitlines()
        versions = [(v, name) for name in names if (v := parse_tag(name)) is not None]
        ignored = [name for name in names if parse_tag(name) is None]
        if ignored:
            notes.append("ignored non-SemVer tag(s) at HEAD: " + ", ".join(ignored))
        if versions:
            best = max(versions, key=lambda item: (item[0].precedence_key(), item[1]))[1]
            if len(versions) > 1:
                notes.append(f"HEAD has {len(versions)} SemVer tags; using the highest, {best}")
            ref = f"refs/tags/{best}"
        else:
            branch = git(["symbolic-ref", "-q", "HEAD"])
            if branch:
                ref = branch
            else:
                notes.append("detached HEAD with no SemVer tag: a branch (dev) build")
    url, name = repository_from_remote(git(["remote", "get-url", "origin"]))
    return BuildContext(
        sha,
        ShaSource.git,
        ref,
        None,
        pr_number_from_ref(ref),
        tuple(notes),
        repository_url=url,
        repository_name=name,
        dirty=dirty_paths(git),
    )


def detect(
    environ: Mapping[str, str],
    git: GitRunner | None = None,
    *,
    sha: str | None = None,
    ref: str | None = None,
    pr_sha: str = "head",
) -> BuildContext:
    """The build context: explicit values, then GitHub Actions, then ``git``."""
    if pr_sha not in PR_SHA_CHOICES:
        raise UsageError(f"--pr-sha {pr_sha!r} is not one of: head, merge")
    sha = validate_sha(sha) if sha is not None else None
    ref = validate_ref(ref) if ref is not None else None
    if environ.get("GITHUB_ACTIONS") == "true":
        return _from_actions(environ, sha, ref, pr_sha)
    if sha is not None:
        return BuildContext(sha, ShaSource.flag, ref, None, pr_number_from_ref(ref))
    return _from_git(git if git is not None else SubprocessGit(), ref)
