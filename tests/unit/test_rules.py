"""Environment tag rules: every refusal reason, in prod and in dev."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.errors import UsageError
from tagkeeper.gate.rules import (
    DEV_RULES,
    Code,
    DevPointerRule,
    DevTagRule,
    Environment,
    FloatingAliasRule,
    LatestRule,
    Policy,
    PrereleaseRule,
    ReleaseOnlyRule,
    Rule,
    UntaggedRule,
    Verdict,
    is_strict,
    policy_for,
    validate_env_name,
)
from tagkeeper.refs import ImageRef, parse_reference

SHA = "sha256:" + "ab" * 32
PROD = policy_for("prod")
DEV = policy_for("dev")


def code(policy: Policy, text: str) -> Code:
    return policy.judge_text(text).code


# ------------------------------------------------------------------------- prod


@pytest.mark.parametrize(
    "text",
    [
        "ghcr.io/o/app:v1.2.3",
        "ghcr.io/o/app:1.2.3",
        "ghcr.io/o/app:v10.20.30",
        "ghcr.io/o/app:v1.2.3_build.5",  # build metadata written with '_' ('+' is no tag char)
        "host:5000/app:v0.0.1",
        "[::1]:5000/app:v2.0.0",
        f"ghcr.io/o/app@{SHA}",  # digest only
        f"ghcr.io/o/app:v1.2.3@{SHA}",
    ],
)
def test_prod_accepts_exact_releases_and_digests(text: str) -> None:
    verdict = PROD.judge_text(text)
    assert verdict.ok, verdict.message
    assert verdict.code is Code.OK
    assert verdict.ref == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ghcr.io/o/app:latest", Code.LATEST),
        ("ghcr.io/o/app:LATEST", Code.LATEST),
        ("ghcr.io/o/app:Latest", Code.LATEST),
        ("ghcr.io/o/app:lAtEsT", Code.LATEST),
        (f"ghcr.io/o/app:latest@{SHA}", Code.LATEST),
        ("ghcr.io/o/app", Code.UNTAGGED),
        ("app", Code.UNTAGGED),
        ("host:5000/app", Code.UNTAGGED),
        ("localhost:5000/team/app", Code.UNTAGGED),
        ("[::1]:5000/app", Code.UNTAGGED),
        ("ghcr.io/o/app:dev-latest", Code.DEV_POINTER),
        ("ghcr.io/o/app:DEV-LATEST", Code.DEV_POINTER),
        ("ghcr.io/o/app:latest-dev", Code.DEV_POINTER),
        ("ghcr.io/o/app:main_latest", Code.DEV_POINTER),
        ("ghcr.io/o/app:dev-abc1234", Code.DEV_TAG),
        ("ghcr.io/o/app:DEV-abc1234", Code.DEV_TAG),
        (f"ghcr.io/o/app:dev-abc1234@{SHA}", Code.DEV_TAG),
        ("ghcr.io/o/app:v1", Code.FLOATING_ALIAS),
        ("ghcr.io/o/app:v1.2", Code.FLOATING_ALIAS),
        ("ghcr.io/o/app:1.2", Code.FLOATING_ALIAS),
        ("ghcr.io/o/app:1", Code.FLOATING_ALIAS),
        ("ghcr.io/o/app:V2", Code.FLOATING_ALIAS),
        ("ghcr.io/o/app:v1.2.3-rc.1", Code.PRERELEASE),
        ("ghcr.io/o/app:1.0.0-alpha", Code.PRERELEASE),
        ("ghcr.io/o/app:v1.2.3-rc.1_build.7", Code.PRERELEASE),
        ("ghcr.io/o/app:nightly", Code.NON_RELEASE),
        ("ghcr.io/o/app:main", Code.NON_RELEASE),
        ("ghcr.io/o/app:sha-abc1234", Code.NON_RELEASE),
        ("ghcr.io/o/app:pr-12", Code.NON_RELEASE),
        ("ghcr.io/o/app:stable", Code.NON_RELEASE),
        ("ghcr.io/o/app:v01.2.3", Code.NON_RELEASE),  # leading zero: not SemVer
        ("ghcr.io/o/app:V1.2.3", Code.NON_RELEASE),  # only a lowercase 'v' prefix
        ("ghcr.io/o/app:v1.2.3.4", Code.NON_RELEASE),
        ("ghcr.io/o/app:1.2.3-alpine", Code.PRERELEASE),  # SemVer reads -alpine as prerelease
        ("ghcr.io/Owner/app:v1.2.3", Code.UNPARSEABLE),
        ("ghcr.io/o/app:", Code.UNPARSEABLE),
        ("ghcr.io/o/app@sha256:abc", Code.UNPARSEABLE),
        ("", Code.UNPARSEABLE),
    ],
)
def test_prod_refuses_with_its_own_reason(text: str, expected: Code) -> None:
    verdict = PROD.judge_text(text)
    assert not verdict.ok
    assert verdict.code is expected, verdict.message
    assert verdict.message


def test_untagged_with_port_explains_the_port() -> None:
    verdict = PROD.judge_text("registry:5000/app")
    assert verdict.code is Code.UNTAGGED
    assert "5000 is the registry port" in verdict.message
    assert "registry:5000/app:v1.2.3" in verdict.message
    plain = PROD.judge_text("ghcr.io/o/app")
    assert "port" not in plain.message


def test_messages_say_what_to_use_instead() -> None:
    latest = PROD.judge_text("ghcr.io/o/app:latest")
    assert "ghcr.io/o/app:v1.2.3" in latest.message
    assert "ghcr.io/o/app@sha256:" in latest.message
    alias = PROD.judge_text("ghcr.io/o/app:v1.2")
    assert "ghcr.io/o/app:v1.2.N" in alias.message
    major = PROD.judge_text("ghcr.io/o/app:v1")
    assert "ghcr.io/o/app:v1.N.N" in major.message
    pre = PROD.judge_text("ghcr.io/o/app:v1.4.0-rc.2")
    assert "ghcr.io/o/app:v1.4.0" in pre.message
    assert "--allow-prerelease" in pre.message
    pinned = PROD.judge_text(f"ghcr.io/o/app:latest@{SHA}")
    assert "digest does not change that" in pinned.message


def test_non_release_explains_a_near_miss_version() -> None:
    near = PROD.judge_text("app:v01.2.3")
    assert "leading zero" in near.message
    word = PROD.judge_text("app:nightly")
    assert "SemVer" not in word.message  # a word is simply not a release


def test_allow_prerelease() -> None:
    policy = policy_for("prod", allow_prerelease=True)
    assert policy.judge_text("app:v1.2.3-rc.1").ok
    assert policy.judge_text("app:1.0.0-alpha.1").ok
    # the other rules still apply
    assert policy.judge_text("app:latest").code is Code.LATEST
    assert policy.judge_text("app:v1").code is Code.FLOATING_ALIAS


@pytest.mark.parametrize("name", ["prod", "production", "PROD", "Production", "staging", "qa"])
def test_prod_rules_for_prod_and_unknown_names(name: str) -> None:
    policy = policy_for(name)
    assert policy.rule_set == "prod"
    assert policy.judge_text("app:dev-abc1234").code is Code.DEV_TAG
    assert policy.env.name == name


# ------------------------------------------------------------------------- dev


@pytest.mark.parametrize(
    "text",
    [
        "ghcr.io/o/app:dev-abc1234",
        "ghcr.io/o/app:v1.2.3",
        "ghcr.io/o/app:v1.2.3-rc.1",
        "ghcr.io/o/app:pr-12",
        "ghcr.io/o/app:v1",
        f"ghcr.io/o/app@{SHA}",
        f"ghcr.io/o/app:dev-abc1234@{SHA}",
    ],
)
def test_dev_accepts_immutable_build_tags(text: str) -> None:
    assert DEV.judge_text(text).ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ghcr.io/o/app:latest", Code.LATEST),
        ("ghcr.io/o/app:Latest", Code.LATEST),
        (f"ghcr.io/o/app:LATEST@{SHA}", Code.LATEST),
        ("ghcr.io/o/app", Code.UNTAGGED),
        ("host:5000/app", Code.UNTAGGED),
        ("ghcr.io/o/app:dev-latest", Code.DEV_POINTER),
        ("not a ref", Code.UNPARSEABLE),
    ],
)
def test_dev_refuses(text: str, expected: Code) -> None:
    verdict = DEV.judge_text(text)
    assert not verdict.ok
    assert verdict.code is expected
    assert "dev-<sha>" in verdict.message or expected is Code.UNPARSEABLE


@pytest.mark.parametrize("name", ["dev", "development", "DEV", "Development"])
def test_dev_names(name: str) -> None:
    assert policy_for(name).rule_set == "dev"
    assert not is_strict(name)


@pytest.mark.parametrize("name", ["prod", "production", "PROD", "staging", "eu/prod", "Prod EU"])
def test_every_other_name_is_strict(name: str) -> None:
    assert policy_for(name).rule_set == "prod"
    assert is_strict(name)


@pytest.mark.parametrize(
    "name", [" prod", "prod ", " dev ", "-prod", "prod\n", "pr\tod", "prod!", "x" * 256, "é"]
)
def test_environment_names_are_validated_never_trimmed(name: str) -> None:
    # " dev " must not quietly become dev (lax rules) nor " prod" stay strict under
    # another spelling: every command refuses the name the same way
    with pytest.raises(UsageError, match="not an environment name"):
        validate_env_name(name)
    with pytest.raises(UsageError, match="not an environment name"):
        policy_for(name)


def test_longest_environment_name_is_accepted() -> None:
    assert validate_env_name("x" * 255) == "x" * 255


def test_configured_pointer_is_refused_in_dev() -> None:
    policy = policy_for("dev", pointers={"dev-latest", "edge"})
    assert policy.judge_text("app:edge").code is Code.DEV_POINTER
    assert policy.judge_text("app:EDGE").code is Code.DEV_POINTER
    assert DEV.judge_text("app:edge").ok  # not a pointer unless configured


def test_empty_environment_name_is_bad_input() -> None:
    with pytest.raises(UsageError):
        policy_for("  ")


# ------------------------------------------------------------------------- rules one by one


ENV = Environment("prod")


@pytest.mark.parametrize(
    ("rule", "refused", "passed"),
    [
        (LatestRule(), "app:LaTeSt", "app:latest-ish"),
        (UntaggedRule(), "host:5000/app", f"app@{SHA}"),
        (DevPointerRule(), "app:dev-latest", "app:dev-abc"),
        (DevTagRule(), "app:dev-abc", "app:develop"),
        (FloatingAliasRule(), "app:v1.2", "app:v1.2.3"),
        (PrereleaseRule(), "app:v1.2.3-beta", "app:v1.2.3"),
        (ReleaseOnlyRule(), "app:edge", "app:1.2.3"),
    ],
)
def test_each_rule_alone(rule: Rule, refused: str, passed: str) -> None:
    verdict = rule.judge(parse_reference(refused), ENV)
    assert verdict is not None
    assert not verdict.ok
    assert rule.judge(parse_reference(passed), ENV) is None


def test_rules_without_a_tag_have_nothing_to_say_except_untagged() -> None:
    digest_only = parse_reference(f"app@{SHA}")
    for rule in (
        LatestRule(),
        DevPointerRule(),
        DevTagRule(),
        FloatingAliasRule(),
        PrereleaseRule(),
        ReleaseOnlyRule(),
        UntaggedRule(),
    ):
        assert rule.judge(digest_only, ENV) is None


@dataclass(frozen=True)
class RefuseHost:
    """A custom rule: only one registry is allowed."""

    allowed: str

    def judge(self, ref: ImageRef, env: Environment) -> Verdict | None:
        if ref.host == self.allowed:
            return None
        return Verdict(str(ref), False, Code.NON_RELEASE, f"only {self.allowed} in {env.name}")


def test_policies_compose_custom_rules_first_refusal_wins() -> None:
    policy = Policy(Environment("dev"), (RefuseHost("ghcr.io"), *DEV_RULES))
    assert policy.judge_text("ghcr.io/o/app:dev-abc").ok
    other = policy.judge_text("quay.io/o/app:latest")
    assert other.message == "only ghcr.io in dev"  # the first rule spoke first
    assert policy.judge_text("ghcr.io/o/app:latest").code is Code.LATEST


def test_verdict_location_and_dict() -> None:
    verdict = PROD.judge_text("app:latest").at("compose.yml", 4, 12)
    assert verdict.as_dict() == {
        "ref": "app:latest",
        "ok": False,
        "code": "latest",
        "message": verdict.message,
        "file": "compose.yml",
        "line": 4,
        "column": 12,
    }


@given(st.lists(st.booleans(), min_size=6, max_size=6))
def test_latest_in_any_case_is_refused_everywhere(flips: list[bool]) -> None:
    tag = "".join(c.upper() if up else c for c, up in zip("latest", flips, strict=True))
    for policy in (PROD, DEV, policy_for("prod", allow_prerelease=True)):
        assert policy.judge_text(f"ghcr.io/o/app:{tag}").code is Code.LATEST


@given(
    major=st.integers(0, 10**6),
    minor=st.integers(0, 10**6),
    patch=st.integers(0, 10**6),
    v=st.booleans(),
)
def test_every_exact_release_is_accepted_in_prod(
    major: int, minor: int, patch: int, v: bool
) -> None:
    tag = f"{'v' if v else ''}{major}.{minor}.{patch}"
    assert PROD.judge_text(f"ghcr.io/o/app:{tag}").ok
    assert PROD.judge_text(f"ghcr.io/o/app:{tag}-rc.1").code is Code.PRERELEASE
    assert PROD.judge_text(f"ghcr.io/o/app:{'v' if v else ''}{major}.{minor}").code is (
        Code.FLOATING_ALIAS
    )
