"""One deploy at a time per environment and container: a lock file beside the ledger.

The lock is ``fcntl.flock`` on ``<ledger folder>/locks/<env>--<container>.lock``. The
kernel frees it when its holder ends, however it ends (SIGKILL included), so a lock can
never outlive a deploy. While held, the file names the holder (:class:`Holder`: pid,
host, user, since, command), which is what the next deploy is told (exit 15,
:class:`~tagkeeper.errors.DeployLocked`) and what ``status`` shows.

A holder that finishes empties the file before letting go. A lock found free with a
holder still written in it was left by a deploy that died: it is taken over, and
:attr:`DeployLock.taken_over` says whose it was, so the caller can say so.

Deploys of different environments (or containers) use different files and never wait
for each other. The descriptor is not inherited by child processes. The ``locks`` folder
and the lock files are opened as the ledger is (:mod:`tagkeeper.rollback.hostfs`): never
through a link, created private whatever the umask, and refused (exit 12) when a user
other than root and the one deploying could change them.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tagkeeper.errors import DeployLocked, LedgerError
from tagkeeper.rollback import hostfs

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from types import TracebackType

POLL = 0.2  # how often a waiting deploy tries the lock again


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds (or held) a lock."""

    pid: int
    host: str
    user: str | None
    since: datetime
    command: str

    @classmethod
    def current(
        cls, command: Sequence[str], user: str | None, *, now: datetime | None = None
    ) -> Holder:
        shown = " ".join(command)
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            user=user,
            since=now or datetime.now(UTC),
            command=shown if len(shown) <= 300 else shown[:297] + "...",
        )

    def describe(self) -> str:
        who = f" by {self.user}" if self.user else ""
        return (
            f"pid {self.pid} on {self.host}{who} since "
            f"{self.since.strftime('%Y-%m-%d %H:%M:%SZ')} ({self.command})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "host": self.host,
            "user": self.user,
            "since": self.since.isoformat(),
            "command": self.command,
        }

    @classmethod
    def from_text(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(
                pid=int(data["pid"]),
                host=str(data["host"]),
                user=None if data.get("user") is None else str(data["user"]),
                since=datetime.fromisoformat(str(data["since"])),
                command=str(data.get("command", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", lambda m: f"%{ord(m[0]):02x}", name)


def lock_path(ledger_path: Path, environment: str, container: str) -> Path:
    """The lock file of ``environment`` and ``container`` beside the ledger."""
    return ledger_path.parent / "locks" / f"{_safe(environment)}--{_safe(container)}.lock"


def read_holder(path: Path) -> tuple[Holder | None, bool]:
    """Who the lock file at ``path`` names, and whether that holder still runs.

    Reads the file only: the lock itself is never touched, so looking never makes a
    deploy wait or fail. ``(None, False)``: nobody holds it. A holder on another host is
    taken to be running.
    """
    try:  # never through a link: what it names is shown as the holder
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None, False
    try:
        text = _read(fd) if stat.S_ISREG(os.fstat(fd).st_mode) else ""
    except OSError:
        return None, False
    finally:
        os.close(fd)
    holder = Holder.from_text(text) if text.strip() else None
    if holder is None:
        return None, False
    if holder.host != socket.gethostname():
        return holder, True
    return holder, _running(holder.pid)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unknown_holder() -> Holder:
    return Holder(0, "?", None, datetime.now(UTC), "a process that did not say who it is")


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 64 * 1024).decode("utf-8", errors="replace")


class DeployLock:
    """The lock of one environment and container. Use as a context manager."""

    def __init__(
        self,
        path: Path,
        holder: Holder,
        *,
        what: str,
        wait: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = path
        self.holder = holder
        self.what = what  # "prod (container app)", for messages
        self.wait = wait
        self._clock = clock
        self._sleep = sleep
        self._fd: int | None = None
        self.taken_over: Holder | None = None

    def acquire(self) -> None:
        """Take the lock, waiting up to :attr:`wait` seconds; :class:`DeployLocked` if not."""
        subject = f"the deploy lock {self.path}"
        try:
            # the locks folder and the ledger's folder are never links, and only root and
            # this user can change anything on the way (as for the ledger itself)
            folder = hostfs.open_folder(self.path.parent, subject=subject, create=True, strict=2)
            with folder:
                fd = hostfs.open_rw(folder, self.path.name, subject=subject)
        except OSError as exc:
            raise LedgerError(
                f"the deploy lock {self.path} cannot be opened: {exc.strerror or exc}",
                hint="the lock lives beside the ledger; check the folder's permissions",
            ) from None
        deadline = self._clock() + self.wait
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if self._clock() >= deadline:
                        holder = Holder.from_text(_read(fd)) or _unknown_holder()
                        raise DeployLocked(
                            f"another deploy of {self.what} is running: {holder.describe()}",
                            hint="wait for it to finish, or pass --lock-wait 10m to wait "
                            "here; nothing was done",
                        ) from None
                    self._sleep(min(POLL, max(0.0, deadline - self._clock())))
            self.taken_over = Holder.from_text(_read(fd))
            record = json.dumps(self.holder.as_dict()).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock, saying first that nobody holds it."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the descriptor frees the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> DeployLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
