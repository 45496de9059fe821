"""``--keep-deploys K``: the images of the last K successful deploys of each environment.

The current deploy counts among the K; a redeploy of the same image takes no second
place; failed and rolled-back deploys take none. Same history sources and the same
fail-closed rules as the rollback-target protection, from the library and through the CLI.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tagkeeper.registries.factory
from tagkeeper.cli import main
from tagkeeper.config import validate
from tagkeeper.errors import ConfigError, UsageError
from tagkeeper.rollback.ledger import Actor, Ledger
from tagkeeper.rollback.protection import NoHistory, protection, rollback_protection
from tagkeeper.rollback.resolve import DeployStatus
from tests.unit.fakes import FakeRegistry, digest_of
from tests.unit.test_protection import REPO, FakeHistory, digest

if TYPE_CHECKING:
    from pathlib import Path

OK = DeployStatus.SUCCEEDED
FAILED = DeployStatus.FAILED
ROLLED_BACK = DeployStatus.ROLLED_BACK


def five_releases() -> FakeHistory:
    """v1.0.0 .. v1.4.0 deployed to prod one after the other; v1.4.0 runs."""
    return FakeHistory("ledger", {"prod": [(f"v1.{i}.0", OK, digest(i)) for i in range(5)]})


def test_the_last_k_successful_deploys_are_kept_with_the_current_among_them() -> None:
    protected = rollback_protection(REPO, ["prod"], [five_releases()], keep_deploys=3)
    assert protected[digest(4)] == "current in prod (ledger)"
    # v1.3.0 is also the rollback target; v1.2.0 is kept only as one of the last 3
    assert "one of the last 3 deploys to prod (#2, ledger)" in protected[digest(3)]
    assert protected[digest(2)] == "one of the last 3 deploys to prod (#3, ledger)"
    assert protected["v1.2.0"] == "one of the last 3 deploys to prod (#3, ledger)"
    assert digest(1) not in protected
    assert "v1.0.0" not in protected


@pytest.mark.parametrize("k", [0, 1])
def test_zero_or_one_adds_nothing_to_current_and_rollback_target(k: int) -> None:
    base = rollback_protection(REPO, ["prod"], [five_releases()])
    assert rollback_protection(REPO, ["prod"], [five_releases()], keep_deploys=k) == base


def test_failed_and_rolled_back_deploys_take_no_place_and_redeploys_no_second() -> None:
    ledger = FakeHistory(
        "ledger",
        {
            "prod": [
                ("v1.0.0", OK, digest(0)),
                ("v1.1.0", OK, digest(1)),
                ("v1.2.0", ROLLED_BACK, digest(2)),  # succeeded, then was rolled back
                ("v1.1.0", OK, digest(1)),  # the rollback: the same image again
                ("v1.3.0", FAILED, digest(3)),  # older than what runs: nothing to keep
                ("v1.1.0", OK, digest(1)),  # redeployed once more
            ]
        },
    )
    protected = rollback_protection(REPO, ["prod"], [ledger], keep_deploys=2)
    # the last 2 successful deploys of distinct images: v1.1.0 (current) and v1.0.0
    assert "one of the last 2 deploys to prod (#2, ledger)" in protected[digest(0)]
    assert digest(2) not in protected
    assert digest(3) not in protected


def test_a_deploy_recorded_without_digest_is_kept_by_tag() -> None:
    ledger = FakeHistory(
        "ledger", {"prod": [("v1.0.0", OK, None), ("v1.1.0", OK, None), ("v1.2.0", OK, None)]}
    )
    protected = rollback_protection(REPO, ["prod"], [ledger], keep_deploys=3)
    assert set(protected) == {"v1.0.0", "v1.1.0", "v1.2.0"}


def test_each_environment_and_each_source_counts_its_own() -> None:
    ledger = FakeHistory(
        "ledger",
        {
            "prod": [(f"v1.{i}.0", OK, digest(i)) for i in range(4)],
            "staging": [(f"v2.{i}.0", OK, digest(10 + i)) for i in range(4)],
        },
    )
    github = FakeHistory(
        "github", {"prod": [("v0.9.0", OK, digest(20)), ("v0.9.1", OK, digest(21))]}
    )
    protected = rollback_protection(REPO, ["prod", "staging"], [ledger, github], keep_deploys=3)
    assert "one of the last 3 deploys to prod (#3, ledger)" in protected[digest(1)]
    assert "one of the last 3 deploys to staging (#3, ledger)" in protected[digest(11)]
    assert digest(0) not in protected
    assert digest(10) not in protected
    assert "rollback target for prod (github)" in protected[digest(20)]


def test_missing_history_fails_closed_as_the_rollback_protection_does() -> None:
    result = protection(REPO, ["prod", "qa"], [five_releases()], keep_deploys=3)
    assert result.missing == ("qa",)
    with pytest.raises(NoHistory):
        result.require(["qa"])


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(UsageError, match="--keep-deploys"):
        protection(REPO, ["prod"], [five_releases()], keep_deploys=-1)


@settings(max_examples=80, deadline=None)
@given(
    entries=st.lists(
        st.tuples(st.integers(0, 6), st.sampled_from([OK, OK, FAILED, ROLLED_BACK])),
        min_size=1,
        max_size=15,
    ),
    k=st.integers(0, 5),
)
def test_property_the_k_newest_distinct_successful_images_are_protected(
    entries: list[tuple[int, DeployStatus]], k: int
) -> None:
    ledger = FakeHistory(
        "ledger", {"prod": [(f"v1.{n}.0", status, digest(n)) for n, status in entries]}
    )
    base = rollback_protection(REPO, ["prod"], [ledger])
    protected = rollback_protection(REPO, ["prod"], [ledger], keep_deploys=k)
    wanted: list[int] = []
    for n, status in reversed(entries):
        if status is OK and n not in wanted:
            wanted.append(n)
    expected = {digest(n) for n in wanted[:k]} | {d for d in base if d.startswith("sha256:")}
    assert {d for d in protected if d.startswith("sha256:")} == expected
    assert set(base) <= set(protected)  # it only ever adds


# ------------------------------------------------------------------ configuration


def test_the_config_key_is_a_non_negative_integer(tmp_path: Path) -> None:
    path = tmp_path / "tagkeeper.toml"
    assert validate({"keep-deploys": 3}, path) == {"keep-deploys": 3}
    with pytest.raises(ConfigError, match="non-negative"):
        validate({"keep-deploys": -1}, path)
    with pytest.raises(ConfigError, match="non-negative"):
        validate({"keep-deploys": "3"}, path)


# ------------------------------------------------------------------ command line

IMAGE = "registry.test/acme/app"
ACTOR = Actor(user="ci", host="deploy-1")


@pytest.fixture
def ledger_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "ledger.db"
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(path))
    for name in ("GITHUB_REPOSITORY", "GITHUB_TOKEN", "GH_TOKEN", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    with Ledger(path) as ledger:
        for tag in ("v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0"):
            ledger.record(
                environment="prod",
                repository=IMAGE,
                tag=tag,
                status=OK,
                actor=ACTOR,
                digest=digest_of(tag),
            )
    return path


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    reg = FakeRegistry(display=IMAGE)
    for minutes, tag in enumerate(("v0.9.0", "v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0")):
        reg.add(tag, tags=[tag], created=minutes)

    def open_fake(image: str, options: object, client: object) -> FakeRegistry:
        assert image == IMAGE
        return reg

    monkeypatch.setattr(tagkeeper.registries.factory, "open_backend", open_fake)
    return reg


def prune(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    capsys.readouterr()
    argv = ["prune", "--image", IMAGE, "--keep-release", "0", "--min-age", "0", "--dry-run"]
    code = main([*argv, "--format", "json", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def kept(payload: Any) -> dict[str, str]:
    (entry,) = payload["images"]
    assert entry["error"] is None, entry["error"]
    return {tag: item["reason"] for item in entry["keep"] for tag in item["tags"]}


def test_the_flag_keeps_the_last_k_deploys(
    ledger_path: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, payload, err = prune(capsys, "--env", "prod")
    assert code == 0, err
    assert set(kept(payload)) == {"v1.4.0", "v1.3.0"}  # current and rollback target
    code, payload, err = prune(capsys, "--env", "prod", "--keep-deploys", "4")
    assert code == 0, err
    reasons = kept(payload)
    assert set(reasons) == {"v1.4.0", "v1.3.0", "v1.2.0", "v1.1.0"}
    assert "one of the last 4 deploys to prod (#4, ledger)" in reasons["v1.1.0"]


def test_the_config_key_applies_and_the_flag_wins(
    ledger_path: Path,
    registry: FakeRegistry,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    (tmp_path / "tagkeeper.toml").write_text('env = "prod"\nkeep-deploys = 3\n')
    code, payload, err = prune(capsys)
    assert code == 0, err
    assert set(kept(payload)) == {"v1.4.0", "v1.3.0", "v1.2.0"}
    code, payload, err = prune(capsys, "--keep-deploys", "5")
    assert set(kept(payload)) == {"v1.4.0", "v1.3.0", "v1.2.0", "v1.1.0", "v1.0.0"}


def test_the_flag_without_an_environment_is_a_usage_error(
    ledger_path: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _payload, err = prune(capsys, "--keep-deploys", "3")
    assert code == 2
    assert "--keep-deploys" in err
    assert "--env" in err
    assert registry.deleted == []


def test_the_flag_with_an_environment_and_no_history_is_a_usage_error(
    ledger_path: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _payload, err = prune(capsys, "--env", "qa", "--keep-deploys", "3")
    assert code == 2
    assert "no deploy of" in err
