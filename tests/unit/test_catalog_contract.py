"""Contract tests of the registry listings (pytest-httpx): GHCR's Packages API and
``/v2/_catalog``, with hostile and broken answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.errors import AuthError, RegistryError, UsageError
from tagkeeper.registries.catalog import list_repositories
from tagkeeper.registries.factory import BackendOptions
from tagkeeper.registries.ghcr_api import GhcrSession
from tagkeeper.secret import Secret

if TYPE_CHECKING:
    from pytest_httpx import HTTPXMock

API = "https://api.github.test"
TOKEN = "ghp_catalogContractToken0123456789"


def options() -> BackendOptions:
    return BackendOptions(token=Secret(TOKEN), api_url=API, sleep=lambda _: None)


def package(name: object, versions: object = 3) -> dict[str, object]:
    return {"name": name, "version_count": versions, "updated_at": "2026-01-02T03:04:05Z"}


def test_an_org_is_listed_in_pages_and_the_session_remembers_the_owner(
    httpx_mock: HTTPXMock,
) -> None:
    httpx_mock.add_response(url=f"{API}/user", json={"login": "octo"})
    httpx_mock.add_response(url=f"{API}/users/acme", json={"login": "acme", "type": "Organization"})
    nxt = f"{API}/orgs/acme/packages?package_type=container&per_page=100&page=2"
    httpx_mock.add_response(
        url=f"{API}/orgs/acme/packages?package_type=container&per_page=100",
        json=[package("api"), package("team/web", 250)],
        headers={"Link": f'<{nxt}>; rel="next"', "x-ratelimit-remaining": "50",
                 "x-ratelimit-reset": "1900000000"},
    )  # fmt: skip
    httpx_mock.add_response(
        url=nxt,
        json=[package("Bad\x1b[31mName"), package(7), package("ok", -1)],
        headers={"x-ratelimit-remaining": "49", "x-ratelimit-reset": "1900000000"},
    )
    session = GhcrSession()
    with httpx.Client() as client:
        listing = list_repositories(
            "ghcr.io", "acme", kind="ghcr", options=options(), client=client, session=session
        )
    names = [r.image for r in listing.repositories]
    assert names == ["ghcr.io/acme/api", "ghcr.io/acme/ok", "ghcr.io/acme/team/web"]
    web = listing.repositories[2]
    assert web.versions == 250
    assert web.pages == 3
    assert listing.repositories[1].versions is None  # a negative count is not believed
    assert listing.requests == 4
    assert "\x1b" not in listing.warnings[0]
    assert "2 name(s)" in listing.warnings[0]
    assert session.owners == {"acme": "org"}
    assert session.budget.read() == (49, 1900000000.0)


def test_a_listing_that_links_outside_the_api_is_refused(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{API}/user", json={"login": "acme"})
    httpx_mock.add_response(
        url=f"{API}/user/packages?package_type=container&per_page=100",
        json=[package("api")],
        headers={"Link": '<https://evil.test/steal>; rel="next"'},
    )
    with httpx.Client() as client, pytest.raises(RegistryError, match="outside"):
        list_repositories("ghcr.io", "acme", kind="ghcr", options=options(), client=client)


def test_a_listing_that_is_not_an_array_is_a_registry_error(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{API}/user", json={"login": "acme"})
    httpx_mock.add_response(
        url=f"{API}/user/packages?package_type=container&per_page=100", json={"oops": 1}
    )
    with httpx.Client() as client, pytest.raises(RegistryError, match="not a JSON array"):
        list_repositories("ghcr.io", "acme", kind="ghcr", options=options(), client=client)


def test_no_token_no_listing_and_no_request() -> None:
    with httpx.Client() as client, pytest.raises(AuthError, match="no GitHub token"):
        list_repositories(
            "ghcr.io", "acme", kind="ghcr", options=BackendOptions(api_url=API), client=client
        )


def test_a_wildcard_owner_on_ghcr_and_the_local_engine_are_usage_errors() -> None:
    with httpx.Client() as client:
        with pytest.raises(UsageError, match="owner part"):
            list_repositories("ghcr.io", None, kind="ghcr", options=options(), client=client)
        with pytest.raises(UsageError, match="no listing"):
            list_repositories("x", None, kind="local", options=options(), client=client)


@pytest.mark.parametrize("status", [401, 403, 404, 405])
def test_a_registry_that_keeps_its_catalog_is_a_usage_error(
    httpx_mock: HTTPXMock, status: int
) -> None:
    host = "registry.test"
    httpx_mock.add_response(url=f"https://{host}/v2/", status_code=200)
    httpx_mock.add_response(
        url=f"https://{host}/v2/_catalog?n=100",
        status_code=status,
        json={"errors": [{"code": "UNSUPPORTED", "message": "no"}]},
    )
    with httpx.Client() as client, pytest.raises(UsageError) as caught:
        list_repositories(host, None, kind="oci", options=BackendOptions(), client=client)
    assert "does not list its repositories" in caught.value.message
    assert f"--image {host}/NAME" in (caught.value.hint or "")


def test_a_catalog_that_loops_is_a_registry_error(httpx_mock: HTTPXMock) -> None:
    host = "registry.test"
    httpx_mock.add_response(url=f"https://{host}/v2/", status_code=200)
    httpx_mock.add_response(
        url=f"https://{host}/v2/_catalog?n=100",
        json={"repositories": ["a/b"]},
        headers={"Link": '</v2/_catalog?n=100>; rel="next"'},
        is_reusable=True,
    )
    with httpx.Client() as client, pytest.raises(RegistryError, match="loops"):
        list_repositories(host, None, kind="oci", options=BackendOptions(), client=client)


def test_a_catalog_filters_by_owner_and_leaves_out_bad_names(httpx_mock: HTTPXMock) -> None:
    host = "registry.test"
    httpx_mock.add_response(url=f"https://{host}/v2/", status_code=200)
    httpx_mock.add_response(
        url=f"https://{host}/v2/_catalog?n=100",
        json={"repositories": ["team/a", "team/b/c", "other/d", "team/../x", None]},
    )
    with httpx.Client() as client:
        listing = list_repositories(
            host, "team", kind="oci", options=BackendOptions(), client=client
        )
    assert [r.image for r in listing.repositories] == [f"{host}/team/a", f"{host}/team/b/c"]
    assert "2 name(s)" in listing.warnings[0]
