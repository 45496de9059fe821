"""The embedded deploy ledger: a SQLite database on the deploy host (stdlib ``sqlite3``).

Where it lives (the first that applies):

1. ``--ledger PATH`` on the command line;
2. ``$TAGKEEPER_LEDGER``;
3. the ``ledger`` key of the configuration file;
4. the default: ``/var/lib/tagkeeper/ledger.db`` when running as root (deploy hosts
   where scripts run under ``sudo`` share one ledger whoever invoked them), otherwise
   ``$XDG_STATE_HOME/tagkeeper/ledger.db`` or ``~/.local/state/tagkeeper/ledger.db``.

The file and its folder are created on first use by the commands that write
(``record``, ``deploy``, ``rollback``); reading (``Ledger(path, create=False)``, used by
``history``, ``previous`` and ``prune``) never creates anything.

What a root ``rollback`` deploys is read from here, so the ledger is opened only when no
user but root and the one running tagkeeper can change it or anything that leads to it
(:mod:`tagkeeper.rollback.hostfs`): folders are created 0700 (root: 0755) and files 0600
(root: 0644) whatever the umask; a folder, ledger or SQLite side file that another user
owns or can write, and a ledger (or its folder) that is a symbolic link, are refused
with :class:`~tagkeeper.errors.LedgerError` (exit 12) naming the command that fixes it.

The database runs in WAL mode with a busy timeout; every write is one short
``BEGIN IMMEDIATE`` transaction, so several deploy scripts writing at once wait for each
other instead of failing, and a process killed at any moment leaves either the whole
write or none of it. A deploy whose process is killed after it was recorded as
``started`` stays ``started``: only an explicit finish marks it ``succeeded``.

The schema is versioned with ``PRAGMA user_version`` and upgraded by the ordered
:data:`MIGRATIONS` on open; a database written by a newer tagkeeper is refused.

It is one module on purpose (past 600 lines): one class around one database, whose
reads and writes share its connection, transaction and migration rules; the schema
itself and the row reading are in :mod:`tagkeeper.rollback.ledger_schema`.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagkeeper.errors import LedgerError, UsageError
from tagkeeper.gate.rules import validate_env_name
from tagkeeper.rollback import hostfs
from tagkeeper.rollback.ledger_schema import COLUMNS as _COLUMNS
from tagkeeper.rollback.ledger_schema import MIGRATIONS, SCHEMA_VERSION, DeployStep
from tagkeeper.rollback.ledger_schema import STEP_COLUMNS as _STEP_COLUMNS
from tagkeeper.rollback.ledger_schema import numbers_from_text as _numbers
from tagkeeper.rollback.ledger_schema import record_from_row as _row
from tagkeeper.rollback.ledger_schema import step_from_row as _step
from tagkeeper.rollback.resolve import DeployRecord, DeployStatus

if TYPE_CHECKING:
    from types import TracebackType

ENV_VAR = "TAGKEEPER_LEDGER"
ROOT_DEFAULT = Path("/var/lib/tagkeeper/ledger.db")
BUSY_TIMEOUT_MS = 30_000

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def default_path(environ: Mapping[str, str], *, euid: int | None = None) -> Path:
    """The default ledger location for this user (see the module docs)."""
    if euid is None:
        euid = os.geteuid() if hasattr(os, "geteuid") else -1
    if euid == 0:
        return ROOT_DEFAULT
    state = environ.get("XDG_STATE_HOME", "")
    if state and Path(state).is_absolute():
        return Path(state) / "tagkeeper" / "ledger.db"
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "tagkeeper" / "ledger.db"


def resolve_path(
    flag: str | Path | None,
    environ: Mapping[str, str],
    configured: str | None = None,
    *,
    euid: int | None = None,
) -> Path:
    """The ledger path: the flag, else ``$TAGKEEPER_LEDGER``, else the config, else the default."""
    for value in (flag, environ.get(ENV_VAR), configured):
        if value is not None and str(value) != "":
            return Path(value).expanduser()
    return default_path(environ, euid=euid)


def exists(path: Path) -> bool:
    """Whether there is something at ``path`` to open as a ledger, for the commands that
    only read: a link (even a dangling one) or a path that cannot be looked at counts, so
    that opening it says what is wrong instead of going on as if no deploy was recorded.
    """
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class Actor:
    """Who or what runs a deploy: the user, the CI run (when there is one) and the host."""

    user: str | None = None
    ci_run_url: str | None = None
    host: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Actor:
        """The actor of this process: ``SUDO_USER`` or the login name, the Actions run URL."""
        user = environ.get("SUDO_USER") or None
        if user is None:
            try:
                user = getpass.getuser()
            except (OSError, KeyError):  # no passwd entry and no LOGNAME/USER
                user = None
        server = environ.get("GITHUB_SERVER_URL", "").rstrip("/")
        repo = environ.get("GITHUB_REPOSITORY", "")
        run_id = environ.get("GITHUB_RUN_ID", "")
        ci = f"{server}/{repo}/actions/runs/{run_id}" if server and repo and run_id else None
        return cls(user=user, ci_run_url=ci, host=socket.gethostname() or None)


def _ts(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("ledger times must be timezone-aware")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


FINISHED = frozenset({DeployStatus.SUCCEEDED, DeployStatus.FAILED})
# how a started deploy can end (rolled_back: released, then rolled back automatically)
ENDINGS = frozenset({DeployStatus.SUCCEEDED, DeployStatus.FAILED, DeployStatus.ROLLED_BACK})


class Ledger:
    """One open ledger database. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: Path, *, clock: Clock = _utcnow, create: bool = True) -> None:
        self.path = path
        self.real_path = path  # the file opened, once it is (no link anywhere in it)
        self._clock = clock
        self._conn = self._connect(create)
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # -- opening --------------------------------------------------------------------

    def _fail(self, what: str, exc: BaseException) -> LedgerError:
        return LedgerError(
            f"the deploy ledger {self.path} {what}: {exc}",
            hint=f"check the path and its permissions, or point ${ENV_VAR} (or --ledger) "
            "at a writable file",
        )

    def _connect(self, create: bool) -> sqlite3.Connection:
        """Open the database after :mod:`~tagkeeper.rollback.hostfs` checked its files.

        Every folder on the way, the file and its side files must be changeable by root
        and this user only (so nobody else can swap them between the check and SQLite's
        open by name); the file SQLite then finds by that name must be the one checked.
        """
        path = self.path
        subject = f"the deploy ledger {path}"
        missing = LedgerError(
            f"no deploy ledger at {path}",
            hint="deploys are recorded by 'tagkeeper deploy' or 'tagkeeper record'",
        )
        try:
            folder = hostfs.open_folder(path.parent, subject=subject, create=create)
        except FileNotFoundError:
            raise missing from None
        except OSError as exc:
            raise self._fail("cannot be created" if create else "cannot be opened", exc) from None
        with folder:
            try:
                checked = hostfs.check_file(folder, path.name, subject=subject, create=create)
                if checked is None:
                    raise missing
                hostfs.check_side_files(folder, path.name, subject=subject)
            except OSError as exc:
                raise self._fail("cannot be opened", exc) from None
            self.real_path = folder.path / path.name
            # The file exists now: SQLite must never create one (it could have been removed
            # meanwhile), so it opens it read-write, never read-write-create.
            try:
                conn = sqlite3.connect(
                    f"{self.real_path.as_uri()}?mode=rw",
                    timeout=BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                    uri=True,
                )
            except sqlite3.Error as exc:
                raise self._fail("cannot be opened", exc) from None
            if not hostfs.same_file(folder, path.name, checked):
                conn.close()
                raise LedgerError(
                    f"the deploy ledger {path} was replaced while it was being opened; "
                    "nothing was read from it",
                    hint=f"find out what changes {self.real_path}, then run the command again",
                )
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._fail("cannot be used (is it a SQLite database?)", exc) from None
        if mode is None or str(mode[0]).lower() != "wal":
            conn.close()
            raise LedgerError(
                f"the deploy ledger {path} cannot use write-ahead logging "
                f"(journal mode {mode[0] if mode else '?'!s})",
                hint="keep the ledger on a local file system",
            )
        return conn

    def _migrate(self) -> None:
        version = self._user_version()
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"the deploy ledger {self.path} has schema version {version}; this "
                f"tagkeeper knows versions up to {SCHEMA_VERSION}",
                hint="upgrade tagkeeper on this host",
            )
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                version = self._user_version()  # another process may have migrated meanwhile
                for number in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[number].split(";"):
                        if statement.strip():
                            self._conn.execute(statement)
                    self._conn.execute(f"PRAGMA user_version = {number + 1}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._fail("cannot be initialised", exc) from None

    def _user_version(self) -> int:
        try:
            row = self._conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as exc:
            raise self._fail("cannot be read", exc) from None
        return int(row[0])

    @property
    def schema_version(self) -> int:
        return self._user_version()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------

    def _write(self, sql: str, params: Sequence[object]) -> int:
        """Run one statement in its own ``BEGIN IMMEDIATE`` transaction; its last row id."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._conn.execute(sql, tuple(params))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._fail("cannot be written", exc) from None
        return int(cursor.lastrowid or 0)

    def _insert(
        self,
        *,
        environment: str,
        repository: str,
        tag: str,
        digest: str | None,
        status: DeployStatus,
        actor: Actor,
        rollback: bool,
        detail: str | None,
        strategy: str | None = None,
        container: str | None = None,
        slot: str | None = None,
    ) -> DeployRecord:
        if not environment or not repository or not tag:
            raise UsageError("a deploy record needs an environment, a repository and a tag")
        validate_env_name(environment)
        now = _ts(self._clock())
        ended = None if status is DeployStatus.STARTED else now
        rid = self._write(
            "INSERT INTO deploys (environment, repository, tag, digest, status, rollback, "
            "started_at, ended_at, user, ci_run_url, host, detail, strategy, container, slot) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                environment,
                repository,
                tag,
                digest,
                str(status),
                int(rollback),
                now,
                ended,
                actor.user,
                actor.ci_run_url,
                actor.host,
                detail,
                strategy,
                container,
                slot,
            ),
        )
        return self._require(rid)

    def start(
        self,
        *,
        environment: str,
        repository: str,
        tag: str,
        digest: str | None,
        actor: Actor,
        rollback: bool = False,
        strategy: str | None = None,
        container: str | None = None,
        slot: str | None = None,
    ) -> DeployRecord:
        """Record a deploy that is about to run (status ``started``).

        ``strategy``, ``container`` and ``slot`` say how the deploy engine runs it.
        """
        return self._insert(
            environment=environment,
            repository=repository,
            tag=tag,
            digest=digest,
            status=DeployStatus.STARTED,
            actor=actor,
            rollback=rollback,
            detail=None,
            strategy=strategy,
            container=container,
            slot=slot,
        )

    def finish(
        self,
        record_id: int,
        status: DeployStatus,
        *,
        detail: str | None = None,
        reason: str | None = None,
        numbers: Mapping[str, Any] | None = None,
    ) -> DeployRecord:
        """End a ``started`` deploy: ``succeeded``, ``failed``, or ``rolled_back`` (released,
        then rolled back automatically). A deploy that already ended is left alone.

        ``reason`` is a short code of why it failed or was rolled back (``pre-check``);
        ``numbers`` are merged into the ones already recorded.
        """
        if status not in ENDINGS:
            raise UsageError(f"a deploy finishes as succeeded, failed or rolled_back, not {status}")
        if numbers:
            self.set_numbers(record_id, numbers)
        self._write(
            "UPDATE deploys SET status = ?, ended_at = ?, detail = COALESCE(?, detail), "
            "reason = COALESCE(?, reason) WHERE id = ? AND status = 'started'",
            (str(status), _ts(self._clock()), detail, reason, record_id),
        )
        return self._require(record_id)

    # -- the deploy engine's record: steps, numbers, the slot -------------------------

    def add_step(
        self, deploy_id: int, phase: str, status: str, detail: str | None = None
    ) -> DeployStep:
        """Append one step (phase, status, time, detail) to a deploy's step log."""
        at = _ts(self._clock())
        sid = self._write(
            "INSERT INTO deploy_steps (deploy_id, phase, status, at, detail) "
            "VALUES (?, ?, ?, ?, ?)",
            (deploy_id, phase, status, at, detail),
        )
        return DeployStep(sid, deploy_id, phase, status, datetime.fromisoformat(at), detail)

    def steps(self, deploy_id: int) -> list[DeployStep]:
        """A deploy's steps, in the order they happened."""
        try:
            rows = self._conn.execute(
                f"SELECT {_STEP_COLUMNS} FROM deploy_steps "  # noqa: S608 - fixed columns
                "WHERE deploy_id = ? ORDER BY id",
                (deploy_id,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise self._fail("cannot be read", exc) from None
        return [_step(row) for row in rows]

    def set_numbers(self, deploy_id: int, numbers: Mapping[str, Any]) -> DeployRecord:
        """Merge ``numbers`` (JSON values) into the numbers recorded for a deploy."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    "SELECT numbers FROM deploys WHERE id = ?", (deploy_id,)
                ).fetchone()
                merged = {**(_numbers(row[0]) or {} if row else {}), **dict(numbers)}
                self._conn.execute(
                    "UPDATE deploys SET numbers = ? WHERE id = ?",
                    (json.dumps(merged, sort_keys=True), deploy_id),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._fail("cannot be written", exc) from None
        return self._require(deploy_id)

    def set_slot(self, deploy_id: int, slot: str) -> DeployRecord:
        """Record the slot a deploy went to (blue/green, canary)."""
        self._write("UPDATE deploys SET slot = ? WHERE id = ?", (slot, deploy_id))
        return self._require(deploy_id)

    def unfinished(self, *, environment: str, container: str | None = None) -> list[DeployRecord]:
        """Deploys of ``environment`` (and ``container``) still ``started``, newest first."""
        sql = f"SELECT {_COLUMNS} FROM deploys WHERE environment = ? AND status = 'started'"  # noqa: S608
        params: list[object] = [environment]
        if container is not None:
            sql += " AND container = ?"
            params.append(container)
        try:
            rows = self._conn.execute(sql + " ORDER BY id DESC", params).fetchall()
        except sqlite3.Error as exc:
            raise self._fail("cannot be read", exc) from None
        return [_row(row) for row in rows]

    def mark_rolled_back(self, record_id: int, *, detail: str | None = None) -> DeployRecord:
        """Mark a succeeded deploy as replaced by a rollback."""
        self._write(
            "UPDATE deploys SET status = 'rolled_back', detail = COALESCE(?, detail) "
            "WHERE id = ? AND status = 'succeeded'",
            (detail, record_id),
        )
        return self._require(record_id)

    def record(
        self,
        *,
        environment: str,
        repository: str,
        tag: str,
        status: DeployStatus,
        actor: Actor,
        digest: str | None = None,
        rollback: bool = False,
        detail: str | None = None,
    ) -> DeployRecord:
        """What ``tagkeeper record`` does, for scripts that run their own deploys.

        * ``started`` always adds a new record.
        * ``succeeded`` / ``failed`` finish the newest ``started`` record of this
          environment, repository and tag (filling in the digest when it had none);
          without one, they add a new, already finished record.
        * ``rolled_back`` marks the newest ``succeeded`` record of that tag; without one,
          it adds a new record with that status.
        """
        validate_env_name(environment)
        if status is DeployStatus.STARTED:
            return self.start(
                environment=environment,
                repository=repository,
                tag=tag,
                digest=digest,
                actor=actor,
                rollback=rollback,
            )
        wanted = "started" if status in FINISHED else "succeeded"
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    "SELECT id FROM deploys WHERE environment = ? AND repository = ? AND "
                    "tag = ? AND status = ? ORDER BY id DESC LIMIT 1",
                    (environment, repository, tag, wanted),
                ).fetchone()
                if row is not None:
                    rid = int(row[0])
                    if status in FINISHED:
                        self._conn.execute(
                            "UPDATE deploys SET status = ?, ended_at = ?, "
                            "digest = COALESCE(digest, ?), detail = COALESCE(?, detail) "
                            "WHERE id = ?",
                            (str(status), _ts(self._clock()), digest, detail, rid),
                        )
                    else:
                        self._conn.execute(
                            "UPDATE deploys SET status = 'rolled_back', "
                            "detail = COALESCE(?, detail) WHERE id = ?",
                            (detail, rid),
                        )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._fail("cannot be written", exc) from None
        if row is not None:
            return self._require(rid)
        return self._insert(
            environment=environment,
            repository=repository,
            tag=tag,
            digest=digest,
            status=status,
            actor=actor,
            rollback=rollback,
            detail=detail,
        )

    # -- reading --------------------------------------------------------------------

    def get(self, record_id: int) -> DeployRecord | None:
        try:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM deploys WHERE id = ?",  # noqa: S608 - fixed columns
                (record_id,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._fail("cannot be read", exc) from None
        return None if row is None else _row(row)

    def _require(self, record_id: int) -> DeployRecord:
        record = self.get(record_id)
        if record is None:
            raise LedgerError(f"deploy #{record_id} is not in the ledger {self.path}")
        return record

    def history(
        self,
        *,
        environment: str | None = None,
        repository: str | None = None,
        limit: int | None = None,
    ) -> list[DeployRecord]:
        """Deploys, newest first, optionally for one environment and/or repository."""
        where: list[str] = []
        params: list[object] = []
        if environment is not None:
            where.append("environment = ?")
            params.append(environment)
        if repository is not None:
            where.append("repository = ?")
            params.append(repository)
        sql = f"SELECT {_COLUMNS} FROM deploys"  # noqa: S608 - fixed column list
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            if limit < 0:
                raise UsageError("--limit must not be negative")
            sql += " LIMIT ?"
            params.append(limit)
        try:
            rows = self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._fail("cannot be read", exc) from None
        return [_row(row) for row in rows]

    def environments(self, repository: str) -> list[str]:
        """The environments with at least one deploy of ``repository``, sorted."""
        try:
            rows = self._conn.execute(
                "SELECT DISTINCT environment FROM deploys WHERE repository = ? "
                "ORDER BY environment",
                (repository,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise self._fail("cannot be read", exc) from None
        return [str(row[0]) for row in rows]


@dataclass(frozen=True, slots=True)
class LedgerHistory:
    """The ledger as a history source for rollback resolution and prune protection."""

    ledger: Ledger
    name: str = "ledger"

    def history(self, repository: str, environment: str) -> Sequence[DeployRecord]:
        return self.ledger.history(environment=environment, repository=repository)

    def environments(self, repository: str) -> Sequence[str]:
        return self.ledger.environments(repository)


__all__ = [
    "ENV_VAR",
    "MIGRATIONS",
    "ROOT_DEFAULT",
    "SCHEMA_VERSION",
    "Actor",
    "DeployStep",
    "Ledger",
    "LedgerHistory",
    "default_path",
    "exists",
    "resolve_path",
]
