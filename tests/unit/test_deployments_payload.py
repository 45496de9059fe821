"""The GitHub Deployments payload and status reading (pure parts of the adapter)."""

from __future__ import annotations

import json

from tagkeeper.rollback.github import make_payload, read_payload, status_from_states
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
