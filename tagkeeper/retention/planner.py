"""Retention planning: which images of a repository to keep, which to delete, and why.

Retention is decided per image (per manifest digest), never per tag, by mark and sweep
as a registry garbage collector does it:

1. Roots: the newest N images of each channel (``dev-<hex>`` and ``pr-<n>`` by push
   time, releases and prereleases by SemVer precedence, each counted apart), tags that
   match no channel (unless the policy deletes them), tags matching a protect pattern,
   protected digests and tags (deployed, rollback targets, in use), and everything
   younger than the grace period.
2. Mark: everything a root reaches: the children of an index (recursively), the OCI 1.1
   referrers of a marked manifest, and the versions carrying a cosign
   ``sha256-<hex>.sig|.att|.sbom`` tag (or a bare ``sha256-<hex>`` referrers index)
   whose subject is marked. Manifests are read only for marked versions, each at most
   once per run.
3. Sweep: a tagged version that is not marked is deleted; an untagged one is garbage.
4. Fail closed: when a manifest that decides reachability cannot be read, nothing it
   could reach is deleted, and the plan says so.

This module is pure: it reads manifests only through the :class:`ManifestReader` it is
given, takes the clock as ``now``, and returns a :class:`Plan` value
(:mod:`tagkeeper.retention.decisions`, which also keeps the delete order). It is one
algorithm in its phases (scan the tags, rank each channel, mark from the roots, sweep),
kept in one module on purpose: the phases share the tables the scan builds.
"""

from __future__ import annotations

import fnmatch
import re
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tagkeeper.channels import DEV_TAG_RE, PR_TAG_RE
from tagkeeper.inventory import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    ManifestMissing,
    ManifestReader,
    ManifestUnreadable,
    Version,
)
from tagkeeper.retention.collector import collector_paused
from tagkeeper.retention.decisions import (
    Decision,
    Plan,
    make_decision,
    make_decisions,
    newest_first,
    newest_first_versions,
)
from tagkeeper.retention.policy import (
    REFERRER_KIND,
    REFERRER_TAG_RE,
    Channel,
    Policy,
    classify,
    format_duration,
    referrer_subject,
    semver_of,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tagkeeper.versioning import TagVersion

__all__ = [
    "Channel",
    "Decision",
    "Plan",
    "Policy",
    "classify",
    "format_duration",
    "plan",
    "referrer_subject",
]


# image manifests cannot list other manifests: no need to read them to mark children
_PLAIN_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
# a protected key that names a digest (OCI digest grammar), not a tag
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
# every tagged version is older than this: what an unlisted unreadable digest may reach
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- helpers


def _short(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest[:19]


def _first_tag(v: Version) -> str | None:
    return min(v.tags) if v.tags else None


def _tag_list(tags: Sequence[str], limit: int = 3) -> str:
    if len(tags) <= limit:
        return ", ".join(tags)
    return ", ".join(tags[:limit]) + f" (+{len(tags) - limit} more)"


def _merge(versions: Sequence[Version]) -> tuple[dict[str, Version], list[str]]:
    """Versions by digest. The same digest listed twice (it should not happen) is
    merged deterministically: union of tags, earliest time, smallest key."""
    by_digest = {v.digest: v for v in versions}
    if len(by_digest) == len(versions):
        return by_digest, []
    by_digest = {}
    dupes: dict[str, list[Version]] = {}
    for v in versions:
        seen = by_digest.get(v.digest)
        if seen is None:
            by_digest[v.digest] = v
        else:
            dupes.setdefault(v.digest, [seen]).append(v)
    warnings = []
    for digest, group in dupes.items():
        keys = sorted(v.key for v in group if v.key is not None)
        types = sorted(v.media_type for v in group if v.media_type is not None)
        by_digest[digest] = Version(
            digest=digest,
            tags=frozenset().union(*(v.tags for v in group)),
            created=min(v.created for v in group),
            key=keys[0] if keys else None,
            media_type=types[0] if types else None,
        )
        warnings.append(f"{_short(digest)} is listed {len(group)} times; treated as one image")
    return by_digest, warnings


_CHANNEL_NAMES = {
    Channel.DEV: "dev images",
    Channel.PR: "pr images",
    Channel.RELEASE: "releases",
    Channel.PRERELEASE: "prereleases",
}
# which rule names a kept version when several apply (lower first)
_KEEP_PRIORITY = {
    "protected": 0,
    "protect-pattern": 1,
    "protect-regex": 1,
    "newest-release": 2,
    "newest-prerelease": 3,
    "newest-dev": 4,
    "newest-pr": 5,
    "unmatched-tag": 6,
    "grace-period": 7,
    "older-than": 8,
}
_DELETE_PRIORITY = {
    "old-release": 0,
    "old-prerelease": 1,
    "old-dev": 2,
    "old-pr": 3,
    "unmatched-delete": 4,
    "orphan-referrer": 5,
}


Why = tuple[int, str, str, str | None]  # (priority, rule, reason, tag that keeps it)


def _best(why: list[Why]) -> Why:
    return min(why, key=lambda w: (w[0], w[1], w[2]))


class _Planner:
    """One planning run: tables built from the tags, then mark and sweep."""

    def __init__(
        self,
        versions: Sequence[Version],
        policy: Policy,
        now: datetime,
        reader: ManifestReader,
        protected: Mapping[str, str],
    ) -> None:
        self.policy = policy
        self.scheme = policy.version_scheme
        self.now = now
        self.reader = reader
        self.protected = protected
        self.by_digest, self.warnings = _merge(versions)
        # tagged and untagged versions, each newest first, ties by digest: the order of
        # every list below (split first: each version is visited in listing order once)
        everything = self.by_digest.values()
        self.tagged = newest_first_versions([v for v in everything if v.tags])
        self.untagged = newest_first_versions([v for v in everything if not v.tags])
        self.keep_n = {channel: policy.keep_of(channel) for channel in Channel}
        self.reads = 0
        self.referrer_calls = 0
        # best tag per channel per digest (dev/pr: the smallest tag; SemVer: the highest)
        self.dev: dict[str, str] = {}
        self.pr: dict[str, str] = {}
        self.rel: dict[str, tuple[TagVersion, str]] = {}
        self.pre: dict[str, tuple[TagVersion, str]] = {}
        self.unmatched: dict[str, list[str]] = {}
        # subject digest -> digests of versions carrying a referrer tag for it
        self.ref_tagged: dict[str, list[str]] = {}
        self.ref_subjects: dict[str, list[tuple[str, str]]] = {}  # digest -> [(tag, subject)]
        self.roots: dict[str, list[Why]] = {}
        self.ranks: dict[Channel, dict[str, tuple[int, str]]] = {}
        # digest -> [(priority, rule, reason)] for each channel it fell out of
        self.fell: dict[str, list[tuple[int, str, str]]] = {}
        # marked digest -> (relation, parent digest, root label); roots map to None
        self.marked: dict[str, tuple[str, str, str] | None] = {}
        self.labels: dict[str, str] = {}  # visited digest -> label of the root it came from
        # digests the listing does not show, walked from a protected digest: -> why
        # (the protected reason, or the unlisted parent that lists it)
        self.unlisted: dict[str, str] = {}
        self.surprising: set[str] = set()  # of those, the ones a listed version lists
        # untagged versions kept without being marked (``--untagged keep``, failing
        # closed) whose reach was walked: what they reach is kept too
        self.shielded: set[str] = set()
        self.unreadable_manifest: set[str] = set()
        self.unreadable_referrers: set[str] = set()
        self.unreadable_shielded: set[str] = set()

    def run(self) -> Plan:
        self._scan()
        self._rank()
        self._mark()
        return self._sweep()

    # ---------------------------------------------------------------- roots

    def _scan_tag(self, digest: str, tag: str) -> None:
        if DEV_TAG_RE.fullmatch(tag):
            if digest not in self.dev or tag < self.dev[digest]:
                self.dev[digest] = tag
            return
        if PR_TAG_RE.fullmatch(tag):
            if digest not in self.pr or tag < self.pr[digest]:
                self.pr[digest] = tag
            return
        subject = referrer_subject(tag)
        if subject is not None:
            self.ref_tagged.setdefault(subject, []).append(digest)
            self.ref_subjects.setdefault(digest, []).append((tag, subject))
            return
        sv = semver_of(tag, self.scheme)
        if sv is None:
            self.unmatched.setdefault(digest, []).append(tag)
            return
        table = self.pre if sv.is_prerelease else self.rel
        best = table.get(digest)
        if best is None or (sv.precedence_key(), best[1]) > (best[0].precedence_key(), tag):
            table[digest] = (sv, tag)

    def _scan(self) -> None:
        """Channel tables, referrer tags, and the roots that do not depend on ranks."""
        policy = self.policy
        cutoff = self.now - policy.min_age
        grace = format_duration(policy.min_age)
        protect_re = (
            re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in policy.protect))
            if policy.protect
            else None
        )
        # each regex apart: an alternation of them would renumber their groups
        regexes = [(r, re.compile(r)) for r in policy.protect_regex]
        protected = self.protected
        roots = self.roots
        scan_tag = self._scan_tag
        for v in self.tagged:
            digest = v.digest
            for tag in v.tags:
                scan_tag(digest, tag)
                if protect_re is not None and protect_re.fullmatch(tag):
                    pattern = next(p for p in policy.protect if fnmatch.fnmatchcase(tag, p))
                    text = f"tag {tag} matches protect pattern {pattern!r}"
                    roots.setdefault(digest, []).append((1, "protect-pattern", text, tag))
                for text_re, compiled in regexes:
                    if compiled.fullmatch(tag):
                        text = f"tag {tag} fully matches protect regex {text_re!r}"
                        roots.setdefault(digest, []).append((1, "protect-regex", text, tag))
                        break
                if tag in protected:
                    text = f"protected: {protected[tag]} ({tag})"
                    roots.setdefault(digest, []).append((0, "protected", text, tag))
        for key, why in protected.items():
            if key in self.by_digest:
                roots.setdefault(key, []).append((0, "protected", f"protected: {why}", None))
        for group in (self.tagged, self.untagged):
            for v in group:  # newest first: the young ones are a prefix
                if v.created <= cutoff:
                    break
                age = format_duration(self.now - v.created)
                text = f"younger than the grace period of {grace} (pushed {age} ago)"
                roots.setdefault(v.digest, []).append((7, "grace-period", text, None))
        older_than = policy.older_than
        if older_than:  # the second condition: only what is older is deleted
            young = self.now - older_than
            span = format_duration(older_than)
            for group in (self.tagged, self.untagged):
                for v in group:
                    if v.created < young:  # older than older_than: deletable by age
                        break
                    age = format_duration(self.now - v.created)
                    text = f"not older than --older-than {span} (pushed {age} ago)"
                    roots.setdefault(v.digest, []).append((8, "older-than", text, None))
        for digests in self.ref_tagged.values():
            digests.sort()

    def _rank(self) -> None:
        """Rank each channel (count images, not tags) and root the newest N."""
        # the tables were filled newest first (ties by digest): dev and pr are ranked
        ranked: list[tuple[Channel, list[tuple[str, str]]]] = [
            (Channel.DEV, list(self.dev.items())),
            (Channel.PR, list(self.pr.items())),
        ]
        for channel, table in ((Channel.RELEASE, self.rel), (Channel.PRERELEASE, self.pre)):
            # by precedence; equal precedence (v1.2.3 and 1.2.3): newest, then digest
            order = list(table)
            order.sort(key=lambda d: table[d][0].precedence_key(), reverse=True)  # stable
            ranked.append((channel, [(d, table[d][1]) for d in order]))

        roots = self.roots
        fell = self.fell
        for channel, entries in ranked:
            n = self.keep_n[channel]
            self.ranks[channel] = {d: (i + 1, tag) for i, (d, tag) in enumerate(entries)}
            rule = f"newest-{channel.value}"
            prio = _KEEP_PRIORITY[rule]
            for rank, (digest, tag) in enumerate(entries[:n], start=1):
                roots.setdefault(digest, []).append(
                    (prio, rule, f"newest {n} of {channel.value} (#{rank}: {tag})", tag)
                )
            old_rule = f"old-{channel.value}"
            old_prio = _DELETE_PRIORITY[old_rule]
            where = "older than" if channel in (Channel.DEV, Channel.PR) else "below"
            prefix = f"{where} the newest {n} {_CHANNEL_NAMES[channel]}"
            for rank, (digest, tag) in enumerate(entries[n:], start=n + 1):
                entry = (old_prio, old_rule, f"{prefix} (#{rank}: {tag})")
                parts = fell.get(digest)
                if parts is None:
                    fell[digest] = [entry]
                else:
                    parts.append(entry)
        if self.policy.unmatched == "keep":
            for digest, tags in self.unmatched.items():
                tags.sort()
                verb = "matches" if len(tags) == 1 else "match"
                roots.setdefault(digest, []).append(
                    (
                        6,
                        "unmatched-tag",
                        f"{_tag_list(tags)} {verb} no retention channel (unmatched tags are kept)",
                        tags[0],
                    )
                )

    def _aged(self, v: Version) -> str:
        """With ``older_than``: that the version is older, for a delete's reason."""
        older_than = self.policy.older_than
        if not older_than:
            return ""
        age = format_duration(self.now - v.created)
        return f"; older than {format_duration(older_than)} (pushed {age} ago)"

    def _kept_by_own_rule(self, tag: str, digest: str) -> bool:
        """Whether ``tag`` alone would keep its image (for 'shares its digest')."""
        channel = classify(tag, self.scheme)
        if channel is not None:
            entry = self.ranks[channel].get(digest)
            if entry is not None and entry[0] <= self.keep_n[channel]:
                return True
        elif self.policy.unmatched == "keep":
            return True
        if tag in self.protected:
            return True
        return self.policy.protects(tag)

    # ----------------------------------------------------------------- mark

    def _edges(self, digest: str, label: str) -> list[tuple[str, str]]:
        """What ``digest`` reaches: children, OCI referrers, referrer-tagged versions.

        Reads the manifest (unless the listing says it is a plain image manifest, which
        cannot list other manifests) and asks for referrers; records what fails. A
        digest the listing does not show that the registry says is missing reaches
        nothing (a warning); any other failure fails closed, listed or not.

        A shielded version (untagged, kept anyway) is asked only for its children: its
        untagged referrers are kept with it, and so are its cosign-tagged ones (see
        :meth:`_sweep_referrers`). When its manifest cannot be read, only the tagged
        versions pushed at or before it are kept for it (see :meth:`_threshold`)."""
        edges: list[tuple[str, str]] = []
        v = self.by_digest.get(digest)
        shielded = digest in self.shielded
        if v is None or v.media_type not in _PLAIN_MANIFESTS:
            self.reads += 1
            try:
                info = self.reader.manifest(digest)
            except ManifestMissing as exc:
                if v is not None:  # listed, yet missing: the listing and the registry disagree
                    self._unreadable(digest, label, exc, shielded=shielded)
                else:
                    self._missing(digest)
                    return edges
            except ManifestUnreadable as exc:
                self._unreadable(digest, label, exc, shielded=shielded)
            else:
                edges.extend(("child", c) for c in info.children)
                if digest in self.surprising:
                    self.warnings.append(
                        f"{self.unlisted[digest]}, which the listing does not show; "
                        "what it lists is kept"
                    )
        if shielded:
            return edges
        self.referrer_calls += 1
        try:
            referrers = self.reader.referrers(digest)
        except ManifestUnreadable as exc:
            self.unreadable_referrers.add(digest)
            self.warnings.append(
                f"referrers of {_short(digest)} ({label}) could not be read: {exc.reason}; "
                "no untagged image or signature is deleted"
            )
        else:
            edges.extend(("referrer", r) for r in referrers)
        edges.extend(("signature", r) for r in self.ref_tagged.get(digest, ()))
        return edges

    def _unreadable(
        self, digest: str, label: str, exc: ManifestUnreadable, *, shielded: bool = False
    ) -> None:
        (self.unreadable_shielded if shielded else self.unreadable_manifest).add(digest)
        self.warnings.append(
            f"manifest {_short(digest)} ({label}) could not be read: {exc.reason}; "
            "kept, and nothing it could reach is deleted"
        )

    def _missing(self, digest: str) -> None:
        """An unlisted digest the registry does not have: nothing to keep for it."""
        why = self.unlisted[digest]
        if digest in self.protected:
            self.warnings.append(
                f"protected {_short(digest)} ({why}) is not in the repository; "
                "nothing is kept for it"
            )
        else:
            self.warnings.append(f"{why}, which is not in the repository")

    def _mark(self) -> None:
        """Breadth-first from the roots (newest first, then by digest): deterministic.

        Then from the protected digests the listing does not show, walking their
        unlisted descendants too (an OCI registry lists no untagged manifest: a rollback
        target pinned by digest whose tag was re-pushed is one). Then, when untagged
        versions are kept without being marked (``--untagged keep``, or failing closed)
        and a tagged version would be deleted, from those untagged versions that could
        list it: whatever the plan keeps is kept with everything it reaches.
        """
        by_digest = self.by_digest
        labels = self.labels
        order = sorted(self.roots)
        order.sort(key=lambda d: by_digest[d].created, reverse=True)
        queue: deque[str] = deque()
        for digest in order:
            self.marked[digest] = None
            labels[digest] = (
                _best(self.roots[digest])[3] or _first_tag(by_digest[digest]) or _short(digest)
            )
            queue.append(digest)
        for key in sorted(self.protected):
            if key not in by_digest and _DIGEST_RE.fullmatch(key):
                self.unlisted[key] = labels[key] = self.protected[key]
                queue.append(key)
        self._walk(queue)
        for digest in self._shield_candidates():
            self.shielded.add(digest)
            labels[digest] = "untagged, kept"
            queue.append(digest)
        self._walk(queue)

    def _walk(self, queue: deque[str]) -> None:
        by_digest = self.by_digest
        marked = self.marked
        labels = self.labels
        unlisted = self.unlisted
        warned: set[str] = set()
        while queue:
            digest = queue.popleft()
            label = labels[digest]
            for relation, target in self._edges(digest, label):
                if target in marked or target in unlisted or target in self.shielded:
                    continue
                if target in by_digest:
                    marked[target] = (relation, digest, label)
                    labels[target] = label
                    queue.append(target)
                elif relation == "child":
                    # a manifest the listing does not show: read on (a nested index may
                    # list versions the listing shows). Below an unlisted protected
                    # digest that is expected (OCI lists no untagged manifest); below a
                    # listed version it is worth a warning (see _edges)
                    if digest in by_digest:
                        self.surprising.add(target)
                        what = f"kept image {_short(digest)}"
                    else:
                        what = _short(digest)
                    unlisted[target] = f"{what} ({label}) references {_short(target)} (child)"
                    labels[target] = label
                    queue.append(target)
                elif target not in warned:
                    # not a version of this repository: nothing to delete, but say so
                    warned.add(target)
                    self.warnings.append(
                        f"kept image {_short(digest)} ({label}) references "
                        f"{_short(target)} ({relation}), which is not in the repository"
                    )

    def _shield_candidates(self) -> list[str]:
        """Untagged versions kept without being marked whose reach must be walked.

        Only when something tagged would be deleted, and only the untagged versions that
        could list it: a registry accepts an index only once the manifests it lists are
        there, so where the backend knows the push order (GHCR's version ids) an
        untagged version pushed before every tagged delete cannot list any of them.
        Newest first, so that an index is read before the plain images it lists.
        """
        fail_closed = bool(self.unreadable_manifest or self.unreadable_referrers)
        if self.policy.untagged != "keep" and not fail_closed:
            return []
        threshold = self._threshold()
        at_risk = [
            v
            for v in self.tagged
            if v.digest not in self.marked
            and v.digest not in self.ref_subjects
            and (threshold is None or v.created > threshold)
        ]
        if not at_risk:
            return []
        sequences = [v.sequence for v in at_risk]
        oldest = None if None in sequences else min(s for s in sequences if s is not None)
        return [
            v.digest
            for v in self.untagged
            if v.digest not in self.marked
            and not (oldest is not None and v.sequence is not None and v.sequence < oldest)
        ]

    def _threshold(self) -> datetime | None:
        """The push time at or before which a tagged version could be the child of an
        unreadable manifest (see :meth:`_fail_closed`); ``None`` when none is unreadable."""
        times = []
        for digest in self.unreadable_manifest | self.unreadable_shielded:
            v = self.by_digest.get(digest)
            if v is None:  # unlisted: its push time is unknown, so any version could be
                return _END_OF_TIME
            times.append(v.created)
        return max(times, default=None)

    # ---------------------------------------------------------------- sweep

    def _fail_closed(self) -> tuple[list[str], datetime | None, str]:
        """Unreadable digests, the push time at or before which a tagged version could
        be the child of one of them, and the reason for what that keeps."""
        # Fail closed. A manifest that could not be read may list any untagged version as
        # a child and may have any untagged or cosign-tagged referrer: keep all of those.
        # A version with a channel (or unmatched) tag is an image a build pushed; it can
        # be the child of an unreadable index only if it was pushed no later than that
        # index, because a registry accepts an index only when the manifests it lists are
        # already there (e.g. ``imagetools create -t v1.2.3 dev-abc`` over a single-arch
        # image). So tagged versions pushed at or before the newest unreadable index are
        # kept too; newer ones cannot be its children and follow their own rules.
        # Referrers are pushed after their subject and are untagged or carry
        # ``sha256-...`` tags (cosign, referrers tag schema), all kept here; an artifact
        # that carries a channel tag of its own is treated as an image of its own.
        # An unreadable digest the listing does not show has no known push time: every
        # tagged version is kept. Untagged versions kept here are walked like roots
        # (see _shield_candidates): what they reach is kept as well.
        unreadable = sorted(
            self.unreadable_manifest | self.unreadable_referrers | self.unreadable_shielded
        )
        threshold = self._threshold()
        unreadable_reason = ""
        if unreadable:
            more = f" and {len(unreadable) - 1} more" if len(unreadable) > 1 else ""
            unreadable_reason = f"could be reached from unreadable {_short(unreadable[0])}{more}"
        return unreadable, threshold, unreadable_reason

    def _sweep(self) -> Plan:
        marked = self.marked
        unreadable, threshold, unreadable_reason = self._fail_closed()
        # an unreadable shielded version keeps only the tagged versions it could list
        fail_closed = bool(self.unreadable_manifest or self.unreadable_referrers)
        kept: list[Decision] = [self._kept(self.by_digest[d]) for d in marked]
        kept_set: set[str] = set(marked)
        tagged_delete: list[Decision] = []
        pending: list[Version] = []  # referrer tags: decided once the rest is known
        ref_subjects = self.ref_subjects
        decide = make_decision
        # the bulk of a large package: untagged versions, decided in one pass each way
        if fail_closed or self.policy.untagged == "keep":
            rule, reason = (
                ("unreadable", unreadable_reason)
                if fail_closed
                else ("untagged-keep", "untagged and unreachable; untagged images are kept")
            )
            extra = [decide(v, True, rule, reason) for v in self.untagged if v.digest not in marked]
            kept += extra
            kept_set.update(d.version.digest for d in extra)
            untagged_delete: list[Decision] = []
        else:
            garbage = "untagged and unreachable from any kept image"
            untagged_delete = make_decisions(
                [v for v in self.untagged if v.digest not in marked], False, "garbage", garbage
            )
        for v in self.tagged:
            digest = v.digest
            if digest in marked:
                continue
            if digest in ref_subjects:
                if fail_closed:
                    kept.append(decide(v, True, "unreadable", unreadable_reason))
                    kept_set.add(digest)
                else:
                    pending.append(v)
            elif threshold is not None and v.created <= threshold:
                kept.append(decide(v, True, "unreadable", unreadable_reason))
                kept_set.add(digest)
            else:
                rule, reason = self._fell_out(v, kept_set=None)
                tagged_delete.append(decide(v, False, rule, reason))

        referrer_delete = self._sweep_referrers(pending, kept, kept_set)
        kept = newest_first(kept)  # the delete lists were filled newest first
        delete = self._order_referrers(referrer_delete) + tagged_delete + untagged_delete
        return Plan(
            decisions=(*kept, *delete),
            warnings=tuple(sorted(set(self.warnings))),
            unreadable=tuple(unreadable),
            stats={"manifest_reads": self.reads, "referrer_calls": self.referrer_calls},
        )

    def _sweep_referrers(
        self, pending: list[Version], kept: list[Decision], kept_set: set[str]
    ) -> list[Decision]:
        """Referrer tags of a subject that is kept only because untagged images are kept
        (never marked) stay with it; the others go as orphans."""
        changed = True
        while changed:  # a signature of a signature resolves on the next round
            changed = False
            for v in pending:
                if v.digest in kept_set:
                    continue
                subjects = self.ref_subjects[v.digest]
                if not any(s in kept_set for _t, s in subjects):
                    continue
                subject = next((s for _t, s in sorted(subjects) if s in kept_set), None)
                if subject is not None:
                    reason = f"referrer tag of kept {_short(subject)}"
                    kept.append(make_decision(v, True, "reachable", reason))
                    kept_set.add(v.digest)
                    changed = True
        out = []
        for v in pending:
            if v.digest not in kept_set:
                rule, reason = self._fell_out(v, kept_set=kept_set)
                out.append(make_decision(v, False, rule, reason))
        return out

    def _kept(self, v: Version) -> Decision:
        why = self.roots.get(v.digest)
        if why:
            _prio, rule, reason, _tag = _best(why)
        else:
            edge = self.marked[v.digest]
            assert edge is not None  # noqa: S101 - a marked non-root has a parent
            relation, parent, label = edge
            rule = "reachable"
            what = {"child": "child", "referrer": "referrer", "signature": "referrer tag"}
            reason = f"{what[relation]} of {_short(parent)} ({label})"
        if why and _best(why)[3] is not None:  # kept by a tag: name the tags that ride along
            shared = sorted(
                t
                for t in v.tags
                if referrer_subject(t) is None and not self._kept_by_own_rule(t, v.digest)
            )
            if shared:
                verb = "shares" if len(shared) == 1 else "share"
                reason += f"; {_tag_list(shared)} {verb} its digest"
        return make_decision(v, True, rule, reason)

    def _fell_out(self, v: Version, *, kept_set: set[str] | None) -> tuple[str, str]:
        """The rule and reason a tagged, unmarked version is deleted by."""
        parts = self.fell.get(v.digest)
        tags = self.unmatched.get(v.digest)
        if parts is not None and len(parts) == 1 and not tags:
            return parts[0][1], parts[0][2] + self._aged(v)  # the common case
        parts = list(parts or ())
        if tags and self.policy.unmatched == "delete":
            verb = "matches" if len(tags) == 1 else "match"
            text = (
                f"{_tag_list(sorted(tags))} {verb} no retention channel "
                "(unmatched tags are deleted)"
            )
            parts.append((4, "unmatched-delete", text))
        for tag, subject in sorted(self.ref_subjects.get(v.digest, ())):
            match = REFERRER_TAG_RE.fullmatch(tag)
            kind = REFERRER_KIND[match.group(3) if match else None]
            if subject not in self.by_digest:
                text = f"{kind} of {_short(subject)}, which is not in the repository"
            elif kept_set is not None and subject not in kept_set:
                text = f"{kind} of deleted {_short(subject)}"
            else:
                text = f"{kind} of {_short(subject)}, which is not kept"
            parts.append((5, "orphan-referrer", text))
        parts.sort()
        return parts[0][1], "; ".join(p[2] for p in parts) + self._aged(v)

    def _order_referrers(self, decisions: list[Decision]) -> list[Decision]:
        """Referrer-tagged deletes, newest first, a referrer before its subject."""
        in_group = {d.version.digest for d in decisions}
        depth: dict[str, int] = {}

        def depth_of(digest: str, seen: frozenset[str]) -> int:
            if digest not in depth:
                below = [
                    s
                    for _t, s in self.ref_subjects.get(digest, ())
                    if s in in_group and s not in seen
                ]
                depth[digest] = 1 + max((depth_of(s, seen | {digest}) for s in below), default=-1)
            return depth[digest]

        ref_subjects = self.ref_subjects
        if not any(s in in_group for d in decisions for _t, s in ref_subjects[d.version.digest]):
            return decisions  # no signature of a signature: newest first as they are
        ordered = decisions  # already newest first
        ordered.sort(key=lambda d: depth_of(d.version.digest, frozenset()), reverse=True)
        return ordered


def plan(
    versions: Sequence[Version],
    policy: Policy,
    *,
    now: datetime,
    reader: ManifestReader,
    protected: Mapping[str, str] | None = None,
) -> Plan:
    """Decide, for every version, keep or delete, and why.

    ``protected`` maps digests or tags to a reason (``"deployed to prod"``); those images
    and everything they reach are kept. ``now`` must be timezone-aware. The plan is the
    same whatever order ``versions`` come in. ``reader`` is asked only about kept
    images and what they reach, each digest at most once.

    The deletes come in a safe order: referrer tags before their subjects, then tagged
    versions, then untagged ones, each newest first and, at equal push times, known
    indexes before the rest (see
    :func:`~tagkeeper.retention.decisions.newest_first_versions` for what the order
    cannot know). Python's cyclic garbage collector is paused while planning and
    restored afterwards (see :func:`~tagkeeper.retention.collector.collector_paused`).
    """
    if now.tzinfo is None:
        raise ValueError("plan(now=...) must be timezone-aware")
    with collector_paused():
        return _Planner(versions, policy, now, reader, protected or {}).run()
