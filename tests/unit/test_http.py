"""Shared HTTP plumbing: URL checks, retries with backoff, retry-after, error translation."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.errors import ExitCode, RateLimited, RegistryError, UsageError
from tagkeeper.inventory import RequestStats
from tagkeeper.secret import Secret
from tagkeeper.transport import (
    RetryPolicy,
    Sender,
    build_client,
    check_base_url,
    describe_response,
    is_loopback_host,
    json_body,
    parse_retry_after,
)

if TYPE_CHECKING:
    from pytest_httpx import HTTPXMock

URL = "https://api.example.test/thing"
TOKEN = "ghp_sekrit0123456789"


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_sender(client: httpx.Client, sleeps: Sleeps, **kw: object) -> Sender:
    return Sender(
        client,
        stats=RequestStats(),
        sleep=sleeps,
        clock=lambda: 1_000_000.0,
        rng=random.Random(7),  # noqa: S311 - jitter in tests
        secret=Secret(TOKEN),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_hosts(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected


def test_https_is_accepted_anywhere_and_trailing_slashes_dropped() -> None:
    assert check_base_url("https://ghe.example.com/api/v3/", what="--api-url") == (
        "https://ghe.example.com/api/v3"
    )


def test_plain_http_only_on_loopback() -> None:
    assert check_base_url("http://127.0.0.1:8080", what="--api-url") == "http://127.0.0.1:8080"
    assert check_base_url("http://localhost:1/x", what="--api-url") == "http://localhost:1/x"
    with pytest.raises(UsageError, match="plain http") as info:
        check_base_url("http://registry.example.com", what="--registry-url")
    assert info.value.hint is not None
    assert "https" in info.value.hint


@pytest.mark.parametrize("bad", ["ftp://example.com", "example.com", "https://"])
def test_non_http_urls_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        check_base_url(bad, what="--api-url")


def test_retry_after_in_seconds_and_as_a_date() -> None:
    assert parse_retry_after("12", now=0.0) == 12.0
    assert parse_retry_after(None, now=0.0) is None
    assert parse_retry_after("soon", now=0.0) is None
    # 784111777 is Sun, 06 Nov 1994 08:49:37 GMT
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now=784111767.0) == 10.0


def test_5xx_is_retried_with_jittered_backoff_then_succeeds(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL, status_code=502)
    httpx_mock.add_response(url=URL, status_code=503)
    httpx_mock.add_response(url=URL, json={"ok": True})
    sleeps = Sleeps()
    with httpx.Client() as client:
        sender = make_sender(client, sleeps, retry=RetryPolicy(attempts=5, base=1.0, cap=8.0))
        response = sender.send("GET", URL, kind="list")
    assert response.json() == {"ok": True}
    assert sender.stats.by_kind == {"list": 3}
    assert len(sleeps.calls) == 2
    # full jitter: retry n waits somewhere in [0, base * 2**(n-1)]
    assert 0 <= sleeps.calls[0] <= 1.0
    assert 0 <= sleeps.calls[1] <= 2.0


def test_retry_after_on_a_5xx_is_honoured(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL, status_code=503, headers={"retry-after": "7"})
    httpx_mock.add_response(url=URL, status_code=204)
    sleeps = Sleeps()
    with httpx.Client() as client:
        response = make_sender(client, sleeps).send("DELETE", URL, kind="delete")
    assert response.status_code == 204
    assert sleeps.calls == [7.0]


def test_a_retry_after_beyond_max_wait_stops_cleanly(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL, status_code=503, headers={"retry-after": "3600"})
    sleeps = Sleeps()
    with httpx.Client() as client, pytest.raises(RateLimited) as caught:
        make_sender(client, sleeps, max_wait=300.0).send("GET", URL, kind="list")
    assert sleeps.calls == []
    assert caught.value.exit_code == ExitCode.RATE_LIMITED
    assert "3600" in caught.value.message
    assert "--max-wait" in caught.value.message


def test_a_retry_after_within_max_wait_is_waited(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL, status_code=503, headers={"retry-after": "200"})
    httpx_mock.add_response(url=URL, json={"ok": True})
    sleeps = Sleeps()
    with httpx.Client() as client:
        response = make_sender(client, sleeps, max_wait=300.0).send("GET", URL, kind="list")
    assert response.status_code == 200
    assert sleeps.calls == [200.0]


def test_5xx_after_every_attempt_is_returned_to_the_caller(httpx_mock: HTTPXMock) -> None:
    for _ in range(3):
        httpx_mock.add_response(url=URL, status_code=500)
    sleeps = Sleeps()
    with httpx.Client() as client:
        sender = make_sender(client, sleeps, retry=RetryPolicy(attempts=3))
        response = sender.send("GET", URL, kind="list")
    assert response.status_code == 500
    assert sender.stats.total == 3


def test_4xx_is_not_retried(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL, status_code=404)
    sleeps = Sleeps()
    with httpx.Client() as client:
        response = make_sender(client, sleeps).send("GET", URL, kind="list")
    assert response.status_code == 404
    assert sleeps.calls == []


def test_timeouts_are_retried_then_become_a_registry_error_without_the_token(
    httpx_mock: HTTPXMock,
) -> None:
    url = f"{URL}?leak={TOKEN}"
    for _ in range(3):
        httpx_mock.add_exception(httpx.ReadTimeout(f"timed out talking with {TOKEN}"))
    sleeps = Sleeps()
    with httpx.Client() as client:
        sender = make_sender(client, sleeps, retry=RetryPolicy(attempts=3))
        with pytest.raises(RegistryError) as info:
            sender.send("GET", url, kind="list")
    assert len(sleeps.calls) == 2
    assert TOKEN not in str(info.value)
    assert TOKEN not in info.value.diagnostics()
    assert "3 attempts" in info.value.message


def test_a_connection_error_then_success(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"))
    httpx_mock.add_response(url=URL, text="fine")
    sleeps = Sleeps()
    with httpx.Client() as client:
        response = make_sender(client, sleeps).send("GET", URL, kind="user")
    assert response.text == "fine"
    assert len(sleeps.calls) == 1


def test_describe_response_reads_github_and_oci_bodies() -> None:
    github = httpx.Response(403, json={"message": "Must have admin rights"})
    oci = httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "nope"}]})
    plain = httpx.Response(502, text=f"bad gateway {TOKEN}")
    assert describe_response(github, str) == "HTTP 403: Must have admin rights"
    assert describe_response(oci, str) == "HTTP 404: nope"
    assert TOKEN not in describe_response(plain, Secret(TOKEN).scrub)


def test_build_client_sets_a_user_agent_and_timeouts() -> None:
    with build_client(timeout=5.0) as client:
        assert client.headers["user-agent"].startswith("tagkeeper/")
        assert client.timeout.read == 5.0


def test_json_body_decodes_json_answers(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL, json={"login": "octo"})
    with httpx.Client() as client:
        response = client.get(URL)
    assert json_body(response, what="the user") == {"login": "octo"}


@pytest.mark.parametrize(
    ("content", "content_type", "shown"),
    [
        (b"<html><body>Please log in to the Wi-Fi</body></html>", "text/html", "text/html"),
        (b"\xff\xfe not utf-8 at all", None, "without a content type"),
        (b"", "application/json", "application/json"),  # an empty body is no JSON either
    ],
)
def test_a_non_json_answer_is_a_registry_error_naming_the_request_and_a_proxy(
    httpx_mock: HTTPXMock, content: bytes, content_type: str | None, shown: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    httpx_mock.add_response(url=f"{URL}?secret={TOKEN}", content=content, headers=headers)
    with httpx.Client() as client:
        response = client.get(f"{URL}?secret={TOKEN}")
    with pytest.raises(RegistryError) as info:
        json_body(response, what="ghcr.io/o/app: the versions list", scrub=Secret(TOKEN).scrub)
    message = info.value.diagnostics()
    assert "ghcr.io/o/app: the versions list" in message
    assert f"GET {URL} (HTTP 200) is not JSON" in message
    assert shown in message
    assert "--api-url" in message
    assert "proxy" in message.lower()
    assert TOKEN not in message


def test_json_body_scrubs_the_secret_from_the_url_path() -> None:
    request = httpx.Request("GET", f"https://api.example.test/{TOKEN}/x")
    response = httpx.Response(200, text="<html>", request=request)
    with pytest.raises(RegistryError) as info:
        json_body(response, what="x", scrub=Secret(TOKEN).scrub)
    assert TOKEN not in info.value.diagnostics()
    assert "/***/x" in info.value.message
