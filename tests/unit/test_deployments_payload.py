"""The GitHub Deployments payload and status reading (pure parts of the adapter)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.refs import SHA256_DIGEST_RE
from tagkeeper.rollback.github import (
    RefusedPayload,
    make_payload,
    parse_payload,
    read_payload,
    status_from_states,
)
from tagkeeper.rollback.resolve import DeployStatus

IMAGE = "ghcr.io/o/app"
D = "sha256:" + "d" * 64


def test_payload_round_trips_as_object_and_as_string() -> None:
    payload = make_payload(IMAGE, "v1.2.3", D, rollback=True, ci_run_url="https://ci/1")
    for form in (payload, json.dumps(payload)):
        image = read_payload(form)
        assert image is not None
        assert (image.repository, image.tag, image.digest) == (IMAGE, "v1.2.3", D)
        assert image.rollback is True
        assert image.ci_run_url == "https://ci/1"


def test_foreign_payloads() -> None:
    other = read_payload({"image": f"{IMAGE}:v2.0.0@{D}"})
    assert other is not None
    assert (other.tag, other.digest) == ("v2.0.0", D)
    assert read_payload({"image": IMAGE}) is None  # no tag anywhere
    assert read_payload({"image": "Not A Ref!"}) is None
    assert read_payload("{broken") is None
    assert read_payload("") is None
    assert read_payload(["image"]) is None
    assert read_payload({"tag": "v1"}) is None


def test_status_history_newest_first_ignoring_inactive() -> None:
    assert status_from_states([("inactive", ""), ("success", "")]) is DeployStatus.SUCCEEDED
    assert status_from_states([("failure", ""), ("success", "")]) is DeployStatus.FAILED
    assert status_from_states([("error", "")]) is DeployStatus.FAILED
    assert (
        status_from_states([("failure", "rolled back by tagkeeper"), ("success", "")])
        is DeployStatus.ROLLED_BACK
    )
    assert status_from_states([("in_progress", "")]) is DeployStatus.STARTED
    assert status_from_states([("inactive", "")]) is DeployStatus.STARTED
    assert status_from_states([]) is DeployStatus.STARTED


def test_a_digest_or_tag_that_cannot_be_trusted_refuses_the_payload() -> None:
    good = make_payload(IMAGE, "v1.2.3", D)
    assert read_payload(good) is not None
    assert read_payload({**good, "digest": None}) is not None  # no digest recorded: fine
    assert read_payload({**good, "digest": ""}) is not None
    for bad in ("sha256:" + "D" * 64, "sha256:" + "d" * 63, D + "\n", " " + D, "md5:abc", 7,
                ["x"], {"x": 1}, True):  # fmt: skip
        refused = parse_payload({**good, "digest": bad})
        assert isinstance(refused, RefusedPayload), bad
        assert refused.repository == IMAGE
        assert "digest" in refused.problem
        assert read_payload({**good, "digest": bad}) is None
    for tag in ("v1\n", "-v1", "a" * 129, 5, ["v1"], "v1 v2"):
        refused = parse_payload({**good, "tag": tag})
        assert isinstance(refused, RefusedPayload), tag
        assert "tag" in refused.problem
    assert isinstance(parse_payload({"image": f"{IMAGE}:v1@sha512:{'a' * 128}"}), RefusedPayload)


@given(st.text(max_size=80))
def test_an_accepted_digest_always_has_the_sha256_form(digest: str) -> None:
    image = read_payload({**make_payload(IMAGE, "v1.2.3", None), "digest": digest})
    if image is not None and image.digest is not None:
        assert SHA256_DIGEST_RE.fullmatch(image.digest)
        assert image.digest == digest


def test_a_ci_run_url_that_is_not_a_plain_url_is_dropped() -> None:
    for url, kept in (("https://ci/1", True), ("https://ci/1\n::error::x", False),
                      ("javascript:alert(1)", False), ("http://ci/ a", False)):  # fmt: skip
        image = read_payload(make_payload(IMAGE, "v1", D, ci_run_url=url))
        assert image is not None
        assert (image.ci_run_url == url) is kept
