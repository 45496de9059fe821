"""The project's workflows, the examples and the action: valid for GitHub and audited."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.services import require_binary

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml")) + sorted(
    (ROOT / "examples" / "workflows").glob("*.yml")
)
SEVERITIES = ["Unknown", "Informational", "Low", "Medium", "High"]


def test_there_are_workflows_to_check() -> None:
    names = {path.name for path in WORKFLOWS}
    assert {"ci.yml", "dev-build.yml", "release.yml", "prune.yml", "rollback.yml"} <= names


@pytest.mark.parametrize(
    ("schema", "paths"),
    [
        ("vendor.github-workflows", WORKFLOWS),
        ("vendor.github-actions", [ROOT / "action.yml"]),
    ],
    ids=["workflows", "action"],
)
def test_files_match_githubs_schema(schema: str, paths: list[Path]) -> None:
    binary = require_binary("check-jsonschema", "the test extras install it")
    proc = subprocess.run(
        [binary, "--builtin-schema", schema, *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_finds_nothing_above_low() -> None:
    binary = require_binary("zizmor", "the test extras install it")
    proc = subprocess.run(
        [
            binary,
            "--offline",
            "--persona",
            "auditor",
            "--format",
            "json",
            *map(str, WORKFLOWS),
            str(ROOT / "action.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(proc.stdout)
    serious = [
        (f["ident"], f["determinations"]["severity"])
        for f in findings
        if SEVERITIES.index(f["determinations"]["severity"]) > SEVERITIES.index("Low")
    ]
    assert serious == []
