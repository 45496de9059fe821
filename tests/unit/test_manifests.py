"""Unit tests of the pure manifest reader (bytes, digest, content type -> ManifestInfo)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.inventory import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    ManifestInfo,
    ManifestUnreadable,
)
from tagkeeper.registries.manifests import (
    digest_matches,
    digest_of,
    parse_manifest,
    parse_time,
    read_manifest,
)

CONFIG = "application/vnd.oci.image.config.v1+json"


def sha(n: int) -> str:
    return "sha256:" + f"{n:x}".rjust(64, "0")


def encode(doc: Any) -> tuple[bytes, str]:
    """The bytes of ``doc`` and their sha256 digest (computed here, not by the module)."""
    data = json.dumps(doc).encode()
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def image_doc(media: str | None = OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "config": {"mediaType": CONFIG, "digest": sha(1), "size": 123},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(2)}],
    }
    if media is not None:
        doc["mediaType"] = media
    doc.update(extra)
    return doc


def entry(digest: str, media: str = OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media, "digest": digest, "size": 500, **extra}


def index_doc(entries: list[Any], media: str | None = OCI_INDEX) -> dict[str, Any]:
    doc: dict[str, Any] = {"schemaVersion": 2, "manifests": entries}
    if media is not None:
        doc["mediaType"] = media
    return doc


# ------------------------------------------------------------------- the four kinds


def test_oci_index_lists_its_children_in_order_with_their_descriptors() -> None:
    amd = entry(sha(10), platform={"os": "linux", "architecture": "amd64"})
    arm = entry(sha(11), platform={"os": "linux", "architecture": "arm64"})
    data, digest = encode(index_doc([amd, arm]))
    parsed = read_manifest(digest, data, OCI_INDEX)
    assert parsed.is_index
    assert parsed.children == (sha(10), sha(11))
    assert [(e.media_type, e.os, e.architecture) for e in parsed.entries] == [
        (OCI_MANIFEST, "linux", "amd64"),
        (OCI_MANIFEST, "linux", "arm64"),
    ]
    assert parsed.info == ManifestInfo(
        digest=digest, media_type=OCI_INDEX, children=(sha(10), sha(11))
    )


def test_oci_image_manifest_has_no_children_and_names_its_config() -> None:
    data, digest = encode(image_doc())
    parsed = read_manifest(digest, data, OCI_MANIFEST)
    assert not parsed.is_index
    assert parsed.children == ()
    assert parsed.config is not None
    assert (parsed.config.digest, parsed.config.size) == (sha(1), 123)
    assert parse_manifest(digest, data, OCI_MANIFEST) == ManifestInfo(digest, OCI_MANIFEST)


def test_docker_manifest_list_and_docker_image_manifest() -> None:
    data, digest = encode(index_doc([entry(sha(20), DOCKER_MANIFEST)], media=DOCKER_LIST))
    listed = parse_manifest(digest, data, DOCKER_LIST)
    assert (listed.media_type, listed.children) == (DOCKER_LIST, (sha(20),))
    data, digest = encode(image_doc(DOCKER_MANIFEST))
    image = parse_manifest(digest, data, DOCKER_MANIFEST)
    assert (image.media_type, image.children) == (DOCKER_MANIFEST, ())


def test_nested_index_lists_only_its_direct_children_with_their_media_types() -> None:
    data, digest = encode(index_doc([entry(sha(30), OCI_INDEX), entry(sha(31))]))
    parsed = read_manifest(digest, data, OCI_INDEX)
    # the inner index's own children are not read from here: it is a child like any other
    assert parsed.children == (sha(30), sha(31))
    assert [e.media_type for e in parsed.entries] == [OCI_INDEX, OCI_MANIFEST]


def test_entries_without_a_string_digest_are_not_children() -> None:
    doc = index_doc([entry(sha(40)), {"mediaType": OCI_MANIFEST}, "junk", entry(sha(41))])
    doc["manifests"][1]["digest"] = 7
    data, digest = encode(doc)
    assert parse_manifest(digest, data, None).children == (sha(40), sha(41))


def test_platform_children_leave_out_attestations_and_unknown_platforms() -> None:
    doc = index_doc(
        [
            entry(sha(50), platform={"os": "linux", "architecture": "amd64"}),
            entry(
                sha(51),
                platform={"os": "unknown", "architecture": "unknown"},
                annotations={"vnd.docker.reference.type": "attestation-manifest"},
            ),
            entry(sha(52), platform={"os": "unknown", "architecture": "unknown"}),
            entry(sha(53), annotations={"vnd.docker.reference.type": "attestation-manifest"}),
            entry(sha(54)),  # no platform at all: an image all the same
        ]
    )
    data, digest = encode(doc)
    parsed = read_manifest(digest, data, OCI_INDEX)
    assert parsed.platform_children() == (sha(50), sha(54))
    assert len(parsed.children) == 5


# ------------------------------------------------------------ subject, annotations


def test_subject_of_a_referrer() -> None:
    subject = {"mediaType": OCI_MANIFEST, "digest": sha(60), "size": 900}
    data, digest = encode(image_doc(subject=subject, artifactType="application/x-sbom"))
    assert parse_manifest(digest, data, OCI_MANIFEST).subject == sha(60)
    data, digest = encode(image_doc(subject="sha256:not-a-descriptor"))
    assert parse_manifest(digest, data, OCI_MANIFEST).subject is None


def test_created_annotation_is_read_on_manifests_and_indexes() -> None:
    stamp = {"org.opencontainers.image.created": "2024-05-06T07:08:09Z", "other": "x"}
    data, digest = encode(image_doc(annotations=stamp))
    assert parse_manifest(digest, data, None).created == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    doc = index_doc([entry(sha(70))])
    doc["annotations"] = {"org.opencontainers.image.created": "2025-01-02T03:04:05+01:00"}
    data, digest = encode(doc)
    assert parse_manifest(digest, data, None).created == datetime(2025, 1, 2, 2, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "annotations",
    [
        None,
        {},
        {"org.opencontainers.image.created": "1970-01-01T00:00:00Z"},  # placeholder
        {"org.opencontainers.image.created": "1980-01-01T00:00:01Z"},  # placeholder
        {"org.opencontainers.image.created": "last tuesday"},
        {"org.opencontainers.image.created": 1714979289},
        ["org.opencontainers.image.created"],
    ],
)
def test_created_is_unknown_without_a_real_time(annotations: Any) -> None:
    doc = image_doc() if annotations is None else image_doc(annotations=annotations)
    data, digest = encode(doc)
    assert parse_manifest(digest, data, OCI_MANIFEST).created is None


# ------------------------------------------------------------------- media type


def test_media_type_of_the_body_wins_over_the_header() -> None:
    data, digest = encode(index_doc([entry(sha(80))], media=DOCKER_LIST))
    info = parse_manifest(digest, data, f"{OCI_INDEX}; charset=utf-8")
    assert info.media_type == DOCKER_LIST


def test_media_type_from_the_header_when_the_body_has_none() -> None:
    data, digest = encode(index_doc([entry(sha(81))], media=None))
    assert parse_manifest(digest, data, f"{DOCKER_LIST} ; q=1").media_type == DOCKER_LIST
    data, digest = encode(image_doc(media=None))
    assert parse_manifest(digest, data, DOCKER_MANIFEST).media_type == DOCKER_MANIFEST


def test_media_type_from_the_shape_when_neither_says() -> None:
    data, digest = encode(index_doc([entry(sha(82))], media=None))
    assert parse_manifest(digest, data, None).media_type == OCI_INDEX
    data, digest = encode(image_doc(media=None))
    assert parse_manifest(digest, data, "").media_type == OCI_MANIFEST


@pytest.mark.parametrize(
    ("body_media", "header"),
    [
        ("application/vnd.oci.artifact.manifest.v1+json", OCI_MANIFEST),
        (None, "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        ("", "text/plain"),
    ],
)
def test_unknown_media_type_is_unreadable(body_media: str | None, header: str) -> None:
    data, digest = encode(image_doc(media=body_media))
    with pytest.raises(ManifestUnreadable, match="unknown media type") as caught:
        parse_manifest(digest, data, header)
    assert caught.value.digest == digest


def test_an_image_manifest_that_lists_manifests_is_unreadable() -> None:
    # read as an image it would hide the listed manifest from the planner
    data, digest = encode(image_doc(manifests=[entry(sha(90))]))
    with pytest.raises(ManifestUnreadable, match="lists manifests"):
        parse_manifest(digest, data, None)
    data, digest = encode(image_doc(manifests=[]))  # lists nothing: harmless
    assert parse_manifest(digest, data, None).children == ()


# ------------------------------------------------------------- bad bytes, digests


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b"\xff\xfe\xfa", "not JSON"),
        (b"", "not JSON"),
        (b'["a", "list"]', "not a JSON object"),
        (b"null", "not a JSON object"),
    ],
)
def test_bytes_that_are_no_json_object_are_unreadable(data: bytes, reason: str) -> None:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with pytest.raises(ManifestUnreadable, match=reason):
        parse_manifest(digest, data, OCI_MANIFEST)


def test_bytes_with_another_digest_are_unreadable_and_say_which() -> None:
    data, digest = encode(image_doc())
    wrong = sha(99)
    with pytest.raises(ManifestUnreadable) as caught:
        parse_manifest(wrong, data, OCI_MANIFEST)
    assert caught.value.digest == wrong
    assert "does not match" in caught.value.reason
    assert digest in caught.value.reason  # the digest the bytes really have


def test_sha512_digests_are_verified_and_unknown_algorithms_refused() -> None:
    data, _ = encode(image_doc())
    sha512 = "sha512:" + hashlib.sha512(data).hexdigest()
    assert parse_manifest(sha512, data, None).digest == sha512
    with pytest.raises(ManifestUnreadable, match="another digest"):
        parse_manifest("sha512:" + "0" * 128, data, None)
    with pytest.raises(ManifestUnreadable, match="cannot verify"):
        parse_manifest("md5:" + hashlib.md5(data, usedforsecurity=False).hexdigest(), data, None)


def test_digest_helpers() -> None:
    data = b'{"schemaVersion": 2}'
    expected = "sha256:" + hashlib.sha256(data).hexdigest()
    assert digest_of(data) == expected
    assert digest_matches(expected, data)
    assert not digest_matches(expected, data + b" ")
    assert not digest_matches(expected.removeprefix("sha256:"), data)  # no algorithm
    assert not digest_matches("sha1:" + hashlib.sha1(data, usedforsecurity=False).hexdigest(), data)


# --------------------------------------------------------------------- parse_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-06T07:08:09Z", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        ("2024-05-06t07:08:09z", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        ("2024-05-06 07:08:09+02:00", datetime(2024, 5, 6, 5, 8, 9, tzinfo=UTC)),
        ("2024-05-06T07:08:09-0130", datetime(2024, 5, 6, 8, 38, 9, tzinfo=UTC)),
        # nanoseconds (Go's RFC3339Nano) are cut to microseconds
        ("2024-05-06T07:08:09.123456789Z", datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)),
        ("2024-05-06T07:08:09.5Z", datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=UTC)),
        ("  2024-05-06T07:08:09  ", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),  # no offset: UTC
        ("1981-01-01T00:00:00Z", datetime(1981, 1, 1, tzinfo=UTC)),  # first real time
        # before 1981 in its own zone, 1981 in UTC: the UTC instant decides
        ("1980-12-31T23:30:00-01:00", datetime(1981, 1, 1, 0, 30, tzinfo=UTC)),
    ],
)
def test_parse_time_reads_rfc3339(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "1970-01-01T00:00:00Z",  # the Unix epoch (SOURCE_DATE_EPOCH=0)
        "1980-01-01T00:00:01Z",  # buildpacks
        "0001-01-01T00:00:00Z",  # Go's zero time
        "1980-12-31T23:59:59.999999Z",
        "1981-01-01T00:30:00+01:00",  # 1980 in UTC
    ],
)
def test_parse_time_treats_placeholders_as_unknown(text: str) -> None:
    assert parse_time(text) is None


@pytest.mark.parametrize(
    "text",
    ["", "yesterday", "2024-05-06", "2024-13-01T00:00:00Z", "2024-05-06T25:00:00Z", "1714979289"],
)
def test_parse_time_refuses_what_is_not_a_time(text: str) -> None:
    assert parse_time(text) is None


@given(
    st.datetimes(
        min_value=datetime(1981, 1, 2), max_value=datetime(9998, 12, 30), timezones=st.just(UTC)
    ),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
)
def test_parse_time_reads_back_any_isoformat_time(when: datetime, minutes: int) -> None:
    shown = when.astimezone(timezone(timedelta(minutes=minutes)))
    assert parse_time(shown.isoformat()) == when
