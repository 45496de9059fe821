"""Pruning many packages in one run: select them, order them, share one rate-limit budget.

``tagkeeper prune --image 'ghcr.io/acme/*' --exclude 'ghcr.io/acme/*-cache'`` (or
``--all ghcr.io/acme``) comes here::

    run = prune_packages(["ghcr.io/acme/*"], policy, options=options, client=client,
                         clock=lambda: datetime.now(UTC), state=PruneState.load(path))

1. **Select**: each pattern's registry is listed once
   (:func:`tagkeeper.registries.catalog.list_repositories`: GHCR's Packages API for the
   owner, ``_catalog`` elsewhere) and matched (:mod:`tagkeeper.retention.select`);
   names without a wildcard are taken as they are.
2. **Order**: packages the state has never seen first, then the one pruned longest ago
   (:class:`PruneState`), so a run that stops early is followed by one that starts with
   what it left.
3. **Prune** one after the other through
   :func:`tagkeeper.retention.runner.prune_images`, with one
   :class:`~tagkeeper.registries.ghcr_api.GhcrSession`: the token's owner and each
   owner's kind are asked once per run, and GitHub's primary rate limit
   (``x-ratelimit-remaining``/``-reset``, whatever request told it last) is one budget.
4. **Budget rule**: before each package but the first, the run goes on only when what
   is left covers :func:`requests_needed` plus :data:`RESERVE`; else it stops there
   (exit 10) and says what is done and what is left. The first package of a run always
   starts, so every run makes progress; if the limit runs out inside it, its deletes
   stop (exit 10), what was deleted is reported, and the package stays first for the
   next run. After the window's reset time the budget is whole again.

The state lives in a small JSON file (``--state FILE``) rather than in the registry:
GHCR records when a package last changed, not when it was last pruned, and a push
would move it to the back of the queue. A package is marked pruned when its prune ended
with exit 0 (a dry run marks nothing). Without a state file the order is by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagkeeper.errors import ExitCode, TagkeeperError, UsageError
from tagkeeper.retention.runner import PruneRun, prune_images
from tagkeeper.retention.select import is_glob, parse_glob, select
from tagkeeper.rollback.sources import RollbackGuard

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import httpx

    from tagkeeper.registries.catalog import Listed, Listing
    from tagkeeper.registries.factory import BackendOptions
    from tagkeeper.retention.planner import Policy
    from tagkeeper.retention.runner import PruneListener, PruneResult

__all__ = [
    "RESERVE",
    "PruneState",
    "Selected",
    "lists_packages",
    "order",
    "prune_packages",
    "prune_targets",
    "requests_needed",
    "select_packages",
]

RESERVE = 10  # API requests kept back for the next run's owner and listing lookups
STATE_VERSION = 1


# -- select ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selected:
    """The packages a run prunes, in name order, and what listing them said and cost."""

    packages: tuple[Listed, ...]
    warnings: tuple[str, ...] = ()
    requests: int = 0


def select_packages(
    patterns: Sequence[str],
    excludes: Sequence[str],
    *,
    kind_of: Callable[[str], str],
    lister: Callable[[str, str | None, str], Listing],
) -> Selected:
    """The packages ``patterns`` name, minus ``excludes``.

    ``kind_of(image)`` is the backend kind of a name; ``lister(host, owner, kind)`` lists
    a registry (called once per host and owner). A plain name is taken as it is; a
    pattern that matches nothing is a :class:`~tagkeeper.errors.UsageError`.
    """
    from tagkeeper.registries.catalog import Listed

    globs = [parse_glob(p) for p in patterns if is_glob(p)]
    exclude = [parse_glob(p, flag="--exclude") for p in excludes]
    plain = [p for p in patterns if not is_glob(p)]
    listed: dict[str, Listed] = {}
    warnings: list[str] = []
    requests = 0
    asked: dict[tuple[str, str | None], Listing] = {}
    for glob in globs:
        kind = kind_of(glob.text)
        owner = glob.owner if kind == "ghcr" else (glob.literal_prefix or None)
        key = (glob.host, owner)
        if key not in asked:
            asked[key] = lister(glob.host, owner, kind)
            warnings.extend(asked[key].warnings)
            requests += asked[key].requests
        for item in asked[key].repositories:
            listed.setdefault(item.image, item)
        if not any(glob.matches(item.image) for item in asked[key].repositories):
            raise UsageError(
                f"--image {glob.text!r} matches no repository "
                f"({len(asked[key].repositories)} listed)",
                hint="check the pattern; '*' and '?' stay inside one path segment, '**' "
                "crosses them",
            )
    chosen = select(listed, globs, exclude)
    for name in plain:
        if not any(g.matches(name) for g in exclude):
            chosen.append(name)
    unique = sorted(set(chosen))
    return Selected(
        tuple(listed.get(name) or Listed(name) for name in unique), tuple(warnings), requests
    )


# -- order and state -------------------------------------------------------------------------


@dataclass
class PruneState:
    """When each package was last pruned completely (``--state FILE``).

    The file is JSON: ``{"version": 1, "pruned": {"ghcr.io/acme/app":
    "2026-01-02T03:04:05+00:00"}}``, written atomically after each package.
    """

    path: Path | None = None
    pruned: dict[str, datetime] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> PruneState:
        """The state in ``path`` (none yet when the file does not exist)."""
        if path is None or not path.exists():
            return cls(path)
        bad = UsageError(
            f"--state {path} is not a tagkeeper prune state file",
            hint="name another file, or remove this one (the next run then starts "
            "with the packages in name order)",
        )
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            raise bad from None
        if not isinstance(body, dict) or body.get("version") != STATE_VERSION:
            raise bad
        entries = body.get("pruned")
        if not isinstance(entries, dict):
            raise bad
        pruned: dict[str, datetime] = {}
        for name, when in entries.items():
            try:
                at = datetime.fromisoformat(str(when))
            except ValueError:
                raise bad from None
            pruned[str(name)] = at if at.tzinfo else at.replace(tzinfo=UTC)
        return cls(path, pruned)

    def mark(self, image: str, when: datetime) -> None:
        """Record that ``image`` was pruned completely at ``when`` and save."""
        self.pruned[image] = when
        self.save()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "pruned": {k: v.isoformat() for k, v in sorted(self.pruned.items())},
        }

    def save(self) -> None:
        if self.path is None:
            return
        folder = self.path.parent
        try:
            handle, temp = tempfile.mkstemp(prefix=".tagkeeper-state-", dir=folder)
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(self.to_json(), out, indent=2)
                out.write("\n")
            Path(temp).replace(self.path)
        except OSError as exc:
            with contextlib.suppress(OSError, UnboundLocalError):
                Path(temp).unlink()
            raise UsageError(
                f"--state {self.path}: cannot be written ({exc.strerror or type(exc).__name__})",
                hint="name a file in a folder that exists and is writable",
            ) from None


def order(packages: Sequence[Listed], state: PruneState) -> list[Listed]:
    """Packages never pruned first (by name), then the one pruned longest ago first."""
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(packages, key=lambda p: (state.pruned.get(p.image, oldest), p.image))


# -- budget ----------------------------------------------------------------------------------


def requests_needed(package: Listed, *, dry_run: bool) -> int:
    """GitHub API requests one package may cost: its listing pages of 100, as many again
    to confirm a listing of several pages (conditional requests: a ``304`` does not
    count, a page that changed does), and in a real run two per version (its ``DELETE``
    and, at worst, a re-check of its own, as if every version were deleted: an upper
    bound, re-checks are shared). ``/v2`` reads (manifests, the registry token) do not
    count against the API's primary limit."""
    pages = package.pages
    listing = pages * 2 if pages > 1 else 1
    return listing if dry_run else listing + 2 * (package.versions or 0)


def _short_of(
    package: Listed, budget: tuple[int | None, float | None], now: float, *, dry_run: bool
) -> str | None:
    """Why the run stops before ``package``, or ``None`` when the budget covers it."""
    remaining, reset = budget
    if remaining is None or reset is None or reset <= now:
        return None
    needed = requests_needed(package, dry_run=dry_run)
    if remaining >= needed + RESERVE:
        return None
    when = datetime.fromtimestamp(reset, UTC).strftime("%H:%M:%S UTC")
    return (
        f"stopped before {package.image}: {remaining} GitHub API requests left until "
        f"{when}, it may need {needed} (+{RESERVE} kept back)"
    )


# -- the run ---------------------------------------------------------------------------------


@dataclass
class _ReadOnce(RollbackGuard):
    """A guard whose answers were all read before the first package was pruned."""

    known: dict[str, tuple[dict[str, str], list[str]] | TagkeeperError] = field(
        default_factory=dict
    )

    def protected(self, image: str) -> tuple[dict[str, str], list[str]]:
        answer = self.known[image]
        if isinstance(answer, TagkeeperError):
            raise answer
        return answer


def _read_histories(guard: RollbackGuard | None, images: Sequence[str]) -> RollbackGuard | None:
    """Every image's deploy history, read before anything is pruned: an environment a
    user named with no history stops the run before any deletes."""
    from tagkeeper.rollback.protection import NoHistory

    if guard is None or not guard.environments:
        return guard
    known: dict[str, tuple[dict[str, str], list[str]] | TagkeeperError] = {}
    for image in images:
        try:
            known[image] = guard.protected(image)
        except NoHistory:
            raise
        except TagkeeperError as exc:
            known[image] = exc
    fields = {f.name: getattr(guard, f.name) for f in dataclasses.fields(guard)}
    return _ReadOnce(**fields, known=known)


def prune_packages(
    patterns: Sequence[str],
    policy: Policy,
    *,
    options: BackendOptions,
    client: httpx.Client,
    clock: Callable[[], datetime],
    excludes: Sequence[str] = (),
    state: PruneState | None = None,
    guard: RollbackGuard | None = None,
    dry_run: bool = False,
    listener: PruneListener | None = None,
) -> PruneRun:
    """Select, order and prune the packages ``patterns`` name (see the module
    docstring); the result lists every package pruned, and in ``left`` those the
    budget did not reach."""
    from tagkeeper.errors import RateLimited
    from tagkeeper.registries import factory
    from tagkeeper.registries.catalog import list_repositories
    from tagkeeper.registries.ghcr_api import GhcrSession
    from tagkeeper.retention.runner import RunInterrupted, check_images

    session = options.ghcr_session or GhcrSession()
    options = dataclasses.replace(options, ghcr_session=session)
    state = state or PruneState()
    selected = select_packages(
        patterns,
        excludes,
        # the kind follows the host (a pattern is no reference to parse)
        kind_of=lambda image: factory.detect_kind(f"{image.partition('/')[0]}/x", options),
        lister=lambda host, owner, kind: list_repositories(
            host, owner, kind=kind, options=options, client=client, session=session
        ),
    )
    queue = order(selected.packages, state)
    names = [p.image for p in queue]
    check_images(names, options)
    guard = _read_histories(guard, names)
    results: list[PruneResult] = []
    stopped: str | None = None
    left: list[str] = []
    for index, package in enumerate(queue):
        if index:
            stopped = _short_of(
                package, session.budget.read(), clock().timestamp(), dry_run=dry_run
            )
        if stopped is not None:
            left = names[index:]
            break
        try:
            one = prune_images(
                [package.image],
                policy,
                options=options,
                client=client,
                clock=clock,
                guard=guard,
                dry_run=dry_run,
                listener=listener,
            )
        except RunInterrupted as stop:  # Ctrl-C: the whole run, and what it did not reach
            for later in names[index + 1 :]:
                if listener is not None:
                    listener.not_started(later)
            done = PruneRun(
                (*results, *stop.run.results),
                dry_run,
                interrupted=True,
                left=tuple(names[index + 1 :]),
                warnings=selected.warnings,
            )
            raise RunInterrupted(done) from None
        results.extend(one.results)
        result = one.results[-1] if one.results else None
        if result is None:
            continue
        if result.exit_code is ExitCode.ABORTED:
            left = names[index + 1 :]
            break
        if result.exit_code is ExitCode.RATE_LIMITED or isinstance(result.error, RateLimited):
            stopped = f"stopped in {package.image}: its registry's rate limit ran out"
            left = names[index:]
            break
        if result.exit_code is ExitCode.OK and not dry_run:
            state.mark(package.image, clock())
    return PruneRun(
        tuple(results),
        dry_run,
        left=tuple(left),
        stopped=stopped,
        warnings=selected.warnings,
    )


def lists_packages(
    images: Sequence[str], excludes: Sequence[str] = (), state: Path | PruneState | None = None
) -> bool:
    """Whether a prune of ``images`` is a run of many packages (:func:`prune_packages`):
    a pattern, an exclusion or a state file; else the images are pruned as given."""
    return bool(excludes) or state is not None or any(is_glob(i) for i in images)


def prune_targets(
    images: Sequence[str],
    policy: Policy,
    *,
    options: BackendOptions,
    client: httpx.Client,
    clock: Callable[[], datetime],
    excludes: Sequence[str] = (),
    state: PruneState | None = None,
    guard: RollbackGuard | None = None,
    dry_run: bool = False,
    listener: PruneListener | None = None,
) -> PruneRun:
    """What ``tagkeeper prune`` runs: :func:`prune_packages` when
    :func:`lists_packages` says so, else
    :func:`~tagkeeper.retention.runner.prune_images` in the order given."""
    if lists_packages(images, excludes, state):
        return prune_packages(
            images,
            policy,
            options=options,
            client=client,
            clock=clock,
            excludes=excludes,
            state=state,
            guard=guard,
            dry_run=dry_run,
            listener=listener,
        )
    return prune_images(
        images,
        policy,
        options=options,
        client=client,
        clock=clock,
        guard=guard,
        dry_run=dry_run,
        listener=listener,
    )
