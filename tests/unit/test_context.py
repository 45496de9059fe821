"""Build context detection: GitHub Actions variables and payloads, git, explicit values."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.errors import UsageError
from tagkeeper.tags.compute import ShaSource
from tagkeeper.tags.context import detect

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

PUSH_SHA = "1" * 40
HEAD_SHA = "a" * 40
MERGE_SHA = "b" * 40
BASE_SHA = "c" * 40


class FakeGit:
    """A :class:`~tagkeeper.tags.context.GitRunner` answering from a table; records calls."""

    def __init__(self, answers: dict[tuple[str, ...], str | None]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, args: Sequence[str]) -> str | None:
        key = tuple(args)
        self.calls.append(key)
        return self.answers.get(key)


class NoGit(FakeGit):
    def __init__(self) -> None:
        super().__init__({})


def actions_env(
    tmp_path: Path, event: str, payload: dict[str, Any] | None = None, **extra: str
) -> dict[str, str]:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload or {}), encoding="utf-8")
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event,
        "GITHUB_EVENT_PATH": str(path),
        "GITHUB_SHA": PUSH_SHA,
    }
    env.update(extra)
    return env


def pr_payload(number: int = 7, merge: str | None = MERGE_SHA) -> dict[str, Any]:
    return {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"sha": HEAD_SHA, "ref": "feature"},
            "base": {"sha": BASE_SHA, "ref": "main"},
            "merge_commit_sha": merge,
        },
    }


def test_push_to_branch(tmp_path: Path) -> None:
    git = NoGit()
    env = actions_env(tmp_path, "push", GITHUB_REF="refs/heads/main")
    context = detect(env, git)
    assert (context.sha, context.sha_source, context.ref) == (
        PUSH_SHA,
        ShaSource.push,
        env["GITHUB_REF"],
    )
    assert context.event == "push"
    assert context.branch_name == "main"
    assert git.calls == []  # in CI, git is never asked


def test_ref_name_and_type_when_ref_is_missing(tmp_path: Path) -> None:
    env = actions_env(tmp_path, "push", GITHUB_REF_NAME="v1.0.0", GITHUB_REF_TYPE="tag")
    assert detect(env, NoGit()).tag_name == "v1.0.0"


def test_pull_request_uses_head_by_default(tmp_path: Path) -> None:
    env = actions_env(tmp_path, "pull_request", pr_payload(), GITHUB_REF="refs/pull/7/merge")
    env["GITHUB_SHA"] = MERGE_SHA  # GitHub sets the merge commit here
    context = detect(env, NoGit())
    assert context.sha == HEAD_SHA
    assert context.sha_source is ShaSource.head
    assert context.pr_number == 7


def test_pull_request_merge_uses_github_sha(tmp_path: Path) -> None:
    env = actions_env(
        tmp_path, "pull_request", pr_payload(merge=None), GITHUB_REF="refs/pull/7/merge"
    )
    env["GITHUB_SHA"] = MERGE_SHA
    context = detect(env, NoGit(), pr_sha="merge")
    assert (context.sha, context.sha_source) == (MERGE_SHA, ShaSource.merge)


def test_pull_request_target_merge_comes_from_payload(tmp_path: Path) -> None:
    env = actions_env(tmp_path, "pull_request_target", pr_payload(), GITHUB_REF="refs/heads/main")
    env["GITHUB_SHA"] = BASE_SHA  # base branch head, not the merge commit
    context = detect(env, NoGit(), pr_sha="merge")
    assert (context.sha, context.sha_source, context.pr_number) == (MERGE_SHA, ShaSource.merge, 7)
    with pytest.raises(UsageError, match="merge commit"):
        detect(
            actions_env(tmp_path, "pull_request_target", pr_payload(merge=None)),
            NoGit(),
            pr_sha="merge",
        )


def test_pull_request_number_falls_back_to_ref(tmp_path: Path) -> None:
    payload = pr_payload()
    del payload["number"]
    del payload["pull_request"]["number"]
    env = actions_env(tmp_path, "pull_request", payload, GITHUB_REF="refs/pull/99/merge")
    assert detect(env, NoGit()).pr_number == 99


def test_pull_request_without_payload_is_usage_error(tmp_path: Path) -> None:
    env = actions_env(tmp_path, "pull_request", {}, GITHUB_REF="refs/pull/7/merge")
    with pytest.raises(UsageError, match="pull_request object"):
        detect(env, NoGit())
    env["GITHUB_EVENT_PATH"] = str(tmp_path / "missing.json")
    with pytest.raises(UsageError, match="cannot read"):
        detect(env, NoGit())
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    env["GITHUB_EVENT_PATH"] = str(tmp_path / "bad.json")
    with pytest.raises(UsageError, match="not JSON"):
        detect(env, NoGit())


def test_pull_request_with_bad_head_sha_is_usage_error(tmp_path: Path) -> None:
    payload = pr_payload()
    payload["pull_request"]["head"]["sha"] = "not-a-sha"
    with pytest.raises(UsageError, match=r"head\.sha"):
        detect(actions_env(tmp_path, "pull_request", payload), NoGit())


@pytest.mark.parametrize("event", ["workflow_dispatch", "schedule"])
def test_dispatch_and_schedule_are_branch_builds(tmp_path: Path, event: str) -> None:
    env = actions_env(tmp_path, event, {}, GITHUB_REF="refs/heads/main")
    context = detect(env, NoGit())
    assert (context.sha, context.sha_source, context.tag_name) == (PUSH_SHA, ShaSource.push, None)
    assert context.event == event


def test_dispatch_on_a_tag_is_a_release(tmp_path: Path) -> None:
    env = actions_env(tmp_path, "workflow_dispatch", {}, GITHUB_REF="refs/tags/v2.0.0")
    assert detect(env, NoGit()).tag_name == "v2.0.0"


def test_flags_override_actions(tmp_path: Path) -> None:
    env = actions_env(tmp_path, "pull_request", pr_payload(), GITHUB_REF="refs/pull/7/merge")
    context = detect(env, NoGit(), sha="D" * 40, ref="refs/heads/other")
    assert (context.sha, context.sha_source, context.ref) == (
        "d" * 40,
        ShaSource.flag,
        "refs/heads/other",
    )


def test_actions_without_sha_is_usage_error(tmp_path: Path) -> None:
    env = actions_env(tmp_path, "push", GITHUB_REF="refs/heads/main")
    del env["GITHUB_SHA"]
    with pytest.raises(UsageError, match="GITHUB_SHA"):
        detect(env, NoGit())


def test_outside_ci_branch_from_git() -> None:
    git = FakeGit(
        {
            ("rev-parse", "--verify", "HEAD"): HEAD_SHA,
            ("tag", "--points-at", "HEAD"): "",
            ("symbolic-ref", "-q", "HEAD"): "refs/heads/feature/x",
        }
    )
    context = detect({}, git)
    assert (context.sha, context.sha_source, context.ref) == (
        HEAD_SHA,
        ShaSource.git,
        "refs/heads/feature/x",
    )
    assert context.event is None


def test_outside_ci_highest_semver_tag_at_head_wins() -> None:
    git = FakeGit(
        {
            ("rev-parse", "--verify", "HEAD"): HEAD_SHA,
            ("tag", "--points-at", "HEAD"): "v1.2.3-rc.2\ndeployed\nv1.2.3\nv1.2.3-rc.10",
        }
    )
    context = detect({}, git)
    assert context.ref == "refs/tags/v1.2.3"
    assert any("deployed" in note for note in context.notes)
    assert ("symbolic-ref", "-q", "HEAD") not in git.calls


def test_outside_ci_only_non_semver_tags_means_branch() -> None:
    git = FakeGit(
        {
            ("rev-parse", "--verify", "HEAD"): HEAD_SHA,
            ("tag", "--points-at", "HEAD"): "release-2024",
            ("symbolic-ref", "-q", "HEAD"): None,  # detached
        }
    )
    context = detect({}, git)
    assert context.ref is None
    assert any("detached" in note for note in context.notes)


def test_outside_ci_without_git_is_usage_error() -> None:
    with pytest.raises(UsageError, match="git"):
        detect({}, NoGit())


def test_outside_ci_sha_flag_never_asks_git() -> None:
    git = NoGit()
    context = detect({"GITHUB_SHA": PUSH_SHA}, git, sha=HEAD_SHA, ref="refs/pull/5/merge")
    assert (context.sha, context.sha_source, context.pr_number) == (HEAD_SHA, ShaSource.flag, 5)
    assert git.calls == []


def test_github_variables_without_github_actions_true_are_ignored() -> None:
    git = FakeGit(
        {
            ("rev-parse", "--verify", "HEAD"): HEAD_SHA,
            ("symbolic-ref", "-q", "HEAD"): "refs/heads/main",
        }
    )
    context = detect({"GITHUB_SHA": PUSH_SHA, "GITHUB_REF": "refs/tags/v1.0.0"}, git)
    assert (context.sha, context.ref) == (HEAD_SHA, "refs/heads/main")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sha": "xyz"}, "commit id"),
        ({"ref": "main"}, "full git ref"),
        ({"pr_sha": "base"}, "head, merge"),
    ],
)
def test_bad_explicit_values(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        detect({}, NoGit(), **kwargs)
