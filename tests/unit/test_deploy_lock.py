"""The deploy lock: one holder per environment and container, freed when its holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tagkeeper.deploy.lock import DeployLock, Holder, lock_path, read_holder
from tagkeeper.errors import DeployLocked, ExitCode

if TYPE_CHECKING:
    from collections.abc import Iterator

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tagkeeper.deploy.lock import DeployLock, Holder
    lock = DeployLock(Path(sys.argv[1]), Holder.current(["tagkeeper", "deploy"], "bob"),
                      what="prod (container app)")
    lock.acquire()
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    lock.release()
    print("released", flush=True)
    time.sleep(60)
    """
)


def _holder() -> Holder:
    return Holder.current(["tagkeeper", "deploy", "--env", "prod"], "alice")


@pytest.fixture
def child(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _hold(
    started: list[subprocess.Popen[str]], path: Path, seconds: float
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    started.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_lock_refuses_the_next_deploy_naming_its_holder(
    tmp_path: Path, child: list[subprocess.Popen[str]]
) -> None:
    path = lock_path(tmp_path / "ledger.db", "prod", "app")
    proc = _hold(child, path, 60)
    lock = DeployLock(path, _holder(), what="prod (container app)")
    with pytest.raises(DeployLocked) as info:
        lock.acquire()
    assert info.value.exit_code is ExitCode.LOCKED
    message = info.value.message
    assert message.startswith("another deploy of prod (container app) is running: ")
    assert f"pid {proc.pid} on " in message
    assert " by bob since " in message
    assert "(tagkeeper deploy)" in message
    assert "--lock-wait" in (info.value.hint or "")
    holder, running = read_holder(path)
    assert holder is not None
    assert (holder.pid, holder.user, running) == (proc.pid, "bob", True)


def test_lock_wait_waits_for_the_holder_to_finish(
    tmp_path: Path, child: list[subprocess.Popen[str]]
) -> None:
    path = lock_path(tmp_path / "ledger.db", "prod", "app")
    proc = _hold(child, path, 1.0)
    start = time.monotonic()
    with DeployLock(path, _holder(), what="prod", wait=20) as lock:
        waited = time.monotonic() - start
        assert lock.held
        assert lock.taken_over is None  # the holder let go cleanly
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "released"
    assert waited > 0.5
    assert read_holder(path) == (None, False)


def test_a_holder_killed_with_sigkill_frees_the_lock_and_is_named_as_taken_over(
    tmp_path: Path, child: list[subprocess.Popen[str]]
) -> None:
    path = lock_path(tmp_path / "ledger.db", "prod", "app")
    proc = _hold(child, path, 60)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    holder, running = read_holder(path)
    assert holder is not None
    assert holder.pid == proc.pid
    assert not running  # status can say the recorded holder is gone
    with DeployLock(path, _holder(), what="prod") as lock:
        assert lock.taken_over is not None
        assert lock.taken_over.pid == proc.pid
        assert read_holder(path)[0] == lock.holder


def test_other_environments_and_containers_never_wait(
    tmp_path: Path, child: list[subprocess.Popen[str]]
) -> None:
    ledger = tmp_path / "ledger.db"
    _hold(child, lock_path(ledger, "prod", "app"), 60)
    for env, container in (("staging", "app"), ("prod", "worker")):
        with DeployLock(lock_path(ledger, env, container), _holder(), what=env) as lock:
            assert lock.held


def test_lock_files_are_named_safely_and_never_collide() -> None:
    ledger_path = Path("/var/lib/tagkeeper/ledger.db")
    names = {
        lock_path(ledger_path, env, container).name
        for env, container in (("eu/prod", "app"), ("eu", "prod--app"), ("eu prod", "app"))
    }
    assert len(names) == 3
    assert all("/" not in name for name in names)
    assert lock_path(ledger_path, "prod", "app").parent == ledger_path.parent / "locks"


def test_the_descriptor_is_not_inherited(tmp_path: Path) -> None:
    path = lock_path(tmp_path / "ledger.db", "prod", "app")
    with DeployLock(path, _holder(), what="prod") as lock:
        assert lock._fd is not None
        assert not os.get_inheritable(lock._fd)


def test_holder_text_round_trips_and_junk_is_not_a_holder() -> None:
    import json

    holder = Holder(42, "web1", None, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "x")
    assert Holder.from_text(json.dumps(holder.as_dict())) == holder
    assert holder.describe() == "pid 42 on web1 since 2026-01-02 03:04:05Z (x)"
    for junk in ("", "{", "[]", '{"pid": "x"}', '{"pid": 1}'):
        assert Holder.from_text(junk) is None
