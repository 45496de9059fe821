"""The deploy ledger on a shared host: modes whatever the umask, links, other writers, races.

Owners other than root and the user need a second user: those cases run as real users in
``tests/integration/rollback/test_ledger_users.py``. Here the user is whoever runs the
tests; :func:`judge` itself is checked for every owner, mode and group.
"""

from __future__ import annotations

import grp
import os
import pwd
import sqlite3
import stat
import struct
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.cli import main
from tagkeeper.deploy.lock import DeployLock, Holder, lock_path
from tagkeeper.errors import ExitCode, LedgerError
from tagkeeper.rollback import hostfs
from tagkeeper.rollback.ledger import Actor, Ledger
from tagkeeper.rollback.resolve import DeployStatus

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

REPO = "ghcr.io/o/app"
ACTOR = Actor(user="alice", ci_run_url=None, host="web1")
EUID = os.geteuid()
DIR_MODE, FILE_MODE = hostfs.modes(EUID)


@pytest.fixture
def umask_000() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _record(path: Path, tag: str = "v1.0.0") -> None:
    with Ledger(path) as ledger:
        ledger.record(
            environment="prod", repository=REPO, tag=tag, status=DeployStatus.SUCCEEDED,
            actor=ACTOR,
        )  # fmt: skip


def _refused(path: Path, *, create: bool = True) -> LedgerError:
    with pytest.raises(LedgerError) as caught:
        Ledger(path, create=create)
    assert caught.value.exit_code == ExitCode.LEDGER
    return caught.value


# -- what tagkeeper creates ---------------------------------------------------------------


def test_under_umask_000_folders_files_and_side_files_are_private(
    tmp_path: Path, umask_000: None
) -> None:
    path = tmp_path / "state" / "deep" / "tagkeeper" / "ledger.db"
    _record(path)
    for folder in (tmp_path / "state", tmp_path / "state" / "deep", path.parent):
        assert _mode(folder) == DIR_MODE, folder
        assert os.lstat(folder).st_uid == EUID
    with Ledger(path) as ledger:  # the side files exist while it is open
        ledger.history()
        for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
            assert _mode(path.parent / name) == FILE_MODE, name
            assert os.lstat(path.parent / name).st_uid == EUID
    with DeployLock(
        lock_path(path, "prod", "app"), Holder.current(["deploy"], "alice"), what="prod"
    ):
        assert _mode(path.parent / "locks") == DIR_MODE
        assert _mode(lock_path(path, "prod", "app")) == FILE_MODE


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir(mode=0o750)
    os.chmod(folder, 0o750)  # noqa: S103 - the mode under test
    _record(folder / "ledger.db")
    assert _mode(folder) == 0o750  # not others' to write: used as it is, never changed


# -- folders that others can write -------------------------------------------------------


@pytest.mark.parametrize(("mode", "bits"), [(0o757, "o"), (0o777, None), (0o1777, "o")])
def test_a_ledger_folder_that_every_user_can_write_is_refused(
    tmp_path: Path, mode: int, bits: str | None
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    _record(folder / "ledger.db")
    os.chmod(folder, mode)  # sticky or not: the side files and locks are created here
    before = (folder / "ledger.db").read_bytes()
    for create in (True, False):  # deploy, record... and history, previous, prune
        error = _refused(folder / "ledger.db", create=create)
        assert f"the folder {folder} can be written by" in error.message
        assert error.hint is not None
        assert f"-w {folder}" in error.hint
        if bits is not None:
            assert error.hint.startswith(f"chmod {bits}-w {folder};")
    assert (folder / "ledger.db").read_bytes() == before


def test_an_ancestor_writable_by_all_is_refused_unless_sticky(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    mine = shared / "mine"
    mine.mkdir(parents=True)
    os.chmod(mine, 0o700)
    # like /tmp: nobody else can rename "mine"
    os.chmod(shared, 0o1777)  # noqa: S103 - the mode under test
    _record(mine / "ledger.db")
    # now anyone can rename "mine" and put another in its place
    os.chmod(shared, 0o777)  # noqa: S103 - the mode under test
    error = _refused(mine / "ledger.db")
    assert f"chmod o-w {shared}" in (error.hint or "")


def test_a_ledger_file_or_side_file_others_can_write_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    _record(path)
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm", "ledger.db-journal"):
        target = tmp_path / name
        existed = target.exists()
        if not existed:
            target.write_bytes(b"")
        old = _mode(target)
        os.chmod(target, 0o666)  # noqa: S103 - the mode under test
        error = _refused(path)
        assert f"the file {target} can be written by every user (mode 0666)" in error.message
        assert (error.hint or "").startswith("chmod ")
        assert f"-w {target};" in (error.hint or "")
        os.chmod(target, old)
        if not existed:
            target.unlink()
    _record(path, "v2.0.0")  # and fine again once fixed


# -- links --------------------------------------------------------------------------------


def test_a_ledger_that_is_a_link_is_refused_and_its_target_named(tmp_path: Path) -> None:
    real = tmp_path / "real" / "ledger.db"
    _record(real)
    before = real.read_bytes()
    link_folder = tmp_path / "state" / "tagkeeper"
    link_folder.mkdir(parents=True)
    (link_folder / "ledger.db").symlink_to(real)
    for create in (True, False):
        error = _refused(link_folder / "ledger.db", create=create)
        assert (
            f"the file {link_folder / 'ledger.db'} is a symbolic link (to {real})" in error.message
        )
        assert f"mv {real} {link_folder / 'ledger.db'}" in (error.hint or "")
        assert "--ledger" in (error.hint or "")
    assert real.read_bytes() == before
    assert sorted(p.name for p in real.parent.iterdir()) == ["ledger.db"]  # not even opened


def test_an_explicit_ledger_that_is_a_link_is_refused_too_and_its_real_path_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "disk" / "ledger.db"
    _record(real)
    link = tmp_path / "ledger.db"
    link.symlink_to(real)
    assert main(["history", "--ledger", str(link)]) == ExitCode.LEDGER
    err = capsys.readouterr().err
    assert f"the file {link} is a symbolic link (to {real})" in err
    assert "name the real path instead (--ledger" in err
    assert main(["history", "--ledger", str(real), "--format", "json"]) == 0
    assert '"tag": "v1.0.0"' in capsys.readouterr().out


def test_a_dangling_link_is_not_followed_nor_taken_for_no_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "victim.db"
    (tmp_path / "ledger.db").symlink_to(elsewhere)
    _refused(tmp_path / "ledger.db")
    assert not elsewhere.exists()
    # readers do not go on as if nothing was deployed (auto would ask the registry)
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(tmp_path / "ledger.db"))
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["history"]) == ExitCode.LEDGER
    assert main(["previous", "--image", REPO, "--current", "v2.0.0"]) == ExitCode.LEDGER
    assert "is a symbolic link" in capsys.readouterr().err
    assert not elsewhere.exists()


def test_the_ledgers_folder_may_not_be_a_link_but_an_ancestor_may(tmp_path: Path) -> None:
    real = tmp_path / "disk" / "state"
    real.mkdir(parents=True)
    (tmp_path / "state").symlink_to(real)
    path = tmp_path / "state" / "ledger.db"
    error = _refused(path)
    assert f"the folder {tmp_path / 'state'} is a symbolic link" in error.message
    (tmp_path / "home").symlink_to(tmp_path / "disk")  # /home -> /usr/home, on some hosts
    via = tmp_path / "home" / "state" / "ledger.db"
    _record(via)
    with Ledger(via, create=False) as ledger:
        assert ledger.real_path == real / "ledger.db"
        assert [r.tag for r in ledger.history()] == ["v1.0.0"]


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
def test_a_side_file_that_is_a_link_is_refused(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "ledger.db"
    _record(path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    side = tmp_path / f"ledger.db{suffix}"
    side.unlink(missing_ok=True)
    side.symlink_to(victim)
    error = _refused(path, create=False)
    assert f"the file {side} is a symbolic link" in error.message
    assert victim.read_bytes() == b"keep me"


def test_a_lock_file_or_locks_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    _record(ledger)
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    lock = lock_path(ledger, "prod", "app")
    lock.parent.mkdir()
    lock.symlink_to(victim)
    holder = Holder.current(["deploy"], "alice")
    with pytest.raises(LedgerError, match="is a symbolic link") as caught:
        DeployLock(lock, holder, what="prod").acquire()
    assert caught.value.exit_code == ExitCode.LEDGER
    assert victim.read_text() == "keep me"  # never truncated nor written
    lock.unlink()
    lock.parent.rmdir()
    (tmp_path / "elsewhere").mkdir()
    lock.parent.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LedgerError, match=r"the folder .*locks is a symbolic link"):
        DeployLock(lock, holder, what="prod").acquire()
    assert list((tmp_path / "elsewhere").iterdir()) == []


# -- the race between the check and SQLite's open -----------------------------------------


@pytest.mark.parametrize("swap", ["link", "file"])
def test_a_ledger_replaced_between_the_check_and_the_open_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    path = tmp_path / "ledger.db"
    _record(path)
    victim = tmp_path / "other.db"
    _record(victim, "v9.9.9")
    os.chmod(victim, FILE_MODE)
    before = victim.read_bytes()
    checked = hostfs.check_side_files

    def swap_after_the_check(folder: hostfs.Folder, name: str, *, subject: str) -> None:
        checked(folder, name, subject=subject)
        os.replace(path, tmp_path / "moved.db")
        if swap == "link":
            path.symlink_to(victim)
        else:
            os.link(victim, path)

    monkeypatch.setattr(hostfs, "check_side_files", swap_after_the_check)
    with pytest.raises(LedgerError, match="was replaced while it was being opened") as caught:
        Ledger(path, create=False)
    assert caught.value.exit_code == ExitCode.LEDGER
    assert victim.read_bytes() == before


# -- through the command line -----------------------------------------------------------


def test_every_ledger_command_refuses_an_unsafe_ledger_with_exit_12(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    path = folder / "ledger.db"
    _record(path)
    os.chmod(folder, 0o777)  # noqa: S103 - the mode under test
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(path))
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)
    for argv in (
        ["history", "--env", "prod"],
        ["previous", "--image", REPO, "--env", "prod", "--source", "ledger"],
        ["previous", "--image", REPO, "--env", "prod"],  # auto: never falls through
        ["record", "--env", "prod", "--image", f"{REPO}:v2.0.0", "--status", "started"],
        ["rollback", "--env", "prod", "--image", REPO, "--", "true"],
        ["deploy", "--env", "prod", "--image", f"{REPO}:v2.0.0", "--no-resolve-digest",
         "--", "true"],
    ):  # fmt: skip
        assert main(argv) == ExitCode.LEDGER, argv
        err = capsys.readouterr().err
        assert "hint: chmod " in err, argv
        assert f"-w {folder};" in err, argv
    os.chmod(folder, 0o755)  # noqa: S103 - the mode under test
    with sqlite3.connect(path) as conn:  # nothing was recorded meanwhile
        assert conn.execute("SELECT count(*) FROM deploys").fetchone()[0] == 1


# -- judge: the rule itself ---------------------------------------------------------------


class _Stat:
    def __init__(self, mode: int, uid: int, gid: int) -> None:
        self.st_mode = mode
        self.st_uid = uid
        self.st_gid = gid


ME = 1000
kinds = st.sampled_from([stat.S_IFDIR, stat.S_IFREG])
modes = st.integers(min_value=0, max_value=0o7777)
owners = st.sampled_from([0, ME, 1001, 65534])


@given(kind=kinds, mode=modes, uid=owners, flags=st.tuples(st.booleans(), st.booleans(),
                                                            st.booleans()))  # fmt: skip
def test_judge_refuses_other_owners_and_other_writers_and_its_fix_works(
    kind: int, mode: int, uid: int, flags: tuple[bool, bool, bool]
) -> None:
    sticky_ok, private, acl = flags

    def verdict(m: int, owner: int) -> hostfs.Unsafe | None:
        return hostfs.judge(
            "/x", _Stat(kind | m, owner, 50), euid=ME, sticky_ok=sticky_ok,
            group_private=lambda gid: private, acl=acl,
        )  # fmt: skip

    unsafe = verdict(mode, uid)
    if uid not in (0, ME):
        assert unsafe is not None
        assert unsafe.fix.startswith("chown ")
        unsafe = verdict(mode, ME)  # after the chown it asks for
    others = bool(mode & stat.S_IWOTH)
    sticky_dir = kind == stat.S_IFDIR and bool(mode & stat.S_ISVTX)
    group = bool(mode & stat.S_IWGRP)
    expected = not (sticky_ok and sticky_dir) and (others or (group and (acl or not private)))
    assert (unsafe is not None) is expected
    if unsafe is not None:
        bits, path = unsafe.fix.removeprefix("chmod ").split("-w ")
        assert path == "/x"
        assert set(bits) <= {"g", "o"}
        fixed = mode & ~(
            (stat.S_IWGRP if "g" in bits else 0) | (stat.S_IWOTH if "o" in bits else 0)
        )
        assert verdict(fixed, ME) is None  # the chmod it names is enough


@given(kind=kinds, mode=modes, uid=owners)
def test_judge_never_refuses_fewer_writers(kind: int, mode: int, uid: int) -> None:
    for bit in (stat.S_IWGRP, stat.S_IWOTH):
        more = hostfs.judge("/x", _Stat(kind | mode | bit, uid, 50), euid=ME)
        fewer = hostfs.judge("/x", _Stat(kind | (mode & ~bit), uid, 50), euid=ME)
        assert fewer is None or more is not None


# -- groups and access control lists -------------------------------------------------------


def _acl_granting_write_to(uid: int) -> bytes:
    """A POSIX access ACL (the kernel's xattr form) that gives ``uid`` rwx."""

    def entry(tag: int, perm: int, qualifier: int = 0xFFFFFFFF) -> bytes:
        return struct.pack("<HHI", tag, perm, qualifier)

    user_obj, user, group_obj, mask, other = 0x01, 0x02, 0x04, 0x10, 0x20
    return struct.pack("<I", 2) + b"".join(
        (entry(user_obj, 7), entry(user, 7, uid), entry(group_obj, 5), entry(mask, 7),
         entry(other, 5))
    )  # fmt: skip


def test_a_folder_whose_acl_lets_another_user_write_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "acl"
    _record(folder / "ledger.db")
    os.setxattr(folder, "system.posix_acl_access", _acl_granting_write_to(EUID + 4242))
    assert _mode(folder) & stat.S_IWGRP  # the group bits are the ACL's mask now
    error = _refused(folder / "ledger.db")
    assert "the users and groups its access control list names" in error.message
    assert (error.hint or "").startswith(f"chmod g-w {folder};")
    os.chmod(folder, _mode(folder) & ~stat.S_IWGRP)  # as the hint says: the mask drops w
    _record(folder / "ledger.db", "v2.0.0")


def test_a_private_group_may_write_a_shared_one_may_not(monkeypatch: pytest.MonkeyPatch) -> None:
    users = {1000: "alice", 1001: "bob", 0: "root"}
    groups = {1000: ("alice", []), 50: ("staff", ["alice", "bob"]), 60: ("ops", ["alice"]),
              70: ("deploy", [])}  # fmt: skip
    primary = {"alice": 1000, "bob": 70, "root": 0}  # bob's primary group is deploy

    def getgrgid(gid: int) -> grp.struct_group:
        if gid not in groups:
            raise KeyError(gid)
        name, members = groups[gid]
        return grp.struct_group((name, "x", gid, members))

    def passwd(uid: int) -> pwd.struct_passwd:
        name = users[uid]
        return pwd.struct_passwd((name, "x", uid, primary[name], "", "/", "/bin/sh"))

    def getpwuid(uid: int) -> pwd.struct_passwd:
        if uid not in users:
            raise KeyError(uid)
        return passwd(uid)

    monkeypatch.setattr(grp, "getgrgid", getgrgid)
    monkeypatch.setattr(pwd, "getpwuid", getpwuid)
    monkeypatch.setattr(pwd, "getpwall", lambda: [passwd(uid) for uid in users])
    private = hostfs._group_private(1000)
    assert private(1000)  # alice's own group
    assert private(60)  # only alice in it
    assert not private(50)  # bob is listed
    assert not private(70)  # bob's primary group, though nobody is listed
    assert not private(99)  # unknown: fail closed
    assert not hostfs._group_private(4242)(1000)  # a user without a name: fail closed
