"""The ledger under real processes: concurrent writers, a SIGKILLed and a SIGTERMed deploy."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from tagkeeper.rollback.ledger import Ledger
from tagkeeper.rollback.resolve import DeployStatus

if TYPE_CHECKING:
    from pathlib import Path

IMAGE = "ghcr.io/octo/app"
WRITERS = 3
PAIRS = 25  # each writer runs `tagkeeper record` 2 * PAIRS = 50 times

WRITER = """
import sys, time
from pathlib import Path
from tagkeeper.cli import main

writer = int(sys.argv[1])
gate = Path(sys.argv[3])
(gate.parent / f"ready-{writer}").touch()
while not gate.exists():  # all writers start together
    time.sleep(0.01)
for i in range(int(sys.argv[2])):
    ref = f"ghcr.io/octo/app:v{writer}.{i}.0"
    for status in ("started", "succeeded"):
        code = main(["record", "--env", "prod", "--image", ref, "--status", status])
        if code != 0:
            sys.exit(f"writer {writer}: record {ref} {status} exited {code}")
"""


def _env(ledger: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TAGKEEPER_LEDGER"] = str(ledger)
    for name in ("GITHUB_REPOSITORY", "GITHUB_TOKEN", "GH_TOKEN"):
        env.pop(name, None)
    return env


def test_concurrent_writers_never_lose_or_corrupt_a_record(
    ledger_path: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(w), str(PAIRS), str(gate)],
            env=_env(ledger_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WRITERS)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < WRITERS and time.monotonic() < deadline:
        time.sleep(0.05)
    gate.touch()
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err

    with Ledger(ledger_path, create=False) as ledger:
        records = ledger.history(environment="prod")
    assert len(records) == WRITERS * PAIRS
    assert len({r.id for r in records}) == len(records)
    assert {r.tag for r in records} == {f"v{w}.{i}.0" for w in range(WRITERS) for i in range(PAIRS)}
    # every started record was finished by its own writer: none left open, none doubled
    assert all(r.status is DeployStatus.SUCCEEDED for r in records)
    assert all(r.ended_at is not None and r.ended_at >= r.started_at for r in records)
    # the writers really ran at once: their records interleave
    writers_in_order = [r.tag.split(".")[0] for r in reversed(records)]
    switches = sum(a != b for a, b in itertools.pairwise(writers_in_order))
    assert switches >= WRITERS
    # each writer's records are in its own order
    for w in range(WRITERS):
        mine = [r for r in reversed(records) if r.tag.startswith(f"v{w}.")]
        assert [r.tag for r in mine] == [f"v{w}.{i}.0" for i in range(PAIRS)]
    with sqlite3.connect(ledger_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _wait_for_started(ledger_path: Path, tag: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ledger_path.exists():
            with Ledger(ledger_path, create=False) as ledger:
                if any(r.tag == tag for r in ledger.history()):
                    return
        time.sleep(0.1)
    pytest.fail(f"the deploy of {tag} was never recorded as started")


def _deploy(ledger_path: Path, tag: str, *command: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tagkeeper",
            "deploy",
            "--env",
            "prod",
            "--image",
            f"{IMAGE}:{tag}",
            "--no-resolve-digest",
            "--",
            *command,
        ],
        env=_env(ledger_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so the test can clean it up
    )


def _cleanup(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def test_a_killed_deploy_stays_started(ledger_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tagkeeper",
            "deploy",
            "--env",
            "prod",
            "--image",
            f"{IMAGE}:v1.0.0",
            "--no-resolve-digest",
            "--",
            "true",
        ],
        env=_env(ledger_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    proc = _deploy(ledger_path, "v1.1.0", "sleep", "30")
    try:
        _wait_for_started(ledger_path, "v1.1.0")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _cleanup(proc)
    assert proc.returncode == -signal.SIGKILL

    with Ledger(ledger_path, create=False) as ledger:
        killed = ledger.history(environment="prod")[0]
    assert killed.tag == "v1.1.0"
    assert killed.status is DeployStatus.STARTED
    assert killed.ended_at is None

    shown = subprocess.run(
        [sys.executable, "-m", "tagkeeper", "history", "--format", "json"],
        env=_env(ledger_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert [(r["tag"], r["status"]) for r in json.loads(shown.stdout)] == [
        ("v1.1.0", "started"),
        ("v1.0.0", "succeeded"),
    ]
    # The killed deploy is never what runs "now", and never a rollback target.
    answer = subprocess.run(
        [sys.executable, "-m", "tagkeeper", "previous", "--image", IMAGE, "--current", "v1.2.0"],
        env=_env(ledger_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout == "v1.0.0\n"


def test_a_terminated_deploy_is_recorded_failed_and_the_command_stopped(
    ledger_path: Path,
) -> None:
    proc = _deploy(ledger_path, "v2.0.0", "sleep", "30")
    try:
        _wait_for_started(ledger_path, "v2.0.0")
        time.sleep(0.5)  # let the wrapper reach the command's wait
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        _cleanup(proc)

    assert proc.returncode == 128 + signal.SIGTERM
    assert elapsed < 20, "the wrapper must stop the command, not wait for it to end"
    with Ledger(ledger_path, create=False) as ledger:
        record = ledger.history()[0]
    assert record.status is DeployStatus.FAILED
    assert record.detail is not None
    assert "SIGTERM" in record.detail
