"""SemVer 2.0.0 parsing and precedence against semver.org §9-11 and edge cases."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.version import Version as Pep440Version

from tagkeeper.errors import UsageError
from tagkeeper.semver import SemVer, explain_tag, format_tag, parse, parse_tag

# semver.org §11, example 4 (and §11.2-§11.3): strictly increasing.
SPEC_CHAIN = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "2.0.0",
    "2.1.0",
    "2.1.1",
]


def test_spec_chain_is_strictly_increasing_pairwise() -> None:
    versions = [parse(text) for text in SPEC_CHAIN]
    for (i, a), (j, b) in itertools.product(enumerate(versions), repeat=2):
        assert (a < b) == (i < j), (a, b)
        assert (a == b) == (i == j), (a, b)
        assert (a > b) == (i > j), (a, b)


def test_sorting_a_shuffled_spec_chain_restores_it() -> None:
    shuffled = SPEC_CHAIN[:]
    random.Random(7).shuffle(shuffled)  # noqa: S311 - a fixed test order
    assert [str(v) for v in sorted(parse(t) for t in shuffled)] == SPEC_CHAIN


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("1.0.0-alpha", "1.0.0"),  # §11.3: a prerelease is below its release
        ("1.9.0", "1.10.0"),  # §11.2: numeric, not text, comparison
        ("1.0.0-2", "1.0.0-10"),  # numeric identifiers compare numerically
        ("1.0.0-999", "1.0.0-a"),  # numeric identifiers are below alphanumeric ones
        ("1.0.0-RC.1", "1.0.0-rc.1"),  # ASCII order: uppercase before lowercase
        ("1.0.0-Z", "1.0.0-a"),
        ("1.0.0-0a", "1.0.0-a"),  # "0a" is alphanumeric: as text, "0a" < "a"
        ("1.0.0-1", "1.0.0-0a"),  # numeric 1 < alphanumeric "0a"
        ("1.0.0-alpha", "1.0.0-alpha.0"),  # more identifiers win when the rest are equal
        ("0.0.0", "0.0.1-0"),
    ],
)
def test_precedence_edge_cases(low: str, high: str) -> None:
    assert parse(low) < parse(high)
    assert parse(high) > parse(low)
    assert parse(low) != parse(high)


def test_hyphenated_identifier_compares_as_text() -> None:
    # "a-b" is one identifier; "a.b" is two, the first "a" < "a-b" as text (prefix).
    assert parse("1.0.0-a.b") < parse("1.0.0-a-b")


def test_huge_numbers_compare_as_numbers() -> None:
    big = "1" + "0" * 60
    assert parse(f"{big}.0.0") > parse("999999999999.0.0")
    assert parse(f"1.0.0-{big}") > parse("1.0.0-99")
    assert parse(f"{big}.0.0").major == 10**60


@pytest.mark.parametrize(
    "text",
    [
        "1.0.0-alpha+001",
        "1.0.0+20130313144700",
        "1.0.0-beta+exp.sha.5114f85",
        "1.0.0+21AF26D3----117B344092BD",
        "1.0.0-0.3.7",
        "1.0.0-x.7.z.92",
        "1.0.0-x-y-z.--",
        "1.0.0-0a",
        "0.0.0",
        "10.20.30",
    ],
)
def test_spec_examples_parse_and_round_trip(text: str) -> None:
    assert str(parse(text)) == text


def test_fields_and_types() -> None:
    v = parse("1.2.3-rc.1.x+b5.007")
    assert (v.major, v.minor, v.patch) == (1, 2, 3)
    assert v.prerelease == ("rc", 1, "x")
    assert v.build == ("b5", "007")  # build identifiers may have leading zeros
    assert v.is_prerelease
    assert not parse("1.2.3+b5").is_prerelease


def test_build_metadata_is_ignored_for_precedence_and_equality() -> None:
    a, b, c = parse("1.0.0+a"), parse("1.0.0+b"), parse("1.0.0")
    assert a == b == c
    assert hash(a) == hash(b) == hash(c)
    assert not a < b
    assert not b < a
    assert len({a, b, c}) == 1
    assert not a.identical(b)
    assert a.identical(parse("1.0.0+a"))
    assert parse("1.0.0-rc.1+z") < parse("1.0.0+a")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("1.2", "MAJOR.MINOR.PATCH"),
        ("1.2.3.4", "MAJOR.MINOR.PATCH"),
        ("01.2.3", "leading zero"),
        ("1.02.3", "leading zero"),
        ("1.2.03", "leading zero"),
        ("1.2.3-01", "leading zero"),
        ("1.2.3-rc.01", "leading zero"),
        ("1.2.3-", "empty"),
        ("1.2.3+", "empty"),
        ("1.2.3-a..b", "empty identifier"),
        ("1.2.3-a.", "empty identifier"),
        ("1.2.3+a..b", "empty identifier"),
        ("1.2.3+a+b", "more than one '+'"),
        ("1.2.3-a_b", "'_'"),
        ("1.2.3-é", "ASCII"),
        ("\u0661.2.3", "non-ASCII digits"),
        ("1.2.3-rc.\u0661", "non-ASCII digits"),
        ("1.\uff12.3", "non-ASCII digits"),
        ("1.2.3 ", "whitespace"),
        (" 1.2.3", "whitespace"),
        ("1.2.3\n", "whitespace"),
        ("1.2.3-rc 1", "whitespace"),
        ("v1.2.3", "prefix"),
        ("V1.2.3", "prefix"),
        ("1.2.x", "not a number"),
        ("-1.2.3", "MAJOR.MINOR.PATCH"),
        ("1.2.-3", "empty"),
    ],
)
def test_invalid_versions_say_why(text: str, reason: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(text)
    assert reason in info.value.message
    assert info.value.hint


def test_too_many_digits_is_a_usage_error_not_a_crash() -> None:
    with pytest.raises(UsageError, match="digits"):
        parse("1." + "9" * 5000 + ".0")


def test_long_input_is_shortened_in_the_message() -> None:
    with pytest.raises(UsageError) as info:
        parse("x" * 500)
    assert len(info.value.message) < 300


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("v1.2.3", "1.2.3"),
        ("1.2.3", "1.2.3"),
        ("v1.2.3-rc.1", "1.2.3-rc.1"),
        ("v1.2.3+b5", "1.2.3+b5"),
        ("v1.2.3_b5", "1.2.3+b5"),  # image-tag form of build metadata
        ("v1.2.3-rc.1_b.5", "1.2.3-rc.1+b.5"),
    ],
)
def test_parse_tag_accepts_v_prefix_and_image_form(tag: str, expected: str) -> None:
    version = parse_tag(tag)
    assert version is not None
    assert version.identical(parse(expected))


@pytest.mark.parametrize(
    "tag",
    [
        "release-2024",
        "V1.2.3",
        "vv1.2.3",
        "latest",
        "v1.2",
        "v01.2.3",
        "v1.2.3 ",
        "dev-abc1234",
        "v1.2.3+a_b",
        "v1.2.3_a_b",
        "",
    ],
)
def test_parse_tag_returns_none_for_non_semver(tag: str) -> None:
    assert parse_tag(tag) is None
    reason = explain_tag(tag)
    assert reason is not None
    assert "not a SemVer" in reason


def test_explain_tag_names_the_tag_as_given() -> None:
    reason = explain_tag("v01.2.3")
    assert reason is not None
    assert "'v01.2.3'" in reason
    assert "leading zero" in reason
    assert explain_tag("v1.2.3") is None


def test_format_tag_maps_build_metadata_to_underscore() -> None:
    v = parse("1.2.3-rc.1+build.5")
    assert format_tag(v) == "v1.2.3-rc.1_build.5"
    assert format_tag(v, v_prefix=False) == "1.2.3-rc.1_build.5"
    back = parse_tag(format_tag(v))
    assert back is not None
    assert back.identical(v)


def test_packaging_version_orders_semver_differently() -> None:
    # PEP 440 reads "1.0.0-1" as a post-release, newer than 1.0.0; SemVer says prerelease.
    assert Pep440Version("1.0.0-1") > Pep440Version("1.0.0")
    assert parse("1.0.0-1") < parse("1.0.0")
    # and it folds case and separators that SemVer distinguishes
    assert Pep440Version("1.0.0-RC.1") == Pep440Version("1.0.0-rc.1")
    assert parse("1.0.0-RC.1") < parse("1.0.0-rc.1")


# --- properties -------------------------------------------------------------------

_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-"
numbers = st.integers(min_value=0, max_value=10**12)
alnum_ident = st.text(alphabet=_ALNUM, min_size=1, max_size=6).filter(lambda s: not s.isdigit())
pre_ident: st.SearchStrategy[int | str] = st.one_of(numbers, alnum_ident)
build_ident = st.text(alphabet=_ALNUM, min_size=1, max_size=6)
versions = st.builds(
    SemVer,
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 3),
    st.lists(pre_ident, max_size=3).map(tuple),
    st.lists(build_ident, max_size=2).map(tuple),
)


@given(versions)
def test_str_parse_round_trip(v: SemVer) -> None:
    again = parse(str(v))
    assert again.identical(v)
    assert str(again) == str(v)


@given(versions, versions, versions)
def test_total_order_is_consistent(a: SemVer, b: SemVer, c: SemVer) -> None:
    assert sum([a < b, a == b, a > b]) == 1
    assert (a <= b) == (a < b or a == b)
    assert (a >= b) == (a > b or a == b)
    if a <= b <= c:
        assert a <= c
    if a == b:
        assert hash(a) == hash(b)


@given(versions, st.lists(build_ident, max_size=3).map(tuple))
def test_build_metadata_never_changes_precedence(v: SemVer, build: tuple[str, ...]) -> None:
    other = SemVer(v.major, v.minor, v.patch, v.prerelease, build)
    assert other == v
    assert not other < v
    assert not v < other


@given(versions)
def test_image_tag_round_trip_and_grammar(v: SemVer) -> None:
    from tagkeeper.refs import is_valid_tag

    for prefix in (True, False):
        tag = format_tag(v, v_prefix=prefix)
        assert "+" not in tag
        back = parse_tag(tag)
        assert back is not None
        assert back.identical(v)
        if len(tag) <= 128:
            assert is_valid_tag(tag)


@given(versions, versions)
def test_release_is_above_its_prereleases(a: SemVer, b: SemVer) -> None:
    release = SemVer(a.major, a.minor, a.patch)
    if a.is_prerelease:
        assert a < release
    if b.core < a.core:
        assert b < a
