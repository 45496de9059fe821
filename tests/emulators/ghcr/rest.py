"""The emulator's REST surface: GitHub's Packages API (users, organisations, packages,
versions, deletes) behind the rate limits."""

from __future__ import annotations

import base64
import hashlib
import math
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote, urlencode

from tests.emulators.ghcr.limits import Limits
from tests.emulators.ghcr.server import (
    DOCS,
    Request,
    Response,
    _Route,
    call,
    rest_error,
)
from tests.emulators.ghcr.state import (
    _PACKAGE_DOCS,
    _T,
    ADMIN_MESSAGE,
    API_VERSION,
    DELETE_SCOPE_MESSAGE,
    DOWNLOADS_MESSAGE,
    FINE_GRAINED_MESSAGE,
    INTEGRATION_MESSAGE,
    LAST_TAGGED_MESSAGE,
    LAST_VERSION_MESSAGE,
    READ_SCOPE_MESSAGE,
    READ_SCOPES,
    Account,
    Token,
    _int,
    _iso,
    _Package,
    _Version,
)

if TYPE_CHECKING:
    from collections.abc import Sequence


def _check_access(
    token: Token, package: _Package, need: Literal["read", "delete"], doc: str
) -> None:
    role = token.role(package.owner, package.name)
    if role is None and package.visibility == "public":
        role = "read"  # visible to everyone; deleting still needs the admin role
    if role is None:
        raise rest_error(404, "Package not found.", documentation_url=doc)
    if token.kind == "classic":
        if not token.scopes & READ_SCOPES:
            raise rest_error(
                403,
                READ_SCOPE_MESSAGE,
                documentation_url=doc,
                headers={"X-Accepted-OAuth-Scopes": "read:packages"},
            )
        if need == "delete":
            if "delete:packages" not in token.scopes:
                raise rest_error(
                    403,
                    DELETE_SCOPE_MESSAGE,
                    documentation_url=doc,
                    headers={"X-Accepted-OAuth-Scopes": "delete:packages, read:packages"},
                )
            if role != "admin":
                raise rest_error(403, ADMIN_MESSAGE, documentation_url=doc)
        return
    message = INTEGRATION_MESSAGE if token.kind == "github_token" else FINE_GRAINED_MESSAGE
    if need == "read" and token.packages_permission is None:
        raise rest_error(
            403,
            message,
            documentation_url=doc,
            headers={"X-Accepted-GitHub-Permissions": "packages=read"},
        )
    if need == "delete":
        if token.packages_permission != "write":
            raise rest_error(
                403,
                message,
                documentation_url=doc,
                headers={"X-Accepted-GitHub-Permissions": "packages=write"},
            )
        if role != "admin":
            raise rest_error(403, message, documentation_url=doc)


def _accepted_scopes(kind: str) -> str:
    if kind == "rest.version.delete":
        return "delete:packages, read:packages"
    if kind.startswith(("rest.version", "rest.package")):
        return "read:packages"
    return ""


class RestApi(Limits):
    """GitHub's Packages REST API (see the package docstring for what is emulated)."""

    def _authenticate(self, request: Request) -> Response | None:
        header = request.headers.get("authorization")
        if header is None:
            return None
        scheme, _, credential = header.strip().partition(" ")
        value: str | None = None
        if scheme.lower() in ("bearer", "token"):
            value = credential.strip()
        elif scheme.lower() == "basic":
            try:
                value = base64.b64decode(credential).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                value = None
        token = self._tokens.get(value) if value else None
        if token is None:
            return rest_error(401, "Bad credentials").response
        request.token = token
        return None

    def _dispatch_rest(self, route: _Route, request: Request) -> Response:
        with self.lock:
            failure = self._authenticate(request)
            token = request.token
            ident = token.value if token is not None else "anonymous"
            limit = self.primary_limit if token is not None else self.anonymous_limit
            if failure is not None:
                return self._finish_rest(
                    request, failure, None, ident="anonymous", limit=self.anonymous_limit
                )
            window = self._primary_window(ident)
            if window.exhausted or window.used >= limit:
                window.exhausted = True
                self.limited["primary"] += 1
                return self._finish_rest(
                    request, self._primary_answer(token), token, ident=ident, limit=limit
                )
            window.used += 1
            limited = self._secondary(request, ident)
            if limited is not None:
                return self._finish_rest(request, limited, token, ident=ident, limit=limit)
        response = call(route.handler, request)
        with self.lock:
            response = self._conditional(request, response, ident)
            return self._finish_rest(request, response, token, ident=ident, limit=limit)

    def _conditional(self, request: Request, response: Response, ident: str) -> Response:
        """ETag on every 200 GET; 304 (not counted against the primary limit) when the
        request's If-None-Match names it. Called under the lock."""
        if request.method != "GET" or response.status != 200:
            return response
        etag = 'W/"' + hashlib.sha256(response.body).hexdigest()[:32] + '"'
        response.headers["ETag"] = etag
        wanted = [v.strip() for v in request.headers.get("if-none-match", "").split(",")]
        if etag not in wanted and "*" not in wanted:
            return response
        window = self._primary_window(ident)
        window.used = max(0, window.used - 1)
        return Response(304, b"", {"ETag": etag})

    def _finish_rest(
        self,
        request: Request,
        response: Response,
        token: Token | None,
        *,
        ident: str = "anonymous",
        limit: int | None = None,
    ) -> Response:
        headers = response.headers
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        headers.setdefault("x-github-request-id", self._request_id())
        headers["x-github-api-version-selected"] = API_VERSION
        headers["x-github-media-type"] = "github.v3; format=json"
        headers.update(
            self._rate_headers(ident, limit if limit is not None else self.anonymous_limit)
        )
        if token is not None and token.kind == "classic":
            headers["X-OAuth-Scopes"] = ", ".join(sorted(token.scopes))
            accepted = _accepted_scopes(request.kind)
            if accepted:
                headers.setdefault("X-Accepted-OAuth-Scopes", accepted)
        return response

    def _user_json(self, account: Account) -> dict[str, Any]:
        segment = "orgs" if account.type == "Organization" else "users"
        return {
            "login": account.login,
            "id": account.id,
            "node_id": base64.b64encode(f"04:{account.type}{account.id}".encode()).decode(),
            "url": f"{self.api_url}/{segment}/{account.login}",
            "html_url": f"https://github.com/{account.login}",
            "type": account.type,
            "site_admin": False,
            "name": account.name,
        }

    def _h_user(self, req: Request) -> Response:
        token = req.require_token()
        if token.kind == "github_token":
            raise rest_error(
                403,
                INTEGRATION_MESSAGE,
                documentation_url=f"{DOCS}/users/users#get-the-authenticated-user",
            )
        with self.lock:
            return Response.json(self._user_json(self._account(token.login)))

    def _h_users(self, req: Request) -> Response:
        with self.lock:
            account = self._accounts.get(req.match["owner"].lower())
            if account is None:
                raise rest_error(
                    404, "Not Found", documentation_url=f"{DOCS}/users/users#get-a-user"
                )
            return Response.json(self._user_json(account))

    def _h_orgs(self, req: Request) -> Response:
        with self.lock:
            account = self._accounts.get(req.match["owner"].lower())
            if account is None or account.type != "Organization":
                raise rest_error(
                    404, "Not Found", documentation_url=f"{DOCS}/orgs/orgs#get-an-organization"
                )
            return Response.json(self._user_json(account))

    def _doc(self, req: Request) -> str:
        scope = req.match["scope"]
        who = {"orgs": "an-organization", "users": "a-user", None: "the-authenticated-user"}[scope]
        if req.kind == "rest.versions.list" and scope == "orgs":
            who = "an-organization"
        return DOCS + _PACKAGE_DOCS.get(req.kind, "/packages/packages").format(who=who)

    def _resolve(self, req: Request, need: Literal["read", "delete"]) -> tuple[_Package, str]:
        """The package a packages route names, after the access checks; and its URL base."""
        token = req.require_token()
        doc = self._doc(req)
        scope = req.match["scope"]
        if scope is None:
            if token.kind == "github_token":
                raise rest_error(403, INTEGRATION_MESSAGE, documentation_url=doc)
            account = self._accounts.get(token.login.lower())
        else:
            account = self._accounts.get(req.match["owner"].lower())
            if account is not None and (scope == "orgs") != (account.type == "Organization"):
                account = None
        if account is None:
            raise rest_error(404, "Not Found", documentation_url=doc)
        name = unquote(req.match["pkg"])
        package = self._packages.get((account.login.lower(), name.lower()))
        if package is None:
            raise rest_error(404, "Package not found.", documentation_url=doc)
        _check_access(token, package, need, doc)
        segment = {
            "orgs": f"orgs/{account.login}",
            "users": f"users/{account.login}",
            None: "user",
        }[scope]
        return (
            package,
            f"{self.api_url}/{segment}/packages/container/{quote(package.name, safe='')}",
        )

    def _package_json(self, package: _Package, base: str) -> dict[str, Any]:
        account = self._accounts[package.owner.lower()]
        kind = "orgs" if account.type == "Organization" else "users"
        body: dict[str, Any] = {
            "id": package.id,
            "name": package.name,
            "package_type": "container",
            "owner": self._user_json(account),
            "version_count": len(package.active),
            "visibility": package.visibility,
            "url": base,
            "created_at": _iso(package.created),
            "updated_at": _iso(package.updated),
            "html_url": f"https://github.com/{kind}/{account.login}/packages/container/package/"
            f"{quote(package.name, safe='')}",
        }
        if package.repository is not None:
            body["repository"] = {
                "full_name": package.repository,
                "name": package.repository.split("/")[-1],
            }
        return body

    def _version_json(self, package: _Package, version: _Version, base: str) -> dict[str, Any]:
        account = self._accounts[package.owner.lower()]
        kind = "orgs" if account.type == "Organization" else "users"
        encoded = quote(package.name, safe="")
        html = f"https://github.com/{kind}/{account.login}/packages/container"
        return {
            "id": version.id,
            "name": version.digest,
            "url": f"{base}/versions/{version.id}",
            "package_html_url": f"{html}/package/{encoded}",
            "created_at": _iso(version.created),
            "updated_at": _iso(version.updated),
            "html_url": f"{html}/{encoded}/{version.id}",
            "metadata": {"package_type": "container", "container": {"tags": list(version.tags)}},
        }

    def _h_package(self, req: Request) -> Response:
        with self.lock:
            package, base = self._resolve(req, "read")
            return Response.json(self._package_json(package, base))

    def _h_packages(self, req: Request) -> Response:
        """``GET /user/packages``, ``/orgs/ORG/packages``, ``/users/USER/packages``: the
        owner's packages of one ``package_type`` (required) that the token can see,
        pages of ``per_page`` (default 30, at most 100), ordered by name here (GitHub
        documents no order)."""
        token = req.require_token()
        scope = req.match["scope"]
        who = {"orgs": "an-organization", "users": "a-user", None: "the-authenticated-user"}
        doc = f"{DOCS}/packages/packages#list-packages-for-{who[scope]}"
        package_type = req.param("package_type")
        if package_type is None:
            raise rest_error(
                422, "Invalid request.\n\n\"package_type\" wasn't supplied.",
                documentation_url=doc,
            )
        with self.lock:
            if scope is None:
                if token.kind == "github_token":
                    raise rest_error(403, INTEGRATION_MESSAGE, documentation_url=doc)
                account = self._accounts.get(token.login.lower())
            else:
                account = self._accounts.get(req.match["owner"].lower())
                if account is not None and (scope == "orgs") != (
                    account.type == "Organization"
                ):
                    account = None
            if account is None:
                raise rest_error(404, "Not Found", documentation_url=doc)
            if token.kind == "classic" and not token.scopes & READ_SCOPES:
                raise rest_error(403, READ_SCOPE_MESSAGE, documentation_url=doc)
            visible = [
                p
                for (owner, _), p in sorted(self._packages.items())
                if owner == account.login.lower()
                and package_type == "container"
                and (p.visibility == "public" or token.role(p.owner, p.name) is not None)
            ]
            segment = {
                "orgs": f"orgs/{account.login}",
                "users": f"users/{account.login}",
                None: "user",
            }[scope]
            chunk, headers = self.paginate(req, visible)
            body = [
                self._package_json(
                    p, f"{self.api_url}/{segment}/packages/container/{quote(p.name, safe='')}"
                )
                for p in chunk
            ]
        return Response.json(body, headers=headers)

    def _h_list(self, req: Request) -> Response:
        with self.lock:
            package, base = self._resolve(req, "read")
            if req.param("state", "active") == "deleted":
                items = sorted(
                    package.deleted.values(), key=lambda v: (v.created, v.id), reverse=True
                )
            else:
                items = package.newest_first()
            chunk, headers = self.paginate(req, items)
            body = [self._version_json(package, v, base) for v in chunk]
        return Response.json(body, headers=headers)

    def paginate(
        self,
        req: Request,
        items: Sequence[_T],
        *,
        default_per_page: int = 30,
        max_per_page: int = 100,
    ) -> tuple[list[_T], dict[str, str]]:
        """GitHub's page-number pagination of ``items`` for ``req``: the page's items and
        the headers to send (a ``Link`` header when there is more than one page)."""
        per_page = min(max_per_page, max(1, _int(req.param("per_page"), default_per_page)))
        page = max(1, _int(req.param("page"), 1))
        chunk = list(items[(page - 1) * per_page : page * per_page])
        last = max(1, math.ceil(len(items) / per_page))
        link = self._link(req, page, last)
        return chunk, ({"Link": link} if link else {})

    def _link(self, req: Request, page: int, last: int) -> str:
        if last <= 1 and page <= 1:
            return ""
        pairs = [(k, v) for k, values in req.query.items() for v in values]

        def url(target: int) -> str:
            items = [(k, v) for k, v in pairs if k != "page"]
            items.append(("page", str(target)))
            return f"{self.api_url}{req.path}?{urlencode(items)}"

        parts: list[str] = []
        if page > 1:
            parts.append(f'<{url(min(page - 1, last))}>; rel="prev"')
        if page < last:
            parts.append(f'<{url(page + 1)}>; rel="next"')
            parts.append(f'<{url(last)}>; rel="last"')
        if page > 1:
            parts.append(f'<{url(1)}>; rel="first"')
        return ", ".join(parts)

    def _find_version(self, req: Request, package: _Package) -> _Version:
        version = package.active.get(int(req.match["vid"]))
        if version is None:
            raise rest_error(404, "Not Found", documentation_url=self._doc(req))
        return version

    def _h_version(self, req: Request) -> Response:
        with self.lock:
            package, base = self._resolve(req, "read")
            return Response.json(
                self._version_json(package, self._find_version(req, package), base)
            )

    def _h_delete(self, req: Request) -> Response:
        with self.lock:
            package, _ = self._resolve(req, "delete")
            version = self._find_version(req, package)
            doc = self._doc(req)
            if self.last_version_rule == "version" and len(package.active) <= 1:
                raise rest_error(400, LAST_VERSION_MESSAGE, documentation_url=doc)
            if (
                self.last_version_rule == "tagged"
                and version.tags
                and not any(v.tags for v in package.active.values() if v.id != version.id)
            ):
                raise rest_error(400, LAST_TAGGED_MESSAGE, documentation_url=doc)
            if package.visibility == "public" and version.downloads > self.download_limit:
                raise rest_error(400, DOWNLOADS_MESSAGE, documentation_url=doc)
            self._remove(package, version)
            self.delete_times.append(self.clock())
            return Response(204)
