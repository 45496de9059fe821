"""What prune must keep for rollbacks: current, in-progress and previous, with reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from tagkeeper.inventory import Version
from tagkeeper.rollback.protection import HistorySource, rollback_protection
from tagkeeper.rollback.resolve import DeployRecord, DeployStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

REPO = "ghcr.io/o/app"
T0 = datetime(2026, 4, 1, tzinfo=UTC)
OK = DeployStatus.SUCCEEDED


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


@dataclass
class FakeHistory:
    """A history source holding records per environment (oldest first as written)."""

    name: str
    written: dict[str, list[tuple[str, DeployStatus, str | None]]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def history(self, repository: str, environment: str) -> Sequence[DeployRecord]:
        self.asked.append(environment)
        entries = self.written.get(environment, [])
        records = [
            DeployRecord(
                environment, repository, tag, status, T0 + timedelta(minutes=i), digest=d, id=i
            )
            for i, (tag, status, d) in enumerate(entries)
        ]
        return list(reversed(records))

    def environments(self, repository: str) -> Sequence[str]:
        return [name for name, entries in self.written.items() if entries]


def test_current_and_rollback_target_are_protected_by_tag_and_digest() -> None:
    ledger = FakeHistory(
        "ledger",
        {
            "prod": [
                ("v1.0.0", OK, digest(1)),
                ("v1.1.0", DeployStatus.FAILED, digest(2)),
                ("v1.2.0", OK, digest(3)),
            ]
        },
    )
    source: HistorySource = ledger

    protected = rollback_protection(REPO, ["prod"], [source])

    assert protected == {
        "v1.2.0": "current in prod (ledger)",
        digest(3): "current in prod (ledger)",
        "v1.0.0": "rollback target for prod (ledger)",
        digest(1): "rollback target for prod (ledger)",
    }
    assert "v1.1.0" not in protected  # failed: prune may take it


def test_each_environment_and_source_adds_its_reasons() -> None:
    ledger = FakeHistory(
        "ledger",
        {
            "prod": [("v1.0.0", OK, None), ("v1.1.0", OK, None)],
            "staging": [("v1.1.0", OK, None), ("v1.2.0", OK, None)],
        },
    )
    github = FakeHistory("github", {"prod": [("v0.9.0", OK, None), ("v1.1.0", OK, None)]})

    protected = rollback_protection(REPO, ["prod", "staging", "prod"], [ledger, github])

    assert protected["v1.1.0"] == (
        "current in prod (ledger); current in prod (github); rollback target for staging (ledger)"
    )
    assert protected["v1.0.0"] == "rollback target for prod (ledger)"
    assert protected["v0.9.0"] == "rollback target for prod (github)"
    assert protected["v1.2.0"] == "current in staging (ledger)"
    assert ledger.asked == ["prod", "staging"]  # duplicates asked once


def test_a_deploy_in_progress_is_protected() -> None:
    ledger = FakeHistory(
        "ledger",
        {
            "prod": [
                ("v1.0.0", OK, None),
                ("v1.1.0", OK, None),
                ("v1.2.0", DeployStatus.STARTED, digest(7)),
            ]
        },
    )

    protected = rollback_protection(REPO, ["prod"], [ledger])

    assert protected["v1.2.0"] == "deploy in progress to prod (ledger)"
    assert protected[digest(7)] == "deploy in progress to prod (ledger)"
    assert protected["v1.1.0"] == "current in prod (ledger)"
    assert protected["v1.0.0"] == "rollback target for prod (ledger)"


def test_a_given_current_tag_wins_over_history() -> None:
    ledger = FakeHistory(
        "ledger", {"prod": [("v1.0.0", OK, None), ("v1.1.0", OK, None), ("v1.2.0", OK, None)]}
    )

    protected = rollback_protection(REPO, ["prod"], [ledger], currents={"prod": "v1.1.0"})

    assert protected["v1.1.0"] == "current in prod (ledger)"
    assert protected["v1.0.0"] == "rollback target for prod (ledger)"


def test_without_history_the_registry_answer_is_protected() -> None:
    versions = [
        Version(digest(1), frozenset({"v1.9.0"}), T0),
        Version(digest(2), frozenset({"v1.10.0"}), T0 + timedelta(hours=1)),
        Version(digest(3), frozenset({"v1.10.1-rc.1"}), T0 + timedelta(hours=2)),
        Version(digest(4), frozenset({"v1.10.1"}), T0 + timedelta(hours=3)),
    ]
    empty = FakeHistory("ledger")

    protected = rollback_protection(
        REPO,
        ["prod"],
        [empty],
        versions=versions,
        currents={"prod": "v1.10.1"},
        allow_prerelease=False,
    )

    assert protected == {
        "v1.10.1": "current in prod (given)",
        digest(4): "current in prod (given)",
        "v1.10.0": "rollback target for prod (registry)",
        digest(2): "rollback target for prod (registry)",
    }
    both = rollback_protection(
        REPO, ["prod"], [empty], versions=versions, currents={"prod": "v1.10.1"}
    )
    assert both == {
        **protected,
        "v1.10.1-rc.1": "rollback target for prod with prereleases allowed (registry)",
        digest(3): "rollback target for prod with prereleases allowed (registry)",
    }


def test_nothing_known_protects_nothing() -> None:
    assert rollback_protection(REPO, ["prod"], [FakeHistory("ledger")]) == {}
    only_one = FakeHistory("ledger", {"prod": [("v1.0.0", OK, None)]})
    assert rollback_protection(REPO, ["prod"], [only_one]) == {"v1.0.0": "current in prod (ledger)"}


def test_what_runs_is_the_recorded_digest_of_the_last_success_not_a_later_repush() -> None:
    # v1.1.0 ran as digest 2, then was pushed again (digest 3) and that deploy failed or
    # never finished: digest 2 runs, digest 3 may run, v1.0.0 is the rollback target.
    for last in (DeployStatus.FAILED, DeployStatus.STARTED, DeployStatus.ROLLED_BACK):
        ledger = FakeHistory(
            "ledger",
            {
                "prod": [
                    ("v1.0.0", OK, digest(1)),
                    ("v1.1.0", OK, digest(2)),
                    ("v1.1.0", last, digest(3)),
                ]
            },
        )
        protected = rollback_protection(REPO, ["prod"], [ledger])
        assert protected[digest(2)] == "current in prod (ledger)", last
        assert "may still run" in protected[digest(3)] or "in progress" in protected[digest(3)]
        assert protected[digest(1)] == "rollback target for prod (ledger)"


def test_a_failed_deploy_older_than_what_runs_protects_nothing() -> None:
    ledger = FakeHistory(
        "ledger",
        {
            "prod": [
                ("v1.0.0", OK, digest(1)),
                ("v1.1.0", DeployStatus.FAILED, digest(2)),
                ("v1.2.0", OK, digest(3)),
            ]
        },
    )
    assert digest(2) not in rollback_protection(REPO, ["prod"], [ledger])


def test_prerelease_targets_are_protected_for_the_setting_or_both() -> None:
    ledger = FakeHistory(
        "ledger",
        {
            "prod": [
                ("v1.0.0", OK, digest(1)),
                ("v2.0.0-rc.1", OK, digest(2)),
                ("v2.0.0-rc.2", OK, digest(3)),
            ]
        },
    )
    strict = rollback_protection(REPO, ["prod"], [ledger], allow_prerelease=False)
    loose = rollback_protection(REPO, ["prod"], [ledger], allow_prerelease=True)
    both = rollback_protection(REPO, ["prod"], [ledger])
    assert strict[digest(1)] == "rollback target for prod (ledger)"
    assert digest(2) not in strict
    assert loose[digest(2)] == "rollback target for prod (ledger)"
    assert digest(1) not in loose
    assert both[digest(1)] == "rollback target for prod (ledger)"
    assert both[digest(2)] == "rollback target for prod with prereleases allowed (ledger)"
    assert set(both) == set(strict) | set(loose)


def test_an_environment_without_history_is_missing_and_required_ones_raise() -> None:
    from tagkeeper.errors import ExitCode
    from tagkeeper.rollback.protection import NoHistory, protection

    ledger = FakeHistory(
        "ledger", {"production": [("v1.0.0", OK, None)], "staging": [("v1.0.0", OK, None)]}
    )
    result = protection(REPO, ["prod", "staging"], [ledger])
    assert result.missing == ("prod",)
    assert result.recorded == ("production", "staging")
    (warning,) = result.warnings("ledger x.db")
    assert "deployed to prod" in warning
    assert "production, staging" in warning
    result.require(["staging"])  # has history: fine
    with pytest.raises(NoHistory) as caught:
        result.require(["prod"])
    assert caught.value.exit_code is ExitCode.USAGE
    assert "production, staging" in caught.value.message
    assert "--env production" in (caught.value.hint or "")
    with pytest.raises(NoHistory):
        rollback_protection(REPO, ["prod"], [ledger], required=["prod"])


def test_history_with_nothing_succeeded_protects_every_deploy_that_may_run() -> None:
    ledger = FakeHistory(
        "ledger",
        {
            "prod": [
                ("v1.0.0", DeployStatus.FAILED, digest(1)),
                ("v1.1.0", DeployStatus.STARTED, digest(2)),
            ]
        },
    )
    protected = rollback_protection(REPO, ["prod"], [ledger])
    assert set(protected) == {digest(1), "v1.0.0", digest(2), "v1.1.0"}
