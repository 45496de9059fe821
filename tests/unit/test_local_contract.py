"""Contract tests of the local-engine backend against a fake engine.

The fake implements the low-level API calls the backend uses (``EngineAPI``) with the
engine's own semantics, as observed on a real Docker 20.10 engine:

- ``images(name=REPO)`` lists the images with a reference in REPO and shows only the
  references of REPO in ``RepoTags``/``RepoDigests`` (other repositories are hidden);
- the ``dangling`` filter keeps images with no tag in any repository;
- removing a reference untags; removing a repository's last tag also drops that
  repository's digest references; the image goes with its last reference; the engine
  refuses (409) to remove the last reference of an image a container uses, and 404s on
  an unknown reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import docker.errors
import pytest
import requests

from tagkeeper.errors import RegistryError, UsageError
from tagkeeper.inventory import DeleteStatus, Version
from tagkeeper.registries.local import EngineAPI, LocalEngine, engine_repository

if TYPE_CHECKING:
    from pathlib import Path

REPO = "ghcr.io/acme/app"


def _id(n: int) -> str:
    return "sha256:" + f"{n:x}".rjust(64, "0")


def _api_error(status: int, message: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(message, response=response, explanation=message)


@dataclass
class FakeImage:
    created: int
    refs: list[str]  # "repo:tag" and "repo@sha256:..." in the order they were added


def _repo_of(ref: str) -> str:
    if "@" in ref:
        return ref.partition("@")[0]
    return ref.rpartition(":")[0]


@dataclass
class FakeEngine:
    """An in-memory engine. ``calls`` records every call with its arguments."""

    images_by_id: dict[str, FakeImage] = field(default_factory=dict)
    container_list: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    down: bool = False

    def add(self, n: int, created: int, *refs: str) -> str:
        self.images_by_id[_id(n)] = FakeImage(created, list(refs))
        return _id(n)

    def run(self, name: str, image_id: str, state: str) -> None:
        self.container_list.append(
            {
                "Id": f"{len(self.container_list):064x}",
                "Names": [f"/{name}"],
                "ImageID": image_id,
                "State": state,
            }
        )

    # -- EngineAPI ---------------------------------------------------------------------

    def _check(self) -> None:
        if self.down:
            raise requests.exceptions.ConnectionError("connection refused")

    def images(self, name: str | None = None, *, filters: dict[str, Any] | None = None) -> Any:
        self._check()
        self.calls.append(("images", (name, filters)))
        filters = dict(filters or {})
        repos: list[str] = []
        if name is not None:
            repos.append(name)
        reference = filters.get("reference")
        if reference is not None:
            repos.extend(reference if isinstance(reference, list) else [reference])
        out = []
        for image_id, image in self.images_by_id.items():
            refs = image.refs
            if filters.get("dangling") and any("@" not in r for r in refs):
                continue
            if repos:
                refs = [r for r in refs if _repo_of(r) in repos]
                if not refs:
                    continue
            out.append(
                {
                    "Id": image_id,
                    "Created": image.created,
                    "RepoTags": [r for r in refs if "@" not in r] or None,
                    "RepoDigests": [r for r in refs if "@" in r] or None,
                }
            )
        return out

    def containers(self, *, all: bool = False, filters: dict[str, Any] | None = None) -> Any:
        self._check()
        self.calls.append(("containers", all))
        assert all, "the backend must list containers in every state"
        return [dict(c) for c in self.container_list]

    def inspect_image(self, image: str) -> Any:
        self._check()
        self.calls.append(("inspect", image))
        found = self.images_by_id.get(image)
        if found is None:
            raise _api_error(404, f"No such image: {image}")
        return {
            "Id": image,
            "RepoTags": [r for r in found.refs if "@" not in r],
            "RepoDigests": [r for r in found.refs if "@" in r],
        }

    def remove_image(self, image: str, force: bool = False, noprune: bool = False) -> Any:
        self._check()
        self.calls.append(("remove", image))
        assert not force, "the backend must never force a removal"
        image_id = next((i for i, f in self.images_by_id.items() if image in f.refs), None)
        if image_id is None:
            raise _api_error(404, f"No such image: {image}")
        found = self.images_by_id[image_id]
        users = [c for c in self.container_list if c["ImageID"] == image_id]
        # the engine's "single reference": at most one tag, every reference in one
        # repository; removing it would leave a container's image dangling
        single = sum("@" not in r for r in found.refs) <= 1 and (
            len({_repo_of(r) for r in found.refs}) == 1
        )
        if single and users:
            raise _api_error(
                409,
                f"conflict: unable to remove repository reference {image!r} (must force) - "
                f"container {users[0]['Id'][:12]} is using its referenced image",
            )
        found.refs.remove(image)
        records: list[dict[str, str]] = [{"Untagged": image}]
        repo = _repo_of(image)
        if "@" not in image and not any("@" not in r and _repo_of(r) == repo for r in found.refs):
            for ref in [r for r in found.refs if "@" in r and _repo_of(r) == repo]:
                found.refs.remove(ref)
                records.append({"Untagged": ref})
        if not found.refs:
            del self.images_by_id[image_id]
            records.append({"Deleted": image_id})
        return records


def test_fake_engine_implements_the_protocol() -> None:
    api: EngineAPI = FakeEngine()
    assert api.images(name=REPO) == []


@pytest.fixture
def engine() -> FakeEngine:
    e = FakeEngine()
    e.add(1, 1_700_000_000, f"{REPO}:dev-aaaaaaa", f"{REPO}:v1.0.0")
    e.add(2, 1_700_000_100, f"{REPO}:dev-bbbbbbb", "other/app:keep")
    e.add(3, 1_700_000_200, f"{REPO}:dev-ccccccc", f"{REPO}@sha256:" + "c" * 64)
    e.add(4, 1_700_000_050, "unrelated/x:1")
    # leftovers: no tag anywhere, a digest of REPO (5); a digest of REPO but tagged
    # elsewhere (6); no reference at all (7)
    e.add(5, 1_699_000_000, f"{REPO}@sha256:" + "5" * 64)
    e.add(6, 1_699_000_001, f"{REPO}@sha256:" + "6" * 64, "other/app:six")
    e.add(7, 1_699_000_002)
    return e


def test_versions_group_tags_of_this_repository_per_image(engine: FakeEngine) -> None:
    backend = LocalEngine(engine, REPO)
    versions = backend.versions()
    by_id = {v.digest: v for v in versions}
    assert set(by_id) == {_id(1), _id(2), _id(3)}
    assert by_id[_id(1)].tags == {"dev-aaaaaaa", "v1.0.0"}
    assert by_id[_id(2)].tags == {"dev-bbbbbbb"}  # not other/app:keep
    assert by_id[_id(3)].created == datetime(2023, 11, 14, 22, 16, 40, tzinfo=UTC)
    assert all(v.key == v.digest for v in versions)
    assert [v.digest for v in versions] == [_id(1), _id(2), _id(3)]  # oldest first
    assert backend.stats.by_kind == {"images": 1}


def test_dangling_adds_only_the_repositorys_untagged_leftovers(engine: FakeEngine) -> None:
    backend = LocalEngine(engine, REPO, dangling=True)
    versions = backend.versions()
    untagged = [v for v in versions if not v.tags]
    # 5 qualifies; 6 is tagged in another repository; 7 names no repository at all
    assert [v.digest for v in untagged] == [_id(5)]
    assert backend.stats.by_kind == {"images": 2}


def test_dangling_skips_the_second_listing_without_candidates() -> None:
    engine = FakeEngine()
    engine.add(1, 1, f"{REPO}:dev-aaaaaaa")
    backend = LocalEngine(engine, REPO, dangling=True)
    assert len(backend.versions()) == 1
    assert backend.stats.by_kind == {"images": 1}


def test_accepts_a_docker_client_with_an_api_attribute(engine: FakeEngine) -> None:
    @dataclass
    class Client:
        api: FakeEngine

    assert len(LocalEngine(Client(engine), REPO).versions()) == 3


def test_in_use_names_containers_in_every_state(engine: FakeEngine) -> None:
    engine.run("web", _id(1), "running")
    engine.run("old", _id(1), "exited")
    engine.run("init", _id(5), "created")
    backend = LocalEngine(engine, REPO)
    used = backend.in_use()
    assert used == {
        _id(1): "used by containers old (exited), web (running)",
        _id(5): "used by container init (created)",
    }
    assert backend.stats.by_kind == {"containers": 1}


def test_protected_maps_registry_digests_to_local_images(engine: FakeEngine) -> None:
    engine.run("web", _id(2), "paused")
    backend = LocalEngine(engine, REPO)
    backend.versions()
    protected = backend.protected(
        {
            "sha256:" + "c" * 64: "deployed to prod",  # the pulled manifest digest of image 3
            "v1.0.0": "rollback target",  # a tag: the planner matches it itself
        }
    )
    assert protected[_id(3)] == "deployed to prod"
    assert protected["v1.0.0"] == "rollback target"
    assert protected[_id(2)] == "used by container web (paused)"
    full = backend.protected({f"{REPO}@sha256:" + "c" * 64: "current"})
    assert full[_id(3)] == "current"


def test_delete_removes_every_tag_then_the_image_goes(engine: FakeEngine) -> None:
    backend = LocalEngine(engine, REPO)
    v1 = next(v for v in backend.versions() if v.digest == _id(1))
    assert backend.current_tags(v1) == v1.tags
    result = backend.delete(v1)
    assert result.status is DeleteStatus.DELETED
    assert _id(1) not in engine.images_by_id
    removes = [arg for kind, arg in engine.calls if kind == "remove"]
    assert removes == [f"{REPO}:dev-aaaaaaa", f"{REPO}:v1.0.0"]  # by name, never by id
    assert backend.current_tags(v1) is None


def test_delete_keeps_an_image_another_repository_tags(engine: FakeEngine) -> None:
    backend = LocalEngine(engine, REPO)
    v2 = next(v for v in backend.versions() if v.digest == _id(2))
    result = backend.delete(v2)
    assert result.status is DeleteStatus.DELETED
    assert "other/app:keep" in result.detail
    assert engine.images_by_id[_id(2)].refs == ["other/app:keep"]
    assert backend.current_tags(v2) == frozenset()


def test_delete_of_an_image_in_use_is_refused_and_names_the_container(
    engine: FakeEngine,
) -> None:
    backend = LocalEngine(engine, REPO)
    v3 = next(v for v in backend.versions() if v.digest == _id(3))
    engine.run("late-starter", _id(3), "running")  # started after the plan was made
    result = backend.delete(v3)
    assert result.status is DeleteStatus.REFUSED
    assert "late-starter (running)" in result.detail
    assert engine.images_by_id[_id(3)].refs == [f"{REPO}:dev-ccccccc", f"{REPO}@sha256:" + "c" * 64]


def test_delete_of_a_vanished_image_is_already_gone(engine: FakeEngine) -> None:
    backend = LocalEngine(engine, REPO)
    v1 = next(v for v in backend.versions() if v.digest == _id(1))
    del engine.images_by_id[_id(1)]
    assert backend.delete(v1).status is DeleteStatus.ALREADY_GONE


def test_delete_of_a_leftover_goes_by_its_digest_reference(engine: FakeEngine) -> None:
    backend = LocalEngine(engine, REPO, dangling=True)
    leftover = next(v for v in backend.versions() if not v.tags)
    result = backend.delete(leftover)
    assert result.status is DeleteStatus.DELETED
    assert _id(5) not in engine.images_by_id
    assert _id(6) in engine.images_by_id
    assert _id(7) in engine.images_by_id


def test_delete_of_an_untagged_version_without_reference_is_refused(
    engine: FakeEngine,
) -> None:
    backend = LocalEngine(engine, REPO)
    stray = Version(digest=_id(7), tags=frozenset(), created=datetime.now(UTC), key=_id(7))
    assert backend.delete(stray).status is DeleteStatus.REFUSED
    assert _id(7) in engine.images_by_id


def test_stats_count_calls_by_kind(engine: FakeEngine) -> None:
    backend = LocalEngine(engine, REPO)
    versions = backend.versions()
    backend.protected()
    for v in versions:
        if backend.current_tags(v) == v.tags:
            backend.delete(v)
    # one listing of each; one re-check per version (3) plus one inspection after image 2
    # is untagged but not deleted (other/app:keep holds it); one removal per tag: image 1
    # has two, images 2 and 3 one each (3's digest reference goes with its last tag).
    assert backend.stats.by_kind == {"images": 1, "containers": 1, "inspect": 4, "remove": 4}


def test_an_unreachable_engine_is_a_registry_error(engine: FakeEngine) -> None:
    engine.down = True
    with pytest.raises(RegistryError) as info:
        LocalEngine(engine, REPO).versions()
    assert "did not answer" in info.value.message
    assert info.value.hint is not None
    assert "DOCKER_HOST" in info.value.hint


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ghcr.io/acme/app", "ghcr.io/acme/app"),
        ("localhost:5000/app", "localhost:5000/app"),
        ("docker.io/library/redis", "redis"),
        ("docker.io/acme/app", "acme/app"),
        ("acme/app", "acme/app"),
    ],
)
def test_engine_repository_names(given: str, expected: str) -> None:
    assert engine_repository(given) == expected


@pytest.mark.parametrize("given", ["ghcr.io/acme/app:v1", "acme/app@sha256:" + "a" * 64])
def test_engine_repository_refuses_tags_and_digests(given: str) -> None:
    with pytest.raises(UsageError) as info:
        engine_repository(given)
    assert info.value.hint is not None
    assert "--image" in info.value.hint


# -- the prune command's --local and --dangling flags (no engine needed) ---------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    from tagkeeper.cli import main

    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dangling", "--image", "ghcr.io/acme/app"], "--dangling applies to the local"),
        (["--local", "--kind", "ghcr", "--image", "ghcr.io/acme/app"], "--local contradicts"),
        (["--local", "--image", "ghcr.io/acme/app:v1"], "names a tag or digest"),
    ],
)
def test_prune_local_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, err = _cli(capsys, "prune", *argv, "--dry-run")
    assert code == 2
    assert message in err


def test_prune_local_without_an_engine_is_a_registry_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    code, err = _cli(capsys, "prune", "--local", "--image", "acme/app", "--dry-run")
    assert code == 5
    assert "cannot reach the Docker engine" in err
    assert "DOCKER_HOST" in err


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("2026-03-01T10:00:05.900000001Z", 1772359205_900000001),
        ("2026-03-01T10:00:05.9Z", 1772359205_900000000),
        ("2026-03-01T10:00:05Z", 1772359205_000000000),
        ("2026-03-01T12:00:05.5+02:00", 1772359205_500000000),
        ("2026-03-01T10:00:05+00:00", 1772359205_000000000),
        ("0001-01-01T00:00:00Z", None),  # the engine's "never tagged here"
        ("yesterday", None),
        ("2026-03-01T10:00:05.x9Z", None),
        (1772359205, None),
        (None, None),
    ],
)
def test_exact_engine_times_are_read_to_the_nanosecond(text: object, nanos: int | None) -> None:
    from tagkeeper.registries.local import _nanoseconds

    assert _nanoseconds(text) == nanos


def test_only_images_that_tie_on_the_listed_second_are_inspected(engine: FakeEngine) -> None:
    engine.add(1, 100, f"{REPO}:dev-aaaa001")
    engine.add(2, 100, f"{REPO}:dev-aaaa002")
    engine.add(3, 200, f"{REPO}:dev-aaaa003")
    backend = LocalEngine(engine, REPO)
    backend.versions()
    inspected = sorted(arg for name, arg in engine.calls if name == "inspect")
    assert inspected == [_id(1), _id(2)]
    assert backend.stats.by_kind["inspect"] == 2
