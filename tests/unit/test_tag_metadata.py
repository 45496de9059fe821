"""OCI labels and annotations of a build, and where the source lives. Pure functions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.errors import PolicyViolation, UsageError
from tagkeeper.tags.compute import BuildContext, ShaSource, TagOptions, compute_tags
from tagkeeper.tags.context import repository_from_actions, repository_from_remote
from tagkeeper.tags.metadata import build_time, image_metadata, parse_levels

SHA = "3f9c2ab" + "0" * 33
WHEN = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
P = "org.opencontainers.image."


def ctx(ref: str | None, **extra: object) -> BuildContext:
    return BuildContext(SHA, ShaSource.push, ref, "push", **extra)  # type: ignore[arg-type]


def test_release_labels_and_annotations() -> None:
    result = compute_tags(
        ctx("refs/tags/v1.2.3+build.7", repository_url="https://github.com/Acme-Corp/App",
            repository_name="App"),
        TagOptions(aliases=True),
    )
    meta = image_metadata(result, created=WHEN, images=["ghcr.io/acme-corp/app"])
    assert meta.labels == {
        P + "created": "2024-05-06T07:08:09Z",
        P + "revision": SHA,
        P + "version": "1.2.3+build.7",
        P + "source": "https://github.com/Acme-Corp/App",
        P + "url": "https://github.com/Acme-Corp/App",
        P + "title": "App",
    }
    assert meta.labels_text().splitlines()[1] == f"{P}revision={SHA}"
    lines = meta.annotations_text().splitlines()
    assert len(lines) == 6
    assert all(line.startswith("manifest:" + P) for line in lines)
    assert f"manifest:{P}version=1.2.3+build.7" in lines


def test_dev_and_pr_builds_are_versioned_by_their_immutable_tag() -> None:
    dev = compute_tags(ctx("refs/heads/main"), TagOptions(dev_pointer="dev-latest"))
    assert image_metadata(dev, created=WHEN).labels[P + "version"] == "dev-3f9c2ab"
    pr = compute_tags(
        BuildContext(SHA, ShaSource.head, "refs/pull/12/merge", "pull_request", 12)
    )
    assert pr.tags == ("dev-3f9c2ab", "pr-12")
    assert image_metadata(pr, created=WHEN).labels[P + "version"] == "dev-3f9c2ab"


def test_unknown_source_is_left_out_and_the_title_comes_from_the_image() -> None:
    result = compute_tags(ctx("refs/heads/main"))
    labels = image_metadata(result, created=WHEN, images=["registry:5000/team/api"]).labels
    assert P + "source" not in labels
    assert P + "url" not in labels
    assert labels[P + "title"] == "api"
    assert P + "title" not in image_metadata(result, created=WHEN).labels


def test_a_value_with_a_control_character_is_never_emitted() -> None:
    result = compute_tags(
        ctx("refs/heads/main", repository_url="https://x/o/r\nforged=1", repository_name="r\r")
    )
    meta = image_metadata(result, created=WHEN)
    assert set(meta.labels) == {P + "created", P + "revision", P + "version"}
    assert "forged" not in meta.labels_text() + meta.annotations_text()


def test_levels() -> None:
    result = compute_tags(ctx("refs/heads/main"))
    meta = image_metadata(result, created=WHEN, levels=parse_levels("manifest, index"))
    keys = list(meta.annotations)
    assert keys[:3] == [f"manifest:{P}created", f"manifest:{P}revision", f"manifest:{P}version"]
    assert keys[3:] == [f"index:{P}created", f"index:{P}revision", f"index:{P}version"]
    assert parse_levels("index,index") == ("index",)
    for bad in ("", " , ", "manifests", "manifest,platform"):
        with pytest.raises(UsageError, match="annotation levels"):
            parse_levels(bad)


def test_created_is_utc_to_the_second_and_source_date_epoch_wins() -> None:
    local = WHEN.astimezone(timezone(timedelta(hours=-7)))
    result = compute_tags(ctx("refs/heads/main"))
    created = build_time({}, local)
    assert image_metadata(result, created=created).labels[P + "created"] == "2024-05-06T07:08:09Z"
    assert build_time({"SOURCE_DATE_EPOCH": "0"}, WHEN) == datetime(1970, 1, 1, tzinfo=UTC)
    assert build_time({"SOURCE_DATE_EPOCH": "1715000000"}, WHEN).year == 2024
    for bad in ("-1", "1.5", "soon", "99999999999999", "\uff11\uff12"):  # fullwidth digits
        with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
            build_time({"SOURCE_DATE_EPOCH": bad}, WHEN)


@given(st.text(max_size=40))
def test_labels_are_one_line_each_whatever_the_source_says(name: str) -> None:
    result = compute_tags(
        ctx("refs/heads/main", repository_url=f"https://h/o/{name}", repository_name=name)
    )
    meta = image_metadata(result, created=WHEN)
    lines = meta.labels_text().split("\n")
    assert len(lines) == len(meta.labels)
    line_re = re.compile(r"org\.opencontainers\.image\.[a-z]+=[^\x00-\x1f\x7f]+")
    assert all(line_re.fullmatch(line) for line in lines)


# -- dirty work trees (the decision; git itself is exercised in test_cli_tags_oci) --------


def test_a_dirty_tree_is_a_warning_or_with_fail_dirty_a_policy_violation() -> None:
    context = BuildContext(SHA, ShaSource.git, "refs/heads/main", dirty=("a.py", "b c", "d", "e"))
    result = compute_tags(context)
    (warning,) = result.warnings
    assert "4 uncommitted paths ('a.py', 'b c', 'd' and 1 more)" in warning
    assert "dev-3f9c2ab names commit 3f9c2ab" in warning
    with pytest.raises(PolicyViolation, match="uncommitted") as caught:
        compute_tags(context, TagOptions(fail_dirty=True))
    assert caught.value.hint is not None
    assert "git stash" in caught.value.hint
    for clean in ((), None):
        done = compute_tags(
            BuildContext(SHA, ShaSource.git, "refs/heads/main", dirty=clean),
            TagOptions(fail_dirty=True),
        )
        assert done.warnings == ()


# -- where the source lives ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("https://github.com/Acme-Corp/App.git", "https://github.com/Acme-Corp/App"),
        ("https://x-access-token:ghs_SECRET@github.com/o/r", "https://github.com/o/r"),
        ("https://user@github.com/o/r/", "https://github.com/o/r"),
        ("git@github.com:o/r.git", "https://github.com/o/r"),
        ("ssh://git@github.com:22/o/r.git", "https://github.com/o/r"),
        ("http://u:p@localhost:3000/o/r.git", "http://localhost:3000/o/r"),
        ("/srv/git/r.git", None),
        ("file:///srv/git/o/r.git", None),
        ("https://github.com:abc/o/r", None),
        ("https://github.com/o/r\n::error::x", None),
        ("git@github.com:o/r`id`", None),
        ("", None),
        (None, None),
    ],
)
def test_repository_from_remote_never_keeps_credentials(
    remote: str | None, url: str | None
) -> None:
    found, name = repository_from_remote(remote)
    assert found == url
    assert name == (url.rsplit("/", 1)[1] if url else None)
    assert "SECRET" not in str(found)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GITHUB_REPOSITORY": "Acme-Corp/App"}, ("https://github.com/Acme-Corp/App", "App")),
        (
            {"GITHUB_REPOSITORY": "o/r", "GITHUB_SERVER_URL": "https://ghe.example.com"},
            ("https://ghe.example.com/o/r", "r"),
        ),
        ({"GITHUB_REPOSITORY": "o/r\nx"}, (None, None)),
        ({"GITHUB_REPOSITORY": "o"}, (None, None)),
        ({"GITHUB_REPOSITORY": "o/r", "GITHUB_SERVER_URL": "https://t:s@h"}, (None, None)),
        ({"GITHUB_REPOSITORY": "o/r", "GITHUB_SERVER_URL": "ftp://h"}, (None, None)),
        ({"GITHUB_REPOSITORY": "o/r", "GITHUB_SERVER_URL": "https://h/x?y"}, (None, None)),
        ({}, (None, None)),
    ],
)
def test_repository_from_actions(
    env: dict[str, str], expected: tuple[str | None, str | None]
) -> None:
    assert repository_from_actions(env) == expected
