"""`tagkeeper tags` driven in-process like GitHub Actions drives it, and outside CI with git."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tagkeeper.cli import main

PUSH_SHA = "3f2a9c1d" + "0" * 32
HEAD_SHA = "feedbeef" + "1" * 32
MERGE_SHA = "c0ffee00" + "2" * 32


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No runner variables leak in from the machine running the tests; no config file."""
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "RUNNER_")) or name == "CI":
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


def set_actions(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    event: str,
    ref: str,
    *,
    payload: dict[str, Any] | None = None,
    sha: str = PUSH_SHA,
) -> Path:
    """GitHub-style variables, an event payload file, and an empty GITHUB_OUTPUT file."""
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(payload or {}), encoding="utf-8")
    output = tmp_path / "github_output"
    output.write_text("", encoding="utf-8")
    for name, value in {
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "GITHUB_EVENT_NAME": event,
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_SHA": sha,
        "GITHUB_REF": ref,
        "GITHUB_REF_NAME": ref.rsplit("/", 1)[-1],
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }.items():
        monkeypatch.setenv(name, value)
    return output


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict[str, Any], str]:
    code = main(["tags", *args, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data, err


def parse_github_output(text: str) -> dict[str, str]:
    """Read $GITHUB_OUTPUT the way the runner does (name=value and name<<DELIM blocks)."""
    values: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            body: list[str] = []
            while lines[i] != delim:
                body.append(lines[i])
                i += 1
            i += 1
            values[name] = "\n".join(body)
        else:
            name, value = line.split("=", 1)
            values[name] = value
    return values


def pr_payload(number: int) -> dict[str, Any]:
    return {
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"sha": HEAD_SHA},
            "merge_commit_sha": MERGE_SHA,
        },
    }


# --- GitHub Actions events ------------------------------------------------------


def test_push_to_branch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_actions(monkeypatch, tmp_path, "push", "refs/heads/main")
    assert main(["tags"]) == 0
    out, err = capsys.readouterr()
    assert out == "dev-3f2a9c1\n"
    assert "$GITHUB_SHA" in err
    data, _ = run_json(capsys)
    assert data["tags"] == ["dev-3f2a9c1"]
    assert data["version"] is None
    assert data["env"] == "dev"
    assert (data["sha"], data["sha_source"], data["event"]) == (PUSH_SHA, "push", "push")


def test_push_of_a_release_tag(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_actions(monkeypatch, tmp_path, "push", "refs/tags/v1.4.2")
    assert main(["tags", "--image", "ghcr.io/acme/app", "--aliases"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "ghcr.io/acme/app:v1.4.2",
        "ghcr.io/acme/app:v1.4",
        "ghcr.io/acme/app:v1",
    ]
    data, _ = run_json(capsys, "--bare-version")
    assert data["tags"] == ["1.4.2"]
    assert (data["version"], data["env"], data["channel"]) == ("1.4.2", "prod", "release")
    assert data["ref"] == "refs/tags/v1.4.2"


def test_push_of_a_prerelease_tag(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_actions(monkeypatch, tmp_path, "push", "refs/tags/v2.0.0-rc.1")
    data, err = run_json(capsys, "--aliases")
    assert data["tags"] == ["v2.0.0-rc.1"]  # no floating aliases for a prerelease
    assert (data["version"], data["env"], data["channel"]) == ("2.0.0-rc.1", "dev", "prerelease")
    assert "prerelease" in err


@pytest.mark.parametrize(
    ("choice", "sha", "source"), [(None, HEAD_SHA, "head"), ("merge", MERGE_SHA, "merge")]
)
def test_pull_request_head_or_merge(  # noqa: PLR0917 - fixtures and parameters
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    choice: str | None,
    sha: str,
    source: str,
) -> None:
    set_actions(
        monkeypatch,
        tmp_path,
        "pull_request",
        "refs/pull/12/merge",
        payload=pr_payload(12),
        sha=MERGE_SHA,
    )
    args = ["--pr-sha", choice] if choice else []
    data, err = run_json(capsys, *args)
    assert data["tags"] == [f"dev-{sha[:7]}", "pr-12"]
    assert (data["sha"], data["sha_source"], data["pr_number"]) == (sha, source, 12)
    assert data["env"] == "dev"
    assert f"pull request #12: commit {sha}" in err
    assert f"{source} commit" in err


def test_workflow_dispatch_on_branch_and_on_tag(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_actions(
        monkeypatch, tmp_path, "workflow_dispatch", "refs/heads/main", payload={"inputs": {}}
    )
    data, _ = run_json(capsys)
    assert (data["tags"], data["env"], data["event"]) == (
        ["dev-3f2a9c1"],
        "dev",
        "workflow_dispatch",
    )
    set_actions(
        monkeypatch, tmp_path, "workflow_dispatch", "refs/tags/v3.1.0", payload={"inputs": {}}
    )
    data, _ = run_json(capsys)
    assert (data["tags"], data["env"], data["version"]) == (["v3.1.0"], "prod", "3.1.0")


def test_schedule(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_actions(
        monkeypatch, tmp_path, "schedule", "refs/heads/main", payload={"schedule": "0 3 * * *"}
    )
    data, _ = run_json(capsys, "--dev-pointer", "nightly")
    assert data["tags"] == ["dev-3f2a9c1", "nightly"]
    assert (data["env"], data["event"]) == ("dev", "schedule")


def test_flags_override_github_context(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_actions(monkeypatch, tmp_path, "push", "refs/heads/main")
    data, _ = run_json(capsys, "--sha", HEAD_SHA, "--ref", "refs/tags/v9.9.9", "--env", "staging")
    assert (data["tags"], data["sha_source"], data["env"]) == (["v9.9.9"], "flag", "staging")


# --- GITHUB_OUTPUT and the step summary ------------------------------------------


def test_github_format_writes_outputs_with_random_delimiter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = set_actions(monkeypatch, tmp_path, "push", "refs/tags/v1.2.3+build.9")
    args = ["tags", "--format", "github", "--aliases", "-i", "ghcr.io/o/r", "-i", "docker.io/o/r"]
    assert main(args) == 0
    printed = capsys.readouterr().out.splitlines()
    first = output.read_text(encoding="utf-8")
    assert main(args) == 0
    capsys.readouterr()
    second = output.read_text(encoding="utf-8")[len(first) :]

    values = parse_github_output(first)
    expected = [
        f"{image}:{tag}"
        for image in ("ghcr.io/o/r", "docker.io/o/r")
        for tag in ("v1.2.3_build.9", "v1.2", "v1")
    ]
    assert values["tags"].split("\n") == expected
    assert printed == expected
    assert values["version"] == "1.2.3+build.9"
    assert values["env"] == "prod"
    assert values["sha"] == PUSH_SHA
    assert json.loads(values["json"])["tags"] == expected
    delims = [line.split("<<", 1)[1] for line in first.splitlines() if line.startswith("tags<<")]
    delims2 = [line.split("<<", 1)[1] for line in second.splitlines() if line.startswith("tags<<")]
    assert len(delims) == len(delims2) == 1
    assert delims[0] != delims2[0]  # a fresh random delimiter each time
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "`ghcr.io/o/r:v1.2.3_build.9`" in summary
    assert "prod" in summary


def test_github_format_without_github_output_is_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tags", "--sha", PUSH_SHA, "--format", "github"]) == 2
    assert "GITHUB_OUTPUT" in capsys.readouterr().err


# --- outside CI: a real git repository --------------------------------------------


def git(repo: Path, *args: str) -> str:
    exe = shutil.which("git")
    assert exe is not None, "git is required for these tests"
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "HOME": str(repo),
        "PATH": os.environ.get("PATH", ""),
    }
    done = subprocess.run(
        [exe, "-c", "init.defaultBranch=trunk", "-c", "tag.gpgSign=false", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_outside_ci_uses_git(capsys: pytest.CaptureFixture[str]) -> None:
    repo = Path.cwd()
    git(repo, "init", "-q")
    (repo / "f.txt").write_text("one\n", encoding="utf-8")
    git(repo, "add", "f.txt")
    git(repo, "commit", "-q", "-m", "one")
    head = git(repo, "rev-parse", "HEAD")

    data, err = run_json(capsys)
    assert data["tags"] == [f"dev-{head[:7]}"]
    assert (data["sha"], data["sha_source"], data["ref"]) == (head, "git", "refs/heads/trunk")
    assert "git HEAD" in err

    git(repo, "tag", "v0.3.0-rc.1")
    git(repo, "tag", "v0.3.0")
    git(repo, "tag", "not-a-version")
    data, err = run_json(capsys, "--aliases")
    assert data["tags"] == ["v0.3.0", "v0.3"]
    assert (data["version"], data["env"], data["ref"]) == ("0.3.0", "prod", "refs/tags/v0.3.0")
    assert "not-a-version" in err


def test_outside_ci_without_a_repository_is_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["tags"]) == 2
    err = capsys.readouterr().err
    assert "git" in err
    assert "--sha" in err


# --- configuration ------------------------------------------------------------------


def test_config_supplies_defaults_and_flags_override(capsys: pytest.CaptureFixture[str]) -> None:
    Path("tagkeeper.toml").write_text(
        'image = ["ghcr.io/o/r"]\nsha-length = 10\nbare-version = true\naliases = true\n'
        'dev-pointer = "dev-latest"\n',
        encoding="utf-8",
    )
    data, _ = run_json(capsys, "--sha", PUSH_SHA, "--ref", "refs/heads/main")
    assert data["tags"] == ["ghcr.io/o/r:dev-3f2a9c1d00", "ghcr.io/o/r:dev-latest"]
    data, _ = run_json(
        capsys, "--sha", PUSH_SHA, "--ref", "refs/heads/main", "--sha-length", "8",
        "--dev-pointer", "", "--image", "localhost:5000/app",
    )  # fmt: skip
    assert data["tags"] == ["localhost:5000/app:dev-3f2a9c1d"]
    data, _ = run_json(capsys, "--sha", PUSH_SHA, "--ref", "refs/tags/v1.2.3", "--v-prefix")
    assert data["tag_names"] == ["v1.2.3", "v1.2", "v1"]


def test_bad_config_value_names_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    Path("tagkeeper.toml").write_text("sha-length = 99\n", encoding="utf-8")
    assert main(["tags", "--sha", PUSH_SHA]) == 9
    assert "sha-length" in capsys.readouterr().err


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ref", "refs/tags/release-2024"], "not a SemVer"),
        (["--ref", "refs/tags/v1.02.0"], "leading zero"),
        (["--sha", "not-a-sha"], "commit id"),
        (["--sha", "abc"], "commit id"),
        (["--sha-length", "99"], "out of range"),
        (["--sha-length", "3"], "out of range"),
        (["--image", "ghcr.io/o/r:v1"], "already names a tag"),
        (["--image", "Not A Repo"], "not"),
        (["--ref", "main"], "full git ref"),
        (["--pr-sha", "base"], "head, merge"),
        (["--dev-pointer", "latest"], "latest"),
        (["--dev-pointer", "v1.0.0"], "release version"),
        (["--sha-length", "seven"], "--sha-length"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    full = ["tags", "--sha", PUSH_SHA, "--ref", "refs/heads/main", *args]
    assert main(full) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err


def test_prod_for_a_branch_build_is_a_policy_violation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["tags", "--sha", PUSH_SHA, "--ref", "refs/heads/main", "--env", "prod"])
    assert code == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert "prod refuses" in err


@pytest.mark.parametrize("env", ["prod", "production", "PRODUCTION", "staging"])
def test_tags_and_check_agree_on_which_envs_refuse_a_branch_build(
    capsys: pytest.CaptureFixture[str], env: str
) -> None:
    code = main(["tags", "--sha", "abcdef1234", "--ref", "refs/heads/main", "--env", env])
    out, err = capsys.readouterr()
    assert (code, out) == (3, "")
    assert f"{env} refuses" in err
    assert main(["tags", "--sha", "abcdef1234", "--ref", "refs/heads/main"]) == 0
    dev_tag = capsys.readouterr().out.strip()
    assert dev_tag == "dev-abcdef1"
    assert main(["check", f"ghcr.io/o/app:{dev_tag}", "--env", env]) == 3


@pytest.mark.parametrize("env", [" prod", "prod ", " dev", "pro\td"])
def test_env_names_are_validated_like_check_does(
    capsys: pytest.CaptureFixture[str], env: str
) -> None:
    code = main(["tags", "--sha", PUSH_SHA, "--ref", "refs/tags/v1.0.0", "--env", env])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert "not an environment name" in err
    assert main(["check", "ghcr.io/o/app:v1.0.0", "--env", env]) == 2


def test_prerelease_for_prod_needs_allow_prerelease(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["tags", "--sha", PUSH_SHA, "--ref", "refs/tags/v2.0.0-rc.1", "--env", "prod"]
    assert main(args) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert "prerelease" in err
    assert "--allow-prerelease" in err
    data, _ = run_json(capsys, *args[1:], "--allow-prerelease")
    assert (data["tags"], data["env"]) == (["v2.0.0-rc.1"], "prod")
    # check agrees: refused without the allowance, accepted with it
    assert main(["check", "ghcr.io/o/app:v2.0.0-rc.1", "--env", "prod"]) == 3
    assert main(["check", "ghcr.io/o/app:v2.0.0-rc.1", "--env", "prod", "--allow-prerelease"]) == 0


def test_allow_prerelease_from_config(capsys: pytest.CaptureFixture[str]) -> None:
    Path("tagkeeper.toml").write_text("allow-prerelease = true\n", encoding="utf-8")
    args = ["--sha", PUSH_SHA, "--ref", "refs/tags/v2.0.0-rc.1", "--env", "prod"]
    data, _ = run_json(capsys, *args)
    assert data["tags"] == ["v2.0.0-rc.1"]
    assert main(["tags", *args, "--no-allow-prerelease"]) == 3


def test_latest_is_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    for ref in ("refs/heads/main", "refs/tags/v1.0.0", "refs/pull/1/merge"):
        assert (
            main(["tags", "--sha", PUSH_SHA, "--ref", ref, "--aliases", "-i", "ghcr.io/o/r"]) == 0
        )
        out = capsys.readouterr().out
        assert out.strip()
        assert all(not line.lower().endswith(":latest") for line in out.splitlines())


# --- the root command around `tags` -------------------------------------------------


def test_root_config_option_before_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text("sha-length = 12\n", encoding="utf-8")
    for args in (["--config", str(config)], [f"--config={config}"]):
        assert main([*args, "tags", "--sha", PUSH_SHA, "--ref", "refs/heads/main"]) == 0
        assert capsys.readouterr().out == f"dev-{PUSH_SHA[:12]}\n"


def test_root_help_lists_tags_and_unknown_commands_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "tags" in out
    assert "check" in out
    assert main(["tagz"]) == 2
    assert "No such command 'tagz'" in capsys.readouterr().err
