"""``tagkeeper tags`` for a first-time user: mixed-case owners, OCI labels and annotations,
and a work tree with uncommitted changes (a real git repository)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.cli import main
from tests.unit.test_cli_tags import PUSH_SHA, parse_github_output, set_actions

if TYPE_CHECKING:
    from pathlib import Path

P = "org.opencontainers.image."


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "RUNNER_")) or name in ("CI", "SOURCE_DATE_EPOCH"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["tags", *args])
    out, err = capsys.readouterr()
    return code, out, err


# -- mixed-case owners ----------------------------------------------------------------------


def test_a_mixed_case_repository_is_written_in_lower_case_and_said_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(
        capsys, "--sha", PUSH_SHA, "-i", "ghcr.io/Acme-Corp/App", "-i", "ghcr.io/o/r",
        "--format", "json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["tags"] == ["ghcr.io/acme-corp/app:dev-3f2a9c1", "ghcr.io/o/r:dev-3f2a9c1"]
    assert data["images"] == ["ghcr.io/acme-corp/app", "ghcr.io/o/r"]
    assert "ghcr.io/Acme-Corp/App is written ghcr.io/acme-corp/app" in err
    assert "ghcr.io/o/r is written" not in err  # only what changed is mentioned


def test_the_tag_part_keeps_its_case_and_an_image_with_a_tag_is_still_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "--sha", PUSH_SHA, "-i", "ghcr.io/Acme/App:V1")
    assert code == 2
    assert out == ""
    assert "'ghcr.io/acme/app:V1' already names a tag" in err


def test_prune_still_refuses_an_upper_case_repository(capsys: pytest.CaptureFixture[str]) -> None:
    """Which package prune deletes from is never guessed: the name must be written as it is."""
    code = main(["prune", "--image", "registry.example.com/Team/App", "--keep", "3", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "must be lowercase" in err


# -- labels and annotations ---------------------------------------------------------------


def test_github_outputs_carry_labels_and_annotations_for_build_push_action(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = set_actions(monkeypatch, tmp_path, "push", "refs/tags/v2.0.0-rc.1")
    monkeypatch.setenv("GITHUB_REPOSITORY", "Acme-Corp/App")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    code, out, err = run(
        capsys, "-i", "ghcr.io/Acme-Corp/App", "--format", "github",
        "--annotation-levels", "manifest,index",
    )
    assert code == 0, err
    assert out.splitlines() == ["ghcr.io/acme-corp/app:v2.0.0-rc.1"]
    values = parse_github_output(output.read_text(encoding="utf-8"))
    expected = {
        P + "created": "2023-11-14T22:13:20Z",
        P + "revision": PUSH_SHA,
        P + "version": "2.0.0-rc.1",
        P + "source": "https://github.com/Acme-Corp/App",
        P + "url": "https://github.com/Acme-Corp/App",
        P + "title": "App",
    }
    assert values["labels"].split("\n") == [f"{k}={v}" for k, v in expected.items()]
    annotations = values["annotations"].split("\n")
    assert annotations == [
        f"{level}:{k}={v}" for level in ("manifest", "index") for k, v in expected.items()
    ]
    payload = json.loads(values["json"])
    assert payload["labels"] == expected
    assert payload["annotations"] == {f"manifest:{k}": v for k, v in expected.items()} | {
        f"index:{k}": v for k, v in expected.items()
    }
    assert (values["channel"], values["sha-source"]) == ("prerelease", "push")
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert f"{P}revision={PUSH_SHA}" in summary


@pytest.mark.parametrize(
    ("what", "prefix"), [("labels", P), ("annotations", "manifest:" + P), ("tags", "ghcr.io/")]
)
def test_print_chooses_what_the_text_output_lists(
    capsys: pytest.CaptureFixture[str], what: str, prefix: str
) -> None:
    code, out, err = run(capsys, "--sha", PUSH_SHA, "-i", "ghcr.io/o/r", "--print", what)
    assert code == 0, err
    lines = out.splitlines()
    assert lines
    assert all(line.startswith(prefix) for line in lines)
    if what != "tags":
        assert f"{prefix}revision={PUSH_SHA}" in lines
        assert f"{prefix}title=r" in lines


def test_bad_annotation_levels_and_source_date_epoch_are_bad_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--sha", PUSH_SHA, "--annotation-levels", "platform")
    assert (code, out) == (2, "")
    assert "'platform' is not a level" in err
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    code, out, err = run(capsys, "--sha", PUSH_SHA)
    assert (code, out) == (2, "")
    assert "SOURCE_DATE_EPOCH" in err


# -- a work tree with uncommitted changes (real git) --------------------------------------


def git(repo: Path, *args: str) -> str:
    exe = shutil.which("git")
    assert exe is not None, "git is required for these tests"
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    done = subprocess.run(
        [exe, "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("one\n", encoding="utf-8")
    (path / "old name.txt").write_text("x\n", encoding="utf-8")
    (path / ".gitignore").write_text("build/\n", encoding="utf-8")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "one")
    git(path, "remote", "add", "origin", "https://x-access-token:ghs_TOKEN123@github.com/o/app.git")
    monkeypatch.chdir(path)
    return path


def test_a_clean_tree_gets_no_warning_and_the_source_label_has_no_credentials(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "build").mkdir()
    (repo / "build" / "out.bin").write_text("ignored\n", encoding="utf-8")
    code, out, err = run(capsys, "--format", "json", "--fail-dirty")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    assert data["dirty"] == []
    assert data["warnings"] == []
    assert "warning" not in err
    assert data["labels"][P + "source"] == "https://github.com/o/app"
    assert data["labels"][P + "title"] == "app"
    assert "ghs_TOKEN123" not in out + err


def test_a_dirty_tree_warns_and_fail_dirty_makes_it_exit_3(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = git(repo, "rev-parse", "HEAD")
    (repo / "app.py").write_text("two\n", encoding="utf-8")  # modified
    git(repo, "mv", "old name.txt", "new name.txt")  # renamed, with spaces
    (repo / "line\nbreak.txt").write_text("x\n", encoding="utf-8")  # untracked
    code, out, err = run(capsys, "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert sorted(data["dirty"]) == ["app.py", "line\nbreak.txt", "new name.txt"]
    (warning,) = data["warnings"]
    assert f"dev-{head[:7]} names commit {head[:7]}" in warning
    assert "warning: the work tree has 3 uncommitted paths" in err
    assert "'line\\nbreak.txt'" in err  # shown escaped, on one line
    assert "line\nbreak.txt" not in err

    code, out, err = run(capsys, "--fail-dirty")
    assert (code, out) == (3, "")
    assert "uncommitted" in err
    assert "git stash" in err


def test_fail_dirty_from_the_config_and_no_fail_dirty_overrides_it(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "tagkeeper.toml").write_text("fail-dirty = true\n", encoding="utf-8")
    code, out, err = run(capsys)
    assert (code, out) == (3, ""), err  # the untracked config file itself makes it dirty
    code, out, err = run(capsys, "--no-fail-dirty")
    assert code == 0, err
    assert out.startswith("dev-")
    assert "'tagkeeper.toml'" in err


def test_no_dirty_check_for_a_given_sha_or_inside_ci(
    repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "app.py").write_text("changed\n", encoding="utf-8")
    code, out, err = run(capsys, "--sha", PUSH_SHA, "--fail-dirty", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["dirty"] is None
    set_actions(monkeypatch, tmp_path, "push", "refs/heads/main")
    code, out, err = run(capsys, "--fail-dirty", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["dirty"] is None
