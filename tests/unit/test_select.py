"""The image-glob matcher: ``*``/``?`` stay inside one segment, ``**`` crosses them."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.errors import UsageError
from tagkeeper.retention.select import is_glob, parse_glob, select

_SEGMENT = st.text(alphabet="abc-.", min_size=1, max_size=6)
_PATH = st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join)


def _glob_segment() -> st.SearchStrategy[str]:
    return st.text(alphabet="abc-.*?", min_size=1, max_size=6).filter(lambda s: "**" not in s)


@given(st.lists(_glob_segment(), min_size=1, max_size=3), _PATH)
def test_single_star_and_question_mark_never_cross_a_slash(segments: list[str], path: str) -> None:
    glob = parse_glob("reg.example/" + "/".join(segments))
    matched = glob.matches(f"reg.example/{path}")
    # the same number of segments, each matching its own pattern as fnmatch would
    parts = path.split("/")
    expected = len(parts) == len(segments) and all(
        fnmatch.fnmatchcase(part, pattern)
        for part, pattern in zip(parts, segments, strict=True)
    )
    assert matched is expected


@given(_PATH, _PATH)
def test_double_star_matches_any_depth_below_its_prefix(prefix: str, rest: str) -> None:
    glob = parse_glob(f"ghcr.io/{prefix}/**")
    assert glob.matches(f"ghcr.io/{prefix}/{rest}")
    assert not glob.matches(f"ghcr.io/{prefix}x/{rest}")
    assert not glob.matches(f"other.io/{prefix}/{rest}")


@given(_PATH, st.lists(_SEGMENT, max_size=3).map("/".join), _SEGMENT)
def test_double_star_slash_also_matches_zero_segments(prefix: str, middle: str, leaf: str) -> None:
    glob = parse_glob(f"ghcr.io/{prefix}/**/{leaf}")
    between = f"{middle}/" if middle else ""
    assert glob.matches(f"ghcr.io/{prefix}/{between}{leaf}")


@given(st.lists(_PATH, max_size=8), st.lists(_glob_segment(), min_size=1, max_size=2))
def test_select_is_sorted_unique_and_excludes_win(names: list[str], pattern: list[str]) -> None:
    images = [f"ghcr.io/acme/{n}" for n in names] * 2
    include = [parse_glob("ghcr.io/acme/**")]
    exclude = [parse_glob("ghcr.io/acme/" + "/".join(pattern))]
    chosen = select(images, include, exclude)
    assert chosen == sorted(set(chosen))
    assert not any(exclude[0].matches(c) for c in chosen)
    assert set(chosen) | {i for i in images if exclude[0].matches(i)} == set(images)


@given(_PATH)
def test_a_literal_pattern_matches_only_itself(path: str) -> None:
    glob = parse_glob(f"ghcr.io/{path}")
    assert glob.matches(f"ghcr.io/{path}")
    assert not glob.matches(f"ghcr.io/{path}-cache")
    assert not glob.matches(f"ghcr.io/{path}/sub")


def test_nested_names_and_excludes() -> None:
    names = [
        "ghcr.io/acme/api",
        "ghcr.io/acme/api-cache",
        "ghcr.io/acme/team/web",
        "ghcr.io/acme/team/deep/worker",
        "ghcr.io/other/api",
    ]
    assert select(names, [parse_glob("ghcr.io/acme/*")], []) == [
        "ghcr.io/acme/api",
        "ghcr.io/acme/api-cache",
    ]
    assert select(names, [parse_glob("ghcr.io/acme/team/*")], []) == ["ghcr.io/acme/team/web"]
    assert select(
        names, [parse_glob("ghcr.io/acme/**")], [parse_glob("ghcr.io/acme/*-cache")]
    ) == ["ghcr.io/acme/api", "ghcr.io/acme/team/deep/worker", "ghcr.io/acme/team/web"]
    assert select(names, [parse_glob("ghcr.io/acme/ap?")], []) == ["ghcr.io/acme/api"]


def test_owner_and_literal_prefix() -> None:
    assert parse_glob("ghcr.io/acme/team/*").owner == "acme"
    assert parse_glob("ghcr.io/acme/team/*").literal_prefix == "acme/team"
    assert parse_glob("ghcr.io/*/api").owner is None
    assert parse_glob("ghcr.io/*/api").literal_prefix == ""
    assert is_glob("ghcr.io/acme/*")
    assert not is_glob("ghcr.io/acme/api")


@pytest.mark.parametrize(
    "bad",
    [
        "acme",  # no host
        "ghcr.io",  # no path
        "ghcr.*/acme/api",  # wildcard host
        "ghcr.io/Acme/*",  # upper case
        "ghcr.io/acme/[ab]*",  # classes are not supported
        "ghcr.io/acme/x**",  # ** inside a segment
        "ghcr.io/acme/***",
        "ghcr.io/acme//api",
        "ghcr.io/acme/",
    ],
)
def test_patterns_that_cannot_name_an_image_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_glob(bad)
    assert caught.value.hint
