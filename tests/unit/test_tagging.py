"""Tag computation: pure rules, no environment, no git."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.channels import is_dev_tag, is_pr_tag, looks_like_build_tag
from tagkeeper.errors import PolicyViolation, UsageError
from tagkeeper.gate.rules import Code, is_strict, policy_for
from tagkeeper.refs import is_valid_tag
from tagkeeper.tags.compute import (
    BuildContext,
    Channel,
    ShaSource,
    TagOptions,
    check_dev_pointer,
    compute_tags,
    image_references,
    validate_ref,
    validate_sha,
)

SHA = "0123456789abcdef0123456789abcdef01234567"


def ctx(ref: str | None, *, pr: int | None = None, sha: str = SHA) -> BuildContext:
    return BuildContext(sha=sha, sha_source=ShaSource.push, ref=ref, pr_number=pr)


def test_branch_build_gets_dev_sha_with_default_length() -> None:
    result = compute_tags(ctx("refs/heads/main"))
    assert result.tags == ("dev-0123456",)
    assert result.env == "dev"
    assert result.channel is Channel.dev
    assert result.version is None


@pytest.mark.parametrize("length", [4, 12, 40])
def test_sha_length_is_configurable(length: int) -> None:
    result = compute_tags(ctx("refs/heads/main"), TagOptions(sha_length=length))
    assert result.tags == (f"dev-{SHA[:length]}",)


@pytest.mark.parametrize("length", [0, 3, 41, 99, -1])
def test_sha_length_out_of_range_is_usage_error(length: int) -> None:
    with pytest.raises(UsageError, match="out of range"):
        compute_tags(ctx("refs/heads/main"), TagOptions(sha_length=length))


def test_short_sha_cannot_fill_the_sha_length() -> None:
    with pytest.raises(UsageError, match="fewer than"):
        compute_tags(ctx("refs/heads/main", sha="abc12"), TagOptions(sha_length=7))


def test_release_tag_keeps_v_by_default_and_bare_on_request() -> None:
    assert compute_tags(ctx("refs/tags/v1.2.3")).tags == ("v1.2.3",)
    assert compute_tags(ctx("refs/tags/1.2.3")).tags == ("v1.2.3",)
    bare = compute_tags(ctx("refs/tags/v1.2.3"), TagOptions(v_prefix=False))
    assert bare.tags == ("1.2.3",)
    assert bare.env == "prod"
    assert bare.channel is Channel.release
    assert str(bare.version) == "1.2.3"


def test_aliases_only_on_request_and_only_for_stable() -> None:
    assert compute_tags(ctx("refs/tags/v1.2.3")).tags == ("v1.2.3",)
    stable = compute_tags(ctx("refs/tags/v1.2.3"), TagOptions(aliases=True))
    assert stable.tags == ("v1.2.3", "v1.2", "v1")
    bare = compute_tags(ctx("refs/tags/v1.2.3"), TagOptions(aliases=True, v_prefix=False))
    assert bare.tags == ("1.2.3", "1.2", "1")
    pre = compute_tags(ctx("refs/tags/v1.2.3-rc.1"), TagOptions(aliases=True))
    assert pre.tags == ("v1.2.3-rc.1",)
    assert any("prerelease" in note for note in pre.notes)


def test_zero_major_gets_no_major_alias() -> None:
    result = compute_tags(ctx("refs/tags/v0.4.1"), TagOptions(aliases=True))
    assert result.tags == ("v0.4.1", "v0.4")


def test_prerelease_defaults_to_dev_env() -> None:
    result = compute_tags(ctx("refs/tags/v2.0.0-beta.2"))
    assert result.channel is Channel.prerelease
    assert result.env == "dev"
    assert result.tags == ("v2.0.0-beta.2",)


@pytest.mark.parametrize("env", ["prod", "production", "PROD", "staging"])
def test_prerelease_for_a_strict_env_needs_allow_prerelease(env: str) -> None:
    # check refuses v2.0.0-beta.2 in these environments unless prereleases are allowed
    with pytest.raises(PolicyViolation, match="prerelease") as caught:
        compute_tags(ctx("refs/tags/v2.0.0-beta.2"), TagOptions(env=env))
    assert "--allow-prerelease" in (caught.value.hint or "")
    allowed = compute_tags(
        ctx("refs/tags/v2.0.0-beta.2"), TagOptions(env=env, allow_prerelease=True)
    )
    assert (allowed.env, allowed.tags) == (env, ("v2.0.0-beta.2",))
    # a stable release needs no allowance
    assert compute_tags(ctx("refs/tags/v2.0.0"), TagOptions(env=env)).tags == ("v2.0.0",)


def test_build_metadata_is_kept_with_underscore() -> None:
    result = compute_tags(ctx("refs/tags/v1.2.3+build.7"), TagOptions(aliases=True))
    assert result.tags == ("v1.2.3_build.7", "v1.2", "v1")
    assert str(result.version) == "1.2.3+build.7"
    assert result.env == "prod"


@pytest.mark.parametrize(
    ("tag", "why"),
    [
        ("release-2024", "MAJOR.MINOR.PATCH"),
        ("v1.2", "MAJOR.MINOR.PATCH"),
        ("v01.2.3", "leading zero"),
        ("V1.2.3", "prefix"),
        ("v1.2.3-rc..1", "empty identifier"),
    ],
)
def test_non_semver_git_tag_is_usage_error_with_reason(tag: str, why: str) -> None:
    with pytest.raises(UsageError) as info:
        compute_tags(ctx(f"refs/tags/{tag}"))
    assert "not a SemVer" in info.value.message
    assert why in info.value.message
    assert tag in info.value.message


def test_release_tag_too_long_for_oci_is_an_error() -> None:
    long_pre = "a" * 130
    with pytest.raises(UsageError, match="128"):
        compute_tags(ctx(f"refs/tags/v1.2.3-{long_pre}"))


def test_pull_request_emits_dev_sha_and_pr_number() -> None:
    result = compute_tags(ctx("refs/pull/42/merge", pr=42))
    assert result.tags == ("dev-0123456", "pr-42")
    assert result.channel is Channel.pr
    assert result.env == "dev"


def test_dev_pointer_is_opt_in_and_only_for_dev_branch_builds() -> None:
    branch = compute_tags(ctx("refs/heads/main"), TagOptions(dev_pointer="dev-latest"))
    assert branch.tags == ("dev-0123456", "dev-latest")
    pr = compute_tags(ctx("refs/pull/3/merge", pr=3), TagOptions(dev_pointer="dev-latest"))
    assert "dev-latest" not in pr.tags
    release = compute_tags(ctx("refs/tags/v1.0.0"), TagOptions(dev_pointer="dev-latest"))
    assert release.tags == ("v1.0.0",)
    assert any("dev-latest" in note for note in release.notes)
    development = compute_tags(
        ctx("refs/heads/main"), TagOptions(dev_pointer="dev-latest", env="Development")
    )
    assert development.tags == ("dev-0123456", "dev-latest")


@pytest.mark.parametrize("ref", ["refs/heads/main", "refs/pull/3/merge"])
@pytest.mark.parametrize("env", ["prod", "PROD", "production", "Production", "staging"])
def test_strict_envs_refuse_branch_and_pr_builds(ref: str, env: str) -> None:
    # the same environments in which `check` refuses dev-<sha> (rules.is_strict)
    pr = 3 if "pull" in ref else None
    with pytest.raises(PolicyViolation, match=f"{env} refuses"):
        compute_tags(ctx(ref, pr=pr), TagOptions(env=env, dev_pointer="dev-latest"))
    assert is_strict(env)
    dev_tag = compute_tags(ctx(ref, pr=pr)).tags[0]
    assert policy_for(env).judge_text(f"ghcr.io/o/app:{dev_tag}").code is Code.DEV_TAG


@pytest.mark.parametrize("env", [" prod", "prod ", " dev", "pro d\t", "-dev", "prod\n"])
def test_env_names_are_validated_not_trimmed(env: str) -> None:
    with pytest.raises(UsageError, match="not an environment name"):
        compute_tags(ctx("refs/heads/main"), TagOptions(env=env))


@pytest.mark.parametrize("name", ["latest", "LATEST", "Latest"])
def test_latest_is_never_a_pointer(name: str) -> None:
    with pytest.raises(UsageError, match="latest"):
        check_dev_pointer(name)
    with pytest.raises(UsageError):
        compute_tags(ctx("refs/heads/main"), TagOptions(dev_pointer=name))


@pytest.mark.parametrize("name", ["v1.2.3", "1.0.0", "dev-abc1234", "pr-12", "-bad", "a b"])
def test_pointer_that_looks_immutable_or_invalid_is_refused(name: str) -> None:
    with pytest.raises(UsageError):
        check_dev_pointer(name)


def test_env_override_wins() -> None:
    assert compute_tags(ctx("refs/tags/v1.0.0"), TagOptions(env="dev")).env == "dev"
    assert compute_tags(ctx("refs/tags/v1.0.0"), TagOptions(env="staging")).env == "staging"
    assert compute_tags(ctx("refs/heads/x"), TagOptions(env="development")).env == "development"
    with pytest.raises(UsageError, match="empty"):
        compute_tags(ctx("refs/heads/x"), TagOptions(env=" "))


def test_no_ref_is_a_branch_build() -> None:
    assert compute_tags(ctx(None)).tags == ("dev-0123456",)


@pytest.mark.parametrize("sha", ["xyz", "abc", "ABCDEFG1" * 10, "0123 456", "", "g" * 40])
def test_bad_sha_is_usage_error(sha: str) -> None:
    with pytest.raises(UsageError, match="commit id"):
        validate_sha(sha)


def test_uppercase_sha_is_normalised() -> None:
    assert validate_sha(SHA.upper()) == SHA


@pytest.mark.parametrize(
    "ref", ["main", "refs/heads/", "refs/pull/x/merge", "refs/pull/0/merge", "heads/main", ""]
)
def test_bad_ref_is_usage_error(ref: str) -> None:
    with pytest.raises(UsageError):
        validate_ref(ref)


def test_image_references_and_image_with_tag() -> None:
    refs = image_references(["ghcr.io/o/r", "localhost:5000/app"], ["v1.2.3", "v1"])
    assert refs == [
        "ghcr.io/o/r:v1.2.3",
        "ghcr.io/o/r:v1",
        "localhost:5000/app:v1.2.3",
        "localhost:5000/app:v1",
    ]
    with pytest.raises(UsageError, match="already names a tag"):
        image_references(["ghcr.io/o/r:v1"], ["v2"])
    with pytest.raises(UsageError, match="already names a digest"):
        image_references(["ghcr.io/o/r@sha256:" + "a" * 64], ["v2"])
    with pytest.raises(UsageError):
        image_references(["GHCR.io/O/R"], ["v2"])


def test_to_dict_payload() -> None:
    result = compute_tags(ctx("refs/tags/v1.2.3"), TagOptions(aliases=True))
    payload = result.to_dict(["ghcr.io/o/r"])
    assert payload["tags"] == ["ghcr.io/o/r:v1.2.3", "ghcr.io/o/r:v1.2", "ghcr.io/o/r:v1"]
    assert payload["tag_names"] == ["v1.2.3", "v1.2", "v1"]
    assert payload["version"] == "1.2.3"
    assert payload["env"] == "prod"
    assert payload["sha"] == SHA
    assert payload["sha_source"] == "push"
    assert result.to_dict()["tags"] == ["v1.2.3", "v1.2", "v1"]


# Property: whatever SemVer tag or sha comes in, no emitted tag is `latest` or invalid.
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-"
idents = st.text(alphabet=_ALNUM, min_size=1, max_size=8).filter(
    lambda s: not (s.isdigit() and len(s) > 1 and s[0] == "0")
)


@given(
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 99),
    st.lists(idents, max_size=3),
    st.lists(idents, max_size=2),
    st.booleans(),
    st.booleans(),
)
def test_release_tags_are_always_valid(  # noqa: PLR0917 - one argument per strategy
    major: int, minor: int, patch: int, pre: list[str], build: list[str], v: bool, al: bool
) -> None:
    text = f"v{major}.{minor}.{patch}"
    if pre:
        text += "-" + ".".join(pre)
    if build:
        text += "+" + ".".join(build)
    result = compute_tags(ctx(f"refs/tags/{text}"), TagOptions(v_prefix=v, aliases=al))
    assert all(is_valid_tag(t) and t.lower() != "latest" for t in result.tags)
    assert (result.env == "prod") == (not pre)
    assert len(result.tags) == 1 or (al and not pre)


@given(st.text(alphabet="0123456789abcdef", min_size=40, max_size=40), st.integers(4, 40))
def test_dev_tags_are_always_valid(sha: str, length: int) -> None:
    result = compute_tags(ctx("refs/heads/main", sha=sha), TagOptions(sha_length=length))
    assert result.tags == (f"dev-{sha[:length]}",)
    assert is_valid_tag(result.tags[0])
    # the tag is read back as a dev build by everything that reads build tags
    assert is_dev_tag(result.tags[0])
    assert not is_pr_tag(result.tags[0])


@given(st.text(alphabet="0123456789abcdef", min_size=40, max_size=40), st.integers(1, 99999))
def test_pr_builds_get_tags_read_back_as_build_tags(sha: str, number: int) -> None:
    result = compute_tags(ctx(f"refs/pull/{number}/merge", pr=number, sha=sha))
    dev, pr = result.tags
    assert is_dev_tag(dev)
    assert is_pr_tag(pr)
    assert pr == f"pr-{number}"
    assert all(looks_like_build_tag(tag.upper()) for tag in result.tags)


@pytest.mark.parametrize("name", ["DEV-ABCD", "Dev-abc1234", "PR-7", "dev-" + "a" * 64])
def test_pointer_named_like_a_build_tag_in_any_case_is_refused(name: str) -> None:
    assert not is_dev_tag(name) or name.islower()  # exact grammar: lowercase hex only
    with pytest.raises(UsageError, match="immutable build tag"):
        check_dev_pointer(name)
