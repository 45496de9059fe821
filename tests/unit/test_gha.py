"""GitHub Actions runtime files: outputs, the step summary, annotations, and their errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tagkeeper.cli import gha
from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path


def test_outputs_are_appended_with_heredocs_for_multi_line_values(tmp_path: Path) -> None:
    out = tmp_path / "output"
    out.write_text("earlier=1\n", encoding="utf-8")
    gha.write_outputs({"tag": "v1.2.3", "tags": "a\nb"}, {"GITHUB_OUTPUT": str(out)})
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["earlier=1", "tag=v1.2.3"]  # appended, never truncated
    name, _, delimiter = lines[2].partition("<<")
    assert name == "tags"
    assert delimiter.startswith("ghadelimiter_")
    assert lines[3:] == ["a", "b", delimiter]


@pytest.mark.parametrize("name", ["", "a=b", "x<<y", "two\nlines"])
def test_bad_output_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError):
        gha.format_outputs({name: "v"})


def test_outputs_without_github_output_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"\$GITHUB_OUTPUT is not set"):
        gha.write_outputs({"a": "b"}, {})


def test_a_missing_folder_for_github_output_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "nonexistent" / "x"
    with pytest.raises(UsageError) as info:
        gha.write_outputs({"a": "b"}, {"GITHUB_OUTPUT": str(target)})
    assert f"cannot write $GITHUB_OUTPUT ({target})" in info.value.message
    assert "folder does not exist" in info.value.message
    assert info.value.hint is not None
    assert "writable file" in info.value.hint
    assert not target.parent.exists()


def test_a_directory_as_github_output_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        gha.write_outputs({"a": "b"}, {"GITHUB_OUTPUT": str(tmp_path)})


def test_the_summary_is_appended_and_skipped_when_unset(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    gha.append_summary("# one", {"GITHUB_STEP_SUMMARY": str(summary)})
    gha.append_summary("two\n", {"GITHUB_STEP_SUMMARY": str(summary)})
    assert summary.read_text(encoding="utf-8") == "# one\ntwo\n"
    gha.append_summary("ignored", {})  # no summary file outside a runner: nothing to do


def test_an_unwritable_summary_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "nonexistent" / "x"
    with pytest.raises(UsageError, match=r"cannot write \$GITHUB_STEP_SUMMARY"):
        gha.append_summary("# x", {"GITHUB_STEP_SUMMARY": str(target)})
    with pytest.raises(UsageError, match="is a directory"):
        gha.append_summary("# x", {"GITHUB_STEP_SUMMARY": str(tmp_path)})


def test_preflight_checks_both_files_and_writes_nothing(tmp_path: Path) -> None:
    out, summary = tmp_path / "out", tmp_path / "summary"
    gha.preflight({"GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)})
    assert out.read_text(encoding="utf-8") == ""
    assert summary.read_text(encoding="utf-8") == ""
    with pytest.raises(UsageError, match=r"\$GITHUB_OUTPUT is not set"):
        gha.preflight({"GITHUB_STEP_SUMMARY": str(summary)})
    with pytest.raises(UsageError, match=r"\$GITHUB_STEP_SUMMARY"):
        gha.preflight({"GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(tmp_path)})


def test_annotations_escape_data_and_properties() -> None:
    line = gha.annotation("error", "50% done\nnext", file="a,b:c.py", line=3, title="t")
    assert line == "::error file=a%2Cb%3Ac.py,line=3,title=t::50%25 done%0Anext"
    with pytest.raises(ValueError, match="debug"):
        gha.annotation("debug", "x")


def test_in_actions_reads_github_actions() -> None:
    assert gha.in_actions({"GITHUB_ACTIONS": "true"})
    assert not gha.in_actions({"GITHUB_ACTIONS": "false"})
    assert not gha.in_actions({})


def test_md_escape_keeps_table_cells_whole() -> None:
    # the line break is shown as \n (escaped once by neutralise, its backslash once more)
    assert gha.md_escape("a|b\nc`d") == "a\\|b\\\\nc\\`d"
