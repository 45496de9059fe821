"""Contract tests of the GHCR adapter against recorded GitHub / ghcr.io answers (pytest-httpx)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.errors import AuthError, RateLimited, RegistryError, UsageError
from tagkeeper.inventory import (
    OCI_INDEX,
    OCI_MANIFEST,
    DeleteStatus,
    ManifestMissing,
    ManifestUnreadable,
    Version,
)
from tagkeeper.registries.factory import BackendOptions, detect_kind, open_backend, token_from_env
from tagkeeper.registries.ghcr import GhcrBackend, split_image, token_kind
from tagkeeper.secret import Secret
from tagkeeper.transport import DEFAULT_MAX_WAIT, RetryPolicy
from tests.unit.fakes import FakeTime

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from pytest_httpx import HTTPXMock

API = "https://api.github.test"
REG = "https://ghcr.test"
TOKEN = "ghp_contractTestToken0123456789"
NOW = 1_700_000_000.0


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fake_digest(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def version_json(n: int, tags: list[str] | None = None, digest: str | None = None) -> object:
    return {
        "id": n,
        "name": digest or fake_digest(n),
        "created_at": f"2024-01-{1 + n % 28:02d}T00:00:{n % 60:02d}Z",
        "metadata": {"package_type": "container", "container": {"tags": tags or []}},
    }


def make_backend(
    client: httpx.Client,
    time: FakeTime,
    image: str = "ghcr.io/acme/app",
    *,
    token: str | None = TOKEN,
    **kw: object,
) -> GhcrBackend:
    return GhcrBackend(
        image,
        client,
        token=Secret(token) if token else None,
        api_url=API,
        registry_url=REG,
        sleep=time.sleep,
        clock=time.clock,
        rng=random.Random(1),  # noqa: S311 - jitter in tests
        retry=RetryPolicy(attempts=3),
        **kw,  # type: ignore[arg-type]
    )


def add_org_owner(httpx_mock: HTTPXMock, owner: str = "acme") -> None:
    httpx_mock.add_response(url=f"{API}/user", json={"login": "someone", "type": "User"})
    httpx_mock.add_response(
        url=f"{API}/users/{owner}", json={"login": owner, "type": "Organization"}
    )


def list_url(base: str, page: int) -> str:
    return f"{base}/versions?per_page=100&page={page}"


ORG_BASE = f"{API}/orgs/acme/packages/container/app"


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    # one client for the module: building an SSL context per test is slow, and
    # pytest-httpx patches the transport class, so every test still sees its own mocks
    with httpx.Client() as shared:
        yield shared


# --------------------------------------------------------------------- names and owners


def test_image_names_split_into_owner_and_nested_package() -> None:
    assert split_image("ghcr.io/acme/app") == ("ghcr.io", "acme", "app")
    assert split_image("ghcr.io/acme/team/app") == ("ghcr.io", "acme", "team/app")
    with pytest.raises(UsageError, match="tag or digest"):
        split_image("ghcr.io/acme/app:v1")
    with pytest.raises(UsageError, match="no package"):
        split_image("ghcr.io/acme")


def test_token_kinds_come_from_prefixes_only() -> None:
    assert token_kind(Secret("ghp_x")) == "classic"
    assert token_kind(Secret("github_pat_x")) == "fine-grained"
    assert token_kind(Secret("ghs_x")) == "github-token"
    assert token_kind(Secret("gho_x")) == "oauth"
    assert token_kind(Secret("zzz")) == "unknown"
    assert token_kind(None) == "none"


def test_token_from_flag_then_github_token_then_gh_token() -> None:
    env = {"GITHUB_TOKEN": "a", "GH_TOKEN": "b"}
    assert token_from_env("flag", env) == Secret("flag")
    assert token_from_env(None, env) == Secret("a")
    assert token_from_env(None, {"GH_TOKEN": "b"}) == Secret("b")
    assert token_from_env(None, {}) is None


def test_token_lookup_strips_whitespace_and_skips_blank_sources() -> None:
    assert token_from_env(" flag\n", {}) == Secret("flag")
    assert token_from_env(None, {"GITHUB_TOKEN": "a\n"}) == Secret("a")
    # a blank flag or variable (an unset secret in a workflow) is not a token
    assert token_from_env("  ", {"GITHUB_TOKEN": "\n", "GH_TOKEN": "b"}) == Secret("b")
    assert token_from_env("", {"GITHUB_TOKEN": " "}) is None


def test_deployments_use_the_same_token_lookup() -> None:
    from tagkeeper.rollback.github import repository_and_token

    env = {"GITHUB_REPOSITORY": "o/r", "GITHUB_TOKEN": " \n", "GH_TOKEN": "tok\n"}
    _, secret, _ = repository_and_token(env)
    assert secret == Secret("tok")
    _, flagged, _ = repository_and_token(env, token="flag ")
    assert flagged == Secret("flag")
    _, none, _ = repository_and_token({"GITHUB_REPOSITORY": "o/r"})
    assert not none


def test_ghcr_is_detected_by_host_and_a_hostless_image_needs_kind() -> None:
    assert detect_kind("ghcr.io/acme/app", BackendOptions()) == "ghcr"
    assert detect_kind("registry.test/acme/app", BackendOptions(kind="ghcr")) == "ghcr"
    with pytest.raises(UsageError, match="which registry"):
        detect_kind("acme/app", BackendOptions())


def test_open_backend_refuses_plain_http_to_a_remote_api(client: httpx.Client) -> None:
    options = BackendOptions(api_url="http://api.example.com", token=Secret(TOKEN))
    with pytest.raises(UsageError, match="plain http"):
        open_backend("ghcr.io/acme/app", options, client)


def test_open_backend_takes_the_api_from_github_api_url(client: httpx.Client) -> None:
    options = BackendOptions(
        token=Secret(TOKEN), environ={"GITHUB_API_URL": "https://ghe.example.com/api/v3/"}
    )
    backend = open_backend("ghcr.io/acme/app", options, client)
    assert isinstance(backend, GhcrBackend)
    assert backend.api_url == "https://ghe.example.com/api/v3"
    assert backend.registry_url == "https://ghcr.io"
    flagged = open_backend(
        "ghcr.io/acme/app",
        BackendOptions(api_url="http://127.0.0.1:9/api/v3", environ={"GITHUB_API_URL": "x"}),
        client,
    )
    assert isinstance(flagged, GhcrBackend)
    assert flagged.api_url == "http://127.0.0.1:9/api/v3"  # the flag wins; loopback http is ok


def test_an_organisation_owner_uses_the_orgs_endpoints(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_org_owner(httpx_mock)
    httpx_mock.add_response(url=list_url(ORG_BASE, 1), json=[version_json(1, ["v1"])])
    backend = make_backend(client, time)
    versions = backend.versions()
    assert [v.tags for v in versions] == [frozenset({"v1"})]
    assert backend.owner_kind == "org"
    sent = httpx_mock.get_requests()
    assert sent[-1].headers["accept"] == "application/vnd.github+json"
    assert sent[-1].headers["x-github-api-version"] == "2022-11-28"
    assert sent[-1].headers["authorization"] == f"Bearer {TOKEN}"


def test_another_user_uses_the_users_endpoints_and_nested_names_are_encoded(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    httpx_mock.add_response(url=f"{API}/user", json={"login": "me"})
    httpx_mock.add_response(url=f"{API}/users/octo", json={"login": "octo", "type": "User"})
    base = f"{API}/users/octo/packages/container/team%2Fapp"
    httpx_mock.add_response(url=list_url(base, 1), json=[])
    backend = make_backend(client, time, "ghcr.io/octo/team/app")
    assert backend.versions() == ()
    assert backend.owner_kind == "user"
    assert backend.display == "ghcr.io/octo/team/app"


def test_the_tokens_own_user_uses_user_packages(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    httpx_mock.add_response(url=f"{API}/user", json={"login": "Octo"})
    base = f"{API}/user/packages/container/app"
    httpx_mock.add_response(url=list_url(base, 1), json=[version_json(3)])
    backend = make_backend(client, time, "ghcr.io/octo/app")
    assert len(backend.versions()) == 1
    assert backend.owner_kind == "self"
    assert backend.stats.by_kind == {"user": 1, "list": 1}  # no /users lookup needed


def test_a_workflow_token_skips_the_self_check(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    httpx_mock.add_response(
        url=f"{API}/user",
        status_code=403,
        json={"message": "Resource not accessible by integration"},
    )
    httpx_mock.add_response(url=f"{API}/users/acme", json={"type": "Organization"})
    httpx_mock.add_response(url=list_url(ORG_BASE, 1), json=[])
    backend = make_backend(client, time, token="ghs_workflow0123")
    assert backend.versions() == ()
    assert backend.owner_kind == "org"


# --------------------------------------------------------------------------- pagination


def test_the_last_page_is_read_from_link_and_the_rest_fetched_in_parallel(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_org_owner(httpx_mock)
    link = f'<{list_url(ORG_BASE, 2)}>; rel="next", <{list_url(ORG_BASE, 4)}>; rel="last"'
    for page in (1, 2, 3, 4):
        first = (page - 1) * 100 + 1
        count = 100 if page < 4 else 37
        etag = f'W/"page{page}"'
        headers = {"etag": etag, **({"link": link} if page == 1 else {})}
        httpx_mock.add_response(
            url=list_url(ORG_BASE, page),
            json=[version_json(n) for n in range(first, first + count)],
            headers=headers,
        )
        # the second listing, which confirms the first, is conditional: unchanged pages
        # answer 304 (not counted against the primary limit by GitHub)
        httpx_mock.add_response(
            url=list_url(ORG_BASE, page),
            status_code=304,
            headers={"etag": etag},
            match_headers={"If-None-Match": etag},
        )
    backend = make_backend(client, time)
    versions = backend.versions()
    assert len(versions) == 337
    assert len({v.digest for v in versions}) == 337
    assert backend.stats.by_kind == {"user": 2, "list": 4, "list-verify": 4}
    # deterministic order: newest first, ties by id (largest first)
    keys = [(v.created, int(v.key or 0)) for v in versions]
    assert keys == sorted(keys, reverse=True)
    assert backend.versions() is versions  # listed once per run


def test_versions_carry_id_tags_and_time(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_org_owner(httpx_mock)
    httpx_mock.add_response(
        url=list_url(ORG_BASE, 1), json=[version_json(42, ["v1.0.0", "latest"])]
    )
    (version,) = make_backend(client, time).versions()
    assert version.key == "42"
    assert version.digest == fake_digest(42)
    assert version.tags == frozenset({"v1.0.0", "latest"})
    assert version.created.tzinfo is not None


# ------------------------------------------------------------------ errors and retries


def test_bad_credentials_are_an_auth_error_without_the_token(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    httpx_mock.add_response(url=f"{API}/user", status_code=401, json={"message": "Bad credentials"})
    backend = make_backend(client, time)
    with pytest.raises(AuthError) as info:
        backend.versions()
    assert "Bad credentials" in str(info.value)
    assert info.value.hint
    assert "invalid or expired" in info.value.hint
    for text in (
        str(info.value),
        info.value.diagnostics(),
        repr(info.value),
        caplog.text,
        repr(backend),
        repr(backend.token),
    ):
        assert TOKEN not in text


def test_forbidden_listing_is_an_auth_error_with_a_permission_hint(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_org_owner(httpx_mock)
    httpx_mock.add_response(
        url=list_url(ORG_BASE, 1), status_code=403, json={"message": "Must have admin rights"}
    )
    with pytest.raises(AuthError) as info:
        make_backend(client, time).versions()
    assert info.value.hint
    assert "read:packages" in info.value.hint


def test_a_missing_package_is_a_registry_error_explaining_404(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_org_owner(httpx_mock)
    httpx_mock.add_response(
        url=list_url(ORG_BASE, 1), status_code=404, json={"message": "Package not found."}
    )
    with pytest.raises(RegistryError) as info:
        make_backend(client, time).versions()
    assert "Package not found." in info.value.message
    assert info.value.hint
    assert "cannot see a private package" in info.value.hint


def test_an_unknown_owner_says_so(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    httpx_mock.add_response(url=f"{API}/user", json={"login": "me"})
    httpx_mock.add_response(url=f"{API}/users/acme", status_code=404, json={"message": "Not Found"})
    with pytest.raises(RegistryError, match="no user or organisation 'acme'"):
        make_backend(client, time).versions()


def test_502_and_503_are_retried_then_the_listing_succeeds(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_org_owner(httpx_mock)
    httpx_mock.add_response(url=list_url(ORG_BASE, 1), status_code=502)
    httpx_mock.add_response(
        url=list_url(ORG_BASE, 1), status_code=503, headers={"retry-after": "4"}
    )
    httpx_mock.add_response(url=list_url(ORG_BASE, 1), json=[version_json(1)])
    backend = make_backend(client, time)
    assert len(backend.versions()) == 1
    assert backend.stats.by_kind["list"] == 3
    assert time.sleeps[-1] == 4.0  # retry-after honoured


# --------------------------------------------------------------------------- deletes


def listed_version(n: int, tags: frozenset[str] = frozenset()) -> Version:
    from datetime import UTC, datetime

    return Version(fake_digest(n), tags, datetime(2024, 1, 1, tzinfo=UTC), key=str(n))


def ready_backend(
    httpx_mock: HTTPXMock,
    client: httpx.Client,
    time: FakeTime,
    *,
    token: str = TOKEN,
    max_wait: float = DEFAULT_MAX_WAIT,
) -> GhcrBackend:
    add_org_owner(httpx_mock)
    backend = make_backend(client, time, token=token, max_wait=max_wait)
    backend.owner_kind  # noqa: B018 - resolves the owner (two requests)
    return backend


def test_delete_statuses_map_to_results(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    backend = ready_backend(httpx_mock, client, time)
    url = f"{ORG_BASE}/versions/"
    httpx_mock.add_response(method="DELETE", url=url + "1", status_code=204)
    httpx_mock.add_response(method="DELETE", url=url + "2", status_code=404, json={"message": "x"})
    httpx_mock.add_response(
        method="DELETE",
        url=url + "3",
        status_code=400,
        json={
            "message": "You cannot delete the last version of a package. You must delete "
            "the package instead."
        },
    )
    httpx_mock.add_response(
        method="DELETE",
        url=url + "4",
        status_code=400,
        json={
            "message": "Publicly visible package versions with more than 5000 downloads "
            "cannot be deleted. Contact GitHub support for further assistance."
        },
    )
    results = [backend.delete(listed_version(n)) for n in (1, 2, 3, 4)]
    assert [r.status for r in results] == [
        DeleteStatus.DELETED,
        DeleteStatus.ALREADY_GONE,
        DeleteStatus.REFUSED,
        DeleteStatus.REFUSED,
    ]
    assert "delete the whole package" in results[2].detail
    assert "GitHub Support" in results[3].detail
    assert backend.stats.by_kind["delete"] == 4


def test_a_missing_permission_stops_the_run_and_names_what_is_missing(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    backend = ready_backend(httpx_mock, client, time)
    httpx_mock.add_response(
        method="DELETE",
        url=f"{ORG_BASE}/versions/1",
        status_code=403,
        json={"message": "Must have admin rights to Repository."},
    )
    with pytest.raises(AuthError) as caught:
        backend.delete(listed_version(1))
    error = caught.value
    assert error.exit_code == 4
    assert "not an admin of the package" in error.message
    assert "\n" not in error.message  # one line
    assert "Admin role" in (error.hint or "")
    assert backend.stats.by_kind["delete"] == 1
    assert TOKEN not in error.diagnostics()


@pytest.mark.parametrize(
    ("token", "answer", "missing", "fix"),
    [
        (
            TOKEN,
            {
                "json": {
                    "message": "You need at least delete:packages scope to delete a package "
                    "version."
                },
                "headers": {"X-Accepted-OAuth-Scopes": "delete:packages, read:packages"},
            },
            "lacks the delete:packages scope",
            "delete:packages",
        ),
        (
            "ghs_workflow0123",
            {
                "json": {"message": "Resource not accessible by integration"},
                "headers": {"X-Accepted-GitHub-Permissions": "packages=write"},
            },
            "lacks 'packages: write'",
            "permissions: packages: write",
        ),
        (
            "ghs_workflow0123",
            {"json": {"message": "Resource not accessible by integration"}},
            "Manage Actions access",
            "Admin role",
        ),
    ],
    ids=["classic-scope", "workflow-permission", "workflow-actions-access"],
)
def test_each_kind_of_refusal_names_its_own_missing_permission(
    *,
    httpx_mock: HTTPXMock,
    client: httpx.Client,
    time: FakeTime,
    token: str,
    answer: dict[str, object],
    missing: str,
    fix: str,
) -> None:
    backend = ready_backend(httpx_mock, client, time, token=token)
    httpx_mock.add_response(
        method="DELETE", url=f"{ORG_BASE}/versions/1", status_code=403, **answer  # type: ignore[arg-type]
    )
    with pytest.raises(AuthError) as caught:
        backend.delete(listed_version(1))
    assert missing in caught.value.message
    assert fix in (caught.value.hint or "")


def test_delete_permission_is_probed_up_front_where_github_shows_it(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    # a classic PAT shows its scopes: without delete:packages, refused before any DELETE
    httpx_mock.add_response(
        url=f"{API}/user",
        json={"login": "someone"},
        headers={"X-OAuth-Scopes": "read:packages, repo"},
    )
    reader = make_backend(client, time)
    with pytest.raises(AuthError, match=r"lacks the delete:packages scope \(it has: read:pack"):
        reader.check_delete()
    # fine-grained tokens cannot delete package versions at all
    with pytest.raises(AuthError, match="fine-grained"):
        make_backend(client, time, token="github_pat_0123").check_delete()
    # a workflow token cannot be probed: the first refusal will say what is missing
    make_backend(client, time, token="ghs_workflow0123").check_delete()
    assert [r.method for r in httpx_mock.get_requests()] == ["GET"]


def test_a_classic_token_with_the_delete_scope_passes_the_probe(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    httpx_mock.add_response(
        url=f"{API}/user",
        json={"login": "someone"},
        headers={"X-OAuth-Scopes": "delete:packages, read:packages"},
    )
    make_backend(client, time).check_delete()


def test_a_secondary_limit_cuts_the_pacer_waits_as_told_and_retries(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    backend = ready_backend(httpx_mock, client, time)
    url = f"{ORG_BASE}/versions/1"
    httpx_mock.add_response(
        method="DELETE",
        url=url,
        status_code=403,
        headers={"retry-after": "30"},
        json={"message": "You have exceeded a secondary rate limit. Please wait a few minutes."},
    )
    httpx_mock.add_response(method="DELETE", url=url, status_code=204)
    before = backend.pacer.rate
    result = backend.delete(listed_version(1))
    assert result.status is DeleteStatus.DELETED
    assert backend.pacer.limits_seen == 1
    assert backend.pacer.rate <= before / 2
    assert sum(time.sleeps) >= 30.0
    assert backend.stats.by_kind["delete"] == 2


def test_a_429_without_message_is_a_secondary_limit_too(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    backend = ready_backend(httpx_mock, client, time)
    url = f"{ORG_BASE}/versions/1"
    httpx_mock.add_response(method="DELETE", url=url, status_code=429, headers={"retry-after": "5"})
    httpx_mock.add_response(method="DELETE", url=url, status_code=204)
    assert backend.delete(listed_version(1)).status is DeleteStatus.DELETED
    assert backend.pacer.limits_seen == 1


def test_the_primary_limit_stops_the_run_when_waiting_is_not_allowed(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    backend = ready_backend(httpx_mock, client, time)
    httpx_mock.add_response(
        method="GET",
        url=f"{ORG_BASE}/versions/1",
        status_code=403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW + 900))},
        json={"message": "API rate limit exceeded for user ID 1."},
    )
    with pytest.raises(RateLimited) as info:
        backend.current_tags(listed_version(1))
    assert info.value.hint
    assert "--max-wait" in info.value.hint
    assert time.sleeps == []


def test_the_primary_limit_is_waited_out_when_max_wait_allows(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    backend = ready_backend(httpx_mock, client, time, max_wait=3600.0)
    url = f"{ORG_BASE}/versions/1"
    httpx_mock.add_response(
        method="GET",
        url=url,
        status_code=403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW + 900))},
        json={"message": "API rate limit exceeded for user ID 1."},
    )
    httpx_mock.add_response(method="GET", url=url, json=version_json(1, ["v2"]))
    assert backend.current_tags(listed_version(1)) == frozenset({"v2"})
    assert time.now >= NOW + 900


def test_low_remaining_requests_are_spread_until_the_reset_when_waiting_is_allowed(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    backend = ready_backend(httpx_mock, client, time, max_wait=3600.0)
    url = f"{ORG_BASE}/versions/1"
    headers = {"x-ratelimit-remaining": "9", "x-ratelimit-reset": str(int(NOW + 100))}
    httpx_mock.add_response(method="GET", url=url, json=version_json(1), headers=headers)
    httpx_mock.add_response(method="GET", url=url, json=version_json(1), headers=headers)
    backend.current_tags(listed_version(1))
    assert time.sleeps == []
    backend.current_tags(listed_version(1))
    assert time.sleeps == [pytest.approx(10.0)]  # 100 s left for 9 requests


def test_current_tags_of_a_deleted_version_is_none(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    backend = ready_backend(httpx_mock, client, time)
    httpx_mock.add_response(url=f"{ORG_BASE}/versions/7", status_code=404, json={"message": "x"})
    assert backend.current_tags(listed_version(7)) is None


# ------------------------------------------------------------------------- manifests


INDEX = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": fake_digest(100), "size": 1}],
    }
).encode()
INDEX_DIGEST = digest_of(INDEX)


def add_token_exchange(httpx_mock: HTTPXMock, bearer: str = "regtoken") -> None:
    httpx_mock.add_response(
        url=f"{REG}/token?scope=repository%3Aacme%2Fapp%3Apull&service=ghcr.io",
        json={"token": bearer},
    )


def test_manifests_are_read_after_the_token_exchange_and_only_once(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_token_exchange(httpx_mock)
    httpx_mock.add_response(
        url=f"{REG}/v2/acme/app/manifests/{INDEX_DIGEST}",
        content=INDEX,
        headers={"content-type": OCI_INDEX},
        match_headers={"Authorization": "Bearer regtoken"},
    )
    backend = make_backend(client, time)
    info = backend.reader.manifest(INDEX_DIGEST)
    again = backend.reader.manifest(INDEX_DIGEST)
    assert info == again
    assert info.children == (fake_digest(100),)
    assert info.media_type == OCI_INDEX
    token_request = httpx_mock.get_requests()[0]
    expected = base64.b64encode(f"tagkeeper:{TOKEN}".encode()).decode()
    assert token_request.headers["authorization"] == f"Basic {expected}"
    manifest_request = httpx_mock.get_requests()[1]
    for media in ("oci.image.index", "oci.image.manifest", "manifest.list.v2", "manifest.v2"):
        assert media in manifest_request.headers["accept"]
    assert backend.stats.by_kind == {"token": 1, "manifest-get": 1}


def test_plain_children_of_a_read_index_cost_no_request_unless_asked(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_token_exchange(httpx_mock)
    httpx_mock.add_response(url=f"{REG}/v2/acme/app/manifests/{INDEX_DIGEST}", content=INDEX)
    backend = make_backend(client, time)
    backend.reader.manifest(INDEX_DIGEST)
    child = backend.reader.manifest(fake_digest(100))
    assert child.children == ()
    assert child.media_type == OCI_MANIFEST
    assert backend.stats.by_kind == {"token": 1, "manifest-get": 1}
    # asked to, the reader fetches them like any other manifest
    add_token_exchange(httpx_mock)
    httpx_mock.add_response(url=f"{REG}/v2/acme/app/manifests/{INDEX_DIGEST}", content=INDEX)
    strict = make_backend(client, time, read_plain_children=True)
    strict.reader.manifest(INDEX_DIGEST)
    httpx_mock.add_response(url=f"{REG}/v2/acme/app/manifests/{fake_digest(100)}", status_code=404)
    with pytest.raises(ManifestUnreadable):  # a request was sent (and answered 404)
        strict.reader.manifest(fake_digest(100))
    assert strict.stats.by_kind["manifest-get"] == 2


def test_content_that_does_not_match_its_digest_is_unreadable(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_token_exchange(httpx_mock)
    wrong = fake_digest(5)
    httpx_mock.add_response(url=f"{REG}/v2/acme/app/manifests/{wrong}", content=INDEX)
    reader = make_backend(client, time).reader
    with pytest.raises(ManifestUnreadable, match="does not match"):
        reader.manifest(wrong)
    with pytest.raises(ManifestUnreadable):  # remembered: not read again
        reader.manifest(wrong)


def test_a_missing_manifest_is_unreadable_not_fatal(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_token_exchange(httpx_mock)
    httpx_mock.add_response(
        url=f"{REG}/v2/acme/app/manifests/{INDEX_DIGEST}",
        status_code=404,
        json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]},
    )
    reader = make_backend(client, time).reader
    for _ in range(2):  # a 404 is the registry's answer "missing", remembered as such
        with pytest.raises(ManifestMissing, match="manifest unknown"):
            reader.manifest(INDEX_DIGEST)


def test_a_failed_manifest_read_is_unreadable_not_missing(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_token_exchange(httpx_mock)
    httpx_mock.add_response(
        url=f"{REG}/v2/acme/app/manifests/{INDEX_DIGEST}",
        status_code=400,
        json={"errors": [{"code": "MANIFEST_INVALID", "message": "bad"}]},
    )
    with pytest.raises(ManifestUnreadable) as caught:
        make_backend(client, time).reader.manifest(INDEX_DIGEST)
    assert not isinstance(caught.value, ManifestMissing)


def test_a_registry_challenge_is_followed_on_the_same_host_only(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_token_exchange(httpx_mock, "stale")
    url = f"{REG}/v2/acme/app/manifests/{INDEX_DIGEST}"
    httpx_mock.add_response(
        url=url,
        status_code=401,
        headers={
            "www-authenticate": f'Bearer realm="{REG}/token",service="ghcr.io",'
            'scope="repository:acme/app:pull"'
        },
    )
    add_token_exchange(httpx_mock, "fresh")
    httpx_mock.add_response(url=url, content=INDEX, match_headers={"Authorization": "Bearer fresh"})
    assert make_backend(client, time).reader.manifest(INDEX_DIGEST).children


def test_a_challenge_pointing_elsewhere_never_gets_the_token(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_token_exchange(httpx_mock)
    httpx_mock.add_response(
        url=f"{REG}/v2/acme/app/manifests/{INDEX_DIGEST}",
        status_code=401,
        headers={"www-authenticate": 'Bearer realm="https://evil.test/token",service="x"'},
    )
    with pytest.raises(RegistryError, match="another host"):
        make_backend(client, time).reader.manifest(INDEX_DIGEST)
    assert all(r.url.host != "evil.test" for r in httpx_mock.get_requests())


def test_a_refused_token_exchange_is_an_auth_error(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    httpx_mock.add_response(
        url=f"{REG}/token?scope=repository%3Aacme%2Fapp%3Apull&service=ghcr.io",
        status_code=403,
        json={"errors": [{"code": "DENIED", "message": "denied"}]},
    )
    with pytest.raises(AuthError) as info:
        make_backend(client, time).reader.manifest(INDEX_DIGEST)
    assert TOKEN not in info.value.diagnostics()


def test_the_disk_cache_skips_the_registry_on_the_next_run_and_rejects_tampering(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime, tmp_path: Path
) -> None:
    add_token_exchange(httpx_mock)
    httpx_mock.add_response(url=f"{REG}/v2/acme/app/manifests/{INDEX_DIGEST}", content=INDEX)
    first = make_backend(client, time, manifest_cache=tmp_path)
    first.reader.manifest(INDEX_DIGEST)
    second = make_backend(client, time, manifest_cache=tmp_path)
    assert second.reader.manifest(INDEX_DIGEST).children == (fake_digest(100),)
    assert second.stats.total == 0
    # a damaged cache entry is never trusted: it is read from the registry again
    (tmp_path / "sha256" / INDEX_DIGEST.split(":")[1]).write_bytes(b"{}")
    add_token_exchange(httpx_mock)
    httpx_mock.add_response(url=f"{REG}/v2/acme/app/manifests/{INDEX_DIGEST}", content=INDEX)
    third = make_backend(client, time, manifest_cache=tmp_path)
    assert third.reader.manifest(INDEX_DIGEST).children == (fake_digest(100),)
    assert third.stats.by_kind == {"token": 1, "manifest-get": 1}


def test_referrers_come_from_the_tag_schema_index(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    subject = fake_digest(100)
    add_org_owner(httpx_mock)
    httpx_mock.add_response(
        url=list_url(ORG_BASE, 1),
        json=[
            version_json(1, ["v1"], digest=subject),
            version_json(2, ["sha256-" + subject.split(":")[1]], digest=INDEX_DIGEST),
        ],
    )
    add_token_exchange(httpx_mock)
    httpx_mock.add_response(url=f"{REG}/v2/acme/app/manifests/{INDEX_DIGEST}", content=INDEX)
    reader = make_backend(client, time).reader
    assert list(reader.referrers(subject)) == [fake_digest(100)]
    assert list(reader.referrers(fake_digest(999))) == []


def test_a_challenge_over_plain_http_never_gets_the_token(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_token_exchange(httpx_mock)
    httpx_mock.add_response(
        url=f"{REG}/v2/acme/app/manifests/{INDEX_DIGEST}",
        status_code=401,
        headers={"www-authenticate": 'Bearer realm="http://ghcr.test/token",service="ghcr.io"'},
    )
    with pytest.raises(RegistryError, match="over http://") as info:
        make_backend(client, time).reader.manifest(INDEX_DIGEST)
    assert "https" in info.value.message
    assert TOKEN not in info.value.diagnostics()
    # the first exchange went to the https realm; nothing was sent over http
    assert all(r.url.scheme == "https" for r in httpx_mock.get_requests())


def test_plain_http_realms_are_accepted_on_loopback(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    local = "http://127.0.0.1:5999"
    httpx_mock.add_response(
        url=f"{local}/token?scope=repository%3Aacme%2Fapp%3Apull&service=ghcr.io",
        json={"token": "local"},
    )
    httpx_mock.add_response(
        url=f"{local}/v2/acme/app/manifests/{INDEX_DIGEST}",
        content=INDEX,
        match_headers={"Authorization": "Bearer local"},
    )
    backend = GhcrBackend(
        "ghcr.io/acme/app", client, token=Secret(TOKEN), api_url=API, registry_url=local,
        sleep=time.sleep, clock=time.clock,
    )  # fmt: skip
    assert backend.reader.manifest(INDEX_DIGEST).children == (fake_digest(100),)


def test_a_realm_that_is_not_a_url_is_refused(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_token_exchange(httpx_mock)
    httpx_mock.add_response(
        url=f"{REG}/v2/acme/app/manifests/{INDEX_DIGEST}",
        status_code=401,
        headers={"www-authenticate": 'Bearer realm="/token",service="ghcr.io"'},
    )
    with pytest.raises(RegistryError, match="not an http"):
        make_backend(client, time).reader.manifest(INDEX_DIGEST)
    assert len(httpx_mock.get_requests()) == 2  # the first exchange and the manifest


HTML = "<html><body>Sign in to the guest network</body></html>"


def assert_portal_error(error: RegistryError, where: str) -> None:
    message = error.diagnostics()
    assert f"ghcr.io/acme/app: {where}" in message
    assert "is not JSON but text/html" in message
    assert "--api-url" in message
    assert TOKEN not in message


def test_a_portal_page_instead_of_the_user_is_a_registry_error(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    httpx_mock.add_response(url=f"{API}/user", text=HTML, headers={"content-type": "text/html"})
    with pytest.raises(RegistryError) as info:
        make_backend(client, time).versions()
    assert_portal_error(info.value, "the token's user")


def test_a_portal_page_instead_of_the_versions_list_is_a_registry_error(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_org_owner(httpx_mock)
    httpx_mock.add_response(
        url=list_url(ORG_BASE, 1), text=HTML, headers={"content-type": "text/html"}
    )
    with pytest.raises(RegistryError) as info:
        make_backend(client, time).versions()
    assert_portal_error(info.value, "the versions list")


def test_a_portal_page_for_the_owner_or_a_version_is_a_registry_error(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    httpx_mock.add_response(url=f"{API}/user", json={"login": "someone"})
    httpx_mock.add_response(url=f"{API}/users/acme", text=HTML)
    with pytest.raises(RegistryError, match=r"the owner 'acme'.*not JSON"):
        make_backend(client, time).versions()
    backend = ready_backend(httpx_mock, client, time)
    httpx_mock.add_response(url=f"{ORG_BASE}/versions/7", text=HTML)
    with pytest.raises(RegistryError, match=r"the package version.*not JSON"):
        backend.current_tags(listed_version(7))


def test_a_portal_page_from_the_token_service_is_a_registry_error(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    httpx_mock.add_response(
        url=f"{REG}/token?scope=repository%3Aacme%2Fapp%3Apull&service=ghcr.io", text=HTML
    )
    with pytest.raises(RegistryError, match=r"token service.*not JSON") as info:
        make_backend(client, time).reader.manifest(INDEX_DIGEST)
    assert info.value.hint is not None
    assert "proxy" in info.value.hint.lower()


def test_resolving_a_tag_is_one_head_after_the_token_exchange_and_no_rest_call(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    add_token_exchange(httpx_mock)
    httpx_mock.add_response(
        method="HEAD",
        url=f"{REG}/v2/acme/app/manifests/v1.2.3",
        headers={"docker-content-digest": INDEX_DIGEST, "content-type": OCI_INDEX},
        match_headers={"Authorization": "Bearer regtoken"},
    )
    backend = make_backend(client, time)
    assert backend.resolve_tag("v1.2.3") == INDEX_DIGEST
    assert all(r.url.host == "ghcr.test" for r in httpx_mock.get_requests())
    assert backend.stats.by_kind == {"token": 1, "manifest-head": 1}


def test_a_public_package_resolves_anonymously(
    httpx_mock: HTTPXMock, client: httpx.Client, time: FakeTime
) -> None:
    def anonymous(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        return httpx.Response(200, json={"token": "anon"})

    httpx_mock.add_callback(
        anonymous, url=f"{REG}/token?scope=repository%3Aacme%2Fapp%3Apull&service=ghcr.io"
    )
    httpx_mock.add_response(
        method="HEAD",
        url=f"{REG}/v2/acme/app/manifests/v1.2.3",
        status_code=404,
        json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]},
        match_headers={"Authorization": "Bearer anon"},
    )
    assert make_backend(client, time, token=None).resolve_tag("v1.2.3") is None
