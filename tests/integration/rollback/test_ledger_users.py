"""The deploy ledger on a host shared with other users: real users, real attacks.

Root runs tagkeeper as deploy scripts do under ``sudo``; another local user (a throwaway
uid that owns nothing else on this machine, taken with ``setuid`` in a forked process)
tries to choose what root's ``rollback`` deploys by swapping the ledger, planting a
SQLite side file or a link. tagkeeper, in root's process or the user's, runs in process
(``tagkeeper.cli.main``) after a warm-up as root, so that it needs no file the user
cannot read. These tests need root, as CI runs them; they fail (never skip) without it.
"""

from __future__ import annotations

import contextlib
import io
import os
import pwd
import random
import shutil
import sqlite3
import stat
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tagkeeper.cli import main
from tagkeeper.errors import ExitCode, LedgerError
from tagkeeper.rollback.ledger import Actor, Ledger
from tagkeeper.rollback.resolve import DeployStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.integration

REPO = "ghcr.io/acme/app"
GOOD = "sha256:" + "1" * 64
EVIL = "sha256:" + "e" * 64
ACTOR = Actor(user="root", ci_run_url=None, host="web1")


@dataclass
class Ran:
    code: int
    out: str
    err: str


def _free_uid(taken: set[int]) -> int:
    while True:
        uid = random.randint(61000, 64999)  # noqa: S311 - a free id, not a secret
        if uid in taken:
            continue
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid


def as_user(uid: int, action: Callable[[], int], *, umask: int = 0o022) -> Ran:
    """Run ``action`` in a forked process as ``uid`` (group ``uid``, no other group)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.close(out_r)
            os.close(err_r)
            sys.stdout = io.TextIOWrapper(os.fdopen(out_w, "wb"), write_through=True)
            sys.stderr = io.TextIOWrapper(os.fdopen(err_w, "wb"), write_through=True)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.umask(umask)
            code = action()
        except BaseException:  # report it to the parent, whatever it was
            with contextlib.suppress(Exception):
                sys.stderr.write(traceback.format_exc())
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r, "rb") as out, os.fdopen(err_r, "rb") as err:
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return Ran(os.waitstatus_to_exitcode(status), stdout, stderr)


@dataclass
class Host:
    """A folder every user can reach, a user ``alice`` (who deploys) and ``mallory``."""

    base: Path
    alice: int
    mallory: int

    def home(self, uid: int) -> Path:
        home = self.base / f"home-{uid}"
        home.mkdir(mode=0o755)
        os.chown(home, uid, uid)
        return home


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    if os.geteuid() != 0:
        pytest.fail("these tests take other users' ids: run them as root, as .ci/run does")
    for name in ("TAGKEEPER_LEDGER", "XDG_STATE_HOME", "GITHUB_TOKEN", "GH_TOKEN",
                 "GITHUB_REPOSITORY", "GITHUB_ACTIONS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    # warm up: every module the commands below import, loaded while root can read them
    warm = tmp_path / "warm" / "ledger.db"
    for argv in (
        ["record", "--env", "prod", "--image", f"{REPO}:v1.0.0@{GOOD}", "--status",
         "succeeded", "--ledger", str(warm)],
        ["history", "--env", "prod", "--ledger", str(warm), "--format", "json"],
        ["previous", "--image", REPO, "--env", "prod", "--digest", "--current", "v1.1.0",
         "--source", "ledger", "--ledger", str(warm)],
    ):  # fmt: skip
        assert main(argv) == 0, argv
    base = Path(tempfile.mkdtemp(prefix="tagkeeper-users-", dir="/tmp"))
    os.chmod(base, 0o755)  # noqa: S103 - every user must reach their folders in it
    alice = _free_uid(set())
    try:
        yield Host(base, alice, _free_uid({alice}))
    finally:
        shutil.rmtree(base)


def _history(path: Path, *tags: str) -> None:
    """Deploys of ``tags`` in order, each a success, the first with digest GOOD."""
    with Ledger(path) as ledger:
        for i, tag in enumerate(tags):
            ledger.record(
                environment="prod", repository=REPO, tag=tag, status=DeployStatus.SUCCEEDED,
                actor=ACTOR, digest=GOOD if i == 0 else None,
            )  # fmt: skip


def _evil_copy(path: Path, evil: Path) -> None:
    """What the attacker puts in place: the same history, the target's digest theirs."""
    shutil.copyfile(path, evil)
    with sqlite3.connect(evil) as conn:
        conn.execute("UPDATE deploys SET digest = ? WHERE digest = ?", (EVIL, GOOD))


def _previous(path: Path) -> Ran:
    argv = ["previous", "--image", REPO, "--env", "prod", "--digest", "--source", "ledger",
            "--ledger", str(path)]  # fmt: skip
    return _in_process(lambda: main(argv))


def _in_process(action: Callable[[], int]) -> Ran:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = action()
    return Ran(code, out.getvalue(), err.getvalue())


def _mode(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid


# -- what tagkeeper creates, for a user and for root, under umask 000 -------------------


def test_a_users_default_ledger_is_private_under_umask_000(host: Host) -> None:
    home = host.home(host.alice)

    def record() -> int:
        os.environ["HOME"] = str(home)
        os.environ.pop("TAGKEEPER_LEDGER", None)
        return main(["record", "--env", "prod", "--image", f"{REPO}:v1.0.0@{GOOD}",
                     "--status", "succeeded"])  # fmt: skip

    ran = as_user(host.alice, record, umask=0)
    assert ran.code == 0, ran.err
    state = home / ".local" / "state" / "tagkeeper"
    for folder in (home / ".local", home / ".local" / "state", state):
        assert _mode(folder) == (0o700, host.alice), folder
    assert _mode(state / "ledger.db") == (0o600, host.alice)
    for side in state.glob("ledger.db-*"):
        assert _mode(side) == (0o600, host.alice), side
    # and mallory, in her own account, cannot even look
    ran = as_user(host.mallory, lambda: main(["history", "--ledger", str(state / "ledger.db")]))
    assert ran.code == ExitCode.LEDGER


def test_roots_ledger_is_readable_by_all_writable_by_root_only_under_umask_000(
    host: Host,
) -> None:
    path = host.base / "var" / "lib" / "tagkeeper" / "ledger.db"
    previous = os.umask(0)
    try:
        _history(path, "v1.0.0", "v1.1.0")
    finally:
        os.umask(previous)
    for folder in (host.base / "var", host.base / "var" / "lib", path.parent):
        assert _mode(folder) == (0o755, 0), folder
    assert _mode(path) == (0o644, 0)

    def tamper() -> int:  # every way mallory could get at it: none works
        for attempt in (
            lambda: path.write_bytes(b""),
            lambda: os.rename(path, path.with_name("x")),
            lambda: (path.parent / "ledger.db-wal").write_bytes(b"x"),
            lambda: os.symlink("/tmp", path.parent / "locks"),
        ):
            with contextlib.suppress(PermissionError):
                attempt()
                return 1
        return 0

    assert as_user(host.mallory, tamper, umask=0).code == 0
    ran = _previous(path)
    assert (ran.code, ran.out.strip()) == (0, f"{REPO}:v1.0.0@{GOOD}")


# -- root refuses what another user could have swapped ----------------------------------


def test_root_refuses_a_ledger_folder_another_user_can_write_and_the_swap_in_it(
    host: Host,
) -> None:
    folder = host.base / "ledger"
    path = folder / "ledger.db"
    _history(path, "v1.0.0", "v1.1.0")
    os.chmod(folder, 0o777)  # noqa: S103 - what tagkeeper used to create under umask 000

    def swap() -> int:  # mallory's own database, renamed over root's
        _evil_copy(path, folder / "evil.db")
        os.replace(folder / "evil.db", path)
        return 0

    assert as_user(host.mallory, swap).code == 0
    assert os.lstat(path).st_uid == host.mallory
    ran = _previous(path)
    assert ran.code == ExitCode.LEDGER
    assert EVIL not in ran.out
    assert ran.out == ""
    assert f"the folder {folder} can be written by every user (mode 0777)" in ran.err
    assert f"hint: chmod o-w {folder};" in ran.err or f"hint: chmod go-w {folder};" in ran.err


def test_root_refuses_a_ledger_or_folder_another_user_owns(host: Host) -> None:
    folder = host.base / "theirs"
    folder.mkdir(mode=0o755)
    path = folder / "ledger.db"
    _history(path, "v1.0.0", "v1.1.0")
    os.chown(folder, host.mallory, host.mallory)
    ran = _previous(path)
    assert ran.code == ExitCode.LEDGER
    assert f"the folder {folder} belongs to uid {host.mallory}" in ran.err
    assert f"hint: chown root {folder}," in ran.err
    os.chown(folder, 0, 0)
    os.chown(path, host.mallory, host.mallory)
    ran = _previous(path)
    assert ran.code == ExitCode.LEDGER
    assert f"the file {path} belongs to uid {host.mallory}" in ran.err
    assert f"hint: chown root {path}," in ran.err
    os.chown(path, 0, 0)
    assert _previous(path).code == 0  # fixed as the hint says


def test_root_refuses_a_side_file_planted_in_a_sticky_folder(host: Host) -> None:
    folder = host.base / "sticky"
    path = folder / "ledger.db"
    _history(path, "v1.0.0", "v1.1.0")
    os.chmod(folder, 0o1777)  # noqa: S103 - like /tmp: she cannot rename root's ledger...
    assert not (folder / "ledger.db-wal").exists()  # SQLite removes it on a clean close

    def plant() -> int:  # ...but she can create the write-ahead log SQLite would replay
        (folder / "ledger.db-wal").write_bytes(b"\0" * 32)
        return 0

    assert as_user(host.mallory, plant).code == 0
    ran = _previous(path)
    assert ran.code == ExitCode.LEDGER
    assert f"the folder {folder} can be written by every user (mode 1777)" in ran.err
    assert f"hint: chmod o-w {folder};" in ran.err


def test_a_user_refuses_a_ledger_another_user_owns(host: Host) -> None:
    home = host.home(host.alice)
    state = home / "state"
    state.mkdir(mode=0o700)
    os.chown(state, host.alice, host.alice)
    path = state / "ledger.db"
    _history(host.base / "made" / "ledger.db", "v1.0.0", "v1.1.0")
    shutil.move(host.base / "made" / "ledger.db", path)
    os.chown(path, host.mallory, host.mallory)
    os.chmod(path, 0o644)

    def previous() -> int:
        return main(["previous", "--image", REPO, "--env", "prod", "--source", "ledger",
                     "--ledger", str(path)])  # fmt: skip

    ran = as_user(host.alice, previous)
    assert ran.code == ExitCode.LEDGER
    assert f"the file {path} belongs to uid {host.mallory}" in ran.err
    assert f"hint: chown {host.alice} {path}," in ran.err


# -- the race: a link swapped in and out while root opens ---------------------------------


def _swapper(folder: Path, victim: Path, seconds: float) -> Callable[[], int]:
    """mallory's loop: the ledger becomes a link to ``victim``, then her own file, ..."""

    def loop() -> int:
        path = folder / "ledger.db"
        swaps = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder / "tmp")
                os.symlink(victim, folder / "tmp")
                os.replace(folder / "tmp", path)
                shutil.copyfile(victim, folder / "tmp")
                os.replace(folder / "tmp", path)
            except PermissionError:
                time.sleep(0.001)
                continue
            swaps += 1
        print(swaps)
        return 0

    return loop


@pytest.mark.parametrize("mode", [0o777, 0o755])
def test_a_link_swapped_in_and_out_while_root_opens_is_never_used(host: Host, mode: int) -> None:
    folder = host.base / "race"
    path = folder / "ledger.db"
    _history(path, "v1.0.0", "v1.1.0")
    os.chmod(folder, mode)
    victim = host.base / "victim.db"
    _history(victim, "v9.0.0", "v9.1.0")
    os.chmod(victim, 0o644)
    before = victim.read_bytes()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        ran = as_user(host.mallory, _swapper(folder, victim, 3.0))
        os.write(write, ran.out.encode() or b"0")
        os._exit(ran.code)
    os.close(write)
    opened = refused = 0
    seen: set[str] = set()
    codes: set[int] = set()
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        try:
            with Ledger(path, create=False) as ledger:
                seen.update(r.tag for r in ledger.history())
            opened += 1
        except LedgerError as exc:
            codes.add(exc.exit_code)
            refused += 1
    with os.fdopen(read) as pipe:
        swaps = int(pipe.read().strip() or 0)
    os.waitpid(pid, 0)
    assert codes <= {ExitCode.LEDGER}
    assert victim.read_bytes() == before  # never opened through the link, never changed
    assert not seen & {"v9.0.0", "v9.1.0"}
    if mode == 0o777:  # she could swap: tagkeeper never read a byte
        assert swaps > 0
        assert (opened, seen) == (0, set())
        assert refused > 0
    else:  # she could not touch it: tagkeeper read root's history every time
        assert swaps == 0
        assert refused == 0
        assert opened > 0
        assert seen == {"v1.0.0", "v1.1.0"}
