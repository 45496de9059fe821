"""Tests OF the GHCR emulator: it answers as GitHub documents (httpx only, no tagkeeper code).

Expected values come from GitHub's REST documentation (packages, pagination, rate limits),
from messages GitHub users report verbatim, and from the OCI distribution spec.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.emulators import images
from tests.emulators.ghcr import GhcrEmulator, Request, Response

if TYPE_CHECKING:
    from tests.integration.ghcr.conftest import FakeClock, MakeGhcr

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SECONDARY_PREFIX = "You have exceeded a secondary rate limit."


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def versions_url(emu: GhcrEmulator, owner: str, package: str, *, org: bool = False) -> str:
    scope = "orgs" if org else "users"
    encoded = package.replace("/", "%2F")
    return f"{emu.api_url}/{scope}/{owner}/packages/container/{encoded}/versions"


def fill(emu: GhcrEmulator, owner: str, package: str, count: int) -> list[images.Built]:
    """Push ``count`` distinct single-platform images, one minute apart, tagged ``dev-<n>``."""
    built = []
    for n in range(count):
        img = images.image("linux/amd64", T0 + timedelta(minutes=n), label=str(n))
        emu.push(
            owner,
            package,
            img.data,
            img.media_type,
            tags=[f"dev-{n}"],
            created=T0 + timedelta(minutes=n),
        )
        built.append(img)
    return built


def version_id(emu: GhcrEmulator, owner: str, package: str, digest: str) -> int:
    state = emu.version(owner, package, digest)
    assert state is not None
    return state.id


def registry_token(
    http: httpx.Client, emu: GhcrEmulator, repo: str, token: str | None, actions: str = "pull"
) -> str:
    response = http.get(
        f"{emu.registry_url}/token",
        params={"scope": f"repository:{repo}:{actions}", "service": "ghcr.io"},
        auth=("someone", token) if token else None,
    )
    assert response.status_code == 200, response.text
    value = response.json()["token"]
    assert isinstance(value, str)
    return value


# ----------------------------------------------------------------------------- pagination


def test_250_versions_paginate_with_githubs_link_header(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    token = ghcr.add_token(login="octo")
    pushed = fill(ghcr, "octo", "app", 250)
    url = versions_url(ghcr, "octo", "app")
    pages = [
        http.get(url, params={"per_page": 100, "page": p}, headers=auth(token)) for p in (1, 2, 3)
    ]
    assert [len(p.json()) for p in pages] == [100, 100, 50]
    first, middle, last = pages
    assert set(first.links) == {"next", "last"}
    assert first.links["next"]["url"] == f"{url}?per_page=100&page=2"
    assert first.links["last"]["url"] == f"{url}?per_page=100&page=3"
    # GitHub's order of relations: prev, next, last, first.
    rels = [part.split('rel="')[1].rstrip('"') for part in middle.headers["link"].split(", ")]
    assert rels == ["prev", "next", "last", "first"]
    assert middle.links["prev"]["url"].endswith("page=1")
    assert set(last.links) == {"prev", "first"}
    names = [v["name"] for p in pages for v in p.json()]
    assert len(set(names)) == 250
    assert set(names) == {b.digest for b in pushed}
    # newest first
    created = [v["created_at"] for p in pages for v in p.json()]
    assert created == sorted(created, reverse=True)
    assert names[0] == pushed[-1].digest


def test_per_page_defaults_to_30_and_caps_at_100(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    token = ghcr.add_token(login="octo")
    fill(ghcr, "octo", "app", 120)
    url = versions_url(ghcr, "octo", "app")
    default = http.get(url, headers=auth(token))
    assert len(default.json()) == 30
    assert default.links["last"]["url"].endswith("page=4")
    capped = http.get(url, params={"per_page": 500}, headers=auth(token))
    assert len(capped.json()) == 100
    beyond = http.get(url, params={"per_page": 100, "page": 9}, headers=auth(token))
    assert beyond.status_code == 200
    assert beyond.json() == []


def test_a_single_page_has_no_link_header(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    token = ghcr.add_token(login="octo")
    fill(ghcr, "octo", "app", 3)
    response = http.get(versions_url(ghcr, "octo", "app"), headers=auth(token))
    assert "link" not in response.headers
    assert len(response.json()) == 3


def test_version_objects_have_githubs_shape(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    token = ghcr.add_token(login="octo")
    img = images.image()
    ghcr.push("octo", "app", img.data, img.media_type, tags=["v1.0.0", "latest"], created=T0)
    body = http.get(versions_url(ghcr, "octo", "app"), headers=auth(token)).json()
    (version,) = body
    assert set(version) >= {
        "id",
        "name",
        "url",
        "package_html_url",
        "created_at",
        "updated_at",
        "html_url",
        "metadata",
    }
    assert version["name"] == img.digest
    assert version["created_at"] == "2024-03-01T12:00:00Z"
    assert version["metadata"] == {
        "package_type": "container",
        "container": {"tags": ["v1.0.0", "latest"]},
    }
    assert version["url"] == f"{versions_url(ghcr, 'octo', 'app')}/{version['id']}"
    single = http.get(version["url"], headers=auth(token))
    assert single.status_code == 200
    assert single.json() == version


# ----------------------------------------------------------------------------- owners, names


def test_owner_kinds_users_orgs_and_the_authenticated_user(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    ghcr.add_org("acme")
    token = ghcr.add_token(login="octo", packages={"acme/*": "admin"})
    fill(ghcr, "acme", "svc", 2)
    fill(ghcr, "octo", "mine", 1)
    user = http.get(f"{ghcr.api_url}/users/octo").json()
    org = http.get(f"{ghcr.api_url}/users/acme").json()
    assert (user["login"], user["type"]) == ("octo", "User")
    assert (org["login"], org["type"]) == ("acme", "Organization")
    assert http.get(f"{ghcr.api_url}/orgs/acme").json()["type"] == "Organization"
    assert http.get(f"{ghcr.api_url}/orgs/octo").status_code == 404
    assert http.get(f"{ghcr.api_url}/users/nobody").json()["message"] == "Not Found"
    me = http.get(f"{ghcr.api_url}/user", headers=auth(token))
    assert me.json()["login"] == "octo"

    org_list = http.get(versions_url(ghcr, "acme", "svc", org=True), headers=auth(token))
    assert org_list.status_code == 200
    assert len(org_list.json()) == 2
    wrong_kind = http.get(versions_url(ghcr, "acme", "svc"), headers=auth(token))
    assert wrong_kind.status_code == 404
    own = http.get(f"{ghcr.api_url}/user/packages/container/mine/versions", headers=auth(token))
    assert own.status_code == 200
    assert len(own.json()) == 1
    assert own.json()[0]["url"].startswith(f"{ghcr.api_url}/user/packages/container/mine/")


def test_package_metadata_has_visibility_and_version_count(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    token = ghcr.add_token(login="octo")
    fill(ghcr, "octo", "app", 4)
    ghcr.set_visibility("octo", "app", "public")
    body = http.get(f"{ghcr.api_url}/users/octo/packages/container/app", headers=auth(token))
    assert body.status_code == 200
    package = body.json()
    assert package["name"] == "app"
    assert package["package_type"] == "container"
    assert package["visibility"] == "public"
    assert package["version_count"] == 4
    assert package["owner"]["login"] == "octo"


def test_nested_package_names_arrive_url_encoded(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    token = ghcr.add_token(login="octo")
    fill(ghcr, "octo", "team/app", 2)
    response = http.get(versions_url(ghcr, "octo", "team/app"), headers=auth(token))
    assert response.status_code == 200
    assert all("/team%2Fapp/versions/" in v["url"] for v in response.json())
    raw = f"{ghcr.api_url}/users/octo/packages/container/team/app/versions"
    assert http.get(raw, headers=auth(token)).status_code == 404


# ----------------------------------------------------------------------------- auth errors


def test_missing_and_bad_credentials_answer_401_with_githubs_body(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    fill(ghcr, "octo", "app", 1)
    url = versions_url(ghcr, "octo", "app")
    missing = http.get(url)
    assert missing.status_code == 401
    assert missing.json()["message"] == "Requires authentication"
    bad = http.get(url, headers={"Authorization": "token ghp_not_a_real_token"})
    assert bad.status_code == 401
    body = bad.json()
    assert body["message"] == "Bad credentials"
    assert body["status"] == "401"
    assert body["documentation_url"].startswith("https://docs.github.com/")
    assert "x-ratelimit-limit" in bad.headers


def test_token_scheme_and_bearer_scheme_both_work(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    token = ghcr.add_token(login="octo")
    fill(ghcr, "octo", "app", 1)
    url = versions_url(ghcr, "octo", "app")
    assert http.get(url, headers={"Authorization": f"token {token}"}).status_code == 200
    assert http.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_classic_pat_scopes_are_echoed_and_missing_ones_refused(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    built = fill(ghcr, "octo", "app", 2)
    url = versions_url(ghcr, "octo", "app")
    vid = version_id(ghcr, "octo", "app", built[0].digest)
    read_only = ghcr.add_token(login="octo", scopes={"read:packages"})
    listing = http.get(url, headers=auth(read_only))
    assert listing.status_code == 200
    assert listing.headers["x-oauth-scopes"] == "read:packages"
    delete = http.delete(f"{url}/{vid}", headers=auth(read_only))
    assert delete.status_code == 403
    assert "delete:packages" in delete.json()["message"]
    assert "delete:packages" in delete.headers["x-accepted-oauth-scopes"]
    no_read = ghcr.add_token(login="octo", scopes={"repo"})
    refused = http.get(url, headers=auth(no_read))
    assert refused.status_code == 403
    assert refused.json()["message"] == "You need at least read:packages scope to list packages."
    assert ghcr.version("octo", "app", built[0].digest) is not None


def test_classic_pat_without_admin_role_cannot_delete(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    ghcr.add_org("acme")
    built = fill(ghcr, "acme", "svc", 2)
    writer = ghcr.add_token(login="dev", packages={"acme/svc": "write"})
    vid = version_id(ghcr, "acme", "svc", built[0].digest)
    url = f"{versions_url(ghcr, 'acme', 'svc', org=True)}/{vid}"
    response = http.delete(url, headers=auth(writer))
    assert response.status_code == 403
    assert response.json()["message"] == "Must have admin rights to Repository."


def test_github_token_needs_packages_write_and_the_admin_role(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    ghcr.add_org("acme")
    built = fill(ghcr, "acme", "svc", 3)
    url = versions_url(ghcr, "acme", "svc", org=True)
    vid = version_id(ghcr, "acme", "svc", built[0].digest)
    read_perm = ghcr.add_token(
        login="github-actions[bot]",
        kind="github_token",
        packages={"acme/svc": "admin"},
        packages_permission="read",
    )
    writer_role = ghcr.add_token(
        login="github-actions[bot]",
        kind="github_token",
        packages={"acme/svc": "write"},
    )
    admin_role = ghcr.add_token(
        login="github-actions[bot]",
        kind="github_token",
        packages={"acme/svc": "admin"},
    )
    listing = http.get(url, headers=auth(read_perm))
    assert listing.status_code == 200
    assert "x-oauth-scopes" not in listing.headers  # not a classic PAT
    no_write = http.delete(f"{url}/{vid}", headers=auth(read_perm))
    assert no_write.status_code == 403
    assert no_write.json()["message"] == "Resource not accessible by integration"
    assert no_write.headers["x-accepted-github-permissions"] == "packages=write"
    no_admin = http.delete(f"{url}/{vid}", headers=auth(writer_role))
    assert no_admin.status_code == 403
    assert no_admin.json()["message"] == "Resource not accessible by integration"
    assert "x-accepted-github-permissions" not in no_admin.headers
    assert http.delete(f"{url}/{vid}", headers=auth(admin_role)).status_code == 204
    user = http.get(f"{ghcr.api_url}/user", headers=auth(admin_role))
    assert user.status_code == 403
    assert user.json()["message"] == "Resource not accessible by integration"


def test_not_found_bodies(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    token = ghcr.add_token(login="octo")
    fill(ghcr, "octo", "app", 2)
    fill(ghcr, "stranger", "private", 1)
    missing_pkg = http.get(versions_url(ghcr, "octo", "nope"), headers=auth(token))
    assert missing_pkg.status_code == 404
    assert missing_pkg.json()["message"] == "Package not found."
    # a private package the token has no role on is hidden, not forbidden
    hidden = http.get(versions_url(ghcr, "stranger", "private"), headers=auth(token))
    assert hidden.status_code == 404
    missing_version = http.delete(
        f"{versions_url(ghcr, 'octo', 'app')}/999999", headers=auth(token)
    )
    assert missing_version.status_code == 404
    assert missing_version.json() == {
        "message": "Not Found",
        "documentation_url": missing_version.json()["documentation_url"],
        "status": "404",
    }
    unknown_route = http.get(f"{ghcr.api_url}/no/such/endpoint", headers=auth(token))
    assert unknown_route.status_code == 404
    assert unknown_route.json()["message"] == "Not Found"


def test_public_packages_are_listable_by_any_token(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    fill(ghcr, "stranger", "tool", 2)
    ghcr.set_visibility("stranger", "tool", "public")
    token = ghcr.add_token(login="octo")
    response = http.get(versions_url(ghcr, "stranger", "tool"), headers=auth(token))
    assert response.status_code == 200
    vid = response.json()[0]["id"]
    delete = http.delete(f"{versions_url(ghcr, 'stranger', 'tool')}/{vid}", headers=auth(token))
    assert delete.status_code == 403  # readable is not deletable


# ----------------------------------------------------------------------------- delete rules


def test_delete_removes_the_version_its_manifest_and_its_tags(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    token = ghcr.add_token(login="octo")
    built = fill(ghcr, "octo", "app", 3)
    vid = version_id(ghcr, "octo", "app", built[1].digest)
    url = versions_url(ghcr, "octo", "app")
    assert http.delete(f"{url}/{vid}", headers=auth(token)).status_code == 204
    assert http.delete(f"{url}/{vid}", headers=auth(token)).status_code == 404
    assert http.get(f"{url}/{vid}", headers=auth(token)).status_code == 404
    names = [v["name"] for v in http.get(url, headers=auth(token)).json()]
    assert built[1].digest not in names
    assert len(names) == 2
    deleted = http.get(url, params={"state": "deleted"}, headers=auth(token)).json()
    assert [v["name"] for v in deleted] == [built[1].digest]
    reg = registry_token(http, ghcr, "octo/app", token)
    manifest = http.get(
        f"{ghcr.registry_url}/v2/octo/app/manifests/{built[1].digest}",
        headers={**auth(reg), "Accept": images.OCI_MANIFEST},
    )
    assert manifest.status_code == 404
    assert manifest.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    tags = http.get(f"{ghcr.registry_url}/v2/octo/app/tags/list", headers=auth(reg)).json()
    assert tags["tags"] == ["dev-0", "dev-2"]
    assert len(ghcr.delete_times) == 1


def test_the_last_version_of_a_package_cannot_be_deleted(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    token = ghcr.add_token(login="octo")
    built = fill(ghcr, "octo", "app", 2)
    url = versions_url(ghcr, "octo", "app")
    first = version_id(ghcr, "octo", "app", built[0].digest)
    second = version_id(ghcr, "octo", "app", built[1].digest)
    assert http.delete(f"{url}/{first}", headers=auth(token)).status_code == 204
    refused = http.delete(f"{url}/{second}", headers=auth(token))
    assert refused.status_code == 400
    assert refused.json()["message"] == (
        "You cannot delete the last version of a package. You must delete the package instead."
    )
    assert ghcr.version("octo", "app", built[1].digest) is not None


def test_the_tagged_variant_of_the_last_version_rule(
    http: httpx.Client, make_ghcr: MakeGhcr
) -> None:
    emu = make_ghcr(last_version_rule="tagged")
    token = emu.add_token(login="octo")
    tagged = images.image(label="tagged")
    untagged = images.image(label="untagged")
    emu.push("octo", "app", tagged.data, tagged.media_type, tags=["v1"], created=T0)
    emu.push("octo", "app", untagged.data, untagged.media_type, created=T0)
    url = versions_url(emu, "octo", "app")
    refused = http.delete(
        f"{url}/{version_id(emu, 'octo', 'app', tagged.digest)}", headers=auth(token)
    )
    assert refused.status_code == 400
    assert "last tagged version" in refused.json()["message"]
    allowed = http.delete(
        f"{url}/{version_id(emu, 'octo', 'app', untagged.digest)}", headers=auth(token)
    )
    assert allowed.status_code == 204


def test_public_versions_with_more_than_5000_downloads_cannot_be_deleted(
    http: httpx.Client,
    ghcr: GhcrEmulator,
) -> None:
    token = ghcr.add_token(login="octo")
    built = fill(ghcr, "octo", "app", 3)
    ghcr.set_visibility("octo", "app", "public")
    ghcr.set_downloads("octo", "app", built[0].digest, 5001)
    ghcr.set_downloads("octo", "app", built[1].digest, 5000)
    url = versions_url(ghcr, "octo", "app")
    refused = http.delete(
        f"{url}/{version_id(ghcr, 'octo', 'app', built[0].digest)}", headers=auth(token)
    )
    assert refused.status_code == 400
    assert refused.json()["message"] == (
        "Publicly visible package versions with more than 5000 downloads cannot be deleted. "
        "Contact GitHub support for further assistance."
    )
    at_limit = http.delete(
        f"{url}/{version_id(ghcr, 'octo', 'app', built[1].digest)}", headers=auth(token)
    )
    assert at_limit.status_code == 204
    # the same counts on a private package do not matter
    ghcr.set_visibility("octo", "app", "private")
    private = http.delete(
        f"{url}/{version_id(ghcr, 'octo', 'app', built[0].digest)}", headers=auth(token)
    )
    assert private.status_code == 204


def test_manifest_reads_count_as_downloads(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    img = images.image()
    ghcr.push("octo", "app", img.data, img.media_type, tags=["v1"])
    ghcr.set_visibility("octo", "app", "public")
    reg = registry_token(http, ghcr, "octo/app", None)
    url = f"{ghcr.registry_url}/v2/octo/app/manifests/v1"
    for _ in range(3):
        assert http.get(url, headers=auth(reg)).status_code == 200
    assert http.head(url, headers=auth(reg)).status_code == 200
    state = ghcr.version("octo", "app", img.digest)
    assert state is not None
    assert state.downloads == 3  # HEAD is not a download


def test_a_tag_pushed_between_plan_and_apply_shows_on_the_version(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    token = ghcr.add_token(login="octo")
    built = fill(ghcr, "octo", "app", 3)
    url = versions_url(ghcr, "octo", "app")
    vid = version_id(ghcr, "octo", "app", built[0].digest)
    before = http.get(f"{url}/{vid}", headers=auth(token)).json()
    assert before["metadata"]["container"]["tags"] == ["dev-0"]
    ghcr.tag("octo", "app", "dev-2", built[0].digest)  # the tag moves from built[2]
    after = http.get(f"{url}/{vid}", headers=auth(token)).json()
    assert after["metadata"]["container"]["tags"] == ["dev-0", "dev-2"]
    moved_from = ghcr.version("octo", "app", built[2].digest)
    assert moved_from is not None
    assert moved_from.tags == ()


# ----------------------------------------------------------------------------- rate limits


def test_every_rest_answer_carries_rate_limit_headers(
    http: httpx.Client, make_ghcr: MakeGhcr
) -> None:
    emu = make_ghcr(primary_limit=1000)
    token = emu.add_token(login="octo")
    fill(emu, "octo", "app", 2)
    remaining = []
    for _ in range(3):
        response = http.get(versions_url(emu, "octo", "app"), headers=auth(token))
        assert response.headers["x-ratelimit-limit"] == "1000"
        assert response.headers["x-ratelimit-resource"] == "core"
        assert int(response.headers["x-ratelimit-reset"]) > time.time()
        used = int(response.headers["x-ratelimit-used"])
        assert used + int(response.headers["x-ratelimit-remaining"]) == 1000
        remaining.append(int(response.headers["x-ratelimit-remaining"]))
    assert remaining == [999, 998, 997]


def test_conditional_requests_answer_304_without_spending_the_primary_limit(
    http: httpx.Client, make_ghcr: MakeGhcr
) -> None:
    emu = make_ghcr(primary_limit=1000)
    token = emu.add_token(login="octo")
    fill(emu, "octo", "app", 3)
    url = versions_url(emu, "octo", "app")
    first = http.get(url, headers=auth(token))
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    again = http.get(url, headers={**auth(token), "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["x-ratelimit-remaining"] == first.headers["x-ratelimit-remaining"]
    # another page, or a changed list, has another ETag: answered in full
    other = http.get(url, params={"per_page": 1}, headers={**auth(token), "If-None-Match": etag})
    assert other.status_code == 200
    fill(emu, "octo", "app", 4)  # one more version
    changed = http.get(url, headers={**auth(token), "If-None-Match": etag})
    assert changed.status_code == 200
    assert len(changed.json()) == 4


def test_before_next_lets_another_job_act_between_two_requests(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    token = ghcr.add_token(login="octo")
    pushed = fill(ghcr, "octo", "app", 5)
    url = versions_url(ghcr, "octo", "app")
    seen: list[str] = []

    def another_job() -> None:
        seen.append("deleted")
        ghcr.delete_version("octo", "app", pushed[4].digest)

    ghcr.before_next(1, another_job, kinds=["rest.versions.list"], query={"page": "2"})
    page1 = http.get(url, params={"per_page": 2, "page": 1}, headers=auth(token))
    assert seen == []
    page2 = http.get(url, params={"per_page": 2, "page": 2}, headers=auth(token))
    assert seen == ["deleted"]
    # offset paging: the delete on page 1 shifted page 2 up, so dev-2 was never listed
    names = [v["name"] for v in (*page1.json(), *page2.json())]
    assert names == [pushed[4].digest, pushed[3].digest, pushed[1].digest, pushed[0].digest]
    again = http.get(url, params={"per_page": 2, "page": 2}, headers=auth(token))
    assert again.status_code == 200
    assert seen == ["deleted"]  # used up


@pytest.mark.parametrize("status", [403, 429])
def test_primary_limit_exhaustion(
    http: httpx.Client, make_ghcr: MakeGhcr, clock: FakeClock, status: int
) -> None:
    emu = make_ghcr(primary_limit=3, primary_window=3600, primary_status=status, clock=clock)
    token = emu.add_token(login="octo")
    fill(emu, "octo", "app", 1)
    url = versions_url(emu, "octo", "app")
    answers = [http.get(url, headers=auth(token)) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, status]
    limited = answers[-1]
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.json()["message"].startswith("API rate limit exceeded for user ID ")
    assert "rate-limits-for-the-rest-api" in limited.json()["documentation_url"]
    assert emu.limited["primary"] == 1
    clock.advance(3601)
    assert http.get(url, headers=auth(token)).status_code == 200


def test_exhaust_primary_and_installation_message(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    token = ghcr.add_token(
        login="github-actions[bot]", kind="github_token", packages={"octo/app": "admin"}
    )
    fill(ghcr, "octo", "app", 1)
    ghcr.exhaust_primary(token)
    response = http.get(versions_url(ghcr, "octo", "app"), headers=auth(token))
    assert response.status_code == 403
    assert response.json()["message"].startswith("API rate limit exceeded for installation ID ")
    assert response.headers["x-ratelimit-remaining"] == "0"


def _delete_all(
    http: httpx.Client, emu: GhcrEmulator, token: str, built: list[images.Built]
) -> list[httpx.Response]:
    url = versions_url(emu, "octo", "app")
    answers = []
    for img in built:
        state = emu.version("octo", "app", img.digest)
        if state is not None:
            answers.append(http.delete(f"{url}/{state.id}", headers=auth(token)))
    return answers


def test_secondary_delete_budget_sliding_window(
    http: httpx.Client, make_ghcr: MakeGhcr, clock: FakeClock
) -> None:
    emu = make_ghcr(delete_limit=3, delete_window=60, clock=clock)
    token = emu.add_token(login="octo")
    built = fill(emu, "octo", "app", 6)
    url = versions_url(emu, "octo", "app")
    answers = _delete_all(http, emu, token, built[:4])
    assert [a.status_code for a in answers] == [204, 204, 204, 403]
    limited = answers[-1]
    assert limited.json()["message"].startswith(SECONDARY_PREFIX)
    assert "secondary-rate-limits" in limited.json()["documentation_url"]
    assert limited.headers["retry-after"] == "60"
    assert int(limited.headers["x-ratelimit-remaining"]) > 0  # not the primary limit
    # still blocked before retry-after has elapsed, even though GETs pass
    clock.advance(30)
    assert http.get(url, headers=auth(token)).status_code == 200
    again = _delete_all(http, emu, token, built[3:4])
    assert again[0].status_code == 403
    assert int(again[0].headers["retry-after"]) == 30
    clock.advance(31)
    assert [a.status_code for a in _delete_all(http, emu, token, built[3:5])] == [204, 204]
    assert emu.limited["secondary.delete"] == 2
    assert len(emu.delete_times) == 5


def test_secondary_delete_budget_token_bucket(
    http: httpx.Client, make_ghcr: MakeGhcr, clock: FakeClock
) -> None:
    emu = make_ghcr(
        delete_limit=60,
        delete_window=60,
        delete_limit_mode="bucket",
        delete_burst=2,
        clock=clock,
        secondary_status=429,
    )
    token = emu.add_token(login="octo")
    built = fill(emu, "octo", "app", 6)
    first = _delete_all(http, emu, token, built[:3])
    assert [a.status_code for a in first] == [204, 204, 429]
    assert first[-1].headers["retry-after"] == "1"  # one token per second refills
    clock.advance(1.0)
    assert [a.status_code for a in _delete_all(http, emu, token, built[2:3])] == [204]


def test_fixed_retry_after_is_honoured_in_the_answer(
    http: httpx.Client, make_ghcr: MakeGhcr, clock: FakeClock
) -> None:
    emu = make_ghcr(delete_limit=1, retry_after=60, clock=clock)
    token = emu.add_token(login="octo")
    built = fill(emu, "octo", "app", 3)
    answers = _delete_all(http, emu, token, built[:2])
    assert [a.status_code for a in answers] == [204, 403]
    assert answers[1].headers["retry-after"] == "60"


def test_points_budget_costs_five_per_delete_and_one_per_get(
    http: httpx.Client, make_ghcr: MakeGhcr, clock: FakeClock
) -> None:
    emu = make_ghcr(points_limit=12, points_window=60, clock=clock)
    token = emu.add_token(login="octo")
    built = fill(emu, "octo", "app", 5)
    # deletes are their own endpoint: 5 + 5 fit in 12, a third does not
    answers = _delete_all(http, emu, token, built[:3])
    assert [a.status_code for a in answers] == [204, 204, 403]
    assert answers[-1].json()["message"].startswith(SECONDARY_PREFIX)
    # listing is another endpoint with its own 12 points
    url = versions_url(emu, "octo", "app")
    statuses = [http.get(url, headers=auth(token)).status_code for _ in range(13)]
    assert statuses == [200] * 12 + [403]
    assert emu.limited["secondary.points"] == 2


def test_concurrency_cap_answers_secondary_limit(http: httpx.Client, make_ghcr: MakeGhcr) -> None:
    emu = make_ghcr(max_concurrent=2, latency=0.8)
    token = emu.add_token(login="octo")
    fill(emu, "octo", "app", 1)
    url = versions_url(emu, "octo", "app")
    statuses: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        code = http.get(url, headers=auth(token), timeout=10).status_code
        with lock:
            statuses.append(code)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(200) >= 2
    assert statuses.count(403) >= 1
    assert emu.limited["secondary.concurrency"] == statuses.count(403)
    assert emu.max_in_flight >= 3


# ----------------------------------------------------------------------------- faults


def test_fail_next_answers_5xx_then_recovers(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    token = ghcr.add_token(login="octo")
    fill(ghcr, "octo", "app", 1)
    url = versions_url(ghcr, "octo", "app")
    ghcr.fail_next(2, 502, kinds=["rest.versions.list"])
    first, second, third = (http.get(url, headers=auth(token)) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (502, 502, 200)
    assert first.json()["message"] == "Server Error"
    ghcr.fail_next(1, 503)
    unavailable = http.get(url, headers=auth(token))
    assert unavailable.status_code == 503
    assert "No server is currently available" in unavailable.json()["message"]
    assert ghcr.faults["status"] == 3
    assert ghcr.counters["rest.versions.list"] == 4


def test_a_fault_after_the_delete_applies_it_and_hides_the_answer(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    token = ghcr.add_token(login="octo")
    built = fill(ghcr, "octo", "app", 2)
    vid = version_id(ghcr, "octo", "app", built[0].digest)
    url = f"{versions_url(ghcr, 'octo', 'app')}/{vid}"
    ghcr.fail_next(1, 502, kinds=["rest.version.delete"], after=True)
    assert http.delete(url, headers=auth(token)).status_code == 502
    assert ghcr.version("octo", "app", built[0].digest) is None
    assert http.delete(url, headers=auth(token)).status_code == 404  # the retry sees it gone


def test_dropped_connections_and_hangs(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    token = ghcr.add_token(login="octo")
    fill(ghcr, "octo", "app", 1)
    url = versions_url(ghcr, "octo", "app")
    ghcr.drop_next(1)
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(url, headers=auth(token))
    ghcr.hang_next(1, 1.0)
    with pytest.raises(httpx.ReadTimeout):
        http.get(url, headers=auth(token), timeout=0.2)
    assert http.get(url, headers=auth(token)).status_code == 200
    assert ghcr.faults["drop"] == 1
    assert ghcr.faults["hang"] == 1


def test_random_faults_are_reproducible_with_a_seed(make_ghcr: MakeGhcr) -> None:
    sequences = []
    for _ in range(2):
        emu = make_ghcr(seed=7)
        token = emu.add_token(login="octo")
        fill(emu, "octo", "app", 1)
        emu.fail_randomly(0.5, statuses=(502, 503))
        with httpx.Client(headers=auth(token), trust_env=False) as client:
            url = versions_url(emu, "octo", "app")
            sequences.append([client.get(url).status_code for _ in range(30)])
    assert sequences[0] == sequences[1]
    assert {200, 502, 503} <= set(sequences[0])


def test_latency_is_injected(http: httpx.Client, make_ghcr: MakeGhcr) -> None:
    emu = make_ghcr(latency=0.05)
    started = time.monotonic()
    for _ in range(3):
        http.get(f"{emu.api_url}/users/octo")
    assert time.monotonic() - started >= 0.15


# ----------------------------------------------------------------------------- registry /v2


def test_v2_challenge_and_token_exchange(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    token = ghcr.add_token(login="octo")
    built = images.multiarch(("linux/amd64", "linux/arm64"))
    ghcr.push_built("octo", "app", built, tags=["v1.0.0"])
    challenge = http.get(f"{ghcr.registry_url}/v2/")
    assert challenge.status_code == 401
    assert challenge.headers["www-authenticate"] == (
        f'Bearer realm="{ghcr.registry_url}/token",service="ghcr.io",'
        'scope="repository:user/image:pull"'
    )
    assert challenge.json()["errors"][0]["code"] == "UNAUTHORIZED"
    reg = registry_token(http, ghcr, "octo/app", token)
    assert http.get(f"{ghcr.registry_url}/v2/", headers=auth(reg)).status_code == 200
    unauth = http.get(f"{ghcr.registry_url}/v2/octo/app/manifests/v1.0.0")
    assert unauth.status_code == 401
    assert 'scope="repository:octo/app:pull"' in unauth.headers["www-authenticate"]
    bad = http.get(
        f"{ghcr.registry_url}/token",
        params={"scope": "repository:octo/app:pull", "service": "ghcr.io"},
        auth=("x", "ghp_wrong"),
    )
    assert bad.status_code == 401


def test_manifests_by_tag_and_digest_have_digests_of_their_bytes(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    token = ghcr.add_token(login="octo")
    built = images.multiarch(("linux/amd64", "linux/arm64"))
    ghcr.push_built("octo", "app", built, tags=["v1.0.0"])
    reg = registry_token(http, ghcr, "octo/app", token)
    accept = ", ".join([images.OCI_INDEX, images.OCI_MANIFEST, images.DOCKER_LIST])
    headers = {**auth(reg), "Accept": accept}
    by_tag = http.get(f"{ghcr.registry_url}/v2/octo/app/manifests/v1.0.0", headers=headers)
    assert by_tag.status_code == 200
    assert by_tag.headers["content-type"] == images.OCI_INDEX
    digest = "sha256:" + hashlib.sha256(by_tag.content).hexdigest()
    assert by_tag.headers["docker-content-digest"] == digest == built.digest
    listed = json.loads(by_tag.content)["manifests"]
    assert len(listed) == 4  # two images, two attestations
    for desc in listed:
        child = http.get(
            f"{ghcr.registry_url}/v2/octo/app/manifests/{desc['digest']}", headers=headers
        )
        assert child.status_code == 200
        assert "sha256:" + hashlib.sha256(child.content).hexdigest() == desc["digest"]
        assert len(child.content) == desc["size"]
    head = http.head(f"{ghcr.registry_url}/v2/octo/app/manifests/v1.0.0", headers=headers)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(built.size)
    assert head.headers["docker-content-digest"] == built.digest


def test_accept_negotiation_refuses_a_type_the_client_cannot_read(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    token = ghcr.add_token(login="octo")
    ghcr.push_built("octo", "app", images.multiarch(attest=False), tags=["v1"])
    reg = registry_token(http, ghcr, "octo/app", token)
    url = f"{ghcr.registry_url}/v2/octo/app/manifests/v1"
    only_manifests = http.get(url, headers={**auth(reg), "Accept": images.DOCKER_MANIFEST})
    assert only_manifests.status_code == 404
    assert only_manifests.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert http.get(url, headers={**auth(reg), "Accept": "*/*"}).status_code == 200


def test_delete_on_v2_is_unsupported_as_on_ghcr(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    token = ghcr.add_token(login="octo")
    img = images.image()
    ghcr.push("octo", "app", img.data, img.media_type, tags=["v1"])
    reg = registry_token(http, ghcr, "octo/app", token, "pull,push")
    response = http.delete(
        f"{ghcr.registry_url}/v2/octo/app/manifests/{img.digest}", headers=auth(reg)
    )
    assert response.status_code == 405
    assert response.json()["errors"][0]["code"] == "UNSUPPORTED"
    assert ghcr.version("octo", "app", img.digest) is not None


def test_anonymous_pulls_work_only_on_public_packages(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    img = images.image()
    ghcr.push("octo", "app", img.data, img.media_type, tags=["v1"])
    denied = http.get(
        f"{ghcr.registry_url}/token",
        params={"scope": "repository:octo/app:pull", "service": "ghcr.io"},
    )
    assert denied.status_code == 403
    assert denied.json()["errors"][0]["code"] == "DENIED"
    ghcr.set_visibility("octo", "app", "public")
    reg = registry_token(http, ghcr, "octo/app", None)
    response = http.get(f"{ghcr.registry_url}/v2/octo/app/manifests/v1", headers=auth(reg))
    assert response.status_code == 200
    assert response.content == img.data


def test_tags_list_is_sorted_and_paginates(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    token = ghcr.add_token(login="octo")
    fill(ghcr, "octo", "app", 5)
    reg = registry_token(http, ghcr, "octo/app", token)
    url = f"{ghcr.registry_url}/v2/octo/app/tags/list"
    full = http.get(url, headers=auth(reg)).json()
    assert full == {"name": "octo/app", "tags": ["dev-0", "dev-1", "dev-2", "dev-3", "dev-4"]}
    page = http.get(url, params={"n": 2}, headers=auth(reg))
    assert page.json()["tags"] == ["dev-0", "dev-1"]
    assert 'rel="next"' in page.headers["link"]
    rest = http.get(url, params={"n": 10, "last": "dev-1"}, headers=auth(reg)).json()
    assert rest["tags"] == ["dev-2", "dev-3", "dev-4"]


def test_push_over_http_creates_versions_and_moves_tags(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    token = ghcr.add_token(login="octo")
    reg = registry_token(http, ghcr, "octo/team/app", token, "pull,push")
    base = f"{ghcr.registry_url}/v2/octo/team/app"
    old, new = images.image(label="old"), images.image(label="new")
    for img in (old, new):
        for blob in img.blobs:
            start = http.post(f"{base}/blobs/uploads/", headers=auth(reg))
            assert start.status_code == 202
            location = start.headers["location"]
            patch = http.patch(
                f"{ghcr.registry_url}{location}", content=blob.data[:10], headers=auth(reg)
            )
            assert patch.status_code == 202
            done = http.put(
                f"{ghcr.registry_url}{location}",
                params={"digest": blob.digest},
                content=blob.data[10:],
                headers=auth(reg),
            )
            assert done.status_code == 201
            assert done.headers["docker-content-digest"] == blob.digest
        put = http.put(
            f"{base}/manifests/latest",
            content=img.data,
            headers={**auth(reg), "Content-Type": img.media_type},
        )
        assert put.status_code == 201
        assert put.headers["docker-content-digest"] == img.digest
    states = {s.digest: s.tags for s in ghcr.versions("octo", "team/app")}
    assert states == {new.digest: ("latest",), old.digest: ()}
    fetched = http.get(f"{base}/blobs/{new.blobs[0].digest}", headers=auth(reg))
    assert fetched.content == new.blobs[0].data


def test_push_refuses_a_manifest_whose_blobs_are_missing(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    token = ghcr.add_token(login="octo")
    reg = registry_token(http, ghcr, "octo/app", token, "pull,push")
    img = images.image()
    response = http.put(
        f"{ghcr.registry_url}/v2/octo/app/manifests/v1",
        content=img.data,
        headers={**auth(reg), "Content-Type": img.media_type},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    wrong_digest = http.put(
        f"{ghcr.registry_url}/v2/octo/app/manifests/sha256:{'0' * 64}",
        content=img.data,
        headers={**auth(reg), "Content-Type": img.media_type},
    )
    assert wrong_digest.status_code == 400


def test_a_read_only_token_cannot_push(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    reader = ghcr.add_token(login="octo", scopes={"read:packages"})
    reg = registry_token(http, ghcr, "octo/app", reader, "pull,push")
    response = http.post(f"{ghcr.registry_url}/v2/octo/app/blobs/uploads/", headers=auth(reg))
    assert response.status_code == 403


def test_referrers_api_is_absent_unless_enabled(http: httpx.Client, make_ghcr: MakeGhcr) -> None:
    for enabled in (False, True):
        emu = make_ghcr(referrers_api=enabled)
        token = emu.add_token(login="octo")
        img = images.image()
        sbom = images.referrer(img)
        emu.push_built("octo", "app", img, tags=["v1"])
        emu.push_built("octo", "app", sbom)
        reg = registry_token(http, emu, "octo/app", token)
        response = http.get(
            f"{emu.registry_url}/v2/octo/app/referrers/{img.digest}", headers=auth(reg)
        )
        if not enabled:
            assert response.status_code == 404
            continue
        assert response.status_code == 200
        listed = response.json()["manifests"]
        assert [d["digest"] for d in listed] == [sbom.digest]
        assert listed[0]["artifactType"] == images.DEFAULT_ARTIFACT_TYPE


def test_an_index_whose_children_are_missing_can_be_stored(ghcr: GhcrEmulator) -> None:
    children = [images.image("linux/amd64"), images.image("linux/arm64")]
    idx = images.index(children)
    ghcr.push("octo", "app", idx.data, idx.media_type, tags=["broken"])
    states = ghcr.versions("octo", "app")
    assert [s.digest for s in states] == [idx.digest]
    assert states[0].children == tuple(c.digest for c in children)


# ----------------------------------------------------------------------------- extension, scale


def test_routes_added_by_another_module_get_auth_and_rate_headers(
    http: httpx.Client, ghcr: GhcrEmulator
) -> None:
    token = ghcr.add_token(login="octo")

    def deployments(req: Request) -> Response:
        who = req.require_token().login
        return Response.json([{"repo": req.match["repo"], "creator": {"login": who}}])

    ghcr.add_route(
        "GET",
        r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/deployments",
        deployments,
        kind="rest.deployments.list",
    )
    url = f"{ghcr.api_url}/repos/octo/app/deployments"
    ok = http.get(url, headers=auth(token))
    assert ok.status_code == 200
    assert ok.json() == [{"repo": "app", "creator": {"login": "octo"}}]
    assert ok.headers["x-ratelimit-remaining"] == "4999"
    assert http.get(url).status_code == 401
    assert ghcr.counters["rest.deployments.list"] == 2


def test_5000_versions_listed_by_three_concurrent_clients(make_ghcr: MakeGhcr) -> None:
    emu = make_ghcr(latency=0.005)
    token = emu.add_token(login="octo")
    for n in range(5000):
        data = json.dumps({"schemaVersion": 2, "mediaType": images.OCI_MANIFEST, "n": n}).encode()
        emu.push("octo", "big", data, images.OCI_MANIFEST, created=T0 + timedelta(seconds=n))
    url = versions_url(emu, "octo", "big")
    seen: list[list[str]] = [[], [], []]

    def walk(slot: int) -> None:
        with httpx.Client(headers=auth(token), timeout=30, trust_env=False) as client:
            next_url: str | None = f"{url}?per_page=100"
            while next_url:
                response = client.get(next_url)
                assert response.status_code == 200
                seen[slot].extend(v["name"] for v in response.json())
                next_url = response.links.get("next", {}).get("url")

    threads = [threading.Thread(target=walk, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for names in seen:
        assert len(names) == 5000
        assert len(set(names)) == 5000
    assert emu.counters["rest.versions.list"] == 150


# ----------------------------------------------------------------------------- image builders


def test_image_builders_produce_real_content_addressed_manifests() -> None:
    img = images.image("linux/arm64/v8", T0, layers=2)
    body = img.json()
    assert body["mediaType"] == images.OCI_MANIFEST
    assert [b.digest for b in img.blobs] == [body["config"]["digest"]] + [
        layer["digest"] for layer in body["layers"]
    ]
    config = json.loads(img.blobs[0].data)
    assert (config["os"], config["architecture"], config["variant"]) == ("linux", "arm64", "v8")
    assert img.platform == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert images.image("linux/arm64/v8", T0, layers=2).digest == img.digest
    assert images.image("linux/arm64/v8", T0, layers=2, label="x").digest != img.digest
    docker = images.image(docker=True)
    assert docker.media_type == images.DOCKER_MANIFEST
    assert docker.json()["config"]["mediaType"] == images.DOCKER_CONFIG


def test_buildx_style_index_lists_attestations_with_reference_annotations() -> None:
    built = images.multiarch(("linux/amd64", "linux/arm64"), T0)
    manifests = built.json()["manifests"]
    platforms = [m for m in manifests if m["platform"]["os"] != "unknown"]
    attestations = [m for m in manifests if m["platform"]["os"] == "unknown"]
    assert len(platforms) == 2
    assert len(attestations) == 2
    for att in attestations:
        assert att["annotations"]["vnd.docker.reference.type"] == "attestation-manifest"
        assert att["annotations"]["vnd.docker.reference.digest"] in {p["digest"] for p in platforms}
    walked = list(built.walk())
    assert walked[-1] is built
    assert len(walked) == 5
    docker_list = images.index([images.image(docker=True)], docker=True)
    assert docker_list.json()["mediaType"] == images.DOCKER_LIST


def test_nested_index_walks_children_before_parents_once() -> None:
    shared = images.image("linux/amd64")
    inner = images.index([shared, images.image("linux/arm64")])
    outer = images.index([inner, shared])
    order = [b.digest for b in outer.walk()]
    assert order.index(shared.digest) < order.index(inner.digest) < order.index(outer.digest)
    assert len(order) == len(set(order)) == 4
    assert images.describe(outer.data)[0] == (inner.digest, shared.digest)


def test_cosign_and_oci_referrers() -> None:
    img = images.image()
    assert images.cosign_tag(img.digest) == f"sha256-{img.digest[7:]}.sig"
    assert images.cosign_tag(img.digest, "att").endswith(".att")
    sig = images.cosign_signature(img)
    payload = json.loads(sig.blobs[1].data)
    assert payload["critical"]["image"]["docker-manifest-digest"] == img.digest
    ref = images.referrer(img, "application/spdx+json")
    body = ref.json()
    assert body["subject"] == {
        "mediaType": img.media_type,
        "digest": img.digest,
        "size": img.size,
    }
    assert body["artifactType"] == "application/spdx+json"
    assert body["config"]["digest"] == images.sha256(b"{}")
    assert images.describe(ref.data) == ((), img.digest, "application/spdx+json")


def test_basic_auth_header_on_rest_is_accepted(http: httpx.Client, ghcr: GhcrEmulator) -> None:
    token = ghcr.add_token(login="octo")
    fill(ghcr, "octo", "app", 1)
    basic = base64.b64encode(f"octo:{token}".encode()).decode()
    response = http.get(
        versions_url(ghcr, "octo", "app"), headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200
