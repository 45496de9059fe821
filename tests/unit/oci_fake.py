"""A fake OCI distribution registry for pytest-httpx: one repository, ``app``.

The fake speaks the distribution API the way distribution 2.8 does (tags list with
``Link`` pagination, manifest HEAD/GET by tag or digest with ``Docker-Content-Digest``,
blobs, DELETE by digest removing every tag of the manifest), with switches for the
behaviours of other registries: auth challenges, a referrers API, deletes disabled.
Register it with ``httpx_mock.add_callback(fake, is_optional=True, is_reusable=True)``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import httpx

from tests.emulators import images as im

if TYPE_CHECKING:
    from pytest_httpx import HTTPXMock

HOST = "127.0.0.1:5000"
NO_DIGEST = "sha256:" + "0" * 64


@dataclass
class FakeRegistry:
    """Enough of a distribution registry for one repository, ``app``."""

    name: str = "app"
    manifests: dict[str, im.Built] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    page: int = 100
    deletes_enabled: bool = True
    referrers_api: bool = False
    auth: str | None = None  # None, "basic", "bearer"
    user: tuple[str, str] = ("alice", "pw")
    token_value: str = "tok-SECRET-123"
    realm: str = f"http://{HOST}/token"  # the token service, on the registry's own host
    service: str = "fake-registry"  # the service the bearer challenge names
    delete_status: int | None = None  # force an answer for real deletes
    delete_headers: dict[str, str] = field(default_factory=dict)  # sent with that answer
    log: list[tuple[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)

    def push(self, built: im.Built, *tags: str) -> str:
        for part in built.walk():
            self.manifests[part.digest] = part
            for blob in part.blobs:
                self.blobs[blob.digest] = blob.data
        for tag in tags:
            self.tags[tag] = built.digest
        return built.digest

    def _authorised(self, request: httpx.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.auth is None:
            return True
        if self.auth == "basic":
            raw = base64.b64encode(f"{self.user[0]}:{self.user[1]}".encode()).decode()
            return bool(header == f"Basic {raw}")
        return bool(header == f"Bearer {self.token_value}")

    def _challenge(self, scope: str) -> httpx.Response:
        if self.auth == "basic":
            value = 'Basic realm="fake"'
        else:
            value = (
                f'Bearer realm="{self.realm}",service="{self.service}",'
                f'scope="{scope}"'
            )
        return httpx.Response(
            401,
            headers={"WWW-Authenticate": value},
            json={"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
        )

    def token(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":  # OAuth2 refresh-token grant (identity tokens)
            form = parse_qs(request.content.decode())
            self.token_requests.append(form)
            if form.get("grant_type") == ["refresh_token"] and form.get("refresh_token") == [
                "refresh-XYZ"
            ]:
                return httpx.Response(200, json={"access_token": self.token_value})
            return httpx.Response(401, json={"details": "bad refresh token"})
        query = parse_qs(request.url.query.decode())
        self.token_requests.append(query)
        raw = base64.b64encode(f"{self.user[0]}:{self.user[1]}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {raw}":
            return httpx.Response(401, json={"details": "bad credentials"})
        return httpx.Response(200, json={"token": self.token_value, "expires_in": 300})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if f"{request.url.scheme}://{request.url.netloc.decode()}{request.url.path}" == (
            self.realm
        ):
            return self.token(request)
        path = request.url.path
        self.log.append((request.method, str(request.url)))
        if path == "/v2/":
            return httpx.Response(200) if self.auth is None else self._challenge("")
        prefix = f"/v2/{self.name}/"
        if not path.startswith(prefix):
            return httpx.Response(404, json={"errors": [{"code": "NAME_UNKNOWN"}]})
        rest = path[len(prefix) :]
        action = "delete" if request.method == "DELETE" else "pull"
        if not self._authorised(request):
            return self._challenge(f"repository:{self.name}:{action}")
        if rest == "tags/list":
            return self._tags_list(request)
        if rest.startswith("manifests/"):
            return self._manifest(request, rest.split("/", 1)[1])
        if rest.startswith("blobs/"):
            data = self.blobs.get(rest.split("/", 1)[1])
            return httpx.Response(200, content=data) if data is not None else httpx.Response(404)
        if rest.startswith("referrers/") and self.referrers_api:
            subject = rest.split("/", 1)[1]
            found = [m.descriptor() for m in self.manifests.values() if m.subject == subject]
            return httpx.Response(
                200,
                json={"schemaVersion": 2, "mediaType": im.OCI_INDEX, "manifests": found},
            )
        return httpx.Response(404, text="404 page not found")

    def _tags_list(self, request: httpx.Request) -> httpx.Response:
        n = int(request.url.params.get("n", "100"))
        n = min(n, self.page)
        last = request.url.params.get("last")
        names = sorted(t for t in self.tags if last is None or t > last)
        page = names[:n]
        headers = {}
        if len(names) > n:
            headers["Link"] = f'</v2/{self.name}/tags/list?last={page[-1]}&n={n}>; rel="next"'
        return httpx.Response(200, json={"name": self.name, "tags": page}, headers=headers)

    def _manifest(self, request: httpx.Request, reference: str) -> httpx.Response:
        if request.method == "DELETE":
            if not self.deletes_enabled:
                return httpx.Response(
                    405,
                    json={
                        "errors": [
                            {"code": "UNSUPPORTED", "message": "The operation is unsupported."}
                        ]
                    },
                )
            if reference != NO_DIGEST and self.delete_status is not None:
                return httpx.Response(self.delete_status, headers=self.delete_headers)
            if reference not in self.manifests:
                return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})
            del self.manifests[reference]
            self.tags = {t: d for t, d in self.tags.items() if d != reference}
            return httpx.Response(202)
        digest = self.tags.get(reference, reference)
        built = self.manifests.get(digest)
        if built is None:
            return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})
        headers = {"Docker-Content-Digest": digest, "Content-Type": built.media_type}
        if request.method == "HEAD":
            return httpx.Response(200, headers=headers)
        return httpx.Response(200, headers=headers, content=built.data)


def serve(httpx_mock: HTTPXMock) -> FakeRegistry:
    """A fake registry at ``HOST`` answering every request (loopback: https is refused as
    by a plain-http server, so the client falls back to http)."""
    fake = FakeRegistry()
    httpx_mock.add_exception(
        httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number"),
        url=f"https://{HOST}/v2/",
        is_optional=True,
        is_reusable=True,
    )
    httpx_mock.add_callback(fake, is_optional=True, is_reusable=True)
    return fake
