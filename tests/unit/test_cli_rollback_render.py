"""``history`` prints what the ledger holds through the one escaping place: a user name
recorded from a hostile environment cannot forge a line, a workflow command or a
terminal escape."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tagkeeper.cli import main
from tagkeeper.rollback.ledger import Actor, Ledger
from tagkeeper.rollback.resolve import DeployStatus

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_history_escapes_what_the_ledger_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ledger.db"
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(path))
    monkeypatch.chdir(tmp_path)
    hostile = "mallory\n::error::forged\x1b[2J"
    with Ledger(path) as ledger:
        ledger.record(
            environment="prod", repository="ghcr.io/o/app", tag="v1.0.0",
            status=DeployStatus.SUCCEEDED, actor=Actor(user=hostile, host="h"),
        )  # fmt: skip
    assert main(["history"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "\x1b" not in out
    assert "\n::" not in out
    assert "by mallory\\n:\\x3aerror:\\x3aforged\\x1b[2J" in out
