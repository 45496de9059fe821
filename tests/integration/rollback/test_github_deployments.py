"""GitHub Deployments as rollback history: PyGithub against the fake over loopback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.cli import main
from tagkeeper.errors import AuthError, ExitCode, NoRollbackTarget
from tagkeeper.rollback.github import GitHubDeployments, make_payload
from tagkeeper.rollback.resolve import DeployStatus, previous_from_history
from tests.integration.rollback.conftest import IMAGE, REPO, GitHubFake

if TYPE_CHECKING:
    from pathlib import Path

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def seed(
    fake: GitHubFake,
    env: str,
    tag: str,
    states: list[str],
    digest: str | None = None,
    *,
    image: str = IMAGE,
    auto_inactive: bool = True,
) -> int:
    """A deployment written as tagkeeper writes it, with ``states`` posted in order."""
    dep = fake.fake.add_deployment(
        REPO, environment=env, payload=make_payload(image, tag, digest), ref=tag
    )
    for state in states:
        fake.fake.add_status(REPO, dep, state, auto_inactive=auto_inactive)
    return dep


def previous(fake: GitHubFake, env: str = "prod", **kw: Any) -> Any:
    source = GitHubDeployments(fake.repo())
    return previous_from_history(
        source.iter_history(IMAGE, env),
        repository=IMAGE,
        environment=env,
        source="github",
        **kw,
    )


def test_success_that_turned_inactive_still_counts(github_fake: GitHubFake) -> None:
    seed(github_fake, "prod", "v1.2.0", ["in_progress", "success"], D1)
    seed(github_fake, "prod", "v1.3.0", ["in_progress", "success"], D2)
    seed(github_fake, "prod", "v1.4.0", ["in_progress", "success"], D3)
    # The fake inactivated the earlier ones, as GitHub does when a newer one succeeds.
    first = github_fake.fake.deployments(REPO)[0]
    assert [s.state for s in first.statuses][-1] == "inactive"

    target = previous(github_fake)

    assert (target.tag, target.digest, target.current) == ("v1.3.0", D2, "v1.4.0")
    assert target.source == "github"


def test_failed_error_and_unfinished_deployments_are_skipped(github_fake: GitHubFake) -> None:
    seed(github_fake, "prod", "v1.1.0", ["success"], D1)
    seed(github_fake, "prod", "v1.2.0", ["in_progress", "error"])
    seed(github_fake, "prod", "v1.2.1", ["success", "failure"])  # went bad after success
    seed(github_fake, "prod", "v1.2.2", ["queued"])  # never finished
    seed(github_fake, "prod", "v1.3.0", ["success"], D3)

    target = previous(github_fake)

    assert target.tag == "v1.1.0"
    assert target.digest == D1


def test_history_is_read_across_pages(github_fake: GitHubFake) -> None:
    seed(github_fake, "prod", "v1.0.0", ["success"], D1)
    for n in range(12):  # more than two pages of 5 that fail
        seed(github_fake, "prod", f"v1.1.{n}", ["failure"])
    seed(github_fake, "prod", "v1.2.0", ["success"], D2)

    target = previous(github_fake)

    assert target.tag == "v1.0.0"
    pages = {
        q.get("page", ["1"])[0]
        for m, p, q in github_fake.fake.requests
        if m == "GET" and p.endswith("/deployments")
    }
    assert {"1", "2", "3"} <= pages
    assert all(
        q.get("environment") == ["prod"]
        for m, p, q in github_fake.fake.requests
        if m == "GET" and p.endswith("/deployments")
    )


def test_statuses_are_read_across_pages(github_fake: GitHubFake) -> None:
    # The success is the oldest of 8 statuses: it sits on the second page of 5.
    seed(github_fake, "prod", "v1.0.0", ["success", *["inactive"] * 7], D1, auto_inactive=False)
    seed(github_fake, "prod", "v1.1.0", ["success"], D2)

    assert previous(github_fake).tag == "v1.0.0"


def test_other_environments_images_and_foreign_payloads_are_ignored(
    github_fake: GitHubFake,
) -> None:
    seed(github_fake, "prod", "v1.0.0", ["success"], D1)
    seed(github_fake, "staging", "v1.1.0", ["success"])
    seed(github_fake, "prod", "v9.0.0", ["success"], image="ghcr.io/octo/other")
    github_fake.fake.add_deployment(REPO, environment="prod", payload="not json")
    other_tool = github_fake.fake.add_deployment(
        REPO, environment="prod", payload={"image": f"{IMAGE}:v1.0.5@{D2}"}
    )
    github_fake.fake.add_status(REPO, other_tool, "success")
    seed(github_fake, "prod", "v1.2.0", ["success"], D3)

    target = previous(github_fake)

    # A payload with a full reference (written by another tool) is read too.
    assert (target.tag, target.digest) == ("v1.0.5", D2)


def test_nothing_qualifies_says_why(github_fake: GitHubFake) -> None:
    seed(github_fake, "prod", "v1.0.0", ["failure"])
    seed(github_fake, "prod", "v1.1.0", ["success"])

    with pytest.raises(NoRollbackTarget) as caught:
        previous(github_fake)

    assert "before v1.1.0" in caught.value.message
    assert "v1.0.0 failed" in caught.value.message


def test_bad_token_is_an_auth_error(github_fake: GitHubFake) -> None:
    from tagkeeper.rollback.github import connect
    from tagkeeper.secret import Secret

    repo = connect(
        REPO, Secret("ghp_wrong"), api_url=github_fake.api_url, seconds_between_writes=None
    )
    with pytest.raises(AuthError) as caught:
        GitHubDeployments(repo).history(IMAGE, "prod")
    assert "ghp_wrong" not in caught.value.diagnostics()


def _cli_env(monkeypatch: pytest.MonkeyPatch, fake: GitHubFake, ledger: Path) -> None:
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    monkeypatch.setenv("GITHUB_TOKEN", fake.token)
    monkeypatch.setenv("GITHUB_API_URL", fake.api_url)
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(ledger))
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    for name in ("GITHUB_SERVER_URL", "GITHUB_RUN_ID"):
        monkeypatch.delenv(name, raising=False)


def test_record_github_creates_the_deployment_then_finishes_it(
    github_fake: GitHubFake,
    ledger_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _cli_env(monkeypatch, github_fake, ledger_path)
    ref = f"{IMAGE}:v2.0.0@{D2}"

    assert main(["record", "--env", "prod", "--image", ref, "--status", "started", "--github"]) == 0
    assert (
        main(["record", "--env", "prod", "--image", ref, "--status", "succeeded", "--github"]) == 0
    )

    deployments = github_fake.fake.deployments(REPO)
    assert len(deployments) == 1, "the finish must update the open deployment"
    dep = deployments[0]
    assert dep.environment == "prod"
    assert dep.ref == "v2.0.0"
    assert dep.auto_merge is False
    assert dep.required_contexts == []
    assert dep.transient_environment is False
    assert dep.payload == {
        "tagkeeper": 1,
        "image": IMAGE,
        "tag": "v2.0.0",
        "digest": D2,
        "rollback": False,
        "ci_run_url": None,
    }
    assert [s.state for s in dep.statuses] == ["in_progress", "success"]
    capsys.readouterr()

    # What was written reads back as a succeeded deploy through the same source.
    assert (
        main(
            [
                "previous",
                "--image",
                IMAGE,
                "--env",
                "prod",
                "--source",
                "github",
                "--current",
                "v2.1.0",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == "v2.0.0\n"


def test_record_github_rolled_back_marks_the_successful_deployment(
    github_fake: GitHubFake,
    ledger_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _cli_env(monkeypatch, github_fake, ledger_path)
    seed(github_fake, "prod", "v1.0.0", ["success"], D1)
    bad = seed(github_fake, "prod", "v1.1.0", ["success"], D2)

    assert (
        main(
            [
                "record",
                "--env",
                "prod",
                "--image",
                f"{IMAGE}:v1.1.0",
                "--status",
                "rolled_back",
                "--github",
            ]
        )
        == 0
    )

    dep = github_fake.fake.deployment(REPO, bad)
    assert dep is not None
    assert dep.statuses[-1].state == "failure"
    assert dep.statuses[-1].description.startswith("rolled back")
    history = GitHubDeployments(github_fake.repo()).history(IMAGE, "prod")
    assert [(r.tag, r.status) for r in history] == [
        ("v1.1.0", DeployStatus.ROLLED_BACK),
        ("v1.0.0", DeployStatus.SUCCEEDED),
    ]


def test_previous_source_github_cli_prints_only_the_pinned_answer(
    github_fake: GitHubFake,
    ledger_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _cli_env(monkeypatch, github_fake, ledger_path)
    seed(github_fake, "prod", "v1.0.0", ["success"], D1)
    seed(github_fake, "prod", "v1.1.0", ["success"], D2)

    code = main(["previous", "--image", IMAGE, "--source", "github", "--digest"])

    out = capsys.readouterr().out
    assert code == 0
    assert out == f"{IMAGE}:v1.0.0@{D1}\n"


def test_auto_source_uses_github_when_the_ledger_is_empty(
    github_fake: GitHubFake,
    ledger_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _cli_env(monkeypatch, github_fake, ledger_path)
    seed(github_fake, "prod", "v1.0.0", ["success"], D1)
    seed(github_fake, "prod", "v1.1.0", ["success"], D2)

    code = main(["previous", "--image", IMAGE, "--format", "json"])

    assert code == 0
    import json

    payload = json.loads(capsys.readouterr().out)
    assert payload["source"] == "github"
    assert payload["tag"] == "v1.0.0"


def test_github_without_token_is_an_auth_error(
    github_fake: GitHubFake,
    ledger_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _cli_env(monkeypatch, github_fake, ledger_path)
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.delenv("GH_TOKEN", raising=False)

    code = main(["previous", "--image", IMAGE, "--source", "github"])

    assert code == ExitCode.AUTH


def test_deploy_and_rollback_with_github_record_both_places(
    github_fake: GitHubFake,
    ledger_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _cli_env(monkeypatch, github_fake, ledger_path)
    for tag, digest in (("v3.0.0", D1), ("v3.1.0", D2)):
        code = main(
            [
                "deploy",
                "--env",
                "prod",
                "--image",
                f"{IMAGE}:{tag}@{digest}",
                "--github",
                "--",
                "true",
            ]
        )
        assert code == 0

    code = main(
        [
            "rollback",
            "--env",
            "prod",
            "--image",
            IMAGE,
            "--source",
            "github",
            "--github",
            "--",
            "true",
        ]
    )

    assert code == 0
    deployments = github_fake.fake.deployments(REPO)
    assert [(d.payload["tag"], d.payload["rollback"]) for d in deployments] == [
        ("v3.0.0", False),
        ("v3.1.0", False),
        ("v3.0.0", True),
    ]
    assert [s.state for s in deployments[2].statuses] == ["in_progress", "success"]
    bad = deployments[1]
    assert bad.statuses[-1].state == "failure"
    assert bad.statuses[-1].description.startswith("rolled back")
    assert deployments[2].payload["digest"] == D1  # pinned to what was deployed before
    # the ledger saw the same story
    from tagkeeper.rollback.ledger import Ledger

    with Ledger(ledger_path, create=False) as ledger:
        assert [(r.tag, r.status, r.rollback) for r in ledger.history()] == [
            ("v3.0.0", DeployStatus.SUCCEEDED, True),
            ("v3.1.0", DeployStatus.ROLLED_BACK, False),
            ("v3.0.0", DeployStatus.SUCCEEDED, False),
        ]


def test_a_github_failure_at_start_runs_nothing_and_closes_the_ledger_record(
    github_fake: GitHubFake,
    ledger_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _cli_env(monkeypatch, github_fake, ledger_path)
    github_fake.emu.fail_next(10, 503, kinds={"rest.deployments.create"})
    marker = tmp_path / "ran"

    code = main(
        [
            "deploy",
            "--env",
            "prod",
            "--image",
            f"{IMAGE}:v4.0.0",
            "--no-resolve-digest",
            "--github",
            "--",
            "touch",
            str(marker),
        ]
    )

    assert code == ExitCode.REGISTRY
    assert not marker.exists()
    from tagkeeper.rollback.ledger import Ledger

    with Ledger(ledger_path, create=False) as ledger:
        [rec] = ledger.history()
    assert rec.status is DeployStatus.FAILED
    assert rec.detail is not None
    assert rec.detail.startswith("not run")


def test_environments_lists_where_the_image_was_deployed(github_fake: GitHubFake) -> None:
    seed(github_fake, "production", "v1.0.0", ["success"], D1)
    seed(github_fake, "staging", "v1.1.0", ["in_progress"])
    seed(github_fake, "qa", "v1.1.0", ["success"], image="ghcr.io/octo/other")

    assert GitHubDeployments(github_fake.repo()).environments(IMAGE) == ["production", "staging"]


def test_prune_env_with_no_deployment_there_stops_before_the_registry(
    github_fake: GitHubFake,
    ledger_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _cli_env(monkeypatch, github_fake, ledger_path)
    seed(github_fake, "production", "v1.0.0", ["success"], D1)
    capsys.readouterr()

    code = main(["prune", "--image", IMAGE, "--env", "prod", "--source", "github", "--yes"])

    err = capsys.readouterr().err
    assert code == ExitCode.USAGE, err
    assert "recorded to production only" in err
    assert "--env production" in err
    assert not [e for e in github_fake.emu.log if "/deployments" not in e.path]
    assert not ledger_path.exists()


INJECTED = "sha256:" + "e" * 64 + "\n::set-output name=digest::sha256:" + "f" * 64


@pytest.mark.parametrize(
    "payload",
    [
        {"tagkeeper": 1, "image": IMAGE, "tag": "v1.0.0", "digest": INJECTED},
        {"tagkeeper": 1, "image": IMAGE, "tag": "v1.0.0", "digest": "sha256:" + "E" * 64},
        {"tagkeeper": 1, "image": IMAGE, "tag": "v1.0.0", "digest": "sha512:" + "e" * 128},
        {"tagkeeper": 1, "image": IMAGE, "tag": "v1.0.0", "digest": ["sha256:" + "e" * 64]},
        {"tagkeeper": 1, "image": IMAGE, "tag": "v1.0.0\n::warning::pwned", "digest": D1},
        {"image": f"{IMAGE}:v1.0.0@sha512:{'e' * 128}"},
    ],
    ids=["injected", "upper-case", "sha512", "a-list", "tag-with-newline", "foreign-sha512"],
)
def test_a_deployment_with_a_bad_digest_or_tag_is_never_history(
    github_fake: GitHubFake,
    ledger_path: Path,
    tmp_path: Path,
    *,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    payload: dict[str, Any],
) -> None:
    """Anyone with deployments: write can add one; it must not steer what runs."""
    _cli_env(monkeypatch, github_fake, ledger_path)
    seed(github_fake, "prod", "v1.0.0", ["success"], D1)
    fake = github_fake.fake.add_deployment(REPO, environment="prod", payload=payload, ref="x")
    github_fake.fake.add_status(REPO, fake, "success")
    seed(github_fake, "prod", "v1.1.0", ["success"], D2)
    output = tmp_path / "output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))

    code = main(["previous", "--image", IMAGE, "--source", "github", "--digest",
                 "--format", "github"])  # fmt: skip

    out, err = capsys.readouterr()
    assert code == 0
    assert out == f"{IMAGE}:v1.0.0@{D1}\n"  # the deploy tagkeeper recorded, not the fake
    assert f"warning: GitHub deployment #{fake} of {IMAGE} to prod is not used: its " in err
    written = output.read_text(encoding="utf-8")
    for text in (out, err, written):
        assert "e" * 64 not in text.lower()
        assert "set-output" not in text
        assert "pwned" not in text
    # and a rollback runs the recorded digest
    dump = tmp_path / "image.txt"
    code = main(["rollback", "--env", "prod", "--image", IMAGE, "--source", "github", "--",
                 "sh", "-c", f'printf %s "$IMAGE" > {dump}'])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert dump.read_text(encoding="utf-8") == f"{IMAGE}:v1.0.0@{D1}"


def test_when_only_refused_deployments_remain_nothing_qualifies_and_the_warning_stays(
    github_fake: GitHubFake,
    ledger_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _cli_env(monkeypatch, github_fake, ledger_path)
    fake = github_fake.fake.add_deployment(
        REPO, environment="prod", payload={"image": IMAGE, "tag": "v1.0.0", "digest": INJECTED}
    )
    github_fake.fake.add_status(REPO, fake, "success")
    seed(github_fake, "prod", "v1.1.0", ["success"], D2)

    code = main(["previous", "--image", IMAGE, "--source", "github", "--digest"])

    out, err = capsys.readouterr()
    assert (code, out) == (ExitCode.NO_TARGET, "")
    assert f"GitHub deployment #{fake} of {IMAGE} to prod is not used" in err
