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


def test_zizmor_finds_nothing_with_the_projects_configuration() -> None:
    """Every default audit at every severity; only self-repository is ignored, by file."""
    binary = require_binary("zizmor", "the test extras install it")
    proc = subprocess.run(
        [
            binary,
            "--offline",
            "--config",
            str(ROOT / ".github" / "zizmor.yml"),
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
    assert [(f["ident"], f["determinations"]["severity"]) for f in findings] == []


def test_the_configuration_ignores_self_repository_only_where_uses_is_local() -> None:
    """Without it, the same run reports self-repository and nothing else: nothing is hidden."""
    binary = require_binary("zizmor", "the test extras install it")
    proc = subprocess.run(
        [binary, "--offline", "--no-config", "--format", "json", *map(str, WORKFLOWS),
         str(ROOT / "action.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    idents = {f["ident"] for f in json.loads(proc.stdout)}
    assert idents == {"self-repository"}


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
