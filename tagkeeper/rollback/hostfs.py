"""The deploy ledger's files on a shared host: private folders, checked owners, no links.

What a root ``rollback`` deploys is decided by the ledger, so no user but root and the
one running tagkeeper may be able to change it, nor anything that leads to it:

* Folders tagkeeper creates get mode 0700 (0755 for root, whose history other users may
  read) whatever the umask, and belong to the user who runs it; files get 0600 (0644).
* Every folder from ``/`` down to the ledger is opened one step at a time with
  ``openat(O_NOFOLLOW)`` and judged on the open descriptor (``fstat``): it must belong to
  root or to the user, and no other user may write it (:func:`judge`: group write only
  when the group has no other member, and other write only in a sticky folder such as
  ``/tmp`` above the ledger's own folder).
* A symbolic link above the ledger's folder is followed once its own folder passed (in a
  sticky folder, the link must belong to root or the user). The ledger's folder, the
  ledger, its SQLite side files (``-wal``, ``-shm``, ``-journal``), the ``locks`` folder
  and the lock files are never links: each is opened with ``O_NOFOLLOW`` and checked on
  its descriptor.

Why this closes the race between the check and SQLite's own open by name: once every
folder on the path can be written only by root and the user, no other user can rename,
replace or add an entry anywhere on it, so the name SQLite opens is the file that was
checked, and the side files SQLite creates appear where nobody else can plant one. As a
last guard, the file found by that name after SQLite opened it must still be the file
that was checked (same device and inode) before anything is read or written.

Every refusal is a :class:`~tagkeeper.errors.LedgerError` (exit 12) that names the file
or folder and the command that fixes it (``chmod go-w DIR``, ``chown root FILE``...).
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tagkeeper.errors import LedgerError

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

SIDE_SUFFIXES = ("-wal", "-shm", "-journal")  # what SQLite keeps beside a database
MAX_LINKS = 40  # as the kernel's own limit on links followed in one path
_WHERE = "keep the ledger in a folder only you (or root) can write (--ledger, $TAGKEEPER_LEDGER)"
# O_PATH (Linux) opens a folder to walk through without needing to read it
_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = getattr(os, "O_PATH", os.O_RDONLY | os.O_NONBLOCK) | os.O_NOFOLLOW | os.O_CLOEXEC


def modes(euid: int) -> tuple[int, int]:
    """The modes of the folders and files tagkeeper creates: root's may be read by all."""
    return (0o755, 0o644) if euid == 0 else (0o700, 0o600)


def _euid(euid: int | None) -> int:
    return os.geteuid() if euid is None else euid


class StatLike(Protocol):
    @property
    def st_mode(self) -> int: ...

    @property
    def st_uid(self) -> int: ...

    @property
    def st_gid(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Unsafe:
    """Why a file or folder cannot be trusted, and the command that fixes it."""

    problem: str
    fix: str


def judge(
    path: str,
    st: StatLike,
    *,
    euid: int,
    sticky_ok: bool = False,
    group_private: Callable[[int], bool] = lambda gid: False,
    acl: bool = False,
    user_name: Callable[[int], str] = lambda uid: f"uid {uid}",
    group_name: Callable[[int], str] = lambda gid: f"gid {gid}",
    chown_to: str = "root",
) -> Unsafe | None:
    """Whether a user other than root and ``euid`` can change ``path`` (pure).

    It must belong to root or ``euid`` (else: ``chown chown_to path``). Other users may
    not write it, unless it is a sticky folder and ``sticky_ok`` (an entry there can only
    be renamed or removed by its owner). Its group may write it only when
    ``group_private(gid)`` says that group has no other member and no ACL (``acl``)
    names anyone else: with an ACL, the group bits are the ACL's mask.
    """
    kind = "folder" if stat.S_ISDIR(st.st_mode) else "file"
    if st.st_uid not in (0, euid):
        return Unsafe(
            f"the {kind} {path} belongs to {user_name(st.st_uid)}",
            f"chown {chown_to} {path}, or {_WHERE}",
        )
    mode = stat.S_IMODE(st.st_mode)
    if sticky_ok and stat.S_ISDIR(st.st_mode) and mode & stat.S_ISVTX:
        return None  # only an entry's owner can rename or remove it
    other = bool(mode & stat.S_IWOTH)
    group = bool(mode & stat.S_IWGRP) and (acl or not group_private(st.st_gid))
    if not (other or group):
        return None
    if other:
        who = "every user"
    elif acl:
        who = "the users and groups its access control list names"
    else:
        who = f"the other members of group {group_name(st.st_gid)}"
    bits = ("g" if group else "") + ("o" if other else "")
    return Unsafe(
        f"the {kind} {path} can be written by {who} (mode {mode:04o})",
        f"chmod {bits}-w {path}",
    )


# -- what the system says about users and groups ---------------------------------------


def _user(uid: int, *, numeric: bool = False) -> str:
    """A user's name; when it has none, ``uid N`` (``N`` with ``numeric``, for chown)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return str(uid) if numeric else f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return f"gid {gid}"


def _group_private(euid: int) -> Callable[[int], bool]:
    def private(gid: int) -> bool:
        """No member of ``gid`` but root and ``euid`` (listed or by primary group)."""
        try:
            group = grp.getgrgid(gid)
            me = pwd.getpwuid(euid).pw_name
        except KeyError:
            return False
        if any(member not in (me, "root") for member in group.gr_mem):
            return False
        return all(entry.pw_uid in (0, euid) for entry in pwd.getpwall() if entry.pw_gid == gid)

    return private


def _has_acl(fd: int) -> bool:
    """Whether the file open at ``fd`` has an access ACL (Linux; elsewhere: no)."""
    listxattr = getattr(os, "listxattr", None)
    if listxattr is None:
        return False
    try:
        names: list[str] = listxattr(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return "system.posix_acl_access" in names


def _refuse(subject: str, unsafe: Unsafe) -> LedgerError:
    return LedgerError(
        f"{subject} cannot be trusted: {unsafe.problem}, so another user could change "
        "what a deploy or rollback runs",
        hint=f"{unsafe.fix}; nothing was read or changed",
    )


def _check(
    subject: str, path: str, fd: int, euid: int, *, ancestor: bool = False
) -> os.stat_result:
    """Judge the file or folder open at ``fd``: its ``fstat``, or :class:`LedgerError`.

    ``ancestor``: a folder above the ledger's own (a sticky ``/tmp`` is fine there).
    """
    st = os.fstat(fd)
    acl = bool(stat.S_IMODE(st.st_mode) & stat.S_IWGRP) and _has_acl(fd)
    unsafe = judge(
        path, st, euid=euid, sticky_ok=ancestor, group_private=_group_private(euid),
        acl=acl, user_name=_user, group_name=_group,
        chown_to="root" if ancestor else _user(euid, numeric=True),
    )  # fmt: skip
    if unsafe is not None:
        raise _refuse(subject, unsafe)
    return st


# -- folders ----------------------------------------------------------------------------


@dataclass(slots=True)
class Folder:
    """A folder reached by a checked walk: ``path`` is its real path, ``fd`` its descriptor."""

    path: Path
    fd: int
    euid: int

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def __enter__(self) -> Folder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(slots=True)
class _Step:
    name: str
    fd: int
    sticky: bool


def _link_refused(subject: str, path: str, target: str, *, folder: bool) -> LedgerError:
    kind = "folder" if folder else "file"
    return LedgerError(
        f"{subject} cannot be trusted: the {kind} {path} is a symbolic link (to {target}); "
        "tagkeeper opens its ledger, its folder and its locks only by their real names, so "
        "that a link cannot send what decides a rollback elsewhere",
        hint=f"name the real path instead (--ledger or $TAGKEEPER_LEDGER), or replace the "
        f"link with what it points to (mv {target} {path}); nothing was read or changed",
    )


class _Walk:
    """One walk from ``/`` to a folder; :func:`open_folder` runs it."""

    def __init__(self, subject: str, euid: int, *, create: bool, strict: int) -> None:
        self.subject = subject
        self.euid = euid
        self.create = create
        self.strict = strict
        self.links = 0
        self.stack: list[_Step] = []

    def run(self, path: Path) -> Folder:
        pending = list(Path(os.path.abspath(path)).parts[1:])
        try:
            root = os.open("/", _DIR_FLAGS)
            self.stack.append(_Step("", root, False))
            st = _check(self.subject, "/", root, self.euid, ancestor=True)
            self.stack[0].sticky = bool(st.st_mode & stat.S_ISVTX)
            while pending:
                name = pending.pop(0)
                if name == "..":
                    if len(self.stack) > 1:
                        os.close(self.stack.pop().fd)
                elif name not in ("", "."):
                    pending[:0] = self.step(name, strict=len(pending) < self.strict)
        except BaseException:
            self.close(everything=True)
            raise
        self.close(everything=False)
        last = self.stack[-1]
        return Folder(Path("/", *(s.name for s in self.stack[1:])), last.fd, self.euid)

    def close(self, *, everything: bool) -> None:
        for step in self.stack if everything else self.stack[:-1]:
            with contextlib.suppress(OSError):
                os.close(step.fd)

    def step(self, name: str, *, strict: bool) -> list[str]:
        """Go into folder ``name``; what to walk before the rest (a link's target)."""
        parent = self.stack[-1]
        shown = str(Path("/", *(s.name for s in self.stack[1:]), name))
        created = False
        try:
            st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        except FileNotFoundError:
            if not self.create:
                raise
            created = _make_folder(parent.fd, name, modes(self.euid)[0])
            st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            return self.follow(parent, name, shown, st, strict=strict)
        mode = modes(self.euid)[0] if created else None
        fd = _open_folder_fd(parent.fd, name, self.subject, shown, mode=mode)
        self.stack.append(_Step(name, fd, False))
        st = _check(self.subject, shown, fd, self.euid, ancestor=not strict)
        self.stack[-1].sticky = bool(st.st_mode & stat.S_ISVTX)
        return []

    def follow(
        self, parent: _Step, name: str, shown: str, st: os.stat_result, *, strict: bool
    ) -> list[str]:
        target = os.readlink(name, dir_fd=parent.fd)
        if strict:
            raise _link_refused(self.subject, shown, target, folder=True)
        if parent.sticky and st.st_uid not in (0, self.euid):
            raise _refuse(
                self.subject,
                Unsafe(
                    f"the link {shown} in a folder every user can write belongs to "
                    f"{_user(st.st_uid)}",
                    f"chown -h root {shown}, or {_WHERE}",
                ),
            )
        self.links += 1
        if self.links > MAX_LINKS:
            raise LedgerError(f"{self.subject}: too many symbolic links on the way ({shown})")
        if not target.startswith("/"):
            return list(Path(target).parts)
        while len(self.stack) > 1:
            os.close(self.stack.pop().fd)
        return list(Path(target).parts[1:])


def open_folder(
    path: Path, *, subject: str, create: bool, strict: int = 1, euid: int | None = None
) -> Folder:
    """Walk to the folder ``path`` from ``/``, checking each folder on the way.

    Missing folders are created (mode :func:`modes`) when ``create``, else
    :class:`FileNotFoundError` is raised. The last ``strict`` folders of the path may not
    be links, nor writable by all even when sticky. ``subject`` names what is being
    opened in messages (``the deploy ledger /var/lib/tagkeeper/ledger.db``).
    """
    return _Walk(subject, _euid(euid), create=create, strict=strict).run(path)


def _make_folder(parent: int, name: str, mode: int) -> bool:
    """Create folder ``name``; ``False`` when another process just did."""
    try:
        os.mkdir(name, mode, dir_fd=parent)
    except FileExistsError:
        return False
    return True


def _open_folder_fd(parent: int, name: str, subject: str, shown: str, *, mode: int | None) -> int:
    """Open folder ``name``; ``mode``: just created, set its mode (whatever the umask)."""
    flags = _DIR_FLAGS
    if mode is not None:  # a descriptor that can change the mode
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=parent)
    except NotADirectoryError:
        raise LedgerError(
            f"{subject} cannot be created: {shown} is not a folder",
            hint="point $TAGKEEPER_LEDGER (or --ledger) at a file in a folder",
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _changed(subject, shown) from None
        raise
    if not stat.S_ISDIR(os.fstat(fd).st_mode):  # replaced by a link since it was looked at
        os.close(fd)
        raise _changed(subject, shown)
    if mode is not None:
        os.fchmod(fd, mode)
    return fd


def _changed(subject: str, path: str) -> LedgerError:
    return LedgerError(
        f"{subject} cannot be trusted: {path} changed while it was being checked",
        hint="find out who is changing it; nothing was read or changed",
    )


# -- files ------------------------------------------------------------------------------


def _regular(folder: Folder, name: str, fd: int, subject: str) -> os.stat_result:
    """Judge the file open at ``fd`` (``name`` in ``folder``): a safe regular file."""
    shown = str(folder.path / name)
    st = os.fstat(fd)
    if stat.S_ISLNK(st.st_mode):  # O_PATH opens a link itself
        raise _link_refused(subject, shown, _target(folder, name), folder=False)
    if not stat.S_ISREG(st.st_mode):
        hint = f"remove it (rm {shown}), or point $TAGKEEPER_LEDGER (or --ledger) elsewhere"
        if stat.S_ISDIR(st.st_mode):
            hint = f"point $TAGKEEPER_LEDGER (or --ledger) at a file, e.g. {shown}/ledger.db"
        raise LedgerError(f"{subject} is not a regular file ({shown})", hint=hint)
    return _check(subject, shown, fd, folder.euid)


def check_file(folder: Folder, name: str, *, subject: str, create: bool) -> os.stat_result | None:
    """Check (and when ``create``, create) the file ``name`` in ``folder``; its ``fstat``.

    ``None`` when it does not exist and ``create`` is false. The file is opened with
    ``O_NOFOLLOW`` (created with ``O_EXCL``, mode :func:`modes`, whatever the umask) and
    judged on its descriptor.
    """
    fd = _open_nofollow(folder, name, subject, create=create)
    if fd is None:
        return None
    try:
        return _regular(folder, name, fd, subject)
    finally:
        os.close(fd)


def _open_nofollow(folder: Folder, name: str, subject: str, *, create: bool) -> int | None:
    mode = modes(folder.euid)[1]
    while True:
        try:
            return os.open(name, _PATH_FLAGS, dir_fd=folder.fd)
        except FileNotFoundError:
            if not create:
                return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # without O_PATH, a link fails to open
                shown = str(folder.path / name)
                raise _link_refused(subject, shown, _target(folder, name), folder=False) from None
            raise
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, mode, dir_fd=folder.fd)
        except FileExistsError:
            continue  # created meanwhile by another tagkeeper: open that one
        os.fchmod(fd, mode)
        return fd


def _target(folder: Folder, name: str) -> str:
    try:
        return os.readlink(name, dir_fd=folder.fd)
    except OSError:
        return "?"


def check_side_files(folder: Folder, name: str, *, subject: str) -> None:
    """SQLite's files beside database ``name`` (``-wal``, ``-shm``, ``-journal``): each
    absent, or a regular file that only root and the user can change."""
    for suffix in SIDE_SUFFIXES:
        check_file(folder, name + suffix, subject=subject, create=False)


def same_file(folder: Folder, name: str, checked: os.stat_result) -> bool:
    """Whether ``name`` in ``folder`` is still the file ``checked`` (not a link to it)."""
    try:
        st = os.stat(name, dir_fd=folder.fd, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (checked.st_dev, checked.st_ino)


def open_rw(folder: Folder, name: str, *, subject: str) -> int:
    """Open (creating) the file ``name`` read-write without following a link, checked.

    For lock files: the descriptor is returned open (close-on-exec); a file it creates
    gets mode :func:`modes` whatever the umask.
    """
    mode = modes(folder.euid)[1]
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(name, flags, mode, dir_fd=folder.fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            shown = str(folder.path / name)
            raise _link_refused(subject, shown, _target(folder, name), folder=False) from None
        raise
    try:
        st = _regular(folder, name, fd, subject)
        if st.st_size == 0 and st.st_uid == folder.euid and stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


__all__ = [
    "SIDE_SUFFIXES",
    "Folder",
    "Unsafe",
    "check_file",
    "check_side_files",
    "judge",
    "modes",
    "open_folder",
    "open_rw",
    "same_file",
]
