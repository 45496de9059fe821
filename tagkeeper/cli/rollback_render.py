"""How ``previous``, ``history`` and ``record`` show their results, one renderer per
``--format``, from the library's typed results (:class:`~tagkeeper.rollback.resolve.
RollbackTarget`, :class:`~tagkeeper.rollback.resolve.DeployRecord`). Text from the deploy
history is escaped through :mod:`tagkeeper.cli.render`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from tagkeeper.cli import common, gha, render

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tagkeeper.rollback.resolve import DeployRecord, RollbackTarget


def _previous_text(target: RollbackTarget, answer: str) -> None:
    typer.echo(answer)


def _previous_json(target: RollbackTarget, answer: str) -> None:
    del answer
    common.emit_json(target.as_dict())


def _previous_github(target: RollbackTarget, answer: str) -> None:
    typer.echo(answer)
    gha.write_outputs(
        {
            "previous": answer,
            "tag": target.tag,
            "reference": target.reference(),
            "digest": target.digest or "",
            "pinned": target.reference(pinned=True),
        }
    )


PREVIOUS: dict[common.Format, Callable[[RollbackTarget, str], None]] = {
    common.Format.text: _previous_text,
    common.Format.json: _previous_json,
    common.Format.github: _previous_github,
}


def previous(fmt: common.Format, target: RollbackTarget, *, pinned: bool) -> None:
    """The answer of ``previous``: the tag (``pinned``: ``repo:tag@digest``) on stdout,
    the target's notes on stderr; JSON, or GitHub step outputs as ``fmt`` says."""
    for note in target.notes:
        common.info(f"note: {render.text(note)}")
    PREVIOUS[fmt](target, target.reference(pinned=True) if pinned else target.tag)


def history_line(record: DeployRecord) -> str:
    """One ledger record as ``history`` prints it (tab separated)."""
    kind = " rollback" if record.rollback else ""
    when = record.started_at.strftime("%Y-%m-%d %H:%M:%SZ")
    digest = f" {record.digest[:19]}" if record.digest else ""
    who = f" by {render.text(record.user)}" if record.user else ""
    return (
        f"#{record.id}\t{when}\t{render.text(record.environment)}\t"
        f"{render.text(record.reference)}{digest}\t{record.status}{kind}{who}"
    )


def history(as_json: bool, records: Sequence[DeployRecord]) -> None:
    """The records of ``history``, newest first: JSON, else one line each."""
    if as_json:
        common.emit_json([r.as_dict() for r in records])
        return
    for record in records:
        typer.echo(history_line(record))
