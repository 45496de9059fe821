"""Properties of rollback protection on random deploy histories (hypothesis).

Histories mix every way a deploy ends (succeeded, failed, never finished, rolled back),
rollbacks, tags pushed again with new digests, deploys recorded without a digest,
prereleases, moving tags and other environments. Whatever the history:

* what runs (the digest and tag of the last succeeded deploy) is protected;
* a failed or unfinished deploy only ever adds protection, wherever it lands;
* what ``previous`` answers under a setting is protected under that setting, and when
  the setting is not known (``allow_prerelease=None``) under both;

and, through the CLI with a real ledger and the fake registry, ``prune --env`` keeps
what ``previous`` prints, with or without ``--allow-prerelease``.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tagkeeper.registries.factory
from tagkeeper.cli import main
from tagkeeper.errors import NoRollbackTarget
from tagkeeper.rollback.ledger import Actor, Ledger, LedgerHistory
from tagkeeper.rollback.protection import rollback_protection
from tagkeeper.rollback.resolve import (
    DeployRecord,
    DeployStatus,
    current_deploy,
    previous_from_history,
    unsettled_deploys,
)
from tests.unit.fakes import FakeRegistry

if TYPE_CHECKING:
    from collections.abc import Sequence

REPO = "registry.test/acme/app"
T0 = datetime(2026, 5, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=300, deadline=None)
TAGS = [
    "v1.0.0",
    "v1.1.0",
    "v1.2.0",
    "1.3.0",
    "v2.0.0-rc.1",
    "v2.0.0-rc.2",
    "v2.0.0",
    "v1.2.0_build.7",
    "dev-abc1234",
    "latest",
    "v1",
]
STATUSES = list(DeployStatus)
ENVIRONMENTS = ["prod", "prod", "prod", "staging"]

# (tag, digest number or None, status, environment, rollback)
Entry = tuple[str, int | None, DeployStatus, str, bool]
ENTRY = st.tuples(
    st.sampled_from(TAGS),
    st.one_of(st.none(), st.integers(1, 6)),
    st.sampled_from(STATUSES),
    st.sampled_from(ENVIRONMENTS),
    st.booleans(),
)
HISTORY = st.lists(ENTRY, min_size=0, max_size=14)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def records_of(entries: Sequence[Entry]) -> list[DeployRecord]:
    """The entries (oldest first) as records, newest first as sources give them."""
    records = [
        DeployRecord(
            env,
            REPO,
            tag,
            status,
            T0 + timedelta(minutes=i),
            digest=None if d is None else digest(d),
            rollback=rollback,
            id=i + 1,
        )
        for i, (tag, d, status, env, rollback) in enumerate(entries)
    ]
    return list(reversed(records))


class Source:
    """A history source over fixed records (the ``HistorySource`` protocol)."""

    name = "ledger"

    def __init__(self, records: Sequence[DeployRecord]) -> None:
        self.records = list(records)

    def history(self, repository: str, environment: str) -> Sequence[DeployRecord]:
        return [r for r in self.records if r.environment == environment]

    def environments(self, repository: str) -> Sequence[str]:
        return sorted({r.environment for r in self.records})


def protect(records: Sequence[DeployRecord], allow: bool | None) -> dict[str, str]:
    return rollback_protection(REPO, ["prod"], [Source(records)], allow_prerelease=allow)


def prod(records: Sequence[DeployRecord]) -> list[DeployRecord]:
    return [r for r in records if r.environment == "prod"]


@SETTINGS
@given(HISTORY)
def test_what_runs_and_what_may_run_is_always_protected(entries: list[Entry]) -> None:
    records = records_of(entries)
    live = current_deploy(prod(records))
    for allow in (None, False, True):
        protected = protect(records, allow)
        if live is not None:
            assert live.tag in protected
            assert live.digest is None or live.digest in protected
            assert protected[live.tag].startswith("current in prod")
        for record in unsettled_deploys(prod(records)):
            assert record.status is not DeployStatus.SUCCEEDED
            assert record.tag in protected
            assert record.digest is None or record.digest in protected


@SETTINGS
@given(HISTORY, ENTRY, st.integers(0, 14), st.sampled_from([None, False, True]))
def test_a_failed_or_unfinished_deploy_only_ever_adds_protection(
    entries: list[Entry], extra: Entry, position: int, allow: bool | None
) -> None:
    tag, d, _, env, rollback = extra
    before = protect(records_of(entries), allow)
    for status in (DeployStatus.FAILED, DeployStatus.STARTED):
        grown = [*entries]
        grown.insert(min(position, len(grown)), (tag, d, status, env, rollback))
        after = protect(records_of(grown), allow)
        assert set(before) <= set(after), status


@SETTINGS
@given(HISTORY)
def test_what_previous_answers_is_protected_under_its_setting_and_when_unknown(
    entries: list[Entry],
) -> None:
    records = records_of(entries)
    both = protect(records, None)
    for allow in (False, True):
        try:
            target = previous_from_history(
                records, repository=REPO, environment="prod", allow_prerelease=allow
            )
        except NoRollbackTarget:
            continue
        for protected in (protect(records, allow), both):
            assert target.tag in protected
            assert target.digest is None or target.digest in protected
            assert "rollback target for prod" in protected[target.tag]


def test_the_unknown_setting_protects_exactly_both_settings() -> None:
    # one example spelled out; the property above covers the rest
    records = records_of(
        [
            ("v1.0.0", 1, DeployStatus.SUCCEEDED, "prod", False),
            ("v2.0.0-rc.1", 2, DeployStatus.SUCCEEDED, "prod", False),
            ("v2.0.0-rc.2", 3, DeployStatus.SUCCEEDED, "prod", False),
        ]
    )
    assert set(protect(records, None)) == set(protect(records, False)) | set(protect(records, True))


# -- the same, through the CLI: a real ledger, prune's plan, previous's answer -------------

CLI_SETTINGS = settings(max_examples=40, deadline=None)


def write_ledger(path: Path, entries: Sequence[Entry]) -> None:
    actor = Actor(user="ci", host="h")
    with Ledger(path) as ledger:
        for tag, d, status, env, rollback in entries:
            row = ledger.start(
                environment=env,
                repository=REPO,
                tag=tag,
                digest=None if d is None else digest(d),
                actor=actor,
                rollback=rollback,
            )
            assert row.id is not None
            if status in (DeployStatus.SUCCEEDED, DeployStatus.ROLLED_BACK):
                ledger.finish(row.id, DeployStatus.SUCCEEDED)
            if status is DeployStatus.FAILED:
                ledger.finish(row.id, DeployStatus.FAILED)
            if status is DeployStatus.ROLLED_BACK:
                ledger.mark_rolled_back(row.id)


def registry_after(entries: Sequence[Entry]) -> FakeRegistry:
    """The registry the deploys pulled from: each deploy's tag pushed at its digest (a
    deploy without a recorded digest took whatever its tag held, or a first push)."""
    reg = FakeRegistry(display=REPO)
    held: dict[str, str] = {}
    for minutes, (tag, d, *_) in enumerate(entries):
        at = digest(d) if d is not None else held.get(tag, digest(100 + TAGS.index(tag)))
        try:
            reg.version(at)
        except KeyError:
            reg.add(at, tags=[tag], created=minutes)
        else:
            reg.push_tag(tag, at)
        held[tag] = at
    return reg


def run(*argv: str) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue()


@CLI_SETTINGS
@given(HISTORY.filter(lambda es: any(e[3] == "prod" for e in es)))
def test_prune_env_keeps_what_previous_prints_for_each_setting(entries: list[Entry]) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        path = Path(tmp) / "ledger.db"
        write_ledger(path, entries)
        reg = registry_after(entries)
        patch.setattr(tagkeeper.registries.factory, "open_backend", lambda *a: reg)
        patch.chdir(tmp)
        patch.setenv("TAGKEEPER_LEDGER", str(path))
        for name in ("GITHUB_REPOSITORY", "GITHUB_TOKEN", "GH_TOKEN", "GITHUB_OUTPUT"):
            patch.delenv(name, raising=False)
        with Ledger(path, create=False) as ledger:
            live = current_deploy(LedgerHistory(ledger).history(REPO, "prod"))

        answers: dict[str, tuple[str, str | None]] = {}
        for flag in ("--allow-prerelease", "--no-allow-prerelease"):
            code, out = run(
                "previous",
                "--image",
                REPO,
                "--env",
                "prod",
                "--source",
                "ledger",
                flag,
                "--format",
                "json",
            )
            assert code in (0, 8)
            if code == 0:
                answer = json.loads(out)
                answers[flag] = (answer["tag"], answer["digest"])

        for flags in ((), ("--allow-prerelease",), ("--no-allow-prerelease",)):
            code, out = run(
                "prune",
                "--image",
                REPO,
                "--keep",
                "0",
                "--min-age",
                "0",
                "--env",
                "prod",
                "--dry-run",
                "--format",
                "json",
                *flags,
            )
            assert code == 0, out
            (entry,) = json.loads(out)["images"]
            kept_digests = {item["digest"] for item in entry["keep"]}
            kept_tags = {tag for item in entry["keep"] for tag in item["tags"]}
            wanted = [answers[f] for f in answers if not flags or f in flags]
            if live is not None:
                wanted.append((live.tag, live.digest))
            for tag, pinned in wanted:
                if pinned is not None:
                    assert pinned in kept_digests, (flags, tag, pinned)
                else:
                    assert tag not in {t for i in entry["delete"] for t in i["tags"]}, flags
                    assert tag in kept_tags or all(tag not in v.tags for v in reg.versions())
        assert reg.deleted == []
