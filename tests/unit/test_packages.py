"""Many packages: selection from a listing, the order a run takes, the state file and the
budget rule (pure parts of :mod:`tagkeeper.retention.packages`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.errors import UsageError
from tagkeeper.registries.catalog import Listed, Listing
from tagkeeper.retention.packages import (
    RESERVE,
    PruneState,
    _short_of,
    order,
    requests_needed,
    select_packages,
)
from tagkeeper.retention.runner import PruneResult, PruneRun

if TYPE_CHECKING:
    from pathlib import Path

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeLister:
    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.calls: list[tuple[str, str | None, str]] = []

    def __call__(self, host: str, owner: str | None, kind: str) -> Listing:
        self.calls.append((host, owner, kind))
        return Listing(tuple(Listed(n, versions=3) for n in self.names), requests=1)


def test_each_owner_is_listed_once_and_plain_names_need_no_listing() -> None:
    lister = FakeLister(["ghcr.io/acme/api", "ghcr.io/acme/team/web", "ghcr.io/acme/x-cache"])
    selected = select_packages(
        ["ghcr.io/acme/*", "ghcr.io/acme/team/*", "ghcr.io/other/app"],
        ["ghcr.io/acme/*-cache"],
        kind_of=lambda _: "ghcr",
        lister=lister,
    )
    assert [p.image for p in selected.packages] == [
        "ghcr.io/acme/api",
        "ghcr.io/acme/team/web",
        "ghcr.io/other/app",
    ]
    assert lister.calls == [("ghcr.io", "acme", "ghcr")]
    assert selected.packages[0].versions == 3
    assert selected.packages[2].versions is None  # not listed: unknown
    assert selected.requests == 1


def test_oci_catalogs_are_listed_per_literal_prefix() -> None:
    lister = FakeLister(["reg:5000/team/a", "reg:5000/team/b"])
    select_packages(["reg:5000/team/*", "reg:5000/**"], [], kind_of=lambda _: "oci", lister=lister)
    assert lister.calls == [("reg:5000", "team", "oci"), ("reg:5000", None, "oci")]


def test_a_pattern_that_matches_nothing_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="matches no repository"):
        select_packages(
            ["ghcr.io/acme/nope-*"], [], kind_of=lambda _: "ghcr", lister=FakeLister([])
        )


@given(
    st.dictionaries(
        st.text(alphabet="abcdef", min_size=1, max_size=4),
        st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
        max_size=12,
    )
)
def test_order_puts_never_pruned_first_then_the_oldest_prune(
    ages: dict[str, int | None],
) -> None:
    state = PruneState()
    for name, minutes in ages.items():
        if minutes is not None:
            state.pruned[f"ghcr.io/o/{name}"] = T0 + timedelta(minutes=minutes)
    packages = [Listed(f"ghcr.io/o/{n}") for n in sorted(ages, reverse=True)]
    ordered = order(packages, state)
    assert sorted(p.image for p in ordered) == sorted(p.image for p in packages)
    keys = [state.pruned.get(p.image) for p in ordered]
    never = [k for k in keys if k is None]
    assert keys[: len(never)] == never  # every never-pruned package comes first
    seen = [k for k in keys if k is not None]
    assert seen == sorted(seen)


def test_the_state_file_round_trips_and_is_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = PruneState.load(path)
    assert state.pruned == {}
    state.mark("ghcr.io/o/a", T0)
    state.mark("ghcr.io/o/b", T0 + timedelta(hours=1))
    again = PruneState.load(path)
    assert again.pruned == {"ghcr.io/o/a": T0, "ghcr.io/o/b": T0 + timedelta(hours=1)}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"version": 2, "pruned": {}}', '{"version": 1, "pruned": {"a": "x"}}'],
)
def test_a_state_file_that_is_not_ours_is_a_usage_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(UsageError) as caught:
        PruneState.load(path)
    assert caught.value.hint
    assert path.read_text() == content  # nothing changed


def test_a_state_file_in_a_missing_folder_says_so(tmp_path: Path) -> None:
    state = PruneState(tmp_path / "missing" / "state.json")
    with pytest.raises(UsageError, match="cannot be written"):
        state.mark("ghcr.io/o/a", T0)


@given(st.integers(min_value=0, max_value=5_000))
def test_requests_needed_grow_with_pages_and_with_deletes_only_in_a_real_run(
    versions: int,
) -> None:
    package = Listed("ghcr.io/o/a", versions=versions)
    dry = requests_needed(package, dry_run=True)
    pages = max(1, -(-versions // 100))
    assert dry == (pages * 2 if pages > 1 else 1)
    assert requests_needed(package, dry_run=False) == dry + 2 * versions


@given(st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=300))
def test_the_run_stops_exactly_when_what_is_left_cannot_cover_the_next_package(
    remaining: int, versions: int
) -> None:
    package = Listed("ghcr.io/o/a", versions=versions)
    now = T0.timestamp()
    why = _short_of(package, (remaining, now + 60), now, dry_run=False)
    covered = remaining >= requests_needed(package, dry_run=False) + RESERVE
    assert (why is None) is covered
    if why is not None:
        assert "ghcr.io/o/a" in why
        assert str(remaining) in why
    # unknown, or a window that has reset: never a reason to stop
    assert _short_of(package, (None, None), now, dry_run=False) is None
    assert _short_of(package, (remaining, now - 1), now, dry_run=False) is None


def test_a_stopped_run_exits_10_and_its_json_has_totals_and_what_is_left() -> None:
    run = PruneRun(
        (PruneResult("ghcr.io/o/a", requests={"list": 2}),),
        left=("ghcr.io/o/b",),
        stopped="stopped before ghcr.io/o/b",
    )
    assert int(run.exit_code) == 10
    doc = run.to_json()
    assert doc["left"] == ["ghcr.io/o/b"]
    assert doc["total"] == {
        "images": 1,
        "failed": 0,
        "left": 1,
        "kept": 0,
        "planned": 0,
        "deleted": 0,
        "requests": 2,
    }
    json.dumps(doc)


def test_the_renderers_show_totals_and_what_is_left() -> None:
    from tagkeeper.cli.prune_render import short_json, summary_markdown, totals_text

    run = PruneRun(
        (PruneResult("ghcr.io/o/a"), PruneResult("ghcr.io/o/b")),
        dry_run=True,
        left=("ghcr.io/o/c", "ghcr.io/o/d"),
        stopped="stopped before ghcr.io/o/c: 5 GitHub API requests left",
        warnings=("ghcr.io/o listed 1 name(s) that are not repository names",),
    )
    lines = totals_text(run)
    assert any(line.startswith("total: 2 images, 0 failed") for line in lines)
    assert "left for the next run (2): ghcr.io/o/c, ghcr.io/o/d" in lines
    assert run.stopped in lines
    summary = summary_markdown(run)
    assert "| **total: 2 images** | 0 | 0 | 0 | 0 failed |" in summary
    assert "Left for the next run (2): `ghcr.io/o/c`, `ghcr.io/o/d`" in summary
    short = short_json(run, str, None)
    assert short["left"] == ["ghcr.io/o/c", "ghcr.io/o/d"]
    assert short["total"]["left"] == 2
    # one image, nothing left: no totals line (as before)
    assert totals_text(PruneRun((PruneResult("ghcr.io/o/a"),))) == []


def test_a_run_lists_packages_only_for_patterns_exclusions_or_a_state() -> None:
    from tagkeeper.retention.packages import lists_packages
    from tagkeeper.retention.select import every_package

    assert not lists_packages(["ghcr.io/o/a", "ghcr.io/o/b"])  # as given, in that order
    assert lists_packages(["ghcr.io/o/*"])
    assert lists_packages(["ghcr.io/o/a"], ["ghcr.io/o/*-cache"])
    assert lists_packages(["ghcr.io/o/a"], state=PruneState())
    assert every_package("ghcr.io/acme/") == "ghcr.io/acme/**"
    assert every_package("registry.example:5000") == "registry.example:5000/**"
