"""Every exit code is defined once and documented in the README's table."""

from __future__ import annotations

import re
from pathlib import Path

from tagkeeper import errors
from tagkeeper.errors import ExitCode, TagkeeperError

README = Path(__file__).resolve().parents[2] / "README.md"


def _documented() -> dict[int, str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(m[1]): m[2] for m in re.finditer(r"^\|\s*(\d+)\s*\|\s*(.+?)\s*\|$", section, re.M)}


def test_every_exit_code_is_in_the_readme_table_and_nothing_else_is() -> None:
    assert sorted(_documented()) == sorted(int(code) for code in ExitCode)


def test_exit_codes_are_distinct() -> None:
    values = [int(code) for code in ExitCode]
    assert len(values) == len(set(values))


def test_each_deploy_error_has_its_own_code() -> None:
    codes = {
        errors.VerificationFailed: ExitCode.VERIFY,
        errors.RolledBack: ExitCode.ROLLED_BACK,
        errors.DeployLocked: ExitCode.LOCKED,
    }
    for cls, code in codes.items():
        assert issubclass(cls, TagkeeperError)
        assert cls("x").exit_code is code
    assert (int(ExitCode.VERIFY), int(ExitCode.ROLLED_BACK), int(ExitCode.LOCKED)) == (13, 14, 15)
