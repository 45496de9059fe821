"""Contract tests of the OCI distribution backend against a fake registry over pytest-httpx.

The fake speaks the distribution API the way distribution 2.8 does (tags list with
``Link`` pagination, manifest HEAD/GET by tag or digest with ``Docker-Content-Digest``,
blobs, DELETE by digest removing every tag of the manifest), with switches for the
behaviours of other registries: auth challenges, a referrers API, deletes disabled.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.errors import AuthError, RateLimited, RegistryError, UsageError
from tagkeeper.inventory import DeleteStatus, ManifestMissing, ManifestUnreadable, Version
from tagkeeper.registries.credentials import Credentials
from tagkeeper.registries.oci import NO_DIGEST, OciBackend, parse_challenge, parse_time
from tagkeeper.retention.planner import Policy
from tagkeeper.retention.times import time_needed
from tagkeeper.secret import Secret
from tagkeeper.transport import RetryPolicy
from tests.emulators import images as im
from tests.unit.oci_fake import HOST, FakeRegistry, serve

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from pytest_httpx import HTTPXMock

NOW = datetime(2026, 1, 1, tzinfo=UTC)
JAN = datetime(2024, 1, 10, tzinfo=UTC)
FEB = datetime(2024, 2, 10, tzinfo=UTC)


@pytest.fixture
def registry(httpx_mock: HTTPXMock) -> FakeRegistry:
    return serve(httpx_mock)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


def backend(client: httpx.Client, **kw: object) -> OciBackend:
    kw.setdefault("retry", RetryPolicy(attempts=2, base=0.0))
    kw.setdefault("sleep", lambda _s: None)
    return OciBackend(f"{HOST}/app", client, now=NOW, workers=4, **kw)  # type: ignore[arg-type]


def by_tag(versions: Sequence[Version], tag: str) -> Version:
    return next(v for v in versions if tag in v.tags)


# ------------------------------------------------------------------- listing


def test_tags_are_paginated_by_link_and_grouped_by_digest(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    registry.page = 2
    shared = im.image(created=JAN, label="shared")
    registry.push(shared, "dev-aaaa", "v1.0.0", "latest")
    for i in range(4):
        registry.push(im.image(created=FEB, label=str(i)), f"dev-{i:04d}")
    versions = list(backend(client).versions())
    assert sorted(t for v in versions for t in v.tags) == sorted(registry.tags)
    assert by_tag(versions, "v1.0.0").tags == {"dev-aaaa", "v1.0.0", "latest"}
    assert len(versions) == 5  # 7 tags, 5 digests
    lists = [url for method, url in registry.log if "tags/list" in url]
    assert len(lists) == 4  # 7 tags in pages of 2
    assert "last=" in lists[1]
    assert "n=2" in lists[1]


def test_versions_carry_digest_media_type_and_key(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    multi = im.multiarch(created=JAN, attest=False)
    registry.push(multi, "v2.0.0")
    v = by_tag(backend(client).versions(), "v2.0.0")
    assert v.digest == multi.digest
    assert v.key == multi.digest
    assert v.media_type == im.OCI_INDEX


def test_index_children_are_listed_untagged_with_the_index_time(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    multi = im.multiarch(("linux/amd64", "linux/arm64"), created=FEB)
    registry.push(multi, "v2.0.0")
    versions = backend(client).versions()
    untagged = {v.digest: v for v in versions if not v.tags}
    assert set(untagged) == {c.digest for c in multi.children}  # 2 images + 2 attestations
    assert all(v.created == FEB for v in untagged.values())


def test_a_missing_repository_is_a_registry_error_not_an_empty_one(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    b = OciBackend(f"{HOST}/other", client, now=NOW)
    with pytest.raises(RegistryError, match=f"{HOST}/other: the registry has no repository"):
        b.versions()


def test_image_with_a_tag_is_a_usage_error(client: httpx.Client) -> None:
    with pytest.raises(UsageError):
        OciBackend(f"{HOST}/app:v1", client)
    with pytest.raises(UsageError):
        OciBackend("app", client)


# ------------------------------------------------------------------- times


def test_annotation_time_needs_no_blob_read(registry: FakeRegistry, client: httpx.Client) -> None:
    base = im.image(created=JAN, label="ann")
    body = base.json()
    body["annotations"] = {"org.opencontainers.image.created": "2024-03-03T03:03:03.123456789Z"}
    annotated = im.Built(json.dumps(body).encode(), im.OCI_MANIFEST, base.blobs)
    registry.push(annotated, "dev-beef")
    b = backend(client)
    v = by_tag(b.versions(), "dev-beef")
    assert v.created == datetime(2024, 3, 3, 3, 3, 3, 123456, tzinfo=UTC)
    assert "blob-get" not in b.stats.by_kind


def test_config_time_and_label_when_created_is_a_placeholder(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    registry.push(im.image(created=JAN, label="cfg"), "dev-0001")
    epoch = im.image(created=datetime(1970, 1, 1, tzinfo=UTC), label="repro")
    config = json.loads(epoch.blobs[0].data)
    config["config"]["Labels"]["org.opencontainers.image.created"] = "2024-02-10T00:00:00+00:00"
    new_config = im.Blob(im.OCI_CONFIG, json.dumps(config).encode())
    body = epoch.json()
    body["config"] = new_config.descriptor()
    relabelled = im.Built(
        json.dumps(body).encode(), im.OCI_MANIFEST, (new_config, *epoch.blobs[1:])
    )
    registry.push(relabelled, "dev-0002")
    b = backend(client)
    versions = b.versions()
    assert by_tag(versions, "dev-0001").created == JAN
    assert by_tag(versions, "dev-0002").created == FEB
    assert b.warnings == ()


def test_index_time_is_the_newest_platform_image(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    old = im.image("linux/amd64", created=JAN, label="x")
    new = im.image("linux/arm64", created=FEB, label="x")
    registry.push(im.index([old, new, im.attestation(new)]), "dev-abcd")
    assert by_tag(backend(client).versions(), "dev-abcd").created == FEB


def test_unknown_time_counts_as_now_and_is_reported(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    epoch_only = im.image(created=datetime(1970, 1, 1, tzinfo=UTC), label="ko")
    registry.push(epoch_only, "dev-c0de")
    b = backend(client)
    v = by_tag(b.versions(), "dev-c0de")
    assert v.created == NOW
    assert len(b.warnings) == 1
    assert epoch_only.digest[:19] in b.warnings[0]
    assert "dev-c0de" in b.warnings[0]
    assert "placeholder" in b.warnings[0]


def test_cosign_signature_takes_its_subject_time(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    subject = im.image(created=JAN, label="signed")
    registry.push(subject, "dev-5151")
    registry.push(im.cosign_signature(subject), im.cosign_tag(subject.digest))
    b = backend(client)
    sig = by_tag(b.versions(), im.cosign_tag(subject.digest))
    assert sig.created == JAN
    assert b.warnings == ()


def test_time_needed_skips_reads_that_cannot_matter(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    registry.push(im.image(created=JAN, label="r"), "v1.0.0")
    registry.push(im.image(created=FEB, label="d"), "dev-aaaa")
    policy = Policy.uniform(3, min_age=datetime.min - datetime.min)  # no grace period
    b = backend(client, time_needed=time_needed(policy))
    versions = b.versions()
    assert by_tag(versions, "dev-aaaa").created == FEB
    assert by_tag(versions, "v1.0.0").created == NOW  # not read: cannot change a decision
    assert b.stats.by_kind["blob-get"] == 1


def test_time_needed_predicate() -> None:
    from datetime import timedelta

    grace = time_needed(Policy.uniform(3, protect=("stable-*",)))
    none = time_needed(Policy.uniform(3, min_age=timedelta(0)))
    assert grace(frozenset({"dev-abcd"}))
    assert none(frozenset({"pr-12"}))
    assert grace(frozenset({"v1.2.3"}))  # the grace period may keep an old release
    assert not none(frozenset({"v1.2.3"}))  # ranked by SemVer alone
    assert not grace(frozenset({"latest"}))  # unmatched tags are kept anyway
    assert not grace(frozenset({"v1.0.0", "stable-1"}))  # protected anyway
    assert grace(frozenset({"sha256-" + "a" * 64 + ".sig"}))
    assert time_needed(Policy.uniform(3, unmatched="delete"))(frozenset({"latest"}))


def test_parse_time() -> None:
    assert parse_time("2024-05-06T07:08:09.123456789Z") == datetime(
        2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC
    )
    assert parse_time("2024-05-06T09:08:09+02:00") == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert parse_time("1970-01-01T00:00:00Z") is None
    assert parse_time("1980-01-01T00:00:01Z") is None  # buildpacks' reproducible time
    assert parse_time("yesterday") is None


# ------------------------------------------------------------------- reader


def test_manifest_children_and_subject(registry: FakeRegistry, client: httpx.Client) -> None:
    img = im.image(created=JAN, label="s")
    multi = im.index([img, im.attestation(img)])
    ref = im.referrer(img)
    registry.push(multi, "v1.0.0")
    registry.push(ref)
    b = backend(client)
    info = b.reader.manifest(multi.digest)
    assert info.children == tuple(c.digest for c in multi.children)
    assert info.media_type == im.OCI_INDEX
    assert b.reader.manifest(ref.digest).subject == img.digest
    before = b.stats.by_kind["manifest-get"]
    b.reader.manifest(multi.digest)
    assert b.stats.by_kind["manifest-get"] == before  # each digest read once


def test_manifest_with_wrong_bytes_is_unreadable(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    img = im.image(created=JAN)
    registry.push(img, "v1")
    impostor = im.image(created=FEB)
    registry.manifests[img.digest] = impostor  # serves other bytes under the digest
    with pytest.raises(ManifestUnreadable, match="another digest") as caught:
        backend(client).reader.manifest(img.digest)
    assert not isinstance(caught.value, ManifestMissing)


def test_a_manifest_the_registry_does_not_have_is_missing(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    b = backend(client)
    gone = im.image(created=JAN, label="gone").digest
    for _ in range(2):  # the answer is remembered, as missing
        with pytest.raises(ManifestMissing, match="not found in the registry"):
            b.reader.manifest(gone)
    assert b.stats.by_kind["manifest-get"] == 1


def test_referrers_api_when_the_registry_has_it(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    registry.referrers_api = True
    img = im.image(created=JAN)
    registry.push(img, "v1")
    ref = im.referrer(img)
    registry.push(ref)
    assert list(backend(client).reader.referrers(img.digest)) == [ref.digest]


def test_referrers_fall_back_to_the_tag_schema_once(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    img = im.image(created=JAN)
    other = im.image(created=FEB)
    registry.push(img, "v1")
    registry.push(other, "v2")
    ref = im.referrer(img)
    registry.push(im.index([ref]), "sha256-" + img.digest.split(":")[1])
    b = backend(client)
    b.versions()
    assert list(b.reader.referrers(img.digest)) == [ref.digest]
    assert list(b.reader.referrers(other.digest)) == []
    assert b.stats.by_kind["referrers"] == 1  # 404 once: the API is not asked again


# ------------------------------------------------------------------- transport


def test_loopback_falls_back_to_http(registry: FakeRegistry, client: httpx.Client) -> None:
    registry.push(im.image(created=JAN), "v1")
    backend(client).versions()
    assert all(url.startswith("http://") for _, url in registry.log)


def test_other_hosts_need_insecure_for_http(httpx_mock: HTTPXMock, client: httpx.Client) -> None:
    httpx_mock.add_exception(
        httpx.ConnectError("refused"), url="https://registry.example.com/v2/", is_reusable=True
    )
    b = OciBackend(
        "registry.example.com/app", client, retry=RetryPolicy(attempts=1), sleep=lambda _s: None
    )
    with pytest.raises(RegistryError) as caught:
        b.versions()
    assert "--insecure" in (caught.value.hint or "")
    assert not [r for r in httpx_mock.get_requests() if r.url.scheme == "http"]


def test_insecure_allows_http_for_other_hosts(httpx_mock: HTTPXMock, client: httpx.Client) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url="https://registry.example.com/v2/")
    httpx_mock.add_response(url="http://registry.example.com/v2/")
    httpx_mock.add_response(
        url="http://registry.example.com/v2/app/tags/list?n=1000", json={"name": "app", "tags": []}
    )
    b = OciBackend("registry.example.com/app", client, insecure=True)
    assert list(b.versions()) == []


# ------------------------------------------------------------------- auth


def test_bearer_token_flow_with_basic_credentials(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    registry.auth = "bearer"
    for i in range(3):
        registry.push(im.image(created=JAN, label=str(i)), f"dev-{i:04d}")
    creds = Credentials("alice", Secret("pw"), source="test")
    b = backend(client, credentials=creds)
    assert len(b.versions()) == 3
    assert len(registry.token_requests) == 1  # cached for the pull scope
    query = registry.token_requests[0]
    assert query["service"] == ["fake-registry"]
    assert query["scope"] == ["repository:app:pull"]
    result = b.delete(by_tag(b.versions(), "dev-0001"))
    assert result.status is DeleteStatus.DELETED
    assert registry.token_requests[-1]["scope"] == ["repository:app:delete"]
    assert b.stats.by_kind["token"] == 2


def test_identity_token_is_exchanged_for_an_access_token(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    registry.auth = "bearer"
    registry.push(im.image(created=JAN), "v1")
    creds = Credentials("<token>", Secret("refresh-XYZ"), identity_token=True, source="test")
    assert [v.tags for v in backend(client, credentials=creds).versions()] == [{"v1"}]
    form = registry.token_requests[0]
    assert form["scope"] == ["repository:app:pull"]
    assert form["service"] == ["fake-registry"]


def test_bearer_refused_is_an_auth_error_without_the_secret(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    registry.auth = "bearer"
    registry.push(im.image(created=JAN), "v1")
    creds = Credentials("alice", Secret("wrong-PASSWORD"), source="test")
    with pytest.raises(AuthError) as caught:
        backend(client, credentials=creds).versions()
    assert "wrong-PASSWORD" not in caught.value.diagnostics()
    assert "refused" in caught.value.message


def test_credentials_never_go_to_a_token_service_on_another_host(
    registry: FakeRegistry, client: httpx.Client, httpx_mock: HTTPXMock
) -> None:
    registry.auth = "bearer"
    registry.realm = "https://auth.elsewhere.example/token"  # not the registry's host
    registry.push(im.image(created=JAN), "v1")
    creds = Credentials("alice", Secret("pw-SECRET"), source="test")
    with pytest.raises(RegistryError, match="another host") as caught:
        backend(client, credentials=creds).versions()
    assert "pw-SECRET" not in caught.value.diagnostics()
    assert registry.token_requests == []  # nothing was sent there
    assert all(r.url.host != "auth.elsewhere.example" for r in httpx_mock.get_requests())


def test_anonymous_access_may_use_a_token_service_on_another_host(
    registry: FakeRegistry, client: httpx.Client, httpx_mock: HTTPXMock
) -> None:
    registry.auth = "bearer"
    registry.realm = "https://auth.elsewhere.example/token"
    registry.push(im.image(created=JAN), "v1")

    def anonymous_token(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        return httpx.Response(200, json={"token": registry.token_value})

    httpx_mock.add_callback(anonymous_token, url=re.compile(r"https://auth\.elsewhere\.example/"))
    assert [v.tags for v in backend(client).versions()] == [{"v1"}]


def test_a_documented_token_service_gets_the_credentials(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    # Docker Hub's registry sends clients to auth.docker.io: documented, so trusted
    httpx_mock.add_response(
        url="https://registry-1.docker.io/v2/",
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="https://auth.docker.io/token",'
                 'service="registry.docker.io"'},
    )  # fmt: skip
    httpx_mock.add_response(
        url="https://auth.docker.io/token?scope=repository%3Aacme%2Fapp%3Apull"
        "&service=registry.docker.io",
        json={"token": "hub-token"},
        match_headers={"Authorization": "Basic " + base64.b64encode(b"alice:pw").decode()},
    )
    httpx_mock.add_response(
        url="https://registry-1.docker.io/v2/acme/app/tags/list?n=1000",
        json={"name": "acme/app", "tags": []},
        match_headers={"Authorization": "Bearer hub-token"},
    )
    b = OciBackend(
        "registry-1.docker.io/acme/app",
        client,
        credentials=Credentials("alice", Secret("pw"), source="test"),
    )
    assert list(b.versions()) == []


def test_basic_auth(registry: FakeRegistry, client: httpx.Client) -> None:
    registry.auth = "basic"
    registry.push(im.image(created=JAN), "v1")
    good = backend(client, credentials=Credentials("alice", Secret("pw"), source="test"))
    assert [v.tags for v in good.versions()] == [{"v1"}]
    with pytest.raises(AuthError) as caught:
        backend(client).versions()
    assert "anonymous" in caught.value.message
    bad = backend(client, credentials=Credentials("alice", Secret("nope-XYZ"), source="test"))
    with pytest.raises(AuthError) as caught2:
        bad.versions()
    assert "nope-XYZ" not in caught2.value.diagnostics()


def test_parse_challenge() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://a.example/token",service="reg",scope="repository:x/y:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://a.example/token",
        "service": "reg",
        "scope": "repository:x/y:pull,push",
    }


# ------------------------------------------------------------------- deletes


def test_deletes_disabled_refuse_before_anything_is_deleted(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    registry.deletes_enabled = False
    img = im.image(created=JAN)
    registry.push(img, "dev-0001")
    b = backend(client)
    v = by_tag(b.versions(), "dev-0001")
    with pytest.raises(RegistryError) as caught:
        b.delete(v)
    assert "storage.delete.enabled: true" in (caught.value.hint or "")
    deletes = [url for method, url in registry.log if method == "DELETE"]
    assert deletes == [f"http://{HOST}/v2/app/manifests/{NO_DIGEST}"]
    assert registry.tags == {"dev-0001": img.digest}


def test_delete_statuses(registry: FakeRegistry, client: httpx.Client) -> None:
    img = im.image(created=JAN)
    registry.push(img, "dev-0001", "dev-0002")
    b = backend(client)
    v = by_tag(b.versions(), "dev-0001")
    assert b.delete(v).status is DeleteStatus.DELETED
    assert registry.tags == {}  # every tag of the digest went with it
    assert b.delete(v).status is DeleteStatus.ALREADY_GONE
    registry.push(img, "dev-0001")
    registry.delete_status = 500
    assert b.delete(v).status is DeleteStatus.FAILED
    registry.delete_status = 400
    assert b.delete(v).status is DeleteStatus.REFUSED
    assert b.stats.by_kind["delete-probe"] == 1


def test_rate_limited_deletes_stop_the_run(registry: FakeRegistry, client: httpx.Client) -> None:
    registry.push(im.image(created=JAN), "dev-0001")
    registry.delete_status = 429
    b = backend(client)
    with pytest.raises(RateLimited):
        b.delete(by_tag(b.versions(), "dev-0001"))


def test_current_tags_sees_moved_and_new_tags(registry: FakeRegistry, client: httpx.Client) -> None:
    a = im.image(created=JAN, label="a")
    c = im.image(created=FEB, label="c")
    registry.push(a, "dev-0001", "dev-0002")
    registry.push(c, "dev-0003")
    b = backend(client)
    va = by_tag(b.versions(), "dev-0001")
    assert b.current_tags(va) == frozenset({"dev-0001", "dev-0002"})
    registry.tags["dev-0002"] = c.digest  # moved away
    registry.tags["hotfix"] = a.digest  # a new tag on the same image
    b._relisted_at = float("-inf")  # as if the re-list interval had passed
    assert b.current_tags(va) == frozenset({"dev-0001", "hotfix"})
    del registry.manifests[a.digest]
    registry.tags = {t: d for t, d in registry.tags.items() if d != a.digest}
    b._relisted_at = float("-inf")
    assert b.current_tags(va) is None


# ------------------------------------------- re-checks before deleting, and their cost


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def heads_of_tags(registry: FakeRegistry, since: int) -> list[str]:
    """The tags (not digests) read with HEAD since ``registry.log[since]``."""
    out = []
    for method, url in registry.log[since:]:
        reference = url.rsplit("/", 1)[1]
        if method == "HEAD" and "/manifests/" in url and not reference.startswith("sha256:"):
            out.append(reference)
    return sorted(out)


def lists_since(registry: FakeRegistry, since: int) -> int:
    return sum(1 for _, url in registry.log[since:] if "tags/list" in url)


@dataclass
class Rollback:
    """``v1.0.0`` (to delete), ``v2.0.0`` + ``stable`` (kept), and 3 dev images (to delete)."""

    old: im.Built
    new: im.Built
    dev: list[im.Built]


def rollback_repo(registry: FakeRegistry) -> Rollback:
    old = im.image(created=JAN, label="v1")
    new = im.image(created=FEB, label="v2")
    registry.push(old, "v1.0.0")
    registry.push(new, "v2.0.0", "stable")
    dev = [im.image(created=JAN, label=f"dev{i}") for i in range(3)]
    for i, built in enumerate(dev):
        registry.push(built, f"dev-{i:04d}")
    return Rollback(old, new, dev)


def doomed(versions: Sequence[Version]) -> list[Version]:
    return [v for v in versions if "stable" not in v.tags]


def test_a_kept_tag_moved_onto_a_digest_being_deleted_is_seen(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    repo = rollback_repo(registry)
    b = backend(client)
    versions = b.versions()
    b.expect_deletes(doomed(versions))
    v1 = by_tag(versions, "v1.0.0")
    assert b.current_tags(v1) == frozenset({"v1.0.0"})  # nothing moved yet: delete it
    registry.tags["stable"] = repo.old.digest  # a rollback re-points stable at v1.0.0
    assert b.current_tags(v1) == frozenset({"v1.0.0", "stable"})  # changed: skipped


def test_without_expected_deletes_every_tag_is_read_and_the_move_is_seen(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    repo = rollback_repo(registry)
    b = backend(client)
    v1 = by_tag(b.versions(), "v1.0.0")
    registry.tags["dev-0001"] = repo.old.digest  # any tag at all, moved onto it
    start = len(registry.log)
    assert b.current_tags(v1) == frozenset({"v1.0.0", "dev-0001"})
    assert heads_of_tags(registry, start) == sorted(registry.tags)  # all 6 tags, once each


def test_request_budget_per_delete_with_expected_deletes(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    """Per delete: HEAD own + kept + new tags; the listing at most once per 2 s; no more."""
    registry.page = 2  # the 6 tags are listed in 3 pages
    rollback_repo(registry)
    clock = Clock()
    b = backend(client, clock=clock)
    versions = b.versions()
    b.expect_deletes(doomed(versions))
    v1 = by_tag(versions, "v1.0.0")
    dev0 = by_tag(versions, "dev-0000")

    start = len(registry.log)
    b.current_tags(v1)  # the first check always re-lists (the plan may be minutes old)
    assert lists_since(registry, start) == 3
    assert heads_of_tags(registry, start) == ["stable", "v1.0.0", "v2.0.0"]
    assert len(registry.log) - start == 3 + 3  # nothing else: no digest HEAD, no GET

    start = len(registry.log)
    clock.now += 1.9  # within the re-list interval: no listing, the same HEADs
    assert b.delete(v1).status is DeleteStatus.DELETED
    b.current_tags(dev0)
    assert lists_since(registry, start) == 0
    assert heads_of_tags(registry, start) == ["dev-0000", "stable", "v2.0.0"]  # v1.0.0 settled

    registry.tags["hotfix"] = registry.tags["v2.0.0"]  # a new tag elsewhere
    start = len(registry.log)
    clock.now += 2.0
    b.current_tags(dev0)
    assert lists_since(registry, start) == 3  # 6 tags, pages of 2
    assert heads_of_tags(registry, start) == ["dev-0000", "hotfix", "stable", "v2.0.0"]


def test_a_planned_tag_moved_onto_another_planned_digest_is_not_read(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    repo = rollback_repo(registry)
    b = backend(client)
    versions = b.versions()
    b.expect_deletes(doomed(versions))
    dev0 = by_tag(versions, "dev-0000")
    registry.tags["dev-0001"] = repo.dev[0].digest  # both go anyway
    start = len(registry.log)
    assert b.current_tags(dev0) == frozenset({"dev-0000"})
    assert "dev-0001" not in heads_of_tags(registry, start)


def test_a_planned_tag_whose_image_stays_is_read_again(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    repo = rollback_repo(registry)
    b = backend(client)
    versions = b.versions()
    b.expect_deletes(doomed(versions))
    registry.delete_status = 400
    assert b.delete(by_tag(versions, "dev-0001")).status is DeleteStatus.REFUSED
    registry.delete_status = None
    registry.tags["dev-0001"] = repo.dev[0].digest  # still live: deleting dev-0000 breaks it
    assert b.current_tags(by_tag(versions, "dev-0000")) == frozenset({"dev-0000", "dev-0001"})


def test_a_new_index_reaching_an_untagged_digest_stops_its_delete(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    amd = im.image("linux/amd64", created=JAN, label="p")
    arm = im.image("linux/arm64", created=JAN, label="p")
    registry.push(im.index([amd, arm]), "v1.0.0")
    b = backend(client)
    versions = b.versions()
    b.expect_deletes(versions)
    child = next(v for v in versions if v.digest == amd.digest)
    assert b.current_tags(child) == frozenset()
    newer = im.index([amd])
    registry.push(newer, "v1.0.1")  # a new image reuses the platform manifest
    b._relisted_at = float("-inf")  # as if the re-list interval had passed
    start = len(registry.log)
    assert b.current_tags(child) == frozenset({"v1.0.1"})
    gets = [url for method, url in registry.log[start:] if method == "GET" and "/manifests/" in url]
    assert gets == [f"http://{HOST}/v2/app/manifests/{newer.digest}"]  # not its children
    start = len(registry.log)
    assert b.current_tags(child) == frozenset({"v1.0.1"})
    assert not [m for m, url in registry.log[start:] if m == "GET" and "/manifests/" in url]


def test_rate_limit_retry_after_as_an_http_date(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    from email.utils import formatdate
    from time import time

    registry.push(im.image(created=JAN), "dev-0001")
    registry.delete_status = 429
    registry.delete_headers = {"Retry-After": formatdate(time() + 30, usegmt=True)}
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        registry.delete_status = None  # the limit has passed

    b = backend(client, sleep=sleep)
    assert b.delete(by_tag(b.versions(), "dev-0001")).status is DeleteStatus.DELETED
    assert len(waits) == 1
    assert 25 < waits[0] <= 31


# ------------------------------------------------------------------- one client, one cache


def test_a_replan_during_the_apply_reads_no_manifest_twice(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    from tagkeeper.retention.runner import apply_planned, plan_image

    old = im.multiarch(created=JAN, label="old")
    registry.push(old, "v1.0.0")
    registry.push(im.image(created=JAN, label="older"), "v0.9.0")
    registry.push(im.image(created=FEB, label="new"), "v2.0.0")
    registry.delete_status = 400  # every delete refused: each refusal plans again
    b = backend(client)
    planned = plan_image(b, Policy(keep_release=1, min_age=timedelta(0)), now=NOW)
    assert old.digest in {d.version.digest for d in planned.plan.delete}
    report = apply_planned(planned)
    assert report.replanned is not None  # planned again, through the same reader
    gets = [url for method, url in registry.log if method == "GET" and "/manifests/" in url]
    assert gets
    assert len(gets) == len(set(gets))


def test_resolving_a_tag_costs_one_head_and_no_listing(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    img = im.image(created=JAN)
    registry.push(img, "v1.2.3")
    b = backend(client)
    assert b.resolve_tag("v1.2.3") == img.digest
    assert b.resolve_tag("v9.9.9") is None
    assert [m for m, url in registry.log if "/v2/app/" in url] == ["HEAD", "HEAD"]
    assert "tags-list" not in b.stats.by_kind


def test_the_disk_cache_serves_oci_manifests_on_the_next_run(
    registry: FakeRegistry, client: httpx.Client, tmp_path: Path
) -> None:
    multi = im.multiarch(created=JAN, attest=False)
    registry.push(multi, "v1")
    backend(client, manifest_cache=tmp_path).reader.manifest(multi.digest)
    again = backend(client, manifest_cache=tmp_path)
    assert again.reader.manifest(multi.digest).children == tuple(
        c.digest for c in multi.children
    )
    assert "manifest-get" not in again.stats.by_kind


def test_a_new_tag_on_an_image_keeps_its_signature_from_being_deleted(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    from tagkeeper.retention.runner import apply_planned, plan_image

    old = im.image(created=JAN, label="signed")
    registry.push(old, "dev-0001")
    registry.push(im.cosign_signature(old), im.cosign_tag(old.digest))
    registry.push(im.image(created=FEB, label="newer"), "dev-0002")
    b = backend(client)
    planned = plan_image(b, Policy(keep_dev=1, min_age=timedelta(0)), now=NOW)
    sig = by_tag([d.version for d in planned.plan.delete], im.cosign_tag(old.digest))
    assert old.digest in {d.version.digest for d in planned.plan.delete}
    registry.tags["hotfix"] = old.digest  # a rollback tags the old image while prune runs
    report = apply_planned(planned)
    results = {r.version.digest: r for r in report.results}
    assert results[sig.digest].status is DeleteStatus.CHANGED  # the signature stays
    assert results[old.digest].status is DeleteStatus.CHANGED
    assert registry.tags[im.cosign_tag(old.digest)] == sig.digest
