"""The SQLite deploy ledger: schema, migrations, record semantics, paths and errors."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tagkeeper.errors import ExitCode, LedgerError, UsageError
from tagkeeper.rollback import hostfs
from tagkeeper.rollback.ledger import (
    MIGRATIONS,
    ROOT_DEFAULT,
    SCHEMA_VERSION,
    Actor,
    Ledger,
    LedgerHistory,
    default_path,
    resolve_path,
)
from tagkeeper.rollback.resolve import DeployStatus

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = "ghcr.io/o/app"
ACTOR = Actor(user="alice", ci_run_url=None, host="web1")
D = "sha256:" + "a" * 64


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=10)
        return self.now


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "deep" / "ledger.db", clock=Clock()) as opened:
        yield opened


def test_created_on_first_use_in_wal_mode_at_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.db"
    with Ledger(path) as ledger:
        assert ledger.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_version_1_ledger_is_migrated_and_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(MIGRATIONS[0])
        conn.execute(
            "INSERT INTO deploys (environment, repository, tag, digest, status, started_at) "
            "VALUES ('prod', ?, 'v1.0.0', ?, 'succeeded', '2026-01-01T00:00:00+00:00')",
            (REPO, D),
        )
        conn.execute("PRAGMA user_version = 1")
    with Ledger(path) as ledger:
        assert ledger.schema_version == SCHEMA_VERSION
        [record] = ledger.history()
        assert (record.tag, record.digest, record.status) == ("v1.0.0", D, DeployStatus.SUCCEEDED)
        assert record.detail is None  # the column migration 2 added


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerError, match=r"has schema version \d+") as caught:
        Ledger(path)
    assert caught.value.exit_code == ExitCode.LEDGER


def test_a_file_that_is_not_a_database_is_a_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite, not at all" * 100)
    with pytest.raises(LedgerError, match=r"junk\.db"):
        Ledger(path)


def test_a_directory_or_an_unwritable_place_is_a_ledger_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="not a regular file"):
        Ledger(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LedgerError, match="cannot be created") as caught:
        Ledger(blocker / "sub" / "ledger.db")
    assert "TAGKEEPER_LEDGER" in (caught.value.hint or "")


def test_open_without_create_does_not_create(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no deploy ledger"):
        Ledger(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_start_then_finish(ledger: Ledger) -> None:
    started = ledger.start(environment="prod", repository=REPO, tag="v1.0.0", digest=D, actor=ACTOR)
    assert started.status is DeployStatus.STARTED
    assert started.ended_at is None
    assert (started.user, started.host) == ("alice", "web1")
    assert started.id is not None
    done = ledger.finish(started.id, DeployStatus.SUCCEEDED, detail="exit status 0")
    assert done.status is DeployStatus.SUCCEEDED
    assert done.ended_at is not None
    assert done.ended_at > done.started_at
    assert done.detail == "exit status 0"
    # a finished deploy cannot be finished again (a late writer loses)
    again = ledger.finish(started.id, DeployStatus.FAILED)
    assert again.status is DeployStatus.SUCCEEDED


def test_finish_refuses_non_final_statuses(ledger: Ledger) -> None:
    rec = ledger.start(environment="prod", repository=REPO, tag="v1", digest=None, actor=ACTOR)
    assert rec.id is not None
    with pytest.raises(UsageError):
        ledger.finish(rec.id, DeployStatus.STARTED)


def test_record_finishes_the_newest_open_record_of_that_tag(ledger: Ledger) -> None:
    first = ledger.record(
        environment="prod", repository=REPO, tag="v1.0.0", status=DeployStatus.STARTED, actor=ACTOR
    )
    other = ledger.record(
        environment="prod", repository=REPO, tag="v1.1.0", status=DeployStatus.STARTED, actor=ACTOR
    )
    done = ledger.record(
        environment="prod",
        repository=REPO,
        tag="v1.0.0",
        status=DeployStatus.FAILED,
        actor=ACTOR,
        digest=D,
    )
    assert done.id == first.id
    assert done.digest == D  # filled in at finish
    assert ledger.get(other.id or 0) is not None
    assert ledger.get(other.id or 0).status is DeployStatus.STARTED  # type: ignore[union-attr]
    assert len(ledger.history()) == 2


def test_record_without_an_open_record_adds_a_finished_one(ledger: Ledger) -> None:
    rec = ledger.record(
        environment="dev",
        repository=REPO,
        tag="dev-abc1234",
        status=DeployStatus.SUCCEEDED,
        actor=ACTOR,
        rollback=True,
    )
    assert rec.status is DeployStatus.SUCCEEDED
    assert rec.rollback
    assert rec.ended_at == rec.started_at


def test_record_rolled_back_marks_the_newest_success(ledger: Ledger) -> None:
    old = ledger.record(
        environment="prod",
        repository=REPO,
        tag="v2.0.0",
        status=DeployStatus.SUCCEEDED,
        actor=ACTOR,
    )
    new = ledger.record(
        environment="prod",
        repository=REPO,
        tag="v2.0.0",
        status=DeployStatus.SUCCEEDED,
        actor=ACTOR,
    )
    marked = ledger.record(
        environment="prod",
        repository=REPO,
        tag="v2.0.0",
        status=DeployStatus.ROLLED_BACK,
        actor=ACTOR,
    )
    assert marked.id == new.id
    assert marked.status is DeployStatus.ROLLED_BACK
    assert ledger.get(old.id or 0).status is DeployStatus.SUCCEEDED  # type: ignore[union-attr]


def test_mark_rolled_back_touches_only_succeeded_deploys(ledger: Ledger) -> None:
    failed = ledger.record(
        environment="prod", repository=REPO, tag="v3.0.0", status=DeployStatus.FAILED, actor=ACTOR
    )
    assert failed.id is not None
    assert ledger.mark_rolled_back(failed.id).status is DeployStatus.FAILED


def test_history_filters_newest_first_and_limits(ledger: Ledger) -> None:
    for env, repo, tag in [
        ("prod", REPO, "v1"),
        ("dev", REPO, "dev-1111111"),
        ("prod", "ghcr.io/o/other", "v9"),
        ("prod", REPO, "v2"),
    ]:
        ledger.record(
            environment=env, repository=repo, tag=tag, status=DeployStatus.SUCCEEDED, actor=ACTOR
        )
    assert [r.tag for r in ledger.history()] == ["v2", "v9", "dev-1111111", "v1"]
    assert [r.tag for r in ledger.history(environment="prod", repository=REPO)] == ["v2", "v1"]
    assert [r.tag for r in ledger.history(limit=1)] == ["v2"]
    source = LedgerHistory(ledger)
    assert [r.tag for r in source.history(REPO, "prod")] == ["v2", "v1"]
    with pytest.raises(UsageError):
        ledger.history(limit=-1)


def test_times_are_stored_in_utc_and_read_back_aware(ledger: Ledger) -> None:
    rec = ledger.record(
        environment="prod", repository=REPO, tag="v1", status=DeployStatus.SUCCEEDED, actor=ACTOR
    )
    assert rec.started_at.tzinfo is not None
    assert rec.started_at.utcoffset() == timedelta(0)


def test_default_path_root_and_users() -> None:
    assert default_path({}, euid=0) == ROOT_DEFAULT
    assert default_path({"XDG_STATE_HOME": "/s", "HOME": "/h"}, euid=1000) == Path(
        "/s/tagkeeper/ledger.db"
    )
    assert default_path({"XDG_STATE_HOME": "relative", "HOME": "/h"}, euid=1000) == Path(
        "/h/.local/state/tagkeeper/ledger.db"
    )
    assert default_path({"HOME": "/h"}, euid=1000) == Path("/h/.local/state/tagkeeper/ledger.db")


def test_resolve_path_precedence() -> None:
    env = {"TAGKEEPER_LEDGER": "/env.db", "HOME": "/h"}
    assert resolve_path("/flag.db", env, "/config.db", euid=1000) == Path("/flag.db")
    assert resolve_path(None, env, "/config.db", euid=1000) == Path("/env.db")
    assert resolve_path(None, {"HOME": "/h"}, "/config.db", euid=1000) == Path("/config.db")
    assert resolve_path(None, {"HOME": "/h"}, None, euid=0) == ROOT_DEFAULT


def test_actor_from_environ() -> None:
    actor = Actor.from_environ(
        {
            "SUDO_USER": "bob",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": "o/app",
            "GITHUB_RUN_ID": "42",
        }
    )
    assert actor.user == "bob"
    assert actor.ci_run_url == "https://github.com/o/app/actions/runs/42"
    assert Actor.from_environ({"USER": "carol", "LOGNAME": "carol"}).ci_run_url is None


def test_open_without_create_never_lets_sqlite_create_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gone.db"
    Ledger(path).close()
    checked = hostfs.check_side_files

    def vanish(folder: hostfs.Folder, name: str, *, subject: str) -> None:
        checked(folder, name, subject=subject)
        for leftover in tmp_path.iterdir():  # removed just after it was checked
            leftover.unlink()

    monkeypatch.setattr(hostfs, "check_side_files", vanish)
    with pytest.raises(LedgerError, match="cannot be opened"):
        Ledger(path, create=False)
    assert list(tmp_path.iterdir()) == []


def test_open_without_create_reads_a_path_with_uri_characters(tmp_path: Path) -> None:
    path = tmp_path / "odd dir %41" / "led?ger#1.db"
    with Ledger(path, clock=Clock()) as writer:
        writer.record(
            environment="prod",
            repository=REPO,
            tag="v1",
            status=DeployStatus.SUCCEEDED,
            actor=ACTOR,
        )
    with Ledger(path, create=False) as reader:
        assert [r.tag for r in reader.history()] == ["v1"]
    assert sorted(p.name for p in path.parent.iterdir() if p.suffix == ".db") == ["led?ger#1.db"]
