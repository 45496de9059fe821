"""``tagkeeper check`` run in-process: exit codes, text, json and GitHub output."""

from __future__ import annotations

import io
import json
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.cli import main
from tagkeeper.errors import ExitCode

if TYPE_CHECKING:
    from pathlib import Path

SHA = "sha256:" + "cd" * 32


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty folder with an empty config, outside GitHub Actions."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tagkeeper.toml").write_text("", encoding="utf-8")
    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = main(["check", "--format", "json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_all_acceptable_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "ghcr.io/o/app:v1.2.3", f"ghcr.io/o/app@{SHA}", "--env", "prod"])
    captured = capsys.readouterr()
    assert code == ExitCode.OK
    assert "ghcr.io/o/app:v1.2.3: ok" in captured.out
    assert "2 reference(s) acceptable for prod" in captured.err


def test_one_bad_reference_is_a_policy_violation(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "ghcr.io/o/app:v1.2.3", "registry:5000/app", "app:LATEST"])
    captured = capsys.readouterr()
    assert code == ExitCode.POLICY
    assert int(ExitCode.POLICY) == 3  # documented, scripts rely on it
    lines = captured.out.splitlines()
    assert lines[0].startswith("ghcr.io/o/app:v1.2.3: ok")
    assert lines[1].startswith("registry:5000/app: no tag means 'latest'")
    assert lines[1].endswith("[untagged]")
    assert lines[2].startswith("app:LATEST: ")
    assert lines[2].endswith("[latest]")
    assert "2 of 3 reference(s) are not acceptable for prod" in captured.err


def test_default_env_is_prod(capsys: pytest.CaptureFixture[str]) -> None:
    code, payload = run_json(capsys, "ghcr.io/o/app:dev-abc1234")
    assert code == ExitCode.POLICY
    assert payload["env"] == "prod"
    assert payload["rules"] == "prod"


def test_env_from_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tagkeeper.toml").write_text('env = "dev"\n', encoding="utf-8")
    code, payload = run_json(capsys, "ghcr.io/o/app:dev-abc1234")
    assert code == ExitCode.OK
    assert payload["env"] == "dev"
    # the flag overrides the configuration
    code, payload = run_json(capsys, "ghcr.io/o/app:dev-abc1234", "--env", "production")
    assert code == ExitCode.POLICY
    assert payload["rules"] == "prod"


def test_dev_refuses_latest_untagged_and_pointer(capsys: pytest.CaptureFixture[str]) -> None:
    code, payload = run_json(
        capsys, "--env", "dev", "app:dev-abc1234", "app:latest", "app", "app:dev-latest"
    )
    assert code == ExitCode.POLICY
    results = payload["results"]
    assert isinstance(results, list)
    assert [(r["ref"], r["ok"], r["code"]) for r in results] == [
        ("app:dev-abc1234", True, "ok"),
        ("app:latest", False, "latest"),
        ("app", False, "untagged"),
        ("app:dev-latest", False, "dev-pointer"),
    ]


def test_prerelease_flag_and_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "app:v1.2.3-rc.1"]) == ExitCode.POLICY
    assert "[prerelease]" in capsys.readouterr().out
    assert main(["check", "app:v1.2.3-rc.1", "--allow-prerelease"]) == ExitCode.OK
    (tmp_path / "tagkeeper.toml").write_text("allow-prerelease = true\n", encoding="utf-8")
    assert main(["check", "app:v1.2.3-rc.1"]) == ExitCode.OK
    assert main(["check", "app:v1.2.3-rc.1", "--no-allow-prerelease"]) == ExitCode.POLICY


def test_configured_dev_pointer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tagkeeper.toml").write_text('dev-pointer = "edge"\n', encoding="utf-8")
    code, payload = run_json(capsys, "--env", "dev", "app:edge")
    assert code == ExitCode.POLICY
    results = payload["results"]
    assert isinstance(results, list)
    assert results[0]["code"] == "dev-pointer"


def test_unparseable_argument_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "ghcr.io/o/app:v1.2.3", "ghcr.io/Owner/app:v1", "app@sha256:abc"])
    captured = capsys.readouterr()
    assert code == ExitCode.USAGE
    assert captured.out == ""  # nothing judged, nothing printed
    assert "'ghcr.io/Owner/app:v1'" in captured.err
    assert "must be lowercase" in captured.err
    assert "'app@sha256:abc'" in captured.err


def test_nothing_to_check_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--env", "prod"]) == ExitCode.USAGE
    assert "nothing to check" in capsys.readouterr().err


def test_missing_file_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "compose.yml"
    good.write_text("services:\n  a:\n    image: app:latest\n", encoding="utf-8")
    code = main(["check", "--file", str(good), "--file", "missing.yml", "--format", "json"])
    captured = capsys.readouterr()
    assert code == ExitCode.USAGE
    assert "missing.yml" in captured.err
    assert captured.out == ""


def test_unreadable_files_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "binary.env").write_bytes(b"IMAGE=\xff\xfe\n")
    assert main(["check", "--file", "binary.env"]) == ExitCode.USAGE
    assert "binary.env: not UTF-8" in capsys.readouterr().err
    (tmp_path / "folder").mkdir()
    assert main(["check", "--file", "folder"]) == ExitCode.USAGE
    assert "folder: is a directory" in capsys.readouterr().err


COMPOSE = """\
services:
  web:
    image: ghcr.io/acme/web:v1.2.3
  worker:
    image: ghcr.io/acme/worker:latest
"""
DEPLOY = """\
#!/bin/sh
IMAGE=ghcr.io/acme/web:dev-latest PROFILE=prod ./deploy.sh
IMAGE="${IMAGE:-ghcr.io/acme/web:v1.2.3}" ./deploy.sh
"""


def test_files_report_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "compose.yml").write_text(COMPOSE, encoding="utf-8")
    (tmp_path / "deploy.sh").write_text(DEPLOY, encoding="utf-8")
    code = main(["check", "--env", "prod", "--file", "compose.yml", "--file", "deploy.sh"])
    out = capsys.readouterr().out.splitlines()
    assert code == ExitCode.POLICY
    assert (
        out[0] == "compose.yml:3: ghcr.io/acme/web:v1.2.3: ok (exact release 1.2.3; "
        "acceptable for prod)"
    )
    assert out[1].startswith("compose.yml:5: ghcr.io/acme/worker:latest: ")
    assert out[1].endswith("[latest]")
    assert out[2].startswith("deploy.sh:2: ghcr.io/acme/web:dev-latest: ")
    assert out[2].endswith("[dev-pointer]")
    assert out[3].startswith("deploy.sh:3: ${IMAGE:-ghcr.io/acme/web:v1.2.3}: ")
    assert out[3].endswith("[unresolved]")
    assert len(out) == 4


@pytest.mark.parametrize(
    "compose",
    [
        'services:\n  web: {image: "ghcr.io/o/web:latest"}\n',
        "services:\n  - {image: ghcr.io/o/web:latest}\n",
        "services:\n  web: {\n    build: .,\n    image: ghcr.io/o/web:latest\n  }\n",
        '{"services": {"web": {"image": "ghcr.io/o/web:latest"}}}\n',
        "services:\n  web:\n    environment: [PROFILE=prod, APP_IMAGE=ghcr.io/o/web:latest]\n",
    ],
)
def test_flow_mappings_do_not_get_latest_past_prod(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], compose: str
) -> None:
    (tmp_path / "c2.yml").write_text(compose, encoding="utf-8")
    code, payload = run_json(capsys, "--file", "c2.yml", "--env", "prod")
    assert code == ExitCode.POLICY
    results = payload["results"]
    assert isinstance(results, list)
    assert len(results) == 1
    assert (results[0]["ref"], results[0]["code"]) == ("ghcr.io/o/web:latest", "latest")


def test_a_flow_mapping_that_cannot_be_read_fails_closed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the sequence is not closed: the reader cannot tell where the mapping ends
    compose = "services:\n  web: {image: ghcr.io/o/web:v1.2.3, ports: [80}\n"
    (tmp_path / "c3.yml").write_text(compose, encoding="utf-8")
    code, payload = run_json(capsys, "--file", "c3.yml", "--env", "prod")
    assert code == ExitCode.POLICY
    results = payload["results"]
    assert isinstance(results, list)
    assert len(results) == 1
    assert results[0]["code"] == "unresolved"
    assert (results[0]["line"], results[0]["column"]) == (2, 9)  # the image key


@pytest.mark.parametrize("env", [" prod", "prod ", " dev", "pr\tod", "prod!"])
def test_environment_names_are_validated_not_trimmed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: str
) -> None:
    code = main(["check", "ghcr.io/o/app:v1.2.3", "--env", env])
    captured = capsys.readouterr()
    assert code == ExitCode.USAGE
    assert captured.out == ""
    assert "not an environment name" in captured.err


def test_json_payload_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "compose.yml").write_text(COMPOSE, encoding="utf-8")
    (tmp_path / "empty.env").write_text("TAG=v1\n", encoding="utf-8")
    code, payload = run_json(capsys, "app:v2.0.0", "--file", "compose.yml", "--file", "empty.env")
    assert code == ExitCode.POLICY
    assert payload["ok"] is False
    assert payload["env"] == "prod"
    assert payload["files"] == [
        {"path": "compose.yml", "references": 2, "skipped": 0},
        {"path": "empty.env", "references": 0, "skipped": 0},
    ]
    assert payload["skipped"] == []
    results = payload["results"]
    assert isinstance(results, list)
    latest_message = results[2]["message"]
    assert results == [
        {
            "ref": "app:v2.0.0",
            "ok": True,
            "code": "ok",
            "message": "exact release 2.0.0; acceptable for prod",
            "file": None,
            "line": None,
            "column": None,
        },
        {
            "ref": "ghcr.io/acme/web:v1.2.3",
            "ok": True,
            "code": "ok",
            "message": "exact release 1.2.3; acceptable for prod",
            "file": "compose.yml",
            "line": 3,
            "column": 12,
        },
        {
            "ref": "ghcr.io/acme/worker:latest",
            "ok": False,
            "code": "latest",
            "message": latest_message,
            "file": "compose.yml",
            "line": 5,
            "column": 12,
        },
    ]
    assert isinstance(latest_message, str)
    assert latest_message.startswith("'latest' is a moving tag")


def test_files_without_references_are_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A check that saw nothing must not pass: an empty pipe or the wrong file."""
    (tmp_path / "empty.env").write_text("TAG=v1\n", encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code = main(["check", "--file", "empty.env", "--file", "-", "--format", "json"])
    captured = capsys.readouterr()
    assert code == ExitCode.USAGE
    assert captured.out == ""
    assert "no image references found in empty.env, <stdin>" in captured.err


def test_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(COMPOSE))
    code = main(["check", "--file", "-"])
    out = capsys.readouterr().out
    assert code == ExitCode.POLICY
    assert "<stdin>:5: ghcr.io/acme/worker:latest" in out


def test_vars_resolve_file_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "compose.yml").write_text(
        "services:\n  a:\n    image: ghcr.io/acme/a:${TAG}\n", encoding="utf-8"
    )
    assert main(["check", "--file", "compose.yml"]) == ExitCode.POLICY
    assert "[unresolved]" in capsys.readouterr().out
    assert main(["check", "--file", "compose.yml", "--var", "TAG=v1.0.0"]) == ExitCode.OK
    capsys.readouterr()
    assert main(["check", "--file", "compose.yml", "--var", "TAG=latest"]) == ExitCode.POLICY
    assert "[latest]" in capsys.readouterr().out
    assert main(["check", "--file", "compose.yml", "--var", "TAG"]) == ExitCode.USAGE
    assert "NAME=VALUE" in capsys.readouterr().err


def test_resolve_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "deploy.sh").write_text('IMAGE="ghcr.io/acme/a:$TAG"\n', encoding="utf-8")
    monkeypatch.setenv("TAG", "v3.2.1")
    assert main(["check", "--file", "deploy.sh", "--resolve-env"]) == ExitCode.OK
    assert "ghcr.io/acme/a:v3.2.1: ok" in capsys.readouterr().out
    # --var wins over the environment
    code = main(["check", "--file", "deploy.sh", "--resolve-env", "--var", "TAG=dev-abc1234"])
    assert code == ExitCode.POLICY


def test_github_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "output"
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    (tmp_path / "compose.yml").write_text(COMPOSE, encoding="utf-8")
    code = main(["check", "app:v1.0.0", "--file", "compose.yml", "--format", "github"])
    out = capsys.readouterr().out.splitlines()
    assert code == ExitCode.POLICY
    errors = [line for line in out if line.startswith("::error")]
    assert len(errors) == 1
    assert errors[0].startswith(
        "::error file=compose.yml,line=5,title=tagkeeper check%3A latest::"
        "ghcr.io/acme/worker:latest: "
    )
    outputs = output.read_text(encoding="utf-8")
    assert "ok=false\n" in outputs
    json_line = next(line for line in outputs.splitlines() if line.startswith("json="))
    payload = json.loads(json_line.removeprefix("json="))
    assert payload["ok"] is False
    assert len(payload["results"]) == 3
    markdown = summary.read_text(encoding="utf-8")
    assert "tagkeeper check failed for `prod`" in markdown
    assert "| ❌ | `ghcr.io/acme/worker:latest` | compose.yml:5 | latest: " in markdown
    assert "| ✅ | `app:v1.0.0` |" in markdown


def test_github_format_passing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    assert main(["check", "app:v1.0.0", "--format", "github"]) == ExitCode.OK
    assert "::error" not in capsys.readouterr().out
    assert "ok=true\n" in output.read_text(encoding="utf-8")


def test_github_format_needs_github_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "app:v1.0.0", "--format", "github"]) == ExitCode.USAGE
    assert "GITHUB_OUTPUT" in capsys.readouterr().err


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    for option in ("--env", "--allow-prerelease", "--file", "--format", "--var"):
        assert option in out


# -- what the file really deploys: command prefixes, YAML escapes ---------------------------

DEPLOY_PREFIXES = """\
#!/bin/sh
sudo IMAGE=ghcr.io/acme/app:latest ./deploy.sh
sudo -E env IMAGE=ghcr.io/acme/app:latest ./deploy.sh
nohup env IMAGE=ghcr.io/acme/app:latest ./deploy.sh &
sudo -u deploy bash -c 'IMAGE=ghcr.io/acme/app:latest ./deploy.sh'
timeout 10m nice -n 5 env IMAGE=ghcr.io/acme/app:v1.2.3 ./deploy.sh
"""


def test_check_file_looks_through_command_prefixes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "deploy.sh").write_text(DEPLOY_PREFIXES, encoding="utf-8")
    code, payload = run_json(capsys, "--env", "prod", "--file", "deploy.sh")
    assert code == ExitCode.POLICY
    results = payload["results"]
    assert isinstance(results, list)
    assert [(r["line"], r["code"]) for r in results] == [
        (2, "latest"),
        (3, "latest"),
        (4, "latest"),
        (5, "latest"),
        (6, "ok"),
    ]


def test_check_file_decodes_yaml_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "compose.yml").write_text(
        "services:\n"
        "  web:\n"
        '    image: "ghcr.io/acme/app:\\x6catest"\n'
        "  worker:\n"
        '    image: "ghcr.io/acme/app:\\\n'
        '      latest"\n'
        "  db:\n"
        '    image: "ghcr.io/acme/db:\\qv1"\n',
        encoding="utf-8",
    )
    for env in ("prod", "dev"):
        code, payload = run_json(capsys, "--env", env, "--file", "compose.yml")
        assert code == ExitCode.POLICY
        results = payload["results"]
        assert isinstance(results, list)
        assert [(r["line"], r["ref"], r["code"]) for r in results] == [
            (3, "ghcr.io/acme/app:latest", "latest"),
            (5, "ghcr.io/acme/app:latest", "latest"),
            (8, "ghcr.io/acme/db:\\qv1", "unparseable"),
        ]


def test_check_never_prints_what_a_yaml_escape_decodes_to_raw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "compose.yml").write_text(
        'image: "ghcr.io/acme/app\\n::error::forged\\e[2J"\n', encoding="utf-8"
    )
    code = main(["check", "--env", "prod", "--file", "compose.yml"])
    out, err = capsys.readouterr()
    assert code == ExitCode.POLICY
    assert "\x1b" not in out + err
    assert not [line for line in out.splitlines() if line.startswith("::")]


# -- --only REPO and config 'image': the team's own images in a shared file ------------

MIXED = """services:
  web:
    image: ghcr.io/acme/app:v1.2.3
  db:
    image: postgres:16
  cache:
    image: redis:latest
"""


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main(["check", "--format", "json", *args])
    return code, json.loads(capsys.readouterr().out)


def _mixed(tmp_path: Path) -> str:
    (tmp_path / "compose.yml").write_text(MIXED, encoding="utf-8")
    return "compose.yml"


def test_only_limits_a_file_to_the_named_repositories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _mixed(tmp_path)
    assert main(["check", "--file", name]) == ExitCode.POLICY  # postgres:16 fails prod
    capsys.readouterr()
    code, payload = _run(capsys, "--file", name, "--only", "ghcr.io/acme/app")
    assert code == ExitCode.OK
    assert [r["ref"] for r in payload["results"]] == ["ghcr.io/acme/app:v1.2.3"]
    assert [s["ref"] for s in payload["skipped"]] == ["postgres:16", "redis:latest"]
    assert payload["skipped"][0]["line"] == 5
    code = main(["check", "--file", name, "--only", "ghcr.io/acme/app"])
    err = capsys.readouterr().err
    assert code == ExitCode.OK
    assert "2 reference(s) skipped" in err
    assert "postgres:16 (compose.yml:5)" in err


def test_only_is_repeatable_and_matches_docker_hub_spellings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _mixed(tmp_path)
    code, payload = _run(
        capsys, "--file", name, "--only", "ghcr.io/acme/app", "--only", "docker.io/library/redis"
    )
    assert code == ExitCode.POLICY  # redis:latest is one of ours now
    assert [r["ref"] for r in payload["results"]] == [
        "ghcr.io/acme/app:v1.2.3", "redis:latest",
    ]  # fmt: skip


def test_config_image_is_the_default_of_only_and_the_flag_overrides_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _mixed(tmp_path)
    (tmp_path / "tagkeeper.toml").write_text('image = ["ghcr.io/acme/app"]\n', encoding="utf-8")
    code, payload = _run(capsys, "--file", name)
    assert code == ExitCode.OK
    assert len(payload["skipped"]) == 2
    code, payload = _run(capsys, "--file", name, "--only", "redis")
    assert code == ExitCode.POLICY
    assert [r["ref"] for r in payload["results"]] == ["redis:latest"]


def test_only_never_skips_what_cannot_be_read_or_what_was_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "compose.yml").write_text(
        "services:\n  web:\n    image: ${REGISTRY}/app:v1\n", encoding="utf-8"
    )
    # whose image ${REGISTRY}/app is nobody can tell: it is judged (and refused)
    code, payload = _run(capsys, "--file", "compose.yml", "--only", "ghcr.io/acme/app")
    assert code == ExitCode.POLICY
    assert payload["results"][0]["code"] == "unresolved"
    # references given as arguments are always judged
    code, payload = _run(capsys, "postgres:latest", "--only", "ghcr.io/acme/app")
    assert code == ExitCode.POLICY


def test_only_that_leaves_nothing_to_check_is_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _mixed(tmp_path)
    code = main(["check", "--file", name, "--only", "ghcr.io/acme/other"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert "none of the 3 image references in compose.yml is one of ghcr.io/acme/other" in err


@pytest.mark.parametrize("bad", ["ghcr.io/acme/app:v1", "ghcr.io/Acme/app", "", "a b"])
def test_only_takes_repositories(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _mixed(tmp_path)
    assert main(["check", "--file", name, "--only", bad]) == ExitCode.USAGE
    assert "--only" in capsys.readouterr().err


# -- hints that fit the rules -----------------------------------------------------------


def test_the_dev_hint_does_not_ask_for_release_tags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--env", "dev", "ghcr.io/o/app:latest"]) == ExitCode.POLICY
    err = capsys.readouterr().err
    assert "release tags" not in err
    assert "dev-<sha>" in err
    assert main(["check", "--env", "prod", "ghcr.io/o/app:latest"]) == ExitCode.POLICY
    assert "exact release tags" in capsys.readouterr().err


def test_the_summary_lists_what_only_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _mixed(tmp_path)
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "output"))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    code = main(["check", "--file", name, "--only", "ghcr.io/acme/app", "--format", "github"])
    capsys.readouterr()
    assert code == ExitCode.OK
    markdown = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "Skipped (not one of the repositories checked): 2" in markdown
    assert "- `postgres:16` (compose.yml:5)" in markdown
