"""The rollback commands in-process: record, history, previous, deploy, rollback."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from tagkeeper.cli import main, rollback_cmd
from tagkeeper.errors import ExitCode, RegistryError, UsageError
from tagkeeper.inventory import Version
from tagkeeper.rollback import ledger as ledger_module
from tagkeeper.rollback import sources
from tagkeeper.rollback.ledger import Ledger
from tagkeeper.rollback.resolve import DeployStatus

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from tagkeeper.refs import ImageRef

IMAGE = "ghcr.io/o/app"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


@pytest.fixture
def ledger_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(path))
    for name in (
        "GITHUB_REPOSITORY",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GITHUB_ACTIONS",
        "GITHUB_OUTPUT",
        "GITHUB_SHA",
    ):
        monkeypatch.delenv(name, raising=False)
    return path


@dataclass
class FakeResolver:
    """A DigestResolver: a table of tags, or a registry that is down."""

    table: dict[str, str] = field(default_factory=dict)
    down: bool = False
    asked: list[str] = field(default_factory=list)

    def resolve(self, ref: ImageRef) -> str:
        self.asked.append(str(ref))
        if self.down:
            raise RegistryError("connection refused")
        if str(ref) not in self.table:
            raise UsageError(f"{ref} does not exist in the registry")
        return self.table[str(ref)]


def use_resolver(monkeypatch: pytest.MonkeyPatch, resolver: FakeResolver) -> None:
    monkeypatch.setattr(rollback_cmd, "_registry_resolver", lambda *_a, **_k: resolver)


def use_registry(monkeypatch: pytest.MonkeyPatch, versions: Sequence[Version]) -> list[str]:
    asked: list[str] = []

    def listing(repository: str, *_rest: object) -> list[Version]:
        asked.append(repository)
        return list(versions)

    monkeypatch.setattr(sources, "registry_versions", listing)
    return asked


def record(*args: str) -> int:
    return main(["record", *args])


def seed(*entries: tuple[str, str, str | None]) -> None:
    for tag, status, digest in entries:
        args = ["--env", "prod", "--image", f"{IMAGE}:{tag}", "--status", status]
        if digest:
            args += ["--digest", digest]
        assert record(*args) == 0


def history(path: Path) -> list[tuple[str, DeployStatus, bool]]:
    with Ledger(path, create=False) as ledger:
        return [(r.tag, r.status, r.rollback) for r in ledger.history()]


# -- previous -----------------------------------------------------------------------------


def test_previous_prints_only_the_tag_on_stdout(
    ledger_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(("v1.0.0", "succeeded", D1), ("v1.1.0", "failed", D2), ("v1.2.0", "succeeded", D3))
    capsys.readouterr()

    assert main(["previous", "--image", IMAGE, "--env", "prod"]) == 0
    assert capsys.readouterr().out == "v1.0.0\n"

    assert main(["previous", "--image", IMAGE, "--digest"]) == 0
    assert capsys.readouterr().out == f"{IMAGE}:v1.0.0@{D1}\n"


def test_previous_json(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed(("v1.0.0", "succeeded", D1), ("v1.2.0", "succeeded", None))
    capsys.readouterr()

    assert main(["previous", "--image", IMAGE, "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["tag"] == "v1.0.0"
    assert payload["pinned"] == f"{IMAGE}:v1.0.0@{D1}"
    assert payload["source"] == "ledger"
    assert payload["current"] == "v1.2.0"


def test_previous_with_no_target_exits_8_and_prints_nothing_on_stdout(
    ledger_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(("v1.0.0", "failed", None), ("v1.1.0", "succeeded", None))
    capsys.readouterr()

    code = main(["previous", "--image", IMAGE])

    out, err = capsys.readouterr()
    assert code == 8
    assert ExitCode.NO_TARGET.value == 8
    assert out == ""
    assert "v1.0.0 failed" in err


def test_previous_falls_back_to_the_registry_without_history(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    versions = [
        Version(D1, frozenset({"v1.9.0"}), t0),
        Version(D2, frozenset({"v1.10.0"}), t0 + timedelta(hours=1)),
        Version(D3, frozenset({"v1.11.0", "latest"}), t0 + timedelta(hours=2)),
    ]
    asked = use_registry(monkeypatch, versions)

    code = main(["previous", "--image", IMAGE, "--current", "v1.11.0", "--digest"])

    assert code == 0
    assert capsys.readouterr().out == f"{IMAGE}:v1.10.0@{D2}\n"
    assert asked == [IMAGE]


def test_previous_source_ledger_does_not_fall_back(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = use_registry(monkeypatch, [])
    assert main(["previous", "--image", IMAGE, "--source", "ledger"]) == ExitCode.NO_TARGET
    assert asked == []


def test_previous_digest_resolved_when_none_was_recorded(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(("v1.0.0", "succeeded", None), ("v1.1.0", "succeeded", None))
    use_resolver(monkeypatch, FakeResolver({f"{IMAGE}:v1.0.0": D1}))
    capsys.readouterr()

    assert main(["previous", "--image", IMAGE, "--digest"]) == 0
    out, err = capsys.readouterr()
    assert out == f"{IMAGE}:v1.0.0@{D1}\n"
    assert "no digest was recorded" in err


def test_previous_rejects_current_and_container_together(ledger_path: Path) -> None:
    code = main(["previous", "--image", IMAGE, "--current", "v1", "--container", "web"])
    assert code == ExitCode.USAGE


# -- deploy -------------------------------------------------------------------------------


def env_dump(tmp: Path) -> list[str]:
    """A command that writes its image variables to a file, then exits 0."""
    out = tmp / "env.txt"
    script = f'printf "%s|%s|%s" "$IMAGE" "$IMAGE_DIGEST" "$IMAGE_TAG" > {shlex.quote(str(out))}'
    return ["sh", "-c", script]


def test_deploy_refuses_latest_in_prod_before_running_anything(
    ledger_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    for ref in (f"{IMAGE}:latest", f"{IMAGE}:LATEST", IMAGE, f"{IMAGE}:dev-latest"):
        code = main(
            [
                "deploy",
                "--env",
                "prod",
                "--image",
                ref,
                "--no-resolve-digest",
                "--",
                "touch",
                str(marker),
            ]
        )
        assert code == 3, ref
    assert not marker.exists()
    assert not ledger_path.exists() or history(ledger_path) == []
    assert "nothing was run or recorded" in capsys.readouterr().err


def test_deploy_propagates_the_exit_code_and_records_failed(ledger_path: Path) -> None:
    code = main(
        [
            "deploy",
            "--env",
            "prod",
            "--image",
            f"{IMAGE}:v1.4.0",
            "--no-resolve-digest",
            "--",
            "sh",
            "-c",
            "exit 7",
        ]
    )
    assert code == 7
    with Ledger(ledger_path, create=False) as ledger:
        [rec] = ledger.history()
    assert rec.status is DeployStatus.FAILED
    assert rec.detail == "exit status 7"
    assert rec.ended_at is not None


def test_deploy_runs_with_image_and_digest_and_records_succeeded(
    ledger_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = FakeResolver({f"{IMAGE}:v1.5.0": D2})
    use_resolver(monkeypatch, resolver)

    code = main(
        ["deploy", "--env", "prod", "--image", f"{IMAGE}:v1.5.0", "--", *env_dump(tmp_path)]
    )

    assert code == 0
    assert (tmp_path / "env.txt").read_text() == f"{IMAGE}:v1.5.0|{D2}|v1.5.0"
    with Ledger(ledger_path, create=False) as ledger:
        [rec] = ledger.history()
    assert (rec.tag, rec.digest, rec.status) == ("v1.5.0", D2, DeployStatus.SUCCEEDED)


def test_deploy_pinned_reference_is_not_resolved_again(
    ledger_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = FakeResolver()
    use_resolver(monkeypatch, resolver)
    code = main(
        ["deploy", "--env", "prod", "--image", f"{IMAGE}:v1.5.0@{D3}", "--", *env_dump(tmp_path)]
    )
    assert code == 0
    assert resolver.asked == []
    # IMAGE is the reference exactly as given: pinned in, pinned out
    assert (tmp_path / "env.txt").read_text() == f"{IMAGE}:v1.5.0@{D3}|{D3}|v1.5.0"


def test_deploy_with_the_registry_down_warns_and_deploys_by_tag(
    ledger_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_resolver(monkeypatch, FakeResolver(down=True))

    code = main(
        ["deploy", "--env", "prod", "--image", f"{IMAGE}:v1.5.0", "--", *env_dump(tmp_path)]
    )

    assert code == 0
    assert "could not be resolved" in capsys.readouterr().err
    assert (tmp_path / "env.txt").read_text() == f"{IMAGE}:v1.5.0||v1.5.0"
    assert history(ledger_path) == [("v1.5.0", DeployStatus.SUCCEEDED, False)]


def test_deploy_require_digest_fails_when_the_registry_is_down(
    ledger_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_resolver(monkeypatch, FakeResolver(down=True))
    code = main(
        [
            "deploy",
            "--env",
            "prod",
            "--image",
            f"{IMAGE}:v1.5.0",
            "--require-digest",
            "--",
            *env_dump(tmp_path),
        ]
    )
    assert code == ExitCode.REGISTRY
    assert not (tmp_path / "env.txt").exists()
    assert not ledger_path.exists() or history(ledger_path) == []


def test_deploy_of_a_tag_the_registry_lacks_is_refused(
    ledger_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_resolver(monkeypatch, FakeResolver())
    code = main(
        ["deploy", "--env", "prod", "--image", f"{IMAGE}:v9.9.9", "--", *env_dump(tmp_path)]
    )
    assert code == ExitCode.USAGE
    assert not (tmp_path / "env.txt").exists()


def test_deploy_of_a_missing_command_records_nothing(ledger_path: Path) -> None:
    code = main(
        [
            "deploy",
            "--env",
            "prod",
            "--image",
            f"{IMAGE}:v1.0.0",
            "--no-resolve-digest",
            "--",
            "/nonexistent/deploy.sh",
        ]
    )
    assert code == ExitCode.USAGE
    assert not ledger_path.exists() or history(ledger_path) == []


def test_deploy_without_a_command_is_a_usage_error(ledger_path: Path) -> None:
    code = main(["deploy", "--env", "prod", "--image", f"{IMAGE}:v1.0.0", "--no-resolve-digest"])
    assert code == ExitCode.USAGE


def test_deploy_passes_the_command_arguments_untouched(ledger_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "args.txt"
    code = main(
        [
            "deploy",
            "--env",
            "dev",
            "--image",
            f"{IMAGE}:dev-abc1234",
            "--no-resolve-digest",
            "--",
            "sh",
            "-c",
            'printf "%s;" "$@" > "$0"',
            str(out),
            "--env",
            "a b",
            "$HOME",
        ]
    )
    assert code == 0
    assert out.read_text() == "--env;a b;$HOME;"


# -- rollback -----------------------------------------------------------------------------


def test_rollback_dry_run_prints_and_changes_nothing(
    ledger_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(("v1.0.0", "succeeded", D1), ("v1.1.0", "succeeded", D2))
    before = history(ledger_path)
    capsys.readouterr()

    code = main(
        [
            "rollback",
            "--env",
            "prod",
            "--image",
            IMAGE,
            "--dry-run",
            "--",
            "./deploy.sh",
            "--profile",
            "prod",
        ]
    )

    assert code == 0
    out = capsys.readouterr().out
    assert out == (
        f"IMAGE={IMAGE}:v1.0.0@{D1} IMAGE_DIGEST={D1} IMAGE_TAG=v1.0.0 ./deploy.sh --profile prod\n"
    )
    assert history(ledger_path) == before


def test_rollback_deploys_previous_and_marks_the_bad_one(ledger_path: Path, tmp_path: Path) -> None:
    seed(("v1.0.0", "succeeded", D1), ("v1.1.0", "succeeded", D2))

    code = main(["rollback", "--env", "prod", "--image", IMAGE, "--", *env_dump(tmp_path)])

    assert code == 0
    assert (tmp_path / "env.txt").read_text() == f"{IMAGE}:v1.0.0@{D1}|{D1}|v1.0.0"
    assert history(ledger_path) == [
        ("v1.0.0", DeployStatus.SUCCEEDED, True),
        ("v1.1.0", DeployStatus.ROLLED_BACK, False),
        ("v1.0.0", DeployStatus.SUCCEEDED, False),
    ]


def test_a_failed_rollback_leaves_the_current_deploy_alone(ledger_path: Path) -> None:
    seed(("v1.0.0", "succeeded", D1), ("v1.1.0", "succeeded", D2))

    code = main(["rollback", "--env", "prod", "--image", IMAGE, "--", "sh", "-c", "exit 4"])

    assert code == 4
    assert history(ledger_path)[:2] == [
        ("v1.0.0", DeployStatus.FAILED, True),
        ("v1.1.0", DeployStatus.SUCCEEDED, False),
    ]


def test_rollback_with_nothing_to_go_to_runs_nothing(ledger_path: Path, tmp_path: Path) -> None:
    seed(("v1.0.0", "succeeded", D1))
    code = main(["rollback", "--env", "prod", "--image", IMAGE, "--", *env_dump(tmp_path)])
    assert code == ExitCode.NO_TARGET
    assert not (tmp_path / "env.txt").exists()


# -- record and history -------------------------------------------------------------------


def test_record_rejects_bad_input(ledger_path: Path) -> None:
    assert record("--env", "prod", "--image", f"{IMAGE}:v1", "--status", "done") == 2
    assert record("--env", "prod", "--image", IMAGE, "--status", "started") == 2
    assert (
        record(
            "--env",
            "prod",
            "--image",
            f"{IMAGE}:v1",
            "--status",
            "started",
            "--digest",
            "sha256:short",
        )
        == 2
    )
    assert (
        record(
            "--env", "prod", "--image", f"{IMAGE}:v1@{D1}", "--status", "started", "--digest", D2
        )
        == 2
    )
    assert not ledger_path.exists() or history(ledger_path) == []


def test_history_json_is_always_emitted(
    ledger_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    seed(("v1.0.0", "succeeded", D1))
    seed(("v1.1.0", "started", None))
    capsys.readouterr()
    assert main(["history", "--format", "json", "--image", IMAGE, "--env", "prod"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["tag"], r["status"], r["digest"]) for r in rows] == [
        ("v1.1.0", "started", None),
        ("v1.0.0", "succeeded", D1),
    ]
    assert main(["history", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "v1.1.0" in out
    assert "started" in out


def test_an_unusable_ledger_exits_with_its_own_code(
    ledger_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a SQLite database, it only sits where one should\n" * 4)
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(garbage))
    assert main(["history"]) == 12
    assert ExitCode.LEDGER.value == 12
    assert main(["previous", "--image", IMAGE]) == ExitCode.LEDGER
    assert "garbage.db" in capsys.readouterr().err
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(blocker / "ledger.db"))
    assert (
        main(
            [
                "deploy",
                "--env",
                "prod",
                "--image",
                f"{IMAGE}:v1.0.0",
                "--no-resolve-digest",
                "--",
                "true",
            ]
        )
        == ExitCode.LEDGER
    )
    assert "blocker" in capsys.readouterr().err


def test_ledger_flag_and_config_key(
    ledger_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TAGKEEPER_LEDGER")
    configured = tmp_path / "from-config.db"
    (tmp_path / "tagkeeper.toml").write_text(f'ledger = "{configured}"\n')
    assert record("--env", "prod", "--image", f"{IMAGE}:v1", "--status", "succeeded") == 0
    assert history(configured) == [("v1", DeployStatus.SUCCEEDED, False)]
    flagged = tmp_path / "flag.db"
    assert (
        record(
            "--env",
            "prod",
            "--image",
            f"{IMAGE}:v2",
            "--status",
            "succeeded",
            "--ledger",
            str(flagged),
        )
        == 0
    )
    assert history(flagged) == [("v2", DeployStatus.SUCCEEDED, False)]


def test_previous_without_history_or_current_does_not_ask_the_registry(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked = use_registry(monkeypatch, [])
    assert main(["previous", "--image", IMAGE]) == ExitCode.NO_TARGET
    assert asked == []
    assert "--current" in capsys.readouterr().err


# -- reading never creates the ledger -----------------------------------------------------


def test_history_and_previous_never_create_the_ledger(
    ledger_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the default location (root's or a user's), moved under tmp_path: nothing there yet
    monkeypatch.delenv("TAGKEEPER_LEDGER")
    state = tmp_path / "state"
    expected = state / "tagkeeper" / "ledger.db"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setattr(ledger_module, "ROOT_DEFAULT", expected)

    assert main(["history", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == []
    assert f"no deploy ledger at {expected}" in err

    assert main(["history"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "no deploys recorded" in err

    # auto: no ledger, no GitHub, so the registry answers
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    asked = use_registry(
        monkeypatch,
        [Version(D1, frozenset({"v1.0.0"}), t0), Version(D2, frozenset({"v1.1.0"}), t0)],
    )
    assert main(["previous", "--image", IMAGE, "--current", "v1.1.0"]) == 0
    out, err = capsys.readouterr()
    assert out == "v1.0.0\n"
    assert asked == [IMAGE]
    assert f"no deploy ledger at {expected}" in err

    # --source ledger: no answer, and it says where it looked
    code = main(["previous", "--image", IMAGE, "--source", "ledger"])
    out, err = capsys.readouterr()
    assert code == ExitCode.NO_TARGET
    assert out == ""
    assert f"no deploy ledger exists at {expected}" in err

    # a dry-run rollback only reads too
    code = main(
        ["rollback", "--image", IMAGE, "--current", "v1.1.0", "--dry-run", "--", "./deploy.sh"]
    )
    assert code == 0
    assert capsys.readouterr().out.startswith(f"IMAGE={IMAGE}:v1.0.0@{D1} ")

    assert not state.exists()  # neither the file nor its folders


def test_history_reads_an_existing_ledger_without_writing_it(
    ledger_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(("v1.0.0", "succeeded", D1))
    before = history(ledger_path)
    capsys.readouterr()
    assert main(["history", "--format", "json"]) == 0
    assert [r["tag"] for r in json.loads(capsys.readouterr().out)] == ["v1.0.0"]
    assert history(ledger_path) == before


# -- --image takes a repository -----------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        ("previous", f"{IMAGE}:v1", "--current v1"),
        ("previous", f"{IMAGE}@{D1}", f"--image {IMAGE}"),
        ("previous", f"{IMAGE}:v1@{D1}", "--current v1"),
        ("rollback", f"{IMAGE}:v1", "--current v1"),
        ("history", f"{IMAGE}:v1", f"--image {IMAGE}"),
    ],
)
def test_image_with_a_tag_or_digest_is_bad_input(
    ledger_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: tuple[str, str, str],
) -> None:
    command, image, hint = case
    asked = use_registry(monkeypatch, [])
    argv = [command, "--image", image]
    if command == "rollback":
        argv += ["--", "true"]

    code = main(argv)

    out, err = capsys.readouterr()
    assert code == ExitCode.USAGE
    assert out == ""
    assert "--image takes a repository" in err
    assert hint in err
    assert asked == []
    assert not ledger_path.exists()


# -- previous --format github -------------------------------------------------------------


def _outputs(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines())
    return dict(pairs)


@pytest.mark.parametrize("pinned", [False, True])
def test_previous_github_output_previous_is_what_text_prints(
    ledger_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    pinned: bool,
) -> None:
    seed(("v1.0.0", "succeeded", D1), ("v1.1.0", "succeeded", D2))
    argv = ["previous", "--image", IMAGE] + (["--digest"] if pinned else [])
    capsys.readouterr()
    assert main(argv) == 0
    text = capsys.readouterr().out.rstrip("\n")
    output = tmp_path / "github_output"
    output.write_text("")
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))

    assert main([*argv, "--format", "github"]) == 0

    assert capsys.readouterr().out.rstrip("\n") == text
    outputs = _outputs(output)
    assert outputs["previous"] == text
    assert text == (f"{IMAGE}:v1.0.0@{D1}" if pinned else "v1.0.0")
    assert outputs["tag"] == "v1.0.0"
    assert outputs["digest"] == D1


# -- rollback runs the image pinned by digest ---------------------------------------------


def test_rollback_resolves_the_digest_when_none_was_recorded(
    ledger_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(("v1.0.0", "succeeded", None), ("v1.1.0", "succeeded", None))
    resolver = FakeResolver({f"{IMAGE}:v1.0.0": D1})
    use_resolver(monkeypatch, resolver)

    code = main(["rollback", "--env", "prod", "--image", IMAGE, "--", *env_dump(tmp_path)])

    assert code == 0
    assert resolver.asked == [f"{IMAGE}:v1.0.0"]
    assert (tmp_path / "env.txt").read_text() == f"{IMAGE}:v1.0.0@{D1}|{D1}|v1.0.0"
    with Ledger(ledger_path, create=False) as ledger:
        newest = ledger.history()[0]
    assert (newest.tag, newest.digest, newest.rollback) == ("v1.0.0", D1, True)


def test_rollback_uses_the_recorded_digest_even_if_the_tag_was_pushed_again(
    ledger_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(("v1.0.0", "succeeded", D1), ("v1.1.0", "succeeded", D2))
    resolver = FakeResolver({f"{IMAGE}:v1.0.0": D3})  # v1.0.0 re-pushed since
    use_resolver(monkeypatch, resolver)

    code = main(["rollback", "--env", "prod", "--image", IMAGE, "--", *env_dump(tmp_path)])

    assert code == 0
    assert resolver.asked == []
    assert (tmp_path / "env.txt").read_text() == f"{IMAGE}:v1.0.0@{D1}|{D1}|v1.0.0"


def test_rollback_without_a_digest_warns_and_goes_on_by_tag(
    ledger_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed(("v1.0.0", "succeeded", None), ("v1.1.0", "succeeded", None))
    use_resolver(monkeypatch, FakeResolver(down=True))
    capsys.readouterr()

    code = main(["rollback", "--env", "prod", "--image", IMAGE, "--", *env_dump(tmp_path)])

    assert code == 0
    err = capsys.readouterr().err
    assert "could not be resolved" in err
    assert "rolling back to it by tag" in err
    assert (tmp_path / "env.txt").read_text() == f"{IMAGE}:v1.0.0||v1.0.0"


def test_rollback_no_resolve_digest_warns_and_never_asks(
    ledger_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed(("v1.0.0", "succeeded", None), ("v1.1.0", "succeeded", None))
    resolver = FakeResolver({f"{IMAGE}:v1.0.0": D1})
    use_resolver(monkeypatch, resolver)
    capsys.readouterr()

    code = main(
        [
            "rollback",
            "--image",
            IMAGE,
            "--no-resolve-digest",
            "--dry-run",
            "--",
            "./deploy.sh",
        ]
    )

    assert code == 0
    out, err = capsys.readouterr()
    assert resolver.asked == []
    assert out == f"IMAGE={IMAGE}:v1.0.0 IMAGE_TAG=v1.0.0 ./deploy.sh\n"
    assert "rolling back to it by tag" in err


def test_rollback_require_digest_runs_nothing_without_one(
    ledger_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(("v1.0.0", "succeeded", None), ("v1.1.0", "succeeded", None))
    before = history(ledger_path)
    use_resolver(monkeypatch, FakeResolver(down=True))

    code = main(["rollback", "--image", IMAGE, "--require-digest", "--", *env_dump(tmp_path)])

    assert code == ExitCode.REGISTRY
    assert not (tmp_path / "env.txt").exists()
    assert history(ledger_path) == before

    both = ["--no-resolve-digest", "--require-digest"]
    assert main(["rollback", "--image", IMAGE, *both, "--", "true"]) == ExitCode.USAGE
    assert main(["deploy", "--image", f"{IMAGE}:v1.0.0", *both, "--", "true"]) == ExitCode.USAGE
    assert history(ledger_path) == before


def test_deploy_keeps_image_as_given_while_rollback_pins_it(
    ledger_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_resolver(monkeypatch, FakeResolver({f"{IMAGE}:v1.0.0": D1, f"{IMAGE}:v1.1.0": D2}))
    for tag in ("v1.0.0", "v1.1.0"):
        code = main(["deploy", "--image", f"{IMAGE}:{tag}", "--", *env_dump(tmp_path)])
        assert code == 0
    # deploy: the digest is resolved and recorded, IMAGE is what the user passed
    assert (tmp_path / "env.txt").read_text() == f"{IMAGE}:v1.1.0|{D2}|v1.1.0"

    assert main(["rollback", "--image", IMAGE, "--", *env_dump(tmp_path)]) == 0
    # rollback: tagkeeper's own answer, pinned to the digest deployed before
    assert (tmp_path / "env.txt").read_text() == f"{IMAGE}:v1.0.0@{D1}|{D1}|v1.0.0"


# -- bad input: an empty --current, environment names ------------------------------------


@pytest.mark.parametrize("command", ["previous", "rollback"])
def test_an_empty_current_is_bad_input_before_anything_is_read_or_run(
    ledger_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    seed(("v1.0.0", "succeeded", D1), ("v1.1.0", "succeeded", D2))
    asked = use_registry(monkeypatch, [])
    marker = tmp_path / "ran"
    before = history(ledger_path)
    for value in ("", " v1.0.0", "v1.0.0!"):
        capsys.readouterr()
        argv = [command, "--image", IMAGE, "--env", "prod", "--current", value]
        if command == "rollback":
            argv += ["--", "touch", str(marker)]
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == ExitCode.USAGE, (value, err)
        assert out == ""
        assert "current" in err
    assert not marker.exists()
    assert history(ledger_path) == before
    assert asked == []


def test_previous_container_must_name_a_container(ledger_path: Path) -> None:
    assert main(["previous", "--image", IMAGE, "--container", ""]) == ExitCode.USAGE


# -- environment names -------------------------------------------------------------------


BAD_ENVS = [" prod", "prod ", "prod!", "", "\tprod", "prod\n", "-prod", "p" * 256]


@pytest.mark.parametrize("name", BAD_ENVS)
def test_every_command_applies_the_environment_grammar_without_trimming(
    ledger_path: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(("v1.0.0", "succeeded", D1), ("v1.1.0", "succeeded", D2))
    before = history(ledger_path)
    marker = tmp_path / "ran"
    run = ["--", "touch", str(marker)]
    commands = [
        ["record", "--env", name, "--image", f"{IMAGE}:v1.2.0", "--status", "succeeded"],
        ["deploy", "--env", name, "--image", f"{IMAGE}:v1.2.0@{D3}", *run],
        ["rollback", "--env", name, "--image", IMAGE, *run],
        ["previous", "--env", name, "--image", IMAGE],
        ["history", "--env", name],
        ["check", "--env", name, f"{IMAGE}:v1.2.0"],
        ["tags", "--env", name, "--sha", "a" * 40, "--ref", "refs/tags/v1.2.0"],
        ["prune", "--env", name, "--image", IMAGE, "--dry-run"],
    ]
    for argv in commands:
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == ExitCode.USAGE, (argv, err)
        assert "environment name" in err, (argv, err)
        assert out == "", argv
    assert history(ledger_path) == before
    assert not marker.exists()


def test_the_ledger_refuses_a_bad_environment_name_from_a_library_user(ledger_path: Path) -> None:
    from tagkeeper.rollback.ledger import Actor

    with Ledger(ledger_path) as ledger:
        for name in (" prod", "prod!"):
            with pytest.raises(UsageError, match="environment name"):
                ledger.record(
                    environment=name,
                    repository=IMAGE,
                    tag="v1.0.0",
                    status=DeployStatus.SUCCEEDED,
                    actor=Actor(),
                )
        assert ledger.history() == []
