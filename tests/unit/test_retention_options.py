"""The policy's second conditions: ``older_than`` (delete only what is older) and
``protect_regex`` (full-match regular expressions beside the globs).

Each is checked in the planner (which rule keeps what, and what it reaches), in the
question of which creation times a backend must read (:mod:`tagkeeper.retention.times`),
in the configuration file and on the command line.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tagkeeper.registries.factory
from tagkeeper.cli import main
from tagkeeper.config import SCHEMA, validate
from tagkeeper.errors import ConfigError, UsageError
from tagkeeper.retention.planner import Plan, Policy, plan
from tagkeeper.retention.times import time_needed
from tests.unit.fakes import T0, FakeRegistry, at, digest_of

if TYPE_CHECKING:
    from pathlib import Path

    from tagkeeper.inventory import Version

NOW = at(100 * 24 * 60)  # day 100
DAY = 24 * 60.0  # minutes


def run(reg: FakeRegistry, policy: Policy, **kw: object) -> Plan:
    return plan(reg.versions(), policy, now=NOW, reader=reg, **kw)  # type: ignore[arg-type]


def by_digest(reg: FakeRegistry) -> dict[str, Version]:
    return {v.digest: v for v in reg.versions()}


def fate(p: Plan, name: str) -> tuple[bool, str, str]:
    (found,) = [d for d in p.decisions if d.version.digest == digest_of(name)]
    return found.keep, found.rule, found.reason


# ------------------------------------------------------------------ older-than


def dev_images(reg: FakeRegistry, ages_in_days: list[float]) -> None:
    for i, days in enumerate(ages_in_days):
        reg.add(f"dev{i}", tags=[f"dev-{i:07x}"], created=100 * DAY - days * DAY)


def test_older_than_keeps_what_keep_n_alone_would_delete() -> None:
    reg = FakeRegistry()
    dev_images(reg, [40, 35, 20, 10, 5, 1])  # dev5 newest
    p = run(reg, Policy.uniform(2, older_than=timedelta(days=30)))
    keeps = {name: fate(p, name)[0] for name in (f"dev{i}" for i in range(6))}
    # keep-2 keeps dev4 and dev5; older-than keeps dev2 and dev3 (not 30 days old)
    assert keeps == {
        "dev0": False,
        "dev1": False,
        "dev2": True,
        "dev3": True,
        "dev4": True,
        "dev5": True,
    }
    assert fate(p, "dev3")[1:] == (
        "older-than",
        "not older than --older-than 30d (pushed 10d ago)",
    )
    assert fate(p, "dev5")[1] == "newest-dev"  # the keep-N rule names it when both keep it
    # both conditions hold for the deleted ones, and the reason says both
    assert fate(p, "dev1")[1] == "old-dev"
    assert fate(p, "dev1")[2].endswith("; older than 30d (pushed 35d ago)")


def test_older_than_never_deletes_what_keep_n_keeps() -> None:
    reg = FakeRegistry()
    dev_images(reg, [90, 80, 70])
    p = run(reg, Policy.uniform(2, older_than=timedelta(days=1)))
    assert [fate(p, f"dev{i}")[0] for i in range(3)] == [False, True, True]


def test_older_than_roots_young_untagged_and_what_young_images_reach() -> None:
    reg = FakeRegistry()
    reg.add("child-amd64", created=100 * DAY - 3 * DAY)
    reg.add(
        "index",
        tags=["dev-aaaa001"],
        created=100 * DAY - 3 * DAY,
        children=[digest_of("child-amd64")],
    )
    reg.add("old-child", created=100 * DAY - 50 * DAY)
    reg.add(
        "old-index",
        tags=["dev-aaaa000"],
        created=100 * DAY - 50 * DAY,
        children=[digest_of("old-child")],
    )
    reg.add("young-garbage", created=100 * DAY - 2 * DAY)
    reg.add("newest", tags=["dev-aaaa002"], created=100 * DAY - 1 * DAY)
    p = run(reg, Policy.uniform(1, older_than=timedelta(days=7)))
    assert fate(p, "index")[:2] == (True, "older-than")
    assert fate(p, "child-amd64")[:2] == (True, "older-than")  # young itself
    assert fate(p, "young-garbage")[:2] == (True, "older-than")
    assert fate(p, "old-index")[:2] == (False, "old-dev")
    assert fate(p, "old-child")[:2] == (False, "garbage")


def test_older_than_marks_old_children_of_a_young_index() -> None:
    reg = FakeRegistry()
    reg.add("old-child", created=100 * DAY - 60 * DAY)
    reg.add(
        "young-index",
        tags=["dev-bbbb000"],
        created=100 * DAY - 2 * DAY,
        children=[digest_of("old-child")],
    )
    reg.add("newest", tags=["dev-bbbb001"], created=100 * DAY - 1 * DAY)
    p = run(reg, Policy.uniform(1, older_than=timedelta(days=7)))
    assert fate(p, "young-index")[:2] == (True, "older-than")
    keep, rule, reason = fate(p, "old-child")
    assert (keep, rule) == (True, "reachable")
    assert "child of" in reason


def test_the_grace_period_names_what_is_younger_than_both() -> None:
    reg = FakeRegistry()
    dev_images(reg, [20, 10])
    reg.add("fresh", tags=["dev-ccccccc"], created=100 * DAY - 10)  # 10 minutes
    reg.add("fresher", tags=["dev-ddddddd"], created=100 * DAY - 5)
    p = run(reg, Policy.uniform(1, older_than=timedelta(days=30)))
    assert fate(p, "fresh")[1] == "grace-period"
    assert fate(p, "dev0")[1] == "older-than"


@pytest.mark.parametrize("older", [timedelta(0), None])
def test_no_older_than_or_zero_changes_nothing(older: timedelta | None) -> None:
    reg = FakeRegistry()
    dev_images(reg, [40, 35, 20, 10, 5, 1])
    base = run(reg, Policy.uniform(2))
    other = run(reg, Policy.uniform(2, older_than=older))
    assert other.decisions == base.decisions


@settings(max_examples=60, deadline=None)
@given(
    ages=st.lists(st.floats(min_value=0.01, max_value=90), min_size=1, max_size=12),
    keep=st.integers(min_value=0, max_value=4),
    older_days=st.integers(min_value=0, max_value=60),
)
def test_a_delete_needs_both_conditions(ages: list[float], keep: int, older_days: int) -> None:
    """Deleted under both = deleted by keep-N alone and old enough; never anything else."""
    reg = FakeRegistry()
    dev_images(reg, ages)
    older = timedelta(days=older_days)
    both = run(reg, Policy.uniform(keep, older_than=older))
    alone = run(reg, Policy.uniform(keep))
    deleted_alone = {d.version.digest for d in alone.delete}
    expected = {d for d in deleted_alone if NOW - by_digest(reg)[d].created > older}
    assert {d.version.digest for d in both.delete} == expected


def test_an_image_exactly_as_old_as_older_than_is_not_older() -> None:
    reg = FakeRegistry()
    dev_images(reg, [20, 1])
    p = run(reg, Policy.uniform(0, older_than=timedelta(days=20)))
    assert fate(p, "dev0")[:2] == (True, "older-than")  # 20 days: not older than 20d
    p = run(reg, Policy.uniform(0, older_than=timedelta(days=19)))
    assert fate(p, "dev0")[0] is False


def test_a_negative_older_than_is_refused() -> None:
    with pytest.raises(UsageError, match="--older-than must not be negative"):
        Policy(older_than=timedelta(days=-1))


def test_older_than_needs_the_time_of_releases_even_without_a_grace_period() -> None:
    # a backend that skips a release's creation time could not tell it is young
    needed = time_needed(Policy(min_age=timedelta(0), older_than=timedelta(days=30)))
    assert needed(frozenset({"v1.2.3"}))
    assert needed(frozenset({"1.0.0-rc.1"}))
    assert not time_needed(Policy(min_age=timedelta(0)))(frozenset({"v1.2.3"}))


# --------------------------------------------------------------- protect-regex


def test_protect_regex_is_a_full_match() -> None:
    reg = FakeRegistry()
    reg.add("stable", tags=["v1.4.0"], created=1)
    reg.add("longer", tags=["v1.4.0.1"], created=2)
    reg.add("prefix", tags=["xv1.4.0"], created=3)
    reg.add("other", tags=["v2.0.0"], created=4)
    p = run(reg, Policy.uniform(0, unmatched="delete", protect_regex=(r"v1\.\d+\.\d+",)))
    assert fate(p, "stable") == (
        True,
        "protect-regex",
        r"tag v1.4.0 fully matches protect regex 'v1\\.\\d+\\.\\d+'",
    )
    assert not fate(p, "longer")[0]  # re.search would match; a full match does not
    assert not fate(p, "prefix")[0]
    assert not fate(p, "other")[0]


def test_protect_regex_alternation_is_full_match_as_a_whole() -> None:
    # 'a|bc' full-matches 'a' or 'bc', never 'ab' (a naive '^a|bc$' would)
    reg = FakeRegistry()
    reg.add("ab", tags=["ab"], created=1)
    reg.add("bc", tags=["bc"], created=2)
    p = run(reg, Policy.uniform(0, unmatched="delete", protect_regex=("a|bc",)))
    assert not fate(p, "ab")[0]
    assert fate(p, "bc")[:2] == (True, "protect-regex")


def test_protect_regex_and_globs_work_side_by_side_and_share_digests() -> None:
    reg = FakeRegistry()
    reg.add("both", tags=["release-7", "dev-0000001"], created=1)
    reg.add("glob", tags=["stable-x"], created=2)
    reg.add("none", tags=["dev-0000002"], created=3)
    policy = Policy.uniform(0, protect=("stable-*",), protect_regex=(r"release-\d+",))
    p = run(reg, policy)
    assert fate(p, "both")[1] == "protect-regex"
    assert "dev-0000001 shares its digest" in fate(p, "both")[2]
    assert fate(p, "glob")[1] == "protect-pattern"
    assert not fate(p, "none")[0]


@pytest.mark.parametrize("bad", ["v1.(", "[a-", "*x", "(?P<n>a)(?P<n>b)"])
def test_an_invalid_protect_regex_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError) as info:
        Policy(protect_regex=(bad,))
    assert "--protect-regex" in info.value.message
    assert repr(bad) in info.value.message


def test_an_empty_protect_regex_is_refused() -> None:
    with pytest.raises(UsageError, match="protects nothing"):
        Policy(protect_regex=("",))


def test_a_protect_regex_means_no_time_is_needed_without_a_grace_period_change() -> None:
    policy = Policy(protect_regex=(r"v\d+\.\d+\.\d+",))
    needed = time_needed(policy)
    assert not needed(frozenset({"v1.2.3"}))  # protected whatever its age
    assert needed(frozenset({"v1.2.3-rc.1"}))


# ----------------------------------------------------------------- configuration


def test_the_config_keys_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "tagkeeper.toml"
    assert validate({"older-than": "30d"}, path) == {"older-than": "30d"}
    assert validate({"protect-regex": [r"v\d+"]}, path) == {"protect-regex": [r"v\d+"]}
    with pytest.raises(ConfigError, match="is not a duration"):
        validate({"older-than": "a month"}, path)
    with pytest.raises(ConfigError) as info:
        validate({"protect-regex": ["v1.("]}, path)
    assert "key 'protect-regex'" in info.value.message
    assert "not a valid regular expression" in info.value.message
    assert {"older-than", "protect-regex"} <= set(SCHEMA)


# ------------------------------------------------------------------ command line

IMAGE = "registry.test/acme/app"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    """Dev images 1, 5, 10, 40 and 50 days old (relative to the real clock)."""
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_REPOSITORY", "GITHUB_TOKEN", "GH_TOKEN", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    reg = FakeRegistry(display=IMAGE)
    now_minutes = (datetime.now(UTC) - T0).total_seconds() / 60
    for i, days in enumerate([50, 40, 10, 5, 1]):
        reg.add(f"d{i}", tags=[f"dev-000000{i}"], created=now_minutes - days * DAY)
    reg.add("rel", tags=["release-2024.1"], created=now_minutes - 60 * DAY)

    def open_fake(image: str, options: object, client: object) -> FakeRegistry:
        assert image == IMAGE
        return reg

    monkeypatch.setattr(tagkeeper.registries.factory, "open_backend", open_fake)
    return reg


def prune(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    args = ["prune", "--image", IMAGE, "--keep", "1", "--unmatched", "delete", "--dry-run"]
    code = main([*args, *extra, "--format", "json"])
    out, _ = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}


def deleted_tags(payload: dict[str, Any]) -> set[str]:
    (entry,) = payload["images"]
    return {t for d in entry["delete"] for t in d["tags"]}


def test_the_flags_reach_the_plan(
    registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, payload = prune(capsys)
    assert code == 0
    assert deleted_tags(payload) == {f"dev-000000{i}" for i in range(4)} | {"release-2024.1"}
    code, payload = prune(capsys, "--older-than", "30d", "--protect-regex", r"release-\d{4}\.\d+")
    assert code == 0
    assert deleted_tags(payload) == {"dev-0000000", "dev-0000001"}


def test_the_config_keys_reach_the_plan_and_flags_win(
    registry: FakeRegistry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "tagkeeper.toml").write_text('older-than = "30d"\nprotect-regex = ["release-.*"]\n')
    code, payload = prune(capsys)
    assert code == 0
    assert deleted_tags(payload) == {"dev-0000000", "dev-0000001"}
    code, payload = prune(capsys, "--older-than", "45d")
    assert deleted_tags(payload) == {"dev-0000000"}


@pytest.mark.parametrize(
    "case",
    [
        (["--protect-regex", "v1.("], "", 2, "--protect-regex 'v1.(' is not a valid"),
        (["--older-than", "soon"], "", 2, "is not a duration"),
        ([], 'protect-regex = ["[a-"]\n', 9, "not a valid regular expression"),
        ([], 'older-than = "-1d"\n', 9, "is not a duration"),
    ],
)
def test_bad_values_exit_with_usage_or_config_and_delete_nothing(
    registry: FakeRegistry,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    case: tuple[list[str], str, int, str],
) -> None:
    args, toml, code, phrase = case
    if toml:
        (tmp_path / "tagkeeper.toml").write_text(toml)
    capsys.readouterr()
    before = set(by_digest(registry))
    result = main(["prune", "--image", IMAGE, "--yes", *args])
    _out, err = capsys.readouterr()
    assert result == code
    assert phrase in err
    assert set(by_digest(registry)) == before
