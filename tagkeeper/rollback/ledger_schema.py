"""The deploy ledger's schema: its migrations and how a row becomes a record.

:data:`MIGRATIONS` are applied in order on open (``PRAGMA user_version`` counts them);
:func:`record_from_row` and :func:`step_from_row` read what :data:`COLUMNS` and
:data:`STEP_COLUMNS` select. :class:`~tagkeeper.rollback.ledger.Ledger` uses them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tagkeeper.rollback.resolve import DeployRecord, DeployStatus

if TYPE_CHECKING:
    import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: the deploys table
    """
    CREATE TABLE deploys (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        environment TEXT NOT NULL,
        repository  TEXT NOT NULL,
        tag         TEXT NOT NULL,
        digest      TEXT,
        status      TEXT NOT NULL
                    CHECK (status IN ('started', 'succeeded', 'failed', 'rolled_back')),
        rollback    INTEGER NOT NULL DEFAULT 0 CHECK (rollback IN (0, 1)),
        started_at  TEXT NOT NULL,
        ended_at    TEXT,
        user        TEXT,
        ci_run_url  TEXT,
        host        TEXT
    );
    CREATE INDEX deploys_by_target ON deploys (repository, environment, id);
    """,
    # 2: why a deploy ended as it did ("exit status 7", "terminated by SIGTERM")
    """
    ALTER TABLE deploys ADD COLUMN detail TEXT;
    """,
    # 3: how the deploy engine ran it: strategy, container, slot, why it ended (a short
    # code such as "pre-check"), the numbers that decided (JSON), and a step log
    """
    ALTER TABLE deploys ADD COLUMN strategy TEXT;
    ALTER TABLE deploys ADD COLUMN container TEXT;
    ALTER TABLE deploys ADD COLUMN slot TEXT;
    ALTER TABLE deploys ADD COLUMN reason TEXT;
    ALTER TABLE deploys ADD COLUMN numbers TEXT;
    CREATE TABLE deploy_steps (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        deploy_id INTEGER NOT NULL REFERENCES deploys (id),
        phase     TEXT NOT NULL,
        status    TEXT NOT NULL,
        at        TEXT NOT NULL,
        detail    TEXT
    );
    CREATE INDEX deploy_steps_by_deploy ON deploy_steps (deploy_id, id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

COLUMNS = (
    "id, environment, repository, tag, digest, status, rollback, started_at, ended_at, "
    "user, ci_run_url, host, detail, strategy, container, slot, reason, numbers"
)
STEP_COLUMNS = "id, deploy_id, phase, status, at, detail"


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def numbers_from_text(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        data = json.loads(str(value))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def record_from_row(row: sqlite3.Row | tuple[object, ...]) -> DeployRecord:
    (rid, env, repo, tag, digest, status, rollback, started, ended, user, ci, host, detail,
     strategy, container, slot, reason, numbers) = tuple(row)  # fmt: skip
    return DeployRecord(
        environment=str(env),
        repository=str(repo),
        tag=str(tag),
        status=DeployStatus(str(status)),
        started_at=datetime.fromisoformat(str(started)),
        digest=None if digest is None else str(digest),
        ended_at=None if ended is None else datetime.fromisoformat(str(ended)),
        rollback=bool(rollback),
        id=int(str(rid)),
        user=None if user is None else str(user),
        ci_run_url=None if ci is None else str(ci),
        host=None if host is None else str(host),
        detail=None if detail is None else str(detail),
        source="ledger",
        strategy=_text(strategy),
        container=_text(container),
        slot=_text(slot),
        reason=_text(reason),
        numbers=numbers_from_text(numbers),
    )


@dataclass(frozen=True, slots=True)
class DeployStep:
    """One step of a deploy, as the deploy engine recorded it."""

    id: int
    deploy_id: int
    phase: str  # "pull", "pre-check", "stop-old", ...
    status: str  # "start", "done", "failed", "info"
    at: datetime
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "status": self.status,
            "at": self.at.isoformat(),
            "detail": self.detail,
        }


def step_from_row(row: sqlite3.Row | tuple[object, ...]) -> DeployStep:
    sid, deploy_id, phase, status, at, detail = tuple(row)
    return DeployStep(
        id=int(str(sid)),
        deploy_id=int(str(deploy_id)),
        phase=str(phase),
        status=str(status),
        at=datetime.fromisoformat(str(at)),
        detail=_text(detail),
    )


__all__ = [
    "COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STEP_COLUMNS",
    "DeployStep",
    "numbers_from_text",
    "record_from_row",
    "step_from_row",
]
