"""The ledger's deploy-engine record: migration 3, strategy, slot, numbers and step logs."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from tagkeeper.errors import UsageError
from tagkeeper.rollback.ledger import MIGRATIONS, SCHEMA_VERSION, Actor, Ledger, LedgerHistory
from tagkeeper.rollback.protection import rollback_protection
from tagkeeper.rollback.resolve import DeployStatus, previous_from_history

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

REPO = "ghcr.io/o/app"
ACTOR = Actor(user="alice", ci_run_url=None, host="web1")
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.db", clock=Clock()) as opened:
        yield opened


def test_a_version_2_ledger_is_migrated_and_every_reader_still_answers(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(MIGRATIONS[0])
        conn.executescript(MIGRATIONS[1])
        for tag, digest, status in (("v1.0.0", D1, "succeeded"), ("v1.1.0", D2, "succeeded")):
            conn.execute(
                "INSERT INTO deploys (environment, repository, tag, digest, status, started_at, "
                "detail) VALUES ('prod', ?, ?, ?, ?, '2026-01-01T00:00:00+00:00', 'exit status 0')",
                (REPO, tag, digest, status),
            )
        conn.execute("PRAGMA user_version = 2")
    with Ledger(path) as ledger:
        assert ledger.schema_version == SCHEMA_VERSION == 3
        records = ledger.history(environment="prod", repository=REPO)
        assert [r.tag for r in records] == ["v1.1.0", "v1.0.0"]
        assert records[0].strategy is None
        assert records[0].numbers is None
        assert records[0].detail == "exit status 0"
        # previous and prune protection read the migrated ledger as before
        target = previous_from_history(records, repository=REPO, environment="prod")
        assert (target.tag, target.digest) == ("v1.0.0", D1)
        history = LedgerHistory(ledger)
        assert history.history(REPO, "prod") == records
        protected = rollback_protection(REPO, ["prod"], [history])
        assert protected[D1] == "rollback target for prod (ledger)"
        assert protected[D2] == "current in prod (ledger)"
        assert ledger.steps(records[0].id or 0) == []


def test_a_deploy_records_strategy_container_steps_numbers_and_reason(ledger: Ledger) -> None:
    rec = ledger.start(
        environment="prod",
        repository=REPO,
        tag="v2",
        digest=D2,
        actor=ACTOR,
        strategy="recreate",
        container="app",
    )
    assert rec.id is not None
    assert (rec.strategy, rec.container, rec.slot) == ("recreate", "app", None)
    ledger.add_step(rec.id, "pull", "done", "sha256:2222")
    ledger.add_step(rec.id, "pre-check", "failed", "health answered 503")
    ledger.set_numbers(rec.id, {"pre_check_seconds": 3.5})
    done = ledger.finish(
        rec.id,
        DeployStatus.FAILED,
        detail="health answered 503",
        reason="pre-check",
        numbers={"gap_seconds": None},
    )
    assert done.status is DeployStatus.FAILED
    assert done.reason == "pre-check"
    assert done.numbers == {"pre_check_seconds": 3.5, "gap_seconds": None}
    steps = ledger.steps(rec.id)
    assert [(s.phase, s.status, s.detail) for s in steps] == [
        ("pull", "done", "sha256:2222"),
        ("pre-check", "failed", "health answered 503"),
    ]
    assert steps[0].at < steps[1].at
    assert done.as_dict()["reason"] == "pre-check"
    assert done.as_dict()["numbers"] == {"gap_seconds": None, "pre_check_seconds": 3.5}


def test_rolled_back_ends_a_started_deploy_and_a_late_finish_changes_nothing(
    ledger: Ledger,
) -> None:
    rec = ledger.start(environment="prod", repository=REPO, tag="v3", digest=D1, actor=ACTOR)
    assert rec.id is not None
    ledger.set_slot(rec.id, "green")
    ended = ledger.finish(
        rec.id, DeployStatus.ROLLED_BACK, reason="canary", numbers={"error_rate": 0.2}
    )
    assert ended.status is DeployStatus.ROLLED_BACK
    assert ended.slot == "green"
    late = ledger.finish(rec.id, DeployStatus.SUCCEEDED, reason="late")
    assert late.status is DeployStatus.ROLLED_BACK
    assert late.reason == "canary"
    with pytest.raises(UsageError):
        ledger.finish(rec.id, DeployStatus.STARTED)


def test_unfinished_lists_started_deploys_of_one_environment_and_container(
    ledger: Ledger,
) -> None:
    ids = []
    for env, container in (
        ("prod", "app"),
        ("prod", "worker"),
        ("staging", "app"),
        ("prod", "app"),
    ):
        rec = ledger.start(
            environment=env, repository=REPO, tag="v1", digest=None, actor=ACTOR,
            strategy="recreate", container=container,
        )  # fmt: skip
        ids.append(rec.id)
    assert ids[0] is not None
    ledger.finish(ids[0], DeployStatus.FAILED)
    assert [r.id for r in ledger.unfinished(environment="prod", container="app")] == [ids[3]]
    assert [r.id for r in ledger.unfinished(environment="prod")] == [ids[3], ids[1]]
