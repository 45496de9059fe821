"""Properties of the planner on random packages (hypothesis).

The random packages follow what registries guarantee: an index is pushed after the
manifests it lists (a registry refuses an index whose children are missing), a referrer
after its subject; OCI referrers are untagged and cosign signatures carry only their
``sha256-<hex>.<kind>`` tag. Everything else is random: DAGs of (nested) indexes, shared
children, children missing from the listing, tags from every channel, push times with
ties, media types hidden as GHCR's listing hides them, images and indexes the listing
does not show (an OCI registry lists no untagged manifest), unreadable manifests and
referrers, policies and protected references (tags, listed digests, unlisted digests).
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tagkeeper.errors import AuthError, RegistryError
from tagkeeper.inventory import DeleteStatus, Version
from tagkeeper.retention.executor import apply_plan, replanner
from tagkeeper.retention.planner import Plan, Policy, plan
from tests.unit.fakes import FakeRegistry, at, digest_of, sig_tag

SETTINGS = settings(max_examples=200, deadline=None)
KEEP_RULES = {
    "newest-dev",
    "newest-pr",
    "newest-release",
    "newest-prerelease",
    "protect-pattern",
    "protected",
    "grace-period",
    "reachable",
    "unmatched-tag",
    "unreadable",
    "untagged-keep",
}
DELETE_RULES = {
    "old-dev",
    "old-pr",
    "old-release",
    "old-prerelease",
    "unmatched-delete",
    "orphan-referrer",
    "garbage",
}

# one pool, drawn with a single choice each: generation stays cheap
TAG_POOL = (
    [f"dev-{k:07x}" for k in range(40)] * 2
    + [f"pr-{k}" for k in range(1, 16)]
    + [
        f"{v}{a}.{b}.{c}"
        for v in ("v", "")
        for a in range(3)
        for b in (0, 1, 2, 9, 10)
        for c in range(2)
    ]
    + [
        f"v1.{a}.0-{pre}"
        for a in range(3)
        for pre in ("rc.1", "rc.2", "rc.10", "alpha", "beta.2", "1", "2")
    ]
    + ["v1.2.3_build.5", "latest", "nightly", "1.2", "dev-latest", "stable"]
)
TAG = st.sampled_from(TAG_POOL)
PATTERNS = ["v1.*", "pr-1*", "latest", "dev-000000[0-3]", "*-rc.*"]


@dataclass
class Case:
    reg: FakeRegistry
    policy: Policy
    now: datetime
    protected: dict[str, str]

    def plan(self, versions: list[Version] | None = None) -> Plan:
        return plan(
            self.reg.versions() if versions is None else versions,
            self.policy,
            now=self.now,
            reader=self.reg,
            protected=self.protected,
        )


KINDS = st.sampled_from(["image", "image", "index", "index", "referrer", "sig"])
UNLISTED = st.integers(0, 5)  # 0: the listing does not show this image or index
SIG_KINDS = st.sampled_from(["sig", "att", "sbom", ""])
TAGS = st.lists(TAG, max_size=3)
BOOL = st.booleans()
SMALL = st.integers(0, 3)


def pick(draw: st.DrawFn, items: list[str]) -> str:
    return items[draw(st.integers(0, len(items) - 1))]


@st.composite
def cases(draw: st.DrawFn, *, distinct_times: bool = False) -> Case:
    n = draw(st.integers(1, 20))
    minutes = st.lists(st.integers(0, 240), min_size=n, max_size=n, unique=distinct_times)
    times = sorted(draw(minutes))
    reg = FakeRegistry()
    used: set[str] = set()
    images: list[str] = []  # digests that are images or indexes (may be children)
    everything: list[str] = []
    indexes: list[str] = []
    unlisted: list[str] = []
    for i, minute in enumerate(times):
        name = f"m{i}"
        kind = draw(KINDS)
        hide = draw(BOOL)
        if kind in ("image", "index"):
            listed = draw(UNLISTED) > 0
            tags = [t for t in draw(TAGS) if t not in used] if listed else []
            used.update(tags)
            children: list[str] = []
            if kind == "index":
                # any subset of earlier images; a listed index lists only listed ones, as
                # registries show them (GHCR lists every version, an OCI registry every
                # manifest a tagged index reaches); an unlisted one lists any
                pool = images if not listed else [d for d in images if d not in unlisted]
                mask = draw(st.integers(0, 2 ** len(pool) - 1))
                children = [d for bit, d in enumerate(pool) if mask >> bit & 1]
                if draw(SMALL) == 0:
                    children.append(digest_of(f"missing{i}"))
            reg.add(
                name,
                tags=tags,
                created=minute,
                children=children,
                hide_media_type=hide,
                listed=listed,
            )
            images.append(digest_of(name))
            if not listed:
                unlisted.append(digest_of(name))
            if children:
                indexes.append(digest_of(name))
        elif kind == "referrer" and everything:
            reg.add(name, created=minute, subject=pick(draw, everything), hide_media_type=hide)
        else:
            known: int = draw(SMALL)  # 0 (1 in 4): the subject is not in the repository
            subject = pick(draw, everything) if everything and known else digest_of(f"no{i}")
            tag = sig_tag(subject, draw(SIG_KINDS))
            if tag in used:
                reg.add(name, created=minute, hide_media_type=hide)
            else:
                used.add(tag)
                reg.add(name, tags=[tag], created=minute, hide_media_type=hide)
        everything.append(digest_of(name))
    # unreadable manifests: mostly indexes, where it matters (their children are unknown)
    for _ in range(draw(SMALL) // 2):
        reg.unreadable[pick(draw, indexes or everything)] = "500 Internal Server Error"
    for idx in draw(st.sets(st.integers(0, n - 1), max_size=1)):
        reg.unreadable_referrers[everything[idx]] = "timeout"

    policy = Policy(
        keep_dev=draw(SMALL),
        keep_pr=draw(SMALL),
        keep_release=draw(SMALL),
        keep_prerelease=draw(SMALL),
        protect=tuple(draw(st.lists(st.sampled_from(PATTERNS), max_size=2, unique=True))),
        min_age=timedelta(minutes=draw(st.sampled_from([0, 30, 60, 120]))),
        untagged=draw(st.sampled_from(["keep", "delete"])),
        unmatched=draw(st.sampled_from(["keep", "delete"])),
    )
    now = at(max(times) + draw(st.integers(0, 200)))
    keys = sorted(used) + everything + [digest_of("deleted-long-ago")]
    protected = {pick(draw, keys): "deployed to prod" for _ in range(draw(SMALL))}
    return Case(reg, policy, now, protected)


def kept_digests(p: Plan) -> set[str]:
    return {d.version.digest for d in p.keep}


def unlisted_digests(case: Case) -> set[str]:
    """Digests the registry holds that the listing does not show."""
    listed = {v.digest for v in case.reg.versions()}
    return set(case.reg.manifests) - listed


def protected_digests(case: Case) -> list[str]:
    return [key for key in case.protected if key.startswith("sha256:")]


@SETTINGS
@given(cases())
def test_kept_images_stay_whole_and_protected_ones_stay(case: Case) -> None:
    # (three properties on one generated package: generating it is the costly part)
    p = case.plan()
    kept = kept_digests(p)
    # whatever the plan keeps, whatever the rule (newest-N, protected, grace period,
    # untagged-keep, unreadable...), is kept with everything it reaches; and so is every
    # protected digest, shown by the listing or not
    wanted = [d.version.digest for d in p.keep] + protected_digests(case)
    reached = case.reg.closure(wanted)
    assert reached <= kept, dict.fromkeys(reached - kept, p.decisions)
    assert set(p.unreadable) <= kept | unlisted_digests(case)
    # no digest is decided twice, and every version is decided
    assert Counter(d.version.digest for d in p.decisions) == Counter(
        v.digest for v in case.reg.versions()
    )
    assert all(d.rule in KEEP_RULES and d.reason for d in p.keep)
    assert all(d.rule in DELETE_RULES and d.reason for d in p.delete)
    assert_reads_only_kept_manifests_each_once(case, p)
    assert_nothing_protected_or_young_is_deleted(case, p)


def assert_reads_only_kept_manifests_each_once(case: Case, p: Plan) -> None:
    # of the listed versions, only kept ones are read (digests the listing does not
    # show are read where a kept or protected one reaches them: they cannot be deleted)
    listed = {v.digest for v in case.reg.versions()}
    kept = kept_digests(p)
    reads = Counter(case.reg.manifest_reads)
    assert all(count == 1 for count in reads.values())
    assert set(reads) & listed <= kept
    referrer_reads = Counter(case.reg.referrer_reads)
    assert all(count == 1 for count in referrer_reads.values())
    assert set(referrer_reads) & listed <= kept


def assert_nothing_protected_or_young_is_deleted(case: Case, p: Plan) -> None:
    cutoff = case.now - case.policy.min_age
    for d in p.delete:
        v = d.version
        assert v.digest not in case.protected
        assert not (v.tags & set(case.protected))
        assert not any(fnmatch.fnmatchcase(t, pat) for t in v.tags for pat in case.policy.protect)
        assert v.created <= cutoff


@SETTINGS
@given(cases(), st.randoms(use_true_random=False))
def test_plan_is_independent_of_input_order(case: Case, rnd: object) -> None:
    versions = list(case.reg.versions())
    first = case.plan(versions)
    shuffled = versions[:]
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert case.plan(shuffled) == first
    assert case.plan(list(reversed(versions))).to_json() == first.to_json()


@SETTINGS
@given(cases())
def test_apply_then_replan_deletes_nothing_more(case: Case) -> None:
    p = case.plan()
    report = apply_plan(p, case.reg)
    assert report.complete
    assert report.deleted == len(p.delete)
    # every kept version is still there, with the tags the plan saw
    left = {v.digest: v for v in case.reg.versions()}
    for d in p.keep:
        assert left[d.version.digest].tags == d.version.tags
    assert set(left) == kept_digests(p)
    # planning again on what is left, at the same time, deletes nothing more
    again = case.plan()
    assert again.delete == ()
    assert kept_digests(again) == kept_digests(p)
    # and applying the same plan twice changes nothing the second time
    second = apply_plan(p, case.reg)
    assert all(r.status is DeleteStatus.ALREADY_GONE for r in second.results)
    assert case.reg.versions() == list(left.values())


# -- applying with faults ----------------------------------------------------------------
#
# The registry refuses, fails or sees re-tagged some deletes at random, and sometimes an
# error (network, auth) ends the run midway. Push times are distinct here: at equal
# times the delete order can put a platform image before its index only when nothing
# says which is the index (GHCR hides media types, nested indexes); example tests in
# test_apply.py and test_retention.py cover equal times where the order is known.
# Re-tagging is limited to tagged versions: an untagged garbage index that someone tags
# midway may already have lost its children, which no order can prevent. CI may also push
# a new index midway that lists versions the plan deletes (buildx reuses unchanged
# platform manifests); the registry re-checks each delete against what was pushed since
# the listing, as the GHCR backend does, with the same ``listed_by`` rule. Reach here is
# what pulling needs (children, recursively) plus OCI 1.1 referrers; cosign ``.sig``
# tags are deleted before their subjects by design (an orphan signature is garbage the
# next run deletes), so a refused subject can lose its cosign signature.

FAULTS = st.sampled_from(["ok", "ok", "ok", "refuse", "fail", "change"])


def pull_reach(reg: FakeRegistry, digest: str) -> set[str]:
    """Listed versions ``digest`` needs: children (recursively) and OCI referrers."""
    seen: set[str] = set()
    todo = [digest]
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        info = reg.manifests.get(d)
        todo.extend(info.children if info else ())
        todo.extend(r for r, s in reg.subjects.items() if s == d)
    listed = {v.digest for v in reg.versions()}
    return (seen - {digest}) & listed


@settings(max_examples=150, deadline=None)
@given(cases(distinct_times=True), st.data())
def test_apply_with_faults_never_breaks_an_image_that_stays(
    case: Case, data: st.DataObject
) -> None:
    reg = case.reg
    versions = reg.versions()
    reader = reg.reader  # reads each digest once this run, as a backend's reader does
    p = plan(versions, case.policy, now=case.now, reader=reader, protected=case.protected)
    reach = {v.digest: pull_reach(reg, v.digest) for v in reg.versions()}
    reach.update((d, pull_reach(reg, d)) for d in protected_digests(case))
    retag: set[str] = set()
    for d in p.delete:
        fault = data.draw(FAULTS)
        if fault == "refuse":
            reg.refuse[d.version.digest] = "more than 5,000 downloads"
        elif fault == "fail":
            reg.fail[d.version.digest] = "502 after 5 attempts"
        elif fault == "change" and d.version.tags:
            retag.add(d.version.digest)

    pushes = data.draw(st.lists(st.integers(0, max(0, len(p.delete) - 1)), max_size=2))
    checks = iter(range(10_000))
    pushed: list[str] = []

    def push_meanwhile(version: Version) -> None:
        if version.digest in retag:
            retag.discard(version.digest)
            reg.push_tag(f"hotfix-{version.digest[7:15]}", version.digest)
        turn = next(checks)
        for _ in range(pushes.count(turn)):  # CI pushes an index over what exists now
            existing = {v.digest for v in reg.versions()}
            # mostly what the plan still has to delete: that is what a push can break
            doomed = [d.version.digest for d in p.delete[turn:] if d.version.digest in existing]
            pool = doomed or sorted(existing)
            kids = data.draw(st.lists(st.sampled_from(pool), unique=True, min_size=1, max_size=3))
            name = f"ci-push-{turn}-{len(pushed)}"
            reg.add(name, tags=[f"dev-{len(pushed):07x}ff"], created=case.now, children=kids)
            pushed.append(digest_of(name))
            reach[digest_of(name)] = pull_reach(reg, digest_of(name))

    reg.listed_at_plan = frozenset(v.digest for v in reg.versions())
    reg.before_check = push_meanwhile
    if p.delete and data.draw(st.integers(0, 3)) == 0:
        reg.error_after = data.draw(st.integers(0, len(p.delete)))
        reg.error = data.draw(
            st.sampled_from([RegistryError("connection reset"), AuthError("401 Unauthorized")])
        )
    report = apply_plan(
        p,
        reg,
        replan=replanner(case.policy, now=case.now, reader=reader, protected=case.protected),
    )

    left = {v.digest: v for v in reg.versions()}
    planned = {d.version.digest for d in p.delete}
    # only planned deletes happen, each at most once, and the report accounts for each
    assert set(reg.deleted) <= planned
    assert len(reg.deleted) == len(set(reg.deleted))
    accounted = [r.version.digest for r in report.results] + [v.digest for v in report.skipped]
    assert sorted(accounted) == sorted(planned)
    assert all(report.reasons.get(v.digest) for v in report.skipped)
    # every image that stays tagged, everything the plan kept and every protected digest
    # (listed or not) is whole
    whole = {digest for digest, v in left.items() if v.tags}
    whole |= {d.version.digest for d in p.keep} | set(protected_digests(case))
    assert set(pushed) <= set(left)  # what CI pushed meanwhile stays, and whole
    whole |= set(pushed)
    for digest in whole:
        assert reach[digest] <= set(left), (digest, reach[digest] - set(left))
    # an error midway is reported with its code; nothing after it was attempted
    if report.error_code is not None:
        assert report.stopped is not None
        assert int(report.exit_code) in (4, 5)
    else:
        assert report.exit_code == (0 if report.complete else 6)
