"""``tagkeeper prune --local`` against the real Docker engine.

The scenario repository holds dev images (``dev-<sha>``, ordered by creation time; the
engine lists it in whole seconds, so the builds that must be newer come a second later)
and releases built in an order that differs from their SemVer order, so keeping "the
newest 3 releases by date" and "the highest 3 by SemVer" give different answers.
Containers in three states hold old images, and one old image is also tagged in
another repository.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from tagkeeper.cli import main
from tests.integration.local.conftest import Engine, next_second

pytestmark = pytest.mark.integration


def _sha(n: int) -> str:
    return f"{n:07x}".replace("0", "a")


@dataclass
class Scenario:
    repo: str
    other: str
    ids: dict[str, str] = field(default_factory=dict)  # name -> image id
    dev: dict[str, str] = field(default_factory=dict)  # dev tag -> name

    @property
    def all_tags(self) -> set[str]:
        return set(self.dev) | {"v2.0.0", "v1.10.1", "v1.10.0", "v1.2.0", "v1.9.0", "v0.9.0"}


def _build_scenario(engine: Engine, unique: str) -> Scenario:
    s = Scenario(repo=f"ghcr.io/{unique}/app", other=f"ghcr.io/{unique}/other")
    repo = s.repo
    # Two time slots, one second apart. Only the order across slots decides anything:
    # the newest 3 dev images (d5-d7) are all in the later slot, and so are the releases
    # that are newest by date (v1.9.0, v1.2.0) while SemVer ranks v2.0.0, v1.10.1 and
    # v1.10.0 highest. d0 also carries an old release tag, v0.9.0.
    slots: list[list[tuple[str, tuple[str, ...]]]] = [
        [
            ("r200", ("v2.0.0",)),
            ("r1101", ("v1.10.1",)),
            ("r1100", ("v1.10.0",)),
            ("d0", ("v0.9.0",)),
            ("d1", ()),
            ("d2", ()),
            ("d3", ()),
            ("d4", ()),
        ],
        [("r120", ("v1.2.0",)), ("r190", ("v1.9.0",)), ("d5", ()), ("d6", ()), ("d7", ())],
    ]
    for index, slot in enumerate(slots):
        if index:
            next_second()
        for name, extra in slot:
            refs = [f"{repo}:{tag}" for tag in extra]
            if name.startswith("d"):
                dev_tag = f"dev-{_sha(int(name[1:]) + 1)}"
                s.dev[dev_tag] = name
                refs.append(f"{repo}:{dev_tag}")
            s.ids[name] = engine.build(*refs)
    engine.tag(s.ids["d3"], f"{s.other}:keep")
    engine.run(s.ids["d1"], f"{unique}-web", start=True)  # running
    engine.run(s.ids["d2"], f"{unique}-job", start=True, wait=True)  # exited
    engine.run(s.ids["r120"], f"{unique}-new", start=False)  # created, never started
    return s


def _dev_tag(s: Scenario, name: str) -> str:
    return next(tag for tag, n in s.dev.items() if n == name)


def _expected_kept_tags(s: Scenario) -> set[str]:
    # dev: the newest 3 by time (d5, d6, d7) plus the images containers use (d1, d2);
    # release: the highest 3 by SemVer plus v1.2.0, which a created container uses.
    return {_dev_tag(s, n) for n in ("d1", "d2", "d5", "d6", "d7")} | {
        "v2.0.0",
        "v1.10.1",
        "v1.10.0",
        "v1.2.0",
    }


def _prune(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object], str]:
    capsys.readouterr()
    code = main(["prune", "--local", *args, "--format", "json"])
    out, err = capsys.readouterr()
    try:
        payload = json.loads(out)
    except json.JSONDecodeError:
        pytest.fail(f"prune printed no JSON (exit {code}); stdout={out!r} stderr={err!r}")
    assert isinstance(payload, dict)
    return code, payload, err


def _plan_of(payload: dict[str, object]) -> dict[str, object]:
    """The one image's entry of prune's JSON (``{"images": [{keep, delete, ...}]}``)."""
    images = payload["images"]
    assert isinstance(images, list), payload
    assert len(images) == 1, payload
    entry = images[0]
    assert isinstance(entry, dict)
    assert entry["error"] is None, entry["error"]
    return entry


def _digests(plan: dict[str, object], key: str) -> set[str]:
    items = plan[key]
    assert isinstance(items, list)
    return {str(item["digest"]) for item in items}


@pytest.fixture
def scenario(engine: Engine, unique: str) -> Scenario:
    return _build_scenario(engine, unique)


def test_prune_keeps_newest_dev_top_releases_and_images_in_use(
    engine: Engine, scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    s = scenario
    code, payload, err = _prune(capsys, "--image", s.repo, "--keep", "3", "--min-age", "0", "--yes")
    assert code == 0, err
    assert engine.repo_tags(s.repo) == _expected_kept_tags(s)
    # deleted images are gone from the engine, tags and all
    for name in ("d0", "d4", "r190"):
        assert engine.tags_of(s.ids[name]) is None, name
    # d3 lost its dev tag but the other repository's tag keeps the image
    assert engine.tags_of(s.ids["d3"]) == [f"{s.other}:keep"]
    # every image a container uses is still there
    for name in ("d1", "d2", "r120"):
        assert engine.tags_of(s.ids[name]), name
    # the plan says why the in-use images were kept
    kept = _plan_of(payload)["keep"]
    assert isinstance(kept, list)
    reasons = {str(item["digest"]): str(item["reason"]) for item in kept}
    assert "web" in reasons[s.ids["d1"]]
    assert "running" in reasons[s.ids["d1"]]
    assert "exited" in reasons[s.ids["d2"]]
    assert "created" in reasons[s.ids["r120"]]

    # a rerun converges: nothing left to delete
    code, payload, err = _prune(capsys, "--image", s.repo, "--keep", "3", "--min-age", "0", "--yes")
    assert code == 0, err
    assert _digests(_plan_of(payload), "delete") == set()
    assert engine.repo_tags(s.repo) == _expected_kept_tags(s)


def test_dry_run_removes_nothing_and_prints_the_plan_a_real_run_applies(
    engine: Engine, scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    s = scenario
    before = engine.repo_tags(s.repo)
    assert before == s.all_tags
    code, dry, err = _prune(capsys, "--image", s.repo, "--keep", "3", "--min-age", "0", "--dry-run")
    assert code == 0, err
    assert engine.repo_tags(s.repo) == before
    assert engine.tags_of(s.ids["d3"]) is not None
    planned = _digests(_plan_of(dry), "delete")
    assert planned == {s.ids[n] for n in ("d0", "d3", "d4", "r190")}

    code, real, err = _prune(capsys, "--image", s.repo, "--keep", "3", "--min-age", "0", "--yes")
    assert code == 0, err
    assert _plan_of(real)["delete"] == _plan_of(dry)["delete"]
    assert _plan_of(real)["keep"] == _plan_of(dry)["keep"]


def test_dangling_removes_only_the_repositorys_untagged_leftovers(
    engine: Engine, registry: str, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = f"{registry}/{unique}/app"
    other = f"{registry}/{unique}/other"
    # A deploy host pulls REPO:v1.0.0, then the tag moves to a new image: the old one
    # stays behind with no tag and a REPO@sha256 reference. push records the same.
    leftover = engine.build(f"{repo}:v1.0.0")
    engine.push(f"{repo}:v1.0.0")
    in_use = engine.build(f"{repo}:v1.1.0")
    engine.push(f"{repo}:v1.1.0")
    foreign = engine.build(f"{other}:v1.0.0")
    engine.push(f"{other}:v1.0.0")
    no_reference = engine.build()
    engine.build(f"{repo}:v1.0.0")  # moves v1.0.0 off `leftover`
    engine.build(f"{repo}:v1.1.0")
    engine.build(f"{other}:v1.0.0")
    engine.run(in_use, f"{unique}-old", start=False)
    for image_id in (leftover, in_use, foreign):
        assert engine.tags_of(image_id) == []  # untagged: the setup is what we meant
    # repo references remain on the leftovers
    assert engine.client.api.inspect_image(leftover)["RepoDigests"][0].startswith(repo + "@")

    args = ("--image", repo, "--keep", "3", "--min-age", "0", "--yes")
    code, payload, err = _prune(capsys, *args)
    assert code == 0, err
    assert engine.tags_of(leftover) == []  # without --dangling, untagged images stay

    code, payload, err = _prune(capsys, *args, "--dangling")
    assert code == 0, err
    assert engine.tags_of(leftover) is None
    assert engine.tags_of(in_use) == []  # a container uses it
    assert engine.tags_of(foreign) == []  # another repository's leftover
    assert engine.tags_of(no_reference) == []  # names no repository at all
    assert engine.repo_tags(repo) == {"v1.0.0", "v1.1.0"}
    assert _digests(_plan_of(payload), "delete") == {leftover}
