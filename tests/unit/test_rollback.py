"""Rollback resolution (pure): deploy histories and registry fallbacks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from tagkeeper.errors import NoRollbackTarget, UsageError
from tagkeeper.inventory import Version
from tagkeeper.rollback.resolve import (
    DeployRecord,
    DeployStatus,
    previous_from_history,
    previous_from_registry,
)
from tagkeeper.tags.compute import BuildContext, ShaSource, TagOptions, compute_tags

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = "ghcr.io/o/app"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
OK = DeployStatus.SUCCEEDED
FAILED = DeployStatus.FAILED
STARTED = DeployStatus.STARTED
ROLLED_BACK = DeployStatus.ROLLED_BACK


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def history(*entries: tuple[str, DeployStatus], env: str = "prod") -> list[DeployRecord]:
    """Records from oldest to newest as written; returned newest first, as sources give."""
    records = [
        DeployRecord(
            env, REPO, tag, status, T0 + timedelta(minutes=i), digest=digest(i + 1), id=i + 1
        )
        for i, (tag, status) in enumerate(entries)
    ]
    return list(reversed(records))


def prev(records: list[DeployRecord], env: str = "prod", **kw: object) -> str:
    return previous_from_history(records, repository=REPO, environment=env, **kw).tag  # type: ignore[arg-type]


def test_previous_is_the_last_success_before_the_current_one() -> None:
    records = history(("v1.1.0", OK), ("v1.2.0", OK), ("v1.3.0", OK))
    target = previous_from_history(records, repository=REPO, environment="prod")
    assert (target.tag, target.current, target.digest) == ("v1.2.0", "v1.3.0", digest(2))
    assert target.reference(pinned=True) == f"{REPO}:v1.2.0@{digest(2)}"


def test_a_previous_release_that_failed_is_skipped() -> None:
    records = history(("v1.1.0", OK), ("v1.2.0", FAILED), ("v1.3.0", OK))
    assert prev(records) == "v1.1.0"


def test_a_failed_newest_deploy_is_not_current() -> None:
    # v1.3.0 failed: what runs is still v1.2.0 (deploy scripts keep the old container
    # when the new one fails), so the previous is v1.1.0 ...
    records = history(("v1.1.0", OK), ("v1.2.0", OK), ("v1.3.0", FAILED))
    assert prev(records) == "v1.1.0"
    # ... unless the caller says the failed one is what runs now.
    assert prev(records, current="v1.3.0") == "v1.2.0"


def test_a_newer_release_never_deployed_is_never_the_answer() -> None:
    # v1.5.0 exists in the registry but was never deployed: only history counts.
    records = history(("v1.3.0", OK), ("v1.4.0", OK))
    assert prev(records) == "v1.3.0"
    assert prev(records, current="v1.4.0") == "v1.3.0"


def test_current_tag_not_in_history_answers_the_newest_success_with_a_note() -> None:
    records = history(("v1.1.0", OK), ("v1.2.0", OK), ("v1.3.0", FAILED))
    target = previous_from_history(records, repository=REPO, environment="prod", current="v1.2.5")
    assert target.tag == "v1.2.0"
    assert target.notes
    assert "v1.2.5 is not in the ledger history" in target.notes[0]


def test_current_given_uses_its_newest_occurrence() -> None:
    records = history(
        ("v1.0.0", OK), ("v1.1.0", OK), ("v1.2.0", OK), ("v1.1.0", OK), ("v1.3.0", OK)
    )
    assert prev(records, current="v1.1.0") == "v1.2.0"
    assert prev(records, current="v1.2.0") == "v1.1.0"


def test_never_the_current_tag_itself_even_when_redeployed() -> None:
    records = history(("v1.1.0", OK), ("v1.2.0", OK), ("v1.2.0", OK))
    assert prev(records) == "v1.1.0"


def test_rolled_back_and_unfinished_deploys_are_skipped() -> None:
    records = history(("v1.0.0", OK), ("v1.1.0", STARTED), ("v1.2.0", ROLLED_BACK), ("v1.3.0", OK))
    assert prev(records) == "v1.0.0"


def test_after_a_rollback_the_bad_release_is_not_the_next_answer() -> None:
    records = history(("v1.2.0", OK), ("v1.3.0", OK), ("v1.4.0", ROLLED_BACK), ("v1.3.0", OK))
    assert prev(records) == "v1.2.0"


def test_mutable_and_prerelease_tags_are_never_prod_targets() -> None:
    records = history(
        ("v1.0.0", OK),
        ("latest", OK),
        ("dev-latest", OK),
        ("v1.1", OK),
        ("v1.1.0-rc.1", OK),
        ("dev-abc1234", OK),
        ("v1.1.0", OK),
    )
    target = previous_from_history(records, repository=REPO, environment="prod")
    assert target.tag == "v1.0.0"
    assert prev(records, allow_prerelease=True) == "v1.1.0-rc.1"


def test_dev_environment_takes_dev_builds_but_not_pointers() -> None:
    records = history(
        ("dev-aaaaaaa", OK), ("latest", OK), ("dev-latest", OK), ("dev-bbbbbbb", OK), env="dev"
    )
    assert prev(records, env="dev") == "dev-aaaaaaa"


def test_other_images_and_environments_are_ignored() -> None:
    records = history(("v1.0.0", OK), ("v1.1.0", OK))
    noise = [
        DeployRecord("staging", REPO, "v1.0.5", OK, T0, id=90),
        DeployRecord("prod", "ghcr.io/o/other", "v1.0.7", OK, T0, id=91),
    ]
    assert prev([*noise, *records]) == "v1.0.0"


def test_no_target_explains_what_was_skipped() -> None:
    records = history(("v1.3.0", FAILED), ("v1.4.0", OK))
    with pytest.raises(NoRollbackTarget) as caught:
        prev(records)
    message = caught.value.message
    assert "no successful deploy of ghcr.io/o/app to prod before v1.4.0" in message
    assert "v1.3.0 failed" in message
    assert caught.value.hint


def test_no_history_and_no_success_are_distinct_errors() -> None:
    with pytest.raises(NoRollbackTarget, match=r"no deploy of .* is recorded"):
        prev([])
    with pytest.raises(NoRollbackTarget, match="succeeded"):
        prev(history(("v1.0.0", FAILED)))
    with pytest.raises(NoRollbackTarget, match="first one recorded"):
        prev(history(("v1.0.0", OK)))


def test_history_is_read_lazily_and_no_further_than_needed() -> None:
    records = history(("v0.9.0", OK), ("v1.0.0", OK), ("v1.1.0", OK))
    pulled: list[str] = []

    def lazy() -> Iterator[DeployRecord]:
        for record in records:
            pulled.append(record.tag)
            yield record

    target = previous_from_history(lazy(), repository=REPO, environment="prod")
    assert target.tag == "v1.0.0"
    assert pulled == ["v1.1.0", "v1.0.0"]


# -- registry fallback -----------------------------------------------------------------

# semver.org §11, in ascending precedence
SEMVER_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
]


def versions(*tag_sets: tuple[str, ...]) -> list[Version]:
    return [
        Version(digest(100 + i), frozenset(tags), T0 + timedelta(hours=i))
        for i, tags in enumerate(tag_sets)
    ]


def reg(
    vs: list[Version], current: str | None, env: str = "prod", allow_prerelease: bool = False
) -> str:
    return previous_from_registry(
        vs, repository=REPO, environment=env, current=current, allow_prerelease=allow_prerelease
    ).tag


def test_registry_walks_down_semver_precedence_exactly() -> None:
    # Pushed in an order unrelated to precedence: push time must not matter.
    shuffled = [SEMVER_ORDER[i] for i in (3, 7, 0, 5, 1, 6, 4, 2)]
    vs = versions(*[(f"v{t}",) for t in shuffled])
    walked = ["v1.0.0"]
    while True:
        try:
            walked.append(reg(vs, walked[-1], allow_prerelease=True))
        except NoRollbackTarget:
            break
    assert walked == [f"v{t}" for t in reversed(SEMVER_ORDER)]


def test_registry_orders_numerically_not_lexically() -> None:
    vs = versions(("v1.9.0",), ("v1.10.0",), ("v1.2.0",), ("v1.11.0",), ("v2.0.0",))
    assert reg(vs, "v1.11.0") == "v1.10.0"
    assert reg(vs, "v1.10.0") == "v1.9.0"
    assert reg(vs, "v2.0.0") == "v1.11.0"


def test_registry_skips_prereleases_for_prod_and_ignores_build_metadata() -> None:
    vs = versions(
        ("v1.3.0",),
        ("v1.4.0-rc.1",),
        ("v1.4.0-rc.2", "v1.4.0-rc.2_b1"),
        ("v1.4.0",),
        ("v1.4.0_build.7",),
    )
    # v1.4.0_build.7 has the same precedence as v1.4.0: not "below" it
    assert reg(vs, "v1.4.0") == "v1.3.0"
    assert reg(vs, "v1.4.0", allow_prerelease=True) == "v1.4.0-rc.2"


def test_registry_never_answers_mutable_tags_or_the_same_image() -> None:
    vs = versions(
        ("v1.0.0",), ("latest", "v1"), ("v1.1",), ("v1.1.0", "v1.1.5"), ("v1.2.0", "stable")
    )
    # v1.1.5 is the same image as v1.1.0; v1, v1.1 and latest are moving tags
    assert reg(vs, "v1.2.0") == "v1.1.5"
    assert reg(vs, "v1.1.5") == "v1.0.0"


def test_registry_prefers_the_current_tag_style_on_ties() -> None:
    vs = versions(("1.1.0",), ("v1.1.0",), ("v1.2.0",))
    assert reg(vs, "v1.2.0") == "v1.1.0"
    assert reg(vs, "1.2.0") == "1.1.0"


def test_registry_dev_takes_the_dev_build_pushed_before_the_current_one() -> None:
    vs = versions(
        ("dev-aaaaaaa",),
        ("dev-bbbbbbb",),
        ("dev-ccccccc", "dev-latest"),
        ("dev-ddddddd",),
        ("v1.0.0",),
    )
    assert reg(vs, "dev-ddddddd", env="dev") == "dev-ccccccc"
    assert reg(vs, "dev-bbbbbbb", env="dev") == "dev-aaaaaaa"
    with pytest.raises(NoRollbackTarget, match="no dev build"):
        reg(vs, "dev-aaaaaaa", env="dev")


@pytest.mark.parametrize("length", [4, 12, 40])
def test_registry_dev_reads_every_dev_tag_that_tags_writes(length: int) -> None:
    # the tags `tagkeeper tags --sha-length N` writes, for three commits pushed in order
    shas = ["beef" * 10, "c0de" * 10, "f00d" * 10]
    made = [
        compute_tags(
            BuildContext(sha, ShaSource.flag, "refs/heads/main"), TagOptions(sha_length=length)
        ).tags[0]
        for sha in shas
    ]
    assert [len(tag) for tag in made] == [len("dev-") + length] * 3
    vs = versions(*((tag,) for tag in made))
    assert reg(vs, made[2], env="dev") == made[1]
    assert reg(vs, made[1], env="dev") == made[0]
    with pytest.raises(NoRollbackTarget, match="no dev build"):
        reg(vs, made[0], env="dev")


def test_registry_dev_tag_grammar_is_lowercase_hex_of_4_to_64_digits() -> None:
    vs = versions(("dev-" + "a" * 64,), ("dev-" + "b" * 64,), ("dev-abc",), ("dev-ABCD",))
    assert reg(vs, "dev-" + "b" * 64, env="dev") == "dev-" + "a" * 64
    for not_a_dev_tag in ("dev-abc", "dev-ABCD", "dev-" + "a" * 65):
        with pytest.raises(NoRollbackTarget, match="neither a SemVer"):
            reg(vs, not_a_dev_tag, env="dev")


def test_registry_needs_to_know_the_current_tag() -> None:
    vs = versions(("v1.0.0",), ("v1.1.0",))
    with pytest.raises(NoRollbackTarget, match="cannot tell"):
        reg(vs, None)
    with pytest.raises(NoRollbackTarget, match="not in the registry"):
        reg(vs, "dev-1234567", env="dev")
    with pytest.raises(NoRollbackTarget, match="neither a SemVer"):
        reg(vs, "nightly")


def test_registry_no_lower_release_explains() -> None:
    vs = versions(("v1.0.0-rc.1",), ("v1.0.0",))
    with pytest.raises(NoRollbackTarget) as caught:
        reg(vs, "v1.0.0")
    assert "v1.0.0-rc.1 is a prerelease" in caught.value.message
    assert "--allow-prerelease" in (caught.value.hint or "")


# -- the current tag: never empty, and never answered with something newer ---------------


@pytest.mark.parametrize("bad", ["", " ", "v1.0.0 ", ".v1", "v1.0.0\n", "a" * 129, "-v1"])
def test_a_current_tag_that_is_no_tag_is_bad_input_everywhere(bad: str) -> None:
    records = history(("v1.0.0", OK), ("v1.1.0", OK))
    with pytest.raises(UsageError, match="current"):
        previous_from_history(records, repository=REPO, environment="prod", current=bad)
    with pytest.raises(UsageError, match="current"):
        previous_from_registry(
            versions(("v1.0.0",), ("v1.1.0",)), repository=REPO, environment="prod", current=bad
        )


def test_a_current_tag_not_in_history_answers_the_newest_release_below_it() -> None:
    # v1.3.0 is the newest success, but v1.2.5 runs (deployed by hand): going "back" to
    # v1.3.0 would be a roll forward.
    records = history(("v1.1.0", OK), ("v1.0.0", OK), ("v1.3.0", OK), ("v1.4.0", FAILED))
    target = previous_from_history(records, repository=REPO, environment="prod", current="v1.2.5")
    assert target.tag == "v1.0.0"  # the newest deploy below v1.2.5, not the highest
    assert "below v1.2.5" in target.notes[0]
    assert prev(records, current="v1.3.0") == "v1.0.0"  # in the history: the one before
    with pytest.raises(NoRollbackTarget, match=r"below v0\.9\.0"):
        prev(records, current="v0.9.0")
    assert prev(records, current="v1.3.0_build.1") == "v1.0.0"  # same precedence: not below


def test_a_current_tag_not_in_history_that_cannot_be_ordered_has_no_answer() -> None:
    records = history(("dev-aaaaaaa", OK), ("dev-bbbbbbb", OK), env="dev")
    with pytest.raises(NoRollbackTarget, match="cannot") as caught:
        prev(records, env="dev", current="dev-ccccccc")
    assert "--source registry" in (caught.value.hint or "")
    assert prev(records, env="dev", current="dev-bbbbbbb") == "dev-aaaaaaa"
