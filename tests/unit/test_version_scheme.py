"""``version-scheme``: SemVer 2.0.0 (the default) or PEP 440, the same everywhere.

The vectors are the ones on which the schemes disagree: ``1.0.0-1`` (a SemVer
prerelease below ``1.0.0``; a PEP 440 post-release above it), ``v1.2.3rc1`` and
``v1.2.3.post1`` (not SemVer at all). Retention's channels and ranks, ``check``'s
release rules, ``previous`` from the registry and from history, and what ``prune --env``
protects must all read them the same way under each scheme.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.cli import main
from tagkeeper.config import validate
from tagkeeper.errors import ConfigError, NoRollbackTarget, UsageError
from tagkeeper.gate.rules import Code, policy_for
from tagkeeper.retention.planner import Channel, Policy, classify, plan
from tagkeeper.rollback.protection import rollback_protection
from tagkeeper.rollback.resolve import DeployStatus, previous_from_registry
from tagkeeper.versioning import version_of
from tests.unit.fakes import FakeRegistry, at, digest_of
from tests.unit.test_protection import FakeHistory

if TYPE_CHECKING:
    from pathlib import Path

    from tagkeeper.versioning import Scheme


@pytest.mark.parametrize(
    ("tag", "semver", "pep440"),
    [
        ("1.0.0", Channel.RELEASE, Channel.RELEASE),
        ("1.0.0-1", Channel.PRERELEASE, Channel.RELEASE),  # PEP 440: 1.0.0.post1
        ("v1.2.3rc1", None, Channel.PRERELEASE),
        ("v1.2.3.post1", None, Channel.RELEASE),
        ("v1.2.3.dev4", None, Channel.PRERELEASE),
        ("v1.2.3rc1.post1", None, Channel.PRERELEASE),
        ("v2.0.0-rc.1", Channel.PRERELEASE, Channel.PRERELEASE),
        ("1.2.3_build.5", Channel.RELEASE, None),  # SemVer build metadata after '_'
        ("v1.2", None, None),  # floating aliases stay aliases
        ("1", None, None),
        ("2024", None, None),
        ("V1.2.3", None, None),  # only a lowercase v
        ("latest", None, None),
        ("dev-abc1234", Channel.DEV, Channel.DEV),
        ("pr-7", Channel.PR, Channel.PR),
    ],
)
def test_channels_under_each_scheme(
    tag: str, semver: Channel | None, pep440: Channel | None
) -> None:
    assert classify(tag, "semver") == semver
    assert classify(tag, "pep440") == pep440
    assert classify(tag) == semver  # SemVer stays the default


def test_the_orders_differ_where_the_schemes_do() -> None:
    def key(tag: str, scheme: Scheme) -> Any:
        version = version_of(tag, scheme)
        assert version is not None
        return version.precedence_key()

    assert key("1.0.0-1", "semver") < key("1.0.0", "semver")
    assert key("1.0.0-1", "pep440") > key("1.0.0", "pep440")
    chain = ["v1.2.3.dev1", "v1.2.3a1", "v1.2.3rc1", "v1.2.3", "v1.2.3.post1", "v1.2.4"]
    keys = [key(t, "pep440") for t in chain]
    assert keys == sorted(keys)


@given(st.from_regex(r"v?[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True))
def test_plain_releases_are_releases_in_both_schemes_and_order_alike(tag: str) -> None:
    semver, pep = version_of(tag, "semver"), version_of(tag, "pep440")
    if semver is None:  # a leading zero: not SemVer (PEP 440 normalises it)
        assert pep is not None
        return
    assert pep is not None
    assert not semver.is_prerelease
    assert not pep.is_prerelease


def releases(scheme: Scheme, keep: int = 1) -> dict[str, bool]:
    reg = FakeRegistry()
    for i, tag in enumerate(["1.0.0", "1.0.0-1", "v1.0.1rc1", "v0.9.0.post2"]):
        reg.add(tag, tags=[tag], created=i)
    policy = Policy.uniform(keep, unmatched="delete", version_scheme=scheme)
    p = plan(reg.versions(), policy, now=at(10_000), reader=reg)
    return {d.version.digest: d.keep for d in p.decisions}


def test_retention_ranks_releases_by_the_scheme() -> None:
    semver = releases("semver")
    # SemVer: 1.0.0 is the newest release; 1.0.0-1 the newest prerelease; the PEP 440
    # forms match no channel (deleted here as unmatched)
    assert semver[digest_of("1.0.0")]
    assert semver[digest_of("1.0.0-1")]
    assert not semver[digest_of("v1.0.1rc1")]
    pep = releases("pep440")
    # PEP 440: 1.0.0-1 (1.0.0.post1) is the newest release, 1.0.1rc1 the prerelease
    assert pep[digest_of("1.0.0-1")]
    assert not pep[digest_of("1.0.0")]
    assert pep[digest_of("v1.0.1rc1")]
    assert not pep[digest_of("v0.9.0.post2")]


def test_a_bad_scheme_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="'calver' is not one tagkeeper knows"):
        Policy(version_scheme="calver")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        policy_for("prod", version_scheme="calver")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tag", "scheme", "code"),
    [
        ("v1.2.3.post1", "semver", Code.NON_RELEASE),
        ("v1.2.3.post1", "pep440", Code.OK),
        ("v1.2.3rc1", "pep440", Code.PRERELEASE),
        ("1.0.0-1", "semver", Code.PRERELEASE),
        ("1.0.0-1", "pep440", Code.OK),
        ("v1.2", "pep440", Code.FLOATING_ALIAS),
        ("v1.2.3_b5", "pep440", Code.PRERELEASE),  # PEP 440 reads '_b5' as beta 5
    ],
)
def test_checks_release_rule_follows_the_scheme(tag: str, scheme: Scheme, code: Code) -> None:
    verdict = policy_for("prod", version_scheme=scheme).judge_text(f"ghcr.io/o/app:{tag}")
    assert verdict.code == code
    assert verdict.ok is (code is Code.OK)


def registry_versions() -> FakeRegistry:
    reg = FakeRegistry()
    for i, tag in enumerate(["1.0.0", "1.0.0-1", "v1.0.1rc1", "v1.0.1"]):
        reg.add(tag, tags=[tag], created=i)
    return reg


@pytest.mark.parametrize(
    ("scheme", "current", "expected"),
    [
        ("semver", "v1.0.1", "1.0.0"),  # SemVer: 1.0.0-1 is a prerelease, below 1.0.0
        ("pep440", "v1.0.1", "1.0.0-1"),  # PEP 440: 1.0.0.post1, above 1.0.0
        ("pep440", "1.0.0-1", "1.0.0"),
    ],
)
def test_previous_from_the_registry_follows_the_scheme(
    scheme: Scheme, current: str, expected: str
) -> None:
    target = previous_from_registry(
        registry_versions().versions(),
        repository="ghcr.io/o/app",
        environment="prod",
        current=current,
        version_scheme=scheme,
    )
    assert target.tag == expected


def test_a_pep440_current_is_no_release_under_semver() -> None:
    with pytest.raises(NoRollbackTarget):
        previous_from_registry(
            registry_versions().versions(),
            repository="ghcr.io/o/app",
            environment="prod",
            current="v1.0.1rc1",
            version_scheme="semver",
        )


def test_prune_env_protects_the_target_previous_answers_under_the_scheme() -> None:
    ok = DeployStatus.SUCCEEDED
    # 1.0.0-1 deployed, then 1.0.0: under SemVer the one before is a prerelease (no
    # target in prod); under PEP 440 it is the post-release 1.0.0.post1, a release
    ledger = FakeHistory(
        "ledger", {"prod": [("1.0.0-1", ok, digest_of("1.0.0-1")), ("1.0.0", ok, None)]}
    )
    semver = rollback_protection("ghcr.io/o/app", ["prod"], [ledger], allow_prerelease=False)
    pep = rollback_protection(
        "ghcr.io/o/app", ["prod"], [ledger], allow_prerelease=False, version_scheme="pep440"
    )
    assert "1.0.0-1" not in semver
    assert pep["1.0.0-1"] == "rollback target for prod (ledger)"
    assert pep[digest_of("1.0.0-1")] == "rollback target for prod (ledger)"


# ------------------------------------------------------------------ configuration, CLI


def test_the_config_key_takes_the_two_schemes(tmp_path: Path) -> None:
    path = tmp_path / "tagkeeper.toml"
    assert validate({"version-scheme": "pep440"}, path) == {"version-scheme": "pep440"}
    with pytest.raises(ConfigError, match="'pep440'"):
        validate({"version-scheme": "PEP440"}, path)


@pytest.mark.parametrize(
    "case",
    [
        ("", [], 3),
        ('version-scheme = "pep440"\n', [], 0),
        ("", ["--version-scheme", "pep440"], 0),
        ('version-scheme = "pep440"\n', ["--version-scheme", "semver"], 3),
        ("", ["--version-scheme", "calver"], 2),
        ('version-scheme = "calver"\n', [], 9),
    ],
)
def test_check_takes_the_flag_and_the_config_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: tuple[str, list[str], int],
) -> None:
    toml, args, code = case
    monkeypatch.chdir(tmp_path)
    if toml:
        (tmp_path / "tagkeeper.toml").write_text(toml)
    assert main(["check", "--env", "prod", *args, "ghcr.io/o/app:v1.2.3.post1"]) == code


def test_prune_takes_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tagkeeper.registries.factory

    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_REPOSITORY", "GITHUB_TOKEN", "GH_TOKEN", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    reg = registry_versions()
    monkeypatch.setattr(tagkeeper.registries.factory, "open_backend", lambda *a: reg)
    argv = ["prune", "--image", "registry.test/o/app", "--keep", "1", "--min-age", "0"]
    argv += ["--unmatched", "delete", "--dry-run", "--format", "json"]
    results = {}
    for scheme in ("semver", "pep440"):
        capsys.readouterr()
        assert main([*argv, "--version-scheme", scheme]) == 0
        (entry,) = json.loads(capsys.readouterr().out)["images"]
        results[scheme] = {t for d in entry["keep"] for t in d["tags"]}
    assert results["semver"] == {"v1.0.1", "1.0.0-1"}  # the release, the prerelease
    assert results["pep440"] == {"v1.0.1", "v1.0.1rc1"}
