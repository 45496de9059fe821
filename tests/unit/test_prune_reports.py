"""``prune --format github`` and ``--report FILE``: CI reports that fit GitHub's limits.

A job's outputs may total 1 MB (GitHub counts them as UTF-16) and a step summary 1 MiB.
A dry run of 5,000 versions must stay within both, say which rule decided what, list the
first tagged deletes and what is kept and why, and leave the whole plan to a report file.
The registry is the in-memory fake the factory hands out.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

import tagkeeper.registries.factory
from tagkeeper.cli import main, render
from tagkeeper.errors import ExitCode
from tests.unit.fakes import FakeRegistry

if TYPE_CHECKING:
    from pathlib import Path

IMAGE = "registry.test/acme/app"
VERSIONS = 5_000
KEEP = 5


@pytest.fixture
def runner_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.chdir(tmp_path)
    outputs, summary = tmp_path / "output.txt", tmp_path / "summary.md"
    outputs.touch()
    summary.touch()
    for name in ("GITHUB_REPOSITORY", "GITHUB_TOKEN", "GH_TOKEN", "TAGKEEPER_LEDGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return outputs, summary


def use_registry(monkeypatch: pytest.MonkeyPatch, count: int) -> FakeRegistry:
    """``count`` dev images and one release, all past the grace period."""
    reg = FakeRegistry(display=IMAGE)
    for n in range(count):
        reg.add(f"dev{n}", tags=[f"dev-{n:07x}"], created=n / 100)
    reg.add("release", tags=["v1.0.0"], created=1)

    def open_fake(image: str, options: object, client: object) -> FakeRegistry:
        return reg

    monkeypatch.setattr(tagkeeper.registries.factory, "open_backend", open_fake)
    return reg


def read_outputs(path: Path) -> dict[str, str]:
    """The ``name=value`` and heredoc lines the runner would read."""
    values: dict[str, str] = {}
    lines = iter(path.read_text(encoding="utf-8").splitlines())
    for line in lines:
        if "<<" in line:
            name, delimiter = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            values[name] = "\n".join(body)
        else:
            name, _, value = line.partition("=")
            values[name] = value
    return values


def prune(*args: str) -> int:
    return main(["prune", "--image", IMAGE, "--keep", str(KEEP), "--dry-run", *args])


def test_a_dry_run_of_5000_versions_fits_github_and_the_report_holds_it_all(
    runner_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    outputs, summary = runner_files
    reg = use_registry(monkeypatch, VERSIONS)
    report_json, report_md = tmp_path / "plan.json", tmp_path / "plan.md"
    assert prune("--format", "github", "--report", str(report_json)) == 0
    assert prune("--format", "json", "--report", str(report_md)) == 0
    capsys.readouterr()
    assert reg.delete_calls == []
    planned = VERSIONS - KEEP

    written = outputs.read_text(encoding="utf-8")
    assert len(written.encode("utf-16-le")) < 1_000_000  # a job's outputs: 1 MB, as UTF-16
    values = read_outputs(outputs)
    # a dry run deletes nothing: deleted says so; planned says what it would delete
    assert (values["deleted"], values["planned"], values["kept"]) == ("0", str(planned), "6")
    short = json.loads(values["json"])
    assert short["truncated"] is True
    assert short["report"] == str(report_json)
    assert short["images"] == [
        {"image": IMAGE, "kept": 6, "planned": planned, "deleted": 0, "warnings": [],
         "error": None},
    ]  # fmt: skip

    text = summary.read_text(encoding="utf-8")
    assert len(text.encode()) < 1024 * 1024
    assert text.startswith("### tagkeeper prune (dry run)\n")
    assert f"| `{IMAGE}` | 6 | {planned} | 0 | - |" in text
    assert f"| `old-dev` | delete | {planned} |" in text  # counts per rule
    assert "| `newest-dev` | keep | 5 |" in text
    assert f"Would delete, tagged ({planned}):" in text
    assert text.count("` | `old-dev` |") == 100  # the first 100 rows, then a count
    assert f"... and {planned - 100} more" in text
    assert "Keeps, tagged, and why (6):" in text
    assert "`newest-release`" in text

    whole = json.loads(report_json.read_text(encoding="utf-8"))
    assert whole["dry_run"] is True
    (entry,) = whole["images"]
    assert len(entry["delete"]) == planned
    assert len(entry["keep"]) == 6
    markdown = report_md.read_text(encoding="utf-8")
    assert markdown.count("` | `old-dev` |") == planned  # the file has every row
    assert "more (the full plan" not in markdown


def test_a_small_run_keeps_the_whole_json_output_and_deleted_counts_real_deletes(
    runner_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    outputs, _ = runner_files
    reg = use_registry(monkeypatch, 8)
    assert main(["prune", "--image", IMAGE, "--keep", "5", "--yes", "--format", "github"]) == 0
    capsys.readouterr()
    values = read_outputs(outputs)
    assert (values["deleted"], values["planned"]) == ("3", "3")
    assert len(reg.deleted) == 3
    whole = json.loads(values["json"])
    assert "truncated" not in whole
    (entry,) = whole["images"]
    assert entry["applied"]["counts"]["deleted"] == 3


@pytest.mark.parametrize("name", ["plan.txt", "plan", "plan.yaml"])
def test_a_report_file_of_unknown_kind_is_refused_before_anything_is_asked(
    runner_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], name: str,
) -> None:  # fmt: skip
    reg = use_registry(monkeypatch, 8)
    code = main(["prune", "--image", IMAGE, "--yes", "--report", str(tmp_path / name)])
    assert code == ExitCode.USAGE
    assert ".json or .md" in capsys.readouterr().err
    assert reg.delete_calls == []
    assert reg.stats.by_kind == {}
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    "hostile",
    [
        "a|b",
        "<img src=x onerror=alert(1)>",
        "line\n::error::forged",
        "*bold* _em_ [link](http://x) `code`",
        "\x1b[31mred\x1b[0m",
        "back\\slash & amp",
    ],
)
def test_markdown_and_text_escaping_leave_nothing_active(hostile: str) -> None:
    for shown in (render.md(hostile), render.text(hostile)):
        assert "\n" not in shown
        assert "\x1b" not in shown
        assert not shown.startswith("::")
        assert "\n::" not in shown
    cell = render.md(hostile)
    assert "<" not in cell
    assert ">" not in cell
    for ch in "|*_[]`":
        assert ch not in cell.replace("\\" + ch, "")
    span = render.code(hostile)
    assert "|" not in span.replace("\\|", "")
    assert span.startswith("`")
    assert span.endswith("`")
