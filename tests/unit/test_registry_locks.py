"""Images a registry locks (Harbor tag immutability, ACR locks) are protected roots.

pytest-httpx contracts that follow each product's documented answers: Harbor's artifact
API with ``with_immutable_status=true`` (tags carry ``immutable``), ACR's ``/acr/v1``
tags and manifests with ``changeableAttributes``. A plain distribution registry is asked
nothing more than before.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import httpx
import pytest

from tagkeeper.registries import locks
from tagkeeper.registries.credentials import Credentials
from tagkeeper.registries.locks import ACR, HARBOR, detect
from tagkeeper.registries.oci import OciBackend
from tagkeeper.retention.planner import Policy, plan
from tagkeeper.secret import Secret
from tagkeeper.transport import RetryPolicy
from tests.emulators import images as im
from tests.unit.oci_fake import HOST, FakeRegistry

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pytest_httpx import HTTPXMock

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class ProductFake(FakeRegistry):
    """The fake registry plus a product's lock API (``harbor`` or ``acr``)."""

    def __init__(self, product: str | None, name: str, **kw: Any) -> None:
        super().__init__(name=name, **kw)
        self.product = product
        self.immutable: set[str] = set()  # Harbor: immutable tags
        self.locked_tags: dict[str, dict[str, bool]] = {}  # ACR: tag -> attributes
        self.locked_manifests: dict[str, dict[str, bool]] = {}  # ACR: digest -> attributes
        self.api_status = 200
        self.api_log: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith(("/api/", "/acr/")):
            self.api_log.append(request)
            if self.api_status != 200:
                return httpx.Response(self.api_status, json={"errors": [{"code": "DENIED"}]})
            if self.product == "harbor" and path.startswith("/api/v2.0/"):
                return self._harbor(request)
            if self.product == "acr" and path.startswith("/acr/v1/"):
                return self._acr(request)
            return httpx.Response(404)
        response = super().__call__(request)
        if self.product == "acr" and path == "/v2/":
            response.headers["x-ms-correlation-request-id"] = "00000000-0000"
        return response

    def _by_digest(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for tag, digest in sorted(self.tags.items()):
            out.setdefault(digest, []).append(tag)
        return out

    def _harbor(self, request: httpx.Request) -> httpx.Response:
        raw = base64.b64encode(f"{self.user[0]}:{self.user[1]}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {raw}":
            return httpx.Response(401, json={"errors": [{"code": "UNAUTHORIZED"}]})
        project, _, repo = self.name.partition("/")
        expected = (
            f"/api/v2.0/projects/{project}/repositories/{repo.replace('/', '%252F')}/artifacts"
        )
        assert request.url.raw_path.decode().split("?")[0] == expected
        query = parse_qs(request.url.query.decode())
        assert query["with_tag"] == ["true"]
        assert query["with_immutable_status"] == ["true"]
        size, page = int(query["page_size"][0]), int(query["page"][0])
        artifacts = [
            {
                "digest": digest,
                "tags": [{"name": t, "immutable": t in self.immutable} for t in tags],
            }
            for digest, tags in sorted(self._by_digest().items())
        ]
        chunk = artifacts[(page - 1) * size : page * size]
        headers = {}
        if page * size < len(artifacts):
            nxt = request.url.raw_path.decode().replace(f"page={page}", f"page={page + 1}")
            headers["Link"] = f'<{nxt}>; rel="next"'
        return httpx.Response(200, json=chunk, headers=headers)

    def _acr(self, request: httpx.Request) -> httpx.Response:
        if not self._authorised(request):
            return self._challenge(f"repository:{self.name}:metadata_read")
        attributes = {"deleteEnabled": True, "writeEnabled": True, "readEnabled": True}
        if request.url.path == f"/acr/v1/{self.name}/_tags":
            tags = [
                {
                    "name": tag,
                    "digest": digest,
                    "changeableAttributes": {**attributes, **self.locked_tags.get(tag, {})},
                }
                for tag, digest in sorted(self.tags.items())
            ]
            return httpx.Response(200, json={"imageName": self.name, "tags": tags})
        if request.url.path == f"/acr/v1/{self.name}/_manifests":
            manifests = [
                {
                    "digest": digest,
                    "tags": tags,
                    "changeableAttributes": {
                        **attributes,
                        **self.locked_manifests.get(digest, {}),
                    },
                }
                for digest, tags in sorted(self._by_digest().items())
            ]
            return httpx.Response(200, json={"imageName": self.name, "manifests": manifests})
        return httpx.Response(404)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


def serve(httpx_mock: HTTPXMock, fake: ProductFake) -> ProductFake:
    httpx_mock.add_exception(
        httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number"),
        url=f"https://{HOST}/v2/",
        is_optional=True,
        is_reusable=True,
    )
    httpx_mock.add_callback(fake, is_optional=True, is_reusable=True)
    return fake


def releases(fake: ProductFake) -> dict[str, str]:
    digests = {}
    for i, tag in enumerate(["v1.0.0", "v1.1.0", "v1.2.0"]):
        when = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=i)
        built = im.image(label=f"{fake.name}-{tag}", created=when)
        digests[tag] = fake.push(built, tag)
    return digests


def backend(client: httpx.Client, name: str, **kw: Any) -> OciBackend:
    return OciBackend(
        f"{HOST}/{name}",
        client,
        now=NOW,
        workers=2,
        retry=RetryPolicy(attempts=1, base=0.0),
        sleep=lambda _s: None,
        **kw,
    )


def kept(b: OciBackend, keep: int = 1) -> dict[str, tuple[bool, str, str]]:
    versions = b.versions()
    p = plan(
        versions,
        Policy.uniform(keep, min_age=timedelta(0)),
        now=NOW,
        reader=b.reader,
        protected=b.protected(),
    )
    return {min(d.version.tags): (d.keep, d.rule, d.reason) for d in p.decisions if d.version.tags}


def test_harbor_immutable_tags_are_protected_roots(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    fake = serve(
        httpx_mock,
        ProductFake("harbor", "library/team/app", auth="bearer", service="harbor-registry"),
    )
    releases(fake)
    fake.immutable = {"v1.0.0"}
    creds = Credentials("alice", Secret("pw"), source="flags")
    b = backend(client, "library/team/app", credentials=creds)
    decisions = kept(b)
    assert decisions["v1.0.0"][:2] == (True, "protected")
    assert "immutable tag v1.0.0 (a Harbor tag immutability rule)" in decisions["v1.0.0"][2]
    assert decisions["v1.1.0"][0] is False  # below the newest 1, not locked
    assert decisions["v1.2.0"][:2] == (True, "newest-release")
    assert b.locks.product == HARBOR
    assert any("Harbor: 1 image(s) are locked" in w for w in b.warnings)
    assert len(fake.api_log) == 1
    assert b.stats.by_kind["harbor-artifacts"] == 1


def test_harbor_artifact_pages_are_followed(
    httpx_mock: HTTPXMock, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(locks, "_PAGE", 1)
    fake = serve(
        httpx_mock, ProductFake("harbor", "library/app", service="harbor-registry", auth="bearer")
    )
    digests = releases(fake)
    fake.immutable = {"v1.0.0", "v1.1.0"}
    b = backend(client, "library/app", credentials=Credentials("alice", Secret("pw")))
    b.versions()
    assert set(b.locks.locked) == {digests["v1.0.0"], digests["v1.1.0"]}
    assert len(fake.api_log) == 3  # one artifact a page


def test_acr_locks_on_tags_and_manifests_are_protected_roots(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    fake = serve(httpx_mock, ProductFake("acr", "app", auth="bearer"))
    digests = releases(fake)
    fake.locked_tags = {"v1.0.0": {"writeEnabled": False}}
    fake.locked_manifests = {digests["v1.1.0"]: {"deleteEnabled": False}}
    b = backend(client, "app", credentials=Credentials("alice", Secret("pw")))
    decisions = kept(b, keep=0)
    assert decisions["v1.0.0"][:2] == (True, "protected")
    assert "tag v1.0.0: writeEnabled=false" in decisions["v1.0.0"][2]
    assert decisions["v1.1.0"][:2] == (True, "protected")
    assert "manifest: deleteEnabled=false" in decisions["v1.1.0"][2]
    assert decisions["v1.2.0"][0] is False
    assert b.locks.product == ACR


def test_an_unreadable_lock_api_is_a_warning_and_plans_as_before(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    fake = serve(
        httpx_mock, ProductFake("harbor", "library/app", service="harbor-registry", auth="bearer")
    )
    releases(fake)
    fake.immutable = {"v1.0.0"}
    fake.api_status = 403
    b = backend(client, "library/app", credentials=Credentials("alice", Secret("pw")))
    decisions = kept(b)
    assert decisions["v1.0.0"][0] is False  # the registry itself will refuse the delete
    assert any("did not list the locked images (answered 403)" in w for w in b.warnings)


def test_a_lock_on_a_digest_the_listing_does_not_show_adds_nothing(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    fake = serve(httpx_mock, ProductFake("acr", "app", auth="bearer"))
    releases(fake)
    stranger = "sha256:" + "e" * 64  # a hostile or stale answer: not in the repository
    fake.locked_manifests = {stranger: {"deleteEnabled": False}}
    original = fake._by_digest
    fake._by_digest = lambda: {**original(), stranger: []}  # type: ignore[method-assign]
    b = backend(client, "app", credentials=Credentials("alice", Secret("pw")))
    decisions = kept(b, keep=0)
    assert stranger not in b.protected()
    assert not any(stranger in url for _m, url in fake.log)  # never read
    assert all(keep is False for keep, _r, _w in decisions.values())


def test_a_plain_registry_is_asked_nothing_more(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    fake = serve(httpx_mock, ProductFake(None, "app"))
    releases(fake)
    b = backend(client, "app")
    kept(b)
    assert fake.api_log == []
    assert b.locks.product is None


@pytest.mark.parametrize(
    ("host", "headers", "product"),
    [
        (
            "harbor.example.com",
            {"WWW-Authenticate": 'Bearer realm="x",service="harbor-registry"'},
            HARBOR,
        ),
        ("acme.azurecr.io", {}, ACR),
        ("acme.azurecr.cn:443", {}, ACR),
        ("registry.example.com", {"X-Ms-Correlation-Request-Id": "1"}, ACR),
        ("registry.example.com", {"WWW-Authenticate": 'Bearer realm="x",service="registry"'}, None),
        ("zot.example.com", {}, None),  # Zot's keepTags lives in its config: not shown
    ],
)
def test_products_are_told_by_host_and_v2_headers(
    host: str, headers: dict[str, str], product: str | None
) -> None:
    assert detect(host, headers) == product
