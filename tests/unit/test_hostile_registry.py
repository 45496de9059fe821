"""A hostile registry: answers that lie, loop, drip, inflate or carry text meant for a
terminal or a CI log. Each test is one thing a registry (or what answers in its place)
did to tagkeeper; each ends in a clear error or a fail-closed plan, never a traceback,
a token in a message, or an image deleted on the word of an unverified answer.
"""

from __future__ import annotations

import gzip
import json
import re
import ssl
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.errors import ExitCode, RateLimited, RegistryError, TagkeeperError, UsageError
from tagkeeper.inventory import ManifestUnreadable
from tagkeeper.registries.credentials import Credentials
from tagkeeper.registries.ghcr import GhcrBackend
from tagkeeper.registries.oci import OciBackend
from tagkeeper.retention.planner import Policy
from tagkeeper.retention.runner import plan_image
from tagkeeper.secret import Secret, token_from_env
from tagkeeper.transport import RetryPolicy, build_client
from tests.emulators import images as im
from tests.unit.fakes import FakeTime
from tests.unit.oci_fake import HOST, FakeRegistry, serve

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pytest_httpx import HTTPXMock

NOW = datetime(2026, 1, 1, tzinfo=UTC)
JAN = datetime(2024, 1, 10, tzinfo=UTC)
FEB = datetime(2024, 2, 10, tzinfo=UTC)
REG = f"http://{HOST}/v2/app"


@pytest.fixture
def registry(httpx_mock: HTTPXMock) -> FakeRegistry:
    return serve(httpx_mock)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


def backend(client: httpx.Client, **kw: object) -> OciBackend:
    kw.setdefault("retry", RetryPolicy(attempts=1, base=0.0))
    kw.setdefault("sleep", lambda _s: None)
    return OciBackend(f"{HOST}/app", client, now=NOW, workers=1, **kw)  # type: ignore[arg-type]


def assert_clean(text: str) -> None:
    """Nothing in ``text`` can end a line, drive a terminal or be a workflow command."""
    assert "\n" not in text
    assert "\r" not in text
    assert "\x1b" not in text
    assert "::" not in text
    assert "\u202e" not in text


class Drip(httpx.SyncByteStream):
    """An answer that never ends: a byte every ``every`` seconds (counts what it sent)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        while True:
            time.sleep(self.every)
            self.sent += 1
            yield b" "


class Endless(httpx.SyncByteStream):
    """``{"tags": ["a...` forever, 64 KiB at a time (counts what it sent)."""

    def __init__(self, head: bytes = b'{"tags": ["') -> None:
        self.head = head
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        chunk = b"a" * 65536
        while self.sent < 200 * 1024 * 1024:
            self.sent += len(chunk)
            yield chunk


# ------------------------------------------------------------- what a registry says


def test_a_config_blob_that_does_not_match_its_digest_makes_the_image_unreadable(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    honest = im.image(created=FEB, label="honest")
    liar = im.image(created=FEB, label="liar")
    registry.push(honest, "dev-0001")
    registry.push(liar, "dev-0002")
    config = liar.blobs[0]
    forged = json.loads(config.data)
    forged["created"] = "2001-01-01T00:00:00Z"  # "very old": the planner would delete it
    registry.blobs[config.digest] = json.dumps(forged).encode()
    b = backend(client)
    planned = plan_image(b, Policy(keep_dev=1, min_age=timedelta(0)), now=NOW)
    deleted = {d.version.digest for d in planned.plan.delete}
    assert liar.digest not in deleted  # fail closed: never deleted on a forged time
    kept = {d.version.digest: d.reason for d in planned.plan.keep}
    assert "cannot be believed" in kept[liar.digest]
    assert any("does not match" in w for w in planned.plan.warnings)
    with pytest.raises(ManifestUnreadable, match="does not match"):
        b.reader.manifest(liar.digest)


def test_a_refresh_token_is_never_replayed_to_where_a_redirect_points(
    registry: FakeRegistry, httpx_mock: HTTPXMock
) -> None:
    registry.auth = "bearer"
    registry.push(im.image(created=JAN), "v1")
    moved: list[httpx.Request] = []

    def redirect_token_posts(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(307, headers={"Location": "https://collector.example/t"})
        return registry(request)

    def collector(request: httpx.Request) -> httpx.Response:
        moved.append(request)
        return httpx.Response(200, json={"access_token": "x"})

    httpx_mock.add_callback(collector, url="https://collector.example/t", is_optional=True)
    httpx_mock.add_callback(
        redirect_token_posts, url=f"http://{HOST}/token", is_optional=True, is_reusable=True
    )
    creds = Credentials("<token>", Secret("refresh-XYZ"), identity_token=True, source="test")
    with build_client() as real_client, pytest.raises(TagkeeperError) as caught:
        backend(real_client, credentials=creds).versions()
    assert moved == []  # the refresh token never left for another host
    assert "refresh-XYZ" not in caught.value.diagnostics()


def test_blob_redirects_are_followed_without_the_credentials(
    registry: FakeRegistry, httpx_mock: HTTPXMock
) -> None:
    registry.auth = "bearer"
    img = im.image(created=JAN, label="redirected")
    registry.push(img, "v1")
    config = img.blobs[0]
    storage: list[httpx.Request] = []

    def redirect_blobs(request: httpx.Request) -> httpx.Response:
        if not registry._authorised(request):
            return registry(request)
        return httpx.Response(307, headers={"Location": "https://storage.example/b1"})

    def serve_blob(request: httpx.Request) -> httpx.Response:
        storage.append(request)
        return httpx.Response(200, content=config.data)

    httpx_mock.add_callback(serve_blob, url="https://storage.example/b1", is_reusable=True)
    httpx_mock.add_callback(redirect_blobs, url=f"{REG}/blobs/{config.digest}", is_reusable=True)
    creds = Credentials("alice", Secret("pw"), source="test")
    with build_client() as real_client:
        versions = backend(real_client, credentials=creds).versions()
    assert [v.created for v in versions] == [JAN]  # the time came through the redirect
    assert storage
    assert all("authorization" not in r.headers for r in storage)


def test_a_blob_redirect_from_https_to_plain_http_is_refused_and_fails_closed(
    httpx_mock: HTTPXMock,
) -> None:
    fake = FakeRegistry()
    old = im.image(created=JAN, label="old")
    fake.push(old, "dev-0001")
    fake.push(im.image(created=FEB, label="new"), "dev-0002")

    def downgrade(request: httpx.Request) -> httpx.Response:
        if "/blobs/" in request.url.path:
            return httpx.Response(307, headers={"Location": "http://storage.example/b2"})
        return fake(request)

    httpx_mock.add_callback(
        downgrade, url=re.compile(r"https://registry\.example\.com/.*"), is_reusable=True
    )
    with build_client() as real_client:
        https_backend = OciBackend(
            "registry.example.com/app", real_client, now=NOW, workers=1,
            retry=RetryPolicy(attempts=1), sleep=lambda _s: None,
        )  # fmt: skip
        planned = plan_image(https_backend, Policy(keep_dev=1, min_age=timedelta(0)), now=NOW)
    assert old.digest not in {d.version.digest for d in planned.plan.delete}
    assert not [r for r in httpx_mock.get_requests() if r.url.scheme == "http"]


def test_a_certificate_error_is_never_answered_by_plain_http(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    error = httpx.ConnectError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate"
    )
    error.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    httpx_mock.add_exception(error, url="https://127.0.0.1:5443/v2/", is_reusable=True)
    b = OciBackend("127.0.0.1:5443/app", client, retry=RetryPolicy(attempts=1))
    with pytest.raises(RegistryError) as caught:
        b.versions()
    assert "certificate" in caught.value.message
    assert "--insecure" in (caught.value.hint or "")
    assert not [r for r in httpx_mock.get_requests() if r.url.scheme == "http"]


def test_insecure_never_reaches_a_token_service_on_another_host(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url="https://registry.example.com/v2/")
    challenge = {"WWW-Authenticate": 'Bearer realm="http://auth.example.net/token"'}
    httpx_mock.add_response(url="http://registry.example.com/v2/", status_code=401,
                            headers=challenge)  # fmt: skip
    httpx_mock.add_response(
        url=re.compile(r"http://registry\.example\.com/v2/app/.*"),
        status_code=401,
        headers=challenge,
        is_optional=True,
        is_reusable=True,
    )
    elsewhere: list[httpx.Request] = []

    def token_service(request: httpx.Request) -> httpx.Response:
        elsewhere.append(request)
        return httpx.Response(200, json={"token": "t"})

    httpx_mock.add_callback(
        token_service, url=re.compile(r"http://auth\.example\.net/.*"), is_optional=True
    )
    b = OciBackend(
        "registry.example.com/app",
        client,
        insecure=True,
        credentials=Credentials("alice", Secret("pw-SECRET"), source="test"),
        retry=RetryPolicy(attempts=1),
    )
    with pytest.raises(RegistryError) as caught:
        b.versions()
    assert "pw-SECRET" not in caught.value.diagnostics()
    assert elsewhere == []


# ------------------------------------------------------------- tokens at the door


@pytest.mark.parametrize("value", ["ghp_abc\ndef", "ghp_abc def", "ghp_abc\x1b[31m", "ghp_é"])
def test_a_token_with_whitespace_or_control_characters_is_refused_at_the_door(
    value: str,
) -> None:
    with pytest.raises(UsageError) as caught:
        token_from_env(value, {})
    assert caught.value.exit_code is ExitCode.USAGE
    assert "--token" in caught.value.message
    assert value not in caught.value.diagnostics()
    with pytest.raises(UsageError) as from_env:
        token_from_env(None, {"GITHUB_TOKEN": value})
    assert "GITHUB_TOKEN" in from_env.value.message


def test_prune_with_such_a_token_exits_2_and_never_prints_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from tagkeeper.cli import main

    monkeypatch.chdir(str(tmp_path))
    secret = "ghp_half\nghp_otherhalf"
    code = main(["prune", "--image", "ghcr.io/acme/app", "--token", secret, "--dry-run"])
    out, err = capsys.readouterr()
    assert code == ExitCode.USAGE
    assert "ghp_half" not in out + err
    assert "ghp_otherhalf" not in out + err


def test_a_registry_password_with_a_control_character_is_refused() -> None:
    from tagkeeper.registries.credentials import resolve

    with pytest.raises(UsageError, match="control character") as caught:
        resolve("registry.example.com", environ={
            "TAGKEEPER_REGISTRY_USERNAME": "alice",
            "TAGKEEPER_REGISTRY_PASSWORD": "pw\r\nX-Injected: 1",
        })  # fmt: skip
    assert "X-Injected" not in caught.value.diagnostics()


def test_a_token_service_token_with_control_characters_is_a_registry_error(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    registry.auth = "bearer"
    registry.token_value = "tok\r\nX-Injected: yes"
    registry.push(im.image(created=JAN), "v1")
    creds = Credentials("alice", Secret("pw"), source="test")
    with pytest.raises(RegistryError) as caught:
        backend(client, credentials=creds).versions()
    assert caught.value.exit_code is ExitCode.REGISTRY
    assert "X-Injected" not in caught.value.diagnostics()


# ------------------------------------------------------------- bounded everything


def test_a_gzip_bomb_tag_list_stops_at_the_cap(
    registry: FakeRegistry, httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    huge = b'{"name": "app", "tags": ["' + b"a" * (48 * 1024 * 1024) + b'"]}'
    bomb = gzip.compress(huge, compresslevel=9)
    assert len(bomb) < 256 * 1024
    httpx_mock.add_response(
        url=f"{REG}/tags/list?n=1000",
        content=bomb,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    with pytest.raises(RegistryError, match=r"larger than|too large") as caught:
        backend(client).versions()
    assert HOST in caught.value.message
    assert "tag list" in caught.value.message


def test_an_oversized_manifest_is_not_read_to_its_end(
    registry: FakeRegistry, httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    digest = "sha256:" + "ab" * 32
    body = Endless(b'{"schemaVersion": 2, "annotations": {"x": "')
    httpx_mock.add_response(url=f"{REG}/manifests/{digest}", stream=body)
    with pytest.raises(ManifestUnreadable, match=r"larger than|too large"):
        backend(client).reader.manifest(digest)
    assert body.sent < 16 * 1024 * 1024  # stopped near the 4 MiB cap, not after 200 MiB


def test_an_answer_dripping_a_byte_at_a_time_ends_at_the_deadline(
    registry: FakeRegistry, httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    drip = Drip(every=0.02)
    httpx_mock.add_response(url=f"{REG}/tags/list?n=1000", stream=drip)
    started = time.monotonic()
    with pytest.raises(RegistryError, match="seconds") as caught:
        backend(client, retry=RetryPolicy(attempts=1, deadline=0.5)).versions()
    assert time.monotonic() - started < 5
    assert HOST in caught.value.message


def test_a_referrers_listing_that_links_to_itself_is_an_error(
    registry: FakeRegistry, httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    subject = "sha256:" + "cd" * 32
    httpx_mock.add_response(
        url=f"{REG}/referrers/{subject}",
        json={"schemaVersion": 2, "mediaType": im.OCI_INDEX, "manifests": []},
        headers={"Link": f'</v2/app/referrers/{subject}>; rel="next"'},
        is_reusable=True,
    )
    with pytest.raises(ManifestUnreadable, match="loops"):
        backend(client).reader.referrers(subject)


def test_a_tag_list_that_never_ends_is_capped(
    registry: FakeRegistry, httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    pages = 0

    def forever(request: httpx.Request) -> httpx.Response:
        nonlocal pages
        pages += 1
        if pages > 50_000:  # a safety net for this test itself
            return httpx.Response(500)
        return httpx.Response(
            200,
            json={"name": "app", "tags": [f"t{pages}"]},
            headers={"Link": f'</v2/app/tags/list?n=1&last=t{pages}>; rel="next"'},
        )

    httpx_mock.add_callback(forever, url=re.compile(rf"{REG}/tags/list.*"), is_reusable=True)
    with pytest.raises(RegistryError, match="pages") as caught:
        backend(client).versions()
    assert pages <= 10_001
    assert "tag list" in caught.value.message


def test_deeply_nested_json_is_a_registry_error_naming_the_registry(
    registry: FakeRegistry, httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    nested = b"[" * 200_000 + b"]" * 200_000
    httpx_mock.add_response(url=f"{REG}/tags/list?n=1000", content=nested)
    with pytest.raises(RegistryError) as caught:
        backend(client).versions()
    assert caught.value.exit_code is ExitCode.REGISTRY
    assert HOST in caught.value.message
    assert "nested" in caught.value.message


def test_a_deeply_nested_manifest_is_unreadable(
    registry: FakeRegistry, httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    import hashlib

    nested = b'{"manifests": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    digest = "sha256:" + hashlib.sha256(nested).hexdigest()
    httpx_mock.add_response(url=f"{REG}/manifests/{digest}", content=nested)
    with pytest.raises(ManifestUnreadable, match="nested"):
        backend(client).reader.manifest(digest)


def test_tags_that_break_the_grammar_are_reported_and_left_alone(
    registry: FakeRegistry, client: httpx.Client
) -> None:
    target = im.image(created=JAN, label="target")
    registry.push(target, "dev-0001")
    registry.push(im.image(created=FEB, label="new"), "dev-0002")
    registry.tags["evil\n::error::x"] = target.digest
    b = backend(client)
    planned = plan_image(b, Policy(keep_dev=1, min_age=timedelta(0)), now=NOW)
    # the digest the bad tag points at stays: deleting it would delete the tag too
    assert target.digest not in {d.version.digest for d in planned.plan.delete}
    warned = [w for w in planned.plan.warnings if "grammar" in w]
    assert warned
    for text in warned:
        assert_clean(text)


def test_ghcr_tags_that_break_the_grammar_are_left_alone(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    api = "https://api.github.test"
    httpx_mock.add_response(url=f"{api}/user", json={"login": "someone"})
    httpx_mock.add_response(url=f"{api}/users/acme", json={"type": "Organization"})
    digest = "sha256:" + "ef" * 32
    httpx_mock.add_response(
        url=f"{api}/orgs/acme/packages/container/app/versions?per_page=100&page=1",
        json=[
            {
                "id": 1,
                "name": digest,
                "created_at": "2024-01-01T00:00:00Z",
                "metadata": {"container": {"tags": ["\x1b]8;;evil\x07x"]}},
            }
        ],
    )
    def registry(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"token": "t"})
        return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})

    httpx_mock.add_callback(
        registry, url=re.compile(r"https://ghcr\.test/.*"), is_optional=True, is_reusable=True
    )
    b = GhcrBackend(
        "ghcr.io/acme/app", client, token=Secret("ghp_x"), api_url=api,
        registry_url="https://ghcr.test", retry=RetryPolicy(attempts=1),
    )  # fmt: skip
    planned = plan_image(b, Policy.uniform(0, unmatched="delete", min_age=timedelta(0)), now=NOW)
    assert planned.plan.delete == ()
    warned = [w for w in planned.plan.warnings if "grammar" in w]
    assert warned
    for text in warned:
        assert_clean(text)


def test_registry_error_text_is_neutralised(
    registry: FakeRegistry, httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    hostile = "denied\n::error::pwned\x1b[31m red \u202e"
    httpx_mock.add_response(
        url=f"{REG}/tags/list?n=1000",
        status_code=400,
        json={"errors": [{"code": "DENIED", "message": hostile}]},
    )
    with pytest.raises(RegistryError) as caught:
        backend(client).versions()
    assert "pwned" in caught.value.message  # said, but harmless
    assert_clean(caught.value.message)


# ------------------------------------------------------------- waits


SECONDARY = {
    "message": "You have exceeded a secondary rate limit. Please wait a few minutes.",
}


def ghcr_backend(client: httpx.Client, clock: FakeTime) -> GhcrBackend:
    return GhcrBackend(
        "ghcr.io/acme/app", client, token=Secret("ghp_x"), api_url="https://api.github.test",
        registry_url="https://ghcr.test", sleep=clock.sleep, clock=clock.clock,
        retry=RetryPolicy(attempts=1), max_wait=300.0,
    )  # fmt: skip


def test_a_retry_after_beyond_max_wait_stops_cleanly(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    clock = FakeTime()
    httpx_mock.add_response(
        url="https://api.github.test/user",
        status_code=403,
        json=SECONDARY,
        headers={"retry-after": "99999999"},
        is_reusable=True,
    )
    with pytest.raises(RateLimited) as caught:
        ghcr_backend(client, clock).versions()
    assert caught.value.exit_code is ExitCode.RATE_LIMITED
    assert all(s <= 300 for s in clock.sleeps)
    assert "--max-wait" in (caught.value.hint or "") + caught.value.message


def test_a_503_asking_to_wait_longer_than_max_wait_stops_cleanly(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    clock = FakeTime()
    httpx_mock.add_response(
        url="https://api.github.test/user",
        status_code=503,
        headers={"retry-after": "99999999"},
        is_reusable=True,
    )
    backend = GhcrBackend(
        "ghcr.io/acme/app", client, token=Secret("ghp_x"), api_url="https://api.github.test",
        registry_url="https://ghcr.test", sleep=clock.sleep, clock=clock.clock,
        retry=RetryPolicy(attempts=3), max_wait=300.0,
    )  # fmt: skip
    with pytest.raises(RateLimited):
        backend.versions()
    assert all(s <= 300 for s in clock.sleeps)


def test_a_paced_delete_told_to_wait_too_long_stops_cleanly(
    httpx_mock: HTTPXMock, client: httpx.Client
) -> None:
    from tagkeeper.inventory import Version

    clock = FakeTime()
    base = "https://api.github.test/orgs/acme/packages/container/app"
    httpx_mock.add_response(url="https://api.github.test/user", json={"login": "someone"})
    httpx_mock.add_response(url="https://api.github.test/users/acme", json={"type": "Organization"})
    httpx_mock.add_response(
        method="DELETE",
        url=f"{base}/versions/7",
        status_code=403,
        json=SECONDARY,
        headers={"retry-after": "99999999"},
        is_reusable=True,
    )
    version = Version("sha256:" + "12" * 32, frozenset(), JAN, key="7")
    with pytest.raises(RateLimited):
        ghcr_backend(client, clock).delete(version)
    assert all(s <= 300 for s in clock.sleeps)
