"""What a tag points at, for a deploy host: one manifest HEAD, read access only.

pytest-httpx plays ghcr.io (token service and ``/v2``) and GitHub's API; the local
engine is a fake with ``inspect_image``.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tagkeeper.errors import RegistryError, UsageError
from tagkeeper.refs import parse_reference
from tagkeeper.registries.digests import (
    DigestUnknown,
    RegistryDigests,
    check_digest_form,
    check_recorded_digest,
)
from tagkeeper.registries.factory import BackendOptions
from tagkeeper.secret import Secret

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from pytest_httpx import HTTPXMock

API = "https://api.github.test"
REG = "https://ghcr.test"
DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
TOKEN_URL = f"{REG}/token?scope=repository%3Aacme%2Fapp%3Apull&service=ghcr.io"


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


def options(**kw: Any) -> BackendOptions:
    kw.setdefault("environ", {})
    return BackendOptions(api_url=API, registry_url=REG, sleep=lambda _s: None, **kw)


def head(httpx_mock: HTTPXMock, tag: str, digest: str | None, bearer: str) -> None:
    if digest is None:
        httpx_mock.add_response(
            method="HEAD", url=f"{REG}/v2/acme/app/manifests/{tag}", status_code=404,
            match_headers={"Authorization": f"Bearer {bearer}"},
        )  # fmt: skip
        return
    httpx_mock.add_response(
        method="HEAD",
        url=f"{REG}/v2/acme/app/manifests/{tag}",
        headers={"docker-content-digest": digest},
        match_headers={"Authorization": f"Bearer {bearer}"},
    )


class Engine:
    """The part of the Docker engine the fallback reads: ``inspect_image``."""

    def __init__(self, images: dict[str, list[str]]) -> None:
        self.images = images
        self.asked: list[str] = []

    def inspect_image(self, image: str) -> Any:
        self.asked.append(image)
        if image not in self.images:
            error = RuntimeError("No such image")
            error.status_code = 404  # type: ignore[attr-defined]
            raise error
        return {"Id": "sha256:" + "11" * 32, "RepoDigests": self.images[image]}


def test_a_host_with_only_docker_login_resolves_with_one_head_and_no_rest_call(
    httpx_mock: HTTPXMock, client: httpx.Client, tmp_path: Path
) -> None:
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(b"deploy-bot:ghp_readOnlyPAT").decode()
    (config / "config.json").write_text(json.dumps({"auths": {"ghcr.io": {"auth": auth}}}))
    httpx_mock.add_response(
        url=TOKEN_URL,
        json={"token": "pull-token"},
        match_headers={"Authorization": f"Basic {auth}"},
    )
    head(httpx_mock, "v1.2.3", DIGEST, "pull-token")
    resolver = RegistryDigests(options(environ={"DOCKER_CONFIG": str(config)}), client)
    assert resolver.resolve(parse_reference("ghcr.io/acme/app:v1.2.3")) == DIGEST
    assert [r.url.host for r in httpx_mock.get_requests()] == ["ghcr.test", "ghcr.test"]


def test_a_public_image_resolves_anonymously(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    def anonymous(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        return httpx.Response(200, json={"token": "anon"})

    httpx_mock.add_callback(anonymous, url=TOKEN_URL)
    head(httpx_mock, "v1.2.3", DIGEST, "anon")
    resolver = RegistryDigests(options(), client)
    assert resolver.resolve(parse_reference("ghcr.io/acme/app:v1.2.3")) == DIGEST


def test_the_token_and_urls_given_are_the_ones_used(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    expected = "Basic " + base64.b64encode(b"tagkeeper:ghp_given").decode()
    httpx_mock.add_response(
        url=TOKEN_URL, json={"token": "t"}, match_headers={"Authorization": expected}
    )
    head(httpx_mock, "v1", DIGEST, "t")
    resolver = RegistryDigests(options(token=Secret("ghp_given")), client)
    assert resolver.resolve(parse_reference("ghcr.io/acme/app:v1")) == DIGEST


def test_a_missing_tag_is_bad_input(httpx_mock: HTTPXMock, client: httpx.Client) -> None:
    httpx_mock.add_response(url=TOKEN_URL, json={"token": "anon"})
    head(httpx_mock, "v9", None, "anon")
    with pytest.raises(UsageError, match="does not exist"):
        RegistryDigests(options(), client).resolve(parse_reference("ghcr.io/acme/app:v9"))


def test_a_refused_read_falls_back_to_what_the_engine_pulled(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    httpx_mock.add_response(
        url=TOKEN_URL,
        status_code=403,
        json={"errors": [{"code": "DENIED", "message": "requested access is denied"}]},
        is_reusable=True,
    )
    engine = Engine({"ghcr.io/acme/app:v1": [f"ghcr.io/acme/app@{DIGEST}"]})
    resolver = RegistryDigests(options(), client, engine=lambda: engine)
    assert resolver.resolve(parse_reference("ghcr.io/acme/app:v1")) == DIGEST
    assert resolver.notes
    assert "pulled" in resolver.notes[0]
    # not pulled here either: unknown, with the registry's reason (never delete:packages)
    with pytest.raises(DigestUnknown) as caught:
        resolver.resolve(parse_reference("ghcr.io/acme/app:v2"))
    assert "denied" in caught.value.message
    assert "delete:packages" not in caught.value.diagnostics()
    assert caught.value.exit_code == 5


def test_an_engine_digest_of_another_repository_is_not_taken(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    httpx_mock.add_exception(httpx.ConnectError("down"), url=TOKEN_URL, is_reusable=True)
    engine = Engine({"ghcr.io/acme/app:v1": [f"ghcr.io/other/app@{DIGEST}"]})
    resolver = RegistryDigests(options(), client, engine=lambda: engine)
    with pytest.raises(DigestUnknown):
        resolver.resolve(parse_reference("ghcr.io/acme/app:v1"))


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:" + "AB" * 32,
        "sha256:abc",
        "sha512:" + "ab" * 64,
        DIGEST + "\n::error::x",
        "latest",
    ],
)
def test_a_digest_from_history_must_have_the_sha256_form(digest: str) -> None:
    with pytest.raises(RegistryError) as caught:
        check_digest_form(digest, source="GitHub deployment #7")
    assert "GitHub deployment #7" in caught.value.message
    assert "\n" not in caught.value.message
    assert check_digest_form(DIGEST, source="x") == DIGEST


def test_a_recorded_digest_is_checked_against_the_registry(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    httpx_mock.add_response(url=TOKEN_URL, json={"token": "anon"}, is_reusable=True)
    head(httpx_mock, "v1", DIGEST, "anon")
    resolver = RegistryDigests(options(), client)
    assert check_recorded_digest(resolver, "ghcr.io/acme/app", "v1", DIGEST) == ("current", "")

    # the tag moved: only history tagkeeper trusts (the ledger) can vouch for the old one
    head(httpx_mock, "v1", OTHER, "anon")
    with pytest.raises(RegistryError, match="refusing"):
        check_recorded_digest(resolver, "ghcr.io/acme/app", "v1", DIGEST)
    head(httpx_mock, "v1", OTHER, "anon")
    head(httpx_mock, DIGEST, DIGEST, "anon")
    verdict = check_recorded_digest(
        resolver, "ghcr.io/acme/app", "v1", DIGEST, earlier=frozenset({DIGEST})
    )
    assert verdict == ("earlier", "")


def test_a_recorded_digest_that_cannot_be_checked_says_so(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    httpx_mock.add_exception(httpx.ConnectError("down"), url=TOKEN_URL, is_reusable=True)
    resolver = RegistryDigests(options(), client)
    verdict, why = check_recorded_digest(resolver, "ghcr.io/acme/app", "v1", DIGEST)
    assert verdict == "unverified"
    assert "down" in why


def test_docker_credentials_are_read_only_when_the_registry_is_used(
    client: httpx.Client, tmp_path: Path
) -> None:
    from tagkeeper.errors import AuthError
    from tagkeeper.registries.factory import open_backend

    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text("{not json")
    backend = open_backend(
        "ghcr.io/acme/app", options(environ={"DOCKER_CONFIG": str(config)}), client
    )
    with pytest.raises(AuthError, match="no GitHub token"):  # listing: config.json unread
        backend.versions()
    with pytest.raises(AuthError, match="not valid JSON"):  # /v2: now it is read
        backend.resolve_tag("v1")
