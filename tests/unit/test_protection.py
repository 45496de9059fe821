"""What prune must keep for rollbacks: current, in-progress and previous, with reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

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
        REPO, ["prod"], [empty], versions=versions, currents={"prod": "v1.10.1"}
    )

    assert protected == {
        "v1.10.1": "current in prod (given)",
        digest(4): "current in prod (given)",
        "v1.10.0": "rollback target for prod (registry)",
        digest(2): "rollback target for prod (registry)",
    }


def test_nothing_known_protects_nothing() -> None:
    assert rollback_protection(REPO, ["prod"], [FakeHistory("ledger")]) == {}
    only_one = FakeHistory("ledger", {"prod": [("v1.0.0", OK, None)]})
    assert rollback_protection(REPO, ["prod"], [only_one]) == {"v1.0.0": "current in prod (ledger)"}
